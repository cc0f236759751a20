//! The parameters of the torch kinds (`model`, `align`, `domain-rl`, `eval`): one serde
//! type per kind, declared once with each parameter's type, default and doc.
//!
//! The engine builds its workflow schema from [`TorchKind::schema`] (types are checked and
//! defaults filled in before anything runs, so every default is part of the node's key) and
//! checks values with [`TorchKind::check`] at plan time; the worker parses the same types.
//! Changing a default here therefore changes the engine's schema, the worker's behaviour
//! and the key, in one edit.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::WorkerError;
use crate::hf::Dtype;
pub use peirce_tasks::reward::RewardMode;

/// The type of a parameter, as the engine's workflow checker knows types.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `true` or `false`.
    Bool,
    /// An integer.
    Int,
    /// A number (integers are accepted).
    Float,
    /// A string.
    String,
    /// An array of one type.
    List(Box<Type>),
    /// A table whose values have one type.
    Map(Box<Type>),
    /// Either type.
    Either(Box<Type>, Box<Type>),
}

/// The [`Type`] a Rust type is written as in a workflow file.
pub trait ParamType {
    /// Its type.
    fn param_type() -> Type;
}

macro_rules! param_types {
    ($($rust:ty => $ty:expr),* $(,)?) => {
        $(impl ParamType for $rust {
            fn param_type() -> Type {
                $ty
            }
        })*
    };
}

param_types! {
    bool => Type::Bool,
    u32 => Type::Int,
    u64 => Type::Int,
    NonZeroU32 => Type::Int,
    NonZeroU64 => Type::Int,
    f64 => Type::Float,
    String => Type::String,
    Dtype => Type::String,
    Algorithm => Type::String,
    Source => Type::String,
    Split => Type::String,
    RewardMode => Type::String,
    DecodeKernels => Type::String,
    PerTask => Type::Either(Box::new(Type::Int), Box::new(Type::Map(Box::new(Type::Int)))),
}

impl<T: ParamType> ParamType for Option<T> {
    fn param_type() -> Type {
        T::param_type()
    }
}

impl<T: ParamType> ParamType for Vec<T> {
    fn param_type() -> Type {
        Type::List(Box::new(T::param_type()))
    }
}

impl<T: ParamType, const N: usize> ParamType for [T; N] {
    fn param_type() -> Type {
        Type::List(Box::new(T::param_type()))
    }
}

/// One parameter of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its name in workflow files.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Its default, as JSON; `None` when absence means something of its own (the doc says).
    pub default: Option<serde_json::Value>,
    /// One line for `peirce` messages and the README.
    pub doc: &'static str,
}

impl Param {
    fn new<T: ParamType + Serialize>(name: &'static str, default: &T, doc: &'static str) -> Self {
        let default = serde_json::to_value(default).expect("defaults serialize");
        Param {
            name,
            ty: T::param_type(),
            default: (!default.is_null()).then_some(default),
            doc,
        }
    }
}

/// Declares a kind's parameter struct: each field with its doc line, type and default.
macro_rules! kind_params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( #[doc = $doc:literal] pub $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Every parameter, with the defaults of `defaults`.
            pub fn schema_of(defaults: &Self) -> Vec<Param> {
                vec![$( Param::new(stringify!($field), &defaults.$field, $doc.trim_ascii()), )*]
            }
        }
    };
}

const fn positive(value: u32) -> NonZeroU32 {
    match NonZeroU32::new(value) {
        Some(value) => value,
        None => panic!("a positive default"),
    }
}

