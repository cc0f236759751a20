//! Experiments (docs/architecture.md §17), through the real binary on the README's example
//! workflow (workflows/example.toml): a run with `--set` records its overrides and the
//! workflow's digest and leaves the workflow's latest results as written, gc keeps it while
//! it is recent or pinned, `runs` lists it, and `peirce diff` shows the parameters and
//! metrics that differ between two runs.

mod common;

use common::{expect_statuses, Sandbox};
use serde_json::{json, Value};

const EXAMPLE: [&str; 4] = ["words", "counts", "top", "report"];

/// A sandbox holding workflows/example.toml as `wf.toml`, with its corpus beside it.
fn example() -> Sandbox {
    let sandbox = Sandbox::new();
    let workflows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    sandbox.workflow(&std::fs::read_to_string(workflows.join("example.toml")).unwrap());
    std::fs::create_dir(sandbox.path("data")).unwrap();
    std::fs::copy(
        workflows.join("data/corpus.txt"),
        sandbox.path("data/corpus.txt"),
    )
    .unwrap();
    sandbox
}

/// Whether the store still holds (and verifies) a tree or blob.
fn present(sandbox: &Sandbox, digest: &str) -> bool {
    sandbox.peirce(&["cat", digest]).code == 0
}

/// Issue 15, broken item 3: `run --set` used to replace the workflow's latest results, so
/// `gc` deleted the results of the workflow as written and `cat`/`status` showed the
/// override's outputs.
#[test]
fn an_experiment_leaves_the_latest_results_as_written_and_gc_keeps_both() {
    let sandbox = example();
    let written = sandbox.run_ok(&[]);
    assert_eq!(written["experiment"], false);
    assert_eq!(written["overrides"], json!([]));
    let digest = written["workflow_digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("blake3:"), "{written:#}");

    let experiment = sandbox.run_ok(&["--set", "top.env.TOP=3"]);
    expect_statuses(
        &experiment,
        &[
            ("words", "cached"),
            ("counts", "cached"),
            ("top", "ran"),
            ("report", "ran"),
        ],
    );
    assert_eq!(experiment["experiment"], true);
    assert_eq!(experiment["overrides"], json!(["top.env.TOP=3"]));
    assert_eq!(experiment["workflow_digest"], digest.as_str());
    let experiment_top = experiment["nodes"]["top"]["output"]
        .as_str()
        .unwrap()
        .to_string();

    // `cat` and `status` still show the workflow as written.
    assert_eq!(sandbox.cat("top", "top.txt").lines().count(), 5);
    let status = sandbox.peirce(&["status", "wf.toml"]).success().stdout;
    assert!(status.contains(written["id"].as_str().unwrap()), "{status}");
    assert_eq!(status.matches("up to date").count(), 4, "{status}");

    // gc keeps both: the latest as written, and the recent experiment.
    sandbox
        .peirce(&["gc", "--grace", "0s", "--json"])
        .success()
        .json();
    assert_eq!(sandbox.cat("top", "top.txt").lines().count(), 5);
    assert_eq!(
        sandbox.cat("report", "report.txt").lines().count(),
        6,
        "report"
    );
    assert!(present(&sandbox, &experiment_top));
    let again = sandbox.run_ok(&[]);
    expect_statuses(&again, &EXAMPLE.map(|node| (node, "cached")));
    sandbox.assert_store_sound();

    // `runs` lists the experiment with its overrides.
    let runs = sandbox.peirce(&["runs"]).success().stdout;
    let line = runs
        .lines()
        .find(|line| line.contains(experiment["id"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("experiment not listed:\n{runs}"));
    assert!(line.contains("experiment"), "{line}");
    assert!(line.contains("--set top.env.TOP=3"), "{line}");

    // One run named: compared with the workflow's latest as written.
    let diff = sandbox
        .peirce(&["diff", experiment["id"].as_str().unwrap(), "--json"])
        .success()
        .json();
    assert_eq!(diff["a"]["id"], again["id"], "{diff:#}");
    assert_eq!(diff["params"][0]["name"], "env.TOP", "{diff:#}");
    assert_eq!(diff["params"][0]["a"], "5", "{diff:#}");
    assert_eq!(diff["params"][0]["b"], "3", "{diff:#}");

    // Pinned, it outlives its keep window; unpinned, it goes; the latest stays.
    let id = experiment["id"].as_str().unwrap();
    sandbox.peirce(&["runs", "--pin", id]).success();
    let kept = ["gc", "--grace", "0s", "--keep-experiments", "0s", "--json"];
    assert_eq!(sandbox.peirce(&kept).success().json()["removed_actions"], 0);
    assert!(present(&sandbox, &experiment_top));
    sandbox.peirce(&["runs", "--unpin", id]).success();
    let report = sandbox.peirce(&kept).success().json();
    assert_eq!(report["removed_actions"], 2, "{report:#}");
    assert!(!present(&sandbox, &experiment_top));
    assert_eq!(sandbox.cat("top", "top.txt").lines().count(), 5);
    sandbox.assert_store_sound();

    // `--as-latest` makes a run with overrides the workflow's latest.
    let latest = sandbox.run_ok(&["--set", "top.env.TOP=3", "--as-latest"]);
    assert_eq!(latest["experiment"], false);
    assert_eq!(latest["overrides"], json!(["top.env.TOP=3"]));
    assert_eq!(sandbox.cat("top", "top.txt").lines().count(), 3);
}

/// Issue 15, must show 3: `peirce diff` on two runs of the example workflow with different
/// `--set` shows the changed parameter and the changed metric (`top`'s `metrics.json`).
#[test]
fn diff_shows_the_changed_param_and_metric_of_two_runs() {
    let sandbox = example();
    let three = sandbox.run_ok(&["--set", "top.env.TOP=3"]);
    let four = sandbox.run_ok(&["--set", "top.env.TOP=4"]);
    let (a, b) = (three["id"].as_str().unwrap(), four["id"].as_str().unwrap());
    let top_words = |count: usize| -> i64 {
        // An experiment is no workflow's latest: its outputs are named by digest.
        let counts = three["nodes"]["counts"]["output"].as_str().unwrap();
        let text = sandbox
            .peirce(&["cat", counts, "counts.txt"])
            .success()
            .stdout;
        text.lines()
            .take(count)
            .map(|line| {
                line.split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum()
    };

    let diff = sandbox.peirce(&["diff", a, b, "--json"]).success().json();
    let change = |node: &str, name: &str| json!({"node": node, "name": name});
    let names = |list: &Value| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| json!({"node": item["node"], "name": item["name"]}))
            .collect()
    };
    assert_eq!(
        names(&diff["params"]),
        [change("top", "env.TOP")],
        "{diff:#}"
    );
    assert_eq!(diff["params"][0]["a"], "3");
    assert_eq!(diff["params"][0]["b"], "4");
    assert_eq!(
        names(&diff["metrics"]),
        [change("top", "top_words")],
        "{diff:#}"
    );
    assert_eq!(diff["metrics"][0]["a"], top_words(3));
    assert_eq!(diff["metrics"][0]["b"], top_words(4));
    assert_ne!(top_words(3), top_words(4));
    assert_eq!(diff["a"]["overrides"], json!(["top.env.TOP=3"]));
    assert_eq!(diff["a"]["workflow_digest"], diff["b"]["workflow_digest"]);

    // The text form, with runs named by the end of their ids.
    let text = sandbox
        .peirce(&["diff", &a[a.len() - 4..], &b[b.len() - 4..]])
        .success()
        .stdout;
    assert!(text.contains("top.env.TOP  \"3\" -> \"4\""), "{text}");
    assert!(
        text.contains(&format!(
            "top.top_words  {} -> {}",
            top_words(3),
            top_words(4)
        )),
        "{text}"
    );
    assert!(text.contains("workflow file: the same"), "{text}");

    // A run that does not exist is named.
    let missing = sandbox.peirce(&["diff", a, "nosuchrun"]);
    assert_ne!(missing.code, 0, "{missing}");
    assert!(missing.stderr.contains("No run `nosuchrun`"), "{missing}");
}

/// `status` names, for a node the latest run left out, the latest run of the workflow as
/// written that had it, never an experiment.
#[test]
fn status_never_takes_an_experiment_for_the_workflow_as_written() {
    let sandbox = example();
    let written = sandbox.run_ok(&[]);
    let experiment = sandbox.run_ok(&["--set", "top.env.TOP=3"]);
    sandbox.run_ok(&["--force", "counts", "counts"]);
    let status = sandbox.peirce(&["status", "wf.toml"]).success().stdout;
    let line = status
        .lines()
        .find(|line| line.contains(" report "))
        .unwrap_or_else(|| panic!("no line for `report`:\n{status}"));
    assert!(
        line.contains(&format!("(run {})", written["id"].as_str().unwrap())),
        "{status}"
    );
    assert!(
        !status.contains(experiment["id"].as_str().unwrap()),
        "{status}"
    );
}

/// An experiment never becomes the workflow's latest, so its results are read by run:
/// `cat`, `show`, `log`, `why` and `export` take `--run ID` (or the start or end of an id),
/// and say clearly what a run does not hold.
#[test]
fn an_experiments_results_are_read_with_run() {
    let sandbox = example();
    sandbox.run_ok(&[]);
    let experiment = sandbox.run_ok(&["--set", "top.env.TOP=3"]);
    let id = experiment["id"].as_str().unwrap();
    let short = &id[id.len() - 4..];

    // The latest as written has 5 lines; the experiment's has 3.
    assert_eq!(sandbox.cat("top", "top.txt").lines().count(), 5);
    let cat = sandbox
        .peirce(&["cat", "top", "top.txt", "-w", "wf.toml", "--run", short])
        .success()
        .stdout;
    assert_eq!(cat.lines().count(), 3, "{cat}");

    let show = sandbox
        .peirce(&["show", "top", "--run", id, "--json"])
        .success()
        .json();
    assert_eq!(
        show["record"]["output"], experiment["nodes"]["top"]["output"],
        "{show:#}"
    );
    assert_eq!(show["record"]["components"]["params"]["env"]["TOP"], "3");

    let why = sandbox
        .peirce(&["why", "top", "--run", id, "--json"])
        .success()
        .json();
    assert_eq!(
        why[0]["lineage"]["tree"], experiment["nodes"]["top"]["output"],
        "{why:#}"
    );

    // A node the run served from the cache is read as well.
    let words = sandbox
        .peirce(&["cat", "words", "--run", id])
        .success()
        .stdout;
    assert!(!words.trim().is_empty());
    sandbox.peirce(&["log", "top", "--run", id]).success();

    // What a run does not hold is named.
    let missing = sandbox.peirce(&["cat", "nosuchnode", "--run", id]);
    assert_ne!(missing.code, 0, "{missing}");
    assert!(
        missing
            .stderr
            .contains(&format!("Run {id} has no node `nosuchnode`")),
        "{missing}"
    );
    let no_run = sandbox.peirce(&["show", "top", "--run", "nosuchrun"]);
    assert_ne!(no_run.code, 0, "{no_run}");
    assert!(no_run.stderr.contains("No run `nosuchrun`"), "{no_run}");
    let digest = experiment["nodes"]["top"]["output"].as_str().unwrap();
    let both = sandbox.peirce(&["cat", digest, "--run", id]);
    assert_ne!(both.code, 0, "{both}");
    assert!(both.stderr.contains("give a node name"), "{both}");
}
