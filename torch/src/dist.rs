//! Data-parallel communication between worker processes: libtorch's own c10d process
//! groups, Gloo on CPU and NCCL on CUDA, the same code PyTorch's `torch.distributed` runs.
//!
//! tch does not bind c10d, so a small C++ shim (`torch/csrc/dist.cpp`, compiled by
//! `torch/build.rs`) makes the groups and runs the collectives behind a C ABI; every C++
//! exception is caught there and comes back as a [`TorchError::Dist`] naming the rank and
//! the operation.
//!
//! One [`ProcessGroup`] per process: every rank makes one with the same rendezvous, world
//! size and backend, then issues the same collectives in the same order. Operations are
//! synchronous: with Gloo the result is in the tensor when the call returns; with NCCL, as in
//! PyTorch, the collective runs on the current CUDA stream and later work on that stream
//! sees its result. A world of one process needs no group: callers skip communication then.
//!
//! With Gloo, failure is bounded by the group's timeout: a rank that never arrives fails
//! [`ProcessGroup::new`] on the others; a rank that dies or stops taking part makes the
//! others' next collective fail (at once when its connections close, at the latest after the
//! timeout) instead of hanging. A group whose collective failed is not usable any more:
//! drop it (dropping is safe) and give up or start a new group with a fresh rendezvous.
//!
//! NCCL only: libtorch's NCCL watchdog handles a timed-out collective itself, by default
//! by tearing the process down (`TORCH_NCCL_ASYNC_ERROR_HANDLING`); the error then reaches
//! the engine as the worker's exit, not as a `Result`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

use crate::error::{Result, TorchError};

/// The file name of the c10d `FileStore` when [`ProcessGroup::new`] is given a folder.
pub const STORE_FILE: &str = "peirce-dist.store";

/// Which c10d backend carries a group's collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo over TCP: CPU tensors.
    Gloo,
    /// NCCL: CUDA tensors, one GPU per rank (NCCL refuses two ranks on one GPU). Each
    /// rank's tensors live on its GPU; with several visible GPUs, rank `r` should use
    /// `cuda:(r % visible)`, the device c10d assumes for [`ProcessGroup::barrier`]. With
    /// one visible GPU per process (the engine's `CUDA_VISIBLE_DEVICES` pinning) that is
    /// `cuda:0` everywhere. Needs a build with NCCL and a CUDA device ([`nccl_available`]).
    Nccl,
}

impl Backend {
    fn code(self) -> c_int {
        match self {
            Self::Gloo => 0,
            Self::Nccl => 1,
        }
    }
}

/// How a reduction combines the ranks' values, element by element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum.
    Sum,
    /// The maximum.
    Max,
    /// The minimum.
    Min,
}

impl ReduceOp {
    fn code(self) -> c_int {
        match self {
            Self::Sum => 0,
            Self::Max => 1,
            Self::Min => 2,
        }
    }
}

/// Whether [`Backend::Nccl`] can be used here: this build has the NCCL half of the shim
/// (libtorch_cuda and the CUDA/NCCL headers were there at build time) and libtorch sees a
/// CUDA device.
pub fn nccl_available() -> bool {
    // SAFETY: a constant query of the shim.
    (unsafe { ffi::peirce_dist_has_nccl() }) != 0 && tch::Cuda::is_available()
}

/// One process's membership in a group of `world` processes (ranks `0..world`).
///
/// Not `Sync`: collectives must be issued in the same order on every rank, so one thread
/// issues them; the group may move to another thread between operations.
pub struct ProcessGroup {
    raw: NonNull<ffi::Group>,
    rank: usize,
    world: usize,
    backend: Backend,
}

// SAFETY: the c10d backend may be called from any thread (one call at a time, which `!Sync`
// and `&self` methods on a single owner ensure), and it is freed once, by `Drop`.
unsafe impl Send for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("backend", &self.backend)
            .finish()
    }
}