kind_params! {
    /// `model`: import a Hugging Face folder, or build a tiny model; optionally warm it up.
    pub struct ModelParams {
        /// `import` (input `base`, a Hugging Face folder) or `tiny` (built here); default: `import` when input `base` is given
        pub source: Option<Source> = None,
        /// Stored dtype: float32, bfloat16 or float16 (default: import keeps the stored one, tiny float32)
        pub dtype: Option<Dtype> = None,
        /// Seeds the tiny model's tokenizer corpus, weights and warm-up
        pub seed: u64 = 0,
        /// Split the weights into shards of at most this many bytes
        pub max_shard_bytes: Option<NonZeroU64> = None,
        /// Tiny model: residual width
        pub hidden_size: NonZeroU32 = positive(64),
        /// Tiny model: MLP width
        pub intermediate_size: NonZeroU32 = positive(176),
        /// Tiny model: decoder layers
        pub num_hidden_layers: NonZeroU32 = positive(2),
        /// Tiny model: query heads
        pub num_attention_heads: NonZeroU32 = positive(4),
        /// Tiny model: key/value heads
        pub num_key_value_heads: NonZeroU32 = positive(2),
        /// Tiny model: longest sequence
        pub max_position_embeddings: NonZeroU32 = positive(4096),
        /// Tiny model: rotary base
        pub rope_theta: f64 = 10000.0,
        /// Tiny model: tie the output head to the embeddings
        pub tie_word_embeddings: bool = true,
        /// Tiny model: tokenizer vocabulary size
        pub max_vocab: NonZeroU32 = positive(1024),
        /// Tiny model: instances per task and level in the tokenizer corpus
        pub corpus_per_level: NonZeroU32 = positive(8),
        /// Supervised warm-up steps on the worked solutions of the `data*` inputs
        pub warmup_steps: u32 = 0,
        /// Warm-up learning rate
        pub warmup_lr: f64 = 1e-3,
        /// Warm-up examples per step
        pub warmup_batch: NonZeroU32 = positive(16),
    }
}

/// The parameters only a tiny model reads.
const TINY_ONLY: [&str; 9] = [
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rope_theta",
    "tie_word_embeddings",
    "max_vocab",
];

kind_params! {
    /// `align` (REINFORCE++ on one reasoning task, the paper's stage A) and `domain-rl` (GRPO
    /// on a domain dataset, stage C): the same loop with a curriculum over levels.
    pub struct TrainParams {
        /// Updates per curriculum level
        pub steps: NonZeroU32 = positive(20),
        /// Levels to use, in curriculum order (default: all in the data)
        pub levels: Option<Vec<NonZeroU32>> = None,
        /// Training prompts per update: a number, or a table by task with `*` for the others
        pub prompts_per_step: PerTask = PerTask::paper(),
        /// Sampled responses per prompt (GRPO: the group size)
        pub rollouts: NonZeroU32 = positive(4),
        /// Rollout sampling temperature
        pub temperature: f64 = 0.7,
        /// Rollout nucleus sampling
        pub top_p: f64 = 1.0,
        /// Rollout top-k sampling (0: all tokens)
        pub top_k: u32 = 0,
        /// Longest response, in tokens
        pub max_new_tokens: NonZeroU32 = positive(512),
        /// AdamW learning rate (constant)
        pub lr: f64 = 5e-7,
        /// AdamW betas
        pub betas: [f64; 2] = [0.9, 0.95],
        /// AdamW decoupled weight decay
        pub weight_decay: f64 = 0.0,
        /// Global gradient-norm clip
        pub grad_clip: f64 = 1.0,
        /// Weight of the k3 KL to the starting model
        pub kl_coef: f64 = 0.001,
        /// Weight of the entropy bonus
        pub entropy_coef: f64 = 0.001,
        /// PPO ratio clip
        pub clip: f64 = 0.2,
        /// Rows per forward/backward (gradients accumulate)
        pub micro_batch: NonZeroU32 = positive(8),
        /// Rows per generation batch
        pub rollout_batch: NonZeroU32 = positive(64),
        /// On a GPU, replay each decoding step as a CUDA graph (false: launch its kernels one by one)
        pub cuda_graphs: bool = true,
        /// On a GPU, the decoding step's kernels: `all` (peirce's fused kernels and attention), `fused` (its fused kernels, libtorch's attention) or `libtorch`
        pub decode_kernels: DecodeKernels = DecodeKernels::All,
        /// Held-out prompts evaluated before and after
        pub eval_count: u32 = 64,
        /// Seeds data order and sampling
        pub seed: u64 = 0,
        /// Compute dtype: float32 or bfloat16 (bf16 is for GPUs; master weights and AdamW state stay float32)
        pub dtype: Dtype = Dtype::Float32,
        /// `reinforce++` (align's default) or `grpo` (domain-rl's default)
        pub algorithm: Algorithm = Algorithm::ReinforcePlusPlus,
        /// Dtype of the saved weights: float32 (the master weights) or bfloat16 (a half-size copy)
        pub save_dtype: Dtype = Dtype::Float32,
        /// Keep the fp32 master weights and AdamW moments in host memory and update them on the CPU
        pub optimizer_offload: bool = false,
        /// Recompute each decoder layer in the backward instead of keeping its activations
        pub gradient_checkpointing: bool = false,
        /// Data-parallel ranks on the CPU (default: one per granted GPU, else 1)
        pub ranks: Option<NonZeroU32> = None,
        /// With several ranks, each keeps the fp32 masters and AdamW state of 1/N of the weights (ZeRO stage 1)
        pub shard_optimizer: bool = true,
        /// The reward rules of the logic tasks: `strict` (peirce's) or `paper` (the paper's released code's)
        pub reward: RewardMode = RewardMode::Strict,
    }
}

