//! The node kinds `peirce-worker` runs, and its side of the worker protocol.
//!
//! The engine writes the node's spec to `node.json` and starts `peirce-worker <node.json>`;
//! [`run`] reads it, picks the device, dispatches on `kind`, and reports progress as JSON
//! lines on stdout ([`protocol`]). Outputs go to the spec's `output_dir`; the engine
//! publishes them only after a zero exit.

pub mod align;
pub mod eval;
pub mod model;
pub mod params;
pub mod protocol;

use std::path::Path;

use protocol::{NodeSpec, WorkerError};

/// Runs the node described by the spec at `path`.
pub fn run(path: &Path) -> Result<(), WorkerError> {
    let spec = NodeSpec::read(path)?;
    if spec.protocol != protocol::PROTOCOL {
        return Err(WorkerError::bad_input(format!(
            "`{}` speaks worker protocol {}, this worker speaks {}",
            path.display(),
            spec.protocol,
            protocol::PROTOCOL
        )));
    }
    let device = crate::device::select(&spec.gpus, spec.cpus).map_err(WorkerError::from)?;
    protocol::message(&format!(
        "node `{}` ({}) on {device:?}",
        spec.node, spec.kind
    ));
    match spec.kind.as_str() {
        "model" => model::run(&spec, device),
        "align" | "domain-rl" => align::run(&spec, device),
        "eval" => eval::run(&spec, device),
        other => Err(WorkerError::bad_input(format!(
            "`peirce-worker` has no kind `{other}` (it runs: model, align, domain-rl, eval)"
        ))),
    }
}
