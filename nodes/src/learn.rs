//! The engine side of the libtorch kinds: `model`, `align`, `domain-rl` and `eval`.
//!
//! Their work runs in `peirce-worker` (nodes/torch), one process per node, through the
//! worker protocol of [`crate::worker`]; this module only declares each kind's parameters,
//! so workflows are type-checked before anything runs, and starts the worker. The engine
//! binary never links libtorch (DESIGN.md 2).
//!
//! Parameters carry no defaults here: the worker owns them (documented in README.md and in
//! nodes/torch/src/worker/), and a change of a default bumps the kind's version, which is
//! part of every key.

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use std::path::PathBuf;

use crate::worker::run_worker;

/// The environment variable naming the worker program; by default `peirce-worker` next to
/// the running executable, then on `PATH`.
pub const WORKER_ENV: &str = "PEIRCE_WORKER";

/// Where the `peirce-worker` binary is.
pub fn worker_program() -> Result<String, NodeError> {
    if let Ok(program) = std::env::var(WORKER_ENV) {
        if !program.is_empty() {
            return Ok(program);
        }
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("peirce-worker")));
    if let Some(path) = sibling.filter(|p| p.is_file()) {
        return Ok(path.display().to_string());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("peirce-worker"))
            .find(|p: &PathBuf| p.is_file())
    });
    on_path.map(|p| p.display().to_string()).ok_or_else(|| {
        NodeError::BadInput(format!(
            "`peirce-worker` was not found next to `peirce` nor on PATH (build it with \
             `scripts/peirce`, or set {WORKER_ENV} to its path)"
        ))
    })
}

fn param(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
    ParamSpec::optional(name, ty, None, doc)
}

fn int(name: &'static str, doc: &'static str) -> ParamSpec {
    param(name, ParamType::Int, doc)
}

fn float(name: &'static str, doc: &'static str) -> ParamSpec {
    param(name, ParamType::Float, doc)
}

fn string(name: &'static str, doc: &'static str) -> ParamSpec {
    param(name, ParamType::String, doc)
}

fn levels() -> ParamSpec {
    param(
        "levels",
        ParamType::list(ParamType::Int),
        "Levels to use, in curriculum order (default: all in the data)",
    )
}

fn model_params() -> Vec<ParamSpec> {
    vec![
        string(
            "source",
            "`import` (input `base`, a Hugging Face folder) or `tiny` (built here)",
        ),
        string(
            "dtype",
            "Stored dtype: float32, bfloat16 or float16 (import: as stored)",
        ),
        int(
            "seed",
            "Seeds the tiny model's tokenizer corpus, weights and warm-up",
        ),
        int(
            "max_shard_bytes",
            "Split the weights into shards of at most this size",
        ),
        int("hidden_size", "Tiny model: residual width"),
        int("intermediate_size", "Tiny model: MLP width"),
        int("num_hidden_layers", "Tiny model: decoder layers"),
        int("num_attention_heads", "Tiny model: query heads"),
        int("num_key_value_heads", "Tiny model: key/value heads"),
        int("max_position_embeddings", "Tiny model: longest sequence"),
        float("rope_theta", "Tiny model: rotary base"),
        param(
            "tie_word_embeddings",
            ParamType::Bool,
            "Tiny model: tie the output head to the embeddings",
        ),
        int("max_vocab", "Tiny model: tokenizer vocabulary size"),
        int(
            "corpus_per_level",
            "Tiny model: instances per task and level in the tokenizer corpus",
        ),
        int(
            "warmup_steps",
            "Supervised warm-up steps on the worked solutions of the `data*` inputs",
        ),
        float("warmup_lr", "Warm-up learning rate"),
        int("warmup_batch", "Warm-up examples per step"),
    ]
}

fn trainer_params() -> Vec<ParamSpec> {
    vec![
        int("steps", "Updates per curriculum level"),
        levels(),
        int("prompts_per_step", "Training prompts per update"),
        int(
            "rollouts",
            "Sampled responses per prompt (GRPO: the group size)",
        ),
        float("temperature", "Rollout sampling temperature"),
        float("top_p", "Rollout nucleus sampling"),
        int("max_new_tokens", "Longest response"),
        float("lr", "AdamW learning rate"),
        param("betas", ParamType::list(ParamType::Float), "AdamW betas"),
        float("weight_decay", "AdamW decoupled weight decay"),
        float("grad_clip", "Global gradient-norm clip"),
        float("kl_coef", "Weight of the k3 KL to the starting model"),
        float("entropy_coef", "Weight of the entropy bonus"),
        float("clip", "PPO ratio clip"),
        int(
            "micro_batch",
            "Rows per forward/backward (gradients accumulate)",
        ),
        int("rollout_batch", "Rows per generation batch"),
        int("eval_count", "Held-out prompts evaluated before and after"),
        int("seed", "Seeds data order, sampling and dropout-free init"),
        string(
            "dtype",
            "Training dtype: float32 or bfloat16 (bf16 is for GPUs)",
        ),
        string(
            "algorithm",
            "`reinforce++` (align's default) or `grpo` (domain-rl's default)",
        ),
    ]
}

fn eval_params() -> Vec<ParamSpec> {
    vec![
        string(
            "label",
            "The row label in `peirce report` (default: the node name)",
        ),
        int("count", "Held-out prompts per dataset (default: all)"),
        levels(),
        string("split", "The split to evaluate: test (default) or train"),
        int(
            "k",
            "Samples per prompt for avg@k (1: greedy accuracy only)",
        ),
        float("temperature", "Sampling temperature of the avg@k samples"),
        float("top_p", "Nucleus sampling of the avg@k samples"),
        int("max_new_tokens", "Longest response"),
        int("batch", "Rows per generation batch"),
        int("seed", "Seeds the avg@k samples"),
        string("dtype", "Evaluation dtype: float32 or bfloat16"),
    ]
}

/// A kind whose work runs in `peirce-worker`.
pub struct TorchKind {
    name: &'static str,
    version: u32,
    params: fn() -> Vec<ParamSpec>,
}

impl TorchKind {
    /// `model`: import a Hugging Face folder or build a tiny model, optionally warmed up.
    pub const MODEL: TorchKind = TorchKind {
        name: "model",
        version: 1,
        params: model_params,
    };
    /// `align`: REINFORCE++ on one reasoning task (the paper's stage A).
    pub const ALIGN: TorchKind = TorchKind {
        name: "align",
        version: 1,
        params: trainer_params,
    };
    /// `domain-rl`: GRPO on a domain dataset (the paper's stage C).
    pub const DOMAIN_RL: TorchKind = TorchKind {
        name: "domain-rl",
        version: 1,
        params: trainer_params,
    };
    /// `eval`: accuracy per task and level, reward, domain accuracy.
    pub const EVAL: TorchKind = TorchKind {
        name: "eval",
        version: 1,
        params: eval_params,
    };
}

#[async_trait]
impl NodeKind for TorchKind {
    fn name(&self) -> &'static str {
        self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn params(&self) -> Vec<ParamSpec> {
        (self.params)()
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        let program = worker_program()?;
        let params = serde_json::Value::Object(
            context
                .params
                .iter()
                .map(|(key, value)| (key.clone(), value.to_json()))
                .collect(),
        );
        run_worker(self.name, &program, &[], params, &context).await
    }
}
