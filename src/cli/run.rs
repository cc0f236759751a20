//! `run`, `plan` and `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use peirce_dag::engine::{Engine, EngineOptions, PlanState, PlannedNode};
use peirce_dag::runs::{NodeRun, NodeStatus, RunRecord, RunStatus, WorkflowRef};
use peirce_dag::spec::Executor;
use tokio_util::sync::CancellationToken;

use super::display::Display;
use super::{
    load, Globals, Missing, WorkflowArgs, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_INVALID,
    EXIT_TERMINATED,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// Run only these nodes and what they depend on (default: every node)
    #[arg(value_name = "NODE")]
    nodes: Vec<String>,
    /// Run this node even if cached (repeatable)
    #[arg(long, value_name = "NODE")]
    force: Vec<String>,
    /// Run every node even if cached
    #[arg(long)]
    force_all: bool,
    /// CPU slots (default: all cores)
    #[arg(short, long)]
    jobs: Option<u32>,
    /// GPU device ids to use, e.g. `0,1` (default: CUDA_VISIBLE_DEVICES, else none)
    #[arg(long, value_delimiter = ',')]
    gpus: Option<Vec<u32>>,
    /// Memory shared by the nodes' `resources.memory` asks, e.g. `64G` (default: the
    /// machine's): nodes whose asks together exceed it do not run at the same time, and a
    /// node asking for more is rejected before anything runs
    #[arg(long, value_name = "SIZE", value_parser = peirce_dag::spec::parse_size)]
    memory: Option<u64>,
    /// Print the run record as JSON on stdout (progress stays on stderr)
    #[arg(long)]
    json: bool,
    /// Print nothing but errors while running
    #[arg(short, long)]
    quiet: bool,
    /// Where nodes run: `local`, or `slurm` (each node one batch job; needs the store
    /// folder on a filesystem the compute nodes share). Default: the workflow's `[workflow]
    /// executor`, else `executor` in the user config, else local; a node's own `executor`
    /// wins
    #[arg(long, value_name = "EXECUTOR", value_parser = Executor::parse)]
    executor: Option<Executor>,
    /// With `--set`: make this run the workflow's latest (what `cat`, `show`, `status` and
    /// `gc` go by), instead of an experiment beside it
    #[arg(long)]
    as_latest: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// Plan only these nodes and what they depend on (default: every node)
    #[arg(value_name = "NODE")]
    nodes: Vec<String>,
    /// Plan as if these nodes were forced (repeatable)
    #[arg(long, value_name = "NODE")]
    force: Vec<String>,
    /// GPU device ids a run would use, as `run --gpus` (default: CUDA_VISIBLE_DEVICES, else
    /// every NVIDIA device)
    #[arg(long, value_delimiter = ',')]
    gpus: Option<Vec<u32>>,
    /// Memory for the nodes' `resources.memory` asks, as `run --memory`
    #[arg(long, value_name = "SIZE", value_parser = peirce_dag::spec::parse_size)]
    memory: Option<u64>,
    /// Print the plan as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

/// The GPUs a run may use without `--gpus`: `CUDA_VISIBLE_DEVICES` when set, else every
/// NVIDIA device the driver shows (`/dev/nvidia0`, `/dev/nvidia1`, ...), found without
/// starting CUDA.
fn default_gpus() -> Vec<u32> {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(text) => text
            .split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect(),
        Err(_) => nvidia_devices(Path::new("/dev")),
    }
}

/// The indices of the `nvidiaN` device files in `dev`, sorted.
fn nvidia_devices(dev: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.strip_prefix("nvidia")?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    found
}

pub(super) fn engine(
    globals: &Globals,
    args: &WorkflowArgs,
    workflow: &peirce_dag::spec::Workflow,
    force: &[String],
) -> anyhow::Result<Engine> {
    let store = globals.open_store_with(
        Some(&args.workflow),
        workflow.remote.as_deref(),
        Missing::Empty,
    )?;
    // A plan executes nothing: an empty store in memory (none found) needs no scratch folder.
    let scratch = store
        .local_root()
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("scratch");
    let mut options = EngineOptions::new(scratch);
    options.force = forced(workflow, force);
    // Nodes the workflow places on Slurm are not sized against this machine.
    options.placed_elsewhere = placed_on_slurm(workflow, None)?;
    Ok(Engine::new(store, peirce_nodes::registry(), options))
}

