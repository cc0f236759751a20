//! Child processes for node kinds: started under the node supervisor, output captured to
//! the node's log, stopped on cancellation, and classified when they fail.
//!
//! A node's command may start its own children (a shell pipeline, a trainer's data
//! loaders, a `setsid` daemon), and none of them may outlive the node: the scheduler hands
//! the node's CPUs and GPUs to the next one. On Linux every command runs under a
//! [`crate::supervisor`] (docs/architecture.md §12), which kills whatever the command left
//! behind when it exits, when the engine cancels the node (SIGTERM to the supervisor: the
//! command's whole tree gets SIGTERM, then SIGKILL after a grace period) and when the
//! engine itself dies, even by SIGKILL. Elsewhere the command runs directly in its own
//! process group, which is signalled as a whole on cancellation.
//!
//! The environment of a node process is peirce's own less anything that looks like a
//! credential ([`is_credential`]): a node that prints `env` would otherwise store secrets in
//! its log, which is pushed to shared buckets. A node lists the ones it needs in `pass_env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use peirce_dag::kind::{NodeContext, NodeError};
use peirce_dag::value::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// How long a cancelled node's processes get between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// How long the engine waits, beyond [`KILL_GRACE`], for a stopping supervisor before it
/// kills the supervisor itself.
const SUPERVISOR_MARGIN: Duration = Duration::from_secs(2);

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program (looked up on the `PATH` of `env`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The complete environment (nothing else is inherited); see [`node_environment`].
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
/// signal are [`NodeError::Transient`] (the OOM killer, a lost machine). Returns only once
/// every process the command started has ended.
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

    let (mut command, status_pipe) = start::command(spec)?;
    command
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let spawned = command.spawn();
    // The supervisor holds the write end now; ours must close so its end reads EOF.
    let status_pipe = status_pipe.map(start::StatusPipe::into_reader);
    let mut child = spawned.map_err(|error| start_error(&spec.program, error))?;
    let mut guard = start::StopOnDrop::new(child.id());
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
            start::stop(&mut child).await;
            guard.disarm();
            let _ = stderr_task.await;
            return Err(NodeError::Cancelled);
        }
    };
    guard.disarm();
    let _ = stderr_task.await;
    log.lock().await.flush().await.ok();
    if let Some(error) = status_pipe.and_then(start::StatusReader::start_error) {
        return Err(start_error(&spec.program, error));
    }
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

/// A command that could not start: a missing program is bad input, anything else may pass.
fn start_error(program: &str, error: std::io::Error) -> NodeError {
    let message = format!("cannot start `{program}`: {error}");
    if error.kind() == std::io::ErrorKind::NotFound {
        NodeError::BadInput(message)
    } else {
        NodeError::Transient(message)
    }
}

/// Starting and stopping a command under the supervisor (Linux).
#[cfg(target_os = "linux")]
mod start {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use peirce_dag::kind::NodeError;
    use tokio::process::{Child, Command};

    use super::{ProcessSpec, KILL_GRACE, SUPERVISOR_MARGIN};
    use crate::supervisor::{self, STATUS_FD, SUPERVISE};

    /// The pipe on which the supervisor reports a command it could not start.
    pub(super) struct StatusPipe {
        read: std::fs::File,
        write: OwnedFd,
    }

    /// Its read end, once the supervisor holds the write end.
    pub(super) struct StatusReader(std::fs::File);

    impl StatusPipe {
        pub(super) fn into_reader(self) -> StatusReader {
            drop(self.write);
            StatusReader(self.read)
        }
    }

    impl StatusReader {
        /// The error the supervisor reported, if any. Read after the supervisor exited, so
        /// every write end is closed and this does not block.
        pub(super) fn start_error(mut self) -> Option<std::io::Error> {
            let mut text = String::new();
            self.0.read_to_string(&mut text).ok()?;
            let (number, message) = text.split_once('\n')?;
            Some(match number.parse::<i32>() {
                Ok(number) if number != 0 => std::io::Error::from_raw_os_error(number),
                _ => std::io::Error::other(message.to_string()),
            })
        }
    }

