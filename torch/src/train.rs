//! Training steps: supervised warm-up on worked solutions, rollouts scored by the task
//! reward, and the REINFORCE++ update (see [`crate::rl`] for the loss), with AdamW,
//! global gradient-norm clipping and micro-batching.
//!
//! One update per rollout batch (arXiv 2505.10554), so the "old" policy of the clipped ratio is the
//! current one: its log-probabilities are the current ones detached, which saves a forward
//! pass and gives ratio 1 with the right gradient. Rows of a batch are split into
//! micro-batches whose gradients accumulate; every loss is normalized by the whole batch's
//! response-token count, so the accumulated gradient is the batch's token mean.

use peirce_tasks::reward::{self, RewardMode, Score};
use peirce_tasks::AnswerKind;
use tch::{nn, Kind, Tensor};

use crate::error::{Result, TorchError};
use crate::optim::{AdamWConfig, MasterAdamW, Optimizer, StatePlacement};
use crate::parallel::Ranks;
use crate::qwen2::{Checkpoints, Qwen2};
use crate::rl::{
    reinforce_pp_loss, token_logprobs, token_logprobs_checkpointed, LossConfig, Sequences,
};
use crate::sampler::{generate_continuous, Finish, SamplingParams};
use crate::tokenizer::Tokenizer;

/// Optimizer and batching settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Learning rate (constant).
    pub lr: f64,
    /// AdamW's betas.
    pub betas: (f64, f64),
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Rows per forward/backward.
    pub micro_batch: usize,
    /// Sequence positions per head/softmax chunk.
    pub logprob_chunk: i64,
    /// REINFORCE++'s coefficients.
    pub loss: LossConfig,
    /// Recompute each decoder layer in the backward instead of keeping its activations.
    pub gradient_checkpointing: bool,
    /// Where the fp32 master weights and AdamW moments live.
    pub optimizer_state: StatePlacement,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 5e-7,
            betas: (0.9, 0.95),
            weight_decay: 0.0,
            grad_clip: 1.0,
            micro_batch: 8,
            logprob_chunk: 256,
            loss: LossConfig::default(),
            gradient_checkpointing: false,
            optimizer_state: StatePlacement::WithModel,
        }
    }
}

/// AdamW with fp32 master weights over `vs`'s trainable variables ([`MasterAdamW`]), for
/// rank `rank` of `ranks` (its share of the optimizer state).
pub fn adamw(
    vs: &nn::VarStore,
    config: &TrainConfig,
    rank: usize,
    ranks: usize,
) -> Result<MasterAdamW> {
    MasterAdamW::new(
        vs,
        AdamWConfig {
            lr: config.lr,
            betas: config.betas,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        },
        config.optimizer_state,
        rank,
        ranks,
    )
}

/// Log-probabilities (and entropies) of `ids` under `model` with a graph for the backward;
/// with `config.gradient_checkpointing`, also the layers to recompute in [`backward`].
fn trained_logprobs<'a>(
    model: &'a Qwen2,
    ids: &Tensor,
    config: &TrainConfig,
    with_entropy: bool,
) -> Result<(Tensor, Option<Tensor>, Option<Checkpoints<'a>>)> {
    if config.gradient_checkpointing {
        let (logprobs, entropy, checkpoints) =
            token_logprobs_checkpointed(model, ids, config.logprob_chunk, with_entropy)?;
        Ok((logprobs, entropy, Some(checkpoints)))
    } else {
        let (logprobs, entropy) = token_logprobs(model, ids, config.logprob_chunk, with_entropy)?;
        Ok((logprobs, entropy, None))
    }
}

/// Back-propagates `loss`, through the recomputed layers when checkpointed.
fn backward(loss: &Tensor, checkpoints: Option<Checkpoints<'_>>) -> Result<()> {
    loss.f_backward()?;
    if let Some(checkpoints) = checkpoints {
        checkpoints.backward()?;
    }
    Ok(())
}

/// Scales all gradients so their global norm is at most `max`; returns the norm before.
pub fn clip_grad_norm(vs: &nn::VarStore, max: f64) -> Result<f64> {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = vs
            .trainable_variables()
            .iter()
            .map(|v| v.grad())
            .filter(Tensor::defined)
            .collect();
        if grads.is_empty() {
            return Ok(0.0);
        }
        let squares: Vec<Tensor> = grads
            .iter()
            .map(|g| {
                g.f_to_kind(Kind::Float)?
                    .f_pow_tensor_scalar(2)?
                    .f_sum(Kind::Float)
            })
            .collect::<std::result::Result<_, _>>()?;
        let norm = Tensor::f_stack(&squares, 0)?
            .f_sum(Kind::Float)?
            .f_sqrt()?
            .f_double_value(&[])?;
        if norm.is_finite() && norm > max {
            for grad in &grads {
                let _ = grad.shallow_clone().f_mul_scalar_(max / (norm + 1e-6))?;
            }
        }
        Ok(norm)
    })
}

