// peirce's own CUDA kernels for the decoding step (torch/src/kernels.rs), compiled at run
// time with NVRTC for the GPU at hand and launched on libtorch's current stream, so a
// captured CUDA graph records them like any libtorch kernel.
//
// Why: a decoding step of a small batch is mostly matrix products that read the weights
// once, plus a tail of small kernels that each cost a launch and a pass over the
// activations. Those tails are done here, each in one kernel that computes what the libtorch
// ops it replaces compute (fp32 arithmetic, rounded to bf16 at the same points):
//   - `peirce_rope_write`: the rotary embedding of q and k, the new key and value written
//     at each row's own position of the KV cache, and q laid out for attention (replaces a
//     batched matrix product and two scatters);
//   - `peirce_silu_mul`: SwiGLU's `silu(gate) * up` from the concatenated gate/up product
//     (replaces two elementwise kernels), 16 bytes per load;
//   - `peirce_rms_norm`: the RMS normalization with its weight, one block per row, each
//     thread reading 16 bytes of the row and of the weight.
// And `peirce_decode_attention` is a split-K decoding attention on tensor cores in which each
// row reads its own keys only (a combine kernel merges the splits). Beside the
// step, `peirce_transpose_into` writes a weight's transpose into (part of) the decoder's
// concatenated copy, tiled through shared memory.
// bfloat16 only: the dtype they were measured in on the GPU.
//
// No CUDA toolkit is needed to build or run this: the driver (`libcuda.so.1`) and NVRTC
// (`libnvrtc.so.<CUDA major>`, shipped with PyTorch's CUDA wheels beside torch) are opened
// with dlopen at first use; a machine without them gets an error message, and the caller
// falls back to libtorch's ops. Built only with the CUDA headers (build.rs defines
// PEIRCE_CUDA_KERNELS); without them every call says the kernels are unavailable.
//
// The shims' error convention (message.h): every C++ exception is caught and returned as a
// malloc'd message (NULL: success), freed by Rust with `peirce_dist_free_error`.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <ATen/Context.h>

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
// inv_freq: [dim / 2] fp32, the rotary frequencies; a row at position p rotates element
// pair i by the angle p * inv_freq[i], whose cosine and sine are rounded to `scalar` (as
// libtorch's `cos` and `sin` of the same fp32 angle, cast to the model's dtype, are).
// positions: each row's position, `positions[row * position_stride]`.
// q: [rows, heads, dim] out. keys, values: [rows, kv_heads, capacity, dim], written at the
// row's position.
// Rotated element j: x[j] cos[j] - x[j + half] sin[j] (j < half), x[j] cos[j] +
// x[j - half] sin[j - half] (j >= half): both products are exact in fp32 and the sum is
// rounded once, as the matrix product with two nonzeros per column does.
extern "C" __global__ void rope_write(const scalar* __restrict__ qkv,
                                      const float* __restrict__ inv_freq,
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
  const float angle = (float)position * inv_freq[j < half ? j : j - half];
  const float c = load(store(cosf(angle)));
  const float s = load(store(sinf(angle)));
  const float rotated = j < half ? __fmaf_rn(-load(x[j + half]), s, load(x[j]) * c)
                                 : __fmaf_rn(load(x[j - half]), s, load(x[j]) * c);
  if (head < heads) {
    q[((long long)row * heads + head) * dim + j] = store(rotated);
  } else {
    const int kv = head - heads;
    keys[(((long long)row * kv_heads + kv) * capacity + position) * dim + j] = store(rotated);
  }
}

// 8 consecutive elements as loaded (16 bytes), kept as raw bytes; the pointers must be
// 16-byte aligned (the callers check).
typedef uint4 Raw8;
__device__ __forceinline__ Raw8 load8(const scalar* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ Raw8 zero8() { return make_uint4(0u, 0u, 0u, 0u); }
__device__ __forceinline__ void store8(scalar* p, Raw8 v) { *reinterpret_cast<uint4*>(p) = v; }
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  return (unsigned)store(lo) | ((unsigned)store(hi) << 16);
}
// The 8 elements of `v` in fp32, and back (each rounded as `store` rounds).
__device__ __forceinline__ void unpack8(Raw8 v, float* f) {
  const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(words[i] << 16);
    f[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ Raw8 pack8(const float* f) {
  return make_uint4(pack_bf16(f[0], f[1]), pack_bf16(f[2], f[3]), pack_bf16(f[4], f[5]),
                    pack_bf16(f[6], f[7]));
}

// gate_up: [rows, 2 inner] ([gate | up] per row); out: [rows, inner] = silu(gate) * up, with
// silu rounded to `scalar` before the product, as two separate kernels would. Each thread
// takes 8 consecutive outputs (inner % 8 == 0).
extern "C" __global__ void silu_mul(const scalar* __restrict__ gate_up,
                                    scalar* __restrict__ out, int rows, int inner) {
  const int pieces = inner / 8;
  const int total = rows * pieces;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int row = i / pieces;
    const int col = (i - row * pieces) * 8;
    const scalar* source = gate_up + (long long)row * 2 * inner + col;
    float gate[8], up[8], result[8];
    unpack8(load8(source), gate);
    unpack8(load8(source + inner), up);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float silu = load(store(gate[e] / (1.0f + expf(-gate[e]))));
      result[e] = silu * up[e];
    }
    store8(out + (long long)row * inner + col, pack8(result));
  }
}