/// The nodes that run as Slurm jobs: a node's own `executor`, else `executor` (the
/// command line's, else the workflow's, else the user config's), else local.
fn placed_on_slurm(
    workflow: &peirce_dag::spec::Workflow,
    executor: Option<Executor>,
) -> anyhow::Result<BTreeSet<String>> {
    let default_executor = match executor.or(workflow.executor) {
        Some(executor) => executor,
        None => super::user_config_executor()?.unwrap_or(Executor::Local),
    };
    Ok(workflow
        .nodes
        .iter()
        .filter(|node| node.executor.unwrap_or(default_executor) == Executor::Slurm)
        .map(|node| node.name.clone())
        .collect())
}

/// The nodes `--force` names: each node, or every instance of a sweep named by its
/// declaration (docs/architecture.md §18).
fn forced(workflow: &peirce_dag::spec::Workflow, force: &[String]) -> BTreeSet<String> {
    force
        .iter()
        .flat_map(|name| workflow.addressed(name))
        .map(str::to_owned)
        .collect()
}

/// The workflow, its forced nodes checked, cut down to `nodes` and their inputs.
fn load_selected(
    args: &WorkflowArgs,
    force: &[String],
    nodes: &[String],
) -> Result<peirce_dag::spec::Workflow, ExitCode> {
    let workflow = load(args)?;
    for name in force {
        if workflow.addressed(name).is_empty() {
            eprintln!("error: `--force {name}`: the workflow has no node `{name}`");
            return Err(ExitCode::from(EXIT_INVALID));
        }
    }
    let workflow = workflow.select(nodes).map_err(|message| {
        eprintln!("error: {message}");
        ExitCode::from(EXIT_INVALID)
    })?;
    if let Some(name) = force
        .iter()
        .find(|name| workflow.addressed(name).is_empty())
    {
        eprintln!(
            "error: `--force {name}`: `{name}` is not among the selected nodes or their inputs"
        );
        return Err(ExitCode::from(EXIT_INVALID));
    }
    Ok(workflow)
}

pub async fn run(globals: &Globals, args: RunArgs) -> anyhow::Result<ExitCode> {
    let workflow = match load_selected(&args.workflow, &args.force, &args.nodes) {
        Ok(workflow) => workflow,
        Err(code) => return Ok(code),
    };
    let store = globals.open_store_with(
        Some(&args.workflow.workflow),
        workflow.remote.as_deref(),
        Missing::Create,
    )?;
    let root = store.local_root().expect("local store").to_path_buf();
    let mut options = EngineOptions::new(root.join("scratch"));
    options.force = forced(&workflow, &args.force);
    options.force_all = args.force_all;
    options.as_latest = args.as_latest;
    if let Some(jobs) = args.jobs {
        options.cpus = jobs.max(1);
    }
    options.gpus = args.gpus.clone().unwrap_or_else(default_gpus);
    if let Some(memory) = args.memory {
        options.memory = memory;
    }
    // Nodes placed on Slurm run through kinds that submit them (docs/architecture.md §21).
    let placed = placed_on_slurm(&workflow, args.executor)?;
    let registry = if placed.is_empty() {
        peirce_nodes::registry()
    } else {
        // Jobs work from the remote (`via_remote`), or from the store folder, which the
        // compute nodes must then see.
        let remote = if workflow.slurm.via_remote {
            match globals.remote_url(workflow.remote.as_deref())? {
                Some((url, _)) => Some((store.clone(), url)),
                None => {
                    eprintln!(
                        "error: `[executor.slurm] via_remote = true` needs a remote for the jobs \
                         to work from (`--remote URL`, `remote` in `[workflow]` or the user \
                         config), docs/architecture.md §21"
                    );
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            }
        } else {
            if let Err(message) = super::slurm::check_store(&root).await {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(EXIT_INVALID));
            }
            None
        };
        super::slurm::registry(
            &peirce_nodes::registry(),
            &workflow,
            &placed,
            &workflow.slurm,
            remote,
        )?
    };
    options.placed_elsewhere = placed;
    let engine = Engine::new(store, registry, options);

    let cancel = CancellationToken::new();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut display = Display::new(args.quiet);
    let drawer = tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            display.handle(event);
        }
        display.finish();
    });
    // Listening starts before any node does, so no stop signal finds the default action.
    let mut stops = StopSignals::listen()?;
    let stopped_by = std::sync::Arc::new(std::sync::OnceLock::new());
    let interrupt = {
        let cancel = cancel.clone();
        let stopped_by = stopped_by.clone();
        tokio::spawn(async move {
            let stop = stops.next().await;
            eprintln!(
                "{}: stopping running nodes (nothing partial is stored)",
                stop.describe()
            );
            let _ = stopped_by.set(stop);
            cancel.cancel();
        })
    };
    let started = std::time::Instant::now();
    let result = engine.run(&workflow, sender, cancel.clone()).await;
    interrupt.abort();
    let _ = drawer.await;
    let record = match result {
        Ok(record) => record,
        Err(peirce_dag::engine::EngineError::Invalid(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(error) => return Err(error.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    }
    if !args.quiet || record.status != RunStatus::Succeeded {
        eprintln!("{}", summary(&record, started.elapsed().as_secs_f64()));
    }
    if record.experiment && !args.quiet {
        eprintln!(
            "experiment (--set {}): the workflow's latest results stay as written; `peirce diff` compares runs, `--as-latest` would have replaced them",
            record.overrides.join(" --set ")
        );
    }
    if let Some(remote) = &record.remote {
        if !args.quiet || !remote.push_failures.is_empty() {
            eprintln!("{}", remote_summary(remote));
        }
    }
    Ok(match record.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(
            stopped_by
                .get()
                .map_or(EXIT_INTERRUPTED, |stop| stop.exit_code()),
        ),
        _ => ExitCode::from(1),
    })
}

/// The signals that stop a run: Ctrl-C (SIGINT), SIGTERM (Slurm, Docker, systemd) and
/// SIGHUP (a closed terminal) all cancel every node, which stops its processes and stores
/// nothing partial; the exit code names the signal (docs/architecture.md §12).
#[derive(Debug, Clone, Copy)]
enum Stop {
    Interrupt,
    Terminate,
    Hangup,
}

impl Stop {
    fn describe(self) -> &'static str {
        match self {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated (SIGTERM)",
            Stop::Hangup => "hung up (SIGHUP)",
        }
    }

    fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => EXIT_INTERRUPTED,
            Stop::Terminate => EXIT_TERMINATED,
            Stop::Hangup => EXIT_HANGUP,
        }
    }
}

struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<StopSignals> {
        use anyhow::Context;
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
            terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            hangup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
            _ = self.hangup.recv() => Stop::Hangup,
        }
    }
}

fn summary(record: &RunRecord, seconds: f64) -> String {
    let count = |status| record.nodes.values().filter(|n| n.status == status).count();
    format!(
        "{}: {} nodes: {} ran, {} cached, {} failed, {} skipped in {:.2}s (run {})",
        match record.status {
            RunStatus::Succeeded => "ok",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Running => "running",
        },
        record.nodes.len(),
        count(NodeStatus::Ran),
        count(NodeStatus::Cached),
        count(NodeStatus::Failed),
        count(NodeStatus::Skipped),
        seconds,
        record.id
    )
}

fn remote_summary(remote: &peirce_dag::runs::RemoteActivity) -> String {
    let moved = &remote.transfers;
    let mut text = format!(
        "remote {}: {} results found there, {} downloaded; {} pushed, {} uploaded; {} requests",
        remote.url,
        moved.records_fetched,
        super::share::human_bytes(moved.bytes_downloaded),
        remote.pushed.len(),
        super::share::human_bytes(moved.bytes_uploaded),
        moved.requests
    );
    if !remote.push_failures.is_empty() {
        let nodes: Vec<&str> = remote.push_failures.keys().map(String::as_str).collect();
        text.push_str(&format!(
            "\nwarning: {} results not pushed ({}): `peirce push` sends them",
            nodes.len(),
            nodes.join(", ")
        ));
    }
    text
}

fn print_plan(planned: &[PlannedNode]) {
    let runs = planned
        .iter()
        .filter(|p| matches!(p.state, PlanState::Runs { .. }))
        .count();
    for node in planned {
        match &node.state {
            PlanState::Cached { output, .. } => {
                println!("  cached  {:20} {}", node.node, output.short())
            }
            PlanState::Runs { reasons, .. } => {
                let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                println!("  run     {:20} {}", node.node, text.join("; "));
            }
        }
    }
    println!(
        "{} nodes: {} to run, {} cached",
        planned.len(),
        runs,
        planned.len() - runs
    );
}

