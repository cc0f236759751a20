//! Batched generation with a KV cache: greedy, temperature and top-p sampling, stopping at
//! end-of-sequence ids or stop sequences (`</answer>`), seeded.
//!
//! Prompts of different lengths are left-padded: a key mask hides the padding from every
//! real query, and positions count real tokens only, so a row's tokens do not depend on
//! what it was batched with. The loop stays on the device: sampling uses the Gumbel-max
//! trick (no host round trip), finished rows keep emitting padding, and the host checks
//! for "all rows finished" only every few steps. Rows are cut at their first stop on the
//! host afterwards.
//!
//! It does not do beam search, repetition penalties or speculative decoding.

use tch::{Kind, Tensor};

use crate::error::{Result, TorchError};
use crate::qwen2::{positions_from_mask, KvCache, Qwen2};

/// How to generate.
#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// At most this many new tokens per row.
    pub max_new_tokens: i64,
    /// Softmax temperature; 0 (or less) is greedy.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this
    /// (1.0: all).
    pub top_p: f64,
    /// Seeds libtorch's generator before the first token. That generator is global to the
    /// process: the same seed gives the same tokens when nothing else in the process draws
    /// random numbers meanwhile (true in `peirce-worker`, one node per process).
    pub seed: u64,
    /// Token ids that end a row (included in its output).
    pub eos: Vec<i64>,
    /// Token sequences that end a row (included in its output), e.g. `</answer>`.
    pub stop_sequences: Vec<Vec<i64>>,
    /// The padding id.
    pub pad: i64,
    /// How many decode steps between checks that every row has finished (each check waits
    /// for the device).
    pub check_every: i64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            eos: Vec::new(),
            stop_sequences: Vec::new(),
            pad: 0,
            check_every: 8,
        }
    }
}

/// Why a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// An end-of-sequence id.
    Eos,
    /// A stop sequence.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// One generated row.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The new tokens, up to and including the stop.
    pub tokens: Vec<i64>,
    /// Why it ended.
    pub finish: Finish,
}

/// Samples one token per row from `logits` (`[batch, vocab]`, fp32).
pub fn sample(logits: &Tensor, temperature: f64, top_p: f64) -> Result<Tensor> {
    if temperature <= 0.0 {
        return Ok(logits.f_argmax(-1, false)?);
    }
    let mut scaled = logits.f_div_scalar(temperature)?;
    if top_p < 1.0 {
        let (sorted, order) = scaled.f_sort(-1, true)?;
        let probs = sorted.f_softmax(-1, Kind::Float)?;
        // Drop a token when the tokens ranked above it already reach `top_p`; the first
        // token always stays.
        let before = probs.f_cumsum(-1, Kind::Float)?.f_sub(&probs)?;
        let drop_sorted = before.f_gt(top_p)?;
        let drop = drop_sorted.f_scatter(-1, &order, &drop_sorted)?;
        scaled = scaled.f_masked_fill(&drop, f64::NEG_INFINITY)?;
    }
    // Gumbel-max: argmax(logits + Gumbel noise) is a sample of softmax(logits).
    let uniform = scaled.f_rand_like()?.f_clamp_min(1e-20)?;
    let gumbel = uniform.f_log()?.f_neg()?.f_log()?.f_neg()?;
    Ok(scaled.f_add(&gumbel)?.f_argmax(-1, false)?)
}

/// Refuses an empty prompt; the (empty) completions when there is nothing to generate (no
/// prompts, or no new tokens allowed); `None` when there is work.
fn nothing_to_generate(
    prompts: &[Vec<i64>],
    params: &SamplingParams,
) -> Result<Option<Vec<Completion>>> {
    if let Some(row) = prompts.iter().position(Vec::is_empty) {
        return Err(TorchError::Invalid(format!("prompt {row} is empty")));
    }
    if prompts.is_empty() || params.max_new_tokens <= 0 {
        return Ok(Some(
            prompts
                .iter()
                .map(|_| Completion {
                    tokens: Vec::new(),
                    finish: Finish::Length,
                })
                .collect(),
        ));
    }
    Ok(None)
}

