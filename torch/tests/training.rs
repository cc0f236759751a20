//! Training numerics on tiny seeded models (CPU): AdamW with fp32 master weights against
//! libtorch's own AdamW, bf16 training at the paper's learning rate against an fp32 run, the
//! saved checkpoint holding the masters, and activation checkpointing's gradients.

use std::collections::BTreeMap;

use peirce_torch::checkpoint;
use peirce_torch::optim::StatePlacement;
use peirce_torch::pretrained::set_dtype;
use peirce_torch::qwen2::{Config, Qwen2};
use peirce_torch::train::{self, TrainConfig};
use tch::{nn, Device, Kind, Tensor};

fn config() -> Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500.0, "tie_word_embeddings": false, "initializer_range": 0.02,
    }))
    .unwrap()
}

/// libtorch's random generator is global to the process and tests run on threads.
fn exclusive_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn model(seed: i64, kind: Kind) -> (nn::VarStore, Qwen2) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Qwen2::new(&config(), &vs.root()).unwrap();
    set_dtype(&mut vs, kind);
    (vs, net)
}

/// Fixed (prompt, target) pairs using every token of the vocabulary, so every weight gets a
/// gradient.
fn pairs() -> Vec<(Vec<i64>, Vec<i64>)> {
    (0..6)
        .map(|row| {
            let token = |i: i64| (row * 17 + i * 7) % 97;
            ((0..5).map(token).collect(), (5..24).map(token).collect())
        })
        .collect()
}

fn weights(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .map(|(name, t)| (name, t.to_kind(Kind::Float).detach().copy()))
        .collect()
}

fn fp32_config(lr: f64) -> TrainConfig {
    TrainConfig {
        lr,
        weight_decay: 0.01,
        micro_batch: 4,
        ..TrainConfig::default()
    }
}

