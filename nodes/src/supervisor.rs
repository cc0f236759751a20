//! The node supervisor: a small process between the engine and each node's command that
//! makes sure nothing the command started outlives the node (docs/architecture.md §12).
//!
//! A process group is not enough: a grandchild that calls `setsid` or double-forks (`x &`
//! in a subshell) leaves it or is reparented to init, and `PR_SET_PDEATHSIG` on the command
//! reaches the command alone, so a killed `peirce run` (or a node that succeeded) could
//! leave processes holding CPUs and GPUs that the scheduler hands to the next node.
//!
//! The supervisor is the `peirce` binary itself, re-executed with the hidden first argument
//! [`SUPERVISE`], which `main` handles before anything else ([`run_if_requested`]). A
//! re-executed binary is a fresh single-threaded process that may do anything; a child
//! merely forked from the engine's multi-threaded runtime could only call async-signal-safe
//! functions. `peirce` never links libtorch, so this costs a few milliseconds per node. The
//! supervisor
//!
//! - makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): every orphaned descendant of
//!   the command, `setsid` or not, is reparented to it instead of to init;
//! - notices the engine's death, even by SIGKILL: `PR_SET_PDEATHSIG` sends it
//!   [`PARENT_DIED`], and it also checks its parent once a second;
//! - starts the command in a process group of its own, passing stdin, stdout and stderr
//!   through untouched, so the engine reads the command's output live as before;
//! - when the command exits, when asked to stop (SIGTERM, SIGINT, SIGHUP: the engine
//!   cancelling the node) or when the engine dies, sends SIGTERM to every remaining
//!   descendant (found through `/proc`), waits up to the grace period, then SIGKILLs what is
//!   left, repeating until it has no child left;
//! - exits as the command did: the same exit code, or death by the same signal (without a
//!   core file), so the engine's classification of failures is unchanged.
//!
//! It reports a command it could not start on [`STATUS_FD`] (the OS error number, a newline,
//! the message), so the engine can tell "program not found" from the command's own exit 127.
//!
//! What it does not do: hold processes that leave through another service (`systemd-run`,
//! `docker run`), or clean up after its own SIGKILL (the engine sends that only to a
//! supervisor that did not finish within the grace period plus a margin). Linux only;
//! elsewhere the engine starts the command directly in its own process group.

use std::sync::atomic::{AtomicBool, Ordering};

/// The hidden first argument that makes `peirce` a supervisor:
/// `peirce __supervise <engine pid> <grace ms> <program> [args...]`.
pub const SUPERVISE: &str = "__supervise";

/// The supervisor's file descriptor for reporting a command it could not start.
pub const STATUS_FD: i32 = 3;

/// The signal the supervisor gets when the engine dies.
#[cfg(target_os = "linux")]
const PARENT_DIED: i32 = libc::SIGUSR1;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Call first in the `main` of a binary that runs nodes: when this process was started as a
/// supervisor, supervises and exits (never returns); otherwise records that this executable
/// can supervise, which [`crate::process::run_process`] requires, and returns.
pub fn run_if_requested() {
    ENABLED.store(true, Ordering::Relaxed);
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(SUPERVISE)) {
        return;
    }
    #[cfg(target_os = "linux")]
    linux::supervise(args.collect());
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("peirce: `{SUPERVISE}` is supported on Linux only");
        std::process::exit(125);
    }
}

