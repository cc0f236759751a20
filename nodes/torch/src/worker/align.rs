//! The `align` kind: REINFORCE++ on one task family (PAPER.md, stage A), with a curriculum
//! over levels; and the `domain-rl` kind, the same loop with GRPO's group-normalized
//! advantages (stage C; the domain reward is 1/0).
//!
//! Inputs: `model` (a model tree) and `data` (a dataset tree with `train.jsonl` and
//! `test.jsonl`). Each step takes `prompts_per_step` training prompts of the current level
//! (a seeded shuffle, cycled), samples `rollouts` responses each, scores them with the task
//! reward and makes one REINFORCE++ update; levels run in the order given, `steps` each.
//! Held-out greedy accuracy on up to `eval_count` test prompts is measured before and
//! after. Outputs: the trained model tree, `metrics.jsonl` (one line per step),
//! `curves.png` (those metrics plotted against the step) and `eval.json`.
//!
//! Parameters (defaults from the paper where it has one): `steps` (20 per level), `levels`
//! (all in the data), `prompts_per_step` (deduction 32, induction 16, abduction 32,
//! otherwise 16), `rollouts` (4), `temperature` (0.7), `top_p` (1.0), `max_new_tokens`
//! (512), `lr` (5e-7), `betas` ([0.9, 0.95]), `weight_decay` (0), `grad_clip` (1.0),
//! `kl_coef` (0.001), `entropy_coef` (0.001), `clip` (0.2), `micro_batch` (8),
//! `rollout_batch` (64), `eval_count` (64), `seed` (0), `dtype` (float32), `algorithm`
//! (`reinforce++` for `align`, `grpo` for `domain-rl`).

use std::io::Write;
use std::time::Instant;

use tch::Device;

use super::params::{positive, Params};
use super::protocol::{self, NodeSpec, WorkerError};
use crate::data;
use crate::sampler::SamplingParams;
use crate::train::{self, Algorithm, Example, TrainConfig};
use crate::tree::Model;

/// The paper's prompts per step for a task.
fn default_prompts_per_step(task: &str) -> i64 {
    match task {
        "induction" => 16,
        _ => 32,
    }
}

pub(crate) fn input<'a>(
    spec: &'a NodeSpec,
    name: &str,
) -> Result<&'a std::path::Path, WorkerError> {
    spec.inputs.get(name).map(|p| p.as_path()).ok_or_else(|| {
        WorkerError::bad_input(format!("`{}` needs an input named `{name}`", spec.kind))
    })
}

