//! The attention kernel of a decoding step, chosen by name.
//!
//! `peirce-worker` keeps cuDNN's fused attention behind flash attention in libtorch's own
//! choice (see [`crate::device::prefer_flash_attention`]): cuDNN builds an execution plan for
//! every new key length, and eager KV-cache decoding would meet a new one each step. With a
//! key mask flash attention does not apply, so a decoding step of continuous batching (one
//! query per row, each row masked to its own positions) fell to the memory-efficient kernel.
//! Its key lengths come in a few buckets ([`crate::sampler::attention_bucket`]), so cuDNN's
//! plans are built once per bucket, and cuDNN's kernel is the faster one there: measured on an
//! H100 (bf16, batch 64, grouped queries, 2026-12-06), 15.2 µs against 31.2 µs per layer at
//! Qwen2-0.5B's shape and 576 keys, 26.7 µs against 28.6 µs at Qwen2.5-7B's and 320 keys.
//! tch does not bind it; `torch/csrc/attention.cpp` does.
//!
//! The first use in a process checks cuDNN's output against `scaled_dot_product_attention`'s
//! on the same inputs; if cuDNN is unavailable (no cuDNN attention for this GPU or shape), or
//! its output differs, decoding keeps libtorch's choice, and says so once on stderr.
//! `PEIRCE_CUDNN_DECODE=0` keeps libtorch's choice from the start (for comparisons).

use std::sync::atomic::{AtomicU8, Ordering};

use tch::Tensor;

use crate::dist::{ffi::AtTensor, take_error, tensor_ptr};
use crate::error::{Result, TorchError};

const UNKNOWN: u8 = 0;
const CUDNN: u8 = 1;
const LIBTORCH: u8 = 2;

/// Whether decoding uses cuDNN's kernel: unknown until the first CUDA decoding step.
static CHOICE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The largest difference from libtorch's kernel cuDNN's may show at its first use, relative
/// to the largest value of the reference output (bf16 rounds at 2^-8 relative; the kernels
/// accumulate in other orders).
const TOLERANCE: f64 = 2e-2;

/// `softmax(q k^T / sqrt(dim) + mask) v` for `q` `[rows, heads, queries, dim]`, `k`, `v`
/// `[rows, heads, keys, dim]` (any strides with a contiguous last dimension) and an additive
/// `mask` broadcastable to `[rows, heads, queries, keys]`, in `q`'s dtype: cuDNN's fused kernel
/// on CUDA where it is available, libtorch's `scaled_dot_product_attention` otherwise.
pub fn decode(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if !q.device().is_cuda() {
        return libtorch(q, k, v, mask);
    }
    match CHOICE.load(Ordering::Relaxed) {
        CUDNN => match cudnn(q, k, v, mask) {
            Ok(y) => Ok(y),
            Err(error) => {
                keep_libtorch(&format!("cuDNN attention failed ({error})"));
                libtorch(q, k, v, mask)
            }
        },
        LIBTORCH => libtorch(q, k, v, mask),
        _ => {
            let reference = libtorch(q, k, v, mask)?;
            if std::env::var("PEIRCE_CUDNN_DECODE").as_deref() == Ok("0") {
                CHOICE.store(LIBTORCH, Ordering::Relaxed);
                return Ok(reference);
            }
            match cudnn(q, k, v, mask).and_then(|y| Ok((difference(&y, &reference)?, y))) {
                Ok((difference, y)) if difference <= TOLERANCE => {
                    CHOICE.store(CUDNN, Ordering::Relaxed);
                    Ok(y)
                }
                Ok((difference, _)) => {
                    keep_libtorch(&format!(
                        "cuDNN attention differs from libtorch's by {difference:.3} of its \
                         largest value"
                    ));
                    Ok(reference)
                }
                Err(error) => {
                    keep_libtorch(&format!("cuDNN attention is unavailable ({error})"));
                    Ok(reference)
                }
            }
        }
    }
}

/// Which kernel decoding's attention uses in this process: `"cudnn"`, `"libtorch"`
/// (libtorch's own choice, always so on the CPU), or `"undecided"` before the first CUDA
/// decoding step.
pub fn decode_kernel() -> &'static str {
    match CHOICE.load(Ordering::Relaxed) {
        CUDNN => "cudnn",
        LIBTORCH => "libtorch",
        _ => "undecided",
    }
}

fn keep_libtorch(why: &str) {
    if CHOICE.swap(LIBTORCH, Ordering::Relaxed) != LIBTORCH {
        eprintln!("peirce-worker: {why}; decoding uses libtorch's attention kernels");
    }
}

/// The largest absolute difference between `y` and `reference`, relative to the largest
/// absolute value of `reference` (waits for the device).
fn difference(y: &Tensor, reference: &Tensor) -> Result<f64> {
    let scale = reference.f_abs()?.f_max()?.f_double_value(&[])?.max(1e-6);
    let worst = y
        .f_to_kind(tch::Kind::Float)?
        .f_sub(&reference.f_to_kind(tch::Kind::Float)?)?
        .f_abs()?
        .f_max()?
        .f_double_value(&[])?;
    Ok(if worst.is_finite() {
        worst / scale
    } else {
        f64::INFINITY
    })
}

fn libtorch(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_scaled_dot_product_attention(
        q,
        k,
        v,
        Some(mask),
        0.0,
        false,
        None,
        false,
    )?)
}

fn cudnn(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    extern "C" {
        fn peirce_cudnn_attention(
            q: *mut AtTensor,
            k: *mut AtTensor,
            v: *mut AtTensor,
            bias: *mut AtTensor,
            out: *mut *mut AtTensor,
        ) -> *mut std::ffi::c_char;
    }
    let mut out: *mut AtTensor = std::ptr::null_mut();
    // SAFETY: live tensors, borrowed for the call; on success the shim stores a new
    // `at::Tensor*` in `out`, which tch takes ownership of; every C++ exception comes back as
    // a message that `take_error` frees.
    let error = unsafe {
        take_error(peirce_cudnn_attention(
            tensor_ptr(q),
            tensor_ptr(k),
            tensor_ptr(v),
            tensor_ptr(mask),
            &mut out,
        ))
    };
    match error {
        Some(message) => Err(TorchError::Invalid(message)),
        None if out.is_null() => Err(TorchError::Invalid("no output".into())),
        // SAFETY: `out` is a tensor the shim allocated with `new`, as tch's own are.
        None => Ok(unsafe { Tensor::from_ptr(out.cast()) }),
    }
}
