//! peirce's own CUDA kernels for the decoding step (`torch/csrc/kernels.cpp`).
//!
//! A decoding step of a small batch reads every weight once in a few large matrix products;
//! what else it launches is a tail of small kernels, each a launch and a pass over the
//! activations, and at Qwen2.5-7B's shape that tail is a sixth of the step (docs §20). Its
//! pieces are done here, each in one kernel:
//!
//! - [`rope_write`]: q and k rotated (each row's cosines and sines computed in the kernel
//!   from the rotary frequencies), the new key and value written at each row's own position
//!   of the KV cache, q laid out for attention: one kernel where libtorch's ops take a
//!   batched matrix product, two scatters and the per-step rotation's own dozen;
//! - [`silu_mul`]: SwiGLU's `silu(gate) * up`: one kernel instead of two, reading 16 bytes at
//!   a time;
//! - [`rms_norm`]: the RMS normalization with its weight, one block per row reading the row
//!   and the weight 16 bytes at a time (libtorch's fused kernel took 5.3 µs a call at
//!   Qwen2.5-7B's width, batch 64, on an H100: 57 calls, 0.30 ms of a 6.68 ms step).
//!
//! They compute what the libtorch ops they replace compute, in fp32, rounded to the dtype at
//! the same points; libtorch's rotation runs as a bf16 matrix product on tensor cores, whose
//! accumulation may round differently in the last bit, so the tokens of a random model (whose
//! top scores are close) can part after a while. `peirce-worker bench` measures how many rows
//! stay equal.
//!
//! A third replaces libtorch's attention in the decoding step: [`decode_attention`], split
//! over the keys (flash-decoding) so that every SM has work at small batches, on tensor cores
//! (compute capability 8.0 and later), each row reading its own keys only, where the masked
//! attention kernel reads the longest row's for every row. Its softmax rounds differently
//! from libtorch's, so its tokens can part from the fused kernels' where a random model's top
//! scores are close; the bench measures its error against libtorch's attention. A second
//! kernel merges the splits, where there are several.
//!
//! Beside the step, [`transpose_into`] writes a weight's transpose into the decoder's
//! concatenated copies (`[gate; up]` transposed is most of a model's weights, copied once
//! per generation), tiled through shared memory where libtorch's strided copy is not.
//!
//! The kernels are CUDA C++ compiled at run time by NVRTC (which PyTorch's CUDA wheels
//! ship) for the GPU at hand, for bf16 tensors (the dtype they were measured in), and
//! launched on libtorch's current stream, so a captured CUDA graph records them.
//! [`prepare`] compiles them once per device and head size and says why they cannot run
//! where they cannot (a CPU, fp32 or fp16, a build without the CUDA headers, no NVRTC): the
//! caller then keeps libtorch's ops.

use std::ffi::c_char;

use tch::{Kind, Tensor};

use crate::dist::{ffi::AtTensor, shim_result, tensor_ptr};
use crate::error::{Result, TorchError};

/// Which kernels a decoding step on a CUDA device runs: libtorch's, [`rope_write`] and
/// [`silu_mul`] (`Fused`), or those and [`decode_attention`] (`All`).
pub use peirce_protocol::params::DecodeKernels as Kernels;

/// Whether [`decode_attention`] takes heads of `head_dim` and `groups` query heads per
/// key/value head.
pub fn attention_fits(head_dim: i64, groups: i64) -> bool {
    matches!(head_dim, 64 | 128) && (1..=8).contains(&groups)
}

/// Whether [`Kernels::All`] runs [`decode_attention`] for heads of `head_dim` and `groups`
/// query heads per key/value head on a device of compute `capability` ([`compute_capability`]):
/// where it takes those heads and the device has the tensor cores it runs on (8.0 or later).
/// It measured faster than libtorch's attention at both head sizes (batch 64, one H100:
/// Qwen2-0.5B 1.47 against 1.64 ms per step, Qwen2.5-7B 6.89 against 7.02 ms); elsewhere
/// `All` keeps libtorch's attention.
pub fn attention_chosen(head_dim: i64, groups: i64, capability: (i32, i32)) -> bool {
    capability.0 >= 8 && attention_fits(head_dim, groups)
}

