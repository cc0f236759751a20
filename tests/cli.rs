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
    let status = sandbox
        .peirce(&["status", "-w", "workflows/wf.toml"])
        .success();
    assert!(status.stdout.contains(&run_id), "{status}");
    assert!(status.stdout.contains("up to date  b"), "{status}");
    let gc = sandbox.peirce(&["gc", "--dry-run"]).success();
    assert!(gc.stdout.contains("kept 2 live records"), "{gc}");
    // A second run from the root is all cached: the same store. Every command that takes a
    // workflow takes `-w`.
    let again = sandbox
        .peirce(&["run", "-w", "workflows/wf.toml", "--json"])
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
    // A run makes the new store here, and says that the one beside the workflow is not used.
    let run = sandbox.peirce(&["run", "workflows/wf.toml"]).success();
    assert!(
        run.stderr.contains("making a new store") && run.stderr.contains("workflows/.peirce"),
        "{run}"
    );
    assert!(sandbox.store().join("schema").is_file());
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
    // gc keeps the failure's log while the failure is the latest run's.
    sandbox.peirce(&["gc", "--grace", "0s"]).success();
    let log = sandbox.peirce(&["log", "bad"]).success();
    assert!(log.stdout.contains("ValueError: boom"), "{log}");

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
        // No GPU, whatever this machine has.
        let without_gpus = |command: &str| {
            let mut child = sandbox.command(&[command, "wf.toml"]);
            child.env("CUDA_VISIBLE_DEVICES", "");
            finish(child.spawn().expect("starting peirce")).expect_code(2)
        };
        let (plan, run) = (without_gpus("plan"), without_gpus("run"));
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