    /// `peirce __supervise <engine pid> <grace ms> <program> <args>`, with the status pipe's
    /// write end as the supervisor's [`STATUS_FD`].
    pub(super) fn command(spec: &ProcessSpec) -> Result<(Command, Option<StatusPipe>), NodeError> {
        if !supervisor::enabled() {
            return Err(NodeError::Internal(
                "this program runs nodes without calling `peirce_nodes::supervisor::run_if_requested` first in `main`".into(),
            ));
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both descriptors, which we own from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(NodeError::Transient(format!(
                "cannot create a pipe for `{}`: {}",
                spec.program,
                std::io::Error::last_os_error()
            )));
        }
        let (read, write) = unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        };
        // `/proc/self/exe` is this very binary even if its file was replaced since it
        // started (a rebuild during a long run).
        let mut command = Command::new("/proc/self/exe");
        command
            .arg0("peirce")
            .arg(SUPERVISE)
            .arg(std::process::id().to_string())
            .arg(KILL_GRACE.as_millis().to_string())
            .arg(&spec.program)
            .args(&spec.args)
            .kill_on_drop(false);
        let write_fd = write.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe and touch only the child's table.
        unsafe {
            command.pre_exec(move || {
                if write_fd == STATUS_FD {
                    if libc::fcntl(STATUS_FD, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(write_fd, STATUS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok((command, Some(StatusPipe { read, write })))
    }

    /// Asks the supervisor to stop the node's processes and waits for it; kills it (and its
    /// process group) only when it does not finish in time.
    pub(super) async fn stop(child: &mut Child) {
        let Some(pid) = child.id() else { return };
        // SAFETY: a plain syscall on our own, not yet reaped, child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        if tokio::time::timeout(KILL_GRACE + SUPERVISOR_MARGIN, child.wait())
            .await
            .is_err()
        {
            // SAFETY: as above; the supervisor leads its own process group.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = child.wait().await;
        }
    }

    /// Asks the supervisor to stop when the node's future is dropped without finishing
    /// (SIGTERM, not tokio's SIGKILL, so the supervisor still cleans up).
    pub(super) struct StopOnDrop(Option<u32>);

    impl StopOnDrop {
        pub(super) fn new(pid: Option<u32>) -> StopOnDrop {
            StopOnDrop(pid)
        }

        /// The supervisor was waited for: nothing to do.
        pub(super) fn disarm(&mut self) {
            self.0 = None;
        }
    }

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                // SAFETY: the child is not reaped yet (the guard drops before the `Child`),
                // so the pid is still ours.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
    }
}

/// Starting and stopping a command directly, in its own process group (not Linux).
#[cfg(not(target_os = "linux"))]
mod start {
    use peirce_dag::kind::NodeError;
    use tokio::process::{Child, Command};

    use super::{ProcessSpec, KILL_GRACE};

    pub(super) enum StatusPipe {}
    pub(super) enum StatusReader {}

    impl StatusPipe {
        pub(super) fn into_reader(self) -> StatusReader {
            match self {}
        }
    }

    impl StatusReader {
        pub(super) fn start_error(self) -> Option<std::io::Error> {
            match self {}
        }
    }

    pub(super) fn command(spec: &ProcessSpec) -> Result<(Command, Option<StatusPipe>), NodeError> {
        let mut command = Command::new(&spec.program);
        command.args(&spec.args).kill_on_drop(true);
        Ok((command, None))
    }

    /// SIGTERM to the process group, SIGKILL after the grace period.
    pub(super) async fn stop(child: &mut Child) {
        let Some(pid) = child.id() else { return };
        let group = -(pid as i32);
        // SAFETY: plain syscalls on a process group we created.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.wait().await;
    }

    pub(super) struct StopOnDrop;

    impl StopOnDrop {
        pub(super) fn new(_pid: Option<u32>) -> StopOnDrop {
            StopOnDrop
        }

        pub(super) fn disarm(&mut self) {}
    }
}

/// Whether an environment variable inherited from peirce's environment is kept from node
/// processes as a likely credential: names starting with `AWS_` or `AZURE_`,
/// `GOOGLE_APPLICATION_CREDENTIALS`, and names holding `SECRET`, `PASSWORD` or `PASSWD`, or
/// ending in `_TOKEN` or `_API_KEY` (case-insensitive). A node's `pass_env` lets named ones
/// through; what a node sets itself (`env`) and peirce's own `PEIRCE_*` variables are never
/// filtered.
pub fn is_credential(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    name.starts_with("AWS_")
        || name.starts_with("AZURE_")
        || name == "GOOGLE_APPLICATION_CREDENTIALS"
        || name.contains("SECRET")
        || name.contains("PASSWORD")
        || name.contains("PASSWD")
        || name.ends_with("_TOKEN")
        || name.ends_with("_API_KEY")
}

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

/// The environment every node process gets: peirce's own environment less credentials
/// ([`is_credential`]) except those the node's `pass_env` parameter names (variables that
/// are not set, or not Unicode, are left out), then its inputs, output folder, devices and
/// threads.
pub fn node_environment(context: &NodeContext, output: &Path) -> BTreeMap<String, String> {
    let passed: Vec<&str> = context
        .params
        .get("pass_env")
        .and_then(Value::as_list)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| !is_credential(name) || passed.contains(&name.as_str()))
        .collect();
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

/// The `pass_env` parameter, shared by the kinds that start a user's program.
pub fn pass_env_param() -> peirce_dag::params::ParamSpec {
    peirce_dag::params::ParamSpec::optional(
        "pass_env",
        peirce_dag::params::ParamType::list(peirce_dag::params::ParamType::String),
        None,
        "Names of credential-like variables (`AWS_*`, `*_TOKEN`, ...) of peirce's environment to pass to the command, which otherwise does not get them",
    )
}

#[cfg(test)]
mod tests {
    use super::is_credential;

    #[test]
    fn credentials_are_recognised_by_name() {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "aws_session_token",
            "AZURE_STORAGE_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "CLIENT_SECRET",
            "DJANGO_SECRET_KEY",
            "DB_PASSWORD",
            "MYSQL_PWD_PASSWD",
            "HF_TOKEN",
            "GITHUB_TOKEN",
            "OPENAI_API_KEY",
        ] {
            assert!(is_credential(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "CUDA_VISIBLE_DEVICES",
            "TOKENIZERS_PARALLELISM",
            "PEIRCE_STORE",
            "KEYBOARD",
        ] {
            assert!(!is_credential(name), "{name}");
        }
    }
}