/// One supervised step on `(prompt, target)` pairs: the mean cross-entropy of the target
/// tokens. Returns the loss.
pub fn sft_step(
    model: &Qwen2,
    vs: &nn::VarStore,
    optimizer: &mut (impl Optimizer + ?Sized),
    pairs: &[(Vec<i64>, Vec<i64>)],
    pad: i64,
    config: &TrainConfig,
) -> Result<f64> {
    let tokens: usize = pairs.iter().map(|(_, t)| t.len()).sum();
    optimizer.zero_grad();
    let mut total = 0.0;
    for chunk in pairs.chunks(config.micro_batch.max(1)) {
        let views: Vec<(&[i64], &[i64])> = chunk
            .iter()
            .map(|(p, t)| (p.as_slice(), t.as_slice()))
            .collect();
        let seqs = Sequences::new(&views, pad, model.device())?;
        let (logprobs, _, checkpoints) = trained_logprobs(model, &seqs.ids, config, false)?;
        let loss = logprobs
            .f_mul(&seqs.target_mask)?
            .f_sum(Kind::Float)?
            .f_neg()?
            .f_div_scalar(tokens.max(1) as f64)?;
        backward(&loss, checkpoints)?;
        total += loss.f_double_value(&[])?;
    }
    clip_grad_norm(vs, config.grad_clip)?;
    optimizer.step()?;
    optimizer.zero_grad();
    Ok(total)
}

/// A task prompt with what grades it.
#[derive(Debug, Clone)]
pub struct Example {
    /// The record's id in its dataset.
    pub id: String,
    /// Prompt token ids.
    pub prompt: Vec<i64>,
    /// Ground truth.
    pub answer: String,
    /// How the answer is graded.
    pub kind: AnswerKind,
    /// Under which reward rules (the node's `reward` param).
    pub reward: RewardMode,
    /// Difficulty level.
    pub level: u32,
}

/// One sampled response and its grade.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// The prompt's token ids.
    pub prompt: Vec<i64>,
    /// The response's token ids (through its stop token, if any).
    pub response: Vec<i64>,
    /// The response decoded.
    pub text: String,
    /// The reward.
    pub score: Score,
    /// Why it ended.
    pub finish: Finish,
}

/// Samples `per_prompt` responses for each example and scores them with the task reward.
/// Generation is continuously batched over `batch` slots
/// ([`crate::sampler::generate_continuous`]): a finished row's slot takes the next waiting
/// one, so short responses do not wait for the longest of their batch.
pub fn rollouts(
    model: &Qwen2,
    tokenizer: &Tokenizer,
    examples: &[Example],
    per_prompt: usize,
    batch: usize,
    sampling: &SamplingParams,
) -> Result<Vec<Rollout>> {
    let rows: Vec<&Example> = examples
        .iter()
        .flat_map(|e| std::iter::repeat_n(e, per_prompt))
        .collect();
    let prompts: Vec<Vec<i64>> = rows.iter().map(|e| e.prompt.clone()).collect();
    let completions = generate_continuous(model, &prompts, sampling, batch.max(1))?;
    let mut out = Vec::with_capacity(rows.len());
    for (example, completion) in rows.into_iter().zip(completions) {
        let text = tokenizer.decode(&completion.tokens)?;
        out.push(Rollout {
            prompt: example.prompt.clone(),
            score: reward::score_with(example.reward, example.kind, &text, &example.answer),
            response: completion.tokens,
            text,
            finish: completion.finish,
        });
    }
    Ok(out)
}

/// Per-row advantages from batch-wide token whitening of the last-token rewards: every
/// response token of row `i` carries return `rewards[i]` (gamma 1), so the token mean and
/// variance are weighted by response lengths.
pub fn whitened_advantages(rewards: &[f64], lengths: &[usize]) -> Vec<f64> {
    whitened_over(rewards, lengths, &Ranks::single(tch::Device::Cpu))
        .expect("one rank needs no collective")
}

/// [`whitened_advantages`] with the token mean and variance taken over every rank's rows.
fn whitened_over(rewards: &[f64], lengths: &[usize], ranks: &Ranks) -> Result<Vec<f64>> {
    let weighted: f64 = rewards
        .iter()
        .zip(lengths)
        .map(|(r, &n)| r * n as f64)
        .sum();
    let local_tokens: f64 = lengths.iter().map(|&n| n as f64).sum();
    let totals = ranks.sum(&[weighted, local_tokens])?;
    let tokens = totals[1];
    if tokens == 0.0 {
        return Ok(vec![0.0; rewards.len()]);
    }
    let mean = totals[0] / tokens;
    let squares: f64 = rewards
        .iter()
        .zip(lengths)
        .map(|(r, &n)| (r - mean).powi(2) * n as f64)
        .sum();
    let variance = ranks.sum(&[squares])?[0] / tokens;
    let scale = 1.0 / (variance + 1e-8).sqrt();
    Ok(rewards.iter().map(|r| (r - mean) * scale).collect())
}