kind_params! {
    /// `eval`: held-out accuracy of one model on every dataset it is given.
    pub struct EvalParams {
        /// The row label in `peirce report` (default: the node name)
        pub label: Option<String> = None,
        /// Held-out prompts per dataset and level (default: all)
        pub count: Option<NonZeroU32> = None,
        /// Levels to evaluate (default: all in the data)
        pub levels: Option<Vec<NonZeroU32>> = None,
        /// The split to evaluate: test or train
        pub split: Split = Split::Test,
        /// Samples per prompt for avg@k (1: greedy accuracy only)
        pub k: NonZeroU32 = positive(1),
        /// Sampling temperature of the avg@k samples
        pub temperature: f64 = 0.7,
        /// Nucleus sampling of the avg@k samples
        pub top_p: f64 = 1.0,
        /// Top-k sampling of the avg@k samples (0: all tokens)
        pub top_k: u32 = 0,
        /// Longest response, in tokens
        pub max_new_tokens: NonZeroU32 = positive(512),
        /// Rows per generation batch
        pub batch: NonZeroU32 = positive(64),
        /// On a GPU, replay each decoding step as a CUDA graph (false: launch its kernels one by one)
        pub cuda_graphs: bool = true,
        /// On a GPU, the decoding step's kernels: `all` (peirce's fused kernels and attention), `fused` (its fused kernels, libtorch's attention) or `libtorch`
        pub decode_kernels: DecodeKernels = DecodeKernels::All,
        /// Seeds the avg@k samples
        pub seed: u64 = 0,
        /// Evaluation dtype: float32 or bfloat16
        pub dtype: Dtype = Dtype::Float32,
        /// Ranks on the CPU, each grading a share of the prompts (default: one per granted GPU, else 1)
        pub ranks: Option<NonZeroU32> = None,
        /// The reward rules of the logic tasks: `strict` (peirce's) or `paper` (the paper's released code's)
        pub reward: RewardMode = RewardMode::Strict,
    }
}

/// Where a `model` node's model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A local Hugging Face folder (input `base`).
    Import,
    /// A tiny Qwen2-shaped model built here.
    Tiny,
}

/// The policy-gradient estimator of a trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// REINFORCE++: batch-whitened returns with a per-token KL penalty.
    #[serde(rename = "reinforce++")]
    ReinforcePlusPlus,
    /// GRPO: advantages normalized within each prompt's group of rollouts.
    #[serde(rename = "grpo")]
    Grpo,
}

/// Which kernels a decoding step on a CUDA device runs (docs/architecture.md §20).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeKernels {
    /// libtorch's ops only (and what runs wherever peirce's kernels cannot: a CPU, fp32, fp16).
    #[default]
    Libtorch,
    /// peirce's fused rotary + KV-cache write and SwiGLU kernels (libtorch's arithmetic in
    /// fp32, rounded once; libtorch's own matrix product for the rotation may round
    /// differently), libtorch's attention.
    Fused,
    /// [`DecodeKernels::Fused`] and peirce's split-K decoding attention, each row reading its
    /// own keys (rounds differently from libtorch's attention).
    All,
}

impl DecodeKernels {
    /// Parses `libtorch`, `fused` or `all`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "libtorch" => Ok(Self::Libtorch),
            "fused" => Ok(Self::Fused),
            "all" => Ok(Self::All),
            other => Err(format!("unknown kernels `{other}` (libtorch, fused, all)")),
        }
    }

    /// The name [`DecodeKernels::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Libtorch => "libtorch",
            Self::Fused => "fused",
            Self::All => "all",
        }
    }
}

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The held-out split.
    Test,
    /// The training split.
    Train,
}

impl Split {
    /// Its name, as in dataset file names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Test => "test",
            Split::Train => "train",
        }
    }
}

/// A number for every task, or one per task with `*` for the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerTask {
    /// The same for every task.
    All(NonZeroU32),
    /// By task name; `*` covers the tasks not named.
    ByTask(BTreeMap<String, NonZeroU32>),
}

