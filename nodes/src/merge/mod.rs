//! `merge`: weighted parameter interpolation of Hugging Face model folders.
//!
//! Inputs are model trees (config.json, safetensors weights, tokenizer files) named by the
//! node's input names; `weights` gives each a weight by name. Methods: `linear` (the
//! default: `sum(w_i x_i) / sum(w_i)`, mergekit's normalized linear merge), `sum` (no
//! normalization) and `task_arithmetic` (`base + sum(w_i (x_i - base))`, the base being the
//! input named `base`). Configs must agree on everything but bookkeeping keys, and tensors
//! on names, shapes and dtypes; a disagreement is reported naming the input and the tensor
//! or key, before anything is written.
//!
//! The weights are streamed: memory-mapped inputs are read window by window of each tensor
//! and the output safetensors are written as they are computed after a header made from the
//! shapes alone, so a merge holds a few megabytes of each model, never a whole one. The
//! output keeps the sharding of the template input (`base` if there is one, else the first
//! input by name), whose config, tokenizer and generation files it copies, and records the
//! recipe in `merge.json`. The same inputs always give the same bytes (see [`kernel`] for
//! the arithmetic and its agreement with mergekit). This kind does not fetch models, does
//! not resize vocabularies, and merges only floating-point tensors (others must be equal).

pub mod checkpoint;
pub mod kernel;
pub mod recipe;
mod stream;
mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeEvent, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use peirce_dag::spec::NodeSpec;
use peirce_dag::value::Value;

pub use kernel::FloatType;
pub use recipe::{Method, Recipe, BASE};

/// The file recording a merge's recipe in its output.
pub const RECORD: &str = "merge.json";

/// Why a merge failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The method, weights or dtype do not fit the inputs.
    #[error("{0}")]
    Recipe(String),
    /// One input is malformed or disagrees with the template input.
    #[error("Input `{input}`: {message}")]
    Input {
        /// The input's name.
        input: String,
        /// What is wrong.
        message: String,
    },
    /// An input file cannot be read.
    #[error("Cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An output file cannot be written.
    #[error("Cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Stopped by the caller.
    #[error("The merge was cancelled")]
    Cancelled,
    /// A failure that is not the inputs' fault.
    #[error("{0}")]
    Internal(String),
}

impl MergeError {
    pub(crate) fn input(input: &str, message: String) -> Self {
        MergeError::Input {
            input: input.to_string(),
            message,
        }
    }

    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        MergeError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn write(path: &Path, source: std::io::Error) -> Self {
        MergeError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<MergeError> for NodeError {
    fn from(error: MergeError) -> Self {
        match error {
            MergeError::Recipe(_) | MergeError::Input { .. } | MergeError::Read { .. } => {
                NodeError::BadInput(error.to_string())
            }
            MergeError::Write { .. } => NodeError::Failed(error.to_string()),
            MergeError::Cancelled => NodeError::Cancelled,
            MergeError::Internal(message) => NodeError::Internal(message),
        }
    }
}

/// How a merge runs (not what it computes: the output never depends on these).
pub struct MergeOptions<'a> {
    /// Threads computing each window.
    pub threads: usize,
    /// Called with (bytes written, bytes in all) as the weights are written.
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Polled between windows; `true` stops the merge with [`MergeError::Cancelled`].
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl Default for MergeOptions<'_> {
    fn default() -> Self {
        MergeOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            progress: &|_, _| {},
            cancelled: &|| false,
        }
    }
}

/// What a merge wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The template input (whose layout, config and tokenizer the output has).
    pub template: String,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
    /// Files written into the output folder, by name.
    pub files: Vec<String>,
}