/// Whether [`run_if_requested`] ran in this process, so the running executable
/// (`/proc/self/exe`) is one that supervises.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The parent PID in a `/proc/<pid>/stat` line: the fourth field, counted after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parent_in_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::ffi::OsString;
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::{parent_in_stat, PARENT_DIED, STATUS_FD, SUPERVISE};

    /// Signals that ask the supervisor to stop the command.
    const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

    /// How often the supervisor checks that the engine is still its parent.
    const PARENT_POLL: Duration = Duration::from_secs(1);

    struct Invocation {
        parent: i32,
        grace: Duration,
        program: OsString,
        args: Vec<OsString>,
    }

    impl Invocation {
        fn parse(args: Vec<OsString>) -> Option<Invocation> {
            let mut args = args.into_iter();
            let parent = args.next()?.to_str()?.parse().ok()?;
            let grace = Duration::from_millis(args.next()?.to_str()?.parse().ok()?);
            let program = args.next()?;
            Some(Invocation {
                parent,
                grace,
                program,
                args: args.collect(),
            })
        }
    }

    /// A set of signals, blocked for the whole life of the supervisor and taken
    /// synchronously with `sigtimedwait`: no handlers, no races with the main loop.
    struct Signals(libc::sigset_t);

    impl Signals {
        fn new(signals: &[i32]) -> Signals {
            // SAFETY: sigemptyset initialises the set before sigaddset reads it.
            unsafe {
                let mut set = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut set);
                for &signal in signals {
                    libc::sigaddset(&mut set, signal);
                }
                Signals(set)
            }
        }

        fn block(&self) {
            // SAFETY: the process is single-threaded; the set is initialised.
            unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        }

        /// The next pending signal of the set, or `None` after `timeout`.
        fn wait(&self, timeout: Duration) -> Option<i32> {
            let timeout = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            // SAFETY: the set is initialised; a null siginfo pointer is allowed.
            let signal = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &timeout) };
            (signal > 0).then_some(signal)
        }
    }

    /// Why the supervisor stops watching and starts cleaning up.
    #[derive(PartialEq)]
    enum Ending {
        CommandExited,
        Stopped,
        EngineDied,
    }

    struct Supervisor {
        parent: i32,
        grace: Duration,
        command: i32,
        /// The command's wait status, once reaped.
        status: Option<i32>,
    }

    /// Supervises the command the arguments name, then exits as it did.
    pub(super) fn supervise(args: Vec<OsString>) -> ! {
        let Some(invocation) = Invocation::parse(args) else {
            let _ = writeln!(
                std::io::stderr(),
                "peirce: `{SUPERVISE}` takes the engine's PID, a grace period in milliseconds and a command"
            );
            std::process::exit(125);
        };
        // SAFETY: plain syscalls on this single-threaded process. The status pipe must not
        // leak into the command (EBADF when there is none is harmless).
        unsafe {
            libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        let mut all = vec![libc::SIGCHLD, PARENT_DIED];
        all.extend(STOP_SIGNALS);
        let signals = Signals::new(&all);
        signals.block();
        // SAFETY: prctl with integer arguments affects only this process.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DIED, 0, 0, 0);
        }
        if engine_gone(invocation.parent) {
            // The engine died before the death signal was armed: start nothing.
            std::process::exit(125);
        }

        let mut command = Command::new(&invocation.program);
        command.args(&invocation.args).process_group(0);
        // SAFETY: sigprocmask is async-signal-safe; the command starts with no signal
        // blocked, whatever the supervisor blocks.
        unsafe {
            command.pre_exec(|| {
                let mut empty = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                report_start_error(&error);
                std::process::exit(if error.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                });
            }
        };
        // SAFETY: closing our own descriptor; the engine reads EOF: the command started.
        unsafe { libc::close(STATUS_FD) };
        // std's `Child` is never waited on: the supervisor reaps every child itself
        // (`waitpid(-1)`), the command among them. Dropping it neither kills nor waits.
        let command = child.id() as i32;
        drop(child);

        let mut supervisor = Supervisor {
            parent: invocation.parent,
            grace: invocation.grace,
            command,
            status: None,
        };
        let ending = supervisor.watch(&signals);
        supervisor.clean_up(&signals, ending);
        supervisor.exit()
    }

    fn report_start_error(error: &std::io::Error) {
        use std::os::fd::FromRawFd;
        // SAFETY: STATUS_FD is the status pipe the engine gave us (checked by fcntl first),
        // owned by this process from here on.
        if unsafe { libc::fcntl(STATUS_FD, libc::F_GETFD) } < 0 {
            return;
        }
        let mut pipe = unsafe { std::fs::File::from_raw_fd(STATUS_FD) };
        let _ = write!(pipe, "{}\n{error}", error.raw_os_error().unwrap_or(0));
    }

    fn engine_gone(parent: i32) -> bool {
        // SAFETY: getppid cannot fail.
        unsafe { libc::getppid() != parent }
    }

    impl Supervisor {
        /// Waits for the command to exit, a stop request or the engine's death.
        fn watch(&mut self, signals: &Signals) -> Ending {
            loop {
                self.reap();
                if self.status.is_some() {
                    return Ending::CommandExited;
                }
                match signals.wait(PARENT_POLL) {
                    Some(signal) if STOP_SIGNALS.contains(&signal) => return Ending::Stopped,
                    // SIGCHLD, PARENT_DIED or the poll: PARENT_DIED also comes when the
                    // engine thread that started us exits while the engine lives on, so
                    // the parent is what decides.
                    _ if engine_gone(self.parent) => return Ending::EngineDied,
                    _ => {}
                }
            }
        }

        /// Reaps every exited child, keeping the command's status; whether any child
        /// remains.
        fn reap(&mut self) -> bool {
            loop {
                let mut status = 0;
                // SAFETY: waitpid writes only `status`.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid == self.command {
                    self.status = Some(status);
                } else if pid == 0 {
                    return true;
                } else if pid < 0 {
                    // ECHILD: no child left (signals are blocked, so no EINTR).
                    return false;
                }
            }
        }

        /// Stops every descendant: SIGTERM, up to the grace period, then SIGKILL until no
        /// child is left. Orphans of dying descendants are reparented here (subreaper), so
        /// repeating the scan until `waitpid` finds no child reaches all of them.
        fn clean_up(&mut self, signals: &Signals, ending: Ending) {
            if !self.reap() {
                return;
            }
            let left = descendants(std::process::id() as i32);
            if ending == Ending::CommandExited && !left.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "peirce: the command exited leaving {} processes running; stopping them (docs/architecture.md §12)",
                    left.len()
                );
            }
            signal_all(&left, libc::SIGTERM);
            // Stopped processes act on SIGTERM only once continued.
            signal_all(&left, libc::SIGCONT);
            let deadline = Instant::now() + self.grace;
            while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
                if !self.reap() {
                    return;
                }
                // Wakes on SIGCHLD; further stop requests change nothing.
                signals.wait(remaining.min(Duration::from_millis(50)));
            }
            loop {
                signal_all(&descendants(std::process::id() as i32), libc::SIGKILL);
                let mut status = 0;
                // SAFETY: waitpid writes only `status`.
                let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
                if pid == self.command {
                    self.status = Some(status);
                } else if pid < 0 {
                    return;
                }
            }
        }

        /// Exits as the command did.
        fn exit(self) -> ! {
            let status = self.status.unwrap_or(0);
            if libc::WIFSIGNALED(status) {
                die_by(libc::WTERMSIG(status));
            }
            std::process::exit(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1
            })
        }
    }

    /// Ends this process by `signal`, as the command ended, so the engine sees the same
    /// death. No core file: the command's own was written already, if any.
    fn die_by(signal: i32) -> ! {
        // SAFETY: plain syscalls on this single-threaded process, which is about to end.
        unsafe {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
        // Only a signal whose default action is not to terminate gets here.
        std::process::exit(128 + signal)
    }

    fn signal_all(pids: &[i32], signal: i32) {
        for &pid in pids {
            // SAFETY: a plain syscall; every pid is a descendant found just now.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Every live descendant of `root`, parents before their children, from `/proc`.
    fn descendants(root: i32) -> Vec<i32> {
        let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            // A process that ended since the listing has no stat file: skip it.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(parent) = parent_in_stat(&stat) {
                children.entry(parent).or_default().push(pid);
            }
        }
        let mut found = Vec::new();
        let mut next = vec![root];
        while let Some(pid) = next.pop() {
            for &child in children.get(&pid).into_iter().flatten() {
                found.push(child);
                next.push(child);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::parent_in_stat;

    #[test]
    fn reads_the_parent_after_an_awkward_command_name() {
        assert_eq!(parent_in_stat("42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_in_stat("42 (a) b) (c) R 9 42 42 0 -1"), Some(9));
        assert_eq!(parent_in_stat("42 (truncated"), None);
    }
}
