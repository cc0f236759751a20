//! CUDA graphs: record a sequence of tensor operations once, replay it with one launch.
//!
//! A decoding step of a small batch is bound by kernel launches, not by the GPU's arithmetic
//! or memory: a Qwen2 layer is about 20 kernels, so a 28-layer step is several hundred
//! launches of a few microseconds each. Captured as a graph, the step is replayed with one
//! launch. tch does not bind libtorch's `at::cuda::CUDAGraph`; `torch/csrc/graph.cpp` does,
//! behind a small C ABI.
//!
//! A graph replays the captured kernels on the captured memory: its inputs must be written
//! into the tensors used during capture (static buffers), and its outputs are read from the
//! tensors it wrote then. Nothing in a captured step may synchronize with the host. The
//! sampler's use: [`crate::sampler`] (one graph per KV-length bucket, all in one
//! [`Pool`]).

use std::ffi::c_char;

use tch::Device;

use crate::dist::shim_result;
use crate::error::{Result, TorchError};

/// Whether this build of `peirce-worker` can capture CUDA graphs (it still needs a CUDA
/// device).
pub fn available() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { ffi::peirce_graph_available() != 0 }
}

/// Whether graphs can be used on `device`.
pub fn usable_on(device: Device) -> bool {
    matches!(device, Device::Cuda(_)) && available()
}

/// A memory pool graphs share: graphs captured in one pool may reuse each other's
/// temporary memory, which is safe as long as they are replayed one at a time on one stream.
#[derive(Debug, Clone, Copy)]
pub struct Pool([u64; 2]);

impl Pool {
    /// A new pool.
    pub fn new() -> Result<Self> {
        let mut handle = [0u64; 2];
        // SAFETY: `handle` has room for the two halves the shim writes.
        check(unsafe { ffi::peirce_graph_pool(handle.as_mut_ptr()) })?;
        Ok(Self(handle))
    }
}

/// A captured graph.
#[derive(Debug)]
pub struct Graph {
    raw: *mut ffi::RawGraph,
}

impl Graph {
    /// Captures what `record` does on `device` into a new graph in `pool`. `record` runs
    /// once, recording instead of executing (its results hold garbage until the first
    /// [`Graph::replay`]). Run the same work once eagerly before, so that lazily initialized
    /// state (libraries' handles, kernel choices) exists before the capture.
    ///
    /// The device is synchronized first, unless `ahead`: then the capture records while work
    /// queued before (a replay of another graph of `pool`) still runs, so the host's capture
    /// overlaps the device's work. Recording executes nothing, and the new graph's kernels
    /// run at its replay, after what the stream queued before: sharing `pool` stays safe.
    /// `ahead` is for work of which another shape already ran eagerly, so that no lazily
    /// initialized state is first made during the capture.
    pub fn capture<T>(
        device: Device,
        pool: &Pool,
        ahead: bool,
        record: impl FnOnce() -> Result<T>,
    ) -> Result<(Self, T)> {
        let Device::Cuda(index) = device else {
            return Err(TorchError::Invalid(format!(
                "CUDA graphs need a CUDA device, not {device:?}"
            )));
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: `pool.0` holds two values; `raw` receives a graph we own.
        check(unsafe {
            ffi::peirce_graph_begin(index as i32, pool.0.as_ptr(), i32::from(!ahead), &mut raw)
        })?;
        let graph = Self { raw };
        let recorded = record();
        // SAFETY: `graph.raw` is a capture begun above and not yet ended.
        let ended = check(unsafe { ffi::peirce_graph_end(graph.raw) });
        let value = recorded?;
        ended?;
        Ok((graph, value))
    }

    /// Launches the graph on the current stream.
    pub fn replay(&self) -> Result<()> {
        // SAFETY: `raw` is a graph whose capture ended successfully.
        check(unsafe { ffi::peirce_graph_replay(self.raw) })
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: we own `raw`, freed once here.
        unsafe { ffi::peirce_graph_free(self.raw) }
    }
}

fn check(error: *mut c_char) -> Result<()> {
    shim_result(error, "CUDA graph: ")
}

/// The shim's C ABI (torch/csrc/graph.cpp).
mod ffi {
    use std::ffi::{c_char, c_int};

    /// `peirce_graph`: the CUDA graph and, while capturing, its stream guard.
    #[repr(C)]
    pub struct RawGraph {
        _opaque: [u8; 0],
    }

    extern "C" {
        pub fn peirce_graph_available() -> c_int;
        pub fn peirce_graph_pool(pool: *mut u64) -> *mut c_char;
        pub fn peirce_graph_begin(
            device: c_int,
            pool: *const u64,
            synchronize: c_int,
            out: *mut *mut RawGraph,
        ) -> *mut c_char;
        pub fn peirce_graph_end(graph: *mut RawGraph) -> *mut c_char;
        pub fn peirce_graph_replay(graph: *mut RawGraph) -> *mut c_char;
        pub fn peirce_graph_free(graph: *mut RawGraph);
    }
}
