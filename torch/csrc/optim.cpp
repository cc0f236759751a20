// AdamW in one pass: libtorch's fused `_fused_adamw_` kernel (CPU and CUDA) behind a C ABI
// for torch/src/optim.rs. One call updates one weight, its two moments and its step count
// from its gradient, reading and writing each once, where the same update written with
// separate tensor ops makes a dozen passes and allocates temporaries.
//
// The shims' error convention (message.h): every C++ exception is caught and returned as a
// malloc'd message (NULL: success), freed by Rust with `peirce_dist_free_error`; tensors arrive as
// `at::Tensor*` (tch's `C_tensor*`).

#include <cstdlib>
#include <cstring>
#include <exception>

#include "message.h"
#include <vector>

#include <ATen/ATen.h>
#include <ATen/ops/_fused_adamw.h>


extern "C" {

// Updates `param` (float32) from `grad` (float32, same device and shape) with AdamW's moments
// `exp_avg`, `exp_avg_sq` (float32) and `step` (a float32 scalar on the same device, already
// incremented for this step: the kernel reads it for the bias corrections).
char* peirce_fused_adamw(at::Tensor* param, at::Tensor* grad, at::Tensor* exp_avg,
                         at::Tensor* exp_avg_sq, at::Tensor* step, double lr, double beta1,
                         double beta2, double weight_decay, double eps) {
  return peirce_guarded([&] {
    std::vector<at::Tensor> params{*param};
    std::vector<at::Tensor> grads{*grad};
    std::vector<at::Tensor> exp_avgs{*exp_avg};
    std::vector<at::Tensor> exp_avg_sqs{*exp_avg_sq};
    std::vector<at::Tensor> max_exp_avg_sqs;
    std::vector<at::Tensor> steps{*step};
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr, beta1,
                      beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  }, "unknown C++ exception in _fused_adamw_");
}

}  // extern "C"
