// peirce's own CUDA kernels for the decoding step (torch/src/kernels.rs), compiled at run
// time with NVRTC for the GPU at hand and launched on libtorch's current stream, so a
// captured CUDA graph records them like any libtorch kernel.
//
// Why: a decoding step of a small batch is mostly matrix products that read the weights
// once, plus a tail of small kernels that each cost a launch and a pass over the
// activations. Two of those tails are fused here, each into one kernel that computes what
// the libtorch ops it replaces compute (fp32 arithmetic, rounded to bf16 at the same points):
//   - `peirce_rope_write`: the rotary embedding of q and k, the new key and value written
//     at each row's own position of the KV cache, and q laid out for attention (replaces a
//     batched matrix product and two scatters);
//   - `peirce_silu_mul`: SwiGLU's `silu(gate) * up` from the concatenated gate/up product
//     (replaces two elementwise kernels).
// And `peirce_decode_attention` is a split-K decoding attention in which each row reads its
// own keys only. bfloat16 only: the dtype they were measured in on the GPU.
//
// No CUDA toolkit is needed to build or run this: the driver (`libcuda.so.1`) and NVRTC
// (`libnvrtc.so.<CUDA major>`, shipped with PyTorch's CUDA wheels beside torch) are opened
// with dlopen at first use; a machine without them gets an error message, and the caller
// falls back to libtorch's ops. Built only with the CUDA headers (build.rs defines
// PEIRCE_CUDA_KERNELS); without them every call says the kernels are unavailable.
//
// Same rules as dist.cpp: every C++ exception is caught and returned as a malloc'd message
// (NULL: success), freed by Rust with `peirce_dist_free_error`.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "message.h"

#ifdef PEIRCE_CUDA_KERNELS
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>
#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda.h>
#include <nvrtc.h>

namespace {

// The kernels, as CUDA C++ for NVRTC, for bfloat16 tensors (the dtype they were measured
// in; others keep libtorch's ops). `scalar` is the element type, handled as its 16 bits (an
// fp32's top half, stored with round-to-nearest-even as libtorch rounds), so the source
// needs no header; `load` and `store` convert it to and from fp32.
const char* kSource = R"CUDA(
typedef unsigned short scalar;
__device__ __forceinline__ float load(scalar v) { return __uint_as_float(((unsigned)v) << 16); }
__device__ __forceinline__ scalar store(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (scalar)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (scalar)(u >> 16);
}

// One block per (row, head of q, k or v), one thread per element of the head.
// qkv: [rows, heads + 2 kv_heads, dim], the fused projection's output.
// cos, sin: [rows, dim], each row's rotation (rounded to `scalar`, as the matrices are).
// positions: each row's position, `positions[row * position_stride]`.
// q: [rows, heads, dim] out. keys, values: [rows, kv_heads, capacity, dim], written at the
// row's position.
// Rotated element j: x[j] cos[j] - x[j + half] sin[j] (j < half), x[j] cos[j] +
// x[j - half] sin[j - half] (j >= half): both products are exact in fp32 and the sum is
// rounded once, as the matrix product with two nonzeros per column does.
extern "C" __global__ void rope_write(const scalar* __restrict__ qkv,
                                      const scalar* __restrict__ cos,
                                      const scalar* __restrict__ sin,
                                      const long long* __restrict__ positions,
                                      long long position_stride, scalar* __restrict__ q,
                                      scalar* __restrict__ keys, scalar* __restrict__ values,
                                      int heads, int kv_heads, int dim, long long capacity) {
  const int row = blockIdx.x;
  const int head = blockIdx.y;
  const int j = threadIdx.x;
  const int half = dim / 2;
  const scalar* x = qkv + ((long long)row * (heads + 2 * kv_heads) + head) * dim;
  const long long position = positions[row * position_stride];
  if (head >= heads + kv_heads) {
    const int kv = head - heads - kv_heads;
    values[(((long long)row * kv_heads + kv) * capacity + position) * dim + j] = x[j];
    return;
  }
  const float c = load(cos[(long long)row * dim + j]);
  float rotated;
  if (j < half) {
    const float s = load(sin[(long long)row * dim + j]);
    rotated = __fmaf_rn(-load(x[j + half]), s, load(x[j]) * c);
  } else {
    const float s = load(sin[(long long)row * dim + j - half]);
    rotated = __fmaf_rn(load(x[j - half]), s, load(x[j]) * c);
  }
  if (head < heads) {
    q[((long long)row * heads + head) * dim + j] = store(rotated);
  } else {
    const int kv = head - heads;
    keys[(((long long)row * kv_heads + kv) * capacity + position) * dim + j] = store(rotated);
  }
}

// gate_up: [rows, 2 inner] ([gate | up] per row); out: [rows, inner] = silu(gate) * up, with
// silu rounded to `scalar` before the product, as two separate kernels would.
extern "C" __global__ void silu_mul(const scalar* __restrict__ gate_up,
                                    scalar* __restrict__ out, long long rows, long long inner) {
  const long long total = rows * inner;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long row = i / inner;
    const long long col = i - row * inner;
    const float gate = load(gate_up[row * 2 * inner + col]);
    const float up = load(gate_up[row * 2 * inner + inner + col]);
    const float silu = load(store(gate / (1.0f + expf(-gate))));
    out[i] = store(silu * up);
  }
}

