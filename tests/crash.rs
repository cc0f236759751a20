//! Crashes and corruption never leave a usable half-result: a node killed mid-run, the
//! runner itself killed between publishing blobs and recording the action, and blobs
//! corrupted on disk. After each, every action record in the store is complete and
//! verified, and the next run finishes the work with the right bytes.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{expect_statuses, planned, toml_string, Sandbox};

/// `first` feeds `victim`, which feeds `last`; `bystander` stands apart. The first time it
/// runs, `victim` writes its PID to `victim.pid` and sleeps (as that very process, so the
/// kill leaves nothing behind holding its pipes); later runs find the file and finish.
fn victim_workflow(sandbox: &Sandbox) -> String {
    let pid = sandbox.path("victim.pid");
    format!(
        r#"[first]
kind = "exec"
command = {first}

[victim]
kind = "exec"
inputs = ["first"]
command = {victim}

[last]
kind = "exec"
inputs = ["victim"]
command = {last}

[bystander]
kind = "exec"
command = {bystander}
"#,
        first = toml_string(&format!("{}; echo first > out/a.txt", sandbox.counter("first"))),
        victim = toml_string(&format!(
            "{count}; if [ ! -e '{pid}' ]; then echo $$ > '{pid}.tmp'; mv '{pid}.tmp' '{pid}'; exec sleep 60; fi; cp {{inputs.first}}/a.txt out/b.txt; echo victim >> out/b.txt",
            count = sandbox.counter("victim"),
            pid = pid.display()
        )),
        last = toml_string(&format!(
            "{}; cat {{inputs.victim}}/b.txt > out/c.txt; echo last >> out/c.txt",
            sandbox.counter("last")
        )),
        bystander = toml_string(&format!(
            "{}; echo bystander > out/d.txt",
            sandbox.counter("bystander")
        )),
    )
}

fn sigkill(pid: i32) {
    // SAFETY: a plain syscall on a process this test started (directly or through peirce).
    let result = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(result, 0, "kill({pid}) failed");
}

fn assert_finished_chain(sandbox: &Sandbox) {
    assert_eq!(sandbox.cat("last", "c.txt"), "first\nvictim\nlast\n");
    assert_eq!(sandbox.cat("bystander", "d.txt"), "bystander\n");
}

#[test]
fn a_node_killed_mid_run_fails_and_leaves_no_record() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&victim_workflow(&sandbox));
    let child = sandbox.spawn(&["run", "wf.toml", "--json"]);
    let pid: i32 = common::wait_for_line(&sandbox.path("victim.pid"), Duration::from_secs(60))
        .parse()
        .expect("a PID");
    sigkill(pid);
    let outcome = common::finish(child).expect_code(1);
    let record = outcome.json();
    expect_statuses(
        &record,
        &[
            ("bystander", "ran"),
            ("first", "ran"),
            ("last", "skipped"),
            ("victim", "failed"),
        ],
    );
    let error = record["nodes"]["victim"]["error"].as_str().unwrap();
    assert!(error.contains("signal 9"), "{error}");
    assert!(!sandbox.has_record_for("victim"));
    sandbox.assert_store_sound();

    let record = sandbox.run_ok(&[]);
    expect_statuses(
        &record,
        &[
            ("bystander", "cached"),
            ("first", "cached"),
            ("last", "ran"),
            ("victim", "ran"),
        ],
    );
    assert_eq!(
        sandbox.counts(&["first", "victim", "last", "bystander"]),
        [1, 2, 1, 1]
    );
    assert_finished_chain(&sandbox);
    sandbox.assert_store_sound();
}

#[test]
fn the_runner_killed_before_recording_leaves_no_record() {
    let sandbox = Sandbox::new();
    // The victim finishes at once here: the pid file exists.
    sandbox.write("victim.pid", "0\n");
    sandbox.workflow(&victim_workflow(&sandbox));
    let mut command = sandbox.command(&["run", "wf.toml", "--jobs", "1"]);
    command.env("PEIRCE_TEST_PAUSE_BEFORE_RECORD_MS", "60000");
    let mut child = command.spawn().expect("starting peirce");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut paused_node = None;
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("reading stderr");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("failpoint: pausing") {
            paused_node = line.split('`').nth(1).map(str::to_string);
            break;
        }
    }
    let paused_node = paused_node.unwrap_or_else(|| panic!("no failpoint line:\n{seen}"));
    sigkill(child.id() as i32);
    let _ = child.wait();

    // Its blobs and tree may be there; its record must not be, and nothing is broken.
    assert!(
        !sandbox.has_record_for(&paused_node),
        "`{paused_node}` was recorded"
    );
    sandbox.assert_store_sound();
    let plan = sandbox.plan(&[]);
    assert_eq!(planned(&plan, &paused_node)["state"], "runs", "{plan:#}");

    // The dead runner's lease is broken at once, not waited out.
    let (outcome, record) = sandbox.run(&[]);
    let outcome = outcome.success();
    assert!(
        !outcome.stderr.contains("waiting for another runner"),
        "{outcome}"
    );
    assert_eq!(record["nodes"][&paused_node]["status"], "ran");
    assert_eq!(sandbox.count(&paused_node), 2);
    assert_finished_chain(&sandbox);
    sandbox.assert_store_sound();
}

