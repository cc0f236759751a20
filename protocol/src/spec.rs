//! `node.json`: the spec the engine writes for one node and the worker reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::WorkerError;

/// The protocol version: written into every spec, and a worker refuses any other. Bump it
/// when a field of [`WorkerSpec`] or [`crate::Event`] changes meaning.
pub const PROTOCOL: u32 = 1;

/// Everything a worker is told about the node it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The protocol version ([`PROTOCOL`]).
    pub protocol: u32,
    /// The node kind to run (`model`, `align`, ...; `worker` nodes pass their own).
    pub kind: String,
    /// The node's name in its workflow.
    pub node: String,
    /// The workflow's name.
    #[serde(default)]
    pub workflow: String,
    /// The node's parameters, complete (the engine filled in every default).
    #[serde(default)]
    pub params: serde_json::Value,
    /// Input name to the folder (or file) holding it; read-only.
    #[serde(default)]
    pub inputs: BTreeMap<String, PathBuf>,
    /// An empty folder: what the worker leaves here is the node's output.
    pub output_dir: PathBuf,
    /// A private folder for temporary files; the worker's working directory.
    pub scratch_dir: PathBuf,
    /// CPU threads granted (also in `OMP_NUM_THREADS`).
    #[serde(default)]
    pub cpus: u32,
    /// GPU ids granted (also in `CUDA_VISIBLE_DEVICES`); empty: run on the CPU.
    #[serde(default)]
    pub gpus: Vec<u32>,
}

impl WorkerSpec {
    /// Writes the spec as pretty JSON.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        std::fs::write(path, bytes)
    }

    /// Reads a spec, refusing a malformed one or one of another protocol version, with an
    /// error naming the file.
    pub fn read(path: &Path) -> Result<Self, WorkerError> {
        let bytes = std::fs::read(path).map_err(|error| {
            WorkerError::failed(format!("cannot read `{}`: {error}", path.display()))
        })?;
        Self::parse(&bytes).map_err(|message| {
            WorkerError::bad_input(format!("node spec `{}`: {message}", path.display()))
        })
    }

    /// Parses a spec's bytes (see [`WorkerSpec::read`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Version {
            protocol: Option<u32>,
        }
        // The version first, so an old or new spec gets "wrong version", not a field error.
        let version: Version =
            serde_json::from_slice(bytes).map_err(|error| format!("malformed: {error}"))?;
        match version.protocol {
            Some(PROTOCOL) => {}
            Some(other) => {
                return Err(format!(
                    "written for worker protocol {other}, but this worker speaks protocol \
                     {PROTOCOL}: rebuild `peirce` and `peirce-worker` from the same checkout"
                ))
            }
            None => return Err("has no `protocol` version".into()),
        }
        serde_json::from_slice(bytes).map_err(|error| format!("malformed: {error}"))
    }

    /// The folder of input `name`, or a bad-input error naming the kind.
    pub fn input(&self, name: &str) -> Result<&Path, WorkerError> {
        self.inputs.get(name).map(PathBuf::as_path).ok_or_else(|| {
            WorkerError::bad_input(format!("`{}` needs an input named `{name}`", self.kind))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkerSpec {
        WorkerSpec {
            protocol: PROTOCOL,
            kind: "align".into(),
            node: "align-deduction".into(),
            workflow: "meta-align".into(),
            params: serde_json::json!({"steps": 3, "lr": 1e-4}),
            inputs: BTreeMap::from([("model".into(), PathBuf::from("/in/model"))]),
            output_dir: "/out".into(),
            scratch_dir: "/scratch".into(),
            cpus: 2,
            gpus: vec![0, 3],
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        spec().write(&path).unwrap();
        assert_eq!(WorkerSpec::read(&path).unwrap(), spec());
    }

    #[test]
    fn refuses_another_version_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        let mut old = serde_json::to_value(spec()).unwrap();
        old["protocol"] = 0.into();
        std::fs::write(&path, old.to_string()).unwrap();
        let error = WorkerSpec::read(&path).unwrap_err();
        assert_eq!(error.class, crate::ErrorClass::BadInput);
        assert!(error.message.contains("node.json"), "{}", error.message);
        assert!(
            error.message.contains("protocol 0") && error.message.contains("protocol 1"),
            "{}",
            error.message
        );
        std::fs::write(&path, "{\"kind\": \"align\"}").unwrap();
        let error = WorkerSpec::read(&path).unwrap_err();
        assert!(error.message.contains("no `protocol`"), "{}", error.message);
        std::fs::write(&path, "{not json").unwrap();
        let error = WorkerSpec::read(&path).unwrap_err();
        assert!(error.message.contains("malformed"), "{}", error.message);
    }

    #[test]
    fn names_a_missing_input() {
        let error = spec().input("data").unwrap_err();
        assert_eq!(error.message, "`align` needs an input named `data`");
        assert_eq!(spec().input("model").unwrap(), Path::new("/in/model"));
    }
}
