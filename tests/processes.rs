//! No process a node starts outlives the node (docs/architecture.md §12): not a `setsid`
//! grandchild, not a double-forked one, whatever ends the node (success, a signal, the
//! engine's death by SIGKILL, SIGTERM or SIGHUP to `peirce run`). Nodes also do not see
//! peirce's credentials unless they ask for them by name.
//!
//! Each node's processes carry a marker unique to the test in their command line
//! (`sleep 300.<digits>`); the tests find them by scanning `/proc`, and kill any survivor
//! when they end, pass or fail.

mod common;

use std::time::{Duration, Instant};

use common::{finish, toml_string, wait_for_line, Sandbox};

/// The command lines (arguments joined by spaces) of live processes holding `marker`.
fn processes_with(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
        if line.contains(marker) {
            found.push((pid, line.trim().to_string()));
        }
    }
    found
}

/// A marker unique to one test, and the processes holding it, killed when dropped.
struct Marker(String);

impl Marker {
    /// Digits of one width, so no marker is a prefix of another.
    fn new() -> Marker {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .subsec_nanos();
        Marker(format!("{:010}{nanos:09}{made:03}", std::process::id()))
    }

    /// `sleep 300.<marker><n>`: a process to look for, told apart by `n`.
    fn sleep(&self, n: u32) -> String {
        format!("sleep 300.{}{n}", self.0)
    }

    fn alive(&self) -> Vec<(i32, String)> {
        processes_with(&format!("300.{}", self.0))
    }

