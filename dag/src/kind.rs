//! The node-kind trait and the registry of kinds.
//!
//! A kind is one implementation of [`NodeKind`]: it declares its parameters (checked by the
//! workflow loader before anything runs), a `VERSION` that enters every key it makes, and
//! how to execute one node. The engine calls `run` with the node's inputs already
//! materialized as folders and an empty output folder; whatever the kind leaves in that
//! folder becomes the node's output tree once `run` returns `Ok`. Adding a kind never
//! touches this crate: a kind lives in `peirce-nodes` and registers itself there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::params::ParamSpec;
use crate::spec::{KindCatalog, NodeSpec};
use crate::value::Value;

/// Something a running node reports. Serializable: a node run elsewhere (a Slurm job) writes
/// its events to a file the runner reads back (docs/architecture.md §21).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEvent {
    /// Progress on a known amount of work.
    Progress {
        /// Units done.
        done: u64,
        /// Units in all (0 when unknown).
        total: u64,
        /// A short status text.
        message: String,
    },
    /// A metrics record (training step, evaluation), kept as JSON.
    Metric(serde_json::Value),
    /// A line worth showing to the user.
    Message(String),
    /// This attempt runs as a batch job of a cluster's scheduler (Slurm) with this id: the
    /// engine keeps it in the node's run record (`NodeRun::jobs`).
    Job(String),
}

/// How a node failed, which decides whether it is retried.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    /// May succeed when retried (lost connection, killed by a signal, out of memory).
    #[error("{0}")]
    Transient(String),
    /// The command or program failed; retried only when the node asks for retries.
    #[error("{0}")]
    Failed(String),
    /// The node's inputs or parameters are wrong; never retried.
    #[error("{0}")]
    BadInput(String),
    /// A bug in peirce or in the kind; never retried.
    #[error("internal error: {0}")]
    Internal(String),
    /// Stopped by the user.
    #[error("cancelled")]
    Cancelled,
}

impl NodeError {
    /// Whether another attempt may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NodeError::Transient(_) | NodeError::Failed(_))
    }

    /// The same error with `detail` appended to its message (a cancellation stays as is).
    pub fn with_detail(self, detail: &str) -> NodeError {
        match self {
            NodeError::Transient(message) => NodeError::Transient(message + detail),
            NodeError::Failed(message) => NodeError::Failed(message + detail),
            NodeError::BadInput(message) => NodeError::BadInput(message + detail),
            NodeError::Internal(message) => NodeError::Internal(message + detail),
            NodeError::Cancelled => NodeError::Cancelled,
        }
    }

    /// A one-word class for records and messages.
    pub fn class(&self) -> &'static str {
        match self {
            NodeError::Transient(_) => "transient",
            NodeError::Failed(_) => "failed",
            NodeError::BadInput(_) => "bad input",
            NodeError::Internal(_) => "internal",
            NodeError::Cancelled => "cancelled",
        }
    }

    /// The error of class `class` ([`NodeError::class`]) with `message`, as a node run
    /// elsewhere (a Slurm job) reports it; an unknown class is a plain failure.
    pub fn from_class(class: &str, message: String) -> Self {
        match class {
            "transient" => NodeError::Transient(message),
            "bad input" => NodeError::BadInput(message),
            "internal" => NodeError::Internal(message),
            "cancelled" => NodeError::Cancelled,
            _ => NodeError::Failed(message),
        }
    }
}

/// Everything a kind gets to execute one node.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The node's name in the workflow.
    pub node: String,
    /// The workflow's name.
    pub workflow: String,
    /// Resolved parameters (complete: defaults filled in).
    pub params: BTreeMap<String, Value>,
    /// Input name to a folder holding that input's files (or an external file or folder).
    pub inputs: BTreeMap<String, PathBuf>,
    /// An empty folder: what the kind leaves here is the node's output.
    pub output_dir: PathBuf,
    /// A private folder for temporary files, the working directory of commands.
    pub scratch_dir: PathBuf,
    /// Where the kind appends its log (stdout/stderr of processes); stored with the result.
    pub log_path: PathBuf,
    /// CPU slots granted.
    pub cpus: u32,
    /// GPU device ids granted (empty: run on CPU).
    pub gpus: Vec<u32>,
    /// Cancelled on Ctrl-C or timeout: stop promptly, kill child processes.
    pub cancel: CancellationToken,
    /// Progress, metrics and messages for the user's display.
    pub events: UnboundedSender<NodeEvent>,
}

impl NodeContext {
    /// Sends an event; a closed display is not an error.
    pub fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }
}

/// The end of a node's log: its text from byte `start` on, or only the last `limit` bytes of
/// that (lossy UTF-8), and whether the text begins mid-line because it was cut. `None` when
/// the log cannot be read.
pub fn read_log_end(log: &std::path::Path, start: u64, limit: u64) -> Option<(String, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let end = file.metadata().ok()?.len();
    let from = start.max(end.saturating_sub(limit));
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(from)).ok()?;
    file.read_to_end(&mut bytes).ok()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), from > start))
}

/// One kind of node.
#[async_trait]
pub trait NodeKind: Send + Sync + 'static {
    /// The name used as `kind = "..."` in workflow files.
    fn name(&self) -> &'static str;

    /// Bumped whenever the meaning of the kind's output changes; part of every key.
    fn version(&self) -> u32;

    /// The parameters the kind accepts.
    fn params(&self) -> Vec<ParamSpec>;

    /// Checks beyond types (value ranges, combinations); runs before anything executes.
    fn validate(&self, _node: &NodeSpec) -> Result<(), String> {
        Ok(())
    }

    /// Executes one node.
    async fn run(&self, context: NodeContext) -> Result<(), NodeError>;
}

/// The kinds an engine knows, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn NodeKind>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind (replacing one of the same name).
    pub fn register(&mut self, kind: impl NodeKind) -> &mut Self {
        self.kinds.insert(kind.name(), Arc::new(kind));
        self
    }

    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn NodeKind>> {
        self.kinds.get(name).cloned()
    }

    /// All kinds, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn NodeKind>> {
        self.kinds.values()
    }
}

impl KindCatalog for Registry {
    fn kind_names(&self) -> Vec<&str> {
        self.kinds.keys().copied().collect()
    }

    fn params(&self, kind: &str) -> Option<Vec<ParamSpec>> {
        self.kinds.get(kind).map(|kind| kind.params())
    }
}

#[cfg(test)]
mod tests {
    use super::NodeError;

    #[test]
    fn an_error_comes_back_from_its_class() {
        for error in [
            NodeError::Transient("t".into()),
            NodeError::Failed("f".into()),
            NodeError::BadInput("b".into()),
            NodeError::Internal("i".into()),
            NodeError::Cancelled,
        ] {
            let back = NodeError::from_class(error.class(), error.to_string());
            assert_eq!(back.class(), error.class());
        }
        assert_eq!(NodeError::from_class("novel", "x".into()).class(), "failed");
    }
}
