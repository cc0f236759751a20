//! The resolved form of a workflow: what the planner and scheduler consume.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::params::ParamSpec;
use crate::value::Value;

/// Where node kinds are looked up. The loader only needs names and parameter
/// schemas, so it does not depend on the crate that implements the kinds.
pub trait KindCatalog {
    fn kind_names(&self) -> Vec<&str>;
    fn params(&self, kind: &str) -> Option<Vec<ParamSpec>>;
}

/// A validated workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub path: PathBuf,
    pub name: String,
    pub remote: Option<String>,
    /// Where nodes run unless they say otherwise: `[workflow] executor` (`None`: the
    /// command line's choice, local by default).
    pub executor: Option<Executor>,
    /// The `[executor.slurm]` table.
    pub slurm: SlurmSettings,
    /// In topological order (inputs before their consumers), ties broken by file order.
    pub nodes: Vec<NodeSpec>,
    /// Nodes of the file that [`Workflow::select`] left out: not planned or run, but
    /// their latest results stay recorded.
    pub omitted: BTreeSet<String>,
    /// `blake3:<hex>` of the workflow file's text as read: run records keep it, so two
    /// runs tell whether the file changed between them.
    pub digest: String,
    /// The `--set` overrides applied, as typed (`top.env.TOP=3`); a run with any is an
    /// experiment (docs/architecture.md §17).
    pub overrides: Vec<String>,
}

impl Workflow {
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// The nodes `name` addresses: that node, or every instance of the sweep declared as
    /// `name` (`train` for `train[seed=1]`, `train[seed=2]`, ...); empty when neither.
    pub fn addressed(&self, name: &str) -> Vec<&str> {
        match self.node(name) {
            Some(node) => vec![node.name.as_str()],
            None => self
                .nodes
                .iter()
                .filter(|node| !node.bindings.is_empty() && super::base_name(&node.name) == name)
                .map(|node| node.name.as_str())
                .collect(),
        }
    }

    /// Only `targets` and the nodes they depend on, directly or not, in the same order;
    /// the whole workflow when `targets` is empty. A name the workflow lacks is an error
    /// naming it, with the closest node name as a hint.
    pub fn select(self, targets: &[String]) -> Result<Workflow, String> {
        if targets.is_empty() {
            return Ok(self);
        }
        for target in targets {
            if self.addressed(target).is_empty() {
                let hint =
                    super::error::closest(target, self.nodes.iter().map(|n| n.name.as_str()))
                        .map(|best| format!(" (did you mean `{best}`?)"))
                        .unwrap_or_default();
                return Err(format!(
                    "{} has no node `{target}`{hint}",
                    self.path.display()
                ));
            }
        }
        let mut keep: BTreeSet<&str> = targets
            .iter()
            .flat_map(|target| self.addressed(target))
            .collect();
        // Consumers come after their inputs, so one backward pass closes the set.
        for node in self.nodes.iter().rev() {
            if keep.contains(node.name.as_str()) {
                for input in node.inputs.values() {
                    if let InputRef::Node(upstream) = input {
                        keep.insert(upstream);
                    }
                }
            }
        }
        let keep: BTreeSet<String> = keep.into_iter().map(str::to_owned).collect();
        let (nodes, left_out): (Vec<NodeSpec>, Vec<NodeSpec>) = self
            .nodes
            .into_iter()
            .partition(|node| keep.contains(&node.name));
        let mut omitted = self.omitted;
        omitted.extend(left_out.into_iter().map(|node| node.name));
        Ok(Workflow {
            path: self.path,
            name: self.name,
            remote: self.remote,
            executor: self.executor,
            slurm: self.slurm,
            nodes,
            omitted,
            digest: self.digest,
            overrides: self.overrides,
        })
    }
}

/// One node with defaults and overrides applied and every parameter checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub kind: String,
    /// Complete: every declared parameter with a value or a default is present,
    /// coerced to its declared type.
    pub params: BTreeMap<String, Value>,
    /// Input name to where its content comes from.
    pub inputs: BTreeMap<String, InputRef>,
    pub resources: Resources,
    pub retries: u32,
    pub salt: String,
    pub timeout: Option<Duration>,
    /// Where this node runs, when it says (`executor = "local"` keeps a light node on the
    /// runner's machine under `--executor slurm`).
    pub executor: Option<Executor>,
    /// For an instance of a sweep, its labels and values in name order (`seed`, `1` for
    /// `train[seed=1]`); empty otherwise (docs/architecture.md §18).
    pub bindings: Vec<super::matrix::Binding>,
    /// 1-based line of the node's table header.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum InputRef {
    /// The output tree of another node of the same workflow.
    Node(String),
    /// An external file or folder: absolute and canonicalized.
    Path(PathBuf),
}

/// Where a node's kind executes (docs/architecture.md §21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Executor {
    /// On the machine of the runner.
    Local,
    /// As one Slurm batch job.
    Slurm,
}

impl Executor {
    /// Parses `"local"` or `"slurm"`.
    pub fn parse(text: &str) -> Result<Executor, String> {
        match text {
            "local" => Ok(Executor::Local),
            "slurm" => Ok(Executor::Slurm),
            other => Err(format!(
                "unknown executor `{other}`: expected `local` or `slurm`"
            )),
        }
    }
}

/// How Slurm jobs are submitted: the workflow's `[executor.slurm]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmSettings {
    /// `sbatch --partition`.
    pub partition: Option<String>,
    /// `sbatch --account`.
    pub account: Option<String>,
    /// `sbatch --qos`.
    pub qos: Option<String>,
    /// Further `sbatch` flags, passed as they are.
    pub flags: Vec<String>,
    /// `via_remote = true`: the compute nodes do not see the store folder; each job fetches
    /// its inputs from the run's remote and sends its output there (docs/architecture.md §21).
    pub via_remote: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u32,
    /// Thousandths of a GPU: 1000 is one whole GPU, 2000 two, 500 a half share of one.
    pub gpu_millis: u32,
    pub memory_bytes: Option<u64>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 1,
            gpu_millis: 0,
            memory_bytes: None,
        }
    }
}

/// Node names in file order with a hash index, so that resolving thousands of inputs
/// stays linear.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeNames {
    names: Vec<String>,
    index: std::collections::HashMap<String, usize>,
}

impl NodeNames {
    pub(crate) fn new(names: Vec<String>) -> Self {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        NodeNames { names, index }
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub(crate) fn get(&self, index: usize) -> Option<&String> {
        self.names.get(index)
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, String> {
        self.names.iter()
    }
}