/// Whether [`rms_norm`] and [`silu_mul`] take a model of `hidden` and `intermediate` widths:
/// whole 16-byte pieces (multiples of 8), a norm's row at most 1024 of them.
pub fn widths_fit(hidden: i64, intermediate: i64) -> bool {
    hidden > 0 && hidden % 8 == 0 && hidden <= 8192 && intermediate > 0 && intermediate % 8 == 0
}

/// The compute capability (major, minor) of `like`'s CUDA device.
pub fn compute_capability(like: &Tensor) -> Result<(i32, i32)> {
    let (major, minor, _) = device_properties(like)?;
    Ok((major, minor))
}

/// The number of SMs (streaming multiprocessors) of `like`'s CUDA device.
pub fn multiprocessors(like: &Tensor) -> Result<i64> {
    Ok(device_properties(like)?.2.into())
}

/// (major, minor, SMs) of `like`'s CUDA device.
fn device_properties(like: &Tensor) -> Result<(i32, i32, i32)> {
    let (mut major, mut minor, mut multiprocessors) = (0, 0, 0);
    // SAFETY: a live tensor, borrowed for the call; the integers are written before the shim
    // returns without an error.
    check(unsafe {
        ffi::peirce_kernels_capability(
            tensor_ptr(like),
            &mut major,
            &mut minor,
            &mut multiprocessors,
        )
    })?;
    Ok((major, minor, multiprocessors))
}

/// Compiles and loads the kernels for `like`'s device (`like` must be bf16), with
/// [`decode_attention`] for heads of `head_dim` (0: without it), once per device and head
/// size (later calls return at once). An error says why they cannot run there.
pub fn prepare(like: &Tensor, head_dim: i64) -> Result<()> {
    if !like.device().is_cuda() {
        return Err(TorchError::Invalid(format!(
            "peirce kernels run on CUDA devices, not {:?}",
            like.device()
        )));
    }
    if like.kind() != Kind::BFloat16 {
        return Err(TorchError::Invalid(format!(
            "peirce kernels take bfloat16 (the dtype they were measured in), not {:?}",
            like.kind()
        )));
    }
    // SAFETY: a live tensor, borrowed for the call.
    check(unsafe { ffi::peirce_kernels_prepare(tensor_ptr(like), head_dim) })
}

/// The rotary embedding and KV-cache write of one decoding step of one layer.
///
/// `qkv`: `[rows, (heads + 2 kv_heads) dim]` (or any shape of that many elements),
/// contiguous, the fused q/k/v projection; `inv_freq`: `[dim / 2]` fp32, the rotary
/// frequencies ([`crate::qwen2::inverse_frequencies`]): a row at position `p` rotates pair
/// `i` by `p * inv_freq[i]`, whose cosine and sine the kernel computes in fp32 and rounds to
/// the model's dtype, as [`crate::qwen2::rotary`] does; `positions`: one int64 per row (any
/// row stride); `keys`, `values`: the layer's cache, `[rows, kv_heads, capacity, dim]`.
/// Writes each row's rotated key and its value at the row's position of the cache, and
/// returns the rotated queries, `[rows, heads, dim]`.
pub fn rope_write(
    qkv: &Tensor,
    inv_freq: &Tensor,
    positions: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    heads: i64,
    kv_heads: i64,
) -> Result<Tensor> {
    let size = keys.size();
    let (rows, dim) = (size[0], size[3]);
    let q = Tensor::f_empty([rows, heads, dim], (qkv.kind(), qkv.device()))?;
    // SAFETY: live tensors, borrowed for the call; the shim checks their shapes, dtypes and
    // devices before launching, and catches every C++ exception.
    check(unsafe {
        ffi::peirce_rope_write(
            tensor_ptr(qkv),
            tensor_ptr(inv_freq),
            tensor_ptr(positions),
            tensor_ptr(&q),
            tensor_ptr(keys),
            tensor_ptr(values),
            heads,
            kv_heads,
        )
    })?;
    Ok(q)
}