impl PerTask {
    /// The paper's prompts per step (arXiv 2505.10554, stage A): 16 for induction, 32 for
    /// the other tasks.
    pub fn paper() -> Self {
        PerTask::ByTask(BTreeMap::from([
            ("deduction".to_string(), positive(32)),
            ("induction".to_string(), positive(16)),
            ("abduction".to_string(), positive(32)),
            ("*".to_string(), positive(32)),
        ]))
    }

    /// The value for `task`.
    pub fn get(&self, task: &str) -> Option<u32> {
        match self {
            PerTask::All(value) => Some(value.get()),
            PerTask::ByTask(table) => table.get(task).or_else(|| table.get("*")).map(|v| v.get()),
        }
    }
}

/// A torch kind: its name, version, parameters and their checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchKind {
    /// `model`.
    Model,
    /// `align`.
    Align,
    /// `domain-rl`.
    DomainRl,
    /// `eval`.
    Eval,
}

impl TorchKind {
    /// Every torch kind.
    pub const ALL: [TorchKind; 4] = [
        TorchKind::Model,
        TorchKind::Align,
        TorchKind::DomainRl,
        TorchKind::Eval,
    ];

    /// The name in workflow files.
    pub fn name(self) -> &'static str {
        match self {
            TorchKind::Model => "model",
            TorchKind::Align => "align",
            TorchKind::DomainRl => "domain-rl",
            TorchKind::Eval => "eval",
        }
    }

    /// The kind of a name.
    pub fn parse(name: &str) -> Option<TorchKind> {
        TorchKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Enters every key of the kind: bump it when the meaning of the kind's outputs changes
    /// for the same parameters and inputs (a change of a default needs no bump: defaults are
    /// part of the key).
    pub fn version(self) -> u32 {
        match self {
            TorchKind::Model | TorchKind::Align | TorchKind::DomainRl | TorchKind::Eval => 1,
        }
    }

    /// The kind's trainer defaults (`align` and `domain-rl` differ in `algorithm`).
    pub fn train_defaults(self) -> TrainParams {
        match self {
            TorchKind::DomainRl => TrainParams {
                algorithm: Algorithm::Grpo,
                ..TrainParams::default()
            },
            _ => TrainParams::default(),
        }
    }

    /// The kind's parameters.
    pub fn schema(self) -> Vec<Param> {
        match self {
            TorchKind::Model => ModelParams::schema_of(&ModelParams::default()),
            TorchKind::Align | TorchKind::DomainRl => {
                TrainParams::schema_of(&self.train_defaults())
            }
            TorchKind::Eval => EvalParams::schema_of(&EvalParams::default()),
        }
    }

    /// Checks a node's parameters as the worker will read them.
    pub fn check(self, params: &serde_json::Value) -> Result<(), WorkerError> {
        match self {
            TorchKind::Model => ModelParams::parse(params).map(drop),
            TorchKind::Align | TorchKind::DomainRl => TrainParams::parse(self, params).map(drop),
            TorchKind::Eval => EvalParams::parse(params).map(drop),
        }
    }
}

/// `given` over `defaults`, then typed: unknown names and wrong types are errors naming
/// the parameter; a null or absent value keeps the default.
fn parse<P: Serialize + DeserializeOwned>(
    defaults: &P,
    given: &serde_json::Value,
) -> Result<P, WorkerError> {
    let serde_json::Value::Object(mut merged) =
        serde_json::to_value(defaults).expect("defaults serialize")
    else {
        unreachable!("parameter structs serialize as objects")
    };
    let given = match given {
        serde_json::Value::Object(map) => map.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        other => {
            return Err(WorkerError::bad_input(format!(
                "params must be a table, got {other}"
            )))
        }
    };
    let unknown: Vec<String> = given
        .keys()
        .filter(|key| !merged.contains_key(*key))
        .map(|key| format!("`{key}`"))
        .collect();
    if !unknown.is_empty() {
        return Err(WorkerError::bad_input(format!(
            "unknown parameter(s) {}",
            unknown.join(", ")
        )));
    }
    for (key, value) in given {
        if !value.is_null() {
            merged.insert(key, value);
        }
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(merged))
        .map_err(|error| WorkerError::bad_input(format!("`{}`: {}", error.path(), error.inner())))
}

impl ModelParams {
    /// Parses and checks a `model` node's parameters.
    pub fn parse(given: &serde_json::Value) -> Result<Self, WorkerError> {
        let params: Self = parse(&Self::default(), given)?;
        if params.source == Some(Source::Import) {
            let defaults = serde_json::to_value(Self::default()).expect("defaults serialize");
            let ours = serde_json::to_value(&params).expect("params serialize");
            if let Some(name) = TINY_ONLY
                .iter()
                .find(|name| ours[**name] != defaults[**name])
            {
                return Err(WorkerError::bad_input(format!(
                    "`{name}` applies to tiny models only, not with `source = \"import\"`"
                )));
            }
        }
        Ok(params)
    }
}

