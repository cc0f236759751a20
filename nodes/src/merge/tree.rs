//! The non-weight files of a merged model: configs that must agree, the template's
//! config, tokenizer and generation files copied, and `merge.json`.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use super::checkpoint::Checkpoint;
use super::kernel::FloatType;
use super::recipe::Recipe;
use super::{MergeError, RECORD};

pub use peirce_protocol::hf::CONFIG;

/// Config keys that record where or how a model was saved, not what it computes: they may
/// differ between merged models.
const BOOKKEEPING: &[&str] = &[
    "_name_or_path",
    "_commit_hash",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "use_cache",
];

/// Whether a file of the template input is copied into the output: its tokenizer and
/// generation settings. Weights are written by the merge; other files (training curves,
/// logs, READMEs) describe one input, not the merge, and are left out.
fn copied(name: &str) -> bool {
    name == peirce_protocol::hf::GENERATION_CONFIG
        || name.starts_with("tokenizer")
        || name.starts_with("vocab.")
        || name.starts_with("chat_template.")
        || matches!(
            name,
            "special_tokens_map.json" | "merges.txt" | "added_tokens.json"
        )
}

/// One input's parsed config.
pub struct Config {
    input: String,
    path: PathBuf,
    bytes: Vec<u8>,
    object: Map<String, Json>,
}

/// Reads every input's config.json and checks they agree with the first one.
pub fn read_configs(inputs: &[(&str, &PathBuf)]) -> Result<Vec<Config>, MergeError> {
    let mut configs: Vec<Config> = Vec::with_capacity(inputs.len());
    for (input, dir) in inputs {
        let path = dir.join(CONFIG);
        if !path.is_file() {
            return Err(MergeError::input(
                input,
                format!("`{}` has no `{CONFIG}`: not a model folder", dir.display()),
            ));
        }
        let bytes = std::fs::read(&path).map_err(|source| MergeError::read(&path, source))?;
        let object = match serde_json::from_slice::<Json>(&bytes) {
            Ok(Json::Object(object)) => object,
            Ok(_) => {
                return Err(MergeError::input(
                    input,
                    format!("`{}` is not a JSON object", path.display()),
                ))
            }
            Err(error) => {
                return Err(MergeError::input(
                    input,
                    format!("`{}` is not valid JSON: {error}", path.display()),
                ))
            }
        };
        let config = Config {
            input: input.to_string(),
            path,
            bytes,
            object,
        };
        if let Some(first) = configs.first() {
            compare(first, &config)?;
        }
        configs.push(config);
    }
    Ok(configs)
}

/// The first disagreement of `other` with `first`, outside [`BOOKKEEPING`] keys.
fn compare(first: &Config, other: &Config) -> Result<(), MergeError> {
    let bad = |message: String| Err(MergeError::input(&other.input, message));
    for (key, value) in &first.object {
        if BOOKKEEPING.contains(&key.as_str()) {
            continue;
        }
        match other.object.get(key) {
            None => {
                return bad(format!(
                    "{CONFIG} has no `{key}`, `{}` has {value}",
                    first.input
                ))
            }
            Some(mine) if mine != value => {
                return bad(format!(
                    "{CONFIG} has `{key}` = {mine}, `{}` has {value}",
                    first.input
                ))
            }
            Some(_) => {}
        }
    }
    if let Some((key, value)) = other
        .object
        .iter()
        .find(|(key, _)| !BOOKKEEPING.contains(&key.as_str()) && !first.object.contains_key(*key))
    {
        return bad(format!(
            "{CONFIG} has `{key}` = {value}, which `{}`'s lacks",
            first.input
        ));
    }
    Ok(())
}

