//! Device choice for a node: the CPU when the node was given no GPU, otherwise the first
//! visible CUDA device (the engine pins the node's GPUs with `CUDA_VISIBLE_DEVICES`, so
//! "first visible" is the one assigned); and the process-wide choice of attention kernels.

use tch::Device;

use crate::error::{Result, TorchError};

/// The device for a node granted `gpus` (ids, already applied through
/// `CUDA_VISIBLE_DEVICES` by the engine) and `cpus` threads.
pub fn select(gpus: &[u32], cpus: u32) -> Result<Device> {
    if cpus > 0 {
        tch::set_num_threads(cpus as i32);
    }
    if gpus.is_empty() {
        return Ok(Device::Cpu);
    }
    if !tch::Cuda::is_available() {
        return Err(TorchError::Invalid(format!(
            "the node was given GPUs {gpus:?} but libtorch sees no CUDA device \
             (CUDA_VISIBLE_DEVICES={:?})",
            std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default()
        )));
    }
    Ok(Device::Cuda(0))
}

/// Keeps cuDNN's attention behind flash attention in `scaled_dot_product_attention`'s
/// choice, unless `TORCH_CUDNN_SDPA_DEPRIORITIZED` is already set.
///
/// On Hopper (sm_90) with a recent cuDNN, libtorch 2.11 tries cuDNN first, and cuDNN builds
/// an execution plan for every new key length: KV-cache decoding meets a new one each step.
/// Measured on an H100 (`scripts/gpu-bench`), a Qwen2-0.5B decoding step at batch 64 took
/// 57 ms with cuDNN first and 9.8 ms with flash attention; the training step, whose shapes
/// repeat, ran at the same speed either way. libtorch reads the variable once, at the first
/// attention call, so this must run first thing in `main`, before any other thread exists.
pub fn prefer_flash_attention() {
    const VARIABLE: &str = "TORCH_CUDNN_SDPA_DEPRIORITIZED";
    if std::env::var_os(VARIABLE).is_none() {
        std::env::set_var(VARIABLE, "1");
    }
}
