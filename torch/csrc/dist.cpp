// peirce's data-parallel communication shim: libtorch's own c10d process groups (Gloo on
// CPU, NCCL on CUDA) behind a small C ABI that torch/src/dist.rs calls.
//
// Rules of this file:
// - Every extern "C" function catches every C++ exception (`peirce_guarded`, message.h,
//   the convention every shim follows). Errors come back as a string allocated with malloc
//   (NULL means success); Rust copies it and frees it with `peirce_dist_free_error`.
//   Nothing C++ ever unwinds into Rust.
// - Tensors arrive as `at::Tensor*`, which is what tch's `C_tensor*` is (torch-sys's
//   libtch/torch_api.h: `typedef torch::Tensor *tensor;`).
// - Collectives are synchronous from the caller's view: they wait for the c10d Work.
//   With Gloo that means the result is in the tensor on return; with NCCL, as in PyTorch,
//   `wait` orders the current CUDA stream after the collective.
//
// Gloo's headers are not shipped with PyTorch: see gloo-decl/gloo/README.md.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "message.h"

#ifndef USE_C10D_GLOO
#error "dist.cpp needs USE_C10D_GLOO (build.rs defines it)"
#endif

#ifdef PEIRCE_DIST_NCCL
// dist_nccl.cpp: kept apart so that only it sees the CUDA and NCCL headers.
c10::intrusive_ptr<c10d::Backend> peirce_dist_make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    std::chrono::milliseconds timeout);
#endif

struct peirce_dist_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int world;
  // An operation failed: the backend is aborted, not shut down, when the group is freed.
  bool failed = false;
};

namespace {

// Backend numbers shared with dist.rs.
constexpr int kGloo = 0;
constexpr int kNccl = 1;

// Reduction numbers shared with dist.rs.
constexpr int kSum = 0;
constexpr int kMax = 1;
constexpr int kMin = 2;

// `peirce_guarded` for an operation of `group`: a failure marks the group failed.
template <typename F>
char* operation(peirce_dist_group* group, F&& body) noexcept {
  char* error = peirce_guarded(std::forward<F>(body));
  if (error != nullptr) {
    group->failed = true;
  }
  return error;
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  // The backend's own timeout (set at construction) bounds the operation; waiting
  // without a second deadline keeps a late peer from leaving an operation half done.
  work->wait();
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case kSum:
      return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case kMax:
      return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case kMin:
      return c10d::ReduceOp(c10d::ReduceOp::MIN);
    default:
      throw std::invalid_argument("unknown reduction " + std::to_string(op));
  }
}

c10::intrusive_ptr<c10d::Backend> make_backend(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    int backend,
    // The address Gloo binds to; empty: this machine's resolved hostname.
    const std::string& gloo_host,
    std::chrono::milliseconds timeout) {
  if (backend == kGloo) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(
        gloo_host.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                          : c10d::ProcessGroupGloo::createDeviceForHostname(gloo_host));
    // One worker thread: collectives are issued one at a time by the caller.
    options->threads = 1;
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
  }
  if (backend == kNccl) {
#ifdef PEIRCE_DIST_NCCL
    if (!at::globalContext().hasCUDA()) {
      throw std::runtime_error("the NCCL backend needs CUDA, and this process has none");
    }
    return peirce_dist_make_nccl(store, rank, world, timeout);
#else
    throw std::runtime_error(
        "this peirce-worker was built without NCCL (libtorch_cuda.so or the NCCL and "
        "CUDA headers were missing at build time)");
#endif
  }
  throw std::invalid_argument("unknown backend " + std::to_string(backend));
}

} // namespace

