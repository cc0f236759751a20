//! The policy-gradient pieces of the trainers: token log-probabilities (chunked over the
//! sequence so the fp32 vocabulary-sized temporaries stay small), batch-wide advantage
//! whitening, and REINFORCE++'s loss as the paper (arXiv 2505.10554) describes it.
//!
//! REINFORCE++ here: the reward sits on the last response token and, with gamma = 1, every
//! response token's return is the sequence reward; advantages are whitened over all
//! response tokens of the whole batch (not per prompt group); the policy term is PPO's
//! clipped ratio; the KL to the frozen starting model is the k3 estimator, *added* to the
//! loss with its coefficient (the paper's code subtracts it, a sign error fixed upstream);
//! an entropy bonus is subtracted. Losses are sums over tokens divided by the batch's
//! response-token count, so micro-batches accumulate to the batch's token mean.

use tch::{Kind, Tensor};

use crate::error::{Result, TorchError};
use crate::qwen2::{Checkpoints, Qwen2};

/// Right-padded sequences (prompt then response) for a forward pass with targets.
#[derive(Debug)]
pub struct Sequences {
    /// `[batch, length]` token ids, padded on the right.
    pub ids: Tensor,
    /// `[batch, length - 1]`: 1 where position `t + 1` is a response token (a target
    /// whose log-probability counts), else 0.
    pub target_mask: Tensor,
}

impl Sequences {
    /// Lays out `(prompt, response)` pairs on `device`.
    pub fn new(pairs: &[(&[i64], &[i64])], pad: i64, device: tch::Device) -> Result<Self> {
        // Lengths rounded up to a multiple of 64: libtorch's CPU kernels pay a large one-off
        // cost for each new shape, and rollout lengths vary from batch to batch.
        let length = pairs
            .iter()
            .map(|(p, r)| p.len() + r.len())
            .max()
            .unwrap_or(0)
            .div_ceil(64)
            * 64;
        if length < 2 {
            return Err(TorchError::Invalid(
                "sequences need at least two tokens".into(),
            ));
        }
        let mut ids = Vec::with_capacity(pairs.len() * length);
        let mut mask = Vec::with_capacity(pairs.len() * (length - 1));
        for (prompt, response) in pairs {
            if prompt.is_empty() {
                return Err(TorchError::Invalid("empty prompt".into()));
            }
            let used = prompt.len() + response.len();
            ids.extend_from_slice(prompt);
            ids.extend_from_slice(response);
            ids.extend(std::iter::repeat_n(pad, length - used));
            // Target index t predicts token t + 1.
            for t in 0..length - 1 {
                let token = t + 1;
                mask.push(f32::from(token >= prompt.len() && token < used));
            }
        }
        let batch = pairs.len() as i64;
        Ok(Self {
            ids: Tensor::from_slice(&ids)
                .f_view([batch, length as i64])?
                .f_to(device)?,
            target_mask: Tensor::from_slice(&mask)
                .f_view([batch, length as i64 - 1])?
                .f_to(device)?,
        })
    }
}

/// Log-probabilities of each next token, `[batch, length - 1]`, and, when asked, the
/// entropy of each next-token distribution, both fp32. The hidden states are computed
/// once; the head, the fp32 cast and the softmax run `chunk` positions at a time.
pub fn token_logprobs(
    model: &Qwen2,
    ids: &Tensor,
    chunk: i64,
    with_entropy: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    // Right padding needs no mask: causality already hides later padding from real tokens.
    let hidden = model.forward(ids, &positions(ids)?, None, None)?;
    head_logprobs(model, &hidden, ids, chunk, with_entropy)
}

/// [`token_logprobs`] with activation checkpointing ([`Qwen2::forward_checkpointed`]): after
/// `backward` of a loss computed from them, call [`Checkpoints::backward`].
pub fn token_logprobs_checkpointed<'a>(
    model: &'a Qwen2,
    ids: &Tensor,
    chunk: i64,
    with_entropy: bool,
) -> Result<(Tensor, Option<Tensor>, Checkpoints<'a>)> {
    let (hidden, checkpoints) = model.forward_checkpointed(ids, &positions(ids)?)?;
    let (logprobs, entropy) = head_logprobs(model, &hidden, ids, chunk, with_entropy)?;
    Ok((logprobs, entropy, checkpoints))
}