/// `silu(gate) * up` for `gate_up` (`[..., 2 inner]`, contiguous, `[gate | up]` in the last
/// dimension): `[..., inner]`, of any size (a prefill's product too).
pub fn silu_mul(gate_up: &Tensor) -> Result<Tensor> {
    let mut size = gate_up.size();
    let inner = size.last().copied().unwrap_or(0) / 2;
    if let Some(last) = size.last_mut() {
        *last = inner;
    }
    let out = Tensor::f_empty(size.as_slice(), (gate_up.kind(), gate_up.device()))?;
    // SAFETY: as in `rope_write`.
    check(unsafe { ffi::peirce_silu_mul(tensor_ptr(gate_up), tensor_ptr(&out)) })?;
    Ok(out)
}

/// `x * rsqrt(mean(x^2) + eps) * weight` over `x`'s last dimension (contiguous, of a width
/// [`widths_fit`] takes; `weight`: `[width]`), in fp32, rounded once to `x`'s dtype, as
/// libtorch's `rms_norm` with a weight computes it.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let out = Tensor::f_empty(x.size().as_slice(), (x.kind(), x.device()))?;
    // SAFETY: as in `rope_write`.
    check(unsafe {
        ffi::peirce_rms_norm(tensor_ptr(x), tensor_ptr(weight), tensor_ptr(&out), eps)
    })?;
    Ok(out)
}

/// Writes the transpose of `input` (`[rows, cols]`, contiguous) into `out` (`[cols, rows]`
/// with unit column stride: a range of columns of a wider matrix, say), on the device. Rows,
/// columns and `out`'s row stride even, both 4-byte aligned (two elements per access).
pub fn transpose_into(input: &Tensor, out: &Tensor) -> Result<()> {
    // SAFETY: as in `rope_write`; `out` is written in place, as a tensor's owner may.
    check(unsafe { ffi::peirce_transpose_into(tensor_ptr(input), tensor_ptr(out)) })
}

/// Keys per split of [`decode_attention`]: a row uses one split per this many keys begun (at
/// most [`attention_splits`]), its keys shared evenly among them, so a row of up to this many
/// keys is not split (docs §20).
pub const ATTENTION_SPLIT_KEYS: i64 = 128;

/// The most splits [`decode_attention`] takes: the combine kernel's `PEIRCE_MAX_SPLITS`.
pub const ATTENTION_MAX_SPLITS: i64 = 16;

/// The most splits of [`decode_attention`]'s keys for `rows` rows of `kv_heads` key/value
/// heads attending to at most `attend` keys, on a device of `multiprocessors` SMs: one
/// where a block per (row, key/value head) fills the device; otherwise about two blocks per
/// SM, at most [`ATTENTION_MAX_SPLITS`] and at most one per [`ATTENTION_SPLIT_KEYS`] of
/// `attend`. Each row uses one
/// of them per [`ATTENTION_SPLIT_KEYS`] keys of its own, its keys shared evenly.
pub fn attention_splits(rows: i64, kv_heads: i64, attend: i64, multiprocessors: i64) -> i64 {
    let blocks = (rows * kv_heads).max(1);
    if blocks >= multiprocessors {
        return 1;
    }
    let wanted = (2 * multiprocessors + blocks - 1) / blocks;
    let by_keys = (attend + ATTENTION_SPLIT_KEYS - 1) / ATTENTION_SPLIT_KEYS;
    wanted.min(ATTENTION_MAX_SPLITS).min(by_keys).max(1)
}