/// Generates a completion for each prompt (token ids; rows may differ in length).
pub fn generate(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
) -> Result<Vec<Completion>> {
    if let Some(nothing) = nothing_to_generate(prompts, params)? {
        return Ok(nothing);
    }
    tch::manual_seed(params.seed as i64);
    let raw = tch::no_grad(|| generate_tokens(model, prompts, params))?;
    Ok(raw.into_iter().map(|row| cut(row, params)).collect())
}

/// The on-device loop: `[batch, max_new_tokens]` tokens, padding after each row's stop.
fn generate_tokens(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
) -> Result<Vec<Vec<i64>>> {
    let device = model.device();
    let batch = prompts.len() as i64;
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let padded = prompts.iter().any(|p| p.len() as i64 != width);
    let max_new = params.max_new_tokens;

    let mut ids = Vec::with_capacity((batch * width) as usize);
    let mut real = Vec::with_capacity((batch * (width + max_new)) as usize);
    for prompt in prompts {
        let pad = width as usize - prompt.len();
        ids.extend(std::iter::repeat_n(params.pad, pad));
        ids.extend_from_slice(prompt);
        real.extend(std::iter::repeat_n(0i64, pad));
        real.extend(std::iter::repeat_n(1i64, prompt.len() + max_new as usize));
    }
    let input = Tensor::from_slice(&ids)
        .f_view([batch, width])?
        .f_to(device)?;
    let key_mask = Tensor::from_slice(&real)
        .f_view([batch, width + max_new])?
        .f_to(device)?;
    let prompt_mask = key_mask.f_narrow(1, 0, width)?;
    let positions = positions_from_mask(&prompt_mask)?;
    let lengths = Tensor::from_slice(&prompts.iter().map(|p| p.len() as i64).collect::<Vec<_>>())
        .f_to(device)?
        .f_unsqueeze(1)?;

    let mut cache = KvCache::new(model, batch, width + max_new)?;
    let mask_for = |keys: i64| -> Result<Option<Tensor>> {
        Ok(if padded {
            Some(key_mask.f_narrow(1, 0, keys)?)
        } else {
            None
        })
    };
    let hidden = model.forward(
        &input,
        &positions,
        mask_for(width)?.as_ref(),
        Some(&mut cache),
    )?;
    let mut logits = model
        .logits(&hidden.f_narrow(1, width - 1, 1)?.f_squeeze_dim(1)?)?
        .f_to_kind(Kind::Float)?;

    let options = (Kind::Int64, device);
    let out = Tensor::f_full([batch, max_new], params.pad, options)?;
    let mut finished = Tensor::f_zeros([batch], (Kind::Bool, device))?;
    let eos = Tensor::from_slice(&params.eos).f_to(device)?;
    let stops: Vec<Tensor> = params
        .stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| Ok(Tensor::from_slice(s).f_to(device)?.f_unsqueeze(0)?))
        .collect::<Result<_>>()?;
    let pad = Tensor::f_full([batch], params.pad, options)?;
    let check_every = params.check_every.max(1);

    for step in 0..max_new {
        let next = sample(&logits, params.temperature, params.top_p)?;
        let next = pad.f_where_self(&finished, &next)?;
        out.f_narrow(1, step, 1)?.f_copy_(&next.f_unsqueeze(1)?)?;
        let mut stopped = next
            .f_unsqueeze(1)?
            .f_eq_tensor(&eos.f_unsqueeze(0)?)?
            .f_any_dim(1, false)?;
        for stop in &stops {
            let length = stop.size()[1];
            if length <= step + 1 {
                let tail = out.f_narrow(1, step + 1 - length, length)?;
                stopped = stopped.f_logical_or(&tail.f_eq_tensor(stop)?.f_all_dim(1, false)?)?;
            }
        }
        finished = finished.f_logical_or(&stopped)?;
        if step + 1 == max_new {
            break;
        }
        if (step + 1) % check_every == 0 && finished.f_all()?.int64_value(&[]) != 0 {
            break;
        }
        let positions = lengths.f_add_scalar(step)?;
        let keys = width + step + 1;
        let hidden = model.forward(
            &next.f_unsqueeze(1)?,
            &positions,
            mask_for(keys)?.as_ref(),
            Some(&mut cache),
        )?;
        logits = model
            .logits(&hidden.f_squeeze_dim(1)?)?
            .f_to_kind(Kind::Float)?;
    }
    let out = out.f_to(tch::Device::Cpu)?;
    let flat = Vec::<i64>::try_from(out.f_flatten(0, -1)?)?;
    Ok(flat.chunks(max_new as usize).map(<[i64]>::to_vec).collect())
}

