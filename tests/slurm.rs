//! The Slurm executor (docs/architecture.md §21) against a real Slurm: the one-node cluster
//! on loopback that scripts/slurm.sh starts (`PEIRCE_TEST_SLURM`, `SLURM_CONF`). Each test
//! finds its own jobs among the cluster's by their working folder, inside its sandbox.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The nodes of workflows/example.toml.
const EXAMPLE: [&str; 4] = ["words", "counts", "top", "report"];

/// Whether the cluster is there; `None` skips (panics under PEIRCE_REQUIRE_EXTERNAL=1).
fn slurm(test: &str) -> Option<String> {
    peirce_testing::external(
        "PEIRCE_TEST_SLURM",
        test,
        "scripts/test starts a one-node cluster: `source scripts/tools.sh; source scripts/slurm.sh; \
         peirce_start_slurm`",
    )
}

/// One job of the cluster: id, name, state.
#[derive(Debug, Clone)]
struct Job {
    id: String,
    name: String,
    state: String,
}

/// The cluster's jobs (recent finished ones too) that ran in `sandbox` (or, working from the
/// remote, were submitted from it).
fn jobs(sandbox: &Sandbox) -> Vec<Job> {
    let output = std::process::Command::new("scontrol")
        .args(["show", "job", "-o"])
        .output()
        .expect("running scontrol");
    let root = sandbox.root().to_string_lossy().into_owned();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut found: Vec<Job> = text
        .lines()
        .filter(|line| {
            line.contains(&format!("WorkDir={root}/")) || line.contains(&format!("Command={root}/"))
        })
        .map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(&format!("{key}=")))
                    .unwrap_or_default()
                    .to_owned()
            };
            Job {
                id: field("JobId"),
                name: field("JobName"),
                state: field("JobState"),
            }
        })
        .collect();
    found.sort_by_key(|job| job.id.parse::<u64>().unwrap_or(0));
    found
}

