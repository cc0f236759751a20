//! One node's life in a run: cache check, lease, execution with retries, publish.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peirce_store::{
    ActionKey, ActionRecord, ChangedInput, Error as StoreError, Lease, Lookup, MaterializedInput,
    Store, TreeDigest,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{complete, resolve_inputs, Engine, EngineEvent, Reason};
use crate::key::KeyInput;
use crate::kind::{NodeContext, NodeError, NodeEvent, NodeKind};
use crate::runs::{now_seconds, NodeRun, NodeStatus, WorkflowRef};
use crate::spec::{InputRef, NodeSpec, Workflow};

/// State shared by the node tasks of one run.
pub(super) struct Shared {
    pub engine: Engine,
    pub workflow: Workflow,
    pub run_id: String,
    pub previous: Option<WorkflowRef>,
    pub external: Arc<HashMap<PathBuf, TreeDigest>>,
    /// Output digests of nodes completed in this run.
    pub outputs: Mutex<HashMap<String, TreeDigest>>,
    pub events: UnboundedSender<EngineEvent>,
    pub cancel: CancellationToken,
    /// This runner's identity in leases.
    pub owner: String,
    /// Nodes recomputed inside another node's task (their output was corrupt or lost).
    pub recomputed: Mutex<BTreeMap<String, NodeRun>>,
    /// Nodes whose results were pushed to the remote.
    pub pushed: Mutex<Vec<String>>,
    /// Nodes whose results could not be pushed, with the error.
    pub push_failures: Mutex<BTreeMap<String, String>>,
}

enum Failure {
    /// The node failed; the message is for the user.
    Node(NodeError),
    /// An input's blob was missing or corrupt; its producer must be recomputed.
    BadInput { input: String },
}

impl Shared {
    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    fn output_of(&self, name: &str) -> Option<TreeDigest> {
        self.outputs
            .lock()
            .expect("outputs lock")
            .get(name)
            .copied()
    }
}

fn node_run(node: &NodeSpec, status: NodeStatus, started: Instant) -> NodeRun {
    NodeRun {
        kind: node.kind.clone(),
        status,
        key: None,
        output: None,
        duration_s: started.elapsed().as_secs_f64(),
        queued_s: 0.0,
        attempts: 0,
        error: None,
        log: None,
        jobs: Vec::new(),
    }
}

/// Runs one node to an outcome; never returns an error (failures are outcomes).
pub(super) async fn run_node(shared: &Arc<Shared>, node: &NodeSpec) -> NodeRun {
    let started = Instant::now();
    let mut run = node_run(node, NodeStatus::Failed, started);
    let forced = shared.engine.forced(&node.name);
    let result = ensure(shared, node, &mut run, 0, forced).await;
    run.duration_s = started.elapsed().as_secs_f64();
    match result {
        Ok(output) => {
            run.output = Some(output);
            shared
                .outputs
                .lock()
                .expect("outputs lock")
                .insert(node.name.clone(), output);
        }
        Err(NodeError::Cancelled) => run.status = NodeStatus::Cancelled,
        Err(error) => {
            run.status = NodeStatus::Failed;
            // The class goes after the first line; the lines of the log shown follow.
            let text = error.to_string();
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            let mut shown = format!("{first} ({})", error.class());
            if !rest.is_empty() {
                shown.push('\n');
                shown.push_str(rest);
            }
            run.error = Some(shown);
        }
    }
    if run.status != NodeStatus::Cached {
        shared.emit(EngineEvent::Finished {
            node: node.name.clone(),
            run: run.clone(),
        });
    }
    run
}

