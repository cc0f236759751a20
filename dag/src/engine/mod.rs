//! The engine: plans a workflow against the store and runs what is not cached.
//!
//! Keys are resolved bottom-up: a node's key needs the output digests of its inputs, so a
//! node whose input will be recomputed has no key until that input is published. This is
//! what gives early cutoff: if the recomputed input has the same bytes, the key is the same
//! and the node is a hit. The scheduler runs ready nodes as tokio tasks within a
//! [`ResourcePool`]; a node that misses takes a lease on its key, so a second runner on the
//! same store waits for the result instead of computing it again.

pub mod lineage;
pub mod plan;
mod task;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peirce_store::{ActionKey, BlobDigest, Lookup, StatCache, Store, TreeDigest};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::key::KeyInput;
use crate::kind::{NodeEvent, Registry};
use crate::resources::ResourcePool;
use crate::runs::{
    new_run_id, now_seconds, NodeRef, NodeRun, NodeStatus, RunRecord, RunStatus, WorkflowRef,
};
use crate::spec::{InputRef, NodeSpec, Workflow};
pub use plan::Reason;

/// Errors that stop a plan or a run as a whole (a failing node is not one of them).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] peirce_store::Error),
    /// The workflow cannot run here (unknown kind, resources the machine lacks).
    #[error("{0}")]
    Invalid(String),
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// CPU slots.
    pub cpus: u32,
    /// GPU device ids.
    pub gpus: Vec<u32>,
    /// Memory in bytes for the nodes' `resources.memory` asks, together (default: the
    /// machine's; `u64::MAX` where that is not known).
    pub memory: u64,
    /// Nodes to run even when cached.
    pub force: BTreeSet<String>,
    /// Run every node even when cached.
    pub force_all: bool,
    /// How long a lease lives without a heartbeat.
    pub lease_ttl: Duration,
    /// Where per-node scratch folders go.
    pub scratch_root: PathBuf,
    /// Keep failed nodes' scratch folders for inspection.
    pub keep_failed_scratch: bool,
    /// A run with `--set` overrides becomes the workflow's latest too (`--as-latest`);
    /// otherwise it is an experiment and the latest stays the workflow as written.
    pub as_latest: bool,
    /// Nodes whose kind runs elsewhere (a cluster job: the Slurm executor wraps their kinds,
    /// docs/architecture.md §21): they take no slots from this machine's pool and are not
    /// checked against its size; their kinds get the CPUs and GPU count they ask for.
    pub placed_elsewhere: BTreeSet<String>,
}

impl EngineOptions {
    /// Defaults for a machine: all its cores, no GPUs, scratch under `scratch_root`.
    pub fn new(scratch_root: PathBuf) -> Self {
        EngineOptions {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            gpus: Vec::new(),
            memory: crate::resources::machine_memory().unwrap_or(u64::MAX),
            force: BTreeSet::new(),
            force_all: false,
            lease_ttl: Duration::from_secs(30),
            scratch_root,
            keep_failed_scratch: true,
            as_latest: false,
            placed_elsewhere: BTreeSet::new(),
        }
    }
}

/// What the plan says of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlanState {
    /// A complete result exists.
    Cached {
        /// Its key.
        key: ActionKey,
        /// Its output.
        output: TreeDigest,
    },
    /// It will run (or may, once its inputs are known), for these reasons.
    Runs {
        /// Its key, when its inputs are all known.
        key: Option<ActionKey>,
        /// Why.
        reasons: Vec<Reason>,
    },
}

/// One node of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedNode {
    /// Node name.
    pub node: String,
    /// Its kind.
    pub kind: String,
    /// Input name to the node it reads, for inputs from other nodes: the graph's edges
    /// (external paths are not listed).
    pub inputs: BTreeMap<String, String>,
    /// Cached or runs.
    #[serde(flatten)]
    pub state: PlanState,
}

/// What the engine reports while running.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// The run started; `total` nodes.
    RunStarted {
        /// Run id.
        run: String,
        /// Node count.
        total: usize,
    },
    /// A node was served from the cache (`by_peer`: another runner just computed it).
    Cached {
        /// Node.
        node: String,
        /// Output.
        output: TreeDigest,
        /// Computed moments ago by a concurrent runner.
        by_peer: bool,
    },
    /// A node started executing.
    Started {
        /// Node.
        node: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// Why it runs.
        reasons: Vec<Reason>,
    },
    /// A running node reported something.
    Progress {
        /// Node.
        node: String,
        /// What.
        event: NodeEvent,
    },
    /// A node waits for a lease held by another runner.
    Waiting {
        /// Node.
        node: String,
        /// The lease holder.
        holder: String,
    },
    /// A node failed and will be retried.
    Retrying {
        /// Node.
        node: String,
        /// The attempt that failed.
        attempt: u32,
        /// Delay before the next attempt.
        delay: Duration,
        /// The failure.
        error: String,
    },
    /// A node finished executing (ran, failed, skipped or cancelled).
    Finished {
        /// Node.
        node: String,
        /// Outcome and timings.
        run: NodeRun,
    },
}