// RMS normalization with its weight: out = x * rsqrt(mean(x^2) + eps) * weight, in fp32,
// rounded once (as libtorch's fused `rms_norm` with a weight). One block per row of `width`
// (width % 8 == 0), whole warps: thread t takes elements [8 t, 8 t + 8) of the row and of the
// weight, the threads past the row add zeros.
extern "C" __global__ void rms_norm(const scalar* __restrict__ x, const scalar* __restrict__ weight,
                                    scalar* __restrict__ out, int width, float eps) {
  __shared__ float warp_sums[32];
  const int t = threadIdx.x;
  const int warp = t >> 5;
  const int lane = t & 31;
  const bool inside = 8 * t < width;
  const long long offset = (long long)blockIdx.x * width + 8 * t;
  float v[8], w[8];
  unpack8(inside ? load8(x + offset) : zero8(), v);
  unpack8(inside ? load8(weight + 8 * t) : zero8(), w);
  float sum = 0.0f;
#pragma unroll
  for (int e = 0; e < 8; ++e) sum = __fmaf_rn(v[e], v[e], sum);
#pragma unroll
  for (int step = 16; step > 0; step >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, step);
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    sum = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.0f;
#pragma unroll
    for (int step = 16; step > 0; step >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, step);
    if (lane == 0) warp_sums[0] = sum;
  }
  __syncthreads();
  const float scale = rsqrtf(warp_sums[0] / (float)width + eps);
  if (inside) {
    float result[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) result[e] = v[e] * scale * w[e];
    store8(out + offset, pack8(result));
  }
}

// out[c * out_stride + r] = in[r * cols + c] for in: [rows, cols] contiguous, rows and cols
// even, out_stride even: one block of (32, 8) threads per 64x64 tile, read by rows and
// written by columns through shared memory, two elements (4 bytes) per access both ways (a
// wider access than one element is what brings a transposition near the copy rate). The
// tile's rows are 66 elements apart (33 words: its 4-byte row writes hit 32 banks; its column
// reads, two rows per thread, at most two ways each).
#define TILE 64
extern "C" __global__ void transpose_into(const scalar* __restrict__ in, scalar* __restrict__ out,
                                          int rows, int cols, long long out_stride) {
  __shared__ unsigned int tile[TILE][TILE / 2 + 1];
  const int r0 = blockIdx.y * TILE;
  const int c0 = blockIdx.x * TILE;
  const int x = threadIdx.x;
  const int c = c0 + 2 * x;
  for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
    const int r = r0 + i;
    if (r < rows && c < cols) {
      tile[i][x] = *reinterpret_cast<const unsigned int*>(in + (long long)r * cols + c);
    }
  }
  __syncthreads();
  const scalar* cells = reinterpret_cast<const scalar*>(&tile[0][0]);
  const int pitch = 2 * (TILE / 2 + 1);
  const int r = r0 + 2 * x;
  for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
    const int oc = c0 + j;
    if (r < rows && oc < cols) {
      const unsigned int pair = (unsigned int)cells[(2 * x) * pitch + j] |
                                ((unsigned int)cells[(2 * x + 1) * pitch + j] << 16);
      *reinterpret_cast<unsigned int*>(out + (long long)oc * out_stride + r) = pair;
    }
  }
}

#define PEIRCE_NEG_INF __uint_as_float(0xff800000u)
#define PEIRCE_MAX_GROUPS 8