/// Waits until a job named `peirce-NODE` of `sandbox` runs.
fn wait_running(sandbox: &Sandbox, node: &str) -> Job {
    let started = Instant::now();
    loop {
        let name = format!("peirce-{node}");
        if let Some(job) = jobs(sandbox)
            .into_iter()
            .find(|job| job.name == name && job.state == "RUNNING")
        {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no running job for `{node}`: {:?}",
            jobs(sandbox)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sandbox holding workflows/example.toml and its data.
fn example() -> Sandbox {
    let sandbox = Sandbox::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(sandbox.path("data")).unwrap();
    std::fs::copy(
        repo.join("workflows/data/corpus.txt"),
        sandbox.path("data/corpus.txt"),
    )
    .unwrap();
    std::fs::copy(repo.join("workflows/example.toml"), sandbox.workflow_path()).unwrap();
    sandbox
}

#[test]
fn example_through_slurm_matches_a_local_run_and_reruns_submit_nothing() {
    if slurm("example_through_slurm_matches_a_local_run_and_reruns_submit_nothing").is_none() {
        return;
    }
    let local = example();
    let local_record = local.run_ok(&[]);
    let cluster = example();
    let record = cluster.run_ok(&["--executor", "slurm"]);
    expect_statuses(&record, &EXAMPLE.map(|node| (node, "ran")));
    assert_eq!(outputs(&record), outputs(&local_record));
    // Every node was one job, and each completed.
    let submitted = jobs(&cluster);
    let mut names: Vec<&str> = submitted.iter().map(|job| job.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "peirce-counts",
            "peirce-report",
            "peirce-top",
            "peirce-words"
        ],
        "{submitted:?}"
    );
    assert!(
        submitted.iter().all(|job| job.state == "COMPLETED"),
        "{submitted:?}"
    );
    // The run record names each node's job; `status` and `runs` show them, `--json` carries
    // them.
    for job in &submitted {
        let node = job.name.strip_prefix("peirce-").unwrap();
        assert_eq!(
            record["nodes"][node]["jobs"],
            serde_json::json!([job.id]),
            "{record:#}"
        );
    }
    assert!(local_record["nodes"]["words"].get("jobs").is_none());
    let words = &submitted
        .iter()
        .find(|job| job.name == "peirce-words")
        .unwrap()
        .id;
    let status = cluster.peirce(&["status", "wf.toml"]).success().stdout;
    assert!(
        status
            .lines()
            .any(|line| line.contains("words") && line.ends_with(&format!("(Slurm job {words})"))),
        "{status}"
    );
    let status = cluster
        .peirce(&["status", "wf.toml", "--json"])
        .success()
        .json();
    assert_eq!(
        status["latest_run"]["nodes"]["words"]["jobs"],
        serde_json::json!([words])
    );
    let mut ids: Vec<u64> = submitted
        .iter()
        .map(|job| job.id.parse().unwrap())
        .collect();
    ids.sort_unstable();
    // Ranges of consecutive ids (other tests' jobs may come between).
    let runs = cluster.peirce(&["runs"]).success().stdout;
    let line = runs.lines().next().unwrap();
    let first = format!("Slurm jobs {}", ids[0]);
    assert!(line.contains(&first), "{first}: {runs}");
    assert!(line.contains(&ids[3].to_string()), "{runs}");
    let runs = cluster.peirce(&["runs", "--json"]).success().json();
    assert_eq!(
        runs[0]["nodes"]["words"]["jobs"],
        serde_json::json!([words])
    );
    assert_eq!(
        cluster.cat("report", "report.txt"),
        local.cat("report", "report.txt")
    );
    // Again: all cached, nothing submitted.
    let again = cluster.run_ok(&["--executor", "slurm"]);
    assert!(
        statuses(&again).values().all(|status| status == "cached"),
        "{again:#}"
    );
    assert_eq!(jobs(&cluster).len(), 4, "{:?}", jobs(&cluster));
    // The workflow's own `executor`, with a node kept local: three jobs.
    let mixed = example();
    let text = std::fs::read_to_string(mixed.workflow_path())
        .unwrap()
        .replace(
            "name = \"example\"",
            "name = \"example\"\nexecutor = \"slurm\"\n\n[executor.slurm]\npartition = \"debug\"",
        )
        .replace(
            "[report]\nkind = \"exec\"",
            "[report]\nkind = \"exec\"\nexecutor = \"local\"",
        );
    mixed.workflow(&text);
    let record = mixed.run_ok(&[]);
    assert_eq!(outputs(&record), outputs(&local_record));
    let mut names: Vec<String> = jobs(&mixed).into_iter().map(|job| job.name).collect();
    names.sort_unstable();
    assert_eq!(names, ["peirce-counts", "peirce-top", "peirce-words"]);
    // `executor` in the user config, when neither the command line nor the workflow names
    // one: four jobs again.
    let configured = example();
    std::fs::create_dir_all(configured.path("config/peirce")).unwrap();
    configured.write("config/peirce/config.toml", "executor = \"slurm\"\n");
    let record = configured.run_ok(&[]);
    assert_eq!(outputs(&record), outputs(&local_record));
    assert_eq!(jobs(&configured).len(), 4, "{:?}", jobs(&configured));
    // A value it does not know is an error naming the file and the key.
    configured.write("config/peirce/config.toml", "executor = \"lsf\"\n");
    let refused = configured.peirce(&["run", "wf.toml"]);
    assert_ne!(refused.code, 0, "{refused}");
    assert!(
        refused.stderr.contains("config.toml") && refused.stderr.contains("`executor`"),
        "{refused}"
    );
}

#[test]
fn a_node_over_its_memory_is_reported_out_of_memory() {
    if slurm("a_node_over_its_memory_is_reported_out_of_memory").is_none() {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.workflow(
        r#"[hog]
kind = "exec"
resources = { memory = "64M" }
command = "echo allocating; python3 -c 'import time; x = b\"x\" * (400 << 20); time.sleep(10)' && echo done > out/x"
"#,
    );
    let (outcome, record) = sandbox.run(&["--executor", "slurm"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    expect_statuses(&record, &[("hog", "failed")]);
    let error = record["nodes"]["hog"]["error"].as_str().unwrap();
    assert!(error.contains("out of memory"), "{error}");
    assert!(error.contains("exceeded memory limit"), "{error}");
    let job = jobs(&sandbox).pop().unwrap();
    assert_eq!(record["nodes"]["hog"]["jobs"], serde_json::json!([job.id]));
    // `peirce log` shows what the job's command printed.
    let log = sandbox.peirce(&["log", "hog"]).success();
    assert_eq!(log.stdout, "allocating\n", "{log}");
    let status = sandbox.peirce(&["status", "wf.toml"]).success().stdout;
    assert!(
        status.contains("last: failed") && status.contains(&format!("(Slurm job {})", job.id)),
        "{status}"
    );
    assert!(
        sandbox
            .peirce(&["status", "wf.toml", "--json"])
            .success()
            .stdout
            .contains("hog"),
        "status lists the node"
    );
}

#[test]
fn a_job_cancelled_outside_the_run_is_retried_or_reported() {
    if slurm("a_job_cancelled_outside_the_run_is_retried_or_reported").is_none() {
        return;
    }
    for retries in [1, 0] {
        let sandbox = Sandbox::new();
        // The first attempt waits to be cancelled; a second one finishes at once.
        sandbox.workflow(&format!(
            r#"[slow]
kind = "exec"
retries = {retries}
command = {command}
"#,
            command = toml_string(&format!(
                "{}; if [ $(wc -l < '{}') -eq 1 ]; then sleep 60; fi; echo ok > out/ok",
                sandbox.counter("slow"),
                sandbox.path("count-slow").display()
            ))
        ));
        let child = sandbox.spawn(&["run", "wf.toml", "--json", "--executor", "slurm"]);
        let job = wait_running(&sandbox, "slow");
        // The command itself has started (not just the job).
        wait_for_line(&sandbox.path("count-slow"), Duration::from_secs(60));
        let status = std::process::Command::new("scancel")
            .arg(&job.id)
            .status()
            .unwrap();
        assert!(status.success());
        let outcome = finish(child);
        let record = outcome.json();
        if retries == 1 {
            assert_eq!(outcome.code, 0, "{outcome}");
            expect_statuses(&record, &[("slow", "ran")]);
            assert_eq!(record["nodes"]["slow"]["attempts"], 2, "{record:#}");
            // One job per attempt, the cancelled one first.
            let ids: Vec<String> = jobs(&sandbox).into_iter().map(|job| job.id).collect();
            assert_eq!(ids.len(), 2, "{ids:?}");
            assert_eq!(ids[0], job.id);
            assert_eq!(record["nodes"]["slow"]["jobs"], serde_json::json!(ids));
            assert_eq!(sandbox.count("slow"), 2);
            assert_eq!(sandbox.cat("slow", "ok"), "ok\n");
        } else {
            assert_eq!(outcome.code, 1, "{outcome}");
            expect_statuses(&record, &[("slow", "failed")]);
            let error = record["nodes"]["slow"]["error"].as_str().unwrap();
            assert!(
                error.contains(&format!(
                    "Slurm job {} was cancelled outside this run",
                    job.id
                )),
                "{error}"
            );
            assert!(error.contains("(transient)"), "{error}");
        }
    }
}

#[test]
fn interrupting_the_runner_cancels_its_jobs_and_stores_nothing() {
    let test = "interrupting_the_runner_cancels_its_jobs_and_stores_nothing";
    if slurm(test).is_none() {
        return;
    }
    let Some(endpoint) = common::s3::endpoint(test) else {
        return;
    };
    // Through the shared folder, then through the remote (`via_remote`).
    for remote in [
        None,
        Some(common::s3::fresh_remote(&endpoint, "interrupt").1),
    ] {
        let sandbox = Sandbox::new();
        let settings = if remote.is_some() {
            "[executor.slurm]\nvia_remote = true\n\n"
        } else {
            ""
        };
        sandbox.workflow(&format!(
            r#"{settings}[slow]
kind = "exec"
command = {command}
"#,
            command = toml_string(&format!(
                "{}; echo partial > out/partial; sleep 60",
                sandbox.counter("slow")
            ))
        ));
        let mut args = vec!["run", "wf.toml", "--json", "--executor", "slurm"];
        if let Some(remote) = &remote {
            args.extend(["--remote", remote]);
        }
        let child = sandbox.spawn(&args);
        let job = wait_running(&sandbox, "slow");
        wait_for_line(&sandbox.path("count-slow"), Duration::from_secs(60));
        let pid = child.id() as i32;
        // SAFETY: signalling the child this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let outcome = finish(child);
        assert_eq!(outcome.code, 130, "{outcome}");
        expect_statuses(&outcome.json(), &[("slow", "cancelled")]);
        let state = jobs(&sandbox)
            .into_iter()
            .find(|found| found.id == job.id)
            .unwrap()
            .state;
        assert_eq!(state, "CANCELLED");
        // Nothing partial: the node is not cached (nor, from the remote, its folder left).
        let plan = sandbox.plan(&[]);
        assert_eq!(planned(&plan, "slow")["state"], "runs", "{plan:#}");
        for left in [
            std::env::temp_dir().join(format!("peirce-job-{}", job.id)),
            std::path::PathBuf::from(format!("/tmp/peirce-slurm-{}.out", job.id)),
        ] {
            assert!(!left.exists(), "{} is left", left.display());
        }
    }
}

#[test]
fn a_local_runner_and_a_slurm_runner_on_one_store_run_each_node_once() {
    if slurm("a_local_runner_and_a_slurm_runner_on_one_store_run_each_node_once").is_none() {
        return;
    }
    let sandbox = Sandbox::new();
    let node = |name: &str, input: &str| {
        format!(
            "[{name}]\nkind = \"exec\"\n{input}command = {}\n\n",
            toml_string(&format!(
                "{}; sleep 1; echo {name} > out/{name}",
                sandbox.counter(name)
            ))
        )
    };
    sandbox.workflow(&format!(
        "{}{}{}{}",
        node("a", ""),
        node("b", ""),
        node("c", "inputs = [\"a\", \"b\"]\n"),
        node("d", "inputs = [\"c\"]\n"),
    ));
    let cluster = sandbox.spawn(&["run", "wf.toml", "--json", "--executor", "slurm"]);
    let local = sandbox.spawn(&["run", "wf.toml", "--json"]);
    let cluster = finish(cluster).success().json();
    let local = finish(local).success().json();
    assert_eq!(sandbox.counts(&["a", "b", "c", "d"]), [1, 1, 1, 1]);
    assert_eq!(outputs(&cluster), outputs(&local));
    // Each node ran on one side, and was served from the cache on the other.
    for name in ["a", "b", "c", "d"] {
        let sides = [
            cluster["nodes"][name]["status"].as_str().unwrap(),
            local["nodes"][name]["status"].as_str().unwrap(),
        ];
        assert!(
            sides.contains(&"ran") && sides.contains(&"cached"),
            "{name}: {sides:?}"
        );
    }
    let ran_on_slurm = statuses(&cluster)
        .values()
        .filter(|status| *status == "ran")
        .count();
    assert_eq!(jobs(&sandbox).len(), ran_on_slurm, "{:?}", jobs(&sandbox));
}

#[test]
fn a_jobs_progress_reaches_the_runners_output_as_it_happens() {
    let test = "a_jobs_progress_reaches_the_runners_output_as_it_happens";
    if slurm(test).is_none() {
        return;
    }
    let Some(endpoint) = common::s3::endpoint(test) else {
        return;
    };
    // Through the shared folder, then through the remote (`via_remote`).
    for remote in [None, Some(common::s3::fresh_remote(&endpoint, "events").1)] {
        let sandbox = Sandbox::new();
        // A worker reporting step 1 of 2, then step 2 four seconds later; its stderr is its
        // log.
        sandbox.write(
            "steps.sh",
            "progress() { echo \"{\\\"event\\\":\\\"progress\\\",\\\"done\\\":$1,\\\"total\\\":2,\\\"message\\\":\\\"step $1\\\"}\"; }\n\
             echo starting >&2\nprogress 1\nsleep 4\nprogress 2\necho done > \"$PEIRCE_OUT/steps.txt\"\n",
        );
        let settings = if remote.is_some() {
            "[executor.slurm]\nvia_remote = true\n\n"
        } else {
            ""
        };
        sandbox.workflow(&format!(
            "{settings}[steps]\nkind = \"worker\"\nprogram = \"sh\"\nargs = [{}]\n",
            toml_string(&sandbox.path("steps.sh").display().to_string())
        ));
        let mut args = vec!["run", "wf.toml", "--executor", "slurm"];
        if let Some(remote) = &remote {
            args.extend(["--remote", remote]);
        }
        // stderr is not a terminal: plain lines, each starting with the run's elapsed time.
        let outcome = sandbox.peirce(&args).success();
        let elapsed = |step: &str| -> f64 {
            let line = outcome
                .stderr
                .lines()
                .find(|line| line.contains("steps") && line.contains(&format!("[{step}/2 ")))
                .unwrap_or_else(|| panic!("no progress {step}/2:\n{outcome}"));
            let seconds = line.split_whitespace().nth(1).unwrap();
            seconds.trim_end_matches("s]").parse().unwrap()
        };
        // Step 1 was shown while the job ran, not when it ended.
        assert!(elapsed("2") - elapsed("1") >= 2.0, "{outcome}");
        let job = jobs(&sandbox).pop().unwrap();
        assert!(
            outcome
                .stderr
                .contains(&format!("Slurm job {} submitted", job.id)),
            "{outcome}"
        );
        assert_eq!(sandbox.cat("steps", "steps.txt"), "done\n");
        let log = sandbox.peirce(&["log", "steps"]).success();
        assert_eq!(log.stdout, "starting\n", "{log}");
    }
}

#[test]
fn an_align_node_on_two_cpu_ranks_through_slurm_matches_a_local_run() {
    if slurm("an_align_node_on_two_cpu_ranks_through_slurm_matches_a_local_run").is_none() {
        return;
    }
    // `align-deduction` of the shrunk workflow with `ranks = 2`: first here (with its inputs),
    // then again through Slurm alone (`--force`), as one job whose rank 0 starts rank 1.
    let sandbox = tiny_meta_align::sandbox();
    let args = tiny_meta_align::args(&["align-deduction.ranks=2"]);
    let mut local: Vec<&str> = vec!["align-deduction"];
    local.extend(args.iter().map(String::as_str));
    let record = sandbox.run_ok(&local);
    assert_eq!(record["nodes"]["align-deduction"]["status"], "ran");
    let here = sandbox.listing("align-deduction");
    let log = sandbox.peirce(&["log", "align-deduction"]).success().stdout;
    assert!(log.contains("rank 1 of 2"), "{log}");
    let mut forced = local.clone();
    forced.extend(["--force", "align-deduction", "--executor", "slurm"]);
    let record = sandbox.run_ok(&forced);
    assert_eq!(record["nodes"]["align-deduction"]["status"], "ran");
    assert!(
        statuses(&record)
            .iter()
            .all(|(node, status)| node == "align-deduction" || status == "cached"),
        "{record:#}"
    );
    let submitted = jobs(&sandbox);
    assert_eq!(submitted.len(), 1, "{submitted:?}");
    let details = std::process::Command::new("scontrol")
        .args(["show", "job", "-o", &submitted[0].id])
        .output()
        .unwrap();
    let details = String::from_utf8_lossy(&details.stdout);
    assert!(details.contains("NumCPUs=2 "), "{details}");
    let log = sandbox.peirce(&["log", "align-deduction"]).success().stdout;
    // Rank 1's lines are the node's log (rank 0's are its events).
    assert!(log.contains("rank 1 of 2"), "{log}");
    // The same weights and evaluation as the local run (the per-step metrics and the chart
    // record wall-clock seconds).
    let there = sandbox.listing("align-deduction");
    for file in ["model.safetensors", "eval.json", "config.json"] {
        assert_eq!(here[file], there[file], "{file}");
    }
}

#[test]
fn a_gpu_node_through_slurm_sees_the_gpus_slurm_gave_it() {
    if slurm("a_gpu_node_through_slurm_sees_the_gpus_slurm_gave_it").is_none() {
        return;
    }
    // The test cluster has two stand-in GPUs (gres.conf, scripts/slurm.sh); this machine
    // needs none: the nodes are placed on Slurm, not checked against the runner's devices.
    let sandbox = Sandbox::new();
    let node = |name: &str, gpus: u32| {
        format!(
            "[{name}]\nkind = \"exec\"\nresources = {{ gpus = {gpus} }}\ncommand = {}\n\n",
            toml_string("echo \"[$CUDA_VISIBLE_DEVICES] [$SLURM_JOB_GPUS]\" > out/devices.txt")
        )
    };
    sandbox.workflow(&format!(
        "{}{}{}",
        node("one", 1),
        node("two", 2),
        node("none", 0)
    ));
    let record = sandbox.run_ok(&["--executor", "slurm"]);
    expect_statuses(&record, &[("one", "ran"), ("two", "ran"), ("none", "ran")]);
    // As the local executor pins them: the node's devices, and none for a node asking none.
    let one = sandbox.cat("one", "devices.txt");
    assert!(one == "[0] [0]\n" || one == "[1] [1]\n", "{one}");
    assert_eq!(sandbox.cat("two", "devices.txt"), "[0,1] [0,1]\n");
    assert_eq!(sandbox.cat("none", "devices.txt"), "[] []\n");
    for job in jobs(&sandbox) {
        let details = std::process::Command::new("scontrol")
            .args(["show", "job", "-o", &job.id])
            .output()
            .unwrap();
        let details = String::from_utf8_lossy(&details.stdout);
        let wanted = match job.name.as_str() {
            "peirce-one" => Some("gres:gpu:1"),
            "peirce-two" => Some("gres:gpu:2"),
            _ => None,
        };
        match wanted {
            Some(gres) => assert!(
                details.contains(&format!("TresPerNode={gres}")),
                "{details}"
            ),
            None => assert!(!details.contains("gres:gpu"), "{details}"),
        }
    }
}

#[test]
fn jobs_working_from_the_remote_need_no_shared_folder() {
    if slurm("jobs_working_from_the_remote_need_no_shared_folder").is_none() {
        return;
    }
    let Some(endpoint) = common::s3::endpoint("jobs_working_from_the_remote_need_no_shared_folder")
    else {
        return;
    };
    let (bucket, remote) = common::s3::fresh_remote(&endpoint, "slurm");
    let local = example();
    let local_record = local.run_ok(&[]);
    // The example (an external file input, node inputs) with `via_remote = true`: each job
    // fetches its inputs from the remote and sends its output there.
    let cluster = example();
    let text = std::fs::read_to_string(cluster.workflow_path())
        .unwrap()
        .replace(
            "name = \"example\"",
            "name = \"example\"\n\n[executor.slurm]\nvia_remote = true",
        );
    cluster.workflow(&text);
    // Without a remote it is refused.
    let refused = cluster
        .peirce(&["run", "wf.toml", "--executor", "slurm"])
        .expect_code(2);
    assert!(
        refused.stderr.contains("via_remote = true` needs a remote"),
        "{refused}"
    );
    let record = cluster.run_ok(&["--executor", "slurm", "--remote", &remote]);
    expect_statuses(&record, &EXAMPLE.map(|node| (node, "ran")));
    assert_eq!(outputs(&record), outputs(&local_record));
    let submitted = jobs(&cluster);
    assert_eq!(submitted.len(), 4, "{submitted:?}");
    assert!(
        submitted.iter().all(|job| job.state == "COMPLETED"),
        "{submitted:?}"
    );
    // Another workspace finds every result on the remote: nothing runs.
    let other = example();
    other.workflow(&text);
    let again = other.run_ok(&["--executor", "slurm", "--remote", &remote]);
    assert!(
        statuses(&again).values().all(|status| status == "cached"),
        "{again:#}"
    );
    // The job's folders are its own (the compute node's temporary folder), not the store's;
    // a failure comes back with its log.
    let sandbox = Sandbox::new();
    sandbox.workflow(
        "[executor.slurm]\nvia_remote = true\n\n\
         [a]\nkind = \"exec\"\ncommand = \"echo a > out/a\"\n\n\
         [b]\nkind = \"exec\"\ninputs = [\"a\"]\n\
         command = \"cat $PEIRCE_INPUT_A/a; echo $PEIRCE_INPUT_A $PEIRCE_OUT > out/paths\"\n\n\
         [c]\nkind = \"exec\"\ninputs = [\"b\"]\ncommand = \"echo oops; exit 3\"\n",
    );
    let (outcome, record) = sandbox.run(&["--executor", "slurm", "--remote", &remote]);
    assert_eq!(outcome.code, 1, "{outcome}");
    expect_statuses(&record, &[("a", "ran"), ("b", "ran"), ("c", "failed")]);
    let paths = sandbox.cat("b", "paths");
    let root = sandbox.root().to_string_lossy().into_owned();
    assert!(
        paths.starts_with(
            &std::env::temp_dir()
                .join("peirce-job-")
                .to_string_lossy()
                .into_owned()
        ) && !paths.contains(&root),
        "{paths}"
    );
    assert_eq!(sandbox.peirce(&["log", "b"]).success().stdout, "a\n");
    let error = record["nodes"]["c"]["error"].as_str().unwrap();
    assert!(error.contains("exit"), "{error}");
    assert_eq!(sandbox.peirce(&["log", "c"]).success().stdout, "oops\n");
    assert_eq!(jobs(&sandbox).len(), 3, "{:?}", jobs(&sandbox));
    // Nothing is left in the temporary folder: the jobs' folders and their Slurm logs.
    for job in jobs(&sandbox).into_iter().chain(jobs(&cluster)) {
        for left in [
            std::env::temp_dir().join(format!("peirce-job-{}", job.id)),
            std::path::PathBuf::from(format!("/tmp/peirce-slurm-{}.out", job.id)),
        ] {
            assert!(!left.exists(), "{} is left", left.display());
        }
    }
    // The results the jobs left on the remote for the runner were taken.
    assert_eq!(
        common::s3::list_keys(&endpoint, &bucket, "team/slurm"),
        Vec::<String>::new()
    );
}

/// Needs no cluster: `sinfo` is a stand-in naming two other machines.
#[test]
fn a_store_the_compute_nodes_cannot_see_is_refused() {
    let sandbox = Sandbox::new();
    let bin = sandbox.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let sinfo = bin.join("sinfo");
    std::fs::write(&sinfo, "#!/bin/sh\necho gpu-node-1\necho gpu-node-2\n").unwrap();
    std::fs::set_permissions(&sinfo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    sandbox.workflow(&format!(
        "[a]\nkind = \"exec\"\ncommand = {}\n",
        toml_string(&format!("{}; echo a > out/a", sandbox.counter("a")))
    ));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let outcome = finish(
        sandbox
            .command(&["run", "wf.toml", "--executor", "slurm"])
            .env("PATH", path)
            .spawn()
            .unwrap(),
    )
    .expect_code(2);
    let store = sandbox.store().canonicalize().unwrap();
    assert!(
        outcome.stderr.contains(&format!(
            "the store folder `{}` is on a local filesystem",
            store.display()
        )),
        "{outcome}"
    );
    assert!(
        outcome.stderr.contains("gpu-node-1, gpu-node-2"),
        "{outcome}"
    );
    assert_eq!(sandbox.count("a"), 0);
}

#[test]
fn the_tiny_meta_alignment_through_slurm_matches_a_local_run() {
    if slurm("the_tiny_meta_alignment_through_slurm_matches_a_local_run").is_none() {
        return;
    }
    // Every stage, torch kinds included (each job starts `peirce-worker`), shrunk as in
    // tests/meta_align.rs.
    let local = tiny_meta_align::sandbox();
    let args = tiny_meta_align::args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let local_record = local.run_ok(&args);
    let cluster = tiny_meta_align::sandbox();
    let mut through_slurm = args.clone();
    through_slurm.extend(["--executor", "slurm"]);
    let record = cluster.run_ok(&through_slurm);
    assert_eq!(statuses(&record).len(), 22, "{record:#}");
    assert!(
        statuses(&record).values().all(|status| status == "ran"),
        "{record:#}"
    );
    // The same results: every file of every node, except the trainers' per-step metrics and
    // their charts, which record wall-clock seconds (so two local runs differ there too).
    let timed = ["metrics.jsonl", "warmup.jsonl", "curves.png", "warmup.png"];
    let results = |sandbox: &Sandbox| {
        let mut files = std::collections::BTreeMap::new();
        for node in statuses(&local_record).into_keys() {
            for (name, (_, digest)) in sandbox.listing(&node) {
                if !timed.contains(&name.as_str()) {
                    files.insert(format!("{node}/{name}"), digest);
                }
            }
        }
        files
    };
    let (here, there) = (results(&local), results(&cluster));
    assert!(here.keys().any(|file| file.ends_with("model.safetensors")));
    assert_eq!(here, there);
    let submitted = jobs(&cluster);
    assert_eq!(submitted.len(), 22, "{submitted:?}");
    assert!(
        submitted.iter().all(|job| job.state == "COMPLETED"),
        "{submitted:?}"
    );
    let again = cluster.run_ok(&through_slurm);
    assert!(
        statuses(&again).values().all(|status| status == "cached"),
        "{again:#}"
    );
    assert_eq!(jobs(&cluster).len(), 22);
}