/// Plans and runs workflows against one store.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    registry: Registry,
    options: EngineOptions,
    pool: ResourcePool,
    stat_cache: Arc<Mutex<StatCache>>,
}

impl Engine {
    /// An engine over `store`, with the kinds in `registry`.
    pub fn new(store: Store, registry: Registry, options: EngineOptions) -> Self {
        // Records this engine reads are bound to their keys (docs/architecture.md §15).
        store.set_key_check(crate::key::check_components);
        let stat_cache = match store.local_root() {
            Some(root) => StatCache::load(&root.join("statcache.bin")),
            None => StatCache::in_memory(),
        };
        let pool = ResourcePool::with_memory(options.cpus, options.gpus.clone(), options.memory);
        Engine {
            store,
            registry,
            options,
            pool,
            stat_cache: Arc::new(Mutex::new(stat_cache)),
        }
    }

    /// The same engine with the GPU devices `gpus`, and `memory` bytes when given, in its
    /// resource pool.
    pub fn with_resources(mut self, gpus: Vec<u32>, memory: Option<u64>) -> Self {
        self.options.gpus = gpus;
        if let Some(memory) = memory {
            self.options.memory = memory;
        }
        self.pool = ResourcePool::with_memory(
            self.options.cpus,
            self.options.gpus.clone(),
            self.options.memory,
        );
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Digests of every external input of the workflow, hashed by content (stat-cached).
    fn hash_external_inputs(
        &self,
        workflow: &Workflow,
    ) -> Result<HashMap<PathBuf, TreeDigest>, EngineError> {
        let mut cache = self.stat_cache.lock().expect("stat cache lock");
        let mut digests = HashMap::new();
        for node in &workflow.nodes {
            for input in node.inputs.values() {
                if let InputRef::Path(path) = input {
                    if !digests.contains_key(path) {
                        let (_, digest) = cache.hash_path(path)?;
                        digests.insert(path.clone(), digest);
                    }
                }
            }
        }
        cache.save()?;
        Ok(digests)
    }

    fn forced(&self, node: &str) -> bool {
        self.options.force_all || self.options.force.contains(node)
    }

    /// The reasons `node` must run, against the previous record of the same node.
    async fn reasons(
        &self,
        previous: Option<&WorkflowRef>,
        node: &NodeSpec,
        version: u32,
        inputs: &BTreeMap<String, Option<TreeDigest>>,
        key: Option<ActionKey>,
    ) -> Vec<Reason> {
        let mut reasons: Vec<Reason> = Vec::new();
        if self.forced(&node.name) {
            reasons.push(Reason::Forced);
        }
        for (name, digest) in inputs {
            if digest.is_none() {
                if let Some(InputRef::Node(upstream)) = node.inputs.get(name) {
                    reasons.push(Reason::UpstreamRuns {
                        name: name.clone(),
                        node: upstream.clone(),
                    });
                }
            }
        }
        let previous_record = match previous.and_then(|found| found.nodes.get(&node.name)) {
            Some(node_ref) => self.store.get_action(node_ref.key).await.ok().flatten(),
            None => None,
        };
        match previous_record {
            Some(record) => {
                let changes = plan::explain(
                    &record,
                    &node.kind,
                    version,
                    &node.params,
                    inputs,
                    &node.salt,
                );
                if changes.is_empty() && reasons.is_empty() {
                    if let Some(key) = key {
                        reasons.push(Reason::NoRecord { key });
                    }
                }
                reasons.extend(changes);
            }
            None if reasons
                .iter()
                .all(|r| matches!(r, Reason::UpstreamRuns { .. })) =>
            {
                reasons.insert(0, Reason::New)
            }
            None => {}
        }
        reasons
    }

    /// A dry run: what is cached and what would run, and why. Executes nothing.
    pub async fn plan(&self, workflow: &Workflow) -> Result<Vec<PlannedNode>, EngineError> {
        let external = self.hash_external_inputs(workflow)?;
        let previous = WorkflowRef::load(&self.store, &workflow.name).await;
        let mut outputs: HashMap<&str, Option<TreeDigest>> = HashMap::new();
        let mut planned = Vec::with_capacity(workflow.nodes.len());
        for node in &workflow.nodes {
            let kind = self.kind(node)?;
            let inputs =
                resolve_inputs(node, &external, |name| outputs.get(name).copied().flatten());
            let version = kind.version();
            let key = complete(&inputs).map(|inputs| {
                KeyInput {
                    kind: &node.kind,
                    kind_version: version,
                    params: &node.params,
                    inputs: &inputs,
                    salt: &node.salt,
                }
                .key()
            });
            let mut broken = None;
            let mut cached = None;
            if let (Some(key), false) = (key, self.forced(&node.name)) {
                match self.store.lookup(key).await? {
                    Lookup::Hit(record) => cached = Some(record.output),
                    Lookup::Broken { reason } => broken = Some(reason),
                    Lookup::Miss => {}
                }
            }
            let state = match cached {
                Some(output) => PlanState::Cached {
                    key: key.expect("hits have keys"),
                    output,
                },
                None => {
                    let mut reasons = self
                        .reasons(previous.as_ref(), node, version, &inputs, key)
                        .await;
                    if let Some(detail) = broken {
                        reasons.retain(|reason| !matches!(reason, Reason::NoRecord { .. }));
                        reasons.insert(0, Reason::BrokenRecord { detail });
                    }
                    PlanState::Runs { key, reasons }
                }
            };
            outputs.insert(&node.name, cached);
            planned.push(PlannedNode {
                node: node.name.clone(),
                kind: node.kind.clone(),
                inputs: node_inputs(node),
                state,
            });
        }
        Ok(planned)
    }

    /// Every check a run makes before it executes anything: each kind's own checks of its
    /// node (value ranges, combinations, placeholders) and resources this engine can never
    /// grant. `peirce plan` makes them too, so it rejects what `run` would.
    pub fn check(&self, workflow: &Workflow) -> Result<(), EngineError> {
        for node in &workflow.nodes {
            let kind = self.kind(node)?;
            let at = |message: String| {
                EngineError::Invalid(format!(
                    "Node `{}` ({}:{}): {message}",
                    node.name,
                    workflow.path.display(),
                    node.line
                ))
            };
            kind.validate(node).map_err(at)?;
            // A node placed on another machine (Slurm) is not sized against this one.
            if self.options.placed_elsewhere.contains(&node.name) {
                continue;
            }
            self.pool.check(&node.resources).map_err(at)?;
        }
        Ok(())
    }

    fn kind(&self, node: &NodeSpec) -> Result<Arc<dyn crate::kind::NodeKind>, EngineError> {
        self.registry.get(&node.kind).ok_or_else(|| {
            EngineError::Invalid(format!(
                "Node `{}` has unknown kind `{}`",
                node.name, node.kind
            ))
        })
    }

    /// Runs the workflow: every node that is not cached executes, in dependency order and in
    /// parallel where resources allow. Failures do not stop independent branches. Returns the
    /// run record (also stored under `runs/`).
    pub async fn run(
        &self,
        workflow: &Workflow,
        events: UnboundedSender<EngineEvent>,
        cancel: CancellationToken,
    ) -> Result<RunRecord, EngineError> {
        self.check(workflow)?;
        let external = Arc::new(self.hash_external_inputs(workflow)?);
        let previous = WorkflowRef::load(&self.store, &workflow.name).await;
        let mut record = RunRecord {
            id: new_run_id(),
            workflow: workflow.name.clone(),
            workflow_path: workflow.path.display().to_string(),
            started_at: now_seconds(),
            finished_at: None,
            status: RunStatus::Running,
            pinned: false,
            nodes: BTreeMap::new(),
            remote: None,
            workflow_digest: Some(workflow.digest.clone()),
            overrides: workflow.overrides.clone(),
            experiment: !workflow.overrides.is_empty() && !self.options.as_latest,
        };
        let transfers_before = self.store.transfer_stats();
        self.store
            .put_document(&RunRecord::location(&record.id), &record)
            .await?;
        let _ = events.send(EngineEvent::RunStarted {
            run: record.id.clone(),
            total: workflow.nodes.len(),
        });

        let shared = Arc::new(task::Shared {
            engine: self.clone(),
            workflow: workflow.clone(),
            run_id: record.id.clone(),
            previous,
            external,
            outputs: Mutex::new(HashMap::new()),
            events: events.clone(),
            cancel: cancel.clone(),
            recomputed: Mutex::new(BTreeMap::new()),
            pushed: Mutex::new(Vec::new()),
            push_failures: Mutex::new(BTreeMap::new()),
            owner: format!(
                "{}:{}:{:08x}",
                crate::host_name(),
                std::process::id(),
                rand::random::<u32>()
            ),
        });

        let index: HashMap<&str, &NodeSpec> = workflow
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut waiting: HashMap<&str, usize> = HashMap::new();
        for node in &workflow.nodes {
            let upstream: BTreeSet<&str> = node
                .inputs
                .values()
                .filter_map(|input| match input {
                    InputRef::Node(name) => Some(name.as_str()),
                    InputRef::Path(_) => None,
                })
                .collect();
            waiting.insert(&node.name, upstream.len());
            for name in upstream {
                dependents.entry(name).or_default().push(&node.name);
            }
        }
        let mut ready: VecDeque<&str> = workflow
            .nodes
            .iter()
            .filter(|n| waiting[n.name.as_str()] == 0)
            .map(|n| n.name.as_str())
            .collect();
        let mut running: JoinSet<(String, NodeRun)> = JoinSet::new();
        loop {
            while let Some(name) = ready.pop_front() {
                let node = index[name].clone();
                let shared = shared.clone();
                running.spawn(async move {
                    let run = task::run_node(&shared, &node).await;
                    (node.name, run)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (name, run) = match joined {
                Ok(done) => done,
                Err(error) => {
                    return Err(EngineError::Invalid(format!(
                        "A node task panicked: {error}"
                    )))
                }
            };
            let succeeded = matches!(run.status, NodeStatus::Cached | NodeStatus::Ran);
            let name = index[name.as_str()].name.as_str();
            record.nodes.insert(name.to_string(), run);
            for &dependent in dependents.get(name).map(Vec::as_slice).unwrap_or_default() {
                if !succeeded {
                    skip_downstream(dependent, name, &dependents, &index, &mut record, &events);
                    continue;
                }
                if record.nodes.contains_key(dependent) {
                    continue; // already skipped through another failed input
                }
                let count = waiting.get_mut(dependent).expect("every node has a count");
                *count -= 1;
                if *count == 0 {
                    ready.push_back(dependent);
                }
            }
        }
        // A node recomputed inside a consumer's task (its stored output was corrupt) ran.
        let recomputed = std::mem::take(&mut *shared.recomputed.lock().expect("recomputed lock"));
        record.nodes.extend(recomputed);
        if let Some(remote) = self.store.remote() {
            let mut pushed = std::mem::take(&mut *shared.pushed.lock().expect("pushed lock"));
            pushed.sort();
            record.remote = Some(crate::runs::RemoteActivity {
                url: remote.url().to_string(),
                transfers: self.store.transfer_stats().since(&transfers_before),
                pushed,
                push_failures: std::mem::take(
                    &mut *shared.push_failures.lock().expect("push failures lock"),
                ),
            });
        }
        record.finished_at = Some(now_seconds());
        let statuses: Vec<NodeStatus> = record.nodes.values().map(|n| n.status).collect();
        record.status = if statuses.contains(&NodeStatus::Cancelled) || cancel.is_cancelled() {
            RunStatus::Cancelled
        } else if statuses
            .iter()
            .any(|s| matches!(s, NodeStatus::Failed | NodeStatus::Skipped))
        {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        record.redact();
        self.store
            .put_document(&RunRecord::location(&record.id), &record)
            .await?;
        if self.store.remote().is_some() {
            // So that `peirce pull --run ID` works from another machine.
            if let Err(error) = self
                .store
                .push_document(&RunRecord::location(&record.id))
                .await
            {
                tracing::warn!(%error, "could not push the run record");
            }
        }
        // An experiment leaves the workflow's latest results as written (§17): its own
        // record is its ref, which gc keeps while it is recent or pinned.
        if !record.experiment {
            self.update_ref(workflow, &record).await?;
        }
        Ok(record)
    }

    async fn update_ref(&self, workflow: &Workflow, record: &RunRecord) -> Result<(), EngineError> {
        let mut workflow_ref = WorkflowRef::load(&self.store, &workflow.name)
            .await
            .unwrap_or_default();
        workflow_ref.workflow = workflow.name.clone();
        workflow_ref.workflow_path = record.workflow_path.clone();
        workflow_ref.latest_run = record.id.clone();
        // Nodes gone from the file lose their ref; nodes left out of this run keep theirs.
        let names: BTreeSet<&String> = workflow
            .nodes
            .iter()
            .map(|n| &n.name)
            .chain(&workflow.omitted)
            .collect();
        workflow_ref.nodes.retain(|name, _| names.contains(name));
        for (name, run) in &record.nodes {
            if let (Some(key), Some(output)) = (run.key, run.output) {
                workflow_ref
                    .nodes
                    .insert(name.clone(), NodeRef { key, output });
            }
        }
        self.store
            .put_document(&WorkflowRef::location(&workflow.name), &workflow_ref)
            .await?;
        Ok(())
    }

    /// Logs `gc` must keep although no action record names them: those of the nodes that
    /// failed in the latest run of each workflow (`peirce log NODE` shows them). A run record
    /// that cannot be read keeps nothing: these logs are a convenience, not a result.
    pub async fn live_failure_logs(store: &Store) -> Result<Vec<BlobDigest>, EngineError> {
        let mut logs = Vec::new();
        for location in WorkflowRef::locations(store).await? {
            let Ok(Some(found)) = store.get_document::<WorkflowRef>(&location).await else {
                continue;
            };
            let run = RunRecord::location(&found.latest_run);
            if let Ok(Some(record)) = store.get_document::<RunRecord>(&run).await {
                logs.extend(
                    record
                        .nodes
                        .values()
                        .filter(|node| node.status == NodeStatus::Failed)
                        .filter_map(|node| node.log),
                );
            }
        }
        Ok(logs)
    }

    /// Keys `gc` must keep: the latest key of every node of every workflow, every key of
    /// pinned runs, and every key of experiments younger than `keep_experiments`
    /// (docs/architecture.md §17). Fails closed: a workflow ref or run record that exists
    /// but cannot be read is an error (naming it), since the keys it would keep are
    /// unknown; unlike [`WorkflowRef::all`] and [`RunRecord::all`], which skip such
    /// documents for display.
    pub async fn live_keys(
        store: &Store,
        keep_experiments: Duration,
    ) -> Result<Vec<ActionKey>, EngineError> {
        let now = now_seconds();
        let mut live: BTreeSet<ActionKey> = BTreeSet::new();
        for location in WorkflowRef::locations(store).await? {
            if let Some(found) = store.get_document::<WorkflowRef>(&location).await? {
                live.extend(found.nodes.values().map(|n| n.key));
            }
        }
        for (id, _, _) in store.list_prefix("runs").await? {
            let location = RunRecord::location(&id);
            if let Some(run) = store.get_document::<RunRecord>(&location).await? {
                if run.kept_by_gc(now, keep_experiments) {
                    live.extend(run.nodes.values().filter_map(|n| n.key));
                }
            }
        }
        Ok(live.into_iter().collect())
    }
}

fn skip_downstream<'a>(
    node: &'a str,
    failed: &str,
    dependents: &HashMap<&'a str, Vec<&'a str>>,
    index: &HashMap<&'a str, &'a NodeSpec>,
    record: &mut RunRecord,
    events: &UnboundedSender<EngineEvent>,
) {
    if record.nodes.contains_key(node) {
        return;
    }
    let run = NodeRun {
        kind: index[node].kind.clone(),
        status: NodeStatus::Skipped,
        key: None,
        output: None,
        duration_s: 0.0,
        queued_s: 0.0,
        attempts: 0,
        error: Some(format!("input `{failed}` did not complete")),
        log: None,
        jobs: Vec::new(),
    };
    let _ = events.send(EngineEvent::Finished {
        node: node.to_string(),
        run: run.clone(),
    });
    record.nodes.insert(node.to_string(), run);
    for &next in dependents.get(node).map(Vec::as_slice).unwrap_or_default() {
        skip_downstream(next, node, dependents, index, record, events);
    }
}

/// Input name to the node it reads, for a node's inputs from other nodes.
pub fn node_inputs(node: &NodeSpec) -> BTreeMap<String, String> {
    node.inputs
        .iter()
        .filter_map(|(name, input)| match input {
            InputRef::Node(upstream) => Some((name.clone(), upstream.clone())),
            InputRef::Path(_) => None,
        })
        .collect()
}

/// Input name to digest; `None` where the producing node has no known output yet.
fn resolve_inputs<'a>(
    node: &NodeSpec,
    external: &HashMap<PathBuf, TreeDigest>,
    output_of: impl Fn(&str) -> Option<TreeDigest> + 'a,
) -> BTreeMap<String, Option<TreeDigest>> {
    node.inputs
        .iter()
        .map(|(name, input)| {
            let digest = match input {
                InputRef::Node(upstream) => output_of(upstream),
                InputRef::Path(path) => external.get(path).copied(),
            };
            (name.clone(), digest)
        })
        .collect()
}

/// The inputs, if every digest is known.
fn complete(inputs: &BTreeMap<String, Option<TreeDigest>>) -> Option<BTreeMap<String, TreeDigest>> {
    inputs
        .iter()
        .map(|(name, digest)| digest.map(|d| (name.clone(), d)))
        .collect()
}