impl ProcessGroup {
    /// Joins a group whose ranks meet through a c10d `FileStore`: `rendezvous` is a folder
    /// every rank names (the store is the file [`STORE_FILE`] in it) or the store file
    /// itself. The folder must be shared by all ranks (one machine, or a shared file
    /// system) and fresh for each group: a store file left by an earlier group would mix
    /// its keys with this one's (the last rank to drop a group removes the file).
    ///
    /// Gloo connects the ranks over loopback, so a file rendezvous means one machine.
    /// `timeout` bounds the wait for the other ranks here and every later operation.
    pub fn new(
        rendezvous: &Path,
        rank: usize,
        world: usize,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self> {
        let (rank_c, world_c, timeout_ms) = check_group(rank, world, timeout)?;
        let file = store_file(rendezvous);
        let path = c_string(file.as_os_str().as_encoded_bytes(), "the rendezvous path")?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C string; `raw` is written only on success.
        let error = unsafe {
            ffi::peirce_dist_new_file(
                path.as_ptr(),
                rank_c,
                world_c,
                backend.code(),
                timeout_ms,
                &mut raw,
            )
        };
        Self::made(raw, error, rank, world, backend, || {
            format!("rendezvous through `{}`", file.display())
        })
    }

    /// Joins a group whose ranks meet through a c10d `TCPStore` that rank 0 hosts on
    /// `host:port` (rank 0 listens there; the others connect). With a loopback `host`
    /// Gloo connects the ranks over loopback; otherwise each rank binds Gloo to its own
    /// resolved host name. `timeout` bounds the wait for the other ranks here and every
    /// later operation.
    pub fn new_tcp(
        host: &str,
        port: u16,
        rank: usize,
        world: usize,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self> {
        let (rank_c, world_c, timeout_ms) = check_group(rank, world, timeout)?;
        let host_c = c_string(host.as_bytes(), "the rendezvous host")?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C string; `raw` is written only on success.
        let error = unsafe {
            ffi::peirce_dist_new_tcp(
                host_c.as_ptr(),
                port,
                rank_c,
                world_c,
                backend.code(),
                timeout_ms,
                &mut raw,
            )
        };
        Self::made(raw, error, rank, world, backend, || {
            format!("rendezvous through tcp://{host}:{port}")
        })
    }

    fn made(
        raw: *mut ffi::Group,
        error: *mut c_char,
        rank: usize,
        world: usize,
        backend: Backend,
        what: impl FnOnce() -> String,
    ) -> Result<Self> {
        // SAFETY: `error` comes from the shim.
        if let Some(message) = unsafe { take_error(error) } {
            return Err(TorchError::Dist(format!(
                "rank {rank} of {world} ({backend:?}): {} failed: {message}",
                what()
            )));
        }
        let raw = NonNull::new(raw).ok_or_else(|| {
            TorchError::Dist(format!(
                "rank {rank} of {world}: the shim returned no group"
            ))
        })?;
        Ok(Self {
            raw,
            rank,
            world,
            backend,
        })
    }

    /// This process's rank, in `0..world`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes in the group.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The backend carrying the collectives.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Reduces `tensor` over all ranks in place: afterwards every rank holds the
    /// element-wise `op` of all ranks' values. Any shape; contiguous.
    pub fn all_reduce(&self, tensor: &Tensor, op: ReduceOp) -> Result<()> {
        let name = "all_reduce";
        self.check_tensor(name, "tensor", tensor)?;
        // SAFETY: live group; the tensor pointer is tch's `at::Tensor*`, borrowed for the call.
        self.status(name, unsafe {
            ffi::peirce_dist_all_reduce(self.raw.as_ptr(), tensor_ptr(tensor), op.code())
        })
    }

    /// [`all_reduce`](Self::all_reduce) with [`ReduceOp::Sum`]: the data-parallel gradient
    /// sum (divide by [`world`](Self::world) for the mean).
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        self.all_reduce(tensor, ReduceOp::Sum)
    }

    /// Copies rank `root`'s `tensor` into every other rank's `tensor`, in place. All ranks
    /// pass tensors of the same shape and dtype.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        let name = "broadcast";
        self.check_tensor(name, "tensor", tensor)?;
        if root >= self.world {
            return Err(self.invalid(name, format!("root {root} is not a rank")));
        }
        // SAFETY: as in `all_reduce`; `root < world` fits in a C int.
        self.status(name, unsafe {
            ffi::peirce_dist_broadcast(self.raw.as_ptr(), tensor_ptr(tensor), root as c_int)
        })
    }