/// Attention of one new token per row: `q` (`[rows, heads, dim]`, contiguous) over the
/// cached `keys` and `values` (`[rows, kv_heads, capacity, dim]`), row `r` over its positions
/// `0..=positions[r]` (`positions`: one int64 per row, any row stride), grouped-query where
/// `kv_heads < heads`, scaled by `1/sqrt(dim)`, in at most `splits` splits of the keys
/// ([`attention_splits`], worked out once for all of a step's layers). Returns `[rows, heads,
/// dim]`.
pub fn decode_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    positions: &Tensor,
    splits: i64,
) -> Result<Tensor> {
    let size = q.size();
    let (rows, heads, dim) = (size[0], size[1], size[2]);
    let device = q.device();
    let partial = Tensor::f_empty([rows, heads, splits, dim], (Kind::Float, device))?;
    let stats = Tensor::f_empty([rows, heads, splits, 2], (Kind::Float, device))?;
    let out = Tensor::f_empty([rows, heads, dim], (q.kind(), device))?;
    // SAFETY: as in `rope_write`.
    check(unsafe {
        ffi::peirce_decode_attention(
            tensor_ptr(q),
            tensor_ptr(keys),
            tensor_ptr(values),
            tensor_ptr(positions),
            tensor_ptr(&partial),
            tensor_ptr(&stats),
            tensor_ptr(&out),
            ATTENTION_SPLIT_KEYS,
        )
    })?;
    Ok(out)
}

/// While alive, libtorch's CUDA matrix products prefer cuBLASLt; dropping it restores the
/// preference from before. A decoding step's skinny products (a few dozen rows against a
/// weight) measured faster with cuBLASLt's kernels than with cuBLAS's, the down projection
/// most (Qwen2.5-7B's shape, batch 64, one H100: 50.1 against 55.5 µs; the whole 7B step
/// 6.68 against 6.89 ms); a CUDA graph captured meanwhile keeps the kernels it recorded.
/// The sampler holds one while it decodes with peirce's kernels.
#[derive(Debug)]
pub struct PreferCublasLt {
    previous: i32,
}

impl PreferCublasLt {
    /// Sets the preference (an error where libtorch cannot use cuBLASLt).
    pub fn new() -> Result<Self> {
        let mut previous = 0;
        // SAFETY: `previous` is written by the shim before it returns.
        check(unsafe { ffi::peirce_blas_prefer_lt(1, &mut previous) })?;
        Ok(Self { previous })
    }
}

impl Drop for PreferCublasLt {
    fn drop(&mut self) {
        let mut ignored = 0;
        // SAFETY: as in `new`; restoring what was set before cannot fail where setting did not.
        let _ = check(unsafe { ffi::peirce_blas_prefer_lt(self.previous, &mut ignored) });
    }
}

fn check(error: *mut c_char) -> Result<()> {
    shim_result(error, "")
}

/// The shim's C ABI (torch/csrc/kernels.cpp).
mod ffi {
    use std::ffi::c_char;

    use super::AtTensor;

