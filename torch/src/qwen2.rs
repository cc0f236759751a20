//! The Qwen2 decoder (Qwen2.5's architecture), configured by a Hugging Face `config.json`.
//!
//! One file, candle's and tch's shape: a serde [`Config`] mirroring `config.json`, and
//! [`Qwen2::new`] creating every weight under its Hugging Face name in a [`nn::Path`]
//! (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...,
//! `lm_head.weight`), so checkpoints round-trip with `transformers` unchanged. The numerics
//! follow `transformers`' `modeling_qwen2.py`: RMSNorm computed in fp32, rotary embeddings
//! (rotate-half layout) computed in fp32 and cast to the activations' dtype, grouped-query
//! attention through `scaled_dot_product_attention`, a SwiGLU MLP, and an output head tied
//! to the embeddings or not.
//!
//! What it does not do: sliding-window attention (Qwen2.5 checkpoints ship with it off),
//! rope scaling (yarn, dynamic), dropout. A config asking for them is rejected by
//! [`Config::validate`] rather than silently computed differently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::error::{Result, TorchError};
use crate::kernels::{self, Kernels};

fn default_max_position_embeddings() -> i64 {
    32768
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_hidden_act() -> String {
    "silu".into()
}

/// The fields of a Qwen2 `config.json` the model reads. Every other field is kept in
/// [`Config::extra`] and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Rows of the embedding and the output head.
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the MLP.
    pub intermediate_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key and value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: i64,
    /// Longest sequence the model was trained for (informational; rotary has no table).
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: i64,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base. `transformers` 5 writes it inside `rope_parameters` instead; see
    /// [`Config::rope_theta`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Whether `lm_head` shares the embedding matrix (Qwen2's default: no).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// The MLP activation; only `silu` is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Per-head width, when not `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// Everything else (`architectures`, `model_type`, `torch_dtype`, token ids...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Config {
    /// Per-head width.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The rotary base: `rope_theta`, else `rope_parameters.rope_theta`, else 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| {
                self.extra
                    .get("rope_parameters")
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|v| v.as_f64())
            })
            .unwrap_or(10000.0)
    }

    /// The standard deviation of the initial weights (`initializer_range`, default 0.02).
    pub fn initializer_range(&self) -> f64 {
        self.extra
            .get("initializer_range")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.02)
    }

    /// Rejects configs this implementation would compute differently from `transformers`.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim()),
        ];
        for (name, value) in positive {
            if value <= 0 {
                return Err(TorchError::Config(format!(
                    "`{name}` must be positive, is {value}"
                )));
            }
        }
        if self.head_dim() % 2 != 0 {
            return Err(TorchError::Config(format!(
                "`head_dim` must be even for rotary embeddings, is {}",
                self.head_dim()
            )));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(TorchError::Config(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if self.hidden_act != "silu" {
            return Err(TorchError::Config(format!(
                "`hidden_act` `{}` is not supported (only `silu`)",
                self.hidden_act
            )));
        }
        if self.extra.get("use_sliding_window") == Some(&serde_json::Value::Bool(true)) {
            return Err(TorchError::Config(
                "`use_sliding_window` is not supported".into(),
            ));
        }
        let rope_type = |v: &serde_json::Value| {
            v.get("rope_type")
                .or_else(|| v.get("type"))
                .and_then(|t| t.as_str())
                .map(str::to_string)
        };
        for key in ["rope_scaling", "rope_parameters"] {
            if let Some(kind) = self.extra.get(key).and_then(rope_type) {
                if kind != "default" {
                    return Err(TorchError::Config(format!(
                        "`{key}` of type `{kind}` is not supported (only `default`)"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A linear layer stored as Hugging Face stores it: `weight` is `[out, in]`.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    fn new(path: nn::Path, input: i64, output: i64, bias: bool, std: f64) -> Result<Self> {
        let weight = path.f_var(
            "weight",
            &[output, input],
            nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bias = if bias {
            Some(path.f_var("bias", &[output], nn::Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// `x W^T + b`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// Root-mean-square normalization, computed in fp32 as `transformers` does.
#[derive(Debug)]
pub struct RmsNorm {
    /// The per-channel scale, `[hidden]`.
    pub weight: Tensor,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    fn new(path: nn::Path, size: i64, eps: f64) -> Result<Self> {
        let weight = path.f_var("weight", &[size], nn::Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    /// `weight * (x / sqrt(mean(x^2) + eps))`, the normalization in fp32 and the result in
    /// `x`'s dtype.
    ///
    /// libtorch's `rms_norm` without a weight computes exactly `transformers`' fp32 upcast,
    /// mean square, `rsqrt` and cast back (on the CPU the same ops; on CUDA one fused kernel
    /// instead of seven, which matters when decoding is bound by kernel launches); the
    /// weight is applied after the cast, in `x`'s dtype, as `transformers` does.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let width = x.size().last().copied().unwrap_or(0);
        let normed = x.f_rms_norm([width], None::<&Tensor>, self.eps)?;
        Ok(self.weight.f_mul(&normed)?)
    }

    /// The same with the weight applied inside the normalization, before the cast back to
    /// `x`'s dtype: one fused kernel on CUDA where [`RmsNorm::forward`] takes two. In fp32
    /// the two are equal; in bf16 this rounds once where `transformers` rounds twice (within
    /// one bf16 step). Used by decoding (a step of a small batch is bound by kernel
    /// launches), which every sampling path shares.
    pub fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        let width = x.size().last().copied().unwrap_or(0);
        Ok(x.f_rms_norm([width], Some(&self.weight), self.eps)?)
    }

    /// The norm a layer's pass runs: peirce's kernel ([`kernels::rms_norm`]; `x` contiguous,
    /// bf16, on CUDA) when decoding with it (`kernel`), libtorch's fused form when decoding
    /// otherwise, `transformers`' form elsewhere.
    fn forward_for(&self, x: &Tensor, decoding: bool, kernel: bool) -> Result<Tensor> {
        match (decoding, kernel) {
            (_, true) => kernels::rms_norm(x, &self.weight, self.eps),
            (true, false) => self.forward_fused(x),
            (false, false) => self.forward(x),
        }
    }
}

/// Rotary position embeddings: `cos` and `sin` of shape `[batch, 1, seq, head_dim]` for the
/// given positions, in `kind`.
pub fn rotary(
    positions: &Tensor,
    head_dim: i64,
    theta: f64,
    kind: Kind,
) -> Result<(Tensor, Tensor)> {
    let inv_freq = inverse_frequencies(head_dim, theta, positions.device())?;
    let freqs = positions
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(-1)?
        .f_mul(&inv_freq)?;
    let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?.f_unsqueeze(1)?;
    Ok((emb.f_cos()?.f_to_kind(kind)?, emb.f_sin()?.f_to_kind(kind)?))
}

/// The rotary frequencies, `theta^-(2i/d)` for `i < head_dim / 2`, in fp32 as
/// `transformers` computes them: a token at position `p` rotates pair `i` by
/// `p * inv_freq[i]`.
pub fn inverse_frequencies(head_dim: i64, theta: f64, device: tch::Device) -> Result<Tensor> {
    let exponents =
        Tensor::f_arange_start_step(0, head_dim, 2, (Kind::Float, device))? / head_dim as f64;
    Ok(Tensor::f_full([1], theta, (Kind::Float, device))?
        .f_pow(&exponents)?
        .f_reciprocal()?)
}

/// `[-x2, x1]` for `x = [x1, x2]` split in halves along the last dimension.
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.f_narrow(-1, 0, half)?;
    let x2 = x.f_narrow(-1, half, half)?;
    Ok(Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?)
}

/// Applies rotary embeddings to `x` (`[batch, heads, seq, head_dim]`).
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.f_mul(cos)?.f_add(&rotate_half(x)?.f_mul(sin)?)?)
}

/// The rotary embedding of one forward pass, in one of three equal forms.
#[derive(Debug, Clone, Copy)]
enum Rotary<'a> {
    /// `cos` and `sin` per position ([`rotary`]), applied elementwise ([`apply_rotary`]).
    Pairs(&'a Tensor, &'a Tensor),
    /// One new token per row: each row's rotation as a `[rows, dim, dim]` matrix
    /// ([`rotation_matrices`]), applied to all of the row's heads by one batched matrix
    /// product. A decoding step is bound by kernel launches, and this is one kernel per layer
    /// where the elementwise form takes five.
    Matrix(&'a Tensor),
    /// One new token per row, rotated by peirce's fused kernel, which also writes the new
    /// key and value into the cache ([`kernels::rope_write`]): the rotary frequencies
    /// ([`inverse_frequencies`]; the kernel computes each row's cosines and sines, rounded
    /// as [`Rotary::Matrix`]'s entries are) and each row's position (`[rows, 1]`). Cached
    /// decoding of rows only ([`CacheWrite::Rows`]). With `attention` (its splits of the keys,
    /// [`kernels::attention_splits`]), the attention too is peirce's
    /// ([`kernels::decode_attention`]); the norms ([`kernels::rms_norm`]) and the SwiGLU
    /// activation ([`kernels::silu_mul`]) always are.
    Kernel {
        inv_freq: &'a Tensor,
        positions: &'a Tensor,
        attention: Option<i64>,
    },
}

impl Rotary<'_> {
    /// Rotates `x` (`[batch, heads, new, dim]`).
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Pairs(cos, sin) => apply_rotary(x, cos, sin),
            Self::Matrix(rotation) => {
                let size = x.size();
                let (rows, heads, dim) = (size[0], size[1], size[3]);
                Ok(x.f_reshape([rows, heads, dim])?
                    .f_bmm(rotation)?
                    .f_reshape([rows, heads, 1, dim])?)
            }
            Self::Kernel { .. } => Err(TorchError::Invalid(
                "the fused rotary kernel runs with its cache write only".into(),
            )),
        }
    }
}

/// Each row's rotary embedding as a matrix: for `positions` `[rows, 1]`, `R` `[rows, dim,
/// dim]` with `x @ R == apply_rotary(x, cos, sin)` for a row vector `x`: `R[j][j] = cos_j`,
/// and for `j < dim/2`, `R[j + dim/2][j] = -sin_j` and `R[j][j + dim/2] = sin_j`.
fn rotation_matrices(positions: &Tensor, head_dim: i64, theta: f64, kind: Kind) -> Result<Tensor> {
    let (cos, sin) = rotary(positions, head_dim, theta, Kind::Float)?;
    let rows = positions.size()[0];
    let half = head_dim / 2;
    let cos = cos.f_reshape([rows, head_dim])?;
    let sin = sin.f_reshape([rows, head_dim])?.f_narrow(1, 0, half)?;
    let rotation = cos.f_diag_embed(0, -2, -1)?;
    let sines = sin.f_diag_embed(0, -2, -1)?;
    rotation
        .f_narrow(1, half, half)?
        .f_narrow(2, 0, half)?
        .f_copy_(&sines.f_neg()?)?;
    rotation
        .f_narrow(1, 0, half)?
        .f_narrow(2, half, half)?
        .f_copy_(&sines)?;
    Ok(rotation.f_to_kind(kind)?)
}

/// How the attention of one forward pass is masked.
#[derive(Debug)]
pub enum Mask {
    /// Causal over the new tokens, nothing before them (a fresh forward without padding).
    Causal,
    /// Every new token sees every key (one new token per row over a cache without padding).
    All,
    /// An explicit mask, `[batch, 1, new, keys]`: boolean, true where attention is allowed,
    /// or an additive bias (0 or -inf) in the queries' dtype.
    Explicit(Tensor),
}

impl Mask {
    /// The mask for `new` tokens after `past` cached ones, given which keys are real
    /// (`key_mask`, `[batch, past + new]`, nonzero for real tokens; `None`: all real).
    ///
    /// Causal, real keys only; every query also sees itself, so rows of padding queries
    /// (which see no real key) stay finite instead of turning the softmax into NaN. Real
    /// queries never see padding, so padding cannot leak into real positions.
    pub fn new(
        key_mask: Option<&Tensor>,
        past: i64,
        new: i64,
        device: tch::Device,
    ) -> Result<Self> {
        let Some(key_mask) = key_mask else {
            return Ok(match (past, new) {
                (0, _) => Mask::Causal,
                (_, 1) => Mask::All,
                _ => Mask::Explicit(Self::causal(past, new, None, device)?),
            });
        };
        Ok(Mask::Explicit(Self::causal(
            past,
            new,
            Some(key_mask),
            device,
        )?))
    }

    fn causal(
        past: i64,
        new: i64,
        key_mask: Option<&Tensor>,
        device: tch::Device,
    ) -> Result<Tensor> {
        let keys = past + new;
        let query_index =
            Tensor::f_arange_start(past, keys, (Kind::Int64, device))?.f_unsqueeze(1)?;
        let key_index = Tensor::f_arange(keys, (Kind::Int64, device))?.f_unsqueeze(0)?;
        let causal = key_index.f_le_tensor(&query_index)?;
        let diagonal = key_index.f_eq_tensor(&query_index)?;
        let mask = match key_mask {
            Some(key_mask) => {
                let real = key_mask
                    .f_ne(0)?
                    .f_unsqueeze(1)?
                    .f_unsqueeze(1)?
                    .f_logical_and(&causal.f_unsqueeze(0)?.f_unsqueeze(0)?)?;
                real.f_logical_or(&diagonal.f_unsqueeze(0)?.f_unsqueeze(0)?)?
            }
            None => causal.f_unsqueeze(0)?.f_unsqueeze(0)?,
        };
        Ok(mask)
    }
}

/// Positions for left- or right-padded rows: the count of real tokens before each one
/// (`key_mask` nonzero for real tokens); padding gets position 0.
pub fn positions_from_mask(key_mask: &Tensor) -> Result<Tensor> {
    let real = key_mask.f_ne(0)?.f_to_kind(Kind::Int64)?;
    Ok(real
        .f_cumsum(1, Kind::Int64)?
        .f_sub_scalar(1)?
        .f_clamp_min(0)?)
}

/// Scaled dot-product attention of `q` (`[batch, heads, new, dim]`) over `k`, `v`
/// (`[batch, kv_heads, keys, dim]`), grouped-query when `kv_heads < heads`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Mask) -> Result<Tensor> {
    let heads = q.size()[1];
    let kv_heads = k.size()[1];
    let gqa = heads != kv_heads;
    Ok(match mask {
        Mask::Causal => {
            Tensor::f_scaled_dot_product_attention::<Tensor>(q, k, v, None, 0.0, true, None, gqa)?
        }
        Mask::All => {
            Tensor::f_scaled_dot_product_attention::<Tensor>(q, k, v, None, 0.0, false, None, gqa)?
        }
        Mask::Explicit(mask) => {
            // Masked kernels (memory-efficient, math) do not all take `enable_gqa`: repeat
            // the key/value heads instead, as transformers' `repeat_kv` does.
            let (k, v) = if gqa {
                (
                    repeat_kv(k, heads / kv_heads)?,
                    repeat_kv(v, heads / kv_heads)?,
                )
            } else {
                (k.shallow_clone(), v.shallow_clone())
            };
            Tensor::f_scaled_dot_product_attention(q, &k, &v, Some(mask), 0.0, false, None, false)?
        }
    })
}

/// Attention of one new token per row (`q`: `[rows, heads, 1, dim]`) over `k`, `v`
/// (`[rows, kv_heads, keys, dim]`) under a `[rows, 1, 1, keys]` mask, without repeating the
/// key/value heads: the `heads / kv_heads` query heads that share a key/value head are laid
/// out as that head's queries (`[rows, kv_heads, groups, dim]`), which is the same
/// arithmetic as grouped-query attention and reads each cached key and value once.
pub(crate) fn grouped_decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    let size = q.size();
    let (rows, heads, dim) = (size[0], size[1], size[3]);
    let kv_heads = k.size()[1];
    let grouped = q.f_reshape([rows, kv_heads, heads / kv_heads, dim])?;
    let y = Tensor::f_scaled_dot_product_attention(
        &grouped,
        k,
        v,
        Some(mask),
        0.0,
        false,
        None,
        false,
    )?;
    Ok(y.f_reshape([rows, heads, 1, dim])?)
}

fn repeat_kv(x: &Tensor, groups: i64) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.shallow_clone());
    }
    let size = x.size();
    let (batch, kv_heads, seq, dim) = (size[0], size[1], size[2], size[3]);
    Ok(x.f_unsqueeze(2)?
        .f_expand([batch, kv_heads, groups, seq, dim], false)?
        .f_reshape([batch, kv_heads * groups, seq, dim])?)
}

/// The key/value cache of one layer: preallocated `[batch, kv_heads, capacity, dim]`, and
/// the layer's projections concatenated for decoding.
#[derive(Debug)]
struct LayerCache {
    keys: Tensor,
    values: Tensor,
    fused: FusedLayer,
}

impl LayerCache {
    /// libtorch's attention of one new token per row (`q`: `[rows, heads, 1, dim]`) over
    /// the first `attend` cached positions of every row, under the rows' mask
    /// ([`rows_mask`]).
    fn attend_rows(&self, q: &Tensor, attend: i64, mask: &Mask) -> Result<Tensor> {
        let Mask::Explicit(mask) = mask else {
            return Err(TorchError::Invalid("decoding rows needs their mask".into()));
        };
        let keys = self.keys.f_narrow(2, 0, attend)?;
        let values = self.values.f_narrow(2, 0, attend)?;
        grouped_decode_attention(q, &keys, &values, mask)
    }
}

/// The mask of one new token per row (`positions`, `[rows, 1]`) over `attend` cached
/// positions: each row sees its positions `0..=position` only. An additive bias
/// (`[rows, 1, 1, attend]`, 0 or -inf) in `kind`, what the attention kernels take.
pub(crate) fn rows_mask(positions: &Tensor, attend: i64, kind: Kind) -> Result<Tensor> {
    let rows = positions.size()[0];
    let device = positions.device();
    let hidden = Tensor::f_arange(attend, (Kind::Int64, device))?
        .f_unsqueeze(0)?
        .f_gt_tensor(positions)?
        .f_view([rows, 1, 1, attend])?;
    Ok(Tensor::f_zeros([rows, 1, 1, attend], (kind, device))?
        .f_masked_fill(&hidden, f64::NEG_INFINITY)?)
}

/// Where a forward pass writes its new keys and values in a [`KvCache`].
#[derive(Debug, Clone, Copy)]
enum CacheWrite<'a> {
    /// After `past` cached tokens, the same for every row (attention over all of them).
    Append(i64),
    /// Right-padded prompts into the rows `slots` names (`[n]` int64), from position 0
    /// (causal attention over each prompt's own new keys only).
    Slots(&'a Tensor),
    /// One token per row, each at its own position: the `[batch, kv_heads, 1, head_dim]`
    /// index of it, and attention over the first `attend` cached positions of every row,
    /// under the mask given.
    Rows(&'a Tensor, i64),
}

/// One layer's projection weights concatenated, so a decoding step runs one matrix product
/// for q, k and v (and rotates q and k together) and one for the MLP's gate and up: half
/// the kernel launches of the separate projections, and decoding small batches is bound by
/// launches, not by arithmetic; and the down projection transposed. Copies taken when the
/// cache is created ([`transposed`]).
#[derive(Debug)]
struct FusedLayer {
    /// `[q; k; v]` weights, `[(heads + 2 kv_heads) dim, hidden]`.
    qkv_weight: Tensor,
    /// `[q; k; v]` biases, when the projections have them.
    qkv_bias: Option<Tensor>,
    /// `[gate; up]` weights, transposed: `[hidden, 2 intermediate]`, contiguous. cuBLAS picks
    /// a faster kernel for a skinny product with the weight in this layout (about 4% on an
    /// H100 at Qwen2.5-7B's shape, batch 64).
    gate_up_weight_t: Tensor,
    /// The down projection's weight transposed, `[intermediate, hidden]`, contiguous, on CUDA
    /// (where the residual is one product, [`residual`]): for the same reason (a Qwen2.5-7B
    /// step, batch 64, one H100: 6.58 against 6.65 ms).
    down_weight_t: Option<Tensor>,
}

impl FusedLayer {
    fn new(layer: &DecoderLayer) -> Result<Self> {
        let attention = &layer.self_attn;
        let projections = [&attention.q_proj, &attention.k_proj, &attention.v_proj];
        let weights: Vec<&Tensor> = projections.iter().map(|p| &p.weight).collect();
        let biases: Option<Vec<&Tensor>> = projections.iter().map(|p| p.bias.as_ref()).collect();
        tch::no_grad(|| {
            Ok(Self {
                qkv_weight: Tensor::f_cat(&weights, 0)?,
                qkv_bias: biases.map(|b| Tensor::f_cat(&b, 0)).transpose()?,
                gate_up_weight_t: transposed(&[
                    &layer.mlp.gate_proj.weight,
                    &layer.mlp.up_proj.weight,
                ])?,
                down_weight_t: if layer.mlp.down_proj.weight.device().is_cuda() {
                    Some(transposed(&[&layer.mlp.down_proj.weight])?)
                } else {
                    None
                },
            })
        })
    }

    /// The fused q/k/v projection of `x` (`[.., hidden]`): `[.., (heads + 2 kv_heads) dim]`.
    fn qkv(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.qkv_weight, self.qkv_bias.as_ref())?)
    }
}

/// `[parts[0]; parts[1]; ..]` (each `[rows_i, cols]`) transposed, `[cols, sum rows_i]`,
/// contiguous: the decoder's weight copies. Each part is written transposed into its columns
/// by peirce's tiled kernel ([`kernels::transpose_into`]) where it runs (bf16 on CUDA, even
/// widths: the copy of `[gate; up]` is most of a model's weights, and libtorch's strided copy
/// is slow at it), by libtorch's concatenation and copy elsewhere: the same values either
/// way.
pub(crate) fn transposed(parts: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = parts.first() else {
        return Err(TorchError::Invalid("nothing to transpose".into()));
    };
    let cols = first.size().get(1).copied().unwrap_or(0);
    if first.device().is_cuda()
        && cols % 2 == 0
        && parts
            .iter()
            .all(|p| p.dim() == 2 && p.size()[1] == cols && p.size()[0] % 2 == 0)
        && kernels::prepare(first, 0).is_ok()
    {
        let rows: i64 = parts.iter().map(|p| p.size()[0]).sum();
        let out = Tensor::f_empty([cols, rows], (first.kind(), first.device()))?;
        let mut offset = 0;
        for part in parts {
            let part_rows = part.size()[0];
            kernels::transpose_into(&part.f_contiguous()?, &out.f_narrow(1, offset, part_rows)?)?;
            offset += part_rows;
        }
        return Ok(out);
    }
    Ok(Tensor::f_cat(parts, 0)?.f_transpose(0, 1)?.f_contiguous()?)
}

/// Keys and values of every layer for incremental decoding.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: i64,
    capacity: i64,
    /// Which kernels [`Qwen2::decode_slots`] runs on this cache.
    kernels: Kernels,
    /// The rotary frequencies ([`inverse_frequencies`]) peirce's rotary kernel reads.
    inv_freq: Tensor,
    /// The model's query heads.
    heads: i64,
    /// The device's SMs, read once where peirce's attention runs (its splits,
    /// [`kernels::attention_splits`]); 0 otherwise.
    multiprocessors: i64,
}

impl KvCache {
    /// An empty cache for `batch` rows of up to `capacity` tokens, in the model's dtype and
    /// on its device.
    ///
    /// It also holds a copy of each layer's projections, concatenated for decoding (about
    /// two thirds of the decoder layers' weights): create it after the weights last
    /// changed, and drop it when the generation is done.
    pub fn new(model: &Qwen2, batch: i64, capacity: i64) -> Result<Self> {
        let cfg = &model.config;
        let shape = [batch, cfg.num_key_value_heads, capacity, cfg.head_dim()];
        let options = (model.kind(), model.device());
        let layers = model
            .layers
            .iter()
            .map(|layer| {
                Ok(LayerCache {
                    keys: Tensor::f_zeros(shape, options)?,
                    values: Tensor::f_zeros(shape, options)?,
                    fused: FusedLayer::new(layer)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity,
            kernels: Kernels::Libtorch,
            inv_freq: inverse_frequencies(cfg.head_dim(), model.theta, model.device())?,
            heads: cfg.num_attention_heads,
            multiprocessors: 0,
        })
    }

    /// Which kernels [`Qwen2::decode_slots`] runs on this cache ([`crate::kernels`]):
    /// libtorch's by default; peirce's where they can run (a CUDA device, bf16, a
    /// build with them). The error says why they cannot, leaving libtorch's. With peirce's,
    /// the prefill's SwiGLU is peirce's kernel too (equal to libtorch's ops, one pass).
    pub fn use_kernels(&mut self, choice: Kernels) -> Result<()> {
        self.kernels = Kernels::Libtorch;
        let chosen = self.kernels_for(choice)?;
        self.multiprocessors = match (chosen, self.layers.first()) {
            (Kernels::All, Some(layer)) => kernels::multiprocessors(&layer.keys)?,
            _ => 0,
        };
        self.kernels = chosen;
        Ok(())
    }

    /// The kernels [`KvCache::use_kernels`] settles on for `choice`, or why peirce's cannot
    /// run.
    fn kernels_for(&self, choice: Kernels) -> Result<Kernels> {
        let Some(layer) = self.layers.first() else {
            return Ok(Kernels::Libtorch);
        };
        if choice == Kernels::Libtorch {
            return Ok(choice);
        }
        let size = layer.keys.size();
        let (kv_heads, head_dim) = (size[1], size[3]);
        let gate_up = layer.fused.gate_up_weight_t.size();
        let (hidden, intermediate) = (gate_up[0], gate_up[1] / 2);
        if !kernels::widths_fit(hidden, intermediate) {
            return Err(TorchError::Invalid(format!(
                "peirce kernels take widths in multiples of 8 (a norm's at most 8192), not \
                 hidden {hidden} and intermediate {intermediate}"
            )));
        }
        let groups = self.heads / kv_heads.max(1);
        // The attention kernel where it is the faster; the fused ones everywhere.
        let capability = kernels::compute_capability(&layer.keys)?;
        let choice = match choice {
            Kernels::All if !kernels::attention_chosen(head_dim, groups, capability) => {
                Kernels::Fused
            }
            other => other,
        };
        let attention = if choice == Kernels::All { head_dim } else { 0 };
        kernels::prepare(&layer.keys, attention)?;
        Ok(choice)
    }

    /// The kernels decoding steps on this cache run.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Tokens cached so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most tokens the cache holds.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Rows (sequences) the cache holds.
    pub fn rows(&self) -> i64 {
        self.layers.first().map_or(0, |layer| layer.keys.size()[0])
    }
}

/// Self-attention with biased q/k/v projections and an unbiased output projection.
#[derive(Debug)]
pub struct SelfAttention {
    /// `q_proj`.
    pub q_proj: Linear,
    /// `k_proj`.
    pub k_proj: Linear,
    /// `v_proj`.
    pub v_proj: Linear,
    /// `o_proj`.
    pub o_proj: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl SelfAttention {
    fn new(path: nn::Path, cfg: &Config) -> Result<Self> {
        let (hidden, head_dim) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let std = cfg.initializer_range();
        Ok(Self {
            q_proj: Linear::new(&path / "q_proj", hidden, heads * head_dim, true, std)?,
            k_proj: Linear::new(&path / "k_proj", hidden, kv_heads * head_dim, true, std)?,
            v_proj: Linear::new(&path / "v_proj", hidden, kv_heads * head_dim, true, std)?,
            o_proj: Linear::new(&path / "o_proj", heads * head_dim, hidden, false, std)?,
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// The attention's output before `o_proj`, `[batch, new, heads * head_dim]`.
    fn attend(
        &self,
        x: &Tensor,
        rotary: Rotary<'_>,
        mask: &Mask,
        cache: Option<(&mut LayerCache, CacheWrite<'_>)>,
    ) -> Result<Tensor> {
        let size = x.size();
        let (batch, new) = (size[0], size[1]);
        let split = |t: Tensor, heads: i64| -> Result<Tensor> {
            Ok(t.f_view([batch, new, heads, self.head_dim])?
                .f_transpose(1, 2)?)
        };
        // `[batch, heads, new, dim]` to `[batch, new, heads * dim]`.
        let merge = |y: Tensor| -> Result<Tensor> {
            Ok(y.f_transpose(1, 2)?
                .f_reshape([batch, new, self.heads * self.head_dim])?)
        };
        if let (
            Some((cache, CacheWrite::Rows(_, attend))),
            Rotary::Kernel {
                inv_freq,
                positions,
                attention,
            },
        ) = (&cache, rotary)
        {
            // One kernel rotates q and k, writes k and v at each row's position and lays q
            // out for attention.
            let qkv = cache.fused.qkv(x)?;
            let q = kernels::rope_write(
                &qkv,
                inv_freq,
                positions,
                &cache.keys,
                &cache.values,
                self.heads,
                self.kv_heads,
            )?;
            if let Some(splits) = attention {
                return Ok(kernels::decode_attention(
                    &q,
                    &cache.keys,
                    &cache.values,
                    positions,
                    splits,
                )?
                .f_view([batch, new, self.heads * self.head_dim])?);
            }
            let q = q.f_view([batch, self.heads, 1, self.head_dim])?;
            return merge(cache.attend_rows(&q, *attend, mask)?);
        }
        let (q, k, v) = match &cache {
            Some((cache, _)) => {
                // One product for q, k and v, one rotation for q and k together.
                let qkv = split(cache.fused.qkv(x)?, self.heads + 2 * self.kv_heads)?;
                let qk = rotary.apply(&qkv.f_narrow(1, 0, self.heads + self.kv_heads)?)?;
                (
                    qk.f_narrow(1, 0, self.heads)?,
                    qk.f_narrow(1, self.heads, self.kv_heads)?,
                    qkv.f_narrow(1, self.heads + self.kv_heads, self.kv_heads)?,
                )
            }
            None => {
                let q = split(self.q_proj.forward(x)?, self.heads)?;
                let k = split(self.k_proj.forward(x)?, self.kv_heads)?;
                let v = split(self.v_proj.forward(x)?, self.kv_heads)?;
                (rotary.apply(&q)?, rotary.apply(&k)?, v)
            }
        };
        let y = match cache {
            Some((cache, CacheWrite::Append(past))) => {
                cache.keys.f_narrow(2, past, new)?.f_copy_(&k)?;
                cache.values.f_narrow(2, past, new)?.f_copy_(&v)?;
                let keys = cache.keys.f_narrow(2, 0, past + new)?;
                let values = cache.values.f_narrow(2, 0, past + new)?;
                attention(&q, &keys, &values, mask)?
            }
            Some((cache, CacheWrite::Slots(slots))) => {
                let _ = cache
                    .keys
                    .f_narrow(2, 0, new)?
                    .f_index_copy_(0, slots, &k)?;
                let _ = cache
                    .values
                    .f_narrow(2, 0, new)?
                    .f_index_copy_(0, slots, &v)?;
                attention(&q, &k, &v, mask)?
            }
            Some((cache, CacheWrite::Rows(index, attend))) => {
                let _ = cache.keys.f_scatter_(2, index, &k)?;
                let _ = cache.values.f_scatter_(2, index, &v)?;
                cache.attend_rows(&q, attend, mask)?
            }
            None => attention(&q, &k, &v, mask)?,
        };
        merge(y)
    }
}

/// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub struct Mlp {
    /// `gate_proj`.
    pub gate_proj: Linear,
    /// `up_proj`.
    pub up_proj: Linear,
    /// `down_proj`.
    pub down_proj: Linear,
}

impl Mlp {
    fn new(path: nn::Path, cfg: &Config) -> Result<Self> {
        let (hidden, inner, std) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.initializer_range(),
        );
        Ok(Self {
            gate_proj: Linear::new(&path / "gate_proj", hidden, inner, false, std)?,
            up_proj: Linear::new(&path / "up_proj", hidden, inner, false, std)?,
            down_proj: Linear::new(&path / "down_proj", inner, hidden, false, std)?,
        })
    }

    /// `down(silu(gate(x)) * up(x))`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.f_silu()?;
        self.down_proj
            .forward(&gate.f_mul(&self.up_proj.forward(x)?)?)
    }

    /// `silu(gate(x)) * up(x)`, the input of `down_proj`, with `[gate; up]` concatenated and
    /// transposed (`[hidden, 2 intermediate]`): one product instead of two; with `kernel`,
    /// the activation and product in one kernel ([`kernels::silu_mul`]).
    fn gated_fused(x: &Tensor, gate_up_weight_t: &Tensor, kernel: bool) -> Result<Tensor> {
        let gate_up = x.f_matmul(gate_up_weight_t)?;
        if kernel {
            return kernels::silu_mul(&gate_up);
        }
        swiglu(&gate_up)
    }
}

/// `silu(gate) * up` for `gate_up` (`[..., 2 inner]`, `[gate | up]` in the last dimension) by
/// libtorch's ops: what [`kernels::silu_mul`] computes in one kernel.
pub(crate) fn swiglu(gate_up: &Tensor) -> Result<Tensor> {
    let inner = gate_up.size().last().copied().unwrap_or(0) / 2;
    let gate = gate_up.f_narrow(-1, 0, inner)?.f_silu()?;
    Ok(gate.f_mul(&gate_up.f_narrow(-1, inner, inner)?)?)
}

/// `x + linear(y)`. Decoding on CUDA (`fused`, no autograd, no bias): one matrix product
/// that accumulates into `x` in place (cuBLAS's `C = A B + C`), instead of a product and an
/// add: one kernel fewer per residual, and decoding a small batch is bound by kernel launches.
/// The sum is rounded once instead of twice. `x` is the layer's own activation, which its
/// caller replaces with the result.
/// `weight_t`: `linear`'s weight transposed and contiguous, where the caller has it (cuBLAS
/// picks a faster kernel for a skinny product with the weight in that layout).
fn residual(
    x: &Tensor,
    y: &Tensor,
    linear: &Linear,
    weight_t: Option<&Tensor>,
    fused: bool,
) -> Result<Tensor> {
    let width = x.size().last().copied().unwrap_or(0);
    if fused
        && x.device().is_cuda()
        && linear.bias.is_none()
        && !x.requires_grad()
        && x.is_contiguous()
    {
        let inner = y.size().last().copied().unwrap_or(0);
        let mut rows = x.f_view([-1, width])?;
        let transposed_view;
        let weight_t = match weight_t {
            Some(weight_t) => weight_t,
            None => {
                transposed_view = linear.weight.f_transpose(0, 1)?;
                &transposed_view
            }
        };
        let _ = rows.f_addmm_(&y.f_reshape([-1, inner])?, weight_t)?;
        return Ok(x.shallow_clone());
    }
    Ok(x.f_add(&linear.forward(y)?)?)
}

/// One pre-norm decoder layer.
#[derive(Debug)]
pub struct DecoderLayer {
    /// `self_attn`.
    pub self_attn: SelfAttention,
    /// `mlp`.
    pub mlp: Mlp,
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    /// The layer's output for `x` (its input), appending to `cache` when given, with
    /// whether the cache runs peirce's kernels ([`KvCache::use_kernels`]): then SwiGLU is
    /// peirce's kernel on every pass, prefill included (it equals libtorch's ops exactly).
    fn forward(
        &self,
        x: &Tensor,
        rotation: Rotary<'_>,
        mask: &Mask,
        mut cache: Option<(&mut LayerCache, CacheWrite<'_>, bool)>,
    ) -> Result<Tensor> {
        let decoding = cache.is_some();
        let kernels = matches!(rotation, Rotary::Kernel { .. });
        let normed = self.input_layernorm.forward_for(x, decoding, kernels)?;
        let attended = self.self_attn.attend(
            &normed,
            rotation,
            mask,
            cache.as_mut().map(|(c, p, _)| (&mut **c, *p)),
        )?;
        let x = residual(x, &attended, &self.self_attn.o_proj, None, decoding)?;
        let normed = self
            .post_attention_layernorm
            .forward_for(&x, decoding, kernels)?;
        match &cache {
            Some((cache, _, peirce)) => {
                let fused = &cache.fused;
                let gated = Mlp::gated_fused(&normed, &fused.gate_up_weight_t, *peirce)?;
                residual(
                    &x,
                    &gated,
                    &self.mlp.down_proj,
                    fused.down_weight_t.as_ref(),
                    true,
                )
            }
            None => Ok(x.f_add(&self.mlp.forward(&normed)?)?),
        }
    }

    fn new(path: nn::Path, cfg: &Config) -> Result<Self> {
        Ok(Self {
            self_attn: SelfAttention::new(&path / "self_attn", cfg)?,
            mlp: Mlp::new(&path / "mlp", cfg)?,
            input_layernorm: RmsNorm::new(
                &path / "input_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            post_attention_layernorm: RmsNorm::new(
                &path / "post_attention_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
        })
    }
}

/// The Qwen2 causal language model.
#[derive(Debug)]
pub struct Qwen2 {
    /// The configuration it was built from.
    pub config: Config,
    /// `model.embed_tokens.weight`, `[vocab, hidden]`.
    pub embed_tokens: Tensor,
    /// `model.layers.N`.
    pub layers: Vec<DecoderLayer>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head.weight`, or the embedding matrix itself when tied.
    pub lm_head: Tensor,
    theta: f64,
}

impl Qwen2 {
    /// Creates every weight (randomly initialized as `transformers` does: normal with
    /// `initializer_range`, zero biases, unit norms) under its Hugging Face name in `path`.
    pub fn new(cfg: &Config, path: &nn::Path) -> Result<Self> {
        cfg.validate()?;
        let std = cfg.initializer_range();
        let model = path / "model";
        let embed_tokens = (&model / "embed_tokens").f_var(
            "weight",
            &[cfg.vocab_size, cfg.hidden_size],
            nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|index| DecoderLayer::new(&model / "layers" / index, cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&model / "norm", cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = if cfg.tie_word_embeddings {
            embed_tokens.shallow_clone()
        } else {
            (path / "lm_head").f_var(
                "weight",
                &[cfg.vocab_size, cfg.hidden_size],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            )?
        };
        Ok(Self {
            config: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            theta: cfg.rope_theta(),
        })
    }

    /// The weights' dtype.
    pub fn kind(&self) -> Kind {
        self.embed_tokens.kind()
    }

    /// The weights' device.
    pub fn device(&self) -> tch::Device {
        self.embed_tokens.device()
    }

    /// The final hidden states (after `model.norm`), `[batch, new, hidden]`, for
    /// `input_ids` (`[batch, new]`) at `positions` (`[batch, new]`).
    ///
    /// `key_mask` (`[batch, past + new]`, nonzero for real tokens) marks padding; `None`
    /// means no padding. With a `cache`, the new keys and values are appended to it and
    /// attention covers everything cached.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let size = input_ids.size();
        if size.len() != 2 || positions.size() != size {
            return Err(TorchError::Invalid(format!(
                "`input_ids` {size:?} and `positions` {:?} must both be [batch, seq]",
                positions.size()
            )));
        }
        let new = size[1];
        let past = cache.as_ref().map_or(0, |c| c.len);
        if let Some(cache) = &cache {
            if past + new > cache.capacity {
                return Err(TorchError::Invalid(format!(
                    "KV cache holds {} tokens; {past} cached plus {new} new do not fit",
                    cache.capacity
                )));
            }
        }
        if let Some(key_mask) = key_mask {
            if key_mask.size() != [size[0], past + new] {
                return Err(TorchError::Invalid(format!(
                    "`key_mask` is {:?}, expected [{}, {}]",
                    key_mask.size(),
                    size[0],
                    past + new
                )));
            }
        }
        let mask = Mask::new(key_mask, past, new, self.device())?;
        let (cos, sin) = rotary(positions, self.config.head_dim(), self.theta, self.kind())?;
        let mut x = Tensor::f_embedding(&self.embed_tokens, input_ids, -1, false, false)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let layer_cache = match cache.as_deref_mut() {
                Some(cache) => {
                    let peirce = cache.kernels != Kernels::Libtorch;
                    Some((&mut cache.layers[index], CacheWrite::Append(past), peirce))
                }
                None => None,
            };
            x = layer.forward(&x, Rotary::Pairs(&cos, &sin), &mask, layer_cache)?;
        }
        match cache {
            Some(cache) => {
                cache.len += new;
                self.norm.forward_fused(&x)
            }
            None => self.norm.forward(&x),
        }
    }

    /// Continuous batching, prefill: runs `prompts` (`[n, len]`, right-padded) and writes
    /// their keys and values into the rows `slots` (`[n]` int64, distinct) of `cache` at
    /// positions `0..len`, whatever those rows held before. Padding's keys and values land
    /// past each prompt's end, where decoding overwrites them before any query can see them
    /// (a row attends to its positions up to its own). Returns the final hidden states,
    /// `[n, len, hidden]`.
    pub fn prefill_slots(
        &self,
        prompts: &Tensor,
        slots: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let size = prompts.size();
        let (rows, new) = (size[0], size[1]);
        if new > cache.capacity || slots.size() != [rows] {
            return Err(TorchError::Invalid(format!(
                "prompts {size:?} into slots {:?} of a cache of {} rows of {} tokens",
                slots.size(),
                cache.rows(),
                cache.capacity
            )));
        }
        let positions = Tensor::f_arange(new, (Kind::Int64, self.device()))?
            .f_unsqueeze(0)?
            .f_expand([rows, new], false)?;
        let (cos, sin) = rotary(&positions, self.config.head_dim(), self.theta, self.kind())?;
        let mut x = Tensor::f_embedding(&self.embed_tokens, prompts, -1, false, false)?;
        let peirce = cache.kernels != Kernels::Libtorch;
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let write = Some((layer_cache, CacheWrite::Slots(slots), peirce));
            x = layer.forward(&x, Rotary::Pairs(&cos, &sin), &Mask::Causal, write)?;
        }
        self.norm.forward_fused(&x)
    }

    /// Continuous batching, decode: one new token per row of `cache` (`tokens`, `[rows, 1]`),
    /// each at its own position (`positions`, `[rows, 1]`: the row's length so far), written
    /// there; each row attends to its own positions `0..=position` only, so rows at any point
    /// of their request share the step. Attention reads the first `attend` positions of
    /// every row (at least the longest row's `position + 1`, at most the capacity). Nothing
    /// here waits for the device, so the step can be captured as a CUDA graph. Returns
    /// `[rows, 1, hidden]`.
    pub fn decode_slots(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
        attend: i64,
    ) -> Result<Tensor> {
        if attend < 1 || attend > cache.capacity {
            return Err(TorchError::Invalid(format!(
                "attending over {attend} positions of a cache of {}",
                cache.capacity
            )));
        }
        let rows = tokens.size()[0];
        // Once per step, not per layer: the mask (which peirce's attention kernel, reading
        // each row's own positions, does without), the rotations and the attention's splits.
        let mask = if cache.kernels == Kernels::All {
            Mask::All
        } else {
            Mask::Explicit(rows_mask(positions, attend, self.kind())?)
        };
        let cfg = &self.config;
        let index = positions
            .f_view([rows, 1, 1, 1])?
            .f_expand([rows, cfg.num_key_value_heads, 1, cfg.head_dim()], false)?;
        let rotation;
        let peirce = cache.kernels != Kernels::Libtorch;
        let rotary = if peirce {
            Rotary::Kernel {
                inv_freq: &cache.inv_freq,
                positions,
                attention: match cache.kernels {
                    Kernels::All => Some(kernels::attention_splits(
                        rows,
                        cfg.num_key_value_heads,
                        attend,
                        cache.multiprocessors,
                    )),
                    _ => None,
                },
            }
        } else {
            rotation = rotation_matrices(positions, cfg.head_dim(), self.theta, self.kind())?;
            Rotary::Matrix(&rotation)
        };
        let mut x = Tensor::f_embedding(&self.embed_tokens, tokens, -1, false, false)?;
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let write = Some((layer_cache, CacheWrite::Rows(&index, attend), peirce));
            x = layer.forward(&x, rotary, &mask, write)?;
        }
        self.norm.forward_for(&x, true, peirce)
    }

    /// [`Qwen2::forward`] for training with activation checkpointing: the layers run without
    /// building a graph, keeping only each layer's input; the returned hidden states carry a
    /// graph through `model.norm` only. After `backward` of a loss computed from them, call
    /// [`Checkpoints::backward`], which recomputes each layer from its saved input (last
    /// first) and back-propagates through it: the same gradients, with one layer's
    /// activations alive at a time instead of all of them (one extra forward of the layers).
    /// Right-padded rows only (no key mask, no cache), as training uses.
    pub fn forward_checkpointed(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
    ) -> Result<(Tensor, Checkpoints<'_>)> {
        let size = input_ids.size();
        if size.len() != 2 || positions.size() != size {
            return Err(TorchError::Invalid(format!(
                "`input_ids` {size:?} and `positions` {:?} must both be [batch, seq]",
                positions.size()
            )));
        }
        let mask = Mask::new(None, 0, size[1], self.device())?;
        let (cos, sin) = rotary(positions, self.config.head_dim(), self.theta, self.kind())?;
        let mut inputs = Vec::with_capacity(self.layers.len());
        let last = tch::no_grad(|| -> Result<Tensor> {
            let mut x = Tensor::f_embedding(&self.embed_tokens, input_ids, -1, false, false)?;
            for layer in &self.layers {
                let next = layer.forward(&x, Rotary::Pairs(&cos, &sin), &mask, None)?;
                inputs.push(x);
                x = next;
            }
            Ok(x)
        })?;
        let last = last.f_detach()?.f_requires_grad_(true)?;
        let hidden = self.norm.forward(&last)?;
        Ok((
            hidden,
            Checkpoints {
                model: self,
                input_ids: input_ids.shallow_clone(),
                inputs,
                last,
                cos,
                sin,
                mask,
            },
        ))
    }

    /// Logits over the vocabulary for hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.f_linear::<Tensor>(&self.lm_head, None)?)
    }

    /// [`Qwen2::logits`] written into `out` (`[rows, vocab]`, the model's dtype) by the
    /// matrix product itself, for a decoding step's static output buffer.
    pub fn logits_into(&self, hidden: &Tensor, out: &Tensor) -> Result<()> {
        let _ = hidden.f_mm_out(out, &self.lm_head.f_tr()?)?;
        Ok(())
    }
}

/// What [`Qwen2::forward_checkpointed`] kept: each layer's input, and the last layer's output
/// as the leaf the loss's gradient arrives at.
#[derive(Debug)]
pub struct Checkpoints<'a> {
    model: &'a Qwen2,
    input_ids: Tensor,
    inputs: Vec<Tensor>,
    last: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Mask,
}

impl Checkpoints<'_> {
    /// Back-propagates the gradient that reached the last layer's output through every layer
    /// (recomputed) and the embedding, accumulating into the weights' gradients. The
    /// gradient of a recomputed layer's inputs and weights is that of
    /// `sum(output * upstream_gradient)`. Call once, after `backward` of the loss.
    pub fn backward(self) -> Result<()> {
        let mut upstream = self.last.grad();
        if !upstream.defined() {
            return Err(TorchError::Invalid(
                "no gradient reached the checkpointed layers: call `backward` on the loss first"
                    .into(),
            ));
        }
        for (layer, input) in self.model.layers.iter().zip(&self.inputs).rev() {
            let input = input.f_detach()?.f_requires_grad_(true)?;
            let output = layer.forward(
                &input,
                Rotary::Pairs(&self.cos, &self.sin),
                &self.mask,
                None,
            )?;
            output
                .f_mul(&upstream)?
                .f_sum(output.kind())?
                .f_backward()?;
            upstream = input.grad();
        }
        let embedded =
            Tensor::f_embedding(&self.model.embed_tokens, &self.input_ids, -1, false, false)?;
        if embedded.requires_grad() {
            embedded
                .f_mul(&upstream)?
                .f_sum(embedded.kind())?
                .f_backward()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        let t = t.to_kind(Kind::Double).flatten(0, -1);
        Vec::<f64>::try_from(&t).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tolerance: f64) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tolerance, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn weights_are_concatenated_then_transposed() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let b = Tensor::from_slice(&[7.0f32, 8.0, 9.0]).view([1, 3]);
        let t = transposed(&[&a, &b]).unwrap();
        assert_eq!(t.size(), [3, 3]);
        assert!(t.is_contiguous());
        let values = Vec::<f32>::try_from(t.view([-1])).unwrap();
        assert_eq!(values, [1.0, 4.0, 7.0, 2.0, 5.0, 8.0, 3.0, 6.0, 9.0]);
        assert!(transposed(&[]).is_err());
    }

    #[test]
    fn a_cache_that_cannot_run_peirces_kernels_keeps_libtorchs_everywhere() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Qwen2::new(&crate::bench::tiny(), &vs.root()).unwrap();
        let mut cache = KvCache::new(&model, 2, 8).unwrap();
        for choice in [Kernels::All, Kernels::Fused] {
            let error = cache.use_kernels(choice).unwrap_err().to_string();
            assert!(error.contains("CUDA") || error.contains("cuda"), "{error}");
            assert_eq!(cache.kernels(), Kernels::Libtorch);
        }
        cache.use_kernels(Kernels::Libtorch).unwrap();
        assert_eq!(cache.kernels(), Kernels::Libtorch);
    }

    #[test]
    fn rms_norm_matches_hand_computation() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let norm = RmsNorm::new(vs.root() / "n", 2, 0.0).unwrap();
        tch::no_grad(|| {
            norm.weight
                .shallow_clone()
                .copy_(&Tensor::from_slice(&[1.0f32, 2.0]))
        });
        // mean square of [3, 4] is 12.5, so x / sqrt(12.5) = [0.84853, 1.13137]; times [1, 2].
        let y = norm.forward(&Tensor::from_slice(&[3.0f32, 4.0])).unwrap();
        close(&values(&y), &[0.848_528, 2.262_742], 1e-5);
    }

    #[test]
    fn rotary_rotates_pairs_by_position_times_frequency() {
        // head_dim 4, theta 100: frequencies 1 and 100^(-1/2) = 0.1. Position 2 rotates the
        // first pair (x0, x2) by 2 radians and the second pair (x1, x3) by 0.2.
        let positions = Tensor::from_slice(&[2i64]).view([1, 1]);
        let (cos, sin) = rotary(&positions, 4, 100.0, Kind::Float).unwrap();
        let x = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).view([1, 1, 1, 4]);
        let y = apply_rotary(&x, &cos, &sin).unwrap();
        let (c2, s2, c02, s02) = (2f64.cos(), 2f64.sin(), 0.2f64.cos(), 0.2f64.sin());
        close(&values(&y), &[c2, c02, s2, s02], 1e-6);
        // Position 0 is the identity.
        let (cos, sin) = rotary(&positions.zeros_like(), 4, 100.0, Kind::Float).unwrap();
        let x = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 3.0]).view([1, 1, 1, 4]);
        close(
            &values(&apply_rotary(&x, &cos, &sin).unwrap()),
            &[0.5, -1.0, 2.0, 3.0],
            1e-7,
        );
    }

    #[test]
    fn rotation_matrices_rotate_as_the_pairs_do() {
        // Three rows at different positions, 5 heads of dim 8, one new token each.
        let positions = Tensor::from_slice(&[0i64, 7, 300]).view([3, 1]);
        let x = Tensor::randn([3, 5, 1, 8], (Kind::Float, tch::Device::Cpu));
        let (cos, sin) = rotary(&positions, 8, 1e4, Kind::Float).unwrap();
        let pairs = Rotary::Pairs(&cos, &sin).apply(&x).unwrap();
        let matrices = rotation_matrices(&positions, 8, 1e4, Kind::Float).unwrap();
        let matrix = Rotary::Matrix(&matrices).apply(&x).unwrap();
        let difference = (&pairs - &matrix).abs().max().double_value(&[]);
        assert!(difference < 1e-6, "{difference}");
        // Position 0's matrix is the identity.
        let identity = Tensor::eye(8, (Kind::Float, tch::Device::Cpu));
        assert!(matrices.get(0).allclose(&identity, 0.0, 1e-7, false));
    }

    #[test]
    fn causal_attention_matches_hand_computation() {
        // One head, dim 1: q = [1, 1], k = [0, ln 3], v = [0, 4]. Row 0 sees only key 0
        // (output 0); row 1 weighs the keys by softmax([0, ln 3]) = [1/4, 3/4]: output 3.
        let q = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 1, 2, 1]);
        let k = Tensor::from_slice(&[0.0f32, 3f32.ln()]).view([1, 1, 2, 1]);
        let v = Tensor::from_slice(&[0.0f32, 4.0]).view([1, 1, 2, 1]);
        let y = attention(&q, &k, &v, &Mask::Causal).unwrap();
        close(&values(&y), &[0.0, 3.0], 1e-6);
        // The explicit mask gives the same, and padding key 0 leaves row 1 with key 1 only.
        let explicit = Mask::new(
            Some(&Tensor::from_slice(&[1i64, 1]).view([1, 2])),
            0,
            2,
            tch::Device::Cpu,
        )
        .unwrap();
        close(
            &values(&attention(&q, &k, &v, &explicit).unwrap()),
            &[0.0, 3.0],
            1e-6,
        );
        let padded = Mask::new(
            Some(&Tensor::from_slice(&[0i64, 1]).view([1, 2])),
            0,
            2,
            tch::Device::Cpu,
        )
        .unwrap();
        close(
            &values(&attention(&q, &k, &v, &padded).unwrap()),
            &[0.0, 4.0],
            1e-6,
        );
    }

    #[test]
    fn grouped_query_attention_shares_kv_heads() {
        // Two query heads over one kv head equal two single-head attentions on that kv head.
        tch::manual_seed(0);
        let q = Tensor::randn([1, 2, 3, 4], (Kind::Float, tch::Device::Cpu));
        let k = Tensor::randn([1, 1, 3, 4], (Kind::Float, tch::Device::Cpu));
        let v = Tensor::randn([1, 1, 3, 4], (Kind::Float, tch::Device::Cpu));
        let key_mask = Tensor::ones([1, 3], (Kind::Int64, tch::Device::Cpu));
        for mask in [
            Mask::Causal,
            Mask::new(Some(&key_mask), 0, 3, tch::Device::Cpu).unwrap(),
        ] {
            let grouped = attention(&q, &k, &v, &mask).unwrap();
            for head in 0..2 {
                let single = attention(&q.narrow(1, head, 1), &k, &v, &Mask::Causal).unwrap();
                close(&values(&grouped.narrow(1, head, 1)), &values(&single), 1e-6);
            }
        }
    }

    #[test]
    fn swiglu_matches_hand_computation() {
        let cfg: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 4, "hidden_size": 1, "intermediate_size": 1,
            "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1,
            "head_dim": 2
        }))
        .unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mlp = Mlp::new(vs.root() / "mlp", &cfg).unwrap();
        tch::no_grad(|| {
            let _ = mlp.gate_proj.weight.shallow_clone().fill_(1.0);
            let _ = mlp.up_proj.weight.shallow_clone().fill_(2.0);
            let _ = mlp.down_proj.weight.shallow_clone().fill_(3.0);
        });
        // silu(1) = 1 / (1 + e^-1) = 0.731059; times up (2) times down (3).
        let y = mlp
            .forward(&Tensor::from_slice(&[1.0f32]).view([1, 1]))
            .unwrap();
        close(&values(&y), &[0.731_058_6 * 6.0], 1e-5);
    }

    #[test]
    fn positions_count_real_tokens() {
        let mask = Tensor::from_slice(&[0i64, 0, 1, 1, 1, 1, 1, 0]).view([2, 4]);
        let positions = positions_from_mask(&mask).unwrap();
        assert_eq!(
            Vec::<i64>::try_from(&positions.flatten(0, -1)).unwrap(),
            [0, 0, 0, 1, 0, 1, 2, 2]
        );
    }

    #[test]
    fn config_reads_rope_theta_from_either_place_and_rejects_what_it_cannot_compute() {
        let base = serde_json::json!({
            "vocab_size": 8, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        });
        let mut v5 = base.clone();
        v5["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e6});
        let cfg: Config = serde_json::from_value(v5).unwrap();
        assert_eq!(cfg.rope_theta(), 1e6);
        cfg.validate().unwrap();
        let mut yarn = base.clone();
        yarn["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0});
        let cfg: Config = serde_json::from_value(yarn).unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("yarn"));
        let mut heads = base;
        heads["num_key_value_heads"] = serde_json::json!(3);
        let cfg: Config = serde_json::from_value(heads).unwrap();
        assert!(cfg.validate().is_err());
    }
}
