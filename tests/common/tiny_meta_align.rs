//! workflows/meta-align-tiny.toml shrunk by `--set` overrides to seconds of real work: the
//! same nodes and edges, tiny counts and step numbers (tests/meta_align.rs, tests/slurm.rs).

use super::Sandbox;

/// The overrides.
pub const SMALL: [&str; 26] = [
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

/// A sandbox holding the workflow.
pub fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    let workflow = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/meta-align-tiny.toml"),
    )
    .unwrap();
    sandbox.workflow(&workflow);
    sandbox
}

/// `run`'s arguments for the shrunk workflow plus `extra` overrides. Its runs are the
/// latest, not experiments beside the file's (docs/architecture.md §17).
pub fn args(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--as-latest".to_string()];
    for set in SMALL.iter().chain(extra) {
        args.push("--set".to_string());
        args.push(set.to_string());
    }
    args
}
