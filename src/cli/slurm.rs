//! The Slurm executor (docs/architecture.md §21): a node placed on Slurm runs as one batch
//! job, submitted with `sbatch` and the node's resources, that executes the node's kind with
//! the same binary (`peirce __run-node JOB.json`). The runner keeps everything else of a
//! local run: it plans, takes the lease, materializes the inputs into the node's scratch
//! folder, waits for the job, checks the inputs and publishes the output in the usual order.
//! So the job never touches the store, but the scratch folder (inside the store folder) must
//! be one the compute nodes see at the same path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeEvent, NodeKind, Registry};
use peirce_dag::params::ParamSpec;
use peirce_dag::spec::{NodeSpec, Resources, SlurmSettings, Workflow};
use peirce_dag::value::Value;
use serde::{Deserialize, Serialize};

/// What one job needs to run one node: written by the runner into the node's scratch
/// folder, read by `peirce __run-node`.
#[derive(Debug, Serialize, Deserialize)]
struct JobFile {
    kind: String,
    node: String,
    workflow: String,
    /// Parameters as JSON ([`Value::to_json`]).
    params: BTreeMap<String, serde_json::Value>,
    inputs: BTreeMap<String, PathBuf>,
    output_dir: PathBuf,
    scratch_dir: PathBuf,
    log_path: PathBuf,
    cpus: u32,
    gpus: Vec<u32>,
    /// Set when the job works from the remote, not from a shared store folder: then the
    /// paths above are the runner's, and the job uses folders of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remote: Option<RemoteJob>,
}

/// How a job that works from the remote (`via_remote`) finds its inputs and reports.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteJob {
    /// The remote's URL, as the runner opened it (credentials come from the environment,
    /// which sbatch passes on).
    url: String,
    /// Each input as a tree on the remote; `file` names the one file of an input that is a
    /// file, not a folder.
    inputs: BTreeMap<String, RemoteInput>,
    /// The folder on the remote where the job leaves its events ([`remote_events`]) and its
    /// [`RemoteResult`] ([`remote_result`]).
    location: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RemoteInput {
    tree: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

/// What a job that works from the remote leaves there for the runner: its output tree (sent
/// before this is written) or how it failed, and its log.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteResult {
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    log: Option<String>,
    #[serde(default)]
    error: Option<JobResult>,
}

/// How the kind failed inside the job, written beside the job file.
#[derive(Debug, Serialize, Deserialize)]
struct JobResult {
    class: String,
    message: String,
}

const JOB_FILE: &str = "slurm-job.json";
const RESULT_FILE: &str = "slurm-result.json";
/// The kind's events, one JSON [`NodeEvent`] a line, written by the job as they happen and
/// read by the runner as it polls (so a job's progress shows as a local node's does).
const EVENTS_FILE: &str = "slurm-events.jsonl";
/// How long Slurm may say nothing of a job before the runner gives it up.
const LOST_AFTER: Duration = Duration::from_secs(180);

/// A kind whose nodes run as Slurm jobs. Name, version and parameters are the wrapped
/// kind's, so keys (and cached results) are the same as a local run's.
struct SlurmKind {
    inner: Arc<dyn NodeKind>,
    /// The nodes placed on Slurm, with their resources and time limit; others run locally.
    nodes: Arc<BTreeMap<String, (Resources, Option<Duration>)>>,
    options: Arc<SlurmSettings>,
    /// This binary: compute nodes run it from the same path.
    program: PathBuf,
    /// Shared by the run's kinds: one `squeue` for all their jobs.
    poller: Arc<Poller>,
    /// With `via_remote`: the run's store (with its remote) and the remote's URL.
    remote: Option<(peirce_store::Store, String)>,
}

/// The registry whose kinds submit the nodes in `placed` to Slurm (and run the rest here).
/// `remote`: the run's store and its remote's URL, for jobs that work from the remote
/// (`via_remote`).
pub fn registry(
    base: &Registry,
    workflow: &Workflow,
    placed: &std::collections::BTreeSet<String>,
    options: &SlurmSettings,
    remote: Option<(peirce_store::Store, String)>,
) -> anyhow::Result<Registry> {
    let program = std::env::current_exe()
        .map_err(|error| anyhow::anyhow!("cannot find the peirce binary to submit: {error}"))?;
    let nodes: BTreeMap<String, (Resources, Option<Duration>)> = workflow
        .nodes
        .iter()
        .filter(|node| placed.contains(&node.name))
        .map(|node: &NodeSpec| (node.name.clone(), (node.resources, node.timeout)))
        .collect();
    let nodes = Arc::new(nodes);
    let options = Arc::new(options.clone());
    let poller = Arc::new(Poller::default());
    let mut registry = Registry::new();
    for kind in base.iter() {
        registry.register(SlurmKind {
            inner: kind.clone(),
            nodes: nodes.clone(),
            options: options.clone(),
            program: program.clone(),
            poller: poller.clone(),
            remote: remote.clone(),
        });
    }
    Ok(registry)
}

#[async_trait]
impl NodeKind for SlurmKind {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn version(&self) -> u32 {
        self.inner.version()
    }

    fn params(&self) -> Vec<ParamSpec> {
        self.inner.params()
    }

    fn validate(&self, node: &NodeSpec) -> Result<(), String> {
        self.inner.validate(node)
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        match self.nodes.get(&context.node) {
            None => self.inner.run(context).await,
            Some((resources, timeout)) => self.submit(context, resources, *timeout).await,
        }
    }
}