extern "C" {

// Frees a message returned by any shim function (message.h).
void peirce_dist_free_error(char* message) {
  if (message != peirce_no_memory) {
    std::free(message);
  }
}

// 1 when this build can make NCCL groups (CUDA is still checked when one is made).
int peirce_dist_has_nccl() {
#ifdef PEIRCE_DIST_NCCL
  return 1;
#else
  return 0;
#endif
}

// Makes a group whose ranks meet through a c10d::FileStore on `path` (a file every rank
// names identically; it must not hold an earlier group's store). `timeout_ms` bounds the
// rendezvous (a missing rank) and every later operation.
char* peirce_dist_new_file(
    const char* path,
    int rank,
    int world,
    int backend,
    int64_t timeout_ms,
    peirce_dist_group** out) {
  *out = nullptr;
  return peirce_guarded([&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::FileStore>(std::string(path), world);
    store->setTimeout(timeout);
    auto made = make_backend(store, rank, world, backend, "127.0.0.1", timeout);
    *out = new peirce_dist_group{store, made, rank, world, false};
  });
}

// Makes a group whose ranks meet through a c10d::TCPStore that rank 0 hosts on
// `host:port`. Gloo binds to loopback when `host` is a loopback address, else to this
// machine's resolved hostname.
char* peirce_dist_new_tcp(
    const char* host,
    uint16_t port,
    int rank,
    int world,
    int backend,
    int64_t timeout_ms,
    peirce_dist_group** out) {
  *out = nullptr;
  return peirce_guarded([&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = rank == 0;
    options.numWorkers = static_cast<std::size_t>(world);
    options.waitWorkers = true;
    options.timeout = timeout;
    std::string host_name(host);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(host_name, options);
    const bool loopback = host_name == "localhost" || host_name.rfind("127.", 0) == 0 ||
        host_name == "::1";
    // Off loopback the store's host is rank 0's address, not ours: Gloo finds its own.
    auto made = make_backend(
        store, rank, world, backend, loopback ? host_name : std::string(), timeout);
    *out = new peirce_dist_group{store, made, rank, world, false};
  });
}

// Frees a group. The backend is first shut down (NCCL: its communicators destroyed, as
// `destroy_process_group` does), or aborted if one of its operations failed, since a
// normal shutdown could wait on peers that are gone. Gloo has neither: its destructor
// joins its threads, which a failed or timed-out operation has already released.
void peirce_dist_free(peirce_dist_group* group) {
  try {
    if (group->failed) {
      group->backend->abort();
    } else {
      group->backend->shutdown();
    }
  } catch (...) {
  }
  // Destructors of c10d backends do not throw in practice; never let one escape.
  try {
    delete group;
  } catch (...) {
  }
}

// In-place all-reduce of one tensor.
char* peirce_dist_all_reduce(peirce_dist_group* group, at::Tensor* tensor, int op) {
  return operation(group, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    wait(group->backend->allreduce(tensors, options));
  });
}

// In-place broadcast of one tensor from `root`.
char* peirce_dist_broadcast(peirce_dist_group* group, at::Tensor* tensor, int root) {
  return operation(group, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.rootTensor = 0;
    wait(group->backend->broadcast(tensors, options));
  });
}

// Gathers every rank's `input` (n elements) into `output` (world * n), rank order.
char* peirce_dist_all_gather(peirce_dist_group* group, at::Tensor* output, at::Tensor* input) {
  return operation(group, [&] {
    wait(group->backend->_allgather_base(*output, *input));
  });
}

// Reduces `input` (world * n elements) over the ranks and leaves slice `rank` of the
// result in `output` (n).
char* peirce_dist_reduce_scatter(
    peirce_dist_group* group,
    at::Tensor* output,
    at::Tensor* input,
    int op) {
  return operation(group, [&] {
    c10d::ReduceScatterOptions options;
    options.reduceOp = reduce_op(op);
    wait(group->backend->_reduce_scatter_base(*output, *input, options));
  });
}

// Waits until every rank has reached it.
char* peirce_dist_barrier(peirce_dist_group* group) {
  return operation(group, [&] { wait(group->backend->barrier()); });
}

} // extern "C"