/// Makes sure `node` has a complete result: a cache hit, or an execution. `depth` bounds
/// the recomputation of producers whose outputs turned out corrupt. A `forced` node
/// executes whatever the cache holds, also when it is retried after such a recomputation
/// (its key is often unchanged then, and a lookup would find its old record).
fn ensure<'a>(
    shared: &'a Arc<Shared>,
    node: &'a NodeSpec,
    run: &'a mut NodeRun,
    depth: u32,
    forced: bool,
) -> futures::future::BoxFuture<'a, Result<TreeDigest, NodeError>> {
    Box::pin(async move {
        let engine = &shared.engine;
        let kind = engine
            .kind(node)
            .map_err(|error| NodeError::Internal(error.to_string()))?;
        let version = kind.version();
        let inputs = resolve_inputs(node, &shared.external, |name| shared.output_of(name));
        let inputs = complete(&inputs).ok_or_else(|| {
            NodeError::Internal(format!(
                "node `{}` started before its inputs were known",
                node.name
            ))
        })?;
        let key_input = KeyInput {
            kind: &node.kind,
            kind_version: version,
            params: &node.params,
            inputs: &inputs,
            salt: &node.salt,
        };
        let key = key_input.key();
        run.key = Some(key);
        let mut broken = None;
        if !forced {
            match lookup(shared, key).await? {
                Lookup::Hit(record) => {
                    run.status = NodeStatus::Cached;
                    shared.emit(EngineEvent::Cached {
                        node: node.name.clone(),
                        output: record.output,
                        by_peer: false,
                    });
                    return Ok(record.output);
                }
                Lookup::Broken { reason } => broken = Some(reason),
                Lookup::Miss => {}
            }
        }
        let known: BTreeMap<String, Option<TreeDigest>> = inputs
            .iter()
            .map(|(name, digest)| (name.clone(), Some(*digest)))
            .collect();
        let mut reasons = engine
            .reasons(shared.previous.as_ref(), node, version, &known, Some(key))
            .await;
        if let Some(detail) = broken {
            reasons.retain(|reason| !matches!(reason, Reason::NoRecord { .. }));
            reasons.insert(0, Reason::BrokenRecord { detail });
        }

        let waiting = Instant::now();
        let grant = if engine.options.placed_elsewhere.contains(&node.name) {
            None
        } else {
            tokio::select! {
                grant = engine.pool.acquire(&node.resources) => Some(grant),
                _ = shared.cancel.cancelled() => return Err(NodeError::Cancelled),
            }
        };
        run.queued_s += waiting.elapsed().as_secs_f64();
        let Some(lease) = take_lease(shared, node, key, forced).await? else {
            // Another runner published it while we waited.
            run.status = NodeStatus::Cached;
            let Lookup::Hit(record) = lookup(shared, key).await? else {
                return Err(NodeError::Internal("a peer's result vanished".into()));
            };
            shared.emit(EngineEvent::Cached {
                node: node.name.clone(),
                output: record.output,
                by_peer: true,
            });
            return Ok(record.output);
        };
        let heartbeat = spawn_heartbeat(shared, lease.clone());
        let result = execute(
            shared,
            node,
            kind.as_ref(),
            &key_input,
            key,
            reasons,
            grant,
            run,
        )
        .await;
        heartbeat.abort();
        let _ = engine.store.release_lease(&lease).await;
        match result {
            Ok(output) => {
                run.status = NodeStatus::Ran;
                Ok(output)
            }
            Err(Failure::Node(error)) => Err(error),
            Err(Failure::BadInput { input }) if depth < 2 => {
                // The producer's output was corrupt or lost: recompute it, then retry.
                let Some(InputRef::Node(upstream)) = node.inputs.get(&input) else {
                    return Err(NodeError::BadInput(format!(
                        "external input `{input}` could not be read"
                    )));
                };
                let upstream_spec = shared
                    .workflow
                    .node(upstream)
                    .expect("validated input")
                    .clone();
                shared.emit(EngineEvent::Progress {
                    node: node.name.clone(),
                    event: crate::kind::NodeEvent::Message(format!(
                        "input `{input}` from `{upstream}` is corrupt or missing in the store; recomputing `{upstream}`"
                    )),
                });
                let started = Instant::now();
                let mut upstream_run = node_run(&upstream_spec, NodeStatus::Failed, started);
                // The producer reruns because its record is now broken, forced or not.
                let output =
                    ensure(shared, &upstream_spec, &mut upstream_run, depth + 1, false).await?;
                upstream_run.output = Some(output);
                upstream_run.duration_s = started.elapsed().as_secs_f64();
                shared
                    .outputs
                    .lock()
                    .expect("outputs lock")
                    .insert(upstream.clone(), output);
                shared.emit(EngineEvent::Finished {
                    node: upstream.clone(),
                    run: upstream_run.clone(),
                });
                shared
                    .recomputed
                    .lock()
                    .expect("recomputed lock")
                    .insert(upstream.clone(), upstream_run);
                ensure(shared, node, run, depth + 1, forced).await
            }
            Err(Failure::BadInput { input }) => Err(NodeError::BadInput(format!(
                "input `{input}` stays corrupt after recomputing it"
            ))),
        }
    })
}

