//! Batched generation with a KV cache: greedy, temperature, top-k and top-p sampling,
//! stopping at end-of-sequence ids or stop sequences (`</answer>`), each request with its own
//! random stream.
//!
//! Two schedulers share the model's decoding code:
//! - [`generate`], the static batch: prompts of different lengths are left-padded, a key
//!   mask hides the padding from every real query, and positions count real tokens only, so
//!   a row's tokens do not depend on what it was batched with. The loop stays on the device
//!   (finished rows keep emitting padding; the host checks for "all rows finished" only
//!   every few steps). It is the reference the other is tested against.
//! - [`generate_continuous`] / [`generate_requests`], continuous batching: a fixed number of
//!   KV-cache slots decode together, and a finished row's slot takes the next waiting prompt
//!   at once. On a CUDA device each decoding step is a replayed CUDA graph ([`crate::graph`]),
//!   one per KV-length bucket.
//!
//! Random numbers: request `i`'s Gumbel noise at its `t`-th new token is a hash of
//! (`seed`, `i`, `t`, token id) ([`gumbel`]), computed on the device; libtorch's global
//! generator is not used. So a sampled response depends on its request, the seed and the
//! model only: not on the batch it decoded in, the number of slots, the scheduler or the
//! process's other random draws (up to the last bits of the logits, which batched kernels
//! may round differently).
//!
//! It does not do beam search, repetition penalties or speculative decoding.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::error::{Result, TorchError};
use crate::graph::{self, Graph, Pool};
use crate::kernels::{Kernels, PreferCublasLt};
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
    /// Keep the `top_k` most likely tokens only (0: all).
    pub top_k: i64,
    /// Seeds every request's random stream (request `i` of a call draws from the stream of
    /// (`seed`, `i`)).
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
    /// Continuous batching on a CUDA device: replay each decoding step as a CUDA graph
    /// (false: launch its kernels one by one, as on the CPU).
    pub cuda_graphs: bool,
    /// Continuous batching on a CUDA device: which kernels the decoding step runs
    /// ([`crate::kernels`]): libtorch's ops, peirce's fused kernels,
    /// or those and peirce's decoding attention where it is the faster (the default).
    pub kernels: Kernels,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            eos: Vec::new(),
            stop_sequences: Vec::new(),
            pad: 0,
            check_every: 8,
            cuda_graphs: true,
            kernels: Kernels::All,
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

/// The random keys of every request of a call: `[requests, 2]` 32-bit halves (as int32).
fn request_keys(seed: u64, requests: usize) -> Vec<[u32; 2]> {
    (0..requests as u64)
        .map(|request| {
            let key = splitmix64(seed ^ splitmix64(request.wrapping_add(0x5851_F42D_4C95_7F2D)));
            [key as u32, (key >> 32) as u32]
        })
        .collect()
}

/// A request's two 32-bit noise keys at its `step`-th new token: its keys, each XORed with a
/// hash of the step (what [`gumbel`] takes).
fn step_keys(keys: [u32; 2], step: i64) -> [i32; 2] {
    let [a, b] = step_salts(step);
    [(keys[0] ^ a) as i32, (keys[1] ^ b) as i32]
}

