//! Model trees: complete Hugging Face model folders (`config.json`, weights,
//! `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`), loaded into a
//! [`Model`] and saved back, and the tiny-model builder for tests and the CPU workflow.
//!
//! A folder peirce writes loads in `transformers` (`AutoModelForCausalLM`,
//! `AutoTokenizer`) and in any tool that reads Qwen2 checkpoints; a Qwen2 folder from
//! elsewhere loads here.

use std::collections::BTreeMap;
use std::path::Path;

use peirce_protocol::hf::Dtype;
use peirce_protocol::params::ModelParams;
use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

use crate::checkpoint;
use crate::error::{io, read_json, write_json, Result, TorchError};
use crate::qwen2::{Config, Qwen2};
use crate::tokenizer::{self, TinyTokenizerBuilder, Tokenizer, END_OF_TEXT, IM_END, IM_START};

pub use peirce_protocol::hf::{CONFIG, GENERATION_CONFIG, TOKENIZER, TOKENIZER_CONFIG};

/// Qwen's ChatML template, for `tokenizer_config.json` (what `apply_chat_template` uses).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The libtorch element type of a dtype.
pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Float32 => Kind::Float,
        Dtype::BFloat16 => Kind::BFloat16,
        Dtype::Float16 => Kind::Half,
    }
}

/// The dtype of a libtorch element type models are stored in.
pub fn dtype_of_kind(kind: Kind) -> Result<Dtype> {
    Dtype::ALL
        .into_iter()
        .find(|dtype| kind_of(*dtype) == kind)
        .ok_or_else(|| {
            TorchError::Invalid(format!(
                "models are stored as float32, bfloat16 or float16, not {kind:?}"
            ))
        })
}

/// The Hugging Face name of a dtype (`torch_dtype` in `config.json`).
pub fn dtype_name(kind: Kind) -> Result<&'static str> {
    dtype_of_kind(kind).map(Dtype::name)
}

/// The libtorch element type a dtype name stands for.
pub fn parse_dtype(name: &str) -> Result<Kind> {
    Dtype::parse(name).map(kind_of).map_err(TorchError::Invalid)
}

/// The element type a folder's `config.json` says its weights are stored in, float32 when
/// it says nothing.
pub fn stored_kind(dir: &Path) -> Result<Kind> {
    let config: serde_json::Value = read_json(&dir.join(CONFIG))?;
    match Dtype::of_config(&config) {
        Some(dtype) => dtype.map(kind_of).map_err(TorchError::Invalid),
        None => Ok(Kind::Float),
    }
}

/// The ids generation stops at and pads with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialIds {
    /// End-of-sequence ids (generation stops at any of them).
    pub eos: Vec<i64>,
    /// The padding id.
    pub pad: i64,
}

fn ids_of(value: Option<&serde_json::Value>) -> Vec<i64> {
    match value {
        Some(serde_json::Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_i64()).collect(),
        _ => Vec::new(),
    }
}

/// A model with its tokenizer, ready to run.
#[derive(Debug)]
pub struct Model {
    /// The variables, named as Hugging Face names them.
    pub vs: nn::VarStore,
    /// The network.
    pub net: Qwen2,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// End-of-sequence and padding ids.
    pub special: SpecialIds,
    /// `tokenizer_config.json`, written back as it was (generated for tiny models).
    pub tokenizer_config: serde_json::Value,
    /// `generation_config.json`, written back as it was (generated for tiny models).
    pub generation_config: serde_json::Value,
}

/// How many trainable parameters `vs` holds.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

impl Model {
    /// Loads a model folder onto `device` with weights in `dtype`.
    pub fn load(dir: &Path, device: Device, dtype: Kind) -> Result<Self> {
        let config: Config = read_json(&dir.join(CONFIG))?;
        let tokenizer = Tokenizer::from_file(&dir.join(TOKENIZER))?;
        let optional = |name: &str| -> Result<serde_json::Value> {
            let path = dir.join(name);
            if path.exists() {
                read_json(&path)
            } else {
                Ok(json!({}))
            }
        };
        let tokenizer_config = optional(TOKENIZER_CONFIG)?;
        let generation_config = optional(GENERATION_CONFIG)?;
        let mut vs = nn::VarStore::new(device);
        let net = Qwen2::new(&config, &vs.root())?;
        set_dtype(&mut vs, dtype);
        checkpoint::load(&vs, dir)?;
        let special = special_ids(&config, &generation_config, &tokenizer)?;
        Ok(Self {
            vs,
            net,
            tokenizer,
            special,
            tokenizer_config,
            generation_config,
        })
    }