/// `0..length` for every row of `ids` (`[batch, length]`).
fn positions(ids: &Tensor) -> Result<Tensor> {
    let size = ids.size();
    let (batch, length) = (size[0], size[1]);
    Ok(Tensor::f_arange(length, (Kind::Int64, ids.device()))?
        .f_unsqueeze(0)?
        .f_expand([batch, length], false)?)
}

/// The head, fp32 log-softmax and (optionally) entropy over `hidden`, `chunk` positions at a
/// time.
fn head_logprobs(
    model: &Qwen2,
    hidden: &Tensor,
    ids: &Tensor,
    chunk: i64,
    with_entropy: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let length = ids.size()[1];
    let targets = ids.f_narrow(1, 1, length - 1)?;
    let chunk = chunk.max(1);
    let mut logprobs = Vec::new();
    let mut entropies = Vec::new();
    let mut start = 0;
    while start < length - 1 {
        let width = chunk.min(length - 1 - start);
        let logits = model
            .logits(&hidden.f_narrow(1, start, width)?)?
            .f_to_kind(Kind::Float)?;
        let log_softmax = logits.f_log_softmax(-1, Kind::Float)?;
        let picked = log_softmax
            .f_gather(
                -1,
                &targets.f_narrow(1, start, width)?.f_unsqueeze(-1)?,
                false,
            )?
            .f_squeeze_dim(-1)?;
        logprobs.push(picked);
        if with_entropy {
            let entropy = log_softmax
                .f_exp()?
                .f_mul(&log_softmax)?
                .f_sum_dim_intlist(-1, false, Kind::Float)?
                .f_neg()?;
            entropies.push(entropy);
        }
        start += width;
    }
    let logprobs = Tensor::f_cat(&logprobs, 1)?;
    let entropy = if with_entropy {
        Some(Tensor::f_cat(&entropies, 1)?)
    } else {
        None
    };
    Ok((logprobs, entropy))
}

/// `(values - mean) / sqrt(var + 1e-8)` over the entries where `mask` is 1 (all rows and
/// positions together), zero elsewhere.
pub fn whiten(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let count = mask.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
    let mean = values.f_mul(mask)?.f_sum(Kind::Float)?.f_div(&count)?;
    let centered = values.f_sub(&mean)?.f_mul(mask)?;
    let variance = centered
        .f_pow_tensor_scalar(2)?
        .f_sum(Kind::Float)?
        .f_div(&count)?;
    Ok(centered.f_mul(&variance.f_add_scalar(1e-8)?.f_rsqrt()?)?)
}

/// REINFORCE++'s coefficients.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    /// PPO ratio clip (0.2).
    pub clip: f64,
    /// Coefficient of the k3 KL to the starting model, added (0.001).
    pub kl_coef: f64,
    /// Coefficient of the entropy bonus, subtracted (0.001).
    pub entropy_coef: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip: 0.2,
            kl_coef: 0.001,
            entropy_coef: 0.001,
        }
    }
}

/// The loss of one micro-batch and its parts, each summed over its response tokens and
/// divided by `tokens` (the whole batch's response-token count).
#[derive(Debug)]
pub struct Loss {
    /// What to call `backward` on.
    pub total: Tensor,
    /// The clipped policy-gradient term.
    pub policy: Tensor,
    /// The k3 KL term (before its coefficient).
    pub kl: Tensor,
    /// The mean entropy (before its coefficient).
    pub entropy: Tensor,
    /// Share of tokens whose ratio was clipped.
    pub clipped: Tensor,
}