impl SlurmKind {
    /// Submits the node as one job, waits for it, and maps its end to an outcome.
    async fn submit(
        &self,
        context: NodeContext,
        resources: &Resources,
        timeout: Option<Duration>,
    ) -> Result<(), NodeError> {
        let scratch = &context.scratch_dir;
        let internal = |what: &str, error: &dyn std::fmt::Display| {
            NodeError::Internal(format!("{what} in `{}`: {error}", scratch.display()))
        };
        let job = JobFile {
            kind: self.inner.name().to_owned(),
            node: context.node.clone(),
            workflow: context.workflow.clone(),
            params: context
                .params
                .iter()
                .map(|(name, value)| (name.clone(), value.to_json()))
                .collect(),
            inputs: context.inputs.clone(),
            output_dir: context.output_dir.clone(),
            scratch_dir: scratch.clone(),
            log_path: context.log_path.clone(),
            cpus: context.cpus,
            gpus: context.gpus.clone(),
            remote: match &self.remote {
                Some((store, url)) => Some(RemoteJob {
                    url: url.clone(),
                    inputs: send_inputs(store, &context.inputs).await?,
                    location: remote_location(scratch),
                }),
                None => None,
            },
        };
        let job_path = scratch.join(JOB_FILE);
        let result_path = scratch.join(RESULT_FILE);
        let _ = std::fs::remove_file(&result_path);
        let _ = std::fs::remove_file(scratch.join(EVENTS_FILE));
        let text = serde_json::to_string_pretty(&job).expect("a job file serializes");
        let program = shell_quote(&self.program.to_string_lossy());
        if let (Some((store, _)), Some(remote_job)) = (&self.remote, &job.remote) {
            // As the result file above: no result an earlier attempt left is taken for this
            // one's.
            let remote = store.remote().expect("a remote");
            let _ = remote
                .delete_document(&remote_result(&remote_job.location))
                .await;
        }
        let script = if job.remote.is_some() {
            // The job file travels inside the script (sbatch sends it to the cluster): the
            // compute node need not see this folder.
            format!("#!/bin/sh\nexec {program} __run-node - <<'PEIRCE_JOB'\n{text}\nPEIRCE_JOB\n")
        } else {
            std::fs::write(&job_path, &text).map_err(|e| internal("writing the job file", &e))?;
            format!(
                "#!/bin/sh\nexec {program} __run-node {}\n",
                shell_quote(&job_path.to_string_lossy())
            )
        };
        let script_path = scratch.join("slurm-job.sh");
        std::fs::write(&script_path, script).map_err(|e| internal("writing the job script", &e))?;
        // A job working from the remote starts and logs in the compute node's /tmp.
        let (workdir, job_log) = match &job.remote {
            Some(_) => (
                PathBuf::from("/tmp"),
                PathBuf::from("/tmp/peirce-slurm-%j.out"),
            ),
            None => (scratch.clone(), scratch.join("slurm-%j.out")),
        };

        let mut command = tokio::process::Command::new("sbatch");
        command
            .arg("--parsable")
            .arg(format!("--job-name=peirce-{}", context.node))
            .arg(format!("--chdir={}", workdir.display()))
            .arg(format!("--output={}", job_log.display()))
            .args(sbatch_resource_flags(resources, ranks(&context), timeout))
            .args(self.sbatch_placement_flags())
            .arg(&script_path)
            .kill_on_drop(true);
        let output = command.output().await.map_err(|error| {
            NodeError::Internal(format!(
                "cannot run `sbatch` ({error}); is Slurm installed on this machine?"
            ))
        })?;
        if !output.status.success() {
            return Err(NodeError::BadInput(format!(
                "sbatch refused the job: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        // `--parsable` prints `ID` or `ID;CLUSTER`.
        let id = stdout
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(NodeError::Internal(format!(
                "sbatch printed no job id: `{}`",
                stdout.trim()
            )));
        }
        context.emit(NodeEvent::Job(id.clone()));
        context.emit(NodeEvent::Message(format!("Slurm job {id} submitted")));
        let state = self.wait(&context, &id).await;
        self.poller.forget(&id).await;
        let job_log = PathBuf::from(job_log.to_string_lossy().replace("%j", &id));
        let concluded = async {
            let state = state?;
            // When Slurm ended the job (cancelled, out of time or memory, lost), that is the
            // outcome, whatever the job's own result file says of the signal it got.
            let ended_by_slurm = matches!(
                state.state.as_str(),
                "CANCELLED"
                    | "TIMEOUT"
                    | "DEADLINE"
                    | "OUT_OF_MEMORY"
                    | "NODE_FAIL"
                    | "PREEMPTED"
                    | "BOOT_FAIL"
            );
            if ended_by_slurm {
                return outcome(&id, &state, &job_log);
            }
            if let Some((store, _)) = &self.remote {
                if let Some(result) = fetch_result(store, &context).await? {
                    return result;
                }
                return outcome(&id, &state, &job_log);
            }
            if let Ok(text) = std::fs::read(&result_path) {
                let result: JobResult = serde_json::from_slice(&text)
                    .map_err(|e| internal("reading the job's result", &e))?;
                return Err(NodeError::from_class(&result.class, result.message));
            }
            outcome(&id, &state, &job_log)
        }
        .await;
        // A job working from the remote logged in the compute node's /tmp: removed when this
        // machine sees it (a cluster of one machine).
        if self.remote.is_some() {
            let _ = std::fs::remove_file(&job_log);
        }
        concluded
    }

    fn sbatch_placement_flags(&self) -> Vec<String> {
        let options = &self.options;
        let mut flags = Vec::new();
        for (flag, value) in [
            ("partition", &options.partition),
            ("account", &options.account),
            ("qos", &options.qos),
        ] {
            if let Some(value) = value {
                flags.push(format!("--{flag}={value}"));
            }
        }
        flags.extend(options.flags.iter().cloned());
        flags
    }

    /// Polls the job until it ends (through the shared [`Poller`]); on cancellation (Ctrl-C,
    /// the node's timeout) cancels it and waits until Slurm says it ended, so that nothing
    /// writes into the output folder afterwards.
    async fn wait(&self, context: &NodeContext, id: &str) -> Result<JobState, NodeError> {
        let mut announced_running = false;
        let mut cancelled = false;
        let mut last_answer = std::time::Instant::now();
        let mut events = EventTail::new(self, context, id);
        loop {
            events.forward(context).await;
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = context.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    let _ = tokio::process::Command::new("scancel").arg(id).output().await;
                }
            }
            let Some(state) = self.poller.state(id).await else {
                // Slurm's controller may be restarting; a job it cannot tell about for
                // minutes is given up (and cancelled, in case it still runs).
                if last_answer.elapsed() > LOST_AFTER {
                    let _ = tokio::process::Command::new("scancel")
                        .arg(id)
                        .output()
                        .await;
                    if cancelled {
                        return Err(NodeError::Cancelled);
                    }
                    return Err(NodeError::Transient(format!(
                        "Slurm said nothing of job {id} for {}s (scontrol and sacct)",
                        LOST_AFTER.as_secs()
                    )));
                }
                continue;
            };
            last_answer = std::time::Instant::now();
            if state.state == "RUNNING" && !announced_running {
                announced_running = true;
                let host = state.node_list.clone().unwrap_or_default();
                context.emit(NodeEvent::Message(format!(
                    "Slurm job {id} running on {host}"
                )));
            }
            if state.is_final() {
                events.forward(context).await;
                if cancelled {
                    return Err(NodeError::Cancelled);
                }
                return Ok(state);
            }
        }
    }
}

/// The folder on the remote where the job of the node whose scratch folder is `scratch`
/// leaves its events and result: named by the run and the node's folder (`<node>-<key>`).
fn remote_location(scratch: &Path) -> String {
    let name = |path: Option<&Path>| {
        path.and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!("slurm/{}/{}", name(scratch.parent()), name(Some(scratch)))
}

/// The job's [`RemoteResult`] in its folder on the remote.
fn remote_result(location: &str) -> String {
    format!("{location}/result.json")
}

/// Job `job`'s `index`th batch of events in its folder on the remote (by job, so that no
/// batch an earlier attempt left is taken for this one's).
fn remote_events(location: &str, job: &str, index: u64) -> String {
    format!("{location}/events-{job}-{index}.json")
}

fn store_error(what: &str, error: impl std::fmt::Display) -> NodeError {
    NodeError::Transient(format!(
        "{what}: {}",
        peirce_store::redact_url(&error.to_string())
    ))
}

/// Sends each input (a folder, or a single file) to the remote as a tree, for a job that
/// works from the remote.
async fn send_inputs(
    store: &peirce_store::Store,
    inputs: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, RemoteInput>, NodeError> {
    let mut sent = BTreeMap::new();
    for (name, path) in inputs {
        let sending = |error| store_error(&format!("sending input `{name}` to the remote"), error);
        let (tree, file) = store.publish_path(path).await.map_err(sending)?;
        store.push_tree(tree, None).await.map_err(sending)?;
        sent.insert(
            name.clone(),
            RemoteInput {
                tree: tree.to_string(),
                file,
            },
        );
    }
    Ok(sent)
}

/// The result a job working from the remote left there: its output fetched into the output
/// folder and its log into the node's log. `None` when it left none.
async fn fetch_result(
    store: &peirce_store::Store,
    context: &NodeContext,
) -> Result<Option<Result<(), NodeError>>, NodeError> {
    let remote = store.remote().expect("a remote");
    let location = remote_result(&remote_location(&context.scratch_dir));
    let fetching = |error| store_error("fetching the job's result from the remote", error);
    let Some(result) = remote
        .get_document::<RemoteResult>(&location)
        .await
        .map_err(fetching)?
    else {
        return Ok(None);
    };
    let _ = remote.delete_document(&location).await;
    if let Some(log) = result.log.as_deref().and_then(|log| log.parse().ok()) {
        let bytes = store.get_bytes(log).await.map_err(fetching)?;
        // Appended: the node's log keeps every attempt's lines.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&context.log_path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
            .map_err(|error| {
                NodeError::Internal(format!("`{}`: {error}", context.log_path.display()))
            })?;
    }
    if let Some(error) = result.error {
        return Ok(Some(Err(NodeError::from_class(
            &error.class,
            error.message,
        ))));
    }
    let Some(output) = result
        .output
        .as_deref()
        .and_then(|output| output.parse::<peirce_store::BlobDigest>().ok())
    else {
        return Err(NodeError::Internal(format!(
            "the job's result on the remote (`{location}`) names no output"
        )));
    };
    store
        .materialize(output.cast(), &context.output_dir)
        .await
        .map_err(fetching)?;
    Ok(Some(Ok(())))
}

/// Follows a job's events: each call passes on those it wrote since the last, as the lines
/// it completed in its events file or, for a job working from the remote, the batches it
/// sent there (each removed once read).
enum EventTail {
    File {
        path: PathBuf,
        /// Bytes of the file passed on so far (whole lines).
        offset: u64,
    },
    Remote {
        remote: peirce_store::Store,
        location: String,
        job: String,
        /// The next batch to read.
        next: u64,
    },
}

impl EventTail {
    fn new(kind: &SlurmKind, context: &NodeContext, job: &str) -> Self {
        match &kind.remote {
            Some((store, _)) => EventTail::Remote {
                remote: store.remote().expect("a remote").clone(),
                location: remote_location(&context.scratch_dir),
                job: job.to_owned(),
                next: 0,
            },
            None => EventTail::File {
                path: context.scratch_dir.join(EVENTS_FILE),
                offset: 0,
            },
        }
    }

    /// Emits the events the job wrote since the last call (none while there are none).
    async fn forward(&mut self, context: &NodeContext) {
        match self {
            EventTail::File { path, offset } => {
                for event in read_event_lines(path, offset) {
                    context.emit(event);
                }
            }
            EventTail::Remote {
                remote,
                location,
                job,
                next,
            } => loop {
                let batch = remote_events(location, job, *next);
                let Ok(Some(events)) = remote.get_document::<Vec<NodeEvent>>(&batch).await else {
                    break;
                };
                let _ = remote.delete_document(&batch).await;
                for event in events {
                    context.emit(event);
                }
                *next += 1;
            },
        }
    }
}

/// The events in the lines of `path` completed after `offset`, which moves past them.
fn read_event_lines(path: &Path, offset: &mut u64) -> Vec<NodeEvent> {
    use std::io::{Read, Seek};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    if file.seek(std::io::SeekFrom::Start(*offset)).is_err()
        || file.read_to_end(&mut bytes).is_err()
    {
        return Vec::new();
    }
    // A line still being written waits for the next call.
    let Some(end) = bytes.iter().rposition(|byte| *byte == b'\n') else {
        return Vec::new();
    };
    *offset += end as u64 + 1;
    bytes[..end]
        .split(|byte| *byte == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}

/// Refuses a store folder the compute nodes cannot see: jobs read their inputs from and
/// write their outputs into the node's scratch folder, inside the store folder. Accepted:
/// every Slurm node is this machine, or the folder is on a network filesystem (NFS, Lustre,
/// GPFS, BeeGFS, CephFS, SMB, 9p, AFS, or FUSE, which many shared filesystems use).
pub async fn check_store(root: &Path) -> Result<(), String> {
    let output = tokio::process::Command::new("sinfo")
        .args(["-h", "-N", "-o", "%N"])
        .output()
        .await
        .map_err(|error| {
            format!("`--executor slurm`: cannot run `sinfo` ({error}); is Slurm installed here?")
        })?;
    if !output.status.success() {
        return Err(format!(
            "`--executor slurm`: `sinfo` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let host = peirce_dag::host_name();
    let short = host.split('.').next().unwrap_or_default().to_owned();
    let text = String::from_utf8_lossy(&output.stdout);
    let others: std::collections::BTreeSet<&str> = text
        .split_whitespace()
        .filter(|name| *name != host && *name != short && *name != "localhost")
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    match filesystem_type(root) {
        Some(kind) if NETWORK_FILESYSTEMS.contains(&kind) => Ok(()),
        found => Err(format!(
            "`--executor slurm`: the store folder `{}` is on a local filesystem ({}), which the \
             compute nodes ({}) cannot see; put the store on a shared filesystem mounted at the \
             same path everywhere (`--store` or PEIRCE_STORE), docs/architecture.md §21",
            root.display(),
            found.map_or("type unknown".to_owned(), |kind| format!("type {kind:#x}")),
            others.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// `statfs` magic numbers of network filesystems (linux/magic.h and the filesystems' own).
const NETWORK_FILESYSTEMS: [i64; 13] = [
    0x6969,      // NFS
    0x0BD0_0BD0, // Lustre
    0x4750_4653, // GPFS
    0x1983_0326, // BeeGFS
    0x00C3_6400, // CephFS
    0xFF53_4D42, // CIFS
    0xFE53_4D42, // SMB2
    0x517B,      // SMB
    0x0102_1997, // 9p
    0x5346_414F, // AFS
    0x6B41_4653, // kAFS
    0x6573_5546, // FUSE
    0xAAD7_AAEA, // PanFS
];

/// The `statfs` type of the filesystem holding `path`.
fn filesystem_type(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `name` is NUL-terminated; statfs fills the zeroed struct it is given.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(name.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between platforms
    let kind = stats.f_type as i64;
    Some(kind)
}

/// `--cpus-per-task`, `--mem`, `--gres=gpu:N` and `--time` for a node. A node of several
/// CPU ranks (the torch kinds' `ranks`) is one job whose rank 0 starts the others inside it,
/// as it does locally: the job asks for a CPU per rank at least.
fn sbatch_resource_flags(
    resources: &Resources,
    ranks: Option<u32>,
    timeout: Option<Duration>,
) -> Vec<String> {
    let cpus = resources.cpus.max(ranks.unwrap_or(1)).max(1);
    let mut flags = vec![format!("--cpus-per-task={cpus}")];
    if let Some(bytes) = resources.memory_bytes {
        // Slurm counts megabytes; never round a limit down to 0.
        flags.push(format!("--mem={}M", bytes.div_ceil(1 << 20).max(1)));
    }
    let gpus = resources
        .gpu_millis
        .div_ceil(peirce_dag::resources::WHOLE_GPU);
    if gpus > 0 {
        flags.push(format!("--gres=gpu:{gpus}"));
    }
    if let Some(limit) = timeout {
        // Slurm's limit in minutes, a minute above the node's own: the runner's timeout
        // cancels the job first and reports it as the node's timeout.
        flags.push(format!("--time={}", limit.as_secs().div_ceil(60) + 1));
    }
    flags
}

/// The node's `ranks` parameter (the torch kinds' CPU ranks), when it has one.
fn ranks(context: &NodeContext) -> Option<u32> {
    let ranks = context.params.get("ranks")?.as_i64()?;
    u32::try_from(ranks).ok()
}

/// A job's state as `scontrol show job` tells it.
#[derive(Debug, Clone, PartialEq)]
struct JobState {
    state: String,
    reason: Option<String>,
    exit_code: Option<String>,
    node_list: Option<String>,
}

impl JobState {
    fn is_final(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
                | "REQUEUE_FED"
                | "REQUEUE_HOLD"
                | "RESV_DEL_HOLD"
                | "SPECIAL_EXIT"
        )
    }

    /// Parses one line of `squeue -o %i|%T|%r|%N`: the job id and its state.
    fn parse_squeue(line: &str) -> Option<(String, JobState)> {
        let mut parts = line.trim().split('|');
        let id = parts.next()?.to_owned();
        let state = parts.next().filter(|state| !state.is_empty())?.to_owned();
        let known = |value: Option<&str>| {
            value
                .filter(|value| !matches!(*value, "None" | "(null)" | ""))
                .map(str::to_owned)
        };
        Some((
            id,
            JobState {
                state,
                reason: known(parts.next()),
                exit_code: None,
                node_list: known(parts.next()),
            },
        ))
    }

    /// Parses one line of `scontrol show job -o`.
    fn parse(line: &str) -> Option<JobState> {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for word in line.split_whitespace() {
            if let Some((key, value)) = word.split_once('=') {
                fields.entry(key).or_insert(value);
            }
        }
        let known = |key: &str| {
            fields
                .get(key)
                .filter(|value| !matches!(**value, "None" | "(null)" | ""))
                .map(|value| value.to_string())
        };
        Some(JobState {
            state: known("JobState")?,
            reason: known("Reason"),
            exit_code: known("ExitCode"),
            node_list: known("NodeList"),
        })
    }
}

/// How often a run asks Slurm about its jobs.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// One `squeue` call for all the jobs a run waits on, at most every [`POLL_EVERY`], however
/// many jobs there are. A job squeue does not list yet (just submitted) or any more, and a
/// job that ended, is asked about on its own (`scontrol`, then `sacct`), for the details.
#[derive(Default)]
struct Poller {
    polled: tokio::sync::Mutex<Polled>,
}

#[derive(Default)]
struct Polled {
    at: Option<std::time::Instant>,
    watched: std::collections::BTreeSet<String>,
    states: BTreeMap<String, JobState>,
}

impl Poller {
    /// The job's latest state; `None` when Slurm did not answer this time.
    async fn state(&self, id: &str) -> Option<JobState> {
        let mut polled = self.polled.lock().await;
        polled.watched.insert(id.to_owned());
        if polled.at.is_none_or(|at| at.elapsed() >= POLL_EVERY) {
            let ids: Vec<&str> = polled.watched.iter().map(String::as_str).collect();
            let states = squeue(&ids).await.unwrap_or_default();
            polled.states = states;
            polled.at = Some(std::time::Instant::now());
        }
        let listed = polled.states.get(id).cloned();
        drop(polled);
        match listed {
            Some(state) if !state.is_final() => Some(state),
            _ => job_state(id).await,
        }
    }

    /// Stops asking about the job.
    async fn forget(&self, id: &str) {
        let mut polled = self.polled.lock().await;
        polled.watched.remove(id);
        polled.states.remove(id);
    }
}

/// The states of `ids` from one `squeue` call; `None` when it failed.
async fn squeue(ids: &[&str]) -> Option<BTreeMap<String, JobState>> {
    let output = tokio::process::Command::new("squeue")
        .args([
            "-h",
            "--states=all",
            "-o",
            "%i|%T|%r|%N",
            "-j",
            &ids.join(","),
        ])
        .output()
        .await
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().filter_map(JobState::parse_squeue).collect())
}

/// The job's state from `scontrol`, else (once Slurm forgot the job) from `sacct`; `None`
/// when neither answers this time.
async fn job_state(id: &str) -> Option<JobState> {
    let output = tokio::process::Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .await
        .ok()?;
    if output.status.success() {
        return JobState::parse(&String::from_utf8_lossy(&output.stdout));
    }
    let output = tokio::process::Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "State,ExitCode,NodeList", "-j", id])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.lines().next()?.split('|');
    // sacct writes `CANCELLED by 0`.
    let state = parts.next()?.split_whitespace().next()?.to_owned();
    Some(JobState {
        state,
        reason: None,
        exit_code: parts.next().map(str::to_owned),
        node_list: parts.next().map(str::to_owned),
    })
}

/// The outcome of a job that ended without a result file of its own: Slurm states mapped
/// to failure classes (transient ones are retried, docs/architecture.md §21).
fn outcome(id: &str, state: &JobState, job_log: &Path) -> Result<(), NodeError> {
    let log = std::fs::read_to_string(job_log).ok();
    let tail = match &log {
        Some(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            format!("; job log `{}`:\n{tail}", job_log.display())
        }
        None => format!(
            "; the job left no log at `{}` that this machine sees: unless the jobs work from \
             the remote (`via_remote`, whose logs stay on the compute nodes), the compute node \
             may not see this store's folder (it must be on a filesystem shared at the same \
             path, docs/architecture.md §21)",
            job_log.display()
        ),
    };
    let reason = state
        .reason
        .as_deref()
        .map(|reason| format!(", reason {reason}"))
        .unwrap_or_default();
    let exit = state
        .exit_code
        .as_deref()
        .map(|code| format!(", exit code {code}"))
        .unwrap_or_default();
    let describe = |what: &str| {
        format!(
            "Slurm job {id} {what} ({}{reason}{exit}){tail}",
            state.state
        )
    };
    // Without cgroups, Slurm's jobacct_gather kills a job over its --mem ("exceeded memory
    // limit"); with them, the kernel's OOM killer does ("oom-kill").
    let out_of_memory = log.as_deref().is_some_and(|text| {
        let text = text.to_lowercase();
        text.contains("exceeded memory limit")
            || text.contains("exceeded job memory limit")
            || text.contains("oom-kill")
    });
    match state.state.as_str() {
        "COMPLETED" => Ok(()),
        _ if out_of_memory || state.state == "OUT_OF_MEMORY" => {
            Err(NodeError::Failed(describe("ran out of memory (its --mem)")))
        }
        "TIMEOUT" | "DEADLINE" => Err(NodeError::Failed(describe("hit its time limit"))),
        "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" => {
            Err(NodeError::Transient(describe("was lost to the cluster")))
        }
        "CANCELLED" => Err(NodeError::Transient(describe(
            "was cancelled outside this run",
        ))),
        _ => Err(NodeError::Failed(describe("failed"))),
    }
}

/// `Slurm job 12` or `Slurm jobs 12-15, 19`: job ids as `status` and `runs` show them, runs of
/// consecutive numbers as ranges; empty for none.
pub fn jobs_text<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    let mut numbers: Vec<u64> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    let mut count = 0;
    for id in ids {
        count += 1;
        match id.parse() {
            Ok(number) => numbers.push(number),
            Err(_) => others.push(id),
        }
    }
    numbers.sort_unstable();
    numbers.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < numbers.len() {
        let start = numbers[index];
        let mut end = start;
        while index + 1 < numbers.len() && numbers[index + 1] == end + 1 {
            index += 1;
            end = numbers[index];
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        index += 1;
    }
    parts.extend(others.into_iter().map(str::to_owned));
    match count {
        0 => String::new(),
        1 => format!("Slurm job {}", parts.join(", ")),
        _ => format!("Slurm jobs {}", parts.join(", ")),
    }
}

/// A word for `/bin/sh`, single-quoted.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `peirce __run-node JOB.json`: runs one node's kind inside a Slurm job. Writes how it
/// failed beside the job file (the runner reads it) and exits 1; exits 0 on success. A kind
/// stopped by SIGTERM writes nothing: the job's Slurm state tells why it was stopped.
pub async fn run_node(job_path: &Path) -> anyhow::Result<std::process::ExitCode> {
    // `-`: the job file comes on stdin (a job that works from the remote has it in its script).
    let text = if job_path == Path::new("-") {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)?;
        text
    } else {
        std::fs::read(job_path).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the job file `{}` ({error}): this compute node does not see the \
                 runner's store folder at the same path",
                job_path.display()
            )
        })?
    };
    let mut job: JobFile = serde_json::from_slice(&text)
        .map_err(|error| anyhow::anyhow!("job file `{}`: {error}", job_path.display()))?;
    let registry = peirce_nodes::registry();
    let kind = registry
        .get(&job.kind)
        .ok_or_else(|| anyhow::anyhow!("this peirce has no kind `{}`", job.kind))?;
    let staged = match job.remote.take() {
        Some(remote) => Some(Staged::prepare(remote, &mut job).await?),
        None => None,
    };
    // Slurm gives the job its GPUs through CUDA_VISIBLE_DEVICES.
    let gpus = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(text) if !job.gpus.is_empty() => text
            .split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect(),
        _ => job.gpus.clone(),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel::<NodeEvent>();
    // Every event goes to the events file at once (the runner shows it; not for a job working
    // from the remote, whose folders the runner does not see) and to the job's log.
    let batches = staged.as_ref().map(Staged::event_batches);
    let mut events_file =
        match staged {
            Some(_) => None,
            None => {
                let path = job_path.with_file_name(EVENTS_FILE);
                Some(std::fs::File::create(&path).map_err(|error| {
                    anyhow::anyhow!("cannot write `{}`: {error}", path.display())
                })?)
            }
        };
    let printer = {
        let batches = batches.clone();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if let (Some(file), Ok(mut line)) = (&mut events_file, serde_json::to_vec(&event)) {
                    line.push(b'\n');
                    let _ = std::io::Write::write_all(file, &line);
                }
                if let Some(batches) = &batches {
                    batches.push(event.clone()).await;
                }
                match event {
                    NodeEvent::Message(text) => println!("{text}"),
                    NodeEvent::Progress {
                        done,
                        total,
                        message,
                    } => println!("progress {done}/{total} {message}"),
                    NodeEvent::Metric(json) => println!("metric {json}"),
                    NodeEvent::Job(id) => println!("job {id}"),
                }
            }
        })
    };
    // A job working from the remote sends its events there, a batch a second.
    let sending = batches.clone().map(EventBatches::send_every_second);
    // scancel sends SIGTERM first: stop the kind's processes before Slurm's SIGKILL.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            terminate.recv().await;
            cancel.cancel();
        })
    };
    let context = NodeContext {
        node: job.node.clone(),
        workflow: job.workflow.clone(),
        params: job
            .params
            .iter()
            .map(|(name, value)| (name.clone(), Value::from_json(value)))
            .collect(),
        inputs: job.inputs.clone(),
        output_dir: job.output_dir.clone(),
        scratch_dir: job.scratch_dir.clone(),
        log_path: job.log_path.clone(),
        cpus: job.cpus,
        gpus,
        cancel,
        events,
    };
    let result = kind.run(context).await;
    stop.abort();
    let _ = printer.await;
    if let (Some(batches), Some((stop, sending))) = (&batches, sending) {
        stop.cancel();
        let _ = sending.await;
        batches.flush().await;
    }
    if let Some(staged) = staged {
        return staged.finish(&job, result).await;
    }
    match result {
        Ok(()) => Ok(std::process::ExitCode::SUCCESS),
        // Stopped by Slurm (scancel, time limit, preemption): its state says why.
        Err(NodeError::Cancelled) => {
            eprintln!("node `{}` stopped by a signal", job.node);
            Ok(std::process::ExitCode::from(1))
        }
        Err(error) => {
            let result = JobResult {
                class: error.class().to_owned(),
                message: error.to_string(),
            };
            let path = job_path.with_file_name(RESULT_FILE);
            std::fs::write(&path, serde_json::to_vec(&result)?)
                .map_err(|error| anyhow::anyhow!("cannot write `{}`: {error}", path.display()))?;
            eprintln!("node `{}` failed: {}", job.node, result.message);
            Ok(std::process::ExitCode::from(1))
        }
    }
}