// Decoding attention, split over the keys (flash-decoding), on tensor cores (sm_80 and
// later): one block of MMA_WARPS warps per (row, key/value head, split of the keys), each
// warp taking every MMA_WARPS-th tile of 16 keys. How many of the `gridDim.z` splits a row
// uses follows from its own length (`row_splits`): one per `min_keys` keys it attends to
// (the last one fewer), so a short row is not split and a long one is split evenly; the
// blocks of the splits it does not use return at once. A warp's `mma.m16n8k16` multiplies the
// key/value head's grouped queries (rows 0..groups of the 16-row operand; the rest zero) by a
// tile's keys, and the tile's probabilities (rounded to bf16, as flash attention rounds them)
// by its values; the online softmax runs in fp32 on the scores' fragments (base 2), the warps'
// results are merged in the block, and each block writes its unnormalized output and (max,
// sum) per query for `decode_attention_combine` to merge the splits; a row that uses a
// single split gets its normalized output (`attended`) from that block. A row attends to its
// keys 0..=position only, so it reads its own keys, not the longest row's. The dot product's
// 16-element steps take a head's dimensions in an order (the same for queries and keys) that
// lets each thread read 8 consecutive elements of a key with one 16-byte load; values go
// through shared memory (`cp.async`) and are read transposed by `ldmatrix`.
// PEIRCE_HEAD_DIM (64 or 128) is fixed at compile time.
// q: [rows, heads, dim]; keys, values: [rows, kv_heads, capacity, dim]; partial: [rows,
// heads, splits, dim] fp32; stats: [rows, heads, splits, 2] fp32; attended: [rows, heads, dim].
#if defined(PEIRCE_HEAD_DIM) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800)
#define DIM PEIRCE_HEAD_DIM
#define MMA_WARPS 4
#define MMA_KEYS 16
#define V_STRIDE (DIM + 8)

// The splits a row of `length` keys (at least one) uses, of at most `splits`: one per
// `min_keys` keys begun. Its split s covers keys [s chunk, min((s + 1) chunk, length)), chunk
// being `split_keys`, the length shared evenly; every split used has keys while min_keys >=
// splits - 1 (then (used - 1)^2 < length), which the caller keeps.
__device__ __forceinline__ int row_splits(long long length, int min_keys, int splits) {
  const long long by_length = (length + min_keys - 1) / min_keys;
  return by_length < 1 ? 1 : (by_length < splits ? (int)by_length : splits);
}
__device__ __forceinline__ long long split_keys(long long length, int used) {
  return (length + used - 1) / used;
}

// d = a b + c for one m16n8k16 tile; rows 8..15 of `a` are zero and their results unused.
__device__ __forceinline__ void mma_rows8(float& d0, float& d1, unsigned a0, unsigned a2,
                                          unsigned b0, unsigned b1) {
  float unused0 = 0.0f, unused1 = 0.0f;
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d0), "+f"(d1), "+f"(unused0), "+f"(unused1)
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

