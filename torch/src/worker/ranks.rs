//! A node's ranks: one `peirce-worker` process per device, as torchrun starts them.
//!
//! The engine starts one worker per node. When the node has several ranks (`resources.gpus =
//! N`, or the `ranks` parameter on the CPU), that worker becomes rank 0: it starts ranks
//! 1..N as copies of itself on the same `node.json` (environment `PEIRCE_RANK`,
//! `PEIRCE_WORLD`, `PEIRCE_RENDEZVOUS`), and all of them meet through a c10d file store in
//! the node's scratch folder. Only rank 0 speaks the worker protocol and writes outputs; the
//! other ranks' stdout goes to their stderr, which is the node's log.
//!
//! Failure: rank 0 watches the others. A rank that exits before the node is done (an error,
//! a crash, a kill) fails the node at once with a message naming the rank and how it ended;
//! rank 0 kills the remaining ranks first. If rank 0 itself fails, it kills the others
//! before it exits, and the supervisor that runs every node's processes
//! (docs/architecture.md §12) ends anything left when rank 0 is gone. Collectives time out
//! (`PEIRCE_DIST_TIMEOUT_S`, default 600 s), so no rank waits forever on a dead peer.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peirce_protocol::{WorkerError, WorkerSpec};
use tch::Device;

use crate::dist::{Backend, ProcessGroup};
use crate::parallel::Ranks;

const RANK: &str = "PEIRCE_RANK";
const WORLD: &str = "PEIRCE_WORLD";
const RENDEZVOUS: &str = "PEIRCE_RENDEZVOUS";

/// The running ranks of this node, from this process's side.
#[derive(Debug)]
struct Launch {
    /// This rank's place and collectives.
    ranks: Ranks,
    /// Its device.
    device: Device,
    children: Arc<Mutex<Vec<(usize, Child)>>>,
    finishing: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

/// How many ranks a node runs: `requested` (the `ranks` parameter) or one per granted GPU,
/// else one.
fn world_size(spec: &WorkerSpec, requested: Option<NonZeroU32>) -> Result<usize, WorkerError> {
    let gpus = spec.gpus.len();
    match requested.map(|ranks| ranks.get() as usize) {
        Some(ranks) if gpus > 0 && ranks != gpus => Err(WorkerError::bad_input(format!(
            "`ranks = {ranks}` but the node was given {gpus} GPUs: on GPUs there is one rank per \
             device (leave `ranks` out)"
        ))),
        Some(ranks) => Ok(ranks),
        None => Ok(gpus.max(1)),
    }
}

/// Runs a node's `work` on this rank: starts or joins its ranks (`requested`, see
/// [`world_size`]), and then, on rank 0, waits for the others; when `work` fails because
/// another rank died, the error says which.
pub fn run(
    spec: &WorkerSpec,
    spec_path: &Path,
    requested: Option<NonZeroU32>,
    device: Device,
    work: impl FnOnce(&Ranks, Device) -> Result<(), WorkerError>,
) -> Result<(), WorkerError> {
    let world = world_size(spec, requested)?;
    let launch = launch(spec, spec_path, world, device)?;
    match work(&launch.ranks, launch.device) {
        Ok(()) => launch.finish(),
        Err(error) => Err(launch.explain(error)),
    }
}

/// Starts (on rank 0) or joins (on the others) the node's `world` ranks. `spec_path` is the
/// `node.json` every rank reads; `device` is what [`crate::device::select`] chose for the
/// node (CUDA device 0 of the granted ones, or the CPU).
fn launch(
    spec: &WorkerSpec,
    spec_path: &Path,
    world: usize,
    device: Device,
) -> Result<Launch, WorkerError> {
    let rank: usize = match std::env::var(RANK) {
        Ok(text) => text
            .parse()
            .map_err(|_| WorkerError::failed(format!("{RANK}=`{text}` is not a rank number")))?,
        Err(_) => 0,
    };
    let device = match device {
        Device::Cuda(_) => Device::Cuda(rank),
        other => other,
    };
    if world == 1 {
        return Ok(Launch {
            ranks: Ranks::single(device),
            device,
            children: Arc::default(),
            finishing: Arc::default(),
            watcher: None,
        });
    }
    if device.is_cuda() {
        // NVLink multicast (NVLS) stays off in every rank (and what NCCL starts).
        std::env::set_var("NCCL_NVLS_ENABLE", "0");
    } else if spec.cpus > 0 {
        tch::set_num_threads((spec.cpus as usize / world).max(1) as i32);
    }
    let rendezvous = match std::env::var_os(RENDEZVOUS) {
        Some(path) => PathBuf::from(path),
        None => spec
            .scratch_dir
            .join(format!("rendezvous-{}", std::process::id())),
    };
    let children: Arc<Mutex<Vec<(usize, Child)>>> = Arc::default();
    if rank == 0 {
        let _ = std::fs::remove_dir_all(&rendezvous);
        std::fs::create_dir_all(&rendezvous).map_err(|error| {
            WorkerError::failed(format!("cannot create `{}`: {error}", rendezvous.display()))
        })?;
        let exe = std::env::current_exe()
            .map_err(|error| WorkerError::failed(format!("cannot find peirce-worker: {error}")))?;
        for other in 1..world {
            // The others' protocol events would confuse the engine: their stdout joins the log.
            let child = Command::new(&exe)
                .arg(spec_path)
                .env(RANK, other.to_string())
                .env(WORLD, world.to_string())
                .env(RENDEZVOUS, &rendezvous)
                .stdin(Stdio::null())
                .stdout(std::io::stderr())
                .spawn()
                .map_err(|error| {
                    WorkerError::failed(format!("cannot start rank {other}: {error}"))
                })?;
            children.lock().expect("children lock").push((other, child));
        }
    }
    let finishing = Arc::new(AtomicBool::new(false));
    let watcher = (rank == 0).then(|| watch(children.clone(), finishing.clone()));
    // Built before joining, so that a failed join still stops the ranks started.
    let mut launch = Launch {
        ranks: Ranks::single(device),
        device,
        children,
        finishing,
        watcher,
    };
    let backend = if device.is_cuda() {
        Backend::Nccl
    } else {
        Backend::Gloo
    };
    let timeout = Duration::from_secs(
        std::env::var("PEIRCE_DIST_TIMEOUT_S")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(600),
    );
    let group = ProcessGroup::new(&rendezvous, rank, world, backend, timeout).map_err(|error| {
        WorkerError::failed(format!(
            "rank {rank} of {world} could not join the others: {error}"
        ))
    })?;
    launch.ranks = Ranks::new(group, device);
    Ok(launch)
}

/// The message for rank `rank` ending with `status` while the node ran.
fn ended_early(rank: usize, status: std::process::ExitStatus) -> String {
    format!(
        "rank {rank} ended before the node finished ({status}); the other ranks were stopped \
         (its messages are in the log above)"
    )
}

/// Polls rank 0's children: the first to fail (a non-zero exit or a signal) fails the node.
fn watch(
    children: Arc<Mutex<Vec<(usize, Child)>>>,
    finishing: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        if finishing.load(Ordering::SeqCst) {
            return;
        }
        let mut ended = None;
        {
            let mut children = children.lock().expect("children lock");
            for (rank, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    ended = Some((*rank, status));
                    break;
                }
            }
            if let Some((rank, status)) = ended {
                if status.success() {
                    // Done with its last collective; rank 0 may still be writing outputs.
                    children.retain(|(other, _)| *other != rank);
                    continue;
                }
                for (_, child) in children.iter_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                WorkerError::failed(ended_early(rank, status)).emit();
                std::process::exit(1);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    })
}

