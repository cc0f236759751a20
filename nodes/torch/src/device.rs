//! Device choice for a node: the CPU when the node was given no GPU, otherwise the first
//! visible CUDA device (the engine pins the node's GPUs with `CUDA_VISIBLE_DEVICES`, so
//! "first visible" is the one assigned).

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