// Decoding attention, split over the keys (flash-decoding): one block of 128 threads per
// (row, key/value head, split of the keys). Each block scores its keys against the key/value
// head's `groups` queries, keeps a running max and sum per query (online softmax, fp32) and
// writes its unnormalized output and (max, sum) per query; `decode_attention_combine` merges
// the splits. A row attends to its keys 0..=position only, so it reads its own keys, not
// the longest row's. Each thread owns 8 consecutive elements of a head (one 16-byte load of
// bf16) of every KEY_LANES-th key, and issues all its loads of a block of 64 keys before it
// uses them, so that enough bytes are in flight to run at the memory's speed.
// PEIRCE_HEAD_DIM (64 or 128) is fixed at compile time.
// q: [rows, heads, dim]; keys, values: [rows, kv_heads, capacity, dim]; partial: [rows,
// heads, splits, dim] fp32; stats: [rows, heads, splits, 2] fp32.
#define PEIRCE_NEG_INF __uint_as_float(0xff800000u)
#define PEIRCE_BLOCK_KEYS 64
#define PEIRCE_MAX_GROUPS 8
#define PEIRCE_THREADS 128
#ifdef PEIRCE_HEAD_DIM
#define DIM PEIRCE_HEAD_DIM
#define LANES (DIM / 8)
#define KEY_LANES (PEIRCE_THREADS / LANES)
#define KEYS_PER_THREAD (PEIRCE_BLOCK_KEYS / KEY_LANES)
#define K_LANES (DIM / 32)
#define K_KEY_LANES (PEIRCE_THREADS / K_LANES)
#define K_KEYS_PER_THREAD (PEIRCE_BLOCK_KEYS / K_KEY_LANES)