async fn lookup(shared: &Shared, key: ActionKey) -> Result<Lookup, NodeError> {
    shared.engine.store.lookup(key).await.map_err(store_error)
}

fn store_error(error: StoreError) -> NodeError {
    if error.is_transient() {
        NodeError::Transient(error.to_string())
    } else {
        NodeError::Internal(error.to_string())
    }
}

/// A failure to publish a node's output folder. What the node left there (a dangling link,
/// a name that is not UTF-8 or not a valid tree name) fails the node, never retried since
/// the same command leaves the same files; the folder is kept for inspection. Anything
/// else is the store's (docs/architecture.md §12).
fn output_error(error: StoreError) -> NodeError {
    match error {
        StoreError::Unstorable { .. } | StoreError::InvalidName { .. } => NodeError::Failed(
            format!("{error}; the node left it in its output folder, which is kept"),
        ),
        other => store_error(other),
    }
}

/// Takes the lease on `key`; while another runner holds it, waits for its result.
/// Returns `None` when the result appeared meanwhile.
async fn take_lease(
    shared: &Shared,
    node: &NodeSpec,
    key: ActionKey,
    forced: bool,
) -> Result<Option<Lease>, NodeError> {
    let store = &shared.engine.store;
    let ttl = shared.engine.options.lease_ttl;
    let mut announced = false;
    let mut delay = Duration::from_millis(50);
    loop {
        if let Some(lease) = store
            .try_lease(key, &shared.owner, ttl)
            .await
            .map_err(store_error)?
        {
            // Someone may have finished between our miss and our lease.
            if !forced {
                if let Lookup::Hit(_) = lookup(shared, key).await? {
                    let _ = store.release_lease(&lease).await;
                    return Ok(None);
                }
            }
            return Ok(Some(lease));
        }
        let holder = store
            .lease_holder(key)
            .await
            .ok()
            .flatten()
            .map(|l| l.owner);
        if let Some(holder) = holder.filter(|holder| holder_is_dead(holder)) {
            tracing::info!(%key, %holder, "breaking the lease of a dead process on this host");
            store.break_lease(key, &holder).await.map_err(store_error)?;
            continue;
        }
        if !announced {
            let holder = store
                .lease_holder(key)
                .await
                .ok()
                .flatten()
                .map(|l| l.owner)
                .unwrap_or_default();
            shared.emit(EngineEvent::Waiting {
                node: node.name.clone(),
                holder,
            });
            announced = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.cancel.cancelled() => return Err(NodeError::Cancelled),
        }
        delay = (delay * 2).min(Duration::from_secs(1));
        if !forced {
            if let Lookup::Hit(_) = lookup(shared, key).await? {
                return Ok(None);
            }
        }
    }
}

/// Whether a lease owner (`host:pid:tag`) is a process on this host that no longer exists.
fn holder_is_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(_tag), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != crate::host_name() || pid <= 0 || pid == std::process::id() as i32 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn spawn_heartbeat(shared: &Arc<Shared>, mut lease: Lease) -> tokio::task::JoinHandle<()> {
    let store = shared.engine.store.clone();
    let ttl = shared.engine.options.lease_ttl;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            if !matches!(store.renew_lease(&mut lease, ttl).await, Ok(true)) {
                tracing::warn!(key = %lease.key, "lost the lease; a peer may duplicate this work (harmless)");
                return;
            }
        }
    })
}

