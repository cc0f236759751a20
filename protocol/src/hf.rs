//! The Hugging Face model-folder layout, as `save_pretrained` writes it and
//! `from_pretrained` reads it: the file names, the shard index, the dtype names. Shared by
//! the worker (which loads and saves models) and the engine's `merge`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The model's configuration.
pub const CONFIG: &str = "config.json";
/// The weights of an unsharded checkpoint.
pub const WEIGHTS: &str = "model.safetensors";
/// The index of a sharded checkpoint: which shard file holds each tensor.
pub const INDEX: &str = "model.safetensors.index.json";
/// The tokenizer (the `tokenizers` library's format).
pub const TOKENIZER: &str = "tokenizer.json";
/// The tokenizer's settings (special tokens, chat template).
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// Generation defaults (stop ids).
pub const GENERATION_CONFIG: &str = "generation_config.json";

/// The name of shard `number` (from 1) of `count`: `model-00001-of-00003.safetensors`.
pub fn shard_file(number: usize, count: usize) -> String {
    format!("model-{number:05}-of-{count:05}.safetensors")
}

/// Whether `name` is a weights file of a checkpoint (the single file, a shard or the index).
pub fn is_weights_file(name: &str) -> bool {
    name == INDEX || (name.starts_with("model") && name.ends_with(".safetensors"))
}

/// `model.safetensors.index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// `{"total_size": bytes}`.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Tensor name to shard file name.
    pub weight_map: BTreeMap<String, String>,
}

/// The floating-point types a model is stored, trained or merged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String", into = "String")]
pub enum Dtype {
    /// IEEE single precision.
    Float32,
    /// bfloat16: float32's range with 8 bits of precision.
    BFloat16,
    /// IEEE half precision.
    Float16,
}

impl Dtype {
    /// Every dtype, for messages.
    pub const ALL: [Dtype; 3] = [Dtype::Float32, Dtype::BFloat16, Dtype::Float16];

    /// The name `config.json` (`torch_dtype`) and workflow files use.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::BFloat16 => "bfloat16",
            Dtype::Float16 => "float16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Float32 => 4,
            Dtype::BFloat16 | Dtype::Float16 => 2,
        }
    }

    /// Parses a name (`float32`, `bfloat16`, `float16`, or their short forms `fp32`,
    /// `bf16`, `fp16`, `float`, `half`).
    pub fn parse(name: &str) -> Result<Dtype, String> {
        Ok(match name {
            "float32" | "fp32" | "float" => Dtype::Float32,
            "bfloat16" | "bf16" => Dtype::BFloat16,
            "float16" | "fp16" | "half" => Dtype::Float16,
            other => {
                return Err(format!(
                    "unknown dtype `{other}` (float32, bfloat16 or float16)"
                ))
            }
        })
    }

    /// The dtype a `config.json` says the weights are stored in (`torch_dtype`, or `dtype`
    /// as transformers 5 writes it); `None` when it says nothing.
    pub fn of_config(config: &serde_json::Value) -> Option<Result<Dtype, String>> {
        config
            .get("torch_dtype")
            .or_else(|| config.get("dtype"))
            .and_then(serde_json::Value::as_str)
            .map(Dtype::parse)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Dtype {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Dtype::parse(&name)
    }
}

impl From<Dtype> for String {
    fn from(dtype: Dtype) -> String {
        dtype.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip_and_aliases_parse() {
        for dtype in Dtype::ALL {
            assert_eq!(Dtype::parse(dtype.name()), Ok(dtype));
            let json = serde_json::to_value(dtype).unwrap();
            assert_eq!(json, serde_json::json!(dtype.name()));
            assert_eq!(serde_json::from_value::<Dtype>(json).unwrap(), dtype);
        }
        assert_eq!(Dtype::parse("bf16"), Ok(Dtype::BFloat16));
        assert_eq!(Dtype::parse("half"), Ok(Dtype::Float16));
        assert!(Dtype::parse("int8").unwrap_err().contains("`int8`"));
        let config = serde_json::json!({"dtype": "bfloat16"});
        assert_eq!(Dtype::of_config(&config), Some(Ok(Dtype::BFloat16)));
        assert_eq!(Dtype::of_config(&serde_json::json!({})), None);
    }

    #[test]
    fn shard_names_follow_transformers() {
        assert_eq!(shard_file(2, 13), "model-00002-of-00013.safetensors");
        assert!(is_weights_file(&shard_file(1, 2)));
        assert!(is_weights_file(INDEX) && is_weights_file(WEIGHTS));
        assert!(!is_weights_file(CONFIG) && !is_weights_file(TOKENIZER));
    }
}
