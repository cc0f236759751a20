//! The `align` kind: REINFORCE++ on one task family (arXiv 2505.10554, stage A), with a
//! curriculum over levels; and the `domain-rl` kind, the same loop with GRPO's normalized
//! group advantages (stage C; the domain reward is 1/0).
//!
//! Inputs: `model` (a model tree) and `data` (a dataset tree with `train.jsonl` and
//! `test.jsonl`). Each step takes `prompts_per_step` training prompts of the current level
//! (a seeded shuffle, cycled), samples `rollouts` responses each, scores them with the task
//! reward and makes one REINFORCE++ update; levels run in the order given, `steps` each.
//! Held-out greedy accuracy on up to `eval_count` test prompts is measured before and
//! after. Outputs: the trained model tree, `metrics.jsonl` (one line per step),
//! `curves.png` (those metrics plotted against the step) and `eval.json`.
//!
//! Parameters: [`TrainParams`] (their defaults, from the paper where it has one, and their
//! docs are there and in the README).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use tch::Device;

use peirce_protocol::event::{message, metric, progress};
use peirce_protocol::params::{self, Algorithm as Estimator, TorchKind, TrainParams};
use peirce_protocol::{WorkerError, WorkerSpec};

use crate::data;
use crate::optim::StatePlacement;
use crate::parallel::Ranks;
use crate::pretrained::Model;
use crate::sampler::SamplingParams;
use crate::train::{self, Algorithm, Example, TrainConfig};

use super::ranks;

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

/// Runs an `align` or `domain-rl` node.
pub fn run(
    spec: &WorkerSpec,
    spec_path: &Path,
    kind: TorchKind,
    device: Device,
) -> Result<(), WorkerError> {
    let params = TrainParams::parse(kind, &spec.params)?;
    ranks::run(spec, spec_path, params.ranks, device, |ranks, device| {
        train_node(spec, &params, ranks, device)
    })
}