impl Launch {
    /// Rank 0's error, told better when another rank died first (a collective fails the
    /// moment its peer's connection closes, often before the watcher has seen the exit):
    /// waits up to 2 s for a rank to have ended and names it.
    pub fn explain(&self, error: WorkerError) -> WorkerError {
        self.finishing.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if let Ok(mut children) = self.children.lock() {
                for (rank, child) in children.iter_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        if !status.success() {
                            return WorkerError::failed(format!(
                                "{}; rank 0 saw: {}",
                                ended_early(*rank, status),
                                error.message
                            ));
                        }
                    }
                }
                if children.is_empty() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        error
    }

    /// Rank 0, when the node's work is done: waits for the other ranks to exit (they finish
    /// their last collective with it) and fails if one did not succeed.
    pub fn finish(mut self) -> Result<(), WorkerError> {
        self.finishing.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let children = std::mem::take(&mut *self.children.lock().expect("children lock"));
        for (rank, mut child) in children {
            let status = child.wait().map_err(|error| {
                WorkerError::failed(format!("cannot wait for rank {rank}: {error}"))
            })?;
            if !status.success() {
                return Err(WorkerError::failed(format!(
                    "rank {rank} ended with {status} (its messages are in the log above)"
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Launch {
    /// Rank 0 failing (an error returned past it) takes the other ranks down with it.
    fn drop(&mut self) {
        self.finishing.store(true, Ordering::SeqCst);
        if let Ok(mut children) = self.children.lock() {
            for (_, child) in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peirce_protocol::ErrorClass;

    fn spec(gpus: &[u32]) -> WorkerSpec {
        WorkerSpec {
            protocol: peirce_protocol::PROTOCOL,
            kind: "align".into(),
            node: "align-deduction".into(),
            workflow: String::new(),
            params: serde_json::Value::Null,
            inputs: Default::default(),
            output_dir: PathBuf::from("out"),
            scratch_dir: PathBuf::from("scratch"),
            cpus: 1,
            gpus: gpus.to_vec(),
        }
    }

    #[test]
    fn world_size_is_the_ranks_asked_or_one_per_gpu() {
        let two = NonZeroU32::new(2);
        assert_eq!(world_size(&spec(&[]), None).unwrap(), 1);
        assert_eq!(world_size(&spec(&[0, 1, 2]), None).unwrap(), 3);
        assert_eq!(world_size(&spec(&[]), two).unwrap(), 2);
        assert_eq!(world_size(&spec(&[0, 1]), two).unwrap(), 2);
        let error = world_size(&spec(&[0]), two).unwrap_err();
        assert_eq!(error.class, ErrorClass::BadInput);
        assert!(
            error.message.contains("`ranks = 2`") && error.message.contains("given 1 GPUs"),
            "{}",
            error.message
        );
    }
}