/// Merges `recipe` into `output_dir` (created if missing; expected empty).
pub fn merge(
    recipe: &Recipe,
    output_dir: &Path,
    options: &MergeOptions<'_>,
) -> Result<Summary, MergeError> {
    std::fs::create_dir_all(output_dir).map_err(|source| MergeError::write(output_dir, source))?;
    let inputs = recipe.inputs();
    let configs = tree::read_configs(&inputs)?;
    let mut checkpoints = Vec::with_capacity(inputs.len());
    for (name, dir) in &inputs {
        checkpoints.push(checkpoint::Checkpoint::open(name, dir)?);
    }
    let plan = stream::Plan::new(recipe, &checkpoints)?;
    let mut files = stream::write_weights(&plan, &checkpoints, output_dir, options)?;
    files.extend(tree::write_files(
        recipe,
        &configs,
        &checkpoints[0],
        output_dir,
    )?);
    files.sort();
    Ok(Summary {
        template: checkpoints[0].input.clone(),
        tensors: plan.tensor_count(),
        bytes: plan.total_bytes(),
        files,
    })
}

/// The `merge` kind.
pub struct Merge;

impl Merge {
    /// Bump when merged outputs change meaning or bytes.
    pub const VERSION: u32 = 1;
}

/// A node's merge settings.
struct Settings {
    method: Method,
    weights: BTreeMap<String, f64>,
    dtype: Option<FloatType>,
}

/// Method, weights and dtype from a node's (type-checked) params.
fn settings(params: &BTreeMap<String, Value>) -> Result<Settings, MergeError> {
    let method = Method::parse(
        params
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("linear"),
    )?;
    let mut weights = BTreeMap::new();
    for (name, value) in params
        .get("weights")
        .and_then(Value::as_table)
        .into_iter()
        .flatten()
    {
        let weight = value.as_f64().ok_or_else(|| {
            MergeError::Recipe(format!("The weight of `{name}` must be a number"))
        })?;
        weights.insert(name.clone(), weight);
    }
    let dtype = params
        .get("dtype")
        .and_then(Value::as_str)
        .map(recipe::parse_dtype)
        .transpose()?;
    Ok(Settings {
        method,
        weights,
        dtype,
    })
}

fn run_merge(context: &NodeContext) -> Result<(), NodeError> {
    let settings = settings(&context.params)?;
    let recipe = Recipe::new(
        settings.method,
        &context.inputs,
        &settings.weights,
        settings.dtype,
    )?;
    let progress = |done: u64, total: u64| {
        context.emit(NodeEvent::Progress {
            done,
            total,
            message: "merging weights".into(),
        })
    };
    let cancelled = || context.cancel.is_cancelled();
    let options = MergeOptions {
        threads: context.cpus.max(1) as usize,
        progress: &progress,
        cancelled: &cancelled,
    };
    let summary = merge(&recipe, &context.output_dir, &options)?;
    context.emit(NodeEvent::Message(format!(
        "merged {} tensors ({} bytes) of {} models",
        summary.tensors,
        summary.bytes,
        recipe.models.len()
    )));
    Ok(())
}

