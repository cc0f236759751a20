//! The node kinds `peirce-worker` runs, and its side of the worker protocol.
//!
//! The engine writes the node's spec to `node.json` and starts `peirce-worker <node.json>`;
//! [`run`] reads it, picks the device, dispatches on `kind`, and reports progress as JSON
//! lines on stdout. The spec, the events and each kind's parameters are
//! [`peirce_protocol`]'s (docs/architecture.md §7). Outputs go to the spec's `output_dir`;
//! the engine publishes them only after a zero exit.

pub mod align;
pub mod eval;
pub mod model;
pub mod ranks;

use std::path::Path;

use peirce_protocol::event::message;
use peirce_protocol::params::TorchKind;
use peirce_protocol::{WorkerError, WorkerSpec};

/// Runs the node described by the spec at `path`.
pub fn run(path: &Path) -> Result<(), WorkerError> {
    let spec = WorkerSpec::read(path)?;
    let kind = TorchKind::parse(&spec.kind).ok_or_else(|| {
        WorkerError::bad_input(format!(
            "`peirce-worker` has no kind `{}` (it runs: model, align, domain-rl, eval)",
            spec.kind
        ))
    })?;
    let device = crate::device::select(&spec.gpus, spec.cpus).map_err(WorkerError::from)?;
    message(&format!(
        "node `{}` ({}) on {device:?}",
        spec.node, spec.kind
    ));
    match kind {
        TorchKind::Model => model::run(&spec, device),
        TorchKind::Align | TorchKind::DomainRl => align::run(&spec, path, kind, device),
        TorchKind::Eval => eval::run(&spec, path, device),
    }
}