/// Generates a completion for each prompt with continuous batching: `slots` rows decode
/// together, and when a row ends (an end-of-sequence id, a stop sequence, `max_new_tokens`)
/// its slot takes the next waiting prompt at once, its prefill written into that slot of the
/// KV cache ([`Qwen2::prefill_slot`]), so every decoding step ([`Qwen2::decode_slots`]) runs
/// on live rows only instead of waiting for the longest row of a static batch. Results are in
/// request order. Greedy output equals [`generate`]'s (each row attends to its own tokens
/// only, at the positions a static batch gives them); sampled output is reproducible for the
/// same prompts, parameters and `slots`, though not equal to [`generate`]'s (the random
/// stream is drawn in another order).
///
/// Each step checks its rows on the host (one device sync per token); the KV cache holds
/// `slots` rows of the longest prompt plus `max_new_tokens`.
pub fn generate_continuous(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    slots: usize,
) -> Result<Vec<Completion>> {
    if let Some(nothing) = nothing_to_generate(prompts, params)? {
        return Ok(nothing);
    }
    tch::manual_seed(params.seed as i64);
    tch::no_grad(|| continuous(model, prompts, params, slots.clamp(1, prompts.len())))
}

/// A request decoding in a slot.
struct Active {
    request: usize,
    tokens: Vec<i64>,
    /// Where its next token's key and value go: its length so far.
    position: i64,
}

