//! Reasons: why a node must run, explained against its previous record.

use std::collections::BTreeMap;
use std::fmt;

use peirce_store::{ActionKey, ActionRecord, TreeDigest};
use serde::Serialize;

use crate::key::SCHEMA_VERSION;
use crate::value::Value;

/// One reason a node runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// No earlier result of this node is known.
    New,
    /// The user asked for it (`--force`).
    Forced,
    /// A parameter changed (`None`: absent on that side).
    ParamChanged {
        /// The parameter's name.
        name: String,
        /// Previous value.
        old: Option<serde_json::Value>,
        /// New value.
        new: Option<serde_json::Value>,
    },
    /// An input holds different content (`None`: the input was added or removed).
    InputChanged {
        /// The input's name.
        name: String,
        /// Previous tree.
        old: Option<TreeDigest>,
        /// New tree.
        new: Option<TreeDigest>,
    },
    /// An input comes from a node that runs first; its new output decides (early cutoff).
    UpstreamRuns {
        /// The input's name.
        name: String,
        /// The node producing it.
        node: String,
    },
    /// The kind's version changed.
    KindVersion {
        /// Previous version.
        old: u32,
        /// Current version.
        new: u32,
    },
    /// The kind itself changed.
    KindChanged {
        /// Previous kind.
        old: String,
        /// Current kind.
        new: String,
    },
    /// The salt changed.
    SaltChanged {
        /// Previous salt.
        old: String,
        /// Current salt.
        new: String,
    },
    /// The engine's key schema changed.
    SchemaChanged {
        /// Previous schema.
        old: u32,
    },
    /// The key is unchanged but no usable record exists (removed by gc, failed before).
    NoRecord {
        /// The key.
        key: ActionKey,
    },
    /// A record exists but its outputs are missing or corrupt.
    BrokenRecord {
        /// What is wrong.
        detail: String,
    },
}

fn show_json(value: &Option<serde_json::Value>) -> String {
    match value {
        Some(json) => Value::from_json(json).to_string(),
        None => "(unset)".to_string(),
    }
}

fn show_digest(digest: &Option<TreeDigest>) -> String {
    match digest {
        Some(digest) => format!("{}…", &digest.to_string()[..19]),
        None => "(none)".to_string(),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => write!(f, "new"),
            Reason::Forced => write!(f, "forced"),
            Reason::ParamChanged { name, old, new } => {
                write!(
                    f,
                    "param `{name}` changed: {} -> {}",
                    show_json(old),
                    show_json(new)
                )
            }
            Reason::InputChanged { name, old, new } => write!(
                f,
                "input `{name}` changed: {} -> {}",
                show_digest(old),
                show_digest(new)
            ),
            Reason::UpstreamRuns { name, node } => {
                write!(f, "input `{name}` waits on `{node}`, which runs")
            }
            Reason::KindVersion { old, new } => write!(f, "kind version bumped: {old} -> {new}"),
            Reason::KindChanged { old, new } => write!(f, "kind changed: `{old}` -> `{new}`"),
            Reason::SaltChanged { old, new } => write!(f, "salt changed: {old:?} -> {new:?}"),
            Reason::SchemaChanged { old } => {
                write!(f, "key schema changed: {old} -> {SCHEMA_VERSION}")
            }
            Reason::NoRecord { key } => write!(f, "no cached result for `{key}`"),
            Reason::BrokenRecord { detail } => write!(f, "cached result unusable: {detail}"),
        }
    }
}

/// What changed between a previous record and the node as it stands now. Inputs are
/// compared only where their new digest is known (`Some`); pending inputs are reported by
/// the caller as [`Reason::UpstreamRuns`].
pub fn explain(
    previous: &ActionRecord,
    kind: &str,
    kind_version: u32,
    params: &BTreeMap<String, Value>,
    inputs: &BTreeMap<String, Option<TreeDigest>>,
    salt: &str,
) -> Vec<Reason> {
    let old = &previous.components;
    let mut reasons = Vec::new();
    if old.schema != SCHEMA_VERSION {
        reasons.push(Reason::SchemaChanged { old: old.schema });
    }
    if old.kind != kind {
        reasons.push(Reason::KindChanged {
            old: old.kind.clone(),
            new: kind.to_string(),
        });
    } else if old.kind_version != kind_version {
        reasons.push(Reason::KindVersion {
            old: old.kind_version,
            new: kind_version,
        });
    }
    let old_params = old.params.as_object().cloned().unwrap_or_default();
    let new_params = Value::Table(params.clone()).to_json();
    let new_params = new_params.as_object().cloned().unwrap_or_default();
    let mut names: Vec<&String> = old_params.keys().chain(new_params.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let before = old_params.get(name);
        let after = new_params.get(name);
        if before != after {
            reasons.push(Reason::ParamChanged {
                name: name.clone(),
                old: before.cloned(),
                new: after.cloned(),
            });
        }
    }
    let mut input_names: Vec<&String> = old.inputs.keys().chain(inputs.keys()).collect();
    input_names.sort();
    input_names.dedup();
    for name in input_names {
        let before = old.inputs.get(name).copied();
        match inputs.get(name) {
            Some(None) => {} // pending: reported by the caller
            Some(Some(after)) if before == Some(*after) => {}
            Some(after) => reasons.push(Reason::InputChanged {
                name: name.clone(),
                old: before,
                new: *after,
            }),
            None => reasons.push(Reason::InputChanged {
                name: name.clone(),
                old: before,
                new: None,
            }),
        }
    }
    if old.salt != salt {
        reasons.push(Reason::SaltChanged {
            old: old.salt.clone(),
            new: salt.to_string(),
        });
    }
    reasons
}