fn step_salts(step: i64) -> [u32; 2] {
    let step = step as u32;
    [
        fmix32(step.wrapping_mul(2)),
        fmix32(step.wrapping_mul(2) | 1),
    ]
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// MurmurHash3's 32-bit finalizer: a bijection whose every output bit depends on every input
/// bit.
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

const TOKEN_MULTIPLIER: u32 = 0x9E37_79B1;

/// [`fmix32`] on int32 tensors holding the bits of u32s (multiplications wrap; right shifts
/// are made logical with a mask).
fn fmix32_tensor(h: &Tensor) -> Result<Tensor> {
    let shift = |h: &Tensor, by: i64| -> Result<Tensor> {
        let shifted = h
            .f_bitwise_right_shift_tensor_scalar(by)?
            .f_bitwise_and((1i64 << (32 - by)) - 1)?;
        Ok(h.f_bitwise_xor_tensor(&shifted)?)
    };
    let h = shift(h, 16)?.f_mul_scalar(i64::from(0x85EB_CA6Bu32 as i32))?;
    let h = shift(&h, 13)?.f_mul_scalar(i64::from(0xC2B2_AE35u32 as i32))?;
    shift(&h, 16)
}

/// Gumbel noise, `[rows, vocab]` fp32: for row `r` with keys `keys[r] = (k1, k2)`
/// (`[rows, 2]` int32) and token `v`, `-ln(-ln(u))` with `u` from the top 23 bits of
/// `fmix32((v * 0x9E3779B1 + k1) ^ k2)`, strictly inside (0, 1).
pub fn gumbel(keys: &Tensor, vocab: i64) -> Result<Tensor> {
    let tokens = Tensor::f_arange(vocab, (Kind::Int, keys.device()))?
        .f_mul_scalar(i64::from(TOKEN_MULTIPLIER as i32))?
        .f_unsqueeze(0)?;
    let h = tokens
        .f_add(&keys.f_narrow(1, 0, 1)?)?
        .f_bitwise_xor_tensor(&keys.f_narrow(1, 1, 1)?)?;
    let bits = fmix32_tensor(&h)?
        .f_bitwise_right_shift_tensor_scalar(9)?
        .f_bitwise_and(0x7F_FFFF)?;
    let uniform = bits
        .f_to_kind(Kind::Float)?
        .f_add_scalar(0.5)?
        .f_mul_scalar(1.0 / f64::from(1u32 << 23))?;
    Ok(uniform.f_log()?.f_neg()?.f_log()?.f_neg()?)
}

/// The value [`gumbel`] gives token `token` under keys `(k1, k2)`, computed on the host (the
/// reference its tests check the device's against).
pub fn gumbel_reference(keys: [i32; 2], token: u32) -> f32 {
    let h = fmix32(
        token
            .wrapping_mul(TOKEN_MULTIPLIER)
            .wrapping_add(keys[0] as u32)
            ^ keys[1] as u32,
    );
    let uniform = (((h >> 9) & 0x7F_FFFF) as f32 + 0.5) * (1.0 / (1u32 << 23) as f32);
    -(-uniform.ln()).ln()
}

/// Samples one token per row from `logits` (`[batch, vocab]`, any float dtype): greedy (the
/// argmax of the values as they are) when `temperature <= 0`, else, in fp32,
/// softmax(logits / temperature) restricted to the `top_k` most
/// likely tokens (0: all) and to the top-p nucleus, with the Gumbel-max trick, the noise
/// drawn from `keys` (`[batch, 2]` int32, see [`gumbel`]).
pub fn sample(
    logits: &Tensor,
    temperature: f64,
    top_p: f64,
    top_k: i64,
    keys: &Tensor,
) -> Result<Tensor> {
    if temperature <= 0.0 {
        return Ok(logits.f_argmax(-1, false)?);
    }
    let vocab = logits.size()[1];
    let mut scaled = logits.f_to_kind(Kind::Float)?.f_div_scalar(temperature)?;
    if top_k > 0 && top_k < vocab {
        let (values, _) = scaled.f_topk(top_k, -1, true, false)?;
        let kth = values.f_narrow(1, top_k - 1, 1)?;
        scaled = scaled.f_masked_fill(&scaled.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
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
    Ok(scaled.f_add(&gumbel(keys, vocab)?)?.f_argmax(-1, false)?)
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
    let keys: Vec<i32> = request_keys(params.seed, prompts.len())
        .into_iter()
        .flat_map(|[a, b]| [a as i32, b as i32])
        .collect();
    let keys = Tensor::from_slice(&keys).f_view([batch, 2])?.f_to(device)?;

    for step in 0..max_new {
        // Greedy reads no noise: no keys to derive.
        let step_keys = if params.temperature > 0.0 {
            let [a, b] = step_salts(step);
            Tensor::f_cat(
                &[
                    keys.f_narrow(1, 0, 1)?.f_bitwise_xor(i64::from(a as i32))?,
                    keys.f_narrow(1, 1, 1)?.f_bitwise_xor(i64::from(b as i32))?,
                ],
                1,
            )?
        } else {
            keys.shallow_clone()
        };
        let next = sample(
            &logits,
            params.temperature,
            params.top_p,
            params.top_k,
            &step_keys,
        )?;
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

/// Generates a completion for each prompt with continuous batching over `slots` KV-cache
/// rows ([`generate_requests`] with every request's limit `params.max_new_tokens`). Results
/// are in request order. Greedy output equals [`generate`]'s token for token (each row
/// attends to its own tokens only, at the positions a static batch gives them), and so does
/// sampled output (each request draws from its own random stream), up to the last bits of
/// the logits.
pub fn generate_continuous(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    slots: usize,
) -> Result<Vec<Completion>> {
    Ok(generate_continuous_stats(model, prompts, params, slots)?.0)
}

/// [`generate_continuous`], and what it did.
pub fn generate_continuous_stats(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    slots: usize,
) -> Result<(Vec<Completion>, DecodeStats)> {
    let requests: Vec<Request<'_>> = prompts
        .iter()
        .map(|prompt| Request {
            prompt,
            max_new_tokens: params.max_new_tokens,
        })
        .collect();
    let batching = Batching {
        slots,
        schedule: Schedule::Continuous,
    };
    generate_requests(model, &requests, params, &batching)
}

/// One prompt to complete.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Its token ids (not empty).
    pub prompt: &'a [i64],
    /// At most this many new tokens (at most the call's `max_new_tokens`).
    pub max_new_tokens: i64,
}

/// How requests share the decoding batch.
#[derive(Debug, Clone)]
pub struct Batching {
    /// KV-cache rows decoding together.
    pub slots: usize,
    /// When a finished row's slot takes the next request.
    pub schedule: Schedule,
}

/// When waiting requests enter the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// As soon as any slot is free.
    Continuous,
    /// Only when every slot is free: static batches of `slots` requests in order, each
    /// decoding until its longest row is done (the baseline continuous batching replaces,
    /// on the same decoding code).
    Static,
}

/// What a [`generate_requests`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    /// Decoding steps (each advances every live slot by one token).
    pub steps: u64,
    /// Tokens generated (prefill's first tokens included).
    pub tokens: u64,
    /// Slot-steps spent on live rows: `tokens` less the first token of each request.
    pub live_slot_steps: u64,
    /// Steps run by replaying a CUDA graph.
    pub graph_replays: u64,
    /// CUDA graphs captured (one per KV-length bucket reached).
    pub graphs_captured: u64,
    /// The kernels decoding steps ran ([`SamplingParams::kernels`]; libtorch's where
    /// peirce's cannot run).
    pub kernels: Kernels,
}

/// Generates a completion for each request, `batching.slots` rows at a time, and says what
/// it did. Results are in request order.
///
/// Each decoding step ([`Qwen2::decode_slots`]) writes every slot's new key and value at that
/// slot's own position and attends over the first `L` cached positions of every slot, masked
/// to the slot's own, where `L` is the longest live row rounded up to a bucket
/// ([`attention_bucket`]). On a CUDA device (unless `params.cuda_graphs` is false) each
/// bucket's step is captured as a CUDA graph the first time it runs eagerly and replayed
/// afterwards. The host checks every row after each step (one device sync per token).
pub fn generate_requests(
    model: &Qwen2,
    requests: &[Request<'_>],
    params: &SamplingParams,
    batching: &Batching,
) -> Result<(Vec<Completion>, DecodeStats)> {
    if let Some(row) = requests.iter().position(|r| r.prompt.is_empty()) {
        return Err(TorchError::Invalid(format!("prompt {row} is empty")));
    }
    let limit = |request: &Request<'_>| request.max_new_tokens.min(params.max_new_tokens);
    let empty = Completion {
        tokens: Vec::new(),
        finish: Finish::Length,
    };
    let mut results: Vec<Option<Completion>> = requests
        .iter()
        .map(|request| (limit(request) <= 0).then(|| empty.clone()))
        .collect();
    let waiting: Vec<usize> = (0..requests.len())
        .filter(|&i| results[i].is_none())
        .collect();
    if waiting.is_empty() {
        return Ok((
            results.into_iter().flatten().collect(),
            DecodeStats::default(),
        ));
    }
    let slots = batching.slots.clamp(1, waiting.len());
    let longest = waiting
        .iter()
        .map(|&i| requests[i].prompt.len() as i64 + limit(&requests[i]))
        .max()
        .unwrap_or(1);
    let keys = request_keys(params.seed, requests.len());
    let stats = tch::no_grad(|| -> Result<DecodeStats> {
        let mut decoder = Decoder::new(model, slots, longest, params)?;
        let mut active: Vec<Option<Active>> = (0..slots).map(|_| None).collect();
        let mut waiting = waiting.into_iter();
        // Per slot, per step: token and position.
        let mut inputs = vec![0i64; slots * 2];
        loop {
            let admit = match batching.schedule {
                Schedule::Continuous => true,
                Schedule::Static => active.iter().all(Option::is_none),
            };
            if admit {
                let mut admitted = Vec::new();
                for (slot, entry) in active.iter_mut().enumerate() {
                    if entry.is_some() {
                        continue;
                    }
                    let Some(request) = waiting.next() else {
                        break;
                    };
                    admitted.push((slot, requests[request].prompt));
                    *entry = Some(Active {
                        request,
                        tokens: Vec::new(),
                        position: requests[request].prompt.len() as i64,
                        limit: limit(&requests[request]),
                    });
                }
                decoder.prefill(&admitted, params.pad)?;
            }
            if active.iter().all(Option::is_none) {
                break;
            }
            let mut row_keys = vec![0i32; slots * 2];
            for (slot, entry) in active.iter().enumerate() {
                if let Some(row) = entry {
                    let step = step_keys(keys[row.request], row.tokens.len() as i64);
                    row_keys[2 * slot..2 * slot + 2].copy_from_slice(&step);
                }
            }
            let next = decoder.sample(params, &row_keys)?;
            decoder.stats.tokens += active.iter().flatten().count() as u64;
            inputs.fill(0);
            for (slot, entry) in active.iter_mut().enumerate() {
                let Some(row) = entry else {
                    inputs[2 * slot] = params.pad;
                    continue;
                };
                row.tokens.push(next[slot]);
                let finish = if params.eos.contains(&next[slot]) {
                    Some(Finish::Eos)
                } else if params
                    .stop_sequences
                    .iter()
                    .any(|stop| !stop.is_empty() && row.tokens.ends_with(stop))
                {
                    Some(Finish::Stop)
                } else if row.tokens.len() as i64 >= row.limit {
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
                        inputs[2 * slot] = params.pad;
                    }
                    None => {
                        inputs[2 * slot] = next[slot];
                        inputs[2 * slot + 1] = row.position;
                        row.position += 1;
                    }
                }
            }
            if active.iter().all(Option::is_none) {
                // Nothing to decode: admit the next requests, or stop.
                continue;
            }
            // Every slot decodes (a free one writes padding at its position 0, which the
            // next prompt's prefill overwrites).
            let live = active.iter().flatten().count() as u64;
            let longest_live = active
                .iter()
                .flatten()
                .map(|row| row.position)
                .max()
                .unwrap_or(1);
            decoder.decode(&inputs, longest_live)?;
            decoder.stats.live_slot_steps += live;
        }
        Ok(decoder.stats)
    })?;
    let results = results
        .into_iter()
        .map(|result| result.ok_or_else(|| TorchError::Invalid("a request never finished".into())))
        .collect::<Result<Vec<_>>>()?;
    Ok((results, stats))
}

/// A request decoding in a slot.
struct Active {
    request: usize,
    tokens: Vec<i64>,
    /// Where its next token's key and value go: its length so far.
    position: i64,
    /// Its token limit.
    limit: i64,
}

/// The KV positions a decoding step attends over when its longest live row holds `length`
/// tokens: `length` rounded up to a multiple of a quarter of the power of two at or below it
/// (at least 128), at most `capacity`: four buckets per doubling (21 up to 8,256 tokens, so
/// 21 CUDA graphs at most), and at most a quarter more keys read than needed past 512.
pub fn attention_bucket(length: i64, capacity: i64) -> i64 {
    let length = length.max(1);
    let power = 1i64 << (63 - length.leading_zeros());
    let step = (power / 4).max(128);
    (((length + step - 1) / step) * step).min(capacity)
}

/// How many tokens before the longest live row leaves its bucket the next bucket's graph is
/// captured ([`Decoder::capture_next`]).
const AHEAD_STEPS: i64 = 8;

/// The bucket to capture ahead after a step over bucket `attend` whose longest live row is
/// `longest` tokens long after it (as [`Decoder::decode`] takes it): the next bucket, once
/// that row is within [`AHEAD_STEPS`] tokens of `attend`'s end; none before, or past
/// `capacity`.
fn bucket_ahead(attend: i64, longest: i64, capacity: i64) -> Option<i64> {
    (attend < capacity && longest + 1 + AHEAD_STEPS >= attend)
        .then(|| attention_bucket(attend + 1, capacity))
}

/// The most prompt tokens (padding included) one prefill pass takes.
const PREFILL_TOKENS: usize = 16_384;

/// The continuous batch's device state: the KV cache, the step's static input and output
/// buffers, and the CUDA graphs of the buckets seen so far.
struct Decoder<'m> {
    model: &'m Qwen2,
    cache: KvCache,
    /// `[slots, 2]` int64: each slot's token and position, written by one copy from the
    /// host per step.
    inputs: Tensor,
    /// `[slots, vocab]` in the model's dtype: the step's output, written by the head's
    /// matrix product itself ([`Qwen2::logits_into`]); [`sample`] casts it to fp32 only
    /// where it draws (greedy takes the argmax of the values as they are).
    logits: Tensor,
    graphs: Option<(Pool, HashMap<i64, Graph>)>,
    stats: DecodeStats,
    /// With peirce's kernels, libtorch's matrix products prefer cuBLASLt while the decoder
    /// lives ([`PreferCublasLt`]).
    _blas: Option<PreferCublasLt>,
}

impl<'m> Decoder<'m> {
    fn new(model: &'m Qwen2, slots: usize, capacity: i64, params: &SamplingParams) -> Result<Self> {
        let device = model.device();
        let slots = slots as i64;
        let graphs = if params.cuda_graphs && graph::usable_on(device) {
            Some((Pool::new()?, HashMap::new()))
        } else {
            None
        };
        let mut cache = KvCache::new(model, slots, capacity)?;
        if params.kernels != Kernels::Libtorch && device.is_cuda() {
            // Where they cannot run (fp32, fp16, no NVRTC), libtorch's ops do the same work.
            if let Err(error) = cache.use_kernels(params.kernels) {
                eprintln!("peirce-worker: decoding with libtorch's kernels: {error}");
            }
        }
        let stats = DecodeStats {
            kernels: cache.kernels(),
            ..DecodeStats::default()
        };
        let _blas = if cache.kernels() != Kernels::Libtorch {
            Some(PreferCublasLt::new()?)
        } else {
            None
        };
        Ok(Self {
            _blas,
            model,
            cache,
            inputs: Tensor::f_zeros([slots, 2], (Kind::Int64, device))?,
            logits: Tensor::f_zeros([slots, model.config.vocab_size], (model.kind(), device))?,
            graphs,
            stats,
        })
    }

    /// Writes each admitted prompt's keys and values into its slot and its next-token logits
    /// into that row of the output: prompts batched (right-padded with `pad`) up to about
    /// [`PREFILL_TOKENS`] padded tokens per forward pass.
    fn prefill(&mut self, admitted: &[(usize, &[i64])], pad: i64) -> Result<()> {
        let device = self.model.device();
        let mut start = 0;
        while start < admitted.len() {
            // Take prompts while the padded batch stays within the budget (at least one).
            let mut end = start + 1;
            let mut width = admitted[start].1.len();
            while end < admitted.len() {
                let wider = width.max(admitted[end].1.len());
                if wider * (end + 1 - start) > PREFILL_TOKENS {
                    break;
                }
                width = wider;
                end += 1;
            }
            let chunk = &admitted[start..end];
            let rows = chunk.len() as i64;
            let mut ids = vec![pad; chunk.len() * width];
            for (row, (_, prompt)) in chunk.iter().enumerate() {
                ids[row * width..row * width + prompt.len()].copy_from_slice(prompt);
            }
            let slots: Vec<i64> = chunk.iter().map(|(slot, _)| *slot as i64).collect();
            let lasts: Vec<i64> = chunk.iter().map(|(_, p)| p.len() as i64 - 1).collect();
            let input = Tensor::from_slice(&ids)
                .f_view([rows, width as i64])?
                .f_to(device)?;
            let slots = Tensor::from_slice(&slots).f_to(device)?;
            let hidden = self.model.prefill_slots(&input, &slots, &mut self.cache)?;
            let hidden_size = hidden.size()[2];
            let index = Tensor::from_slice(&lasts)
                .f_to(device)?
                .f_view([rows, 1, 1])?
                .f_expand([rows, 1, hidden_size], false)?;
            let last = hidden.f_gather(1, &index, false)?.f_squeeze_dim(1)?;
            let logits = self.model.logits(&last)?;
            let _ = self.logits.f_index_copy_(0, &slots, &logits)?;
            start = end;
        }
        Ok(())
    }

    /// Samples every slot's next token from the current logits (free slots' are ignored).
    fn sample(&mut self, params: &SamplingParams, keys: &[i32]) -> Result<Vec<i64>> {
        let slots = self.logits.size()[0];
        let keys = if params.temperature > 0.0 {
            Tensor::from_slice(keys)
                .f_view([slots, 2])?
                .f_to(self.model.device())?
        } else {
            // Greedy reads no noise: nothing to upload or allocate.
            self.inputs.shallow_clone()
        };
        let next = sample(
            &self.logits,
            params.temperature,
            params.top_p,
            params.top_k,
            &keys,
        )?;
        Ok(Vec::<i64>::try_from(next.f_to(Device::Cpu)?)?)
    }

    /// One decoding step for every slot (`inputs`: `[slots, 2]` as [`Decoder::inputs`]), the
    /// longest live row being `longest` tokens long after it.
    fn decode(&mut self, inputs: &[i64], longest: i64) -> Result<()> {
        let slots = self.logits.size()[0];
        let host = Tensor::from_slice(inputs).f_view([slots, 2])?;
        self.inputs.f_copy_(&host)?;
        let attend = attention_bucket(longest + 1, self.cache.capacity());
        self.stats.steps += 1;
        let replayed = match &self.graphs {
            Some((_, graphs)) => match graphs.get(&attend) {
                Some(graph) => {
                    graph.replay()?;
                    true
                }
                None => false,
            },
            None => false,
        };
        if replayed {
            self.stats.graph_replays += 1;
        } else {
            // Eagerly (the first step of a bucket warms it up for its capture).
            self.step(attend)?;
            self.capture(attend, false)?;
        }
        self.capture_next(attend, longest)?;
        Ok(())
    }

    /// With graphs, once the longest live row is within [`AHEAD_STEPS`] tokens of the end of
    /// bucket `attend`, captures the next bucket's step while the device runs this one
    /// ([`Graph::capture`] `ahead`): the next bucket then starts with a replay, where it would
    /// have waited for an eager step and a capture on an idle device.
    fn capture_next(&mut self, attend: i64, longest: i64) -> Result<()> {
        let Some((_, graphs)) = &self.graphs else {
            return Ok(());
        };
        match bucket_ahead(attend, longest, self.cache.capacity()) {
            Some(next) if !graphs.contains_key(&next) => self.capture(next, true),
            _ => Ok(()),
        }
    }

    /// With graphs, captures bucket `attend`'s step into its graph ([`Graph::capture`]): after
    /// the device is idle, or while it runs (`ahead`).
    fn capture(&mut self, attend: i64, ahead: bool) -> Result<()> {
        let Some((pool, _)) = &self.graphs else {
            return Ok(());
        };
        let pool = *pool;
        let device = self.model.device();
        let (graph, ()) = Graph::capture(device, &pool, ahead, || self.step(attend))?;
        if let Some((_, graphs)) = &mut self.graphs {
            graphs.insert(attend, graph);
        }
        self.stats.graphs_captured += 1;
        Ok(())
    }

    /// The step's work, from the static inputs to the static logits.
    fn step(&mut self, attend: i64) -> Result<()> {
        let tokens = self.inputs.f_narrow(1, 0, 1)?;
        let positions = self.inputs.f_narrow(1, 1, 1)?;
        let hidden = self
            .model
            .decode_slots(&tokens, &positions, &mut self.cache, attend)?;
        self.model
            .logits_into(&hidden.f_squeeze_dim(1)?, &self.logits)
    }
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
        // Each draw a step of request 3's stream.
        let keys = |step: i64| {
            let [a, b] = step_keys(request_keys(5, 4)[3], step);
            Tensor::from_slice(&[a, b]).view([1, 2])
        };
        let draw = |top_p: f64, top_k: i64, step: i64| {
            sample(&logits, 1.0, top_p, top_k, &keys(step))
                .unwrap()
                .int64_value(&[0])
        };
        assert_eq!(
            sample(&logits, 0.0, 1.0, 0, &keys(0))
                .unwrap()
                .int64_value(&[0]),
            1
        );
        // softmax ≈ [0.02, 0.46, 0.06, 0.42]: top-p 0.5 keeps tokens 1 and 3 only.
        let mut seen = [0u32; 4];
        for step in 0..400 {
            seen[draw(0.5, 0, step) as usize] += 1;
        }
        assert_eq!(seen[0] + seen[2], 0, "{seen:?}");
        assert!(seen[1] > 120 && seen[3] > 120, "{seen:?}");
        // Top-k 2 keeps the same two.
        let mut seen = [0u32; 4];
        for step in 0..400 {
            seen[draw(1.0, 2, step) as usize] += 1;
        }
        assert_eq!(seen[0] + seen[2], 0, "{seen:?}");
        assert!(seen[1] > 120 && seen[3] > 120, "{seen:?}");
        // Without top-p every token shows up, about as often as its probability says.
        let mut seen = [0u32; 4];
        for step in 0..4000 {
            seen[draw(1.0, 0, step) as usize] += 1;
        }
        let expected = [0.0198, 0.4632, 0.0537, 0.4191];
        for (token, p) in expected.iter().enumerate() {
            let frequency = f64::from(seen[token]) / 4000.0;
            assert!((frequency - p).abs() < 0.03, "{seen:?}");
        }
        // The same keys draw the same token; the draw is a function of the keys alone.
        assert_eq!(draw(1.0, 0, 7), draw(1.0, 0, 7));
    }

    #[test]
    fn bf16_logits_draw_what_their_fp32_cast_draws() {
        // The continuous batch keeps a bf16 model's logits in bf16 and `sample` casts them
        // to fp32 where it draws: every draw equals the draw from the cast logits, where
        // dividing by the temperature in bf16 would round them apart.
        tch::manual_seed(3);
        let logits = (Tensor::randn([2048, 50], (Kind::Float, tch::Device::Cpu)) * 3.0)
            .to_kind(Kind::BFloat16);
        let cast = logits.to_kind(Kind::Float);
        let keys = Tensor::randint(
            i64::from(i32::MAX),
            [2048, 2],
            (Kind::Int, tch::Device::Cpu),
        );
        for (temperature, top_p, top_k) in [(0.0, 1.0, 0), (0.7, 1.0, 0), (1.3, 0.9, 20)] {
            let ours = sample(&logits, temperature, top_p, top_k, &keys).unwrap();
            let expected = sample(&cast, temperature, top_p, top_k, &keys).unwrap();
            assert_eq!(ours, expected, "temperature {temperature}");
        }
        // Greedy takes the argmax of the bf16 values as they are.
        assert_eq!(
            sample(&logits, 0.0, 1.0, 0, &keys).unwrap(),
            logits.argmax(-1, false)
        );
    }

    #[test]
    fn device_noise_equals_the_host_reference() {
        let keys: Vec<[i32; 2]> = request_keys(9, 3)
            .into_iter()
            .enumerate()
            .map(|(request, key)| step_keys(key, request as i64 * 1000 + 17))
            .collect();
        let flat: Vec<i32> = keys.iter().flatten().copied().collect();
        let noise = gumbel(&Tensor::from_slice(&flat).view([3, 2]), 5000).unwrap();
        for (row, key) in keys.iter().enumerate() {
            for token in [0u32, 1, 2, 999, 4999] {
                let device = noise.double_value(&[row as i64, i64::from(token)]) as f32;
                let host = gumbel_reference(*key, token);
                assert!(
                    (device - host).abs() <= 1e-5 * host.abs().max(1.0),
                    "{device} {host}"
                );
            }
        }
        // Uniform bits: the mean of Gumbel noise is the Euler-Mascheroni constant.
        let mean = noise.mean(Kind::Double).double_value(&[]);
        assert!((mean - 0.5772).abs() < 0.03, "{mean}");
    }

    #[test]
    fn buckets_round_up_and_stay_few() {
        assert_eq!(attention_bucket(1, 10_000), 128);
        assert_eq!(attention_bucket(128, 10_000), 128);
        assert_eq!(attention_bucket(129, 10_000), 256);
        assert_eq!(attention_bucket(600, 10_000), 640);
        assert_eq!(attention_bucket(5000, 10_000), 5120);
        assert_eq!(attention_bucket(5000, 5100), 5100);
        let buckets: std::collections::BTreeSet<i64> = (1..=8256)
            .map(|length| attention_bucket(length, 8256))
            .collect();
        assert_eq!(buckets.len(), 21, "{buckets:?}");
        for length in 1..=8256 {
            let bucket = attention_bucket(length, 8256);
            assert!(bucket >= length, "{length}");
            assert!(
                bucket - length < (length / 4).max(128),
                "{length}: {bucket}"
            );
        }
    }

    #[test]
    fn the_next_bucket_is_captured_in_the_last_steps_of_the_current_one() {
        // Bucket 128 after a step whose longest row is 64 or 118 tokens long: not yet; from
        // 119 (8 tokens before the bucket's end), bucket 256.
        assert_eq!(bucket_ahead(128, 64, 320), None);
        assert_eq!(bucket_ahead(128, 118, 320), None);
        assert_eq!(bucket_ahead(128, 119, 320), Some(256));
        assert_eq!(bucket_ahead(128, 127, 320), Some(256));
        // The last bucket is the capacity, and nothing follows it.
        assert_eq!(bucket_ahead(256, 250, 320), Some(320));
        assert_eq!(bucket_ahead(320, 318, 320), None);
        // Every bucket up to the capacity is reached ahead by a row growing one token a step,
        // before the step that needs it.
        let capacity = 8256;
        for longest in 0..capacity - 1 {
            let attend = attention_bucket(longest + 1, capacity);
            let needed = attention_bucket(longest + 2, capacity);
            if needed != attend {
                let ahead = bucket_ahead(attend, longest, capacity);
                assert_eq!(ahead, Some(needed), "at {longest}");
            }
        }
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