extern "C" __global__ void __launch_bounds__(32 * MMA_WARPS) decode_attention_partial(
    const scalar* __restrict__ q, const scalar* __restrict__ keys,
    const scalar* __restrict__ values, const long long* __restrict__ positions,
    long long position_stride, float* __restrict__ partial, float* __restrict__ stats,
    scalar* __restrict__ attended, int heads, int kv_heads, long long capacity, int min_keys,
    float scale) {
  __shared__ __align__(16) scalar value_tiles[MMA_WARPS][MMA_KEYS * V_STRIDE];
  __shared__ __align__(16) float warp_out[MMA_WARPS][PEIRCE_MAX_GROUPS][DIM];
  __shared__ float warp_max[MMA_WARPS][PEIRCE_MAX_GROUPS];
  __shared__ float warp_sum[MMA_WARPS][PEIRCE_MAX_GROUPS];
  const int row = blockIdx.x;
  const int kv = blockIdx.y;
  const int split = blockIdx.z;
  const int splits = gridDim.z;
  const int groups = heads / kv_heads;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int r = lane >> 2;  // this thread's query row, and its key in a tile's half
  const int c = lane & 3;
  long long length = positions[row * position_stride] + 1;
  if (length > capacity) length = capacity;
  const int used = row_splits(length, min_keys, splits);
  if (split >= used) return;  // the whole block: nothing of it is read
  const long long chunk = split_keys(length, used);
  const long long begin = (long long)split * chunk;
  const long long end = begin + chunk < length ? begin + chunk : length;
  // Query row r's elements [32 s + 8 c, + 8) for every s: the A operand of two k-steps.
  Raw8 query[DIM / 32];
  const scalar* q_row = q + ((long long)row * heads + (long long)kv * groups + r) * DIM;
#pragma unroll
  for (int s = 0; s < DIM / 32; ++s) query[s] = r < groups ? load8(q_row + 32 * s + 8 * c) : zero8();
  float out[DIM / 8][2];
#pragma unroll
  for (int d = 0; d < DIM / 8; ++d) out[d][0] = out[d][1] = 0.0f;
  float top = PEIRCE_NEG_INF;  // base-2 units
  float sum = 0.0f;            // this thread's part of its row's sum
  const float scale2 = scale * 1.4426950408889634f;
  const long long head_offset = ((long long)row * kv_heads + kv) * capacity * DIM;
  const scalar* k_head = keys + head_offset;
  const scalar* v_head = values + head_offset;
  scalar* tile_values = value_tiles[warp];
  const unsigned tile_address = (unsigned)__cvta_generic_to_shared(tile_values);
  for (long long tile = begin + warp * MMA_KEYS; tile < end; tile += MMA_WARPS * MMA_KEYS) {
    const int n = end - tile < MMA_KEYS ? (int)(end - tile) : MMA_KEYS;
    // Values into shared memory (keys past the end as zeros), keys into registers.
#pragma unroll
    for (int i = 0; i < MMA_KEYS * DIM / 8 / 32; ++i) {
      const int piece = lane + 32 * i;
      const int key = piece / (DIM / 8);
      const int part = piece % (DIM / 8);
      const unsigned target = tile_address + (unsigned)((key * V_STRIDE + 8 * part) * 2);
      const scalar* source = v_head + (tile + (key < n ? key : 0)) * DIM + 8 * part;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(target),
                   "l"(source), "r"(key < n ? 16 : 0));
    }
    asm volatile("cp.async.commit_group;\n" ::);
    Raw8 key_slices[2][DIM / 32];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int key = 8 * j + r;
#pragma unroll
      for (int s = 0; s < DIM / 32; ++s)
        key_slices[j][s] = key < n ? load8(k_head + (tile + key) * DIM + 32 * s + 8 * c) : zero8();
    }
    // Scores of row r against keys 8 j + 2 c and 8 j + 2 c + 1.
    float score[2][2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
      for (int s = 0; s < DIM / 32; ++s) {
        mma_rows8(d0, d1, query[s].x, query[s].y, key_slices[j][s].x, key_slices[j][s].y);
        mma_rows8(d0, d1, query[s].z, query[s].w, key_slices[j][s].z, key_slices[j][s].w);
      }
      score[j][0] = 8 * j + 2 * c < n ? d0 * scale2 : PEIRCE_NEG_INF;
      score[j][1] = 8 * j + 2 * c + 1 < n ? d1 * scale2 : PEIRCE_NEG_INF;
    }
    float tile_max = fmaxf(fmaxf(score[0][0], score[0][1]), fmaxf(score[1][0], score[1][1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float next = fmaxf(top, tile_max);
    const float factor = exp2f(top - next);
    top = next;
    float p[2][2];
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) p[j][e] = exp2f(score[j][e] - next);
    sum = sum * factor + (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]);
#pragma unroll
    for (int d = 0; d < DIM / 8; ++d) {
      out[d][0] *= factor;
      out[d][1] *= factor;
    }
    const unsigned p_low = pack_bf16(p[0][0], p[0][1]);
    const unsigned p_high = pack_bf16(p[1][0], p[1][1]);
    asm volatile("cp.async.wait_all;\n" ::);
    __syncwarp();
    // O += P V, two 8-element column tiles per `ldmatrix`.
    const int matrix = lane >> 3;
    const int value_key = (matrix & 1) * 8 + (lane & 7);
#pragma unroll
    for (int d = 0; d < DIM / 8; d += 2) {
      const unsigned address =
          tile_address + (unsigned)((value_key * V_STRIDE + 8 * d + (matrix >> 1) * 8) * 2);
      unsigned b0, b1, b2, b3;
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                   : "r"(address));
      mma_rows8(out[d][0], out[d][1], p_low, p_high, b0, b1);
      mma_rows8(out[d + 1][0], out[d + 1][1], p_low, p_high, b2, b3);
    }
    __syncwarp();
  }
  sum += __shfl_xor_sync(0xffffffffu, sum, 1);
  sum += __shfl_xor_sync(0xffffffffu, sum, 2);
  if (c == 0) {
    warp_max[warp][r] = top;
    warp_sum[warp][r] = sum;
  }
