//! Action records: what the action cache stores under an action key.
//!
//! A record names the output tree and keeps the components the key was computed from, so
//! that a miss can be explained against the nearest earlier record ("param `lr` changed",
//! "input `data` changed"). Timings and host are informational and never part of a key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{ActionKey, BlobDigest, TreeDigest};

/// The inputs of an action key, kept for explanations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyComponents {
    /// The engine's key schema version.
    pub schema: u32,
    /// The node kind.
    pub kind: String,
    /// The kind's version.
    pub kind_version: u32,
    /// The resolved parameters, as JSON (for display; the key uses a binary encoding).
    pub params: serde_json::Value,
    /// Input name to the digest of the tree it was given.
    pub inputs: BTreeMap<String, TreeDigest>,
    /// The node's salt.
    pub salt: String,
}

/// One completed action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The key this record is stored under.
    pub key: ActionKey,
    /// The output tree.
    pub output: TreeDigest,
    /// What the key was computed from.
    pub components: KeyComponents,
    /// The node that produced it (informational: the key does not depend on names).
    pub node: String,
    /// The workflow that produced it (informational).
    pub workflow: String,
    /// The captured stdout/stderr of the execution, if any.
    pub log: Option<BlobDigest>,
    /// Start time, seconds since the Unix epoch.
    pub started_at: f64,
    /// Wall time of the execution in seconds.
    pub duration_s: f64,
    /// The host that executed it.
    pub host: String,
    /// The engine version that executed it.
    pub engine_version: String,
    /// Where each input came from (`node:<name>` or `path:<path>`); informational.
    #[serde(default)]
    pub input_sources: BTreeMap<String, String>,
}
