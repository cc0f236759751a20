//! The worker's side of the protocol: the node spec it reads and the JSON lines it writes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::TorchError;

/// The protocol version this worker speaks (`peirce_nodes::worker::PROTOCOL`).
pub const PROTOCOL: u32 = 1;

/// `node.json`, as the engine writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSpec {
    /// Protocol version.
    pub protocol: u32,
    /// The node kind to run.
    pub kind: String,
    /// Node name.
    pub node: String,
    /// Workflow name.
    #[serde(default)]
    pub workflow: String,
    /// Parameters.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Input name to path.
    #[serde(default)]
    pub inputs: BTreeMap<String, PathBuf>,
    /// Where outputs go.
    pub output_dir: PathBuf,
    /// A private folder.
    pub scratch_dir: PathBuf,
    /// CPU threads granted.
    #[serde(default)]
    pub cpus: u32,
    /// GPU ids granted.
    #[serde(default)]
    pub gpus: Vec<u32>,
}

impl NodeSpec {
    /// Reads and parses `node.json`.
    pub fn read(path: &Path) -> Result<Self, WorkerError> {
        let bytes = std::fs::read(path).map_err(|error| {
            WorkerError::failed(format!("cannot read `{}`: {error}", path.display()))
        })?;
        serde_json::from_slice(&bytes).map_err(|error| {
            WorkerError::bad_input(format!("malformed node spec `{}`: {error}", path.display()))
        })
    }
}

/// How a failure is classified for the engine (retry, report, or bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad parameters or input files: reported, not retried.
    BadInput,
    /// Worth retrying (a device busy, a resource exhausted).
    Transient,
    /// Anything else.
    Failed,
}

impl ErrorClass {
    fn name(self) -> &'static str {
        match self {
            ErrorClass::BadInput => "bad_input",
            ErrorClass::Transient => "transient",
            ErrorClass::Failed => "failed",
        }
    }
}

/// A classified failure of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerError {
    /// Its class.
    pub class: ErrorClass,
    /// What went wrong.
    pub message: String,
}

impl WorkerError {
    /// Bad parameters or inputs.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::BadInput,
            message: message.into(),
        }
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Failed,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<TorchError> for WorkerError {
    fn from(error: TorchError) -> Self {
        let class = match &error {
            TorchError::Json { .. }
            | TorchError::Config(_)
            | TorchError::Safetensors { .. }
            | TorchError::MissingTensor { .. }
            | TorchError::UnexpectedTensor { .. }
            | TorchError::ShapeMismatch { .. }
            | TorchError::UnsupportedDtype { .. }
            | TorchError::Tokenizer(_)
            | TorchError::Invalid(_) => ErrorClass::BadInput,
            TorchError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::BadInput
            }
            TorchError::Torch(error) if error.to_string().contains("out of memory") => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Failed,
        };
        Self {
            class,
            message: error.to_string(),
        }
    }
}

fn emit(value: serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout means the engine is gone; nothing useful is left to do about it.
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

/// `{"event":"progress","done":..,"total":..,"message":..}`.
pub fn progress(done: u64, total: u64, message: &str) {
    emit(
        serde_json::json!({"event": "progress", "done": done, "total": total, "message": message}),
    );
}

/// `{"event":"message","text":..}`.
pub fn message(text: &str) {
    emit(serde_json::json!({"event": "message", "text": text}));
}

/// `{"event":"metric", ...fields}`.
pub fn metric(fields: serde_json::Value) {
    let mut object = serde_json::Map::new();
    object.insert("event".into(), "metric".into());
    if let serde_json::Value::Object(fields) = fields {
        object.extend(fields);
    }
    emit(serde_json::Value::Object(object));
}

/// `{"event":"error","class":..,"message":..}`.
pub fn emit_error(error: &WorkerError) {
    emit(serde_json::json!({
        "event": "error", "class": error.class.name(), "message": error.message
    }));
}