/// What one REINFORCE++ update saw and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepStats {
    /// Mean reward of the rollouts.
    pub reward: f64,
    /// Share of rollouts scored fully correct.
    pub accuracy: f64,
    /// Share of rollouts whose tag format held.
    pub format: f64,
    /// Mean k3 KL to the starting model per response token.
    pub kl: f64,
    /// Mean entropy per response token.
    pub entropy: f64,
    /// Mean response length in tokens.
    pub response_length: f64,
    /// Share of tokens whose ratio was clipped.
    pub clipped: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Response tokens trained on.
    pub tokens: usize,
}

/// GRPO's advantages: each group of `group` consecutive rollouts (the samples of one
/// prompt) is normalized by its own mean and (population) standard deviation; a group
/// whose rewards are all equal carries no signal (advantage 0).
pub fn group_advantages(rewards: &[f64], group: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rewards.len());
    for chunk in rewards.chunks(group.max(1)) {
        let n = chunk.len() as f64;
        let mean = chunk.iter().sum::<f64>() / n;
        let std = (chunk.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        out.extend(chunk.iter().map(|r| {
            if std < 1e-9 {
                0.0
            } else {
                (r - mean) / (std + 1e-6)
            }
        }));
    }
    out
}

/// How rollout rewards become advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// REINFORCE++: batch-wide token whitening ([`whitened_advantages`]).
    ReinforcePlusPlus,
    /// GRPO: per-prompt group normalization ([`group_advantages`]) over `group` samples.
    Grpo {
        /// Samples per prompt.
        group: usize,
    },
}

impl Algorithm {
    /// Per-row advantages for `rollouts`, this rank's share of the batch: REINFORCE++ whitens
    /// over every rank's tokens; GRPO's groups (one prompt's samples) never span ranks.
    pub fn advantages(&self, rollouts: &[Rollout], ranks: &Ranks) -> Result<Vec<f64>> {
        let rewards: Vec<f64> = rollouts.iter().map(|r| r.score.total).collect();
        match self {
            Algorithm::ReinforcePlusPlus => {
                let lengths: Vec<usize> = rollouts.iter().map(|r| r.response.len()).collect();
                whitened_over(&rewards, &lengths, ranks)
            }
            Algorithm::Grpo { group } => Ok(group_advantages(&rewards, *group)),
        }
    }
}

/// One policy-gradient update of `policy` on `rollouts` (REINFORCE++ or GRPO advantages,
/// the same clipped, KL-regularized loss), with the KL measured against `reference` (the
/// frozen starting model). With several `ranks`, `rollouts` is this rank's share of the
/// batch: the loss is normalized by the whole batch's token count, gradients are summed over
/// ranks before clipping, and the returned statistics are the whole batch's.
#[allow(clippy::too_many_arguments)]
pub fn policy_step(
    policy: &Qwen2,
    vs: &nn::VarStore,
    optimizer: &mut (impl Optimizer + ?Sized),
    reference: &Qwen2,
    rollouts: &[Rollout],
    algorithm: Algorithm,
    pad: i64,
    config: &TrainConfig,
    ranks: &Ranks,
) -> Result<StepStats> {
    if rollouts.is_empty() {
        return Err(TorchError::Invalid(format!(
            "no rollouts to train on (rank {} of {})",
            ranks.rank(),
            ranks.world()
        )));
    }
    let advantages = algorithm.advantages(rollouts, ranks)?;
    let local_tokens: usize = rollouts.iter().map(|r| r.response.len()).sum();
    let totals = ranks.sum(&[
        rollouts.len() as f64,
        local_tokens as f64,
        rollouts.iter().map(|r| r.score.total).sum(),
        rollouts.iter().filter(|r| r.score.is_correct()).count() as f64,
        rollouts.iter().filter(|r| r.score.format_ok).count() as f64,
    ])?;
    let (count, tokens) = (totals[0], totals[1]);
    optimizer.zero_grad();
    let micro = config.micro_batch.max(1);
    let mut parts = [0.0f64; 3];
    for (index, chunk) in rollouts.chunks(micro).enumerate() {
        // An empty response has no token to train; give it the pad so shapes stay valid
        // (its mask is zero).
        let views: Vec<(&[i64], &[i64])> = chunk
            .iter()
            .map(|r| (r.prompt.as_slice(), r.response.as_slice()))
            .collect();
        let seqs = Sequences::new(&views, pad, policy.device())?;
        let row_advantages: Vec<f32> = advantages[index * micro..index * micro + chunk.len()]
            .iter()
            .map(|&a| a as f32)
            .collect();
        let advantages = Tensor::from_slice(&row_advantages)
            .f_to(policy.device())?
            .f_unsqueeze(1)?
            .f_mul(&seqs.target_mask)?;
        let (reference_logprobs, _) =
            tch::no_grad(|| token_logprobs(reference, &seqs.ids, config.logprob_chunk, false))?;
        let (logprobs, entropy, checkpoints) = trained_logprobs(policy, &seqs.ids, config, true)?;
        let entropy = entropy.ok_or_else(|| TorchError::Invalid("entropy missing".into()))?;
        let loss = reinforce_pp_loss(
            &logprobs,
            &logprobs.f_detach()?,
            &reference_logprobs,
            &advantages,
            &entropy,
            &seqs.target_mask,
            tokens,
            &config.loss,
        )?;
        backward(&loss.total, checkpoints)?;
        parts[0] += loss.kl.f_double_value(&[])?;
        parts[1] += loss.entropy.f_double_value(&[])?;
        parts[2] += loss.clipped.f_double_value(&[])?;
    }
    // Each rank's parts are its tokens' sums over the whole batch's count: they add up.
    let parts = ranks.sum(&parts)?;
    ranks.sync_gradients(vs)?;
    let grad_norm = clip_grad_norm(vs, config.grad_clip)?;
    optimizer.step()?;
    optimizer.share_update(ranks)?;
    optimizer.zero_grad();
    Ok(StepStats {
        reward: totals[2] / count,
        accuracy: totals[3] / count,
        format: totals[4] / count,
        kl: parts[0],
        entropy: parts[1],
        response_length: tokens / count,
        clipped: parts[2],
        grad_norm,
        tokens: tokens as usize,
    })
}