/// Writes config.json (the template's, its dtype updated when the merge changes it), the
/// template's tokenizer and generation files, and `merge.json`. Returns the names written.
pub fn write_files(
    recipe: &Recipe,
    configs: &[Config],
    template: &Checkpoint,
    output_dir: &Path,
) -> Result<Vec<String>, MergeError> {
    let config = &configs[0];
    let mut written = Vec::new();
    let config_out = output_dir.join(CONFIG);
    let bytes = match recipe.dtype {
        Some(dtype) => retyped_config(config, dtype)?,
        None => config.bytes.clone(),
    };
    std::fs::write(&config_out, bytes).map_err(|source| MergeError::write(&config_out, source))?;
    written.push(CONFIG.to_string());

    let entries = std::fs::read_dir(&template.dir)
        .map_err(|source| MergeError::read(&template.dir, source))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| MergeError::read(&template.dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if copied(&name) && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let (from, to) = (template.dir.join(&name), output_dir.join(&name));
        std::fs::copy(&from, &to).map_err(|source| MergeError::read(&from, source))?;
        written.push(name);
    }

    let record = json!({
        "method": recipe.method.name(),
        "weights": recipe.models.iter().map(|(name, _, weight)| (name.clone(), json!(weight))).collect::<Map<_, _>>(),
        "inputs": recipe.inputs().iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "base": recipe.base.as_ref().map(|_| super::BASE),
        "dtype": recipe.dtype.map(FloatType::name),
        "template": template.input,
        "version": super::Merge::VERSION,
    });
    let record_path = output_dir.join(RECORD);
    let text =
        serde_json::to_string_pretty(&record).map_err(|e| MergeError::Internal(e.to_string()))?;
    std::fs::write(&record_path, text + "\n")
        .map_err(|source| MergeError::write(&record_path, source))?;
    written.push(RECORD.to_string());
    Ok(written)
}

/// The template config with `torch_dtype` (and `dtype`, where present) set to `dtype`.
fn retyped_config(config: &Config, dtype: FloatType) -> Result<Vec<u8>, MergeError> {
    let mut object = config.object.clone();
    object.insert("torch_dtype".into(), json!(dtype.name()));
    if object.contains_key("dtype") {
        object.insert("dtype".into(), json!(dtype.name()));
    }
    let mut text = serde_json::to_string_pretty(&Json::Object(object))
        .map_err(|e| MergeError::Internal(format!("`{}`: {e}", config.path.display())))?;
    text.push('\n');
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(input: &str, text: &str) -> Config {
        let Json::Object(object) = serde_json::from_str(text).unwrap() else {
            panic!("an object")
        };
        Config {
            input: input.into(),
            path: PathBuf::from("config.json"),
            bytes: text.as_bytes().to_vec(),
            object,
        }
    }

    #[test]
    fn configs_agree_except_on_bookkeeping() {
        let first = config(
            "deduction",
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "torch_dtype": "bfloat16", "_name_or_path": "a"}"#,
        );
        let same = config(
            "induction",
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "torch_dtype": "float32", "_name_or_path": "b"}"#,
        );
        assert!(compare(&first, &same).is_ok());
        let wider = config(
            "induction",
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 128}"#,
        );
        assert_eq!(
            compare(&first, &wider).unwrap_err().to_string(),
            "Input `induction`: config.json has `hidden_size` = 128, `deduction` has 64"
        );
        let llama = config(
            "induction",
            r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}"#,
        );
        assert!(compare(&first, &llama).unwrap_err().to_string().contains(
            "`architectures` = [\"LlamaForCausalLM\"], `deduction` has [\"Qwen2ForCausalLM\"]"
        ));
        let extra = config(
            "induction",
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "sliding_window": 4}"#,
        );
        assert!(compare(&first, &extra)
            .unwrap_err()
            .to_string()
            .contains("`sliding_window` = 4, which `deduction`'s lacks"));
    }

    #[test]
    fn tokenizer_and_generation_files_are_copied_and_others_not() {
        for name in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "special_tokens_map.json",
            "vocab.json",
            "merges.txt",
            "chat_template.jinja",
        ] {
            assert!(copied(name), "{name}");
        }
        for name in [
            "model.safetensors",
            "curves.png",
            "metrics.jsonl",
            "merge.json",
            "config.json",
        ] {
            assert!(!copied(name), "{name}");
        }
    }
}