#[async_trait]
impl NodeKind for Merge {
    fn name(&self) -> &'static str {
        "merge"
    }

    fn version(&self) -> u32 {
        Self::VERSION
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "method",
                ParamType::String,
                Some(Value::String("linear".into())),
                "\"linear\" (sum(w x) / sum(w)), \"sum\" (sum(w x)) or \"task_arithmetic\" (base + sum(w (x - base)), with an input named `base`)",
            ),
            ParamSpec::required(
                "weights",
                ParamType::map(ParamType::Float),
                "The weight of each input by input name, e.g. { deduction = 1.0, induction = 0.2 }",
            ),
            ParamSpec::optional(
                "dtype",
                ParamType::String,
                None,
                "The output's element type: \"float32\", \"bfloat16\", \"float16\" or \"float64\" (default: the inputs')",
            ),
        ]
    }

    fn validate(&self, node: &NodeSpec) -> Result<(), String> {
        let settings = settings(&node.params).map_err(|e| e.to_string())?;
        let inputs = node.inputs.keys().map(String::as_str);
        recipe::check_names(settings.method, &settings.weights, inputs).map_err(|e| e.to_string())
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        tokio::task::spawn_blocking(move || run_merge(&context))
            .await
            .map_err(|e| NodeError::Internal(format!("merge task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use safetensors::{Dtype, SafeTensors};

    use super::checkpoint::{header, OutputTensor};
    use super::*;

    /// A model folder holding `tensors` (name, dtype, shape, bytes).
    fn model(dir: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type": "qwen2"}"#).unwrap();
        let outputs: Vec<OutputTensor> = tensors
            .iter()
            .map(|(name, dtype, shape, _)| OutputTensor {
                name: name.to_string(),
                dtype: *dtype,
                shape: shape.clone(),
            })
            .collect();
        let mut bytes = header(&outputs);
        for (_, _, _, data) in tensors {
            bytes.extend_from_slice(data);
        }
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    }

    fn f16_bytes(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect()
    }

    fn recipe(dir: &Path, names: &[&str]) -> Recipe {
        let inputs = names
            .iter()
            .map(|name| (name.to_string(), dir.join(name)))
            .collect();
        let weights = names.iter().map(|name| (name.to_string(), 1.0)).collect();
        Recipe::new(Method::Linear, &inputs, &weights, None).unwrap()
    }

    #[test]
    fn integer_tensors_are_copied_when_equal_and_refused_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u8> = (0..8i64).flat_map(|i| i.to_le_bytes()).collect();
        let other_ids: Vec<u8> = (1..9i64).flat_map(|i| i.to_le_bytes()).collect();
        let weight = |values: &[f32]| ("w", Dtype::F16, vec![values.len()], f16_bytes(values));
        model(
            &dir.path().join("a"),
            &[
                ("ids", Dtype::I64, vec![8], ids.clone()),
                weight(&[1.0, -2.0]),
            ],
        );
        model(
            &dir.path().join("b"),
            &[
                ("ids", Dtype::I64, vec![8], ids.clone()),
                weight(&[3.0, 4.0]),
            ],
        );
        model(
            &dir.path().join("c"),
            &[("ids", Dtype::I64, vec![8], other_ids), weight(&[3.0, 4.0])],
        );
        let out = dir.path().join("out");
        merge(
            &recipe(dir.path(), &["a", "b"]),
            &out,
            &MergeOptions::default(),
        )
        .unwrap();
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let merged = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(merged.tensor("ids").unwrap().data(), &ids[..]);
        assert_eq!(
            merged.tensor("w").unwrap().data(),
            &f16_bytes(&[2.0, 1.0])[..]
        );

        let error = merge(
            &recipe(dir.path(), &["a", "c"]),
            &dir.path().join("bad"),
            &MergeOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Input `c`: tensor `ids` (I64) differs from `a`'s; only floating-point tensors are merged, others must be equal"
        );
        assert!(matches!(NodeError::from(error), NodeError::BadInput(_)));
    }

    #[test]
    fn progress_reaches_the_total_and_cancelling_stops_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..3000).map(|i| i as f32 / 7.0).collect();
        for name in ["a", "b"] {
            model(
                &dir.path().join(name),
                &[("w", Dtype::F16, vec![3000], f16_bytes(&values))],
            );
        }
        let (done, total) = (AtomicU64::new(0), AtomicU64::new(0));
        let progress = |d: u64, t: u64| {
            done.store(d, Ordering::SeqCst);
            total.store(t, Ordering::SeqCst);
        };
        let options = MergeOptions {
            threads: 2,
            progress: &progress,
            cancelled: &|| false,
        };
        let summary = merge(
            &recipe(dir.path(), &["a", "b"]),
            &dir.path().join("out"),
            &options,
        )
        .unwrap();
        assert_eq!(summary.bytes, 6000);
        assert_eq!((done.into_inner(), total.into_inner()), (6000, 6000));
        assert_eq!(
            summary.files,
            vec!["config.json", "merge.json", "model.safetensors"]
        );
        let options = MergeOptions {
            cancelled: &|| true,
            ..MergeOptions::default()
        };
        let error = merge(
            &recipe(dir.path(), &["a", "b"]),
            &dir.path().join("stop"),
            &options,
        )
        .unwrap_err();
        assert!(matches!(NodeError::from(error), NodeError::Cancelled));
    }
}
