//! The meta-alignment workflow itself (workflows/meta-align-tiny.toml), shrunk by `--set`
//! overrides to seconds of real work: every stage runs for real through `peirce-worker`
//! (generate, verify, a tiny model with a warm-up, REINFORCE++, merge, GRPO, eval), then
//! the caching contract the issue asks for: a re-run executes nothing, and changing only
//! the merge weights reruns exactly the merge, the domain RL from the merged model and the
//! evals of those two.

mod common;

use common::{statuses, Sandbox};
use std::collections::BTreeSet;

/// The workflow's DAG at toy scale: the same nodes and edges, tiny counts and step numbers.
const SMALL: [&str; 26] = [
    "defaults.generate.count=10",
    "start.hidden_size=32",
    "start.intermediate_size=64",
    "start.num_attention_heads=2",
    "start.num_key_value_heads=1",
    "start.corpus_per_level=20",
    "start.max_vocab=400",
    "start.warmup_steps=2",
    "start.warmup_batch=4",
    "defaults.align.steps=1",
    "defaults.align.prompts_per_step=2",
    "defaults.align.rollouts=2",
    "defaults.align.max_new_tokens=6",
    "defaults.align.micro_batch=4",
    "defaults.align.eval_count=2",
    "defaults.domain-rl.steps=1",
    "defaults.domain-rl.prompts_per_step=2",
    "defaults.domain-rl.rollouts=2",
    "defaults.domain-rl.max_new_tokens=6",
    "defaults.domain-rl.micro_batch=4",
    "defaults.domain-rl.eval_count=2",
    "defaults.eval.count=2",
    "defaults.eval.max_new_tokens=6",
    "defaults.resources.cpus=1",
    "start.resources.cpus=1",
    "defaults.seed=5",
];

fn args(extra: &[&str]) -> Vec<String> {
    // The shrunk workflow is the one these tests look at: its runs are the latest, not
    // experiments beside the file's (docs/architecture.md §17).
    let mut args = vec!["--as-latest".to_string()];
    for set in SMALL.iter().chain(extra) {
        args.push("--set".to_string());
        args.push(set.to_string());
    }
    args
}

fn run(sandbox: &Sandbox, extra: &[&str]) -> serde_json::Value {
    let args = args(extra);
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
    let sandbox = Sandbox::new();
    let workflow = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/meta-align-tiny.toml"),
    )
    .unwrap();
    sandbox.workflow(&workflow);

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