    /// Gathers every rank's `input` (n elements) into `output` (world × n elements), rank
    /// `r`'s at elements `r*n..(r+1)*n`. Both contiguous, of the same dtype and device;
    /// shapes are read flat.
    pub fn all_gather_into(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        let name = "all_gather_into";
        self.check_pair(name, output, input)?;
        let (n, total) = (input.numel(), output.numel());
        if total != self.world * n {
            return Err(self.invalid(
                name,
                format!(
                    "the output has {total} elements, not world ({}) × input ({n}) = {}",
                    self.world,
                    self.world * n
                ),
            ));
        }
        // SAFETY: as in `all_reduce`.
        self.status(name, unsafe {
            ffi::peirce_dist_all_gather(self.raw.as_ptr(), tensor_ptr(output), tensor_ptr(input))
        })
    }

    /// Reduces `input` (world × n elements) over all ranks and leaves slice `rank` of the
    /// result (elements `rank*n..(rank+1)*n`) in `output` (n elements): the sharded
    /// counterpart of [`all_reduce`](Self::all_reduce). Both contiguous, of the same dtype
    /// and device; shapes are read flat. An `input` whose size is not a multiple of the
    /// world is refused: pad it.
    pub fn reduce_scatter(&self, output: &Tensor, input: &Tensor, op: ReduceOp) -> Result<()> {
        let name = "reduce_scatter";
        self.check_pair(name, output, input)?;
        let (n, total) = (output.numel(), input.numel());
        if total != self.world * n {
            let divisible = if total % self.world == 0 {
                String::new()
            } else {
                format!(" ({total} is not divisible by {})", self.world)
            };
            return Err(self.invalid(
                name,
                format!(
                    "the input has {total} elements, not world ({}) × output ({n}) = {}{divisible}",
                    self.world,
                    self.world * n
                ),
            ));
        }
        // SAFETY: as in `all_reduce`.
        self.status(name, unsafe {
            ffi::peirce_dist_reduce_scatter(
                self.raw.as_ptr(),
                tensor_ptr(output),
                tensor_ptr(input),
                op.code(),
            )
        })
    }

    /// [`reduce_scatter`](Self::reduce_scatter) with [`ReduceOp::Sum`].
    pub fn reduce_scatter_sum(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        self.reduce_scatter(output, input, ReduceOp::Sum)
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: live group.
        self.status("barrier", unsafe {
            ffi::peirce_dist_barrier(self.raw.as_ptr())
        })
    }

    fn status(&self, operation: &str, error: *mut c_char) -> Result<()> {
        // SAFETY: `error` comes from the shim.
        match unsafe { take_error(error) } {
            None => Ok(()),
            Some(message) => Err(TorchError::Dist(format!(
                "rank {} of {} ({:?}): {operation} failed: {message}",
                self.rank, self.world, self.backend
            ))),
        }
    }

    fn invalid(&self, operation: &str, message: String) -> TorchError {
        TorchError::Invalid(format!(
            "dist rank {} of {}: {operation}: {message}",
            self.rank, self.world
        ))
    }

    fn check_tensor(&self, operation: &str, role: &str, tensor: &Tensor) -> Result<()> {
        if !tensor.defined() {
            return Err(self.invalid(operation, format!("the {role} is undefined")));
        }
        if !tensor.is_contiguous() {
            return Err(self.invalid(
                operation,
                format!("the {role} is not contiguous (shape {:?})", tensor.size()),
            ));
        }
        Ok(())
    }

