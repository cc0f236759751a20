//! Child processes for node kinds: their own process group, output captured to the node's
//! log, killed as a group on cancellation, and classified when they fail.
//!
//! A node's command may start its own children (a shell pipeline, a trainer's data
//! loaders), so cancellation signals the whole process group: SIGTERM, then SIGKILL after a
//! grace period. On Linux the child also gets SIGKILL if the engine itself dies, so a killed
//! `peirce run` leaves no orphans holding GPUs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use peirce_dag::kind::{NodeContext, NodeError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::Mutex;

/// How long a cancelled process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program (looked up on PATH).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
}

/// What a stdout line handler decides.
pub enum Line {
    /// Write the line to the log.
    Log,
    /// The handler consumed it (a protocol message); keep it out of the log.
    Consumed,
}

/// Runs `spec` to completion, appending stdout and stderr to the node's log. `on_stdout`
/// sees every stdout line first. Non-zero exits are [`NodeError::Failed`], deaths by
/// signal are [`NodeError::Transient`] (the OOM killer, a lost machine).
pub async fn run_process(
    spec: &ProcessSpec,
    context: &NodeContext,
    mut on_stdout: impl FnMut(&str) -> Line + Send,
) -> Result<(), NodeError> {
    let log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&context.log_path)
        .await
        .map_err(|error| {
            NodeError::Internal(format!(
                "cannot open log `{}`: {error}",
                context.log_path.display()
            ))
        })?;
    let log = Arc::new(Mutex::new(log));

    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    set_parent_death_signal(&mut command);
    let mut child = command.spawn().map_err(|error| {
        let message = format!("cannot start `{}`: {error}", spec.program);
        if error.kind() == std::io::ErrorKind::NotFound {
            NodeError::BadInput(message)
        } else {
            NodeError::Transient(message)
        }
    })?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let stderr_task = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().await;
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
            }
        })
    };
    let read_stdout = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Line::Log = on_stdout(&line) {
                let mut log = log.lock().await;
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
            }
        }
    };

    let status = tokio::select! {
        (_, status) = async { tokio::join!(read_stdout, child.wait()) } => status,
        _ = context.cancel.cancelled() => {
            kill_group(pid, &mut child).await;
            let _ = stderr_task.await;
            return Err(NodeError::Cancelled);
        }
    };
    let _ = stderr_task.await;
    log.lock().await.flush().await.ok();
    let status = status.map_err(|error| {
        NodeError::Transient(format!("waiting for `{}`: {error}", spec.program))
    })?;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Err(NodeError::Failed(format!(
            "`{}` exited with status {code}",
            spec.program
        ))),
        (None, Some(signal)) => Err(NodeError::Transient(format!(
            "`{}` was killed by signal {signal}{}",
            spec.program,
            if signal == libc::SIGKILL {
                " (out of memory?)"
            } else {
                ""
            }
        ))),
        _ => Err(NodeError::Failed(format!(
            "`{}` failed: {status}",
            spec.program
        ))),
    }
}

async fn kill_group(pid: Option<u32>, child: &mut tokio::process::Child) {
    let Some(pid) = pid else { return };
    let group = -(pid as i32);
    // SAFETY: plain syscalls on a process group we created.
    unsafe { libc::kill(group, libc::SIGTERM) };
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.wait().await;
    } else {
        // The leader is gone; make sure its children are too.
        unsafe { libc::kill(group, libc::SIGKILL) };
    }
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {}

/// `PEIRCE_INPUT_<NAME>`: the environment variable naming an input's path.
pub fn input_variable(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PEIRCE_INPUT_{cleaned}")
}

/// The environment every node process gets: its inputs, output folder, devices and threads.
pub fn node_environment(context: &NodeContext, output: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (name, path) in &context.inputs {
        env.insert(input_variable(name), path.display().to_string());
    }
    env.insert("PEIRCE_OUT".into(), output.display().to_string());
    env.insert("PEIRCE_NODE".into(), context.node.clone());
    env.insert("PEIRCE_WORKFLOW".into(), context.workflow.clone());
    env.insert("PEIRCE_CPUS".into(), context.cpus.to_string());
    let devices: Vec<String> = context.gpus.iter().map(u32::to_string).collect();
    // Always set: a node that asked for no GPU must not grab one that another node holds.
    env.insert("CUDA_VISIBLE_DEVICES".into(), devices.join(","));
    env
}