/// Overwrites a stored blob with other bytes of the same length.
fn corrupt(sandbox: &Sandbox, digest: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = sandbox.blob_path(digest);
    let bytes = std::fs::read(&path).expect("reading the blob");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let flipped: Vec<u8> = bytes.iter().map(|b| b ^ 0x20).collect();
    assert_ne!(bytes, flipped);
    std::fs::write(&path, flipped).expect("corrupting the blob");
}

/// The blob digest of `file` in `node`'s latest output.
fn blob_of(sandbox: &Sandbox, node: &str, file: &str) -> String {
    let listing = sandbox.listing(node);
    let (size, digest) = listing
        .get(file)
        .unwrap_or_else(|| panic!("`{node}` has no `{file}`: {listing:?}"));
    assert!(*size > 0);
    digest.clone()
}

#[test]
fn a_corrupt_blob_is_detected_on_read_and_recomputed() {
    let sandbox = Sandbox::new();
    sandbox.write("victim.pid", "0\n");
    sandbox.workflow(&victim_workflow(&sandbox));
    sandbox.run_ok(&[]);
    let blob = blob_of(&sandbox, "victim", "b.txt");
    corrupt(&sandbox, &blob);

    let read = sandbox.peirce(&["cat", &blob]);
    assert_ne!(read.code, 0, "corrupt bytes were served:\n{read}");
    assert!(read.stderr.contains("corrupt"), "{read}");
    assert!(!read.stdout.contains("victim"), "{read}");
    let read = sandbox.peirce(&["cat", "victim", "b.txt"]);
    assert_ne!(read.code, 0, "corrupt bytes were served:\n{read}");

    let plan = sandbox.plan(&[]);
    assert_eq!(planned(&plan, "victim")["state"], "runs", "{plan:#}");
    let record = sandbox.run_ok(&[]);
    expect_statuses(
        &record,
        &[
            ("bystander", "cached"),
            ("first", "cached"),
            ("last", "cached"),
            ("victim", "ran"),
        ],
    );
    assert_eq!(sandbox.count("victim"), 2);
    assert_eq!(sandbox.cat("victim", "b.txt"), "first\nvictim\n");
    assert_eq!(
        sandbox.peirce(&["cat", &blob]).success().stdout,
        "first\nvictim\n"
    );
    sandbox.assert_store_sound();
}

#[test]
fn a_corrupt_input_is_recomputed_before_its_consumer_reads_it() {
    let sandbox = Sandbox::new();
    sandbox.write("victim.pid", "0\n");
    sandbox.workflow(&victim_workflow(&sandbox));
    sandbox.run_ok(&[]);
    let blob = blob_of(&sandbox, "victim", "b.txt");
    // Same length, so only reading the bytes can tell.
    corrupt(&sandbox, &blob);

    // `last` must rerun and read `victim`'s output, which is corrupt.
    let (outcome, record) = sandbox.run(&["--set", "last.salt=\"2\"", "--as-latest"]);
    let outcome = outcome.success();
    assert_eq!(record["nodes"]["last"]["status"], "ran", "{record:#}");
    assert!(
        outcome.stderr.contains("corrupt"),
        "the corruption went unreported:\n{outcome}"
    );
    assert_eq!(sandbox.count("victim"), 2, "`victim` was not recomputed");
    assert_eq!(sandbox.count("last"), 2);
    assert_eq!(sandbox.cat("last", "c.txt"), "first\nvictim\nlast\n");
    assert_eq!(sandbox.cat("victim", "b.txt"), "first\nvictim\n");
    sandbox.assert_store_sound();
}

#[test]
fn a_forced_node_runs_even_when_its_input_is_recomputed_first() {
    let sandbox = Sandbox::new();
    sandbox.write("victim.pid", "0\n");
    sandbox.workflow(&victim_workflow(&sandbox));
    sandbox.run_ok(&[]);
    corrupt(&sandbox, &blob_of(&sandbox, "victim", "b.txt"));

    // `last` is forced; reading its input finds the corruption, `victim` is recomputed
    // (to the same bytes, so `last` keeps its key), and then `last` must still run.
    let (outcome, record) = sandbox.run(&["--force", "last"]);
    let outcome = outcome.success();
    assert!(outcome.stderr.contains("corrupt"), "{outcome}");
    assert_eq!(sandbox.count("victim"), 2, "`victim` was not recomputed");
    assert_eq!(record["nodes"]["last"]["status"], "ran", "{record:#}");
    assert_eq!(sandbox.count("last"), 2, "`--force last` was dropped");
    assert_eq!(sandbox.cat("last", "c.txt"), "first\nvictim\nlast\n");
    sandbox.assert_store_sound();
}