// 8 consecutive elements as loaded (16 bytes), read as fp32 one by one (`e` is a constant
// once the loops are unrolled), so registers hold the raw bytes.
typedef uint4 Raw8;
__device__ __forceinline__ Raw8 load8(const scalar* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ Raw8 zero8() { return make_uint4(0u, 0u, 0u, 0u); }
__device__ __forceinline__ float element(const Raw8& r, int e) {
  const unsigned w = e < 2 ? r.x : e < 4 ? r.y : e < 6 ? r.z : r.w;
  return (e & 1) ? __uint_as_float(w & 0xffff0000u) : __uint_as_float(w << 16);
}

extern "C" __global__ void __launch_bounds__(PEIRCE_THREADS) decode_attention_partial(
    const scalar* __restrict__ q, const scalar* __restrict__ keys,
    const scalar* __restrict__ values, const long long* __restrict__ positions,
    long long position_stride, float* __restrict__ partial, float* __restrict__ stats,
    int heads, int kv_heads, long long capacity, int chunk, float scale) {
  __shared__ __align__(16) float queries[PEIRCE_MAX_GROUPS][DIM];
  __shared__ float probabilities[PEIRCE_MAX_GROUPS][PEIRCE_BLOCK_KEYS];
  __shared__ float running_max[PEIRCE_MAX_GROUPS];
  __shared__ float running_sum[PEIRCE_MAX_GROUPS];
  __shared__ float rescale[PEIRCE_MAX_GROUPS];
  __shared__ __align__(16) float sums[KEY_LANES][PEIRCE_MAX_GROUPS][DIM];
  const int row = blockIdx.x;
  const int kv = blockIdx.y;
  const int split = blockIdx.z;
  const int splits = gridDim.z;
  const int groups = heads / kv_heads;
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const int sub = t % LANES;
  const int key_lane = t / LANES;
  const int d0 = sub * 8;
  long long length = positions[row * position_stride] + 1;
  if (length > capacity) length = capacity;
  const long long begin = (long long)split * chunk;
  const long long end = begin + chunk < length ? begin + chunk : length;
  const scalar* q_row = q + ((long long)row * heads + (long long)kv * groups) * DIM;
  for (int i = t; i < groups * DIM; i += PEIRCE_THREADS) {
    queries[i / DIM][i % DIM] = load(q_row[i]);
  }
  if (t < groups) {
    running_max[t] = PEIRCE_NEG_INF;
    running_sum[t] = 0.0f;
  }
  float acc[PEIRCE_MAX_GROUPS][8];
#pragma unroll
  for (int g = 0; g < PEIRCE_MAX_GROUPS; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  __syncthreads();
  const long long head_offset = ((long long)row * kv_heads + kv) * capacity * DIM;
  // Scores use a wider slice per thread than values: 32 elements of a key (K_LANES threads
  // per key), so that a dot product needs fewer shuffles to sum.
  const int k_sub = t % K_LANES;
  const int k_key_lane = t / K_LANES;
  const int k_d0 = k_sub * 32;
  const scalar* k_head = keys + head_offset + k_d0;
  const scalar* v_head = values + head_offset + d0;
  for (long long block = begin; block < end; block += PEIRCE_BLOCK_KEYS) {
    const int n = end - block < PEIRCE_BLOCK_KEYS ? (int)(end - block) : PEIRCE_BLOCK_KEYS;
    // Every load of the block first: this thread's slices of its keys and values.
    Raw8 k_slices[K_KEYS_PER_THREAD][4];
    Raw8 v_slices[KEYS_PER_THREAD];
#pragma unroll
    for (int i = 0; i < K_KEYS_PER_THREAD; ++i) {
      const int k = k_key_lane + i * K_KEY_LANES;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        k_slices[i][j] = k < n ? load8(k_head + (block + k) * DIM + 8 * j) : zero8();
      }
    }
#pragma unroll
    for (int i = 0; i < KEYS_PER_THREAD; ++i) {
      const int k = key_lane + i * KEY_LANES;
      v_slices[i] = k < n ? load8(v_head + (block + k) * DIM) : zero8();
    }
    // Scores: the K_LANES threads of a key sum their slices' dot products.
#pragma unroll
    for (int g = 0; g < PEIRCE_MAX_GROUPS; ++g) {
      if (g < groups) {
        float query[32];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float4 part = *reinterpret_cast<const float4*>(&queries[g][k_d0 + 4 * j]);
          query[4 * j] = part.x;
          query[4 * j + 1] = part.y;
          query[4 * j + 2] = part.z;
          query[4 * j + 3] = part.w;
        }
#pragma unroll
        for (int i = 0; i < K_KEYS_PER_THREAD; ++i) {
          const int k = k_key_lane + i * K_KEY_LANES;
          float dot = 0.0f;
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 8; ++e)
              dot = __fmaf_rn(query[8 * j + e], element(k_slices[i][j], e), dot);
#pragma unroll
          for (int offset = K_LANES / 2; offset > 0; offset >>= 1)
            dot += __shfl_xor_sync(0xffffffffu, dot, offset);
          if (k_sub == 0 && k < n) probabilities[g][k] = dot * scale;
        }
      }
    }
    __syncthreads();
    // Online softmax: one warp per query.
    for (int g = warp; g < groups; g += PEIRCE_THREADS / 32) {
      float block_max = PEIRCE_NEG_INF;
      for (int k = lane; k < n; k += 32) block_max = fmaxf(block_max, probabilities[g][k]);
      for (int offset = 16; offset > 0; offset >>= 1)
        block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, offset));
      const float previous = running_max[g];
      const float next = fmaxf(previous, block_max);
      float sum = 0.0f;
      for (int k = lane; k < n; k += 32) {
        const float p = expf(probabilities[g][k] - next);
        probabilities[g][k] = p;
        sum += p;
      }
      for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
      __syncwarp();
      if (lane == 0) {
        const float factor = expf(previous - next);
        rescale[g] = factor;
        running_sum[g] = running_sum[g] * factor + sum;
        running_max[g] = next;
      }
    }
    __syncthreads();
    // Values.
