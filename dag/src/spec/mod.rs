//! Workflow files: parsing, validation and resolution into a [`Workflow`].
//!
//! A workflow is a TOML file where every top-level table is a node, except the
//! reserved `[workflow]` (name, remote, executor), `[executor.slurm]` and `[defaults]` tables (docs/architecture.md §9).
//! Loading checks everything that can be checked before anything runs: syntax,
//! kinds, parameter names and types, inputs, resources and cycles, and reports
//! every problem with its file, line and column and, where it can guess, a hint.
//! The result is complete: defaults and `--set` overrides are applied, integer
//! parameters declared as floats are floats, and nodes come in topological order.
//!
//! This module deliberately knows no node kinds (they come through
//! [`KindCatalog`]), hashes nothing and checks no resource limits of a machine.

mod error;
mod fields;
mod graph;
mod inputs;
mod load;
mod matrix;
mod model;
mod overrides;
mod resolve;

#[cfg(test)]
mod tests;

pub use error::{SpecError, SpecErrors};
pub use load::{load_workflow, parse_workflow};
pub use matrix::{base_name, instance_name, Binding};
pub use model::{Executor, InputRef, KindCatalog, NodeSpec, Resources, SlurmSettings, Workflow};
pub use overrides::Override;

/// A memory size as workflow files write it (`16G`, `512M`, bytes), for flags such as
/// `--memory`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    fields::parse_memory(&crate::value::Value::from(text))
}