    fn check_pair(&self, operation: &str, output: &Tensor, input: &Tensor) -> Result<()> {
        self.check_tensor(operation, "output", output)?;
        self.check_tensor(operation, "input", input)?;
        if output.kind() != input.kind() || output.device() != input.device() {
            return Err(self.invalid(
                operation,
                format!(
                    "the output is {:?} on {:?}, the input {:?} on {:?}",
                    output.kind(),
                    output.device(),
                    input.kind(),
                    input.device()
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: made by the shim, freed once.
        unsafe { ffi::peirce_dist_free(self.raw.as_ptr()) }
    }
}

/// The store file for a rendezvous folder or file.
fn store_file(rendezvous: &Path) -> PathBuf {
    if rendezvous.is_dir() {
        rendezvous.join(STORE_FILE)
    } else {
        rendezvous.to_path_buf()
    }
}

fn check_group(rank: usize, world: usize, timeout: Duration) -> Result<(c_int, c_int, i64)> {
    let world_c = c_int::try_from(world)
        .ok()
        .filter(|&w| w >= 1)
        .ok_or_else(|| TorchError::Invalid(format!("dist: world size {world} is not 1..2^31")))?;
    if rank >= world {
        return Err(TorchError::Invalid(format!(
            "dist: rank {rank} is not in 0..{world}"
        )));
    }
    let timeout_ms = i64::try_from(timeout.as_millis())
        .ok()
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            TorchError::Invalid(format!("dist: timeout {timeout:?} is not 1 ms or more"))
        })?;
    Ok((rank as c_int, world_c, timeout_ms))
}

fn c_string(bytes: &[u8], what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| TorchError::Invalid(format!("dist: {what} contains a NUL")))
}

pub(crate) fn tensor_ptr(tensor: &Tensor) -> *mut ffi::AtTensor {
    tensor.as_ptr() as *mut ffi::AtTensor
}

/// A shim call's outcome: its error message (taken, see [`take_error`]) after `prefix`, as
/// [`TorchError::Invalid`]. `error` must come straight from a shim call (null or a message
/// not yet freed), as every caller passes it.
pub(crate) fn shim_result(error: *mut c_char, prefix: &str) -> Result<()> {
    // SAFETY: `error` is null or a message from the shim, taken once.
    match unsafe { take_error(error) } {
        None => Ok(()),
        Some(message) => Err(TorchError::Invalid(format!("{prefix}{message}"))),
    }
}

/// Copies and frees an error message of the shim (`None`: success).
///
/// # Safety
/// `error` is null or a message of the shim not yet freed.
pub(crate) unsafe fn take_error(error: *mut c_char) -> Option<String> {
    if error.is_null() {
        return None;
    }
    let message = CStr::from_ptr(error).to_string_lossy().into_owned();
    ffi::peirce_dist_free_error(error);
    Some(message)
}

/// The shim's C ABI (torch/csrc/dist.cpp). Each function returning `*mut c_char` returns
/// null on success, else an error message to free with `peirce_dist_free_error`.
pub(crate) mod ffi {
    use std::ffi::{c_char, c_int};

    /// `peirce_dist_group`: the store and the c10d backend.
    #[repr(C)]
    pub struct Group {
        _opaque: [u8; 0],
    }

    /// `at::Tensor`, which tch's `C_tensor` is.
    #[repr(C)]
    pub struct AtTensor {
        _opaque: [u8; 0],
    }

    extern "C" {
        pub fn peirce_dist_free_error(message: *mut c_char);
        pub fn peirce_dist_has_nccl() -> c_int;
        pub fn peirce_dist_new_file(
            path: *const c_char,
            rank: c_int,
            world: c_int,
            backend: c_int,
            timeout_ms: i64,
            out: *mut *mut Group,
        ) -> *mut c_char;
        pub fn peirce_dist_new_tcp(
            host: *const c_char,
            port: u16,
            rank: c_int,
            world: c_int,
            backend: c_int,
            timeout_ms: i64,
            out: *mut *mut Group,
        ) -> *mut c_char;
        pub fn peirce_dist_free(group: *mut Group);
        pub fn peirce_dist_all_reduce(
            group: *mut Group,
            tensor: *mut AtTensor,
            op: c_int,
        ) -> *mut c_char;
        pub fn peirce_dist_broadcast(
            group: *mut Group,
            tensor: *mut AtTensor,
            root: c_int,
        ) -> *mut c_char;
        pub fn peirce_dist_all_gather(
            group: *mut Group,
            output: *mut AtTensor,
            input: *mut AtTensor,
        ) -> *mut c_char;
        pub fn peirce_dist_reduce_scatter(
            group: *mut Group,
            output: *mut AtTensor,
            input: *mut AtTensor,
            op: c_int,
        ) -> *mut c_char;
        pub fn peirce_dist_barrier(group: *mut Group) -> *mut c_char;
    }
}