#pragma unroll
    for (int g = 0; g < PEIRCE_MAX_GROUPS; ++g) {
      if (g < groups) {
        const float factor = rescale[g];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] *= factor;
      }
    }
#pragma unroll
    for (int i = 0; i < KEYS_PER_THREAD; ++i) {
      const int k = key_lane + i * KEY_LANES;
      if (k < n) {
#pragma unroll
        for (int g = 0; g < PEIRCE_MAX_GROUPS; ++g) {
          if (g < groups) {
            const float p = probabilities[g][k];
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[g][e] = __fmaf_rn(p, element(v_slices[i], e), acc[g][e]);
          }
        }
      }
    }
    __syncthreads();
  }
  // The key lanes' sums, then one thread per (query, element) writes.
#pragma unroll
  for (int g = 0; g < PEIRCE_MAX_GROUPS; ++g) {
    if (g < groups) {
      *reinterpret_cast<float4*>(&sums[key_lane][g][d0]) =
          make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
      *reinterpret_cast<float4*>(&sums[key_lane][g][d0 + 4]) =
          make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
    }
  }
  __syncthreads();
  for (int i = t; i < groups * DIM; i += PEIRCE_THREADS) {
    const int g = i / DIM;
    const int d = i % DIM;
    float total = 0.0f;
#pragma unroll
    for (int l = 0; l < KEY_LANES; ++l) total += sums[l][g][d];
    const long long slot = ((long long)row * heads + (long long)kv * groups + g) * splits + split;
    partial[slot * DIM + d] = total;
  }
  if (t < groups) {
    const long long slot = ((long long)row * heads + (long long)kv * groups + t) * splits + split;
    stats[slot * 2] = running_max[t];
    stats[slot * 2 + 1] = running_sum[t];
  }
}
#endif

// One block per (row, head), `dim` threads: the splits' outputs rescaled to the common max
// and divided by the common sum; out: [rows, heads, dim].
extern "C" __global__ void decode_attention_combine(const float* __restrict__ partial,
                                                    const float* __restrict__ stats,
                                                    scalar* __restrict__ out, int splits,
                                                    int dim) {
  const long long head = blockIdx.x;
  const int t = threadIdx.x;
  const float* head_stats = stats + head * splits * 2;
  float top = PEIRCE_NEG_INF;
  for (int s = 0; s < splits; ++s) top = fmaxf(top, head_stats[2 * s]);
  float sum = 0.0f;
  float value = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float weight = expf(head_stats[2 * s] - top);
    sum += head_stats[2 * s + 1] * weight;
    value += partial[(head * splits + s) * dim + t] * weight;
  }
  out[head * dim + t] = store(value / sum);
}
)CUDA";

// The driver and NVRTC entry points used here, opened once.
struct Api {
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void**, void**);
  CUresult (*cuGetErrorString)(CUresult, const char**);
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int,
                                    const char* const*, const char* const*);
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*);
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t*);
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*);
  const char* (*nvrtcGetErrorString)(nvrtcResult);
};

// Looks up each (name, slot) pair's symbol in `library` and stores it in the slot.
void bind(void*) {}
template <typename F, typename... Rest>
void bind(void* library, const char* name, F* slot, Rest... rest) {
  void* symbol = dlsym(library, name);
  if (symbol == nullptr) {
    throw std::runtime_error(std::string("peirce kernels: no ") + name + " in the CUDA libraries");
  }
  *slot = reinterpret_cast<F>(symbol);
  bind(library, rest...);
}