    /// Writes the complete folder: weights as `dtype` (sharded past `max_shard_bytes`),
    /// `config.json` with `torch_dtype` set to match, and the tokenizer and generation
    /// configs.
    pub fn save(&self, dir: &Path, dtype: Kind, max_shard_bytes: Option<u64>) -> Result<()> {
        self.save_with(dir, dtype, max_shard_bytes, &BTreeMap::new())
    }

    /// [`Model::save`], writing `replacements` (by Hugging Face name) instead of the model's own
    /// variables of those names: a trainer's fp32 master weights, say.
    pub fn save_with(
        &self,
        dir: &Path,
        dtype: Kind,
        max_shard_bytes: Option<u64>,
        replacements: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut config = self.net.config.clone();
        config
            .extra
            .insert("torch_dtype".into(), json!(dtype_name(dtype)?));
        config.extra.remove("dtype");
        write_json(&dir.join(CONFIG), &config)?;
        let mut weights: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        for (name, tensor) in replacements {
            if weights
                .insert(name.clone(), tensor.shallow_clone())
                .is_none()
            {
                return Err(TorchError::Invalid(format!(
                    "`{name}` is not a weight of this model"
                )));
            }
        }
        checkpoint::save_tensors(&weights, dir, dtype, max_shard_bytes)?;
        tokenizer::save(&self.tokenizer, dir)?;
        write_json(&dir.join(TOKENIZER_CONFIG), &self.tokenizer_config)?;
        write_json(&dir.join(GENERATION_CONFIG), &self.generation_config)?;
        Ok(())
    }
}

/// Casts the floating-point variables of `vs` to `dtype`.
pub fn set_dtype(vs: &mut nn::VarStore, dtype: Kind) {
    match dtype {
        Kind::BFloat16 => vs.bfloat16(),
        Kind::Half => vs.half(),
        Kind::Double => vs.double(),
        _ => vs.float(),
    }
}

/// End-of-sequence ids from `generation_config.json`, else `config.json`, else the ChatML
/// tokens; padding from the same places, else `<|endoftext|>`, else the first end id.
pub fn special_ids(
    config: &Config,
    generation_config: &serde_json::Value,
    tokenizer: &Tokenizer,
) -> Result<SpecialIds> {
    let mut eos = ids_of(generation_config.get("eos_token_id"));
    if eos.is_empty() {
        eos = ids_of(config.extra.get("eos_token_id"));
    }
    if eos.is_empty() {
        eos = [IM_END, END_OF_TEXT]
            .iter()
            .filter_map(|t| tokenizer.token_id(t))
            .collect();
    }
    // Chat models end turns with <|im_end|> even when the config names only <|endoftext|>.
    if let Some(im_end) = tokenizer.token_id(IM_END) {
        if !eos.contains(&im_end) {
            eos.push(im_end);
        }
    }
    let pad = ids_of(generation_config.get("pad_token_id"))
        .first()
        .copied()
        .or_else(|| ids_of(config.extra.get("pad_token_id")).first().copied())
        .or_else(|| tokenizer.token_id(END_OF_TEXT))
        .or_else(|| eos.first().copied())
        .ok_or_else(|| {
            TorchError::Tokenizer("no end-of-sequence or padding token is known".into())
        })?;
    if eos.is_empty() {
        return Err(TorchError::Tokenizer(
            "no end-of-sequence token is known".into(),
        ));
    }
    Ok(SpecialIds { eos, pad })
}

/// Prompts and worked responses of every task family at every level (`per_level` each,
/// seeded), the text a tiny tokenizer is built from.
pub fn task_corpus(per_level: u64, seed: u64) -> Vec<String> {
    use peirce_tasks::reward::perfect_response;
    use peirce_tasks::{family, prompt, Options, TaskRng, FAMILIES};
    let options = Options {
        layout: None,
        with_solution: true,
    };
    let mut texts = Vec::new();
    for name in FAMILIES {
        let Some(family) = family(name) else { continue };
        for level in 1..=family.max_level() {
            for index in 0..per_level {
                let mut rng = TaskRng::for_instance(seed, name, level, index);
                let instance = family.generate(level, &mut rng, &options);
                let mut text = prompt::render(family.instruction(), &instance.puzzle);
                text.push_str(&perfect_response(
                    family.answer_kind(),
                    &instance.answer,
                    instance.solution.as_deref(),
                ));
                text.push_str(IM_END);
                texts.push(text);
            }
        }
    }
    texts
}