impl TrainParams {
    /// Parses and checks the parameters of an `align` or `domain-rl` node.
    pub fn parse(kind: TorchKind, given: &serde_json::Value) -> Result<Self, WorkerError> {
        let params: Self = parse(&kind.train_defaults(), given)?;
        if let PerTask::ByTask(table) = &params.prompts_per_step {
            if table.is_empty() {
                return Err(WorkerError::bad_input(
                    "`prompts_per_step` names no task (give a number, or a table with `*`)",
                ));
            }
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(WorkerError::bad_input(format!(
                "`top_p` must be in (0, 1], got {}",
                params.top_p
            )));
        }
        if params.temperature < 0.0 || params.lr < 0.0 {
            return Err(WorkerError::bad_input(
                "`temperature` and `lr` must not be negative",
            ));
        }
        Ok(params)
    }

    /// The prompts per step for `task`.
    pub fn prompts_per_step(&self, task: &str) -> Result<usize, WorkerError> {
        self.prompts_per_step
            .get(task)
            .map(|n| n as usize)
            .ok_or_else(|| {
                WorkerError::bad_input(format!(
                    "`prompts_per_step` has no entry for task `{task}` (nor `*`)"
                ))
            })
    }
}

impl EvalParams {
    /// Parses and checks an `eval` node's parameters.
    pub fn parse(given: &serde_json::Value) -> Result<Self, WorkerError> {
        parse(&Self::default(), given)
    }
}

/// A `levels` list as plain numbers.
pub fn levels(levels: &Option<Vec<NonZeroU32>>) -> Option<Vec<u32>> {
    levels
        .as_ref()
        .map(|levels| levels.iter().map(|l| l.get()).collect())
}

impl Type {
    /// How the README names the type.
    pub fn describe(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::Int => "int".into(),
            Type::Float => "float".into(),
            Type::String => "string".into(),
            Type::List(element) => format!("list of {}", element.describe()),
            Type::Map(value) => format!("table of {}", value.describe()),
            Type::Either(first, second) => format!("{} or {}", first.describe(), second.describe()),
        }
    }
}

