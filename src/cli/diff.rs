//! `diff`: what differs between two runs: the workflow file, the `--set` overrides, every
//! node parameter (from the action records of the nodes' keys) and every metric (the
//! leaves of any node's top-level `metrics.json`) (docs/architecture.md §17).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use peirce_dag::runs::{RunRecord, WorkflowRef};
use peirce_store::{Store, TreeDigest};
use serde_json::{json, Value};

use super::{Globals, Missing};

/// The file at the top of a node's output tree that holds its metrics: any JSON for
/// `peirce diff`; in the evaluation schema (`sets`), a row of `peirce report`.
pub const METRICS_FILE: &str = "metrics.json";

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first run: its id, or a unique start or end of it (`peirce runs` lists them)
    run_a: String,
    /// The second run; without it, RUN_A is compared with the latest run of its workflow
    /// as written (what an experiment changed)
    run_b: Option<String>,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

/// One value that differs: node, dotted name inside the node, and the two sides (`None`:
/// absent on that side).
#[derive(Debug, Clone, PartialEq)]
struct Change {
    node: String,
    name: String,
    a: Option<Value>,
    b: Option<Value>,
}

impl Change {
    fn json(&self) -> Value {
        json!({ "node": self.node, "name": self.name, "a": self.a, "b": self.b })
    }

    /// `top.env.TOP   "5" -> "3"`, with the difference for numbers.
    fn line(&self, width: usize) -> String {
        let shown = |value: &Option<Value>| value.as_ref().map_or("-".into(), Value::to_string);
        let delta = match (
            self.a.as_ref().and_then(Value::as_f64),
            self.b.as_ref().and_then(Value::as_f64),
        ) {
            (Some(a), Some(b)) => format!("  ({:+})", round(b - a)),
            _ => String::new(),
        };
        let name = format!("{}.{}", self.node, self.name);
        format!(
            "  {name:width$}  {} -> {}{delta}",
            shown(&self.a),
            shown(&self.b)
        )
    }
}

/// A difference of floats without the noise of binary fractions (`0.30000000000000004`).
fn round(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

/// Every leaf of a JSON document by dotted path. Objects nest by key; a list of objects
/// that each have a string `name` nests by that name (`sets.deduction.accuracy`, as an
/// `eval` node's metrics are read), any other list by index (`losses.0`).
pub fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, into: &mut BTreeMap<String, Value>) {
        let join = |key: &str| {
            if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            }
        };
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    walk(&join(key), inner, into);
                }
            }
            Value::Array(items) => {
                let names: Option<Vec<&str>> = items
                    .iter()
                    .map(|item| item.get("name").and_then(Value::as_str))
                    .collect();
                let unique = names.as_ref().is_some_and(|names| {
                    names.iter().collect::<BTreeSet<_>>().len() == names.len()
                });
                for (index, item) in items.iter().enumerate() {
                    let key = match (&names, unique) {
                        (Some(names), true) => names[index].to_string(),
                        _ => index.to_string(),
                    };
                    walk(&join(&key), item, into);
                }
            }
            leaf => {
                into.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut found = BTreeMap::new();
    walk("", value, &mut found);
    found
}

/// The changes between two maps of leaves, for `node`.
fn changes(node: &str, a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<Change> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|name| a.get(*name) != b.get(*name))
        .map(|name| Change {
            node: node.to_string(),
            name: name.clone(),
            a: a.get(name).cloned(),
            b: b.get(name).cloned(),
        })
        .collect()
}

/// A node's parameters in a run, as leaves; `None` when it has no key or its record is
/// gone (removed by gc).
async fn params(store: &Store, run: &RunRecord, node: &str) -> Option<BTreeMap<String, Value>> {
    let key = run.nodes.get(node)?.key?;
    let record = store.get_action(key).await.ok()??;
    Some(leaves(&record.components.params))
}

/// The leaves of a node's `metrics.json` in an output tree; empty when it has none.
pub async fn metrics(store: &Store, output: TreeDigest) -> anyhow::Result<BTreeMap<String, Value>> {
    let tree = store.get_tree(output).await?;
    let Some(entry) = tree.get(METRICS_FILE) else {
        return Ok(BTreeMap::new());
    };
    let bytes = store.get_bytes(entry.digest).await?;
    let document: Value = serde_json::from_slice(&bytes)
        .map_err(|error| anyhow!("its `{METRICS_FILE}` is not JSON: {error}"))?;
    Ok(leaves(&document))
}