/// A seeded permutation of `0..n` (splitmix64-driven Fisher-Yates).
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Runs an `align` node.
pub fn run(spec: &NodeSpec, device: Device) -> Result<(), WorkerError> {
    let mut params = Params::new(&spec.params)?;
    let model_dir = input(spec, "model")?;
    let data_dir = input(spec, "data")?;
    let steps = positive("steps", params.int("steps")?.unwrap_or(20))? as usize;
    let levels: Option<Vec<u32>> = params.levels()?;
    let prompts_per_step = params.int("prompts_per_step")?;
    let rollouts = positive("rollouts", params.int("rollouts")?.unwrap_or(4))? as usize;
    let mut sampling = SamplingParams {
        temperature: params.float("temperature")?.unwrap_or(0.7),
        top_p: params.float("top_p")?.unwrap_or(1.0),
        max_new_tokens: positive(
            "max_new_tokens",
            params.int("max_new_tokens")?.unwrap_or(512),
        )?,
        ..SamplingParams::default()
    };
    let mut config = TrainConfig {
        lr: params.float("lr")?.unwrap_or(5e-7),
        weight_decay: params.float("weight_decay")?.unwrap_or(0.0),
        grad_clip: params.float("grad_clip")?.unwrap_or(1.0),
        micro_batch: positive("micro_batch", params.int("micro_batch")?.unwrap_or(8))? as usize,
        ..TrainConfig::default()
    };
    if let Some(betas) = params.float_list("betas")? {
        match betas.as_slice() {
            [b1, b2] => config.betas = (*b1, *b2),
            _ => return Err(WorkerError::bad_input("`betas` must be two numbers")),
        }
    }
    config.loss.kl_coef = params.float("kl_coef")?.unwrap_or(0.001);
    config.loss.entropy_coef = params.float("entropy_coef")?.unwrap_or(0.001);
    config.loss.clip = params.float("clip")?.unwrap_or(0.2);
    let rollout_batch =
        positive("rollout_batch", params.int("rollout_batch")?.unwrap_or(64))? as usize;
    let eval_count = params.int("eval_count")?.unwrap_or(64).max(0) as usize;
    let seed = params.int("seed")?.unwrap_or(0) as u64;
    let kind = params.dtype()?;
    let default_algorithm = if spec.kind == "domain-rl" {
        "grpo"
    } else {
        "reinforce++"
    };
    let algorithm = match params
        .string("algorithm")?
        .as_deref()
        .unwrap_or(default_algorithm)
    {
        "reinforce++" => Algorithm::ReinforcePlusPlus,
        "grpo" => Algorithm::Grpo { group: rollouts },
        other => {
            return Err(WorkerError::bad_input(format!(
                "`algorithm` must be `reinforce++` or `grpo`, got `{other}`"
            )))
        }
    };
    params.finish()?;

    tch::manual_seed(seed as i64);
    let policy = Model::load(model_dir, device, kind)?;
    let mut reference = Model::load(model_dir, device, kind)?;
    reference.vs.freeze();
    sampling.eos = policy.special.eos.clone();
    sampling.pad = policy.special.pad;
    sampling.stop_sequences = vec![policy.tokenizer.encode("</answer>")?];

    let train_records = data::read_split(data_dir, "train", levels.as_deref())?;
    let test_records = data::read_split(data_dir, "test", levels.as_deref())?;
    if train_records.is_empty() {
        return Err(WorkerError::bad_input(format!(
            "`{}` has no training records{}",
            data_dir.display(),
            levels
                .as_ref()
                .map(|l| format!(" at levels {l:?}"))
                .unwrap_or_default()
        )));
    }
    let task = train_records[0].task.clone();
    let per_step = positive(
        "prompts_per_step",
        prompts_per_step.unwrap_or_else(|| default_prompts_per_step(&task)),
    )? as usize;
    let train_examples = data::examples(&train_records, &policy.tokenizer)?;
    let mut test_examples = data::examples(&test_records, &policy.tokenizer)?;
    test_examples.truncate(eval_count);
    let mut curriculum: Vec<u32> = levels.clone().unwrap_or_else(|| {
        let mut all: Vec<u32> = train_examples.iter().map(|e| e.level).collect();
        all.sort_unstable();
        all.dedup();
        all
    });
    curriculum.retain(|level| train_examples.iter().any(|e| e.level == *level));

    let (accuracy_before, reward_before) = train::evaluate(
        &policy.net,
        &policy.tokenizer,
        &test_examples,
        rollout_batch,
        &sampling,
    )?;
    protocol::metric(serde_json::json!({
        "phase": "eval", "when": "before", "accuracy": accuracy_before, "reward": reward_before,
    }));

    let out = &spec.output_dir;
    std::fs::create_dir_all(out)
        .map_err(|e| WorkerError::failed(format!("cannot create `{}`: {e}", out.display())))?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::File::create(&metrics_path).map_err(|e| {
        WorkerError::failed(format!("cannot create `{}`: {e}", metrics_path.display()))
    })?;
    let mut rows = Vec::new();
    let mut optimizer = train::adamw(&policy.vs, &config)?;
    let total_steps = (steps * curriculum.len()) as u64;
    let mut global = 0u64;
    for level in &curriculum {
        let pool: Vec<&Example> = train_examples
            .iter()
            .filter(|e| e.level == *level)
            .collect();
        let mut order = permutation(pool.len(), seed ^ u64::from(*level));
        let mut cursor = 0usize;
        for step in 0..steps {
            let started = Instant::now();
            let mut batch = Vec::with_capacity(per_step);
            while batch.len() < per_step {
                if cursor == order.len() {
                    order = permutation(pool.len(), seed ^ u64::from(*level) ^ (global << 16));
                    cursor = 0;
                }
                batch.push(pool[order[cursor]].clone());
                cursor += 1;
            }
            let step_sampling = SamplingParams {
                seed: seed.wrapping_mul(1_000_003).wrapping_add(global),
                ..sampling.clone()
            };
            let rollouts_started = Instant::now();
            let sampled = train::rollouts(
                &policy.net,
                &policy.tokenizer,
                &batch,
                rollouts,
                rollout_batch,
                &step_sampling,
            )?;
            let rollout_seconds = rollouts_started.elapsed().as_secs_f64();
            let stats = train::policy_step(
                &policy.net,
                &policy.vs,
                &mut optimizer,
                &reference.net,
                &sampled,
                algorithm,
                policy.special.pad,
                &config,
            )?;
            let seconds = started.elapsed().as_secs_f64();
            global += 1;
            let mut line =
                serde_json::to_value(&stats).map_err(|e| WorkerError::failed(e.to_string()))?;
            line["step"] = serde_json::json!(global);
            line["level"] = serde_json::json!(level);
            line["seconds"] = serde_json::json!(seconds);
            line["rollout_tokens_per_second"] =
                serde_json::json!(stats.tokens as f64 / rollout_seconds.max(1e-9));
            writeln!(metrics, "{line}")
                .map_err(|e| WorkerError::failed(format!("cannot write metrics: {e}")))?;
            protocol::metric(line.clone());
            rows.push(line);
            protocol::progress(
                global,
                total_steps,
                &format!("level {level} step {} reward {:.3}", step + 1, stats.reward),
            );
        }
    }

    let (accuracy_after, reward_after) = train::evaluate(
        &policy.net,
        &policy.tokenizer,
        &test_examples,
        rollout_batch,
        &sampling,
    )?;
    let eval = serde_json::json!({
        "task": task,
        "test_prompts": test_examples.len(),
        "before": {"accuracy": accuracy_before, "reward": reward_before},
        "after": {"accuracy": accuracy_after, "reward": reward_after},
    });
    protocol::metric(serde_json::json!({
        "phase": "eval", "when": "after", "accuracy": accuracy_after, "reward": reward_after,
    }));
    std::fs::write(out.join("eval.json"), format!("{eval:#}\n"))
        .map_err(|e| WorkerError::failed(format!("cannot write eval.json: {e}")))?;
    plot_curves(&rows, &out.join("curves.png"))?;
    policy.save(out, kind, None)?;
    Ok(())
}

/// Plots per-step metrics rows into `path` (a missing font only drops the text: warned).
pub(crate) fn plot_curves(
    rows: &[serde_json::Value],
    path: &std::path::Path,
) -> Result<(), WorkerError> {
    let chart = peirce_nodes::plot::training_curves(rows, path)
        .map_err(|e| WorkerError::failed(format!("cannot plot `{}`: {e}", path.display())))?;
    if let Some(warning) = chart.warning {
        protocol::message(&warning);
    }
    Ok(())
}