/// `MasterAdamW` on an fp32 model (its weights are the masters, updated in place) takes the
/// steps libtorch's AdamW takes.
#[test]
fn master_adamw_in_fp32_matches_libtorch_adamw() {
    let _rng = exclusive_rng();
    let config = fp32_config(1e-3);
    let (ours_vs, ours) = model(3, Kind::Float);
    let (theirs_vs, theirs) = model(3, Kind::Float);
    let mut optimizer = train::adamw(&ours_vs, &config, 0, 1).unwrap();
    assert_eq!(optimizer.state_bytes(), 8 * optimizer.share().1);
    use nn::OptimizerConfig;
    let mut reference = nn::AdamW {
        beta1: config.betas.0,
        beta2: config.betas.1,
        wd: config.weight_decay,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(&theirs_vs, config.lr)
    .unwrap();
    for _ in 0..5 {
        train::sft_step(&ours, &ours_vs, &mut optimizer, &pairs(), 0, &config).unwrap();
        // The same step through libtorch's optimizer.
        reference.zero_grad();
        for chunk in pairs().chunks(config.micro_batch) {
            let views: Vec<(&[i64], &[i64])> = chunk
                .iter()
                .map(|(p, t)| (p.as_slice(), t.as_slice()))
                .collect();
            let seqs = peirce_torch::rl::Sequences::new(&views, 0, Device::Cpu).unwrap();
            let (logprobs, _) =
                peirce_torch::rl::token_logprobs(&theirs, &seqs.ids, 256, false).unwrap();
            let tokens: usize = pairs().iter().map(|(_, t)| t.len()).sum();
            let loss = (&logprobs * &seqs.target_mask).sum(Kind::Float).neg() / tokens as f64;
            loss.backward();
        }
        train::clip_grad_norm(&theirs_vs, config.grad_clip).unwrap();
        reference.step();
    }
    let (ours, theirs) = (weights(&ours_vs), weights(&theirs_vs));
    let start = weights(&model(3, Kind::Float).0);
    for (name, ours) in &ours {
        let moved = (&theirs[name] - &start[name]).abs().max().double_value(&[]);
        let diff = (ours - &theirs[name]).abs().max().double_value(&[]);
        assert!(moved > 1e-4, "`{name}` did not train ({moved})");
        assert!(
            diff < 1e-6 + 1e-4 * moved,
            "`{name}`: {diff} apart, moved {moved}"
        );
    }
}

/// Issue 13, must-show 1: bf16 compute at lr 5e-7 changes (nearly) every fp32 master weight
/// each step, and the masters follow an fp32 run's; pure bf16 weights would not move at all.
/// The saved checkpoint holds the masters.
#[test]
fn bf16_training_at_the_papers_lr_moves_every_master_weight_as_fp32_does() {
    let _rng = exclusive_rng();
    const LR: f64 = 5e-7;
    const STEPS: usize = 4;
    let config = fp32_config(LR);
    // Both start from the same (bf16-representable) weights.
    let (mut fp32_vs, fp32) = model(5, Kind::BFloat16);
    set_dtype(&mut fp32_vs, Kind::Float);
    let (bf16_vs, bf16) = model(5, Kind::BFloat16);
    let mut fp32_optimizer = train::adamw(&fp32_vs, &config, 0, 1).unwrap();
    let mut bf16_optimizer = train::adamw(&bf16_vs, &config, 0, 1).unwrap();
    // Masters, and two fp32 moments: 12 bytes per weight.
    assert_eq!(bf16_optimizer.state_bytes(), 12 * bf16_optimizer.share().1);
    let masters = |optimizer: &peirce_torch::optim::MasterAdamW| -> BTreeMap<String, Tensor> {
        optimizer
            .masters()
            .into_iter()
            .map(|(name, t)| (name, t.detach().copy()))
            .collect()
    };
    let start_model = weights(&bf16_vs);
    let mut previous = masters(&bf16_optimizer);
    let mut fp32_previous = masters(&fp32_optimizer);
    let (mut worst_changed, mut worst_relative, mut worst_cosine) = (1.0f64, 0.0f64, 1.0f64);
    for step in 1..=STEPS {
        train::sft_step(&fp32, &fp32_vs, &mut fp32_optimizer, &pairs(), 0, &config).unwrap();
        train::sft_step(&bf16, &bf16_vs, &mut bf16_optimizer, &pairs(), 0, &config).unwrap();
        let (current, fp32_current) = (masters(&bf16_optimizer), masters(&fp32_optimizer));
        let (mut changed, mut total) = (0i64, 0i64);
        let (mut difference, mut norm, mut dot, mut ours_norm) = (0.0, 0.0, 0.0, 0.0);
        for (name, master) in &current {
            assert_eq!(master.kind(), Kind::Float, "`{name}`");
            let ours = master - &previous[name];
            let theirs = &fp32_current[name] - &fp32_previous[name];
            // Of the weights the fp32 run moved (embedding rows of tokens not in the batch,
            // and the key biases, which softmax ignores, get no gradient and stay put).
            let moved = theirs.ne(0.0);
            changed += ours
                .ne(0.0)
                .logical_and(&moved)
                .sum(Kind::Int64)
                .int64_value(&[]);
            total += moved.sum(Kind::Int64).int64_value(&[]);
            difference += (&ours - &theirs)
                .square()
                .sum(Kind::Double)
                .double_value(&[]);
            norm += theirs.square().sum(Kind::Double).double_value(&[]);
            ours_norm += ours.square().sum(Kind::Double).double_value(&[]);
            dot += (&ours * &theirs).sum(Kind::Double).double_value(&[]);
        }
        let share = changed as f64 / total as f64;
        let relative = (difference / norm).sqrt();
        let cosine = dot / (norm.sqrt() * ours_norm.sqrt());
        eprintln!(
            "step {step}: {:.4}% of the master weights fp32 moved changed; update vs fp32: relative L2 \
             difference {relative:.4}, cosine {cosine:.4}",
            100.0 * share
        );
        worst_changed = worst_changed.min(share);
        worst_relative = worst_relative.max(relative);
        worst_cosine = worst_cosine.min(cosine);
        previous = current;
        fp32_previous = fp32_current;
    }
    // Stated tolerances (measured: >= 99.96% changed, relative L2 <= 0.081, cosine >= 0.9967):
    // every step changes at least 99.9% of the masters the fp32 run moves; each step's update
    // is within 15% (relative L2) of the fp32 run's and points the same way (cosine > 0.99).
    // bf16 forward/backward noise is all that separates them.
    assert!(
        worst_changed > 0.999,
        "only {worst_changed} of weights changed"
    );
    assert!(worst_relative < 0.15, "update {worst_relative} from fp32's");
    assert!(
        worst_cosine > 0.99,
        "cosine {worst_cosine} to fp32's update"
    );

    // The bf16 copy follows the masters (rounded), and pure bf16 could not have moved: one
    // AdamW step at 5e-7 is below half a bf16 step for almost every weight.
    let now = weights(&bf16_vs);
    let mut below_resolution = (0i64, 0i64);
    for (name, start) in &start_model {
        let master = &previous[name];
        let rounded = master.to_kind(Kind::BFloat16).to_kind(Kind::Float);
        assert_eq!((&now[name] - &rounded).abs().max().double_value(&[]), 0.0);
        // Half the bf16 spacing at each weight: |w| * 2^-8.
        let half_step = start.abs() * 2f64.powi(-8);
        below_resolution.0 += half_step.gt(LR).sum(Kind::Int64).int64_value(&[]);
        below_resolution.1 += start.numel() as i64;
    }
    let share = below_resolution.0 as f64 / below_resolution.1 as f64;
    assert!(share > 0.95, "{share} of weights are coarser than one step");

    // Saved as fp32 by default: the checkpoint holds the masters exactly.
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save_tensors(&previous, dir.path(), Kind::Float, None).unwrap();
    let (reload_vs, _) = model(9, Kind::Float);
    checkpoint::load(&reload_vs, dir.path()).unwrap();
    for (name, tensor) in weights(&reload_vs) {
        assert_eq!(
            (&tensor - &previous[&name]).abs().max().double_value(&[]),
            0.0,
            "`{name}`"
        );
    }
}

/// Offloaded state (host memory) computes the same update as state kept with the model.
#[test]
fn offloaded_optimizer_state_takes_the_same_steps() {
    let _rng = exclusive_rng();
    let config = fp32_config(1e-3);
    let offload = TrainConfig {
        optimizer_state: StatePlacement::Host,
        ..config.clone()
    };
    let (a_vs, a) = model(4, Kind::BFloat16);
    let (b_vs, b) = model(4, Kind::BFloat16);
    let mut a_optimizer = train::adamw(&a_vs, &config, 0, 1).unwrap();
    let mut b_optimizer = train::adamw(&b_vs, &offload, 0, 1).unwrap();
    assert_eq!(b_optimizer.placement(), StatePlacement::Host);
    for _ in 0..3 {
        train::sft_step(&a, &a_vs, &mut a_optimizer, &pairs(), 0, &config).unwrap();
        train::sft_step(&b, &b_vs, &mut b_optimizer, &pairs(), 0, &offload).unwrap();
    }
    let b_masters: BTreeMap<String, Tensor> = b_optimizer.masters().into_iter().collect();
    for (name, master) in a_optimizer.masters() {
        let diff = (&master - &b_masters[&name]).abs().max().double_value(&[]);
        assert_eq!(diff, 0.0, "`{name}`");
    }
}

/// Issue 13, must-show 4: activation checkpointing gives the gradients of the full graph.
#[test]
fn checkpointed_layers_give_the_same_gradients() {
    let _rng = exclusive_rng();
    let (plain_vs, plain) = model(6, Kind::Float);
    let (checked_vs, checked) = model(6, Kind::Float);
    let gradients = |vs: &nn::VarStore, net: &Qwen2, checkpointing: bool| {
        let config = TrainConfig {
            gradient_checkpointing: checkpointing,
            ..fp32_config(0.0)
        };
        let optimizer = train::adamw(vs, &config, 0, 1).unwrap();
        // lr 0 and no clipping effect on the comparison: read the gradients before the step
        // by running the loss by hand through the same path as sft_step.
        let pairs = pairs();
        let views: Vec<(&[i64], &[i64])> = pairs
            .iter()
            .map(|(p, t)| (p.as_slice(), t.as_slice()))
            .collect();
        let seqs = peirce_torch::rl::Sequences::new(&views, 0, Device::Cpu).unwrap();
        optimizer.zero_grad();
        if checkpointing {
            let (logprobs, _, checkpoints) =
                peirce_torch::rl::token_logprobs_checkpointed(net, &seqs.ids, 7, true).unwrap();
            (&logprobs * &seqs.target_mask)
                .sum(Kind::Float)
                .neg()
                .backward();
            checkpoints.backward().unwrap();
        } else {
            let (logprobs, _) = peirce_torch::rl::token_logprobs(net, &seqs.ids, 7, true).unwrap();
            (&logprobs * &seqs.target_mask)
                .sum(Kind::Float)
                .neg()
                .backward();
        }
        vs.variables()
            .into_iter()
            .map(|(name, t)| (name, t.grad().copy()))
            .collect::<BTreeMap<_, _>>()
    };
    let expected = gradients(&plain_vs, &plain, false);
    let actual = gradients(&checked_vs, &checked, true);
    assert_eq!(expected.len(), actual.len());
    for (name, grad) in &expected {
        let scale = grad.abs().max().double_value(&[]);
        assert!(scale > 0.0, "`{name}` got no gradient");
        let diff = (grad - &actual[name]).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-5 * scale,
            "`{name}`: {diff} apart (scale {scale})"
        );
    }

    // And through the trainer: a checkpointed step equals a plain one.
    let config = fp32_config(1e-3);
    let checkpointed = TrainConfig {
        gradient_checkpointing: true,
        ..config.clone()
    };
    let mut plain_optimizer = train::adamw(&plain_vs, &config, 0, 1).unwrap();
    let mut checked_optimizer = train::adamw(&checked_vs, &checkpointed, 0, 1).unwrap();
    let plain_loss = train::sft_step(
        &plain,
        &plain_vs,
        &mut plain_optimizer,
        &pairs(),
        0,
        &config,
    )
    .unwrap();
    let checked_loss = train::sft_step(
        &checked,
        &checked_vs,
        &mut checked_optimizer,
        &pairs(),
        0,
        &checkpointed,
    )
    .unwrap();
    assert!((plain_loss - checked_loss).abs() < 1e-6);
    let (a, b) = (weights(&plain_vs), weights(&checked_vs));
    for (name, tensor) in &a {
        let diff = (tensor - &b[name]).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "`{name}`: {diff}");
    }
}
