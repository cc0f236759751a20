//! The command line as a user meets it (issue 15): one rule for finding the store, failures
//! that can be diagnosed from the terminal, plans that reject what runs reject, declared
//! outputs, memory asks, and a closed pipe.

mod common;

use common::{finish, Outcome, Sandbox};

/// Two exec nodes in `workflows/wf.toml` of the sandbox: `a` writes `a.txt` and a line on
/// stderr, `b` copies it. Commands run from the sandbox root, as from a repository's root.
fn nested_workflow(sandbox: &Sandbox) {
    std::fs::create_dir_all(sandbox.path("workflows")).unwrap();
    sandbox.write(
        "workflows/wf.toml",
        r#"[workflow]
name = "nested"

[a]
kind = "exec"
command = "echo made-a >&2; echo hello > out/a.txt"

[b]
kind = "exec"
inputs = ["a"]
command = "cp {inputs.a}/a.txt out/b.txt"
"#,
    );
}

/// `peirce ARGS` run from `folder` (relative to the sandbox root).
fn peirce_in(sandbox: &Sandbox, folder: &str, args: &[&str]) -> Outcome {
    let mut command = sandbox.command(args);
    command.current_dir(sandbox.path(folder));
    finish(command.spawn().expect("starting peirce"))
}

#[test]
fn every_command_finds_the_store_a_run_from_the_same_folder_used() {
    let sandbox = Sandbox::new();
    nested_workflow(&sandbox);
    let record = sandbox
        .peirce(&["run", "workflows/wf.toml", "--json"])
        .success()
        .json();
    // The store is the current folder's, not the workflow's.
    assert!(
        sandbox.store().join("schema").is_file(),
        "no store at the root"
    );
    assert!(
        !sandbox.path("workflows/.peirce").exists(),
        "a store was made beside the workflow"
    );
    let run_id = record["id"].as_str().unwrap().to_string();

    let show = sandbox.peirce(&["show", "b"]).success();
    assert!(show.stdout.contains("workflow  nested"), "{show}");
    assert_eq!(sandbox.cat("b", "b.txt"), "hello\n");
    let log = sandbox.peirce(&["log", "a"]).success();
    assert!(log.stdout.contains("made-a"), "{log}");
    let why = sandbox.peirce(&["why", "b"]).success();
    assert!(why.stdout.contains("made by node `b`"), "{why}");
    let runs = sandbox.peirce(&["runs"]).success();
    assert!(runs.stdout.contains(&run_id), "{runs}");
    let runs = sandbox
        .peirce(&["runs", "-w", "workflows/wf.toml"])
        .success();
    assert!(runs.stdout.contains(&run_id), "{runs}");
    let status = sandbox.peirce(&["status", "workflows/wf.toml"]).success();
    assert!(status.stdout.contains(&run_id), "{status}");
    assert!(status.stdout.contains("up to date  b"), "{status}");
    let gc = sandbox.peirce(&["gc", "--dry-run"]).success();
    assert!(gc.stdout.contains("kept 2 live records"), "{gc}");
    // A second run from the root is all cached: the same store.
    let again = sandbox
        .peirce(&["run", "workflows/wf.toml", "--json"])
        .success()
        .json();
    common::expect_statuses(&again, &[("a", "cached"), ("b", "cached")]);

    // From a folder below, the store above is found, as git finds `.git`.
    let below = peirce_in(&sandbox, "workflows", &["cat", "b", "b.txt"]).success();
    assert_eq!(below.stdout, "hello\n");
    let below = peirce_in(&sandbox, "workflows", &["run", "wf.toml", "--json"]).success();
    common::expect_statuses(&below.json(), &[("a", "cached"), ("b", "cached")]);
    assert!(!sandbox.path("workflows/.peirce").exists());
}

#[test]
fn commands_that_read_never_make_a_store() {
    let sandbox = Sandbox::new();
    nested_workflow(&sandbox);
    for args in [
        &["show", "a"][..],
        &["log", "a"],
        &["cat", "a", "a.txt"],
        &["why", "a"],
        &["runs"],
        &["gc"],
    ] {
        let outcome = sandbox.peirce(args).expect_code(1);
        assert!(
            outcome.stderr.contains("No store found")
                && outcome
                    .stderr
                    .contains(&sandbox.root().display().to_string()),
            "{args:?}: {outcome}"
        );
    }
    // Plan and status work against an empty store: everything is new, nothing is written.
    let plan = sandbox.peirce(&["plan", "workflows/wf.toml"]).success();
    assert!(plan.stdout.contains("2 to run"), "{plan}");
    let status = sandbox.peirce(&["status", "workflows/wf.toml"]).success();
    assert!(status.stdout.contains("never run"), "{status}");
    assert!(!sandbox.store().exists(), "a read made `.peirce`");
    assert!(!sandbox.path("workflows/.peirce").exists());
    // A store beside the workflow (where peirce used to keep it) is named in the error.
    std::fs::create_dir_all(sandbox.path("workflows/.peirce")).unwrap();
    let outcome = sandbox
        .peirce(&["show", "a", "-w", "workflows/wf.toml"])
        .expect_code(1);
    assert!(outcome.stderr.contains("workflows/.peirce"), "{outcome}");
}