#[test]
fn declared_outputs_are_checked_and_an_empty_output_is_an_error() {
    let sandbox = Sandbox::new();
    sandbox.write("prep.sh", "echo prepared > out/prep.txt\n");
    sandbox.workflow(
        r#"[empty]
kind = "exec"
command = "echo nothing written"

[partial]
kind = "exec"
outputs = ["model.json", "metrics/"]
command = "echo {} > out/model.json"

[complete]
kind = "exec"
outputs = ["model.json", "metrics/"]
command = "echo {} > out/model.json; mkdir out/metrics; echo 1 > out/metrics/a"

[nothing]
kind = "exec"
allow_empty = true
command = "true"

[script-beside]
kind = "exec"
command = "sh prep.sh"

[script-input]
kind = "exec"
inputs = { script = "./prep.sh" }
command = "sh {inputs.script}"
"#,
    );
    let (outcome, record) = sandbox.run(&[]);
    outcome.expect_code(1);
    common::expect_statuses(
        &record,
        &[
            ("empty", "failed"),
            ("partial", "failed"),
            ("complete", "ran"),
            ("nothing", "ran"),
            ("script-beside", "failed"),
            ("script-input", "ran"),
        ],
    );
    let error = |node: &str| record["nodes"][node]["error"].as_str().unwrap().to_string();
    let hint = [
        "private working folder",
        "inputs = { script = \"./prep.py\" }",
    ];
    let empty = error("empty");
    assert!(
        empty.contains("wrote nothing into its output folder `out/`"),
        "{empty}"
    );
    assert!(empty.contains("allow_empty = true"), "{empty}");
    let partial = error("partial");
    assert!(
        partial.contains("declared output `metrics/`") && partial.contains("(it wrote model.json)"),
        "{partial}"
    );
    let beside = error("script-beside");
    assert!(beside.contains("exited with status"), "{beside}");
    for text in [&empty, &partial, &beside] {
        for part in hint {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
    }
    assert_eq!(sandbox.cat("script-input", "prep.txt"), "prepared\n");
    assert_eq!(sandbox.listing("nothing").len(), 0);
    // Bad declarations are load errors of `plan` and `run` alike.
    sandbox.workflow("[a]\nkind = \"exec\"\noutputs = [\"../up\"]\ncommand = \"true\"\n");
    let plan = sandbox.peirce(&["plan", "wf.toml"]).expect_code(2);
    assert!(plan.stderr.contains("`outputs`"), "{plan}");
}

#[test]
fn cat_into_a_closed_pipe_ends_quietly() {
    let sandbox = Sandbox::new();
    sandbox.workflow("[big]\nkind = \"exec\"\ncommand = \"seq 1 20000 | tee out/numbers.txt\"\n");
    sandbox.run_ok(&[]);
    for args in [
        &["cat", "big", "numbers.txt"][..],
        &["cat", "big"],
        &["log", "big"],
    ] {
        // The reading end is closed before peirce starts, so its first write fails.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut command = sandbox.command(args);
        command.stdout(writer);
        let outcome = finish_without_stdout(command.spawn().expect("starting peirce"));
        assert_eq!(outcome.0, 141, "{args:?}: {}", outcome.1);
        assert!(
            !outcome.1.contains("error") && !outcome.1.contains("panicked"),
            "{args:?}: {}",
            outcome.1
        );
    }
}

/// Exit code and stderr of a child whose stdout is not piped to the test.
fn finish_without_stdout(child: std::process::Child) -> (i32, String) {
    let output = child.wait_with_output().expect("waiting for peirce");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Two nodes that fail when they run at the same time: each holds the folder `busy` in the
/// sandbox for `hold` seconds, asking for `memory`.
fn exclusive_pair(sandbox: &Sandbox, memory: &str, hold: f64) -> String {
    let busy = sandbox.path("busy").display().to_string();
    let command = common::toml_string(&format!(
        "mkdir '{busy}' && sleep {hold} && rmdir '{busy}' && echo done > out/done.txt"
    ));
    format!(
        "[one]\nkind = \"exec\"\nresources = {{ cpus = 1, memory = \"{memory}\" }}\ncommand = {command}\n\n\
         [two]\nkind = \"exec\"\nresources = {{ cpus = 1, memory = \"{memory}\" }}\ncommand = {command}\n"
    )
}

#[test]
fn memory_asks_are_scheduled_and_oversized_asks_rejected() {
    let sandbox = Sandbox::new();
    // 768 MiB each in a 1 GiB budget: one at a time, though two CPU slots are free.
    sandbox.workflow(&exclusive_pair(&sandbox, "768M", 0.5));
    let record = sandbox.run_ok(&["-j", "2", "--memory", "1G"]);
    common::expect_statuses(&record, &[("one", "ran"), ("two", "ran")]);
    // The same pair within a 2 GiB budget runs together, so the nodes collide: the check
    // above can fail.
    let control = Sandbox::new();
    control.workflow(&exclusive_pair(&control, "768M", 1.5));
    let (outcome, record) = control.run(&["-j", "2", "--memory", "2G"]);
    outcome.expect_code(1);
    let statuses = common::statuses(&record);
    assert_eq!(
        statuses
            .values()
            .filter(|status| *status == "failed")
            .count(),
        1,
        "{record:#}"
    );

    // An ask above the budget (by default the machine's memory) is rejected before anything
    // runs, by `plan` and `run` alike.
    let huge = Sandbox::new();
    huge.workflow(&exclusive_pair(&huge, "100T", 0.0));
    for args in [&["plan", "wf.toml"][..], &["run", "wf.toml"]] {
        let outcome = huge.peirce(args).expect_code(2);
        assert!(
            outcome.stderr.contains("asks for 100.0 TiB of memory")
                && outcome.stderr.contains("`--memory`"),
            "{outcome}"
        );
    }
    assert!(!huge.path("busy").exists() && !huge.has_record_for("one"));
}

#[test]
fn progress_shows_done_total_and_rate_and_the_runs_own_progress() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "steps.sh",
        "for i in 1 2 3 4; do\n  echo \"{\\\"event\\\":\\\"progress\\\",\\\"done\\\":$i,\\\"total\\\":4,\\\"message\\\":\\\"step $i\\\"}\"\n  sleep 0.4\ndone\necho done > \"$PEIRCE_OUT/steps.txt\"\n",
    );
    let script = sandbox.path("steps.sh").display().to_string();
    sandbox.workflow(&format!(
        "[first]\nkind = \"exec\"\ncommand = \"echo 1 > out/one.txt\"\n\n\
         [steps]\nkind = \"worker\"\nprogram = \"sh\"\nargs = [{}]\n",
        common::toml_string(&script)
    ));
    let outcome = sandbox.peirce(&["run", "wf.toml"]).success();
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    // The node's progress, with done/total, percent and a rate (stderr is not a terminal:
    // at most a line a second, and always the last).
    let progress: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("steps") && line.contains("/4 "))
        .collect();
    assert!(
        progress
            .iter()
            .any(|line| line.contains("[4/4 100%") && line.contains("/s]")),
        "{outcome}"
    );
    assert!(
        progress.len() < 4,
        "printed more than once a second:\n{outcome}"
    );
    // Every node line carries the run's progress: nodes finished of all, and elapsed time.
    let finished = lines
        .iter()
        .find(|line| line.contains("steps") && line.contains("done in"))
        .unwrap_or_else(|| panic!("no finished line:\n{outcome}"));
    assert!(finished.starts_with("[2/2 "), "{outcome}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("[0/2 0.") && line.contains("running")),
        "{outcome}"
    );
}