pub async fn plan(globals: &Globals, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let workflow = match load_selected(&args.workflow, &args.force, &args.nodes) {
        Ok(workflow) => workflow,
        Err(code) => return Ok(code),
    };
    // Whatever `run` would reject before executing, `plan` rejects the same way, with the
    // GPUs a run would have.
    let engine = engine(globals, &args.workflow, &workflow, &args.force)?
        .with_resources(args.gpus.clone().unwrap_or_else(default_gpus), args.memory);
    if let Err(error) = engine.check(&workflow) {
        eprintln!("error: {error}");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let planned = engine.plan(&workflow).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&planned)?);
    } else {
        print_plan(&planned);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(globals: &Globals, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let workflow = match load(&args.workflow) {
        Ok(workflow) => workflow,
        Err(code) => return Ok(code),
    };
    let engine = engine(globals, &args.workflow, &workflow, &[])?;
    let planned = engine.plan(&workflow).await?;
    let store = engine.store();
    let latest = match WorkflowRef::load(store, &workflow.name).await {
        Some(found) => store
            .get_document::<RunRecord>(&RunRecord::location(&found.latest_run))
            .await?
            .map(|mut record| {
                // Written by an older peirce, it may hold credentials in its errors.
                record.redact();
                record
            }),
        None => None,
    };
    let earlier = earlier_runs(store, &workflow.name, &planned, latest.as_ref()).await?;
    let remote = store.remote().map(|remote| remote.url().to_string());
    if args.json {
        let json = serde_json::json!({ "workflow": workflow.name, "remote": remote, "latest_run": latest, "nodes": planned });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &latest {
        Some(run) => println!(
            "workflow `{}`: latest run {} {:?} at {}",
            workflow.name,
            run.id,
            run.status,
            peirce_dag::runs::format_utc(run.started_at)
        ),
        None => println!("workflow `{}`: never run with this store", workflow.name),
    }
    if let Some(remote) = &remote {
        println!("remote {remote}");
    }
    for node in &planned {
        let last_text = match latest.as_ref().and_then(|run| run.nodes.get(&node.node)) {
            Some(run) => last_run_text(run),
            None => match earlier.get(&node.node) {
                Some((id, run)) => format!("{} (run {id})", last_run_text(run)),
                None => "last: -".into(),
            },
        };
        match &node.state {
            PlanState::Cached { output, .. } => {
                println!(
                    "  up to date  {:20} {}  {last_text}",
                    node.node,
                    output.short()
                )
            }
            PlanState::Runs { reasons, .. } => {
                let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                println!(
                    "  stale       {:20} {}  {last_text}",
                    node.node,
                    text.join("; ")
                )
            }
        }
        // A failure of the latest run, with the last lines of its log.
        if let Some(error) = latest
            .as_ref()
            .and_then(|run| run.nodes.get(&node.node))
            .filter(|run| run.status == NodeStatus::Failed)
            .and_then(|run| run.error.as_deref())
        {
            for (index, line) in error.lines().enumerate() {
                let label = if index == 0 { "error: " } else { "" };
                println!("              {label}{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `last: ran 12.30s`: a node's outcome in a run and its running time (queueing excluded).
fn last_run_text(run: &NodeRun) -> String {
    let text = format!("last: {:?} {:.2}s", run.status, run.running_s()).to_lowercase();
    match super::slurm::jobs_text(&run.jobs) {
        jobs if jobs.is_empty() => text,
        jobs => format!("{text} ({jobs})"),
    }
}

/// For nodes the latest run left out (a run of selected nodes), the most recent earlier run
/// of the workflow that has them, experiments aside (they are not the workflow as written):
/// node name to (run id, its outcome there).
async fn earlier_runs(
    store: &peirce_store::Store,
    workflow: &str,
    planned: &[PlannedNode],
    latest: Option<&RunRecord>,
) -> anyhow::Result<BTreeMap<String, (String, NodeRun)>> {
    let mut missing: BTreeSet<&str> = planned
        .iter()
        .map(|node| node.node.as_str())
        .filter(|name| latest.is_some_and(|run| !run.nodes.contains_key(*name)))
        .collect();
    let mut found = BTreeMap::new();
    if missing.is_empty() {
        return Ok(found);
    }
    let records = RunRecord::all(store).await?;
    for record in records
        .into_iter()
        .filter(|record| record.workflow == workflow && !record.experiment)
    {
        for (name, run) in record.nodes {
            if missing.remove(name.as_str()) {
                found.insert(name, (record.id.clone(), run));
            }
        }
        if missing.is_empty() {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nvidia_devices_are_the_numbered_device_files() {
        let dev = tempfile::tempdir().unwrap();
        for name in ["nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(dev.path().join(name), "").unwrap();
        }
        assert_eq!(super::nvidia_devices(dev.path()), [0, 1]);
        assert!(super::nvidia_devices(&dev.path().join("missing")).is_empty());
    }
}