/// Greedy accuracy and mean reward on `examples` (split across `ranks`).
pub fn evaluate(
    model: &Qwen2,
    tokenizer: &Tokenizer,
    examples: &[Example],
    batch: usize,
    sampling: &SamplingParams,
    ranks: &Ranks,
) -> Result<(f64, f64)> {
    if examples.is_empty() {
        return Ok((0.0, 0.0));
    }
    let greedy = SamplingParams {
        temperature: 0.0,
        ..sampling.clone()
    };
    // Each rank grades its share of the prompts; the counts are summed.
    let graded = rollouts(model, tokenizer, ranks.split(examples), 1, batch, &greedy)?;
    let totals = ranks.sum(&[
        graded.len() as f64,
        graded.iter().filter(|r| r.score.is_correct()).count() as f64,
        graded.iter().map(|r| r.score.total).sum::<f64>(),
    ])?;
    let count = totals[0].max(1.0);
    Ok((totals[1] / count, totals[2] / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitened_advantages_equal_token_whitening() {
        let rewards = [3.0, -1.0, -3.0];
        let lengths = [3usize, 1, 2];
        let rows = whitened_advantages(&rewards, &lengths);
        let mut values = Vec::new();
        let mut mask = Vec::new();
        for (r, &n) in rewards.iter().zip(&lengths) {
            for t in 0..3 {
                values.push(*r as f32);
                mask.push(f32::from(t < n));
            }
        }
        let tokens = crate::rl::whiten(
            &Tensor::from_slice(&values).view([3, 3]),
            &Tensor::from_slice(&mask).view([3, 3]),
        )
        .unwrap();
        for (row, &advantage) in rows.iter().enumerate() {
            let first = tokens.double_value(&[row as i64, 0]);
            assert!((first - advantage).abs() < 1e-5, "{rows:?}");
        }
        // Equal rewards carry no signal.
        assert_eq!(whitened_advantages(&[1.0, 1.0], &[2, 5]), [0.0, 0.0]);
    }

    #[test]
    fn group_advantages_normalize_each_prompt() {
        // Groups of 2: [1, 0] -> mean 0.5, std 0.5 -> [+1, -1]; [1, 1] -> no signal.
        let a = group_advantages(&[1.0, 0.0, 1.0, 1.0], 2);
        assert!(
            (a[0] - 1.0).abs() < 1e-5 && (a[1] + 1.0).abs() < 1e-5,
            "{a:?}"
        );
        assert_eq!(&a[2..], [0.0, 0.0]);
        // Groups of 4 with one success: mean 0.25, std sqrt(3)/4.
        let b = group_advantages(&[1.0, 0.0, 0.0, 0.0], 4);
        let std = 3f64.sqrt() / 4.0;
        assert!((b[0] - 0.75 / std).abs() < 1e-4 && (b[1] + 0.25 / std).abs() < 1e-4);
    }
}