/// The events of a job working from the remote, sent there in numbered batches
/// ([`remote_events`]) that the runner reads and removes as it polls.
#[derive(Clone)]
struct EventBatches {
    remote: peirce_store::Store,
    location: String,
    /// The Slurm job id.
    job: String,
    /// Events not sent yet, and the next batch's number.
    pending: Arc<tokio::sync::Mutex<(Vec<NodeEvent>, u64)>>,
}

impl EventBatches {
    async fn push(&self, event: NodeEvent) {
        self.pending.lock().await.0.push(event);
    }

    /// Sends the events not sent yet as the next batch (kept for the next try on failure).
    async fn flush(&self) {
        let mut pending = self.pending.lock().await;
        if pending.0.is_empty() {
            return;
        }
        let location = remote_events(&self.location, &self.job, pending.1);
        if self
            .remote
            .put_document(&location, &pending.0)
            .await
            .is_ok()
        {
            pending.0.clear();
            pending.1 += 1;
        }
    }

    /// Flushes once a second until the token returned is cancelled.
    fn send_every_second(
        self,
    ) -> (
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => self.flush().await,
                        _ = stop.cancelled() => return,
                    }
                }
            })
        };
        (stop, task)
    }
}

/// A job working from the remote: its own folder in the compute node's temporary folder,
/// holding a store whose second tier is the run's remote, the inputs fetched from there, and
/// the output and log it sends back.
struct Staged {
    work: PathBuf,
    store: peirce_store::Store,
    /// The Slurm job id.
    job: String,
    /// Its folder on the remote ([`remote_location`]).
    location: String,
}