fn continuous(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    slots: usize,
) -> Result<Vec<Completion>> {
    let device = model.device();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let mut cache = KvCache::new(model, slots as i64, longest + params.max_new_tokens)?;
    let vocab = model.config.vocab_size;
    let mut logits = Tensor::f_zeros([slots as i64, vocab], (Kind::Float, device))?;
    let mut results: Vec<Option<Completion>> = vec![None; prompts.len()];
    let mut active: Vec<Option<Active>> = (0..slots).map(|_| None).collect();
    let mut waiting = 0..prompts.len();
    loop {
        // Free slots take the next prompts.
        for (slot, entry) in active.iter_mut().enumerate() {
            if entry.is_some() {
                continue;
            }
            let Some(request) = waiting.next() else {
                break;
            };
            let prompt = &prompts[request];
            let length = prompt.len() as i64;
            let input = Tensor::from_slice(prompt)
                .f_view([1, length])?
                .f_to(device)?;
            let hidden = model.prefill_slot(&input, slot as i64, &mut cache)?;
            let last = model
                .logits(&hidden.f_narrow(1, length - 1, 1)?.f_squeeze_dim(1)?)?
                .f_to_kind(Kind::Float)?;
            logits.f_narrow(0, slot as i64, 1)?.f_copy_(&last)?;
            *entry = Some(Active {
                request,
                tokens: Vec::new(),
                position: length,
            });
        }
        if active.iter().all(Option::is_none) {
            break;
        }
        let next = sample(&logits, params.temperature, params.top_p)?;
        let next = Vec::<i64>::try_from(next.f_to(tch::Device::Cpu)?)?;
        let mut tokens = vec![params.pad; slots];
        let mut positions = vec![0i64; slots];
        for (slot, entry) in active.iter_mut().enumerate() {
            let Some(row) = entry else { continue };
            row.tokens.push(next[slot]);
            let finish = if params.eos.contains(&next[slot]) {
                Some(Finish::Eos)
            } else if params
                .stop_sequences
                .iter()
                .any(|stop| !stop.is_empty() && row.tokens.ends_with(stop))
            {
                Some(Finish::Stop)
            } else if row.tokens.len() as i64 == params.max_new_tokens {
                Some(Finish::Length)
            } else {
                None
            };
            match finish {
                Some(finish) => {
                    let row = entry.take().expect("an active slot");
                    results[row.request] = Some(Completion {
                        tokens: row.tokens,
                        finish,
                    });
                }
                None => {
                    tokens[slot] = next[slot];
                    positions[slot] = row.position;
                    row.position += 1;
                }
            }
        }
        if active.iter().all(Option::is_none) && waiting.is_empty() {
            break;
        }
        // Every slot decodes (a free one writes padding at its position 0, which the next
        // prompt's prefill overwrites).
        let tokens = Tensor::from_slice(&tokens)
            .f_view([slots as i64, 1])?
            .f_to(device)?;
        let positions = Tensor::from_slice(&positions)
            .f_view([slots as i64, 1])?
            .f_to(device)?;
        let hidden = model.decode_slots(&tokens, &positions, &mut cache)?;
        logits = model
            .logits(&hidden.f_squeeze_dim(1)?)?
            .f_to_kind(Kind::Float)?;
    }
    Ok(results
        .into_iter()
        .map(|result| result.expect("every request finishes"))
        .collect())
}

/// Cuts a row after its first end-of-sequence id or stop sequence.
fn cut(row: Vec<i64>, params: &SamplingParams) -> Completion {
    for end in 0..row.len() {
        if params.eos.contains(&row[end]) {
            return Completion {
                tokens: row[..=end].to_vec(),
                finish: Finish::Eos,
            };
        }
        let head = &row[..=end];
        if params
            .stop_sequences
            .iter()
            .any(|stop| !stop.is_empty() && head.ends_with(stop))
        {
            return Completion {
                tokens: head.to_vec(),
                finish: Finish::Stop,
            };
        }
    }
    Completion {
        tokens: row,
        finish: Finish::Length,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_top_p_keeps_the_nucleus() {
        let logits = Tensor::from_slice(&[0.0f32, 3.0, 1.0, 2.9]).view([1, 4]);
        assert_eq!(sample(&logits, 0.0, 1.0).unwrap().int64_value(&[0]), 1);
        // softmax ≈ [0.02, 0.46, 0.06, 0.42]: top-p 0.5 keeps tokens 1 and 3 only.
        tch::manual_seed(3);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let token = sample(&logits, 1.0, 0.5).unwrap().int64_value(&[0]);
            seen[token as usize] += 1;
        }
        assert_eq!(seen[0] + seen[2], 0, "{seen:?}");
        assert!(seen[1] > 120 && seen[3] > 120, "{seen:?}");
        // Without top-p every token shows up.
        let mut seen = [0u32; 4];
        for _ in 0..2000 {
            seen[sample(&logits, 1.0, 1.0).unwrap().int64_value(&[0]) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[test]
    fn rows_are_cut_at_their_first_stop() {
        let params = SamplingParams {
            eos: vec![9],
            stop_sequences: vec![vec![4, 5]],
            ..SamplingParams::default()
        };
        assert_eq!(
            cut(vec![1, 4, 5, 9, 0], &params),
            Completion {
                tokens: vec![1, 4, 5],
                finish: Finish::Stop
            }
        );
        assert_eq!(cut(vec![1, 9, 4, 5], &params).finish, Finish::Eos);
        assert_eq!(cut(vec![1, 2, 3], &params).finish, Finish::Length);
    }
}
