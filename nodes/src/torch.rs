//! The engine side of the libtorch kinds: `model`, `align`, `domain-rl` and `eval`.
//!
//! Their work runs in `peirce-worker` (torch/), one process per node, through the worker
//! protocol of [`crate::worker`]; the engine binary never links libtorch
//! (docs/architecture.md §2). Each kind's parameters, defaults and checks are
//! [`peirce_protocol::params`]'s: this module turns them into the engine's schema, so a
//! workflow is type-checked and checked as the worker will read it before anything runs,
//! and every default is part of the key.

use std::path::PathBuf;

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use peirce_dag::spec::NodeSpec;
use peirce_dag::value::Value;
use peirce_protocol::params::{self, Type};

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

/// The engine's type for a protocol type.
fn param_type(ty: &Type) -> ParamType {
    match ty {
        Type::Bool => ParamType::Bool,
        Type::Int => ParamType::Int,
        Type::Float => ParamType::Float,
        Type::String => ParamType::String,
        Type::List(element) => ParamType::list(param_type(element)),
        Type::Map(value) => ParamType::map(param_type(value)),
        Type::Either(first, second) => ParamType::either(param_type(first), param_type(second)),
    }
}

/// The engine's schema for a protocol schema: every parameter optional, with its default.
fn engine_schema(schema: Vec<params::Param>) -> Vec<ParamSpec> {
    schema
        .into_iter()
        .map(|param| {
            ParamSpec::optional(
                param.name,
                param_type(&param.ty),
                param.default.as_ref().map(Value::from_json),
                param.doc,
            )
        })
        .collect()
}

/// A node's parameters as the worker receives them.
fn params_json(params: &std::collections::BTreeMap<String, Value>) -> serde_json::Value {
    serde_json::Value::Object(
        params
            .iter()
            .map(|(key, value)| (key.clone(), value.to_json()))
            .collect(),
    )
}

/// A kind whose work runs in `peirce-worker`.
pub struct TorchKind(pub params::TorchKind);

impl TorchKind {
    /// Every torch kind.
    pub fn all() -> impl Iterator<Item = TorchKind> {
        params::TorchKind::ALL.into_iter().map(TorchKind)
    }
}

#[async_trait]
impl NodeKind for TorchKind {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn version(&self) -> u32 {
        self.0.version()
    }

    fn params(&self) -> Vec<ParamSpec> {
        engine_schema(self.0.schema())
    }

    fn validate(&self, node: &NodeSpec) -> Result<(), String> {
        self.0
            .check(&params_json(&node.params))
            .map_err(|error| error.message)
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        let program = worker_program()?;
        let params = params_json(&context.params);
        run_worker(self.0.name(), &program, &[], params, &context).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::num::NonZeroU32;
    use std::path::Path;

    use peirce_dag::key::KeyInput;
    use peirce_dag::spec::{parse_workflow, KindCatalog};
    use peirce_protocol::params::TrainParams;

    use super::*;

    /// A catalog of one kind, `align`, with the given schema.
    struct Align(Vec<ParamSpec>);

    impl KindCatalog for Align {
        fn kind_names(&self) -> Vec<&str> {
            vec!["align"]
        }
        fn params(&self, kind: &str) -> Option<Vec<ParamSpec>> {
            (kind == "align").then(|| self.0.clone())
        }
    }

    /// The key of an `align` node that sets only `lr`, under `schema`.
    fn key_under(schema: Vec<ParamSpec>) -> (peirce_store::ActionKey, Value) {
        let text = "[workflow]\nname = \"w\"\n\n[a]\nkind = \"align\"\nlr = 1e-4\n";
        let workflow = parse_workflow(Path::new("w.toml"), text, &Align(schema), &[])
            .unwrap_or_else(|errors| panic!("{errors}"));
        let node = &workflow.nodes[0];
        let key = KeyInput {
            kind: "align",
            kind_version: TorchKind(params::TorchKind::Align).version(),
            params: &node.params,
            inputs: &BTreeMap::new(),
            salt: "",
        }
        .key();
        (key, node.params["steps"].clone())
    }

    #[test]
    fn a_changed_default_changes_the_key() {
        let (key, steps) = key_under(TorchKind(params::TorchKind::Align).params());
        assert_eq!(steps, Value::Int(20));
        // The same protocol type with one default changed, as an edit of
        // protocol/src/params.rs would change it.
        let edited = TrainParams {
            steps: NonZeroU32::new(21).unwrap(),
            ..TrainParams::default()
        };
        let (edited_key, edited_steps) = key_under(engine_schema(TrainParams::schema_of(&edited)));
        assert_eq!(edited_steps, Value::Int(21));
        assert_ne!(key, edited_key, "a default is part of the key");
        // And the worker reads what the engine filled in.
        let filled = serde_json::json!({"steps": 21, "lr": 1e-4});
        let read = TrainParams::parse(params::TorchKind::Align, &filled).unwrap();
        assert_eq!(read.steps.get(), 21);
    }

    #[test]
    fn the_reward_mode_is_part_of_the_key_and_checked_at_load() {
        let kind = TorchKind(params::TorchKind::Align);
        let key_of = |extra: &str| {
            let text = format!("[workflow]\nname = \"w\"\n\n[a]\nkind = \"align\"\n{extra}");
            let workflow = parse_workflow(Path::new("w.toml"), &text, &Align(kind.params()), &[])
                .unwrap_or_else(|errors| panic!("{errors}"));
            let node = workflow.nodes[0].clone();
            let key = KeyInput {
                kind: "align",
                kind_version: kind.version(),
                params: &node.params,
                inputs: &BTreeMap::new(),
                salt: "",
            }
            .key();
            (key, node)
        };
        let (strict, node) = key_of("");
        assert_eq!(node.params["reward"], Value::String("strict".into()));
        assert_eq!(key_of("reward = \"strict\"\n").0, strict);
        let (paper, node) = key_of("reward = \"paper\"\n");
        assert_ne!(paper, strict);
        assert!(kind.validate(&node).is_ok());
        let (_, node) = key_of("reward = \"lenient\"\n");
        let error = kind.validate(&node).unwrap_err();
        assert!(error.contains("lenient"), "{error}");
    }

    #[test]
    fn the_engine_checks_values_as_the_worker_reads_them() {
        let text = "[workflow]\nname = \"w\"\n\n[a]\nkind = \"align\"\nsteps = 0\n";
        let kind = TorchKind(params::TorchKind::Align);
        let workflow = parse_workflow(Path::new("w.toml"), text, &Align(kind.params()), &[])
            .unwrap_or_else(|errors| panic!("{errors}"));
        let error = kind.validate(&workflow.nodes[0]).unwrap_err();
        assert!(error.contains("`steps`"), "{error}");
    }
}