// NVRTC of the CUDA major version the headers (and so libtorch) were built for: already
// loaded, on the library path, or pulled in by libtorch's own NVRTC stub (whose rpath
// points at the wheel's copy).
void* open_nvrtc() {
  const std::string name = "libnvrtc.so." + std::to_string(CUDA_VERSION / 1000);
  if (void* library = dlopen(name.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
    return library;
  }
  if (void* library = dlopen(name.c_str(), RTLD_LAZY)) {
    return library;
  }
  if (dlopen("libcaffe2_nvrtc.so", RTLD_LAZY | RTLD_LOCAL) != nullptr) {
    if (void* library = dlopen(name.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
      return library;
    }
  }
  throw std::runtime_error("peirce kernels: cannot open " + name +
                           " (NVRTC, shipped with PyTorch's CUDA wheels)");
}

// NVRTC opens its builtins library (`libnvrtc-builtins.so.<major>.<minor>`) by name when it
// compiles, and the wheel's copy is not on the loader's path: load it from NVRTC's own
// folder first, so that name is found already loaded. Where that fails, compiling says so.
void load_builtins(void* nvrtc) {
  using Version = nvrtcResult (*)(int*, int*);
  auto version = reinterpret_cast<Version>(dlsym(nvrtc, "nvrtcVersion"));
  void* create = dlsym(nvrtc, "nvrtcCreateProgram");
  Dl_info info{};
  int major = 0;
  int minor = 0;
  if (version == nullptr || create == nullptr || version(&major, &minor) != NVRTC_SUCCESS ||
      dladdr(create, &info) == 0 || info.dli_fname == nullptr) {
    return;
  }
  const std::string library = info.dli_fname;
  const auto slash = library.rfind('/');
  const std::string folder = slash == std::string::npos ? "" : library.substr(0, slash + 1);
  const std::string builtins =
      folder + "libnvrtc-builtins.so." + std::to_string(major) + "." + std::to_string(minor);
  dlopen(builtins.c_str(), RTLD_LAZY | RTLD_LOCAL);
}

const Api& api() {
  static const Api loaded = [] {
    Api api{};
    void* cuda = dlopen("libcuda.so.1", RTLD_LAZY);
    if (cuda == nullptr) {
      throw std::runtime_error("peirce kernels: cannot open libcuda.so.1 (the CUDA driver)");
    }
    void* nvrtc = open_nvrtc();
    load_builtins(nvrtc);
#define PEIRCE_SYMBOL(name) #name, &api.name
    bind(cuda, PEIRCE_SYMBOL(cuModuleLoadData), PEIRCE_SYMBOL(cuModuleGetFunction),
         PEIRCE_SYMBOL(cuLaunchKernel), PEIRCE_SYMBOL(cuGetErrorString));
    bind(nvrtc, PEIRCE_SYMBOL(nvrtcCreateProgram), PEIRCE_SYMBOL(nvrtcCompileProgram),
         PEIRCE_SYMBOL(nvrtcGetProgramLogSize), PEIRCE_SYMBOL(nvrtcGetProgramLog),
         PEIRCE_SYMBOL(nvrtcGetCUBINSize), PEIRCE_SYMBOL(nvrtcGetCUBIN),
         PEIRCE_SYMBOL(nvrtcDestroyProgram), PEIRCE_SYMBOL(nvrtcGetErrorString));
#undef PEIRCE_SYMBOL
    return api;
  }();
  return loaded;
}

void check(CUresult result, const char* what) {
  if (result != CUDA_SUCCESS) {
    const char* text = "unknown error";
    api().cuGetErrorString(result, &text);
    throw std::runtime_error(std::string("peirce kernels: ") + what + ": " + text);
  }
}

void check(nvrtcResult result, const char* what) {
  if (result != NVRTC_SUCCESS) {
    throw std::runtime_error(std::string("peirce kernels: ") + what + ": " +
                             api().nvrtcGetErrorString(result));
  }
}

// Makes `device` current for its lifetime (CUDAGuard's inline code would need the CUDA
// runtime at link time; these two live in libc10_cuda).
class OnDevice {
 public:
  explicit OnDevice(const at::Device& device)
      : previous_(c10::cuda::current_device()), device_(device.index()) {
    if (device_ != previous_) {
      c10::cuda::set_device(device_);
    }
  }
  ~OnDevice() {
    if (device_ != previous_) {
      c10::cuda::set_device(previous_);
    }
  }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  c10::DeviceIndex previous_;
  c10::DeviceIndex device_;
};

struct Module {
  CUfunction rope_write = nullptr;
  CUfunction silu_mul = nullptr;
  CUfunction attention_partial = nullptr;
  CUfunction attention_combine = nullptr;
};

// Compiles the kernels for the current device's architecture and the attention's
// `head_dim` (0: no attention kernel), and loads them into the current context.
Module compile(int head_dim) {
  const Api& cuda = api();
  const cudaDeviceProp* properties = at::cuda::getCurrentDeviceProperties();
  const std::string arch = "--gpu-architecture=sm_" + std::to_string(properties->major) +
                           std::to_string(properties->minor);
  nvrtcProgram program = nullptr;
  check(cuda.nvrtcCreateProgram(&program, kSource, "peirce_kernels.cu", 0, nullptr, nullptr),
        "creating the program");
  std::vector<const char*> options{arch.c_str(), "--std=c++17"};
  const std::string dim_option = "-DPEIRCE_HEAD_DIM=" + std::to_string(head_dim);
  if (head_dim > 0) {
    options.push_back(dim_option.c_str());
  }
  const nvrtcResult compiled =
      cuda.nvrtcCompileProgram(program, static_cast<int>(options.size()), options.data());
  if (compiled != NVRTC_SUCCESS) {
    size_t size = 0;
    cuda.nvrtcGetProgramLogSize(program, &size);
    std::string log(size, '\0');
    cuda.nvrtcGetProgramLog(program, log.data());
    cuda.nvrtcDestroyProgram(&program);
    throw std::runtime_error("peirce kernels: NVRTC failed (" + arch + "): " + log);
  }
  size_t size = 0;
  check(cuda.nvrtcGetCUBINSize(program, &size), "sizing the CUBIN");
  std::string cubin(size, '\0');
  check(cuda.nvrtcGetCUBIN(program, cubin.data()), "reading the CUBIN");
  cuda.nvrtcDestroyProgram(&program);
  CUmodule module = nullptr;
  check(cuda.cuModuleLoadData(&module, cubin.data()), "loading the module");
  Module kernels;
  check(cuda.cuModuleGetFunction(&kernels.rope_write, module, "rope_write"), "rope_write");
  check(cuda.cuModuleGetFunction(&kernels.silu_mul, module, "silu_mul"), "silu_mul");
  if (head_dim > 0) {
    check(cuda.cuModuleGetFunction(&kernels.attention_partial, module, "decode_attention_partial"),
          "decode_attention_partial");
  }
  check(cuda.cuModuleGetFunction(&kernels.attention_combine, module, "decode_attention_combine"),
        "decode_attention_combine");
  return kernels;
}

// Head sizes the attention kernel is compiled for.
bool attention_dim(int64_t dim) { return dim == 64 || dim == 128; }

// The kernels for (device, head_dim), compiled at first use; `head_dim` -1: any module of
// the device (compiling one without attention if there is none).
const Module& module_for(const at::Tensor& tensor, int head_dim) {
  if (!tensor.is_cuda()) {
    throw std::runtime_error("peirce kernels: tensors must be on a CUDA device");
  }
  if (tensor.scalar_type() != at::kBFloat16) {
    throw std::runtime_error("peirce kernels: bfloat16 only");
  }
  static std::mutex mutex;
  static std::map<std::pair<int, int>, Module> modules;
  std::lock_guard<std::mutex> lock(mutex);
  const int device = static_cast<int>(tensor.get_device());
  if (head_dim < 0) {
    for (const auto& [key, module] : modules) {
      if (key.first == device) {
        return module;
      }
    }
    head_dim = 0;
  }
  if (head_dim != 0 && !attention_dim(head_dim)) {
    throw std::runtime_error("peirce kernels: the attention kernel takes head_dim 64 or 128, not " +
                             std::to_string(head_dim));
  }
  const auto key = std::make_pair(device, head_dim);
  auto found = modules.find(key);
  if (found == modules.end()) {
    OnDevice on(tensor.device());
    found = modules.emplace(key, compile(head_dim)).first;
  }
  return found->second;
}

// Launches `function` on the current stream with `arguments`, each passed as the exact type
// the kernel declares (pointers as void*, int, long long, float).
template <typename... Args>
void launch(CUfunction function, dim3 grid, dim3 block, Args... values) {
  void* arguments[] = {static_cast<void*>(&values)...};
  const auto stream = at::cuda::getCurrentCUDAStream();
  check(api().cuLaunchKernel(function, grid.x, grid.y, grid.z, block.x, block.y, block.z, 0,
                             stream.stream(), arguments, nullptr),
        "launching a kernel");
}

// The distance between two rows' positions, in elements (one position per row).
long long position_stride(const at::Tensor& positions) {
  return positions.dim() == 0 ? 0 : positions.stride(0);
}

void require(bool condition, const char* what) {
  if (!condition) {
    throw std::runtime_error(std::string("peirce kernels: ") + what);
  }
}

}  // namespace

// Runs `body`, returning any C++ exception as a message.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& error) {
    return peirce_message(error.what());
  } catch (...) {
    return peirce_message("unknown C++ exception in peirce kernels");
  }
}

