//! Ctrl-C: `peirce run` stops its running nodes (their whole process groups), stores
//! nothing partial, exits 130, and the next run finishes the work.

mod common;

use std::time::{Duration, Instant};

use common::{finish, toml_string, wait_for_line, Sandbox};

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn interrupt_kills_running_nodes_and_stores_nothing_partial() {
    let sandbox = Sandbox::new();
    let marker = sandbox.path("slow.pid");
    // `slow` starts a grandchild (a pipeline) so the whole process group must die.
    sandbox.workflow(&format!(
        r#"[slow]
kind = "exec"
command = {slow}

[quick]
kind = "exec"
command = "echo quick > out/q.txt"
"#,
        slow = toml_string(&format!(
            "{count}; if [ -e '{done}' ]; then echo done > out/s.txt; exit 0; fi; sleep 60 | cat & echo $! > '{pid}.tmp'; mv '{pid}.tmp' '{pid}'; echo partial > out/s.txt; wait",
            count = sandbox.counter("slow"),
            done = sandbox.path("second-time").display(),
            pid = marker.display()
        )),
    ));
    let child = sandbox.spawn(&["run", "--json", "wf.toml"]);
    let peirce_pid = child.id() as i32;
    let grandchild: i32 = wait_for_line(&marker, Duration::from_secs(30))
        .parse()
        .expect("a pid");
    assert!(process_exists(grandchild));

    let interrupted = Instant::now();
    // SAFETY: a plain syscall on the process this test started.
    assert_eq!(unsafe { libc::kill(peirce_pid, libc::SIGINT) }, 0);
    let outcome = finish(child);
    assert_eq!(outcome.code, 130, "stderr: {}", outcome.stderr);
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "took {:?}",
        interrupted.elapsed()
    );
    assert!(outcome.stderr.contains("interrupted"), "{}", outcome.stderr);
    let record = outcome.json();
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["nodes"]["slow"]["status"], "cancelled");

    // The node's process group is gone, grandchild included.
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(grandchild) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !process_exists(grandchild),
        "the node's pipeline survived Ctrl-C"
    );

    // Nothing of `slow` was recorded; everything stored is complete.
    assert!(!sandbox.has_record_for("slow"));
    sandbox.assert_store_sound();

    // The next run finishes the work (and does not wait on a stale lease).
    std::fs::write(sandbox.path("second-time"), "").unwrap();
    let started = Instant::now();
    let record = sandbox.run_ok(&[]);
    assert_eq!(record["nodes"]["slow"]["status"], "ran");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(sandbox.cat("slow", "s.txt").trim(), "done");
}
