// CUDA graphs for torch/src/graph.rs: libtorch's `at::cuda::CUDAGraph` behind a small C ABI
// (tch 0.24 does not bind it). A decoding step is captured once per shape and then replayed
// per token: one launch for the whole step instead of a few hundred kernel launches.
//
// The shims' error convention (message.h): every C++ exception is caught and returned as a
// malloc'd message (NULL: success), freed by Rust with `peirce_dist_free_error`.
//
// Capture runs on a side stream (CUDA cannot capture the legacy default stream): `begin`
// synchronizes the device (unless asked not to), makes a stream from libtorch's pool current
// (remembering the caller's in the handle) and starts the capture; every tensor operation the
// caller then runs on that thread (through tch) is recorded, not executed; `end` finishes the
// capture and restores the caller's stream. `replay` launches the graph on the current stream,
// ordered after what was queued there before. Graphs made with the same pool handle share their
// private memory: that is safe when they are replayed one at a time on one stream, which is how
// the sampler uses them, and only tensors alive outside the graphs (the static inputs and
// outputs, the KV cache) need their own memory.
//
// Built with the CUDA headers (build.rs defines PEIRCE_CUDA_GRAPHS); without them every
// function says CUDA graphs are unavailable.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "message.h"

#ifdef PEIRCE_CUDA_GRAPHS
#include <optional>

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif


#ifdef PEIRCE_CUDA_GRAPHS
struct peirce_graph {
  at::cuda::CUDAGraph graph;
  // The caller's stream, to restore at `end`; set between `begin` and `end` only.
  std::optional<c10::cuda::CUDAStream> previous;
};

namespace {
void restore_stream(peirce_graph* graph) {
  if (graph->previous.has_value()) {
    c10::cuda::setCurrentCUDAStream(*graph->previous);
    graph->previous.reset();
  }
}
}  // namespace
#else
struct peirce_graph {};
#endif

extern "C" {

// 1 when this build can capture CUDA graphs (a CUDA device is still needed at run time).
int peirce_graph_available() {
#ifdef PEIRCE_CUDA_GRAPHS
  return 1;
#else
  return 0;
#endif
}

// A new memory pool handle for graphs that share memory (`pool` gets its two halves).
char* peirce_graph_pool(uint64_t* pool) {
#ifdef PEIRCE_CUDA_GRAPHS
  return peirce_guarded(
      [&] {
        auto handle = at::cuda::graph_pool_handle();
        pool[0] = handle.first;
        pool[1] = handle.second;
      },
      "unknown C++ exception in CUDA graphs");
#else
  (void)pool;
  return peirce_message("this peirce-worker was built without CUDA graphs");
#endif
}

// Starts capturing on `device` into a new graph (`*out`), in the memory pool `pool`, after
// synchronizing the device when `synchronize` is 1 (0: while earlier work may still run).
char* peirce_graph_begin(int device, const uint64_t* pool, int synchronize, peirce_graph** out) {
#ifdef PEIRCE_CUDA_GRAPHS
  peirce_graph* graph = nullptr;
  char* error = peirce_guarded(
      [&] {
        graph = new peirce_graph();
        if (synchronize != 0) {
          c10::cuda::device_synchronize();
        }
        auto index = static_cast<c10::DeviceIndex>(device);
        graph->previous = c10::cuda::getCurrentCUDAStream(index);
        c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, index));
        graph->graph.capture_begin({pool[0], pool[1]});
      },
      "unknown C++ exception in CUDA graph capture");
  if (error != nullptr) {
    if (graph != nullptr) {
      restore_stream(graph);
    }
    delete graph;
    return error;
  }
  *out = graph;
  return nullptr;
#else
  (void)device;
  (void)pool;
  (void)synchronize;
  (void)out;
  return peirce_message("this peirce-worker was built without CUDA graphs");
#endif
}

// Ends the capture `begin` started and restores the caller's stream. On an error the graph
// is unusable (free it).
char* peirce_graph_end(peirce_graph* graph) {
#ifdef PEIRCE_CUDA_GRAPHS
  char* error = peirce_guarded([&] { graph->graph.capture_end(); },
                               "unknown C++ exception ending a CUDA graph capture");
  restore_stream(graph);
  return error;
#else
  (void)graph;
  return peirce_message("this peirce-worker was built without CUDA graphs");
#endif
}

// Launches the graph on the current stream.
char* peirce_graph_replay(peirce_graph* graph) {
#ifdef PEIRCE_CUDA_GRAPHS
  return peirce_guarded([&] { graph->graph.replay(); }, "unknown C++ exception in CUDA graphs");
#else
  (void)graph;
  return peirce_message("this peirce-worker was built without CUDA graphs");
#endif
}

// Frees a graph (a capture still open is ended first, its error ignored).
void peirce_graph_free(peirce_graph* graph) {
#ifdef PEIRCE_CUDA_GRAPHS
  if (graph != nullptr && graph->previous.has_value()) {
    try {
      graph->graph.capture_end();
    } catch (...) {
    }
    restore_stream(graph);
  }
#endif
  delete graph;
}

}  // extern "C"