impl Staged {
    /// Fetches the inputs and points the job's folders into its own.
    async fn prepare(remote: RemoteJob, job: &mut JobFile) -> anyhow::Result<Self> {
        let id = std::env::var("SLURM_JOB_ID").unwrap_or_else(|_| std::process::id().to_string());
        let work = std::env::temp_dir().join(format!("peirce-job-{id}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("out"))
            .map_err(|error| anyhow::anyhow!("cannot create `{}`: {error}", work.display()))?;
        let redacted = |error: &dyn std::fmt::Display| peirce_store::redact_url(&error.to_string());
        let origin = peirce_store::open_store(&remote.url)
            .map_err(|error| anyhow::anyhow!("cannot open the remote: {}", redacted(&error)))?;
        let store = peirce_store::Store::open_local(&work.join("store"))
            .map_err(|error| {
                anyhow::anyhow!("cannot open a store in `{}`: {error}", work.display())
            })?
            .with_remote(origin);
        job.inputs.clear();
        for (name, input) in remote.inputs {
            let tree = input
                .tree
                .parse()
                .map_err(|error| anyhow::anyhow!("input `{name}`: {error}"))?;
            let dest = work.join("inputs").join(&name);
            store.materialize(tree, &dest).await.map_err(|error| {
                anyhow::anyhow!(
                    "fetching input `{name}` from the remote: {}",
                    redacted(&error)
                )
            })?;
            let path = match &input.file {
                Some(file) => dest.join(file),
                None => dest,
            };
            job.inputs.insert(name, path);
        }
        job.output_dir = work.join("out");
        job.log_path = work.join("log.txt");
        job.scratch_dir = work.clone();
        Ok(Self {
            work,
            store,
            job: id,
            location: remote.location,
        })
    }

    fn event_batches(&self) -> EventBatches {
        EventBatches {
            remote: self.store.remote().expect("a remote").clone(),
            location: self.location.clone(),
            job: self.job.clone(),
            pending: Arc::new(tokio::sync::Mutex::new((Vec::new(), 0))),
        }
    }

    /// Sends the output (on success) and the log to the remote, then the result naming them,
    /// and removes the job's folder.
    async fn finish(
        self,
        job: &JobFile,
        result: Result<(), NodeError>,
    ) -> anyhow::Result<std::process::ExitCode> {
        let sent = self.send(job, result).await;
        let _ = std::fs::remove_dir_all(&self.work);
        match sent {
            Ok(true) => Ok(std::process::ExitCode::SUCCESS),
            Ok(false) => Ok(std::process::ExitCode::from(1)),
            Err(error) => {
                eprintln!(
                    "node `{}`: {}",
                    job.node,
                    peirce_store::redact_url(&format!("{error:#}"))
                );
                Ok(std::process::ExitCode::from(1))
            }
        }
    }

    /// Whether the node succeeded, once its result is on the remote.
    async fn send(&self, job: &JobFile, result: Result<(), NodeError>) -> anyhow::Result<bool> {
        let remote = self.store.remote().expect("a remote");
        if let Err(NodeError::Cancelled) = result {
            eprintln!("node `{}` stopped by a signal", job.node);
            return Ok(false);
        }
        let log = match std::fs::metadata(&job.log_path) {
            Ok(meta) if meta.len() > 0 => Some(remote.put_file(&job.log_path).await?.0.to_string()),
            _ => None,
        };
        let (output, error, succeeded) = match result {
            Ok(()) => {
                let (tree, _) = self.store.publish_owned_dir(&job.output_dir).await?;
                self.store.push_tree(tree, None).await?;
                (Some(tree.to_string()), None, true)
            }
            Err(error) => {
                eprintln!("node `{}` failed: {error}", job.node);
                let failure = JobResult {
                    class: error.class().to_owned(),
                    message: error.to_string(),
                };
                (None, Some(failure), false)
            }
        };
        let document = RemoteResult { output, log, error };
        remote
            .put_document(&remote_result(&self.location), &document)
            .await?;
        Ok(succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scontrol_lines() {
        let line = "JobId=3 JobName=wrap JobState=FAILED Reason=JobLaunchFailure \
                    Dependency=(null) ExitCode=0:9 NodeList=vm BatchHost=vm";
        let state = JobState::parse(line).unwrap();
        assert_eq!(state.state, "FAILED");
        assert_eq!(state.reason.as_deref(), Some("JobLaunchFailure"));
        assert_eq!(state.exit_code.as_deref(), Some("0:9"));
        assert_eq!(state.node_list.as_deref(), Some("vm"));
        assert!(state.is_final());
        let running = JobState::parse("JobId=4 JobState=RUNNING Reason=None").unwrap();
        assert!(!running.is_final());
        assert_eq!(running.reason, None);
        assert!(JobState::parse("garbage").is_none());
        let (id, state) = JobState::parse_squeue("12|RUNNING|None|vm\n").unwrap();
        assert_eq!(id, "12");
        assert_eq!(state.state, "RUNNING");
        assert_eq!(state.reason, None);
        assert_eq!(state.node_list.as_deref(), Some("vm"));
        assert!(JobState::parse_squeue("12|").is_none());
    }

    #[test]
    fn resource_flags() {
        let resources = Resources {
            cpus: 4,
            gpu_millis: 1500,
            memory_bytes: Some(1 << 30),
        };
        assert_eq!(
            sbatch_resource_flags(&resources, None, Some(Duration::from_secs(90))),
            [
                "--cpus-per-task=4",
                "--mem=1024M",
                "--gres=gpu:2",
                "--time=3"
            ]
        );
        assert_eq!(
            sbatch_resource_flags(&Resources::default(), None, None),
            ["--cpus-per-task=1"]
        );
        // Four CPU ranks: four CPUs, however few the node asked for; more when it asked more.
        assert_eq!(
            sbatch_resource_flags(&Resources::default(), Some(4), None),
            ["--cpus-per-task=4"]
        );
        let eight = Resources {
            cpus: 8,
            ..Resources::default()
        };
        assert_eq!(
            sbatch_resource_flags(&eight, Some(4), None),
            ["--cpus-per-task=8"]
        );
    }

    #[test]
    fn states_map_to_classes() {
        let state = |name: &str| JobState {
            state: name.into(),
            reason: None,
            exit_code: None,
            node_list: None,
        };
        let log = Path::new("/nonexistent/slurm.out");
        assert!(outcome("1", &state("COMPLETED"), log).is_ok());
        for transient in ["NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "CANCELLED"] {
            assert!(matches!(
                outcome("1", &state(transient), log),
                Err(NodeError::Transient(_))
            ));
        }
        let Err(NodeError::Failed(message)) = outcome("1", &state("OUT_OF_MEMORY"), log) else {
            panic!("out of memory is a failure");
        };
        assert!(message.contains("out of memory"), "{message}");
        let Err(NodeError::Failed(message)) = outcome("1", &state("TIMEOUT"), log) else {
            panic!("a timeout is a failure");
        };
        assert!(message.contains("time limit"), "{message}");
        assert!(
            message.contains("may not see this store's folder"),
            "{message}"
        );
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn job_ids_as_ranges() {
        let ids = |list: &[&str]| list.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        assert_eq!(jobs_text(&ids(&[])), "");
        assert_eq!(jobs_text(&ids(&["7"])), "Slurm job 7");
        assert_eq!(
            jobs_text(&ids(&["15", "12", "13", "14", "19", "21", "20"])),
            "Slurm jobs 12-15, 19-21"
        );
        assert_eq!(jobs_text(&ids(&["3", "5"])), "Slurm jobs 3, 5");
    }
}