/// Pauses before the action record is written, so tests can kill the runner mid-publish.
fn failpoint_before_record() -> Option<Duration> {
    std::env::var("PEIRCE_TEST_PAUSE_BEFORE_RECORD_MS")
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    shared: &Arc<Shared>,
    node: &NodeSpec,
    kind: &dyn NodeKind,
    key_input: &KeyInput<'_>,
    key: ActionKey,
    reasons: Vec<Reason>,
    grant: Option<crate::resources::Grant>,
    run: &mut NodeRun,
) -> Result<TreeDigest, Failure> {
    let engine = &shared.engine;
    let store = &engine.store;
    let scratch = engine
        .options
        .scratch_root
        .join(&shared.run_id)
        .join(format!("{}-{}", node.name, &key.hex()[..12]));
    let _ = std::fs::remove_dir_all(&scratch);
    let io = |error: std::io::Error| {
        Failure::Node(NodeError::Internal(format!(
            "scratch folder `{}`: {error}",
            scratch.display()
        )))
    };
    std::fs::create_dir_all(&scratch).map_err(io)?;

    // Inputs: node outputs are materialized (verified, hard-linked, their stamps kept for the
    // check after each attempt); external paths are used in place.
    let mut input_paths = BTreeMap::new();
    let mut materialized = Vec::new();
    for (name, input) in &node.inputs {
        let path = match input {
            InputRef::Path(path) => path.clone(),
            InputRef::Node(_) => {
                let dest = scratch.join("inputs").join(name);
                match store.materialize_input(key_input.inputs[name], &dest).await {
                    Ok(input) => {
                        materialized.push((name.clone(), input));
                        dest
                    }
                    Err(
                        StoreError::Corrupt { .. }
                        | StoreError::MissingBlob(_)
                        | StoreError::MissingTree(_),
                    ) => {
                        return Err(Failure::BadInput {
                            input: name.clone(),
                        })
                    }
                    Err(error) => return Err(Failure::Node(store_error(error))),
                }
            }
        };
        input_paths.insert(name.clone(), path);
    }

    let mut attempt = 0;
    let started_at = now_seconds();
    let started = Instant::now();
    let output_dir = scratch.join("out");
    let log_path = scratch.join("log.txt");
    loop {
        attempt += 1;
        run.attempts = attempt;
        // Where this attempt's lines start in the log, which keeps every attempt's.
        let log_start = std::fs::metadata(&log_path).map_or(0, |meta| meta.len());
        let _ = std::fs::remove_dir_all(&output_dir);
        std::fs::create_dir_all(&output_dir).map_err(io)?;
        shared.emit(EngineEvent::Started {
            node: node.name.clone(),
            attempt,
            reasons: reasons.clone(),
        });
        let result = attempt_once(
            shared,
            node,
            kind,
            &input_paths,
            &output_dir,
            &scratch,
            &log_path,
            &grant,
            &mut run.jobs,
        )
        .await;
        // Whatever the outcome, the node may have written into the store through an input
        // link: check before anything is retried or published (docs/architecture.md §5).
        if let Err(error) = check_inputs(store, node, &materialized).await {
            if !engine.options.keep_failed_scratch {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            return Err(Failure::Node(error));
        }
        match result {
            Ok(()) => break,
            Err(error)
                if error.is_retryable()
                    && attempt <= node.retries
                    && !shared.cancel.is_cancelled() =>
            {
                let delay = backoff(attempt);
                shared.emit(EngineEvent::Retrying {
                    node: node.name.clone(),
                    attempt,
                    delay,
                    error: error.to_string(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.cancel.cancelled() => return Err(Failure::Node(NodeError::Cancelled)),
                }
            }
            Err(NodeError::Cancelled) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(Failure::Node(NodeError::Cancelled));
            }
            Err(error) => {
                // The log is kept in the store (the run record names it, for `peirce log`),
                // and its last lines go into the error the user sees.
                run.log = store_log(store, &log_path).await;
                let kept = engine.options.keep_failed_scratch;
                let detail =
                    failure_detail(&node.name, &log_path, log_start, kept.then_some(&scratch));
                if !kept {
                    let _ = std::fs::remove_dir_all(&scratch);
                }
                return Err(Failure::Node(error.with_detail(&detail)));
            }
        }
    }
    drop(grant);

    // Publish: blobs (the output files hard-linked into the store, no copy), then the tree,
    // then the log, and the action record last (docs/architecture.md §4). The output folder's
    // names go at once, so the blobs' metadata holds still for other readers.
    let published = store.publish_owned_dir(&output_dir).await;
    let _ = std::fs::remove_dir_all(&output_dir);
    let (output, _) = published.map_err(|error| Failure::Node(output_error(error)))?;
    let log = match std::fs::metadata(&log_path) {
        Ok(meta) if meta.len() > 0 => Some(
            store
                .put_file(&log_path)
                .await
                .map_err(|e| Failure::Node(store_error(e)))?
                .0,
        ),
        _ => None,
    };
    run.log = log;
    if let Some(pause) = failpoint_before_record() {
        eprintln!(
            "peirce: failpoint: pausing {}ms before recording `{}`",
            pause.as_millis(),
            node.name
        );
        tokio::time::sleep(pause).await;
    }
    if shared.cancel.is_cancelled() {
        return Err(Failure::Node(NodeError::Cancelled));
    }
    let record = ActionRecord {
        key,
        output,
        components: key_input.components(),
        node: node.name.clone(),
        workflow: shared.workflow.name.clone(),
        log,
        started_at,
        duration_s: started.elapsed().as_secs_f64(),
        host: crate::host_name(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        input_sources: node
            .inputs
            .iter()
            .map(|(name, input)| {
                let source = match input {
                    InputRef::Node(upstream) => format!("node:{upstream}"),
                    InputRef::Path(path) => format!("path:{}", path.display()),
                };
                (name.clone(), source)
            })
            .collect(),
    };
    store
        .put_action(&record)
        .await
        .map_err(|e| Failure::Node(store_error(e)))?;
    let _ = std::fs::remove_dir_all(&scratch);
    push(shared, node, key).await;
    Ok(output)
}

/// How many lines of a failed node's log its error shows.
const TAIL_LINES: usize = 12;
/// How many characters of one log line the error shows.
const TAIL_LINE_CHARS: usize = 300;
/// How many bytes from the end of the log are read for its last lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// A failed node's log as a blob of the store, if it printed anything and the store takes it
/// (a log that cannot be stored costs the user `peirce log`, not the error).
async fn store_log(store: &Store, log_path: &std::path::Path) -> Option<peirce_store::BlobDigest> {
    match std::fs::metadata(log_path) {
        Ok(meta) if meta.len() > 0 => match store.put_file(log_path).await {
            Ok((digest, _)) => Some(digest),
            Err(error) => {
                tracing::warn!(%error, "could not store the log of a failed node");
                None
            }
        },
        _ => None,
    }
}

/// What follows a failed node's error: the last lines its last attempt printed (stdout and
/// stderr, from byte `start` of the log), and where the rest is.
fn failure_detail(
    node: &str,
    log_path: &std::path::Path,
    start: u64,
    scratch: Option<&std::path::PathBuf>,
) -> String {
    let lines = log_tail(log_path, start);
    let kept = match scratch {
        Some(scratch) => format!("; its working folder is kept: `{}`", scratch.display()),
        None => String::new(),
    };
    if lines.is_empty() {
        return format!("\n  it printed nothing{kept}");
    }
    let mut text = format!("\n  last lines of its output (all of it: `peirce log {node}`{kept}):");
    for line in lines {
        text.push_str("\n  | ");
        text.push_str(&line);
    }
    text
}

/// The last [`TAIL_LINES`] lines of the log from byte `start` on, each cut to
/// [`TAIL_LINE_CHARS`] characters.
fn log_tail(log_path: &std::path::Path, start: u64) -> Vec<String> {
    let Some((text, cut)) = crate::kind::read_log_end(log_path, start, TAIL_BYTES) else {
        return Vec::new();
    };
    let mut lines: Vec<&str> = text.lines().collect();
    // A read that starts inside the log begins mid-line.
    if cut && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(TAIL_LINES);
    lines[skip..]
        .iter()
        .map(|line| {
            let mut shown: String = line.chars().take(TAIL_LINE_CHARS).collect();
            if shown.len() < line.len() {
                shown.push_str(" ...");
            }
            shown
        })
        .collect()
}

/// Checks every input `node` was given against the stamps kept when it was materialized
/// (docs/architecture.md §5). A changed file is hashed again; a blob whose bytes no longer
/// match its name is quarantined by the store, so the records naming it become misses and
/// its producer reruns. Any changed input fails the node (bad input, never retried): its
/// result may rest on bytes other than its key says, so nothing is published for it.
async fn check_inputs(
    store: &Store,
    node: &NodeSpec,
    inputs: &[(String, MaterializedInput)],
) -> Result<(), NodeError> {
    let mut changes: Vec<(&str, ChangedInput)> = Vec::new();
    // Every input is checked, so that every blob changed is quarantined, not just the first.
    for (name, input) in inputs {
        for change in store.check_input(input).await.map_err(store_error)? {
            changes.push((name, change));
        }
    }
    let Some((name, first)) = changes.first() else {
        return Ok(());
    };
    let store_note = if changes.iter().any(|(_, change)| change.store_changed) {
        "; the store's copy was quarantined and the input's producer reruns on the next run"
    } else {
        ""
    };
    let others = match changes.len() {
        1 => String::new(),
        count => format!(" ({} more input files changed)", count - 1),
    };
    Err(NodeError::BadInput(format!(
        "node `{}` modified its input `{name}/{}` (`{}`, blob `{}`): {}{others}{store_note}. \
         Inputs are shared with the store and must not be written: write to the output folder \
         instead (if a node running at the same time wrote it, this node still read changed \
         bytes, so nothing is published for it)",
        node.name,
        first.name,
        first.path.display(),
        first.digest,
        first.detail,
    )))
}

/// Write-through: sends a fresh result to the remote (blobs, tree, record last) while the
/// lease is still held, so a peer waiting on the lease finds it there. A failed push does
/// not fail the node (the result is stored here); it is reported, and `peirce push` retries.
async fn push(shared: &Shared, node: &NodeSpec, key: ActionKey) {
    let store = &shared.engine.store;
    let Some(remote) = store.remote() else {
        return;
    };
    match store.push_action(key).await {
        Ok(_) => shared
            .pushed
            .lock()
            .expect("pushed lock")
            .push(node.name.clone()),
        Err(error) => {
            // Shown and recorded: redacted (docs/architecture.md §10).
            let error = peirce_store::redact_url(&error.to_string());
            tracing::warn!(node = %node.name, %error, "push failed");
            shared.emit(EngineEvent::Progress {
                node: node.name.clone(),
                event: crate::kind::NodeEvent::Message(format!(
                    "could not push the result to `{}`: {error} (it is stored locally; `peirce push` retries)",
                    remote.url()
                )),
            });
            shared
                .push_failures
                .lock()
                .expect("push failures lock")
                .insert(node.name.clone(), error);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    shared: &Arc<Shared>,
    node: &NodeSpec,
    kind: &dyn NodeKind,
    inputs: &BTreeMap<String, PathBuf>,
    output_dir: &std::path::Path,
    scratch: &std::path::Path,
    log_path: &std::path::Path,
    grant: &Option<crate::resources::Grant>,
    jobs: &mut Vec<String>,
) -> Result<(), NodeError> {
    let cancel = shared.cancel.child_token();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let forward = {
        let shared = shared.clone();
        let name = node.name.clone();
        tokio::spawn(async move {
            let mut jobs = Vec::new();
            while let Some(event) = receiver.recv().await {
                if let NodeEvent::Job(id) = &event {
                    jobs.push(id.clone());
                }
                shared.emit(EngineEvent::Progress {
                    node: name.clone(),
                    event,
                });
            }
            jobs
        })
    };
    // A node placed elsewhere gets what it asks for; its executor maps the GPU count onto
    // the devices it is given there.
    let (cpus, gpus) = match grant {
        Some(grant) => (grant.cpus(), grant.gpus()),
        None => (
            node.resources.cpus,
            (0..node
                .resources
                .gpu_millis
                .div_ceil(crate::resources::WHOLE_GPU))
                .collect(),
        ),
    };
    let context = NodeContext {
        node: node.name.clone(),
        workflow: shared.workflow.name.clone(),
        params: node.params.clone(),
        inputs: inputs.clone(),
        output_dir: output_dir.to_path_buf(),
        scratch_dir: scratch.to_path_buf(),
        log_path: log_path.to_path_buf(),
        cpus,
        gpus,
        cancel: cancel.clone(),
        events: sender,
    };
    let execution = kind.run(context);
    tokio::pin!(execution);
    let result = match node.timeout {
        None => execution.await,
        Some(limit) => tokio::select! {
            result = &mut execution => result,
            _ = tokio::time::sleep(limit) => {
                cancel.cancel();
                let _ = execution.await;
                Err(NodeError::Failed(format!("timed out after {}s", limit.as_secs_f64())))
            }
        },
    };
    jobs.extend(forward.await.unwrap_or_default());
    if shared.cancel.is_cancelled() {
        return Err(NodeError::Cancelled);
    }
    result
}

/// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s, ... capped at 30 s.
fn backoff(attempt: u32) -> Duration {
    let base = 0.5 * 2f64.powi(attempt.saturating_sub(1).min(6) as i32);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64((base * jitter).min(30.0))
}
