// cuDNN's fused attention behind a C ABI for torch/src/attention.rs: libtorch's
// `_scaled_dot_product_cudnn_attention`, which tch does not bind. peirce-worker keeps cuDNN
// behind flash attention in `scaled_dot_product_attention`'s own choice (it builds a plan for
// every new key length, and eager decoding meets one per step), so the decoding step, whose
// key lengths come in a few buckets, asks for cuDNN by name here.
//
// Same rules as dist.cpp: every C++ exception is caught and returned as a malloc'd message
// (NULL: success), freed by Rust with `peirce_dist_free_error`; tensors arrive as
// `at::Tensor*` (tch's `C_tensor*`), and a result leaves as a new `at::Tensor*` that tch owns.

#include <exception>
#include <optional>
#include <tuple>

#include "message.h"

#include <ATen/ATen.h>
#include <ATen/ops/_scaled_dot_product_cudnn_attention.h>

extern "C" {

// softmax(q k^T / sqrt(dim) + bias) v for `q` [batch, heads, queries, dim], `k` and `v`
// [batch, heads, keys, dim] and an additive `bias` broadcastable to [batch, heads, queries,
// keys] in q's dtype; the result, [batch, heads, queries, dim], in `*out`.
char* peirce_cudnn_attention(at::Tensor* q, at::Tensor* k, at::Tensor* v, at::Tensor* bias,
                             at::Tensor** out) {
  try {
    auto result = at::_scaled_dot_product_cudnn_attention(
        *q, *k, *v, std::optional<at::Tensor>(*bias), /*compute_log_sumexp=*/false,
        /*dropout_p=*/0.0, /*is_causal=*/false, /*return_debug_mask=*/false);
    *out = new at::Tensor(std::get<0>(result));
    return nullptr;
  } catch (const std::exception& error) {
    return peirce_message(error.what());
  } catch (...) {
    return peirce_message("unknown C++ exception in _scaled_dot_product_cudnn_attention");
  }
}

}  // extern "C"