/// The node's work on one rank (rank 0 also writes the outputs).
fn train_node(
    spec: &WorkerSpec,
    params: &TrainParams,
    ranks: &Ranks,
    device: Device,
) -> Result<(), WorkerError> {
    let model_dir = spec.input("model")?;
    let data_dir = spec.input("data")?;
    let steps = params.steps.get() as usize;
    let levels = params::levels(&params.levels);
    let rollouts = params.rollouts.get() as usize;
    let mut sampling = SamplingParams {
        temperature: params.temperature,
        top_p: params.top_p,
        top_k: i64::from(params.top_k),
        cuda_graphs: params.cuda_graphs,
        kernels: params.decode_kernels,
        max_new_tokens: i64::from(params.max_new_tokens.get()),
        ..SamplingParams::default()
    };
    let mut config = TrainConfig {
        lr: params.lr,
        betas: (params.betas[0], params.betas[1]),
        weight_decay: params.weight_decay,
        grad_clip: params.grad_clip,
        micro_batch: params.micro_batch.get() as usize,
        ..TrainConfig::default()
    };
    config.gradient_checkpointing = params.gradient_checkpointing;
    if params.optimizer_offload {
        config.optimizer_state = StatePlacement::Host;
    }
    config.loss.kl_coef = params.kl_coef;
    config.loss.entropy_coef = params.entropy_coef;
    config.loss.clip = params.clip;
    let rollout_batch = params.rollout_batch.get() as usize;
    let eval_count = params.eval_count as usize;
    let seed = params.seed;
    let dtype = crate::pretrained::kind_of(params.dtype);
    let algorithm = match params.algorithm {
        Estimator::ReinforcePlusPlus => Algorithm::ReinforcePlusPlus,
        Estimator::Grpo => Algorithm::Grpo { group: rollouts },
    };

    // Every rank draws the same initial random state: the same weights, batches and seeds.
    tch::manual_seed(seed as i64);
    let policy = Model::load(model_dir, device, dtype)?;
    let mut reference = Model::load(model_dir, device, dtype)?;
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
    let per_step = params.prompts_per_step(&task)?;
    let train_examples = data::examples(&train_records, &policy.tokenizer, params.reward)?;
    let mut test_examples = data::examples(&test_records, &policy.tokenizer, params.reward)?;
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
        ranks,
    )?;
    metric(serde_json::json!({
        "phase": "eval", "when": "before", "accuracy": accuracy_before, "reward": reward_before,
    }));

    // Rank 0 writes the outputs; the others' output folder stays empty (it is not published).
    let out = &spec.output_dir;
    let scratch_out = spec.scratch_dir.join(format!("rank-{}", ranks.rank()));
    let out = if ranks.is_first() { out } else { &scratch_out };
    std::fs::create_dir_all(out)
        .map_err(|e| WorkerError::failed(format!("cannot create `{}`: {e}", out.display())))?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::File::create(&metrics_path).map_err(|e| {
        WorkerError::failed(format!("cannot create `{}`: {e}", metrics_path.display()))
    })?;
    let mut rows = Vec::new();
    let mut optimizer = if params.shard_optimizer {
        train::adamw(&policy.vs, &config, ranks.rank(), ranks.world())?
    } else {
        train::adamw(&policy.vs, &config, 0, 1)?
    };
    if ranks.world() > 1 {
        let (mine, all) = optimizer.share();
        message(&format!(
            "rank {} of {}: optimizer state for {mine} of {all} weights ({:.1} MiB)",
            ranks.rank(),
            ranks.world(),
            optimizer.state_bytes() as f64 / (1u64 << 20) as f64
        ));
    }
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
            // This rank's share of the prompts (all samples of a prompt stay together).
            let sampled = train::rollouts(
                &policy.net,
                &policy.tokenizer,
                ranks.split(&batch),
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
                ranks,
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
            metric(line.clone());
            rows.push(line);
            progress(
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
        ranks,
    )?;
    let eval = serde_json::json!({
        "task": task,
        "test_prompts": test_examples.len(),
        "before": {"accuracy": accuracy_before, "reward": reward_before},
        "after": {"accuracy": accuracy_after, "reward": reward_after},
    });
    metric(serde_json::json!({
        "phase": "eval", "when": "after", "accuracy": accuracy_after, "reward": reward_after,
    }));
    // The fp32 masters, not the model's compute-dtype copy: at lr 5e-7 a whole stage moves a
    // weight by about one bf16 step, which rounding would throw away. Every rank takes part
    // in gathering them (each sends the ones it owns).
    let masters = ranks.gather_masters(&optimizer)?;
    if !ranks.is_first() {
        return Ok(());
    }
    std::fs::write(out.join("eval.json"), format!("{eval:#}\n"))
        .map_err(|e| WorkerError::failed(format!("cannot write eval.json: {e}")))?;
    plot_curves(spec, &rows, &out.join("curves.png"))?;
    policy.save_with(
        out,
        crate::pretrained::kind_of(params.save_dtype),
        None,
        &masters,
    )?;
    Ok(())
}

/// Plots per-step metrics rows into `path` (a missing font only drops the text: warned),
/// titled with the node, its kind and its workflow. Not with the run: the chart is part of
/// the node's output, and a title naming the run would make every rerun's bytes new.
pub(crate) fn plot_curves(
    spec: &WorkerSpec,
    rows: &[serde_json::Value],
    path: &std::path::Path,
) -> Result<(), WorkerError> {
    let title = format!("{} ({}, workflow {})", spec.node, spec.kind, spec.workflow);
    let chart = peirce_plot::training_curves(&title, rows, path)
        .map_err(|e| WorkerError::failed(format!("cannot plot `{}`: {e}", path.display())))?;
    if let Some(warning) = chart.warning {
        message(&warning);
    }
    Ok(())
}