extern "C" {

// Compiles (once per device and head size) and loads the kernels for `like`'s device
// (bf16 only), the attention kernel for `head_dim` (0: without it); an error says why they
// cannot run there.
char* peirce_kernels_prepare(at::Tensor* like, int64_t head_dim) {
  return guarded([&] { module_for(*like, static_cast<int>(head_dim)); });
}

// See `rope_write` above. qkv: [rows, (heads + 2 kv_heads) dim] contiguous; cos, sin:
// [rows, dim] contiguous; positions: int64, `rows` of them `position_stride` apart; q: [rows,
// heads, dim] contiguous; keys, values: [rows, kv_heads, capacity, dim] contiguous. Every
// floating tensor of one dtype, on one device.
char* peirce_rope_write(at::Tensor* qkv, at::Tensor* cos, at::Tensor* sin,
                        at::Tensor* positions, at::Tensor* q, at::Tensor* keys,
                        at::Tensor* values, int64_t heads, int64_t kv_heads) {
  return guarded([&] {
    const Module& kernels = module_for(*qkv, -1);
    const int64_t rows = keys->size(0);
    const int64_t capacity = keys->size(2);
    int dim = static_cast<int>(keys->size(3));
    require(keys->dim() == 4 && keys->size(1) == kv_heads && values->sizes() == keys->sizes(),
            "keys and values must be [rows, kv_heads, capacity, dim] alike");
    require(qkv->numel() == rows * (heads + 2 * kv_heads) * dim && qkv->is_contiguous(),
            "qkv must be [rows, (heads + 2 kv_heads) dim], contiguous");
    require(cos->numel() == rows * dim && sin->numel() == rows * dim && cos->is_contiguous() &&
                sin->is_contiguous(),
            "cos and sin must be [rows, dim], contiguous");
    require(q->numel() == rows * heads * dim && q->is_contiguous(),
            "q must be [rows, heads, dim], contiguous");
    require(keys->is_contiguous() && values->is_contiguous(), "the cache must be contiguous");
    require(positions->scalar_type() == at::kLong && positions->numel() == rows,
            "positions must be int64, one per row");
    require(dim % 2 == 0 && dim <= 1024, "head_dim must be even and at most 1024");
    for (const at::Tensor* t : {cos, sin, q, keys, values}) {
      require(t->scalar_type() == qkv->scalar_type() && t->device() == qkv->device(),
              "every tensor must have qkv's dtype and device");
    }
    require(positions->device() == qkv->device(), "positions must be on qkv's device");
    OnDevice on(qkv->device());
    launch(kernels.rope_write,
           dim3(static_cast<unsigned>(rows), static_cast<unsigned>(heads + 2 * kv_heads)),
           dim3(static_cast<unsigned>(dim)), qkv->data_ptr(), cos->data_ptr(), sin->data_ptr(),
           positions->data_ptr(), position_stride(*positions), q->data_ptr(), keys->data_ptr(),
           values->data_ptr(), static_cast<int>(heads), static_cast<int>(kv_heads), dim,
           static_cast<long long>(capacity));
  });
}

// out ([rows, inner], contiguous) = silu(gate) * up for gate_up ([rows, 2 inner],
// contiguous).
char* peirce_silu_mul(at::Tensor* gate_up, at::Tensor* out) {
  return guarded([&] {
    const Module& kernels = module_for(*gate_up, -1);
    require(gate_up->is_contiguous() && out->is_contiguous(), "tensors must be contiguous");
    require(out->scalar_type() == gate_up->scalar_type() && out->device() == gate_up->device(),
            "out must have gate_up's dtype and device");
    long long inner = out->size(-1);
    long long rows = inner == 0 ? 0 : out->numel() / inner;
    require(gate_up->numel() == 2 * rows * inner && gate_up->size(-1) == 2 * inner,
            "gate_up must be [rows, 2 inner] for out [rows, inner]");
    if (rows * inner == 0) {
      return;
    }
    OnDevice on(gate_up->device());
    const long long threads = 256;
    const long long blocks = std::min<long long>((rows * inner + threads - 1) / threads, 65535);
    launch(kernels.silu_mul, dim3(static_cast<unsigned>(blocks)),
           dim3(static_cast<unsigned>(threads)), gate_up->data_ptr(), out->data_ptr(), rows,
           inner);
  });
}

// Decoding attention of one new token per row: q ([rows, heads, dim], contiguous) over the
// cached keys and values ([rows, kv_heads, capacity, dim], contiguous), row r over its
// positions 0..=positions[r] (int64, `position_stride` apart), in splits of `chunk` keys
// (`splits * chunk` covers every row's keys); partial ([rows, heads, splits, dim]) and stats
// ([rows, heads, splits, 2]) are fp32 scratch; out: [rows, heads, dim], q's dtype.
char* peirce_decode_attention(at::Tensor* q, at::Tensor* keys, at::Tensor* values,
                              at::Tensor* positions, at::Tensor* partial, at::Tensor* stats,
                              at::Tensor* out, int64_t chunk) {
  return guarded([&] {
    require(keys->dim() == 4 && values->sizes() == keys->sizes() && keys->is_contiguous() &&
                values->is_contiguous(),
            "keys and values must be [rows, kv_heads, capacity, dim] alike, contiguous");
    const int64_t rows = keys->size(0);
    const int64_t kv_heads = keys->size(1);
    const int64_t capacity = keys->size(2);
    int dim = static_cast<int>(keys->size(3));
    require(q->dim() == 3 && q->size(0) == rows && q->size(2) == dim && q->is_contiguous(),
            "q must be [rows, heads, dim], contiguous");
    const int64_t heads = q->size(1);
    require(heads % kv_heads == 0 && heads / kv_heads <= 8,
            "heads must be a multiple of kv_heads, at most 8 times it");
    const Module& kernels = module_for(*q, dim);
    require(positions->scalar_type() == at::kLong && positions->numel() == rows,
            "positions must be int64, one per row");
    require(chunk > 0, "chunk must be positive");
    const int64_t splits = partial->dim() == 4 ? partial->size(2) : 0;
    require(partial->scalar_type() == at::kFloat && stats->scalar_type() == at::kFloat &&
                partial->is_contiguous() && stats->is_contiguous() &&
                partial->numel() == rows * heads * splits * dim &&
                stats->numel() == rows * heads * splits * 2 && splits > 0,
            "partial and stats must be fp32 [rows, heads, splits, dim] and [.., 2]");
    require(out->numel() == rows * heads * dim && out->is_contiguous() &&
                out->scalar_type() == q->scalar_type(),
            "out must be [rows, heads, dim] in q's dtype, contiguous");
    for (const at::Tensor* t : {keys, values, positions, partial, stats, out}) {
      require(t->device() == q->device(), "every tensor must be on q's device");
    }
    require(keys->scalar_type() == q->scalar_type() && values->scalar_type() == q->scalar_type(),
            "keys and values must have q's dtype");
    if (rows == 0) {
      return;
    }
    OnDevice on(q->device());
    const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
    launch(kernels.attention_partial,
           dim3(static_cast<unsigned>(rows), static_cast<unsigned>(kv_heads),
                static_cast<unsigned>(splits)),
           dim3(128), q->data_ptr(), keys->data_ptr(), values->data_ptr(), positions->data_ptr(),
           position_stride(*positions), partial->data_ptr(), stats->data_ptr(),
           static_cast<int>(heads), static_cast<int>(kv_heads), static_cast<long long>(capacity),
           static_cast<int>(chunk), scale);
    launch(kernels.attention_combine, dim3(static_cast<unsigned>(rows * heads)),
           dim3(static_cast<unsigned>(dim)), partial->data_ptr(), stats->data_ptr(),
           out->data_ptr(), static_cast<int>(splits), dim);
  });
}

}  // extern "C"
#else
// Without the CUDA headers: every entry point says so.
namespace at {
class Tensor;
}  // namespace at

namespace {
char* unavailable() { return peirce_message("this peirce-worker was built without CUDA kernels"); }
}  // namespace

extern "C" {
char* peirce_kernels_prepare(at::Tensor*, int64_t) { return unavailable(); }
char* peirce_rope_write(at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*,
                        at::Tensor*, at::Tensor*, int64_t, int64_t) {
  return unavailable();
}
char* peirce_silu_mul(at::Tensor*, at::Tensor*) { return unavailable(); }
char* peirce_decode_attention(at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*,
                              at::Tensor*, at::Tensor*, int64_t) {
  return unavailable();
}
}  // extern "C"
#endif  // PEIRCE_CUDA_KERNELS