/// REINFORCE++'s loss for one micro-batch. All tensors are `[rows, length - 1]`:
/// `logprobs` (with gradient), `old_logprobs` (the rollout policy's, no gradient),
/// `ref_logprobs` (the frozen start's), `advantages` (whitened), `entropy`, `mask` (1 on
/// response tokens).
#[allow(clippy::too_many_arguments)]
pub fn reinforce_pp_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    ref_logprobs: &Tensor,
    advantages: &Tensor,
    entropy: &Tensor,
    mask: &Tensor,
    tokens: f64,
    config: &LossConfig,
) -> Result<Loss> {
    let mean = |t: &Tensor| -> Result<Tensor> {
        Ok(t.f_mul(mask)?
            .f_sum(Kind::Float)?
            .f_div_scalar(tokens.max(1.0))?)
    };
    let ratio = logprobs.f_sub(old_logprobs)?.f_exp()?;
    let unclipped = ratio.f_mul(advantages)?;
    let clipped_ratio = ratio.f_clamp(1.0 - config.clip, 1.0 + config.clip)?;
    let clipped = clipped_ratio.f_mul(advantages)?;
    let policy = mean(&unclipped.f_minimum(&clipped)?.f_neg()?)?;
    // k3: exp(r) - r - 1 with r = log(pi_ref / pi), an unbiased, positive KL estimate.
    let log_ratio = ref_logprobs.f_sub(logprobs)?.f_clamp(-10.0, 10.0)?;
    let kl = mean(&log_ratio.f_exp()?.f_sub(&log_ratio)?.f_sub_scalar(1.0)?)?;
    let entropy = mean(entropy)?;
    let total = policy
        .f_add(&kl.f_mul_scalar(config.kl_coef)?)?
        .f_sub(&entropy.f_mul_scalar(config.entropy_coef)?)?;
    let was_clipped = mean(
        &ratio
            .f_sub(&clipped_ratio)?
            .f_abs()?
            .f_gt(1e-6)?
            .f_to_kind(Kind::Float)?,
    )?;
    Ok(Loss {
        total,
        policy,
        kl,
        entropy,
        clipped: was_clipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    #[test]
    fn whitening_is_batch_wide_over_masked_tokens() {
        // Two rows, rewards 3 and -1 on every response token; row 0 has 3 tokens, row 1 one.
        let rewards =
            Tensor::from_slice(&[3.0f32, 3.0, 3.0, 9.0, -1.0, 0.0, 0.0, 0.0]).view([2, 4]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]).view([2, 4]);
        // Tokens 3, 3, 3, -1: mean 2, variance 3.
        let s = 3f64.sqrt();
        let expected = [1.0 / s, 1.0 / s, 1.0 / s, 0.0, -3.0 / s, 0.0, 0.0, 0.0];
        for (a, b) in values(&whiten(&rewards, &mask).unwrap())
            .iter()
            .zip(expected)
        {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn loss_clips_the_ratio_and_adds_a_positive_kl() {
        let mask = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        let old = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]);
        // Ratios e^0.5 ≈ 1.65 and 1; positive advantages: the first is clipped at 1.2.
        let logprobs = Tensor::from_slice(&[0.5f32, 0.0]).view([1, 2]);
        let advantages = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        let entropy = Tensor::from_slice(&[2.0f32, 2.0]).view([1, 2]);
        let config = LossConfig::default();
        let loss = reinforce_pp_loss(
            &logprobs,
            &old,
            &old,
            &advantages,
            &entropy,
            &mask,
            2.0,
            &config,
        )
        .unwrap();
        assert!((loss.policy.double_value(&[]) + (1.2 + 1.0) / 2.0).abs() < 1e-5);
        assert!((loss.clipped.double_value(&[]) - 0.5).abs() < 1e-6);
        // k3 with r = -0.5 and 0: (e^-0.5 + 0.5 - 1) / 2.
        let kl = ((-0.5f64).exp() + 0.5 - 1.0) / 2.0;
        assert!((loss.kl.double_value(&[]) - kl).abs() < 1e-6);
        let total = -(2.2 / 2.0) + 0.001 * kl - 0.001 * 2.0;
        assert!((loss.total.double_value(&[]) - total).abs() < 1e-6);
    }

    #[test]
    fn sequences_mark_response_targets_only() {
        let prompt = [1i64, 2, 3];
        let response = [4i64, 5];
        let short = [6i64];
        let seqs = Sequences::new(
            &[(&prompt, &response), (&prompt[..2], &short)],
            0,
            tch::Device::Cpu,
        )
        .unwrap();
        assert_eq!(seqs.ids.size(), [2, 64]);
        assert_eq!(
            values(&seqs.ids.narrow(1, 0, 6)),
            [1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 1.0, 2.0, 6.0, 0.0, 0.0, 0.0]
        );
        // Targets t+1: row 0 predicts 4 (t=2) and 5 (t=3); row 1 predicts 6 (t=1).
        assert_eq!(
            values(&seqs.target_mask.narrow(1, 0, 5)),
            [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(seqs.target_mask.sum(Kind::Float).double_value(&[]), 3.0);
    }
}