pub async fn diff(globals: &Globals, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let store = globals.open_store(None, Missing::Fail)?;
    let find = |wanted: &str| {
        let (store, wanted) = (&store, wanted.to_owned());
        async move {
            RunRecord::find(store, &wanted)
                .await
                .map_err(|e| anyhow!(e))
        }
    };
    let (a, b) = match &args.run_b {
        Some(run_b) => (find(&args.run_a).await?, find(run_b).await?),
        None => {
            let b = find(&args.run_a).await?;
            let latest = WorkflowRef::load(&store, &b.workflow)
                .await
                .map(|found| found.latest_run)
                .ok_or_else(|| {
                    anyhow!(
                        "Workflow `{}` has no latest run as written to compare run {} with: name two runs",
                        b.workflow,
                        b.id
                    )
                })?;
            (find(&latest).await?, b)
        }
    };
    let nodes: BTreeSet<&String> = a.nodes.keys().chain(b.nodes.keys()).collect();
    let mut param_changes = Vec::new();
    let mut metric_changes = Vec::new();
    let mut notes = Vec::new();
    for node in nodes {
        let (run_a, run_b) = (a.nodes.get(node), b.nodes.get(node));
        if run_a.is_none() || run_b.is_none() {
            let side = if run_a.is_none() { &b.id } else { &a.id };
            notes.push(format!("`{node}` is only in run {side}"));
            continue;
        }
        let same_key = run_a.and_then(|run| run.key) == run_b.and_then(|run| run.key);
        if !same_key {
            match (
                params(&store, &a, node).await,
                params(&store, &b, node).await,
            ) {
                (Some(pa), Some(pb)) => param_changes.extend(changes(node, &pa, &pb)),
                _ => notes.push(format!(
                    "`{node}`: parameters unknown (no result in one of the runs, or its record was removed by gc)"
                )),
            }
        }
        let outputs = (
            run_a.and_then(|run| run.output),
            run_b.and_then(|run| run.output),
        );
        if let (Some(oa), Some(ob)) = outputs {
            if oa == ob {
                continue;
            }
            match (metrics(&store, oa).await, metrics(&store, ob).await) {
                (Ok(ma), Ok(mb)) => metric_changes.extend(changes(node, &ma, &mb)),
                (Err(error), _) | (_, Err(error)) => {
                    notes.push(format!("`{node}`: metrics unreadable: {error}"))
                }
            }
        }
    }
    if args.json {
        let list = |items: &[Change]| items.iter().map(Change::json).collect::<Vec<_>>();
        let side = |run: &RunRecord| {
            json!({
                "id": run.id,
                "workflow": run.workflow,
                "workflow_digest": run.workflow_digest,
                "overrides": run.overrides,
                "experiment": run.experiment,
            })
        };
        let json = json!({
            "a": side(&a),
            "b": side(&b),
            "params": list(&param_changes),
            "metrics": list(&metric_changes),
            "notes": notes,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let overrides = |run: &RunRecord| {
        if run.overrides.is_empty() {
            "as written".to_string()
        } else {
            run.overrides
                .iter()
                .map(|set| format!("--set {set}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    println!("a: run {} ({}): {}", a.id, a.workflow, overrides(&a));
    println!("b: run {} ({}): {}", b.id, b.workflow, overrides(&b));
    match (&a.workflow_digest, &b.workflow_digest) {
        (Some(da), Some(db)) if da == db => println!("workflow file: the same"),
        (Some(da), Some(db)) => println!("workflow file: changed ({da} -> {db})"),
        _ => println!("workflow file: unknown (a run recorded by an older peirce)"),
    }
    for (title, items) in [("params", &param_changes), ("metrics", &metric_changes)] {
        if items.is_empty() {
            println!("{title}: no differences");
            continue;
        }
        println!("{title}:");
        let width = items
            .iter()
            .map(|change| change.node.len() + 1 + change.name.len())
            .max()
            .unwrap_or(0);
        for change in items {
            println!("{}", change.line(width));
        }
    }
    for note in &notes {
        println!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_nest_objects_named_lists_and_indices() {
        let document = json!({
            "words": 30,
            "sets": [{"name": "deduction", "accuracy": 0.5}, {"name": "induction", "accuracy": 0.25}],
            "losses": [1.5, 0.5],
            "config": {"lr": 0.001, "tags": ["a"]}
        });
        let found = leaves(&document);
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "config.lr",
                "config.tags.0",
                "losses.0",
                "losses.1",
                "sets.deduction.accuracy",
                "sets.deduction.name",
                "sets.induction.accuracy",
                "sets.induction.name",
                "words"
            ]
        );
        assert_eq!(found["sets.induction.accuracy"], json!(0.25));
    }

    #[test]
    fn changes_list_what_differs_or_is_on_one_side_only() {
        let a = leaves(&json!({"x": 1, "y": "same", "gone": true}));
        let b = leaves(&json!({"x": 1.5, "y": "same", "new": 2}));
        let found = changes("n", &a, &b);
        let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["gone", "new", "x"]);
        assert_eq!(found[2].line(3), "  n.x  1 -> 1.5  (+0.5)");
        assert_eq!(found[0].line(6), "  n.gone  true -> -");
    }
}