    /// Waits until the `sleep n` processes for every `n` in `numbers` run.
    fn wait_for_sleeps(&self, numbers: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive = self.alive();
            let missing: Vec<u32> = numbers
                .iter()
                .copied()
                .filter(|&n| !alive.iter().any(|(_, line)| line == &self.sleep(n)))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sleeps {missing:?} never started; alive: {alive:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that within `within` no process holds the marker.
    fn assert_none_within(&self, within: Duration, after: &str) {
        let deadline = Instant::now() + within;
        while !self.alive().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let alive = self.alive();
        assert!(
            alive.is_empty(),
            "processes of the node survived {after}: {alive:#?}"
        );
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        for (pid, _) in self.alive() {
            // SAFETY: a plain syscall on a process this test's node started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A node that starts three sleeps that try to escape (one `setsid`, one plain background
/// job, one double-forked through a subshell), says so in `ready`, and waits.
fn escaping_workflow(sandbox: &Sandbox, marker: &Marker) -> String {
    let ready = sandbox.path("ready");
    format!(
        "[escape]\nkind = \"exec\"\ncommand = {}\n",
        toml_string(&format!(
            "setsid {one} >/dev/null 2>&1 & {two} >/dev/null 2>&1 & ( {three} >/dev/null 2>&1 & ); \
             echo started > '{ready}.tmp'; mv '{ready}.tmp' '{ready}'; wait",
            one = marker.sleep(1),
            two = marker.sleep(2),
            three = marker.sleep(3),
            ready = ready.display()
        ))
    )
}

/// Starts `peirce run` on the escaping node and waits until its three sleeps run.
fn start_escaping_run(sandbox: &Sandbox, marker: &Marker) -> std::process::Child {
    sandbox.workflow(&escaping_workflow(sandbox, marker));
    let child = sandbox.spawn(&["run", "--json", "wf.toml"]);
    wait_for_line(&sandbox.path("ready"), Duration::from_secs(30));
    marker.wait_for_sleeps(&[1, 2, 3]);
    child
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: a plain syscall on the `peirce` this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

#[test]
fn sigkill_of_peirce_leaves_no_process_of_its_nodes() {
    let sandbox = Sandbox::new();
    let marker = Marker::new();
    let child = start_escaping_run(&sandbox, &marker);
    signal(child.id(), libc::SIGKILL);
    assert_eq!(finish(child).code, 128 + libc::SIGKILL);
    marker.assert_none_within(Duration::from_secs(8), "SIGKILL of `peirce run`");
    assert!(!sandbox.has_record_for("escape"));
    sandbox.assert_store_sound();
}

/// SIGTERM and SIGHUP stop a run as Ctrl-C does: every node process ends, nothing is
/// stored, the record says cancelled, and the exit code is 128 + the signal.
fn a_stop_signal_stops_every_node_process(stop: i32, code: i32, says: &str) {
    let sandbox = Sandbox::new();
    let marker = Marker::new();
    let child = start_escaping_run(&sandbox, &marker);
    let stopped = Instant::now();
    signal(child.id(), stop);
    let outcome = finish(child);
    assert_eq!(outcome.code, code, "{outcome}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopped.elapsed()
    );
    assert!(outcome.stderr.contains(says), "{outcome}");
    let record = outcome.json();
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["nodes"]["escape"]["status"], "cancelled");
    // `peirce run` waits for its nodes' supervisors, so nothing is left when it exits.
    marker.assert_none_within(Duration::ZERO, says);
    assert!(!sandbox.has_record_for("escape"));
    sandbox.assert_store_sound();
}

#[test]
fn sigterm_stops_a_run_like_ctrl_c_and_exits_143() {
    a_stop_signal_stops_every_node_process(libc::SIGTERM, 143, "SIGTERM");
}

#[test]
fn sighup_stops_a_run_like_ctrl_c_and_exits_129() {
    a_stop_signal_stops_every_node_process(libc::SIGHUP, 129, "SIGHUP");
}

#[test]
fn a_node_that_succeeds_leaves_no_process_behind() {
    let sandbox = Sandbox::new();
    let marker = Marker::new();
    let pids = sandbox.path("pids");
    // Three sleeps escape as in the tests above; a fourth keeps the node's stdout open,
    // which used to hold the node until it exited. Their PIDs go to `pids`.
    sandbox.workflow(&format!(
        "[leaky]\nkind = \"exec\"\ncommand = {}\n",
        toml_string(&format!(
            "setsid {one} >/dev/null 2>&1 & echo $! >> '{pids}'; \
             {two} >/dev/null 2>&1 & echo $! >> '{pids}'; \
             ( {three} >/dev/null 2>&1 & echo $! >> '{pids}' ); \
             {four} & echo $! >> '{pids}'; \
             echo done > out/a.txt",
            one = marker.sleep(1),
            two = marker.sleep(2),
            three = marker.sleep(3),
            four = marker.sleep(4),
            pids = pids.display()
        ))
    ));
    let started = Instant::now();
    let record = sandbox.run_ok(&[]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(record["nodes"]["leaky"]["status"], "ran");
    assert_eq!(sandbox.cat("leaky", "a.txt"), "done\n");
    let started: Vec<String> = std::fs::read_to_string(&pids)
        .expect("the node wrote its PIDs")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(started.len(), 4, "not every sleep started: {started:?}");
    // The node ended only once its processes had.
    marker.assert_none_within(Duration::ZERO, "the node's success");
    let log = sandbox.peirce(&["log", "leaky"]).success().stdout;
    assert!(log.contains("leaving 4 processes running"), "{log}");
}

#[test]
fn a_node_killed_by_a_signal_is_retried_when_it_has_retries_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    let marker = Marker::new();
    // The first attempt starts a background sleep, then its shell is killed by SIGKILL:
    // transient, retried as `retries` allows. A node without retries fails at once.
    let dies_first_time = |name: &str, n: u32| {
        toml_string(&format!(
            "{count}; if [ ! -e '{flag}' ]; then touch '{flag}'; {sleep} >/dev/null 2>&1 & kill -9 $$; fi; echo ok > out/a.txt",
            count = sandbox.counter(name),
            flag = sandbox.path(&format!("{name}.flag")).display(),
            sleep = marker.sleep(n),
        ))
    };
    sandbox.workflow(&format!(
        "[retried]\nkind = \"exec\"\nretries = 1\ncommand = {}\n\n[once]\nkind = \"exec\"\ncommand = {}\n",
        dies_first_time("retried", 1),
        dies_first_time("once", 2),
    ));
    let (outcome, record) = sandbox.run(&[]);
    outcome.expect_code(1);
    let retried = &record["nodes"]["retried"];
    assert_eq!(retried["status"], "ran", "{record:#}");
    assert_eq!(retried["attempts"], 2, "{record:#}");
    assert_eq!(sandbox.count("retried"), 2);
    let once = &record["nodes"]["once"];
    assert_eq!(once["status"], "failed", "{record:#}");
    assert_eq!(once["attempts"], 1, "{record:#}");
    let error = once["error"].as_str().unwrap();
    assert!(
        error.contains("killed by signal 9") && error.contains("transient"),
        "{error}"
    );
    // The killed attempts' background sleeps went with them.
    marker.assert_none_within(Duration::ZERO, "the signal that killed their node");
}

#[test]
fn credentials_stay_out_of_node_environments_unless_passed_by_name() {
    let sandbox = Sandbox::new();
    sandbox.workflow(
        r#"[plain]
kind = "exec"
command = "env | sort | tee out/env.txt"

[allowed]
kind = "exec"
pass_env = ["AWS_PROFILE", "HF_TOKEN", "NOT_SET_ANYWHERE_TOKEN"]
env = { AWS_REGION = "eu-west-1" }
command = "env | sort > out/env.txt"
"#,
    );
    let secrets = [
        ("AWS_ACCESS_KEY_ID", "AKIDTESTVALUE"),
        ("AWS_SECRET_ACCESS_KEY", "secret-aws-value"),
        ("AWS_SESSION_TOKEN", "session-token-value"),
        ("AWS_PROFILE", "profile-value"),
        ("AZURE_STORAGE_KEY", "azure-value"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/keys/google.json"),
        ("DB_PASSWORD", "password-value"),
        ("CLIENT_SECRET", "client-secret-value"),
        ("HF_TOKEN", "hf-token-value"),
        ("OPENAI_API_KEY", "api-key-value"),
    ];
    let mut command = sandbox.command(&["run", "wf.toml", "--json"]);
    command.env("PEIRCE_TEST_HARMLESS", "harmless-value");
    for (name, value) in secrets {
        command.env(name, value);
    }
    let outcome = finish(command.spawn().expect("starting peirce")).success();
    let record = outcome.json();
    assert_eq!(record["status"], "succeeded", "{outcome}");

    let plain = sandbox.cat("plain", "env.txt");
    let log = sandbox.peirce(&["log", "plain"]).success().stdout;
    assert!(
        plain.contains("PEIRCE_TEST_HARMLESS=harmless-value"),
        "{plain}"
    );
    assert!(plain.contains("PATH="), "{plain}");
    for (name, value) in secrets {
        assert!(
            !plain.contains(value),
            "`{name}` reached the node:\n{plain}"
        );
        assert!(!log.contains(value), "`{name}` reached the log:\n{log}");
    }

    let allowed = sandbox.cat("allowed", "env.txt");
    for line in [
        "AWS_PROFILE=profile-value",
        "HF_TOKEN=hf-token-value",
        "AWS_REGION=eu-west-1",
    ] {
        assert!(allowed.contains(line), "`{line}` missing:\n{allowed}");
    }
    for (name, value) in secrets {
        if !["AWS_PROFILE", "HF_TOKEN"].contains(&name) {
            assert!(
                !allowed.contains(value),
                "`{name}` reached the node:\n{allowed}"
            );
        }
    }
    assert!(!allowed.contains("NOT_SET_ANYWHERE_TOKEN"), "{allowed}");
}