#pragma unroll
  for (int d = 0; d < DIM / 8; ++d) {
    warp_out[warp][r][8 * d + 2 * c] = out[d][0];
    warp_out[warp][r][8 * d + 2 * c + 1] = out[d][1];
  }
  __syncthreads();
  // The warps merged: this split's unnormalized output and (max, sum) per query (element i:
  // query row i / DIM, dimension i % DIM). A row's single split is its output; otherwise each
  // block writes its split, stats in natural-log units, for `decode_attention_combine`.
  const long long first_head = (long long)row * heads + (long long)kv * groups;
  const long long first_slot = first_head * splits;
  for (int i = threadIdx.x; i < groups * DIM; i += 32 * MMA_WARPS) {
    const int g = i / DIM;
    const int d = i % DIM;
    float best = PEIRCE_NEG_INF;
#pragma unroll
    for (int w = 0; w < MMA_WARPS; ++w) best = fmaxf(best, warp_max[w][g]);
    float total = 0.0f;
    float weight_sum = 0.0f;
#pragma unroll
    for (int w = 0; w < MMA_WARPS; ++w) {
      if (warp_max[w][g] != PEIRCE_NEG_INF) {
        const float weight = exp2f(warp_max[w][g] - best);
        total += warp_out[w][g][d] * weight;
        weight_sum += warp_sum[w][g] * weight;
      }
    }
    if (used == 1) {
      attended[(first_head + g) * DIM + d] = store(total / weight_sum);
      continue;
    }
    const long long slot = first_slot + (long long)g * splits + split;
    partial[slot * DIM + d] = total;
    if (d == 0) {
      stats[slot * 2] = best * 0.6931471805599453f;
      stats[slot * 2 + 1] = weight_sum;
    }
  }
}

// One block per (row, head), `DIM` threads: the splits the row used, their outputs rescaled
// to the common max and divided by the common sum (a kernel of its own measured faster than
// merging in the last split's block: 6.30 against 6.38 ms per Qwen2.5-7B step, batch 64, one
// H100). A row that used one split has its output already. Every split's stats and output
// are loaded at once with the row's position (those past the splits it used, unwritten, are
// not used), so the kernel waits on one memory round trip, not on the position first.
#define PEIRCE_MAX_SPLITS 16
extern "C" __global__ void decode_attention_combine(const float* __restrict__ partial,
                                                    const float* __restrict__ stats,
                                                    scalar* __restrict__ out,
                                                    const long long* __restrict__ positions,
                                                    long long position_stride, int heads,
                                                    long long capacity, int min_keys,
                                                    int splits) {
  const long long head = blockIdx.x;
  const int t = threadIdx.x;
  const float* head_stats = stats + head * splits * 2;
  float maxima[PEIRCE_MAX_SPLITS], sums[PEIRCE_MAX_SPLITS], values[PEIRCE_MAX_SPLITS];
#pragma unroll
  for (int s = 0; s < PEIRCE_MAX_SPLITS; ++s) {
    if (s < splits) {
      maxima[s] = head_stats[2 * s];
      sums[s] = head_stats[2 * s + 1];
      values[s] = partial[(head * splits + s) * DIM + t];
    }
  }
  long long length = positions[head / heads * position_stride] + 1;
  if (length > capacity) length = capacity;
  const int used = row_splits(length, min_keys, splits);
  if (used == 1) return;
  float top = PEIRCE_NEG_INF;
#pragma unroll
  for (int s = 0; s < PEIRCE_MAX_SPLITS; ++s) {
    if (s < used) top = fmaxf(top, maxima[s]);
  }
  float sum = 0.0f;
  float value = 0.0f;
#pragma unroll
  for (int s = 0; s < PEIRCE_MAX_SPLITS; ++s) {
    if (s < used) {
      const float weight = expf(maxima[s] - top);
      sum += sums[s] * weight;
      value += values[s] * weight;
    }
  }
  out[head * DIM + t] = store(value / sum);
}
#endif
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
  CUfunction rms_norm = nullptr;
  CUfunction transpose_into = nullptr;
};

// Compiles the kernels for the current device's architecture and the attention's
// `head_dim` (0: no attention kernel), and loads them into the current context.
Module compile(int head_dim) {
  const Api& cuda = api();
  const cudaDeviceProp* properties = at::cuda::getCurrentDeviceProperties();
  const std::string arch = "--gpu-architecture=sm_" + std::to_string(properties->major) +
                           std::to_string(properties->minor);
  if (head_dim > 0 && properties->major < 8) {
    throw std::runtime_error(
        "peirce kernels: the decoding attention runs on tensor cores, compute capability 8.0 "
        "or later (this GPU: " + std::to_string(properties->major) + "." +
        std::to_string(properties->minor) + ")");
  }
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
    check(cuda.cuModuleGetFunction(&kernels.attention_combine, module, "decode_attention_combine"),
          "decode_attention_combine");
  }
  check(cuda.cuModuleGetFunction(&kernels.rms_norm, module, "rms_norm"), "rms_norm");
  check(cuda.cuModuleGetFunction(&kernels.transpose_into, module, "transpose_into"),
        "transpose_into");
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

