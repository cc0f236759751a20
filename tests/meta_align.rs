//! The meta-alignment workflow itself (workflows/meta-align-tiny.toml), shrunk by `--set`
//! overrides to seconds of real work: every stage runs for real through `peirce-worker`
//! (generate, verify, a tiny model with a warm-up, REINFORCE++, merge, GRPO, eval), then
//! the caching contract the issue asks for: a re-run executes nothing, and changing only
//! the merge weights reruns exactly the merge, the domain RL from the merged model and the
//! evals of those two.

mod common;

use common::{statuses, tiny_meta_align, Sandbox};
use std::collections::BTreeSet;

fn run(sandbox: &Sandbox, extra: &[&str]) -> serde_json::Value {
    let args = tiny_meta_align::args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.run_ok(&args)
}

fn with_status(record: &serde_json::Value, status: &str) -> BTreeSet<String> {
    statuses(record)
        .into_iter()
        .filter(|(_, s)| s == status)
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn the_meta_alignment_dag_caches_and_reruns_only_what_a_merge_weight_change_touches() {
    let sandbox = tiny_meta_align::sandbox();

    let first = run(&sandbox, &[]);
    let all: BTreeSet<String> = statuses(&first).into_keys().collect();
    assert_eq!(all.len(), 22, "{first:#}");
    assert_eq!(with_status(&first, "ran"), all, "{first:#}");
    // Every eval wrote the report's schema; the report has one row per eval node.
    let report = sandbox
        .peirce(&["report", "wf.toml", "--out", "report.png"])
        .success()
        .stdout;
    for label in [
        "Start (tiny + SFT)",
        "Deduction",
        "Induction",
        "Abduction",
        "Merged",
        "Domain-RL-Start",
        "Domain-RL-Meta",
    ] {
        assert!(report.contains(label), "no row {label}:\n{report}");
    }
    assert!(sandbox.path("report.png").is_file());
    // The specialists' training curves.
    let listing = sandbox.listing("align-deduction");
    for file in [
        "metrics.jsonl",
        "curves.png",
        "eval.json",
        "model.safetensors",
    ] {
        assert!(listing.contains_key(file), "{listing:?}");
    }

    let again = run(&sandbox, &[]);
    assert_eq!(with_status(&again, "cached"), all, "{again:#}");

    let reweighted = run(&sandbox, &["merged.weights.induction=0.3"]);
    let expected: BTreeSet<String> = [
        "merged",
        "domain-rl-merged",
        "eval-merged",
        "eval-domain-rl-merged",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(with_status(&reweighted, "ran"), expected, "{reweighted:#}");
    assert_eq!(
        with_status(&reweighted, "cached"),
        all.difference(&expected).cloned().collect(),
    );
    // The new merge is a different model.
    assert_ne!(
        first["nodes"]["merged"]["output"],
        reweighted["nodes"]["merged"]["output"]
    );
}