/// Builds a small Qwen2-shaped model with a tokenizer for the task text.
#[derive(Debug, Clone)]
pub struct TinyModelBuilder {
    /// Residual width.
    pub hidden_size: i64,
    /// MLP width.
    pub intermediate_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads.
    pub num_key_value_heads: i64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Longest sequence.
    pub max_position_embeddings: i64,
    /// Tie `lm_head` to the embeddings.
    pub tie_word_embeddings: bool,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// The tokenizer.
    pub tokenizer: TinyTokenizerBuilder,
    /// Instances per family and level in the tokenizer's corpus.
    pub corpus_per_level: u64,
    /// Seeds the corpus and the weights.
    pub seed: u64,
}

impl Default for TinyModelBuilder {
    /// The `model` dtype's defaults.
    fn default() -> Self {
        Self::from_params(&ModelParams::default())
    }
}

impl TinyModelBuilder {
    /// The builder a `model` node's parameters describe.
    pub fn from_params(params: &ModelParams) -> Self {
        let tokenizer = TinyTokenizerBuilder {
            max_vocab: params.max_vocab.get() as usize,
            ..TinyTokenizerBuilder::default()
        };
        Self {
            hidden_size: i64::from(params.hidden_size.get()),
            intermediate_size: i64::from(params.intermediate_size.get()),
            num_hidden_layers: i64::from(params.num_hidden_layers.get()),
            num_attention_heads: i64::from(params.num_attention_heads.get()),
            num_key_value_heads: i64::from(params.num_key_value_heads.get()),
            rope_theta: params.rope_theta,
            max_position_embeddings: i64::from(params.max_position_embeddings.get()),
            tie_word_embeddings: params.tie_word_embeddings,
            initializer_range: 0.02,
            tokenizer,
            corpus_per_level: u64::from(params.corpus_per_level.get()),
            seed: params.seed,
        }
    }

    /// Builds the tokenizer from the task corpus and a randomly initialized model on
    /// `device` in `dtype`.
    pub fn build(&self, device: Device, dtype: Kind) -> Result<Model> {
        let corpus = task_corpus(self.corpus_per_level, self.seed);
        let tokenizer = self.tokenizer.build(corpus.iter().map(String::as_str))?;
        self.build_with(tokenizer, device, dtype)
    }

    /// A randomly initialized model for an existing tokenizer.
    pub fn build_with(&self, tokenizer: Tokenizer, device: Device, dtype: Kind) -> Result<Model> {
        let id = |token: &str| {
            tokenizer
                .token_id(token)
                .ok_or_else(|| TorchError::Tokenizer(format!("the tokenizer lacks `{token}`")))
        };
        let (end_of_text, im_end) = (id(END_OF_TEXT)?, id(IM_END)?);
        id(IM_START)?;
        // Embedding rows rounded up to a multiple of 64, as Qwen pads its vocabulary.
        let vocab_size = (tokenizer.vocab_size().div_ceil(64) * 64) as i64;
        let config: Config = serde_json::from_value(json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": 1e-6,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "initializer_range": self.initializer_range,
            "use_cache": true,
            "use_sliding_window": false,
            "sliding_window": null,
            "max_window_layers": self.num_hidden_layers,
            "bos_token_id": end_of_text,
            "eos_token_id": im_end,
            "torch_dtype": dtype_name(dtype)?,
        }))
        .map_err(|error| TorchError::Config(error.to_string()))?;
        tch::manual_seed(self.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let net = Qwen2::new(&config, &vs.root())?;
        set_dtype(&mut vs, dtype);
        let added_tokens_decoder: serde_json::Map<String, serde_json::Value> =
            tokenizer::SPECIAL_TOKENS
                .iter()
                .map(|t| (t, true))
                .chain(tokenizer::TAG_TOKENS.iter().map(|t| (t, false)))
                .filter_map(|(token, special)| {
                    tokenizer.token_id(token).map(|id| {
                        (
                            id.to_string(),
                            json!({
                                "content": token, "lstrip": false, "normalized": false,
                                "rstrip": false, "single_word": false, "special": special
                            }),
                        )
                    })
                })
                .collect();
        let tokenizer_config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "added_tokens_decoder": added_tokens_decoder,
            "additional_special_tokens": [IM_START, IM_END],
            "bos_token": null,
            "eos_token": IM_END,
            "pad_token": END_OF_TEXT,
            "unk_token": null,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": false,
            "model_max_length": self.max_position_embeddings,
            "split_special_tokens": false,
        });
        let generation_config = json!({
            "bos_token_id": end_of_text,
            "eos_token_id": [im_end, end_of_text],
            "pad_token_id": end_of_text,
        });
        let special = special_ids(&config, &generation_config, &tokenizer)?;
        Ok(Model {
            vs,
            net,
            tokenizer,
            special,
            tokenizer_config,
            generation_config,
        })
    }
}