// Whether `t`'s data starts on a 16-byte boundary (the kernels' 16-byte loads need it).
bool aligned(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// Widths the RMS norm kernel takes: whole 16-byte pieces, one thread each, at most 1024.
bool rms_norm_fits(int64_t width) { return width > 0 && width % 8 == 0 && width <= 8192; }

void require(bool condition, const char* what) {
  if (!condition) {
    throw std::runtime_error(std::string("peirce kernels: ") + what);
  }
}

}  // namespace

// Runs `body`, returning any C++ exception as a message.
template <typename F>
char* guarded(F&& body) {
  return peirce_guarded(std::forward<F>(body), "unknown C++ exception in peirce kernels");
}

extern "C" {

// Compiles (once per device and head size) and loads the kernels for `like`'s device
// (bf16 only), the attention kernel for `head_dim` (0: without it); an error says why they
// cannot run there.
char* peirce_kernels_prepare(at::Tensor* like, int64_t head_dim) {
  return guarded([&] { module_for(*like, static_cast<int>(head_dim)); });
}

// `*major` and `*minor`: the compute capability of `like`'s CUDA device; `*multiprocessors`:
// its SM count.
char* peirce_kernels_capability(at::Tensor* like, int* major, int* minor,
                                int* multiprocessors) {
  return guarded([&] {
    require(like->is_cuda(), "tensors must be on a CUDA device");
    const cudaDeviceProp* properties = at::cuda::getDeviceProperties(like->get_device());
    *major = properties->major;
    *minor = properties->minor;
    *multiprocessors = properties->multiProcessorCount;
  });
}

// See `rope_write` above. qkv: [rows, (heads + 2 kv_heads) dim] contiguous; inv_freq: [dim
// / 2] fp32, contiguous; positions: int64, `rows` of them `position_stride` apart; q: [rows,
// heads, dim] contiguous; keys, values: [rows, kv_heads, capacity, dim] contiguous. Every
// other floating tensor of qkv's dtype, all on one device.
char* peirce_rope_write(at::Tensor* qkv, at::Tensor* inv_freq, at::Tensor* positions,
                        at::Tensor* q, at::Tensor* keys, at::Tensor* values, int64_t heads,
                        int64_t kv_heads) {
  return guarded([&] {
    const Module& kernels = module_for(*qkv, -1);
    const int64_t rows = keys->size(0);
    const int64_t capacity = keys->size(2);
    int dim = static_cast<int>(keys->size(3));
    require(keys->dim() == 4 && keys->size(1) == kv_heads && values->sizes() == keys->sizes(),
            "keys and values must be [rows, kv_heads, capacity, dim] alike");
    require(qkv->numel() == rows * (heads + 2 * kv_heads) * dim && qkv->is_contiguous(),
            "qkv must be [rows, (heads + 2 kv_heads) dim], contiguous");
    require(inv_freq->numel() == dim / 2 && inv_freq->is_contiguous() &&
                inv_freq->scalar_type() == at::kFloat && inv_freq->device() == qkv->device(),
            "inv_freq must be fp32 [dim / 2], contiguous, on qkv's device");
    require(q->numel() == rows * heads * dim && q->is_contiguous(),
            "q must be [rows, heads, dim], contiguous");
    require(keys->is_contiguous() && values->is_contiguous(), "the cache must be contiguous");
    require(positions->scalar_type() == at::kLong && positions->numel() == rows,
            "positions must be int64, one per row");
    require(dim % 2 == 0 && dim <= 1024, "head_dim must be even and at most 1024");
    for (const at::Tensor* t : {q, keys, values}) {
      require(t->scalar_type() == qkv->scalar_type() && t->device() == qkv->device(),
              "every tensor must have qkv's dtype and device");
    }
    require(positions->device() == qkv->device(), "positions must be on qkv's device");
    OnDevice on(qkv->device());
    launch(kernels.rope_write,
           dim3(static_cast<unsigned>(rows), static_cast<unsigned>(heads + 2 * kv_heads)),
           dim3(static_cast<unsigned>(dim)), qkv->data_ptr(), inv_freq->data_ptr(),
           positions->data_ptr(), position_stride(*positions), q->data_ptr(), keys->data_ptr(),
           values->data_ptr(), static_cast<int>(heads), static_cast<int>(kv_heads), dim,
           static_cast<long long>(capacity));
  });
}

// out ([rows, inner], contiguous) = silu(gate) * up for gate_up ([rows, 2 inner],
// contiguous), inner a multiple of 8.
char* peirce_silu_mul(at::Tensor* gate_up, at::Tensor* out) {
  return guarded([&] {
    const Module& kernels = module_for(*gate_up, -1);
    require(gate_up->is_contiguous() && out->is_contiguous(), "tensors must be contiguous");
    require(out->scalar_type() == gate_up->scalar_type() && out->device() == gate_up->device(),
            "out must have gate_up's dtype and device");
    const int64_t inner = out->size(-1);
    const int64_t rows = inner == 0 ? 0 : out->numel() / inner;
    require(gate_up->numel() == 2 * rows * inner && gate_up->size(-1) == 2 * inner,
            "gate_up must be [rows, 2 inner] for out [rows, inner]");
    require(inner % 8 == 0 && aligned(*gate_up) && aligned(*out),
            "silu_mul takes widths that are multiples of 8, 16-byte aligned");
    require(inner < (int64_t{1} << 31), "silu_mul takes widths below 2^31");
    if (rows * inner == 0) {
      return;
    }
    OnDevice on(gate_up->device());
    // The kernel indexes in int: a prefill's product, which can pass 2^31 elements, runs in
    // slices of rows below that (one launch for a decoding step's).
    const int64_t slice = std::max<int64_t>(((int64_t{1} << 31) - 1) / inner, 1);
    const int64_t bytes = static_cast<int64_t>(out->element_size());
    for (int64_t start = 0; start < rows; start += slice) {
      const int64_t count = std::min(slice, rows - start);
      const int64_t threads = 256;
      const int64_t blocks = std::min<int64_t>((count * inner / 8 + threads - 1) / threads, 65535);
      void* source = static_cast<char*>(gate_up->data_ptr()) + start * 2 * inner * bytes;
      void* target = static_cast<char*>(out->data_ptr()) + start * inner * bytes;
      launch(kernels.silu_mul, dim3(static_cast<unsigned>(blocks)),
             dim3(static_cast<unsigned>(threads)), source, target, static_cast<int>(count),
             static_cast<int>(inner));
    }
  });
}

// out = x * rsqrt(mean(x^2) + eps) * weight over x's last dimension (its width: a multiple
// of 8, at most 8192); x and out contiguous, alike; weight: [width].
char* peirce_rms_norm(at::Tensor* x, at::Tensor* weight, at::Tensor* out, double eps) {
  return guarded([&] {
    const Module& kernels = module_for(*x, -1);
    const int64_t width = x->dim() == 0 ? 0 : x->size(-1);
    require(rms_norm_fits(width), "rms_norm takes widths that are multiples of 8, at most 8192");
    require(x->is_contiguous() && out->is_contiguous() && out->sizes() == x->sizes(),
            "x and out must be alike, contiguous");
    require(weight->numel() == width && weight->is_contiguous(), "weight must be [width]");
    for (const at::Tensor* t : {weight, out}) {
      require(t->scalar_type() == x->scalar_type() && t->device() == x->device(),
              "every tensor must have x's dtype and device");
      require(aligned(*t), "tensors must be 16-byte aligned");
    }
    require(aligned(*x), "tensors must be 16-byte aligned");
    const int64_t rows = x->numel() / std::max<int64_t>(width, 1);
    if (rows == 0) {
      return;
    }
    OnDevice on(x->device());
    const int64_t threads = (width / 8 + 31) / 32 * 32;
    launch(kernels.rms_norm, dim3(static_cast<unsigned>(rows)),
           dim3(static_cast<unsigned>(threads)), x->data_ptr(), weight->data_ptr(),
           out->data_ptr(), static_cast<int>(width), static_cast<float>(eps));
  });
}

// out[c][r] = in[r][c] for in [rows, cols] contiguous and out [cols, rows] with unit column
// stride (a column range of a wider matrix, say), of in's dtype and device.
char* peirce_transpose_into(at::Tensor* in, at::Tensor* out) {
  return guarded([&] {
    const Module& kernels = module_for(*in, -1);
    require(in->dim() == 2 && in->is_contiguous(), "in must be 2-D, contiguous");
    const int64_t rows = in->size(0);
    const int64_t cols = in->size(1);
    require(out->dim() == 2 && out->size(0) == cols && out->size(1) == rows &&
                (rows <= 1 || out->stride(1) == 1),
            "out must be [cols, rows] of in, with unit column stride");
    require(out->scalar_type() == in->scalar_type() && out->device() == in->device(),
            "out must have in's dtype and device");
    require(rows < (int64_t{1} << 31) && cols < (int64_t{1} << 31) && (rows + 63) / 64 <= 65535,
            "transpose_into takes fewer than 2^31 columns and 65535 * 64 rows");
    require(rows % 2 == 0 && cols % 2 == 0 && (rows <= 1 || out->stride(0) % 2 == 0) &&
                reinterpret_cast<uintptr_t>(in->data_ptr()) % 4 == 0 &&
                reinterpret_cast<uintptr_t>(out->data_ptr()) % 4 == 0,
            "transpose_into takes even widths and strides, 4-byte aligned");
    if (rows * cols == 0) {
      return;
    }
    OnDevice on(in->device());
    launch(kernels.transpose_into,
           dim3(static_cast<unsigned>((cols + 63) / 64), static_cast<unsigned>((rows + 63) / 64)),
           dim3(32, 8), in->data_ptr(), out->data_ptr(), static_cast<int>(rows),
           static_cast<int>(cols), static_cast<long long>(out->stride(0)));
  });
}

// Decoding attention of one new token per row: q ([rows, heads, dim], contiguous) over the
// cached keys and values ([rows, kv_heads, capacity, dim], contiguous), row r over its
// positions 0..=positions[r] (int64, `position_stride` apart), in at most `splits` splits,
// one per `min_keys` keys of the row (splits - 1 at most, so that each split a row uses has
// keys); partial ([rows, heads, splits, dim]) and stats ([rows, heads, splits, 2]) are fp32
// scratch (unused with one split); out: [rows, heads, dim], q's dtype.
char* peirce_decode_attention(at::Tensor* q, at::Tensor* keys, at::Tensor* values,
                              at::Tensor* positions, at::Tensor* partial, at::Tensor* stats,
                              at::Tensor* out, int64_t min_keys) {
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
    const int64_t splits = partial->dim() == 4 ? partial->size(2) : 0;
    require(splits <= 16, "at most 16 splits (the combine kernel's PEIRCE_MAX_SPLITS)");
    require(min_keys >= splits - 1 && min_keys > 0 && min_keys <= (1 << 30),
            "min_keys must be positive and at least splits - 1");
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
           out->data_ptr(), static_cast<int>(heads), static_cast<int>(kv_heads),
           static_cast<long long>(capacity), static_cast<int>(min_keys), scale);
    if (splits > 1) {
      launch(kernels.attention_combine, dim3(static_cast<unsigned>(rows * heads)),
             dim3(static_cast<unsigned>(dim)), partial->data_ptr(), stats->data_ptr(),
             out->data_ptr(), positions->data_ptr(), position_stride(*positions),
             static_cast<int>(heads), static_cast<long long>(capacity),
             static_cast<int>(min_keys), static_cast<int>(splits));
    }
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
char* peirce_kernels_capability(at::Tensor*, int*, int*, int*) { return unavailable(); }
char* peirce_rope_write(at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*,
                        at::Tensor*, int64_t, int64_t) {
  return unavailable();
}
char* peirce_silu_mul(at::Tensor*, at::Tensor*) { return unavailable(); }
char* peirce_rms_norm(at::Tensor*, at::Tensor*, at::Tensor*, double) { return unavailable(); }
char* peirce_transpose_into(at::Tensor*, at::Tensor*) { return unavailable(); }
char* peirce_decode_attention(at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*, at::Tensor*,
                              at::Tensor*, at::Tensor*, int64_t) {
  return unavailable();
}
}  // extern "C"
#endif  // PEIRCE_CUDA_KERNELS

extern "C" {
// libtorch's preferred library for CUDA matrix products: cuBLASLt when `lt` is 1, libtorch's
// default when 0. `*previous` gets the preference before (1: cuBLASLt, 0: any other).
char* peirce_blas_prefer_lt(int lt, int* previous) {
  return peirce_guarded(
      [&] {
        *previous =
            at::globalContext().blasPreferredBackend() == at::BlasBackend::Cublaslt ? 1 : 0;
        at::globalContext().setBlasPreferredBackend(lt != 0 ? at::BlasBackend::Cublaslt
                                                            : at::BlasBackend::Default);
      },
      "unknown C++ exception setting the BLAS library");
}
}  // extern "C"