/// The parameters of every torch kind as markdown tables: the README's reference, kept
/// current by a test.
pub fn markdown() -> String {
    let mut out = String::new();
    for kind in TorchKind::ALL {
        out.push_str(&format!(
            "`{}` (version {}):\n\n| parameter | type | default | meaning |\n|---|---|---|---|\n",
            kind.name(),
            kind.version()
        ));
        for param in kind.schema() {
            let default = param
                .default
                .map(|value| format!("`{value}`"))
                .unwrap_or_else(|| "none".into());
            out.push_str(&format!(
                "| `{}` | {} | {default} | {} |\n",
                param.name,
                param.ty.describe(),
                param.doc.replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The README's parameter tables are [`markdown`]'s output; `PEIRCE_BLESS=1` rewrites them.
    #[test]
    fn the_readme_lists_every_parameter_as_declared() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- torch-params:begin -->\n", "<!-- torch-params:end -->");
        let start = readme.find(begin).expect("README has the begin marker") + begin.len();
        let stop = readme.find(end).expect("README has the end marker");
        let expected = markdown();
        if readme[start..stop] != expected {
            if std::env::var("PEIRCE_BLESS").is_ok_and(|v| v == "1") {
                let updated = format!("{}{expected}{}", &readme[..start], &readme[stop..]);
                std::fs::write(&path, updated).unwrap();
            } else {
                panic!(
                    "README.md's parameter tables differ from protocol/src/params.rs: run \
                     `PEIRCE_BLESS=1 cargo test -p peirce-protocol` and commit README.md"
                );
            }
        }
    }

    #[test]
    fn decode_kernels_parse_and_name_each_other() {
        for kernels in [
            DecodeKernels::Libtorch,
            DecodeKernels::Fused,
            DecodeKernels::All,
        ] {
            assert_eq!(DecodeKernels::parse(kernels.name()).unwrap(), kernels);
            assert_eq!(json!(kernels), json!(kernels.name()));
        }
        let error = DecodeKernels::parse("fast").unwrap_err();
        assert!(
            error.contains("`fast`") && error.contains("libtorch, fused, all"),
            "{error}"
        );
    }

    #[test]
    fn defaults_fill_in_and_given_values_win() {
        let params =
            TrainParams::parse(TorchKind::Align, &json!({"steps": 3, "lr": 1e-4})).unwrap();
        assert_eq!(params.steps.get(), 3);
        assert_eq!(params.lr, 1e-4);
        assert_eq!(params.rollouts.get(), 4);
        assert_eq!(params.algorithm, Algorithm::ReinforcePlusPlus);
        let domain = TrainParams::parse(TorchKind::DomainRl, &json!(null)).unwrap();
        assert_eq!(domain.algorithm, Algorithm::Grpo);
        assert_eq!(domain.prompts_per_step("induction").unwrap(), 16);
        assert_eq!(domain.prompts_per_step("arithmetic").unwrap(), 32);
        let fixed = TrainParams::parse(TorchKind::Align, &json!({"prompts_per_step": 8})).unwrap();
        assert_eq!(fixed.prompts_per_step("induction").unwrap(), 8);
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (json!({"stepz": 3}), "unknown parameter(s) `stepz`"),
            (json!({"steps": 0}), "`steps`"),
            (json!({"steps": "many"}), "`steps`"),
            (json!({"betas": [0.9]}), "`betas`"),
            (json!({"dtype": "int8"}), "`int8`"),
            (json!({"algorithm": "ppo"}), "`algorithm`"),
            (json!({"reward": "lenient"}), "`lenient`"),
            (json!({"levels": [1, 0]}), "`levels[1]`"),
            (json!({"top_p": 0.0}), "`top_p`"),
            (json!({"prompts_per_step": {"deduction": 4}}), ""),
        ];
        for (given, expected) in cases {
            match TrainParams::parse(TorchKind::Align, &given) {
                Err(error) => {
                    assert_eq!(error.class, crate::ErrorClass::BadInput);
                    assert!(
                        error.message.contains(expected),
                        "{given}: {}",
                        error.message
                    );
                }
                Ok(params) => {
                    // A table without `*` is fine until a task it does not name comes.
                    assert!(params.prompts_per_step("induction").is_err(), "{given}");
                }
            }
        }
        let error =
            ModelParams::parse(&json!({"source": "import", "hidden_size": 128})).unwrap_err();
        assert!(
            error.message.contains("`hidden_size` applies to tiny"),
            "{}",
            error.message
        );
        assert!(EvalParams::parse(&json!({"split": "dev"})).is_err());
        assert!(EvalParams::parse(&json!({"reward": "lenient"})).is_err());
        let paper = EvalParams::parse(&json!({"reward": "paper"})).unwrap();
        assert_eq!(paper.reward, RewardMode::Paper);
        assert_eq!(EvalParams::default().reward, RewardMode::Strict);
    }

    #[test]
    fn the_schema_carries_every_field_with_its_default() {
        for kind in TorchKind::ALL {
            let schema = kind.schema();
            let defaults = match kind {
                TorchKind::Model => serde_json::to_value(ModelParams::default()),
                TorchKind::Align | TorchKind::DomainRl => {
                    serde_json::to_value(kind.train_defaults())
                }
                TorchKind::Eval => serde_json::to_value(EvalParams::default()),
            }
            .unwrap();
            let fields = defaults.as_object().unwrap();
            assert_eq!(schema.len(), fields.len(), "{kind:?}");
            for param in &schema {
                let default = &fields[param.name];
                assert_eq!(
                    param.default.as_ref(),
                    (!default.is_null()).then_some(default)
                );
                assert!(!param.doc.is_empty() && !param.doc.starts_with(' '));
            }
            // The schema's defaults are what the worker uses when nothing is given.
            let given: serde_json::Map<_, _> = schema
                .iter()
                .filter_map(|p| p.default.clone().map(|d| (p.name.to_string(), d)))
                .collect();
            kind.check(&serde_json::Value::Object(given)).unwrap();
        }
        let align = TorchKind::Align.schema();
        let lr = align.iter().find(|p| p.name == "lr").unwrap();
        assert_eq!(
            (lr.ty.clone(), lr.default.clone()),
            (Type::Float, Some(json!(5e-7)))
        );
        let algorithm = |kind: TorchKind| {
            kind.schema()
                .into_iter()
                .find(|p| p.name == "algorithm")
                .and_then(|p| p.default)
        };
        assert_eq!(algorithm(TorchKind::Align), Some(json!("reinforce++")));
        assert_eq!(algorithm(TorchKind::DomainRl), Some(json!("grpo")));
    }
}