    extern "C" {
        pub fn peirce_kernels_prepare(like: *mut AtTensor, head_dim: i64) -> *mut c_char;
        pub fn peirce_rope_write(
            qkv: *mut AtTensor,
            inv_freq: *mut AtTensor,
            positions: *mut AtTensor,
            q: *mut AtTensor,
            keys: *mut AtTensor,
            values: *mut AtTensor,
            heads: i64,
            kv_heads: i64,
        ) -> *mut c_char;
        pub fn peirce_silu_mul(gate_up: *mut AtTensor, out: *mut AtTensor) -> *mut c_char;
        pub fn peirce_rms_norm(
            x: *mut AtTensor,
            weight: *mut AtTensor,
            out: *mut AtTensor,
            eps: f64,
        ) -> *mut c_char;
        pub fn peirce_transpose_into(input: *mut AtTensor, out: *mut AtTensor) -> *mut c_char;
        pub fn peirce_blas_prefer_lt(lt: i32, previous: *mut i32) -> *mut c_char;
        #[allow(clippy::too_many_arguments)]
        pub fn peirce_decode_attention(
            q: *mut AtTensor,
            keys: *mut AtTensor,
            values: *mut AtTensor,
            positions: *mut AtTensor,
            partial: *mut AtTensor,
            stats: *mut AtTensor,
            out: *mut AtTensor,
            min_keys: i64,
        ) -> *mut c_char;
        pub fn peirce_kernels_capability(
            like: *mut AtTensor,
            major: *mut i32,
            minor: *mut i32,
            multiprocessors: *mut i32,
        ) -> *mut c_char;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_say_why_they_cannot_run_on_a_cpu() {
        let cpu = Tensor::zeros([2], (Kind::BFloat16, tch::Device::Cpu));
        let error = prepare(&cpu, 128).unwrap_err().to_string();
        assert!(error.contains("CUDA devices"), "{error}");
        // The shim itself refuses too (a caller that skipped `prepare`).
        let error = silu_mul(&Tensor::zeros([2, 4], (Kind::Float, tch::Device::Cpu)))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("CUDA") || error.contains("without CUDA kernels"),
            "{error}"
        );
        assert!(compute_capability(&cpu).is_err());
        let x = Tensor::zeros([2, 8], (Kind::BFloat16, tch::Device::Cpu));
        let error = rms_norm(
            &x,
            &Tensor::ones([8], (Kind::BFloat16, tch::Device::Cpu)),
            1e-6,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("CUDA") || error.contains("without CUDA kernels"),
            "{error}"
        );
        let out = Tensor::zeros([8, 2], (Kind::BFloat16, tch::Device::Cpu));
        assert!(transpose_into(&x, &out).is_err());
    }

    #[test]
    fn norm_and_activation_kernels_take_whole_16_byte_pieces() {
        // Qwen2-0.5B, Qwen2.5-1.5B and Qwen2.5-7B.
        assert!(widths_fit(896, 4864));
        assert!(widths_fit(1536, 8960));
        assert!(widths_fit(3584, 18944));
        assert!(!widths_fit(900, 4864));
        assert!(!widths_fit(896, 4860));
        assert!(!widths_fit(8200, 16384));
        assert!(!widths_fit(0, 8));
    }

    #[test]
    fn attention_is_split_only_where_the_blocks_leave_sms_idle() {
        // An H100's 132 SMs. Qwen2.5-7B (4 key/value heads) at batch 64: 256 blocks, one split
        // at any length; Qwen2-0.5B (2) at batch 64: 128 blocks, below 132: three.
        assert_eq!(attention_splits(64, 4, 320, 132), 1);
        assert_eq!(attention_splits(64, 4, 8256, 132), 1);
        assert_eq!(attention_splits(64, 2, 576, 132), 3);
        assert_eq!(attention_splits(64, 2, 8256, 132), 3);
        // Few blocks: about two per SM, and no more than the keys have splits of 128 begun.
        assert_eq!(attention_splits(8, 4, 8256, 132), 9);
        assert_eq!(attention_splits(8, 4, 300, 132), 3);
        assert_eq!(attention_splits(1, 1, 40_000, 132), 16);
        assert_eq!(attention_splits(1, 1, 128, 132), 1);
        assert_eq!(attention_splits(0, 4, 0, 132), 1);
        for rows in [1, 2, 7, 16, 33, 64, 200] {
            for attend in [1, 100, 128, 129, 1023, 4096, 8192, 40_000] {
                let splits = attention_splits(rows, 2, attend, 108);
                assert!((1..=16).contains(&splits), "{rows} {attend}: {splits}");
                // The kernel needs ATTENTION_SPLIT_KEYS >= splits - 1 for every split a row
                // uses to have keys.
                assert!(ATTENTION_SPLIT_KEYS >= splits - 1);
                assert!(splits <= (attend + ATTENTION_SPLIT_KEYS - 1) / ATTENTION_SPLIT_KEYS);
            }
        }
    }
}
