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

#[test]
fn a_failing_node_shows_its_last_lines_and_keeps_its_log() {
    let sandbox = Sandbox::new();
    let count = sandbox.path("count-bad").display().to_string();
    sandbox.workflow(&format!(
        r#"[workflow]
name = "failing"

[good]
kind = "exec"
command = "echo fine; echo ok > out/ok.txt"

[bad]
kind = "exec"
inputs = ["good"]
retries = 1
command = {}
"#,
        common::toml_string(&format!(
            "echo x >> '{count}'; echo \"attempt $(wc -l < '{count}')\"; \
             echo 'Traceback (most recent call last):' >&2; echo 'ValueError: boom' >&2; exit 3"
        ))
    ));
    let (outcome, record) = sandbox.run(&[]);
    let outcome = outcome.expect_code(1);
    // The error shows the last lines of the last attempt, with the exit status.
    for shown in [
        &outcome.stderr,
        record["nodes"]["bad"]["error"].as_str().unwrap(),
    ] {
        assert!(shown.contains("exited with status 3"), "{outcome}");
        assert!(shown.contains("ValueError: boom"), "{outcome}");
        assert!(shown.contains("Traceback"), "{outcome}");
        assert!(shown.contains("| attempt 2"), "{outcome}");
        assert!(!shown.contains("| attempt 1"), "{outcome}");
        assert!(shown.contains("peirce log bad"), "{outcome}");
    }
    // `peirce log` shows the failed node's whole log, every attempt.
    let log = sandbox.peirce(&["log", "bad"]).success();
    assert!(log.stdout.contains("attempt 1"), "{log}");
    assert!(log.stdout.contains("attempt 2"), "{log}");
    assert!(log.stdout.contains("ValueError: boom"), "{log}");
    assert!(log.stderr.contains("failed in run"), "{log}");
    // `peirce status` shows the error under the node.
    let status = sandbox.peirce(&["status", "wf.toml"]).success();
    assert!(status.stdout.contains("error: "), "{status}");
    assert!(status.stdout.contains("ValueError: boom"), "{status}");
    // The node that succeeded still shows its result's log.
    let log = sandbox.peirce(&["log", "good"]).success();
    assert_eq!(log.stdout, "fine\n");

    // Once it succeeds, `log` shows the result's log, and `status` no error.
    let fixed = sandbox
        .read_workflow()
        .replace("exit 3", "echo fixed > out/f.txt");
    sandbox.workflow(&fixed);
    sandbox.run_ok(&[]);
    let log = sandbox.peirce(&["log", "bad"]).success();
    assert!(!log.stderr.contains("failed in run"), "{log}");
    assert!(log.stdout.contains("attempt 3"), "{log}");
    let status = sandbox.peirce(&["status", "wf.toml"]).success();
    assert!(!status.stdout.contains("error: "), "{status}");
}

/// The `error:` lines of a command's stderr.
fn error_lines(outcome: &Outcome) -> Vec<String> {
    outcome
        .stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn plan_rejects_what_run_rejects_with_the_same_error() {
    let generate = |extra: &str| {
        format!(
            "[data]\nkind = \"generate\"\ntask = \"deduction\"\nlevels = [1]\ncount = 2\n{extra}\n"
        )
    };
    let cases = [
        (
            "levels = [1, 9]",
            generate("").replace("levels = [1]", "levels = [1, 9]"),
            "got 9",
        ),
        ("split = 1.5", generate("split = 1.5"), "`split`"),
        (
            "count = -5",
            generate("").replace("count = 2", "count = -5"),
            "`count`",
        ),
        (
            "task = deductoin",
            generate("").replace("\"deduction\"", "\"deductoin\""),
            "deductoin",
        ),
        (
            "gpus = 1 without a GPU",
            "[train]\nkind = \"exec\"\nresources = { gpus = 1 }\ncommand = \"true\"\n".into(),
            "GPU",
        ),
        (
            "{inputs.typo}",
            "[a]\nkind = \"exec\"\ncommand = \"echo a > out/a\"\n\n[b]\nkind = \"exec\"\n\
             inputs = { data = \"a\" }\ncommand = \"cat {inputs.typo}/a > out/b\"\n"
                .into(),
            "no input `typo`",
        ),
    ];
    for (name, workflow, expected) in cases {
        let sandbox = Sandbox::new();
        sandbox.workflow(&workflow);
        let plan = finish(
            sandbox
                .command(&["plan", "wf.toml"])
                .env("CUDA_VISIBLE_DEVICES", "")
                .spawn()
                .unwrap(),
        )
        .expect_code(2);
        let run = finish(
            sandbox
                .command(&["run", "wf.toml"])
                .env("CUDA_VISIBLE_DEVICES", "")
                .spawn()
                .unwrap(),
        )
        .expect_code(2);
        let errors = error_lines(&plan);
        assert!(
            errors.iter().any(|line| line.contains(expected)),
            "{name}: plan says\n{plan}"
        );
        assert_eq!(
            errors,
            error_lines(&run),
            "{name}: plan\n{plan}\nrun\n{run}"
        );
        assert!(
            !sandbox.has_record_for("data") && !sandbox.has_record_for("a"),
            "{name}"
        );
    }
}
