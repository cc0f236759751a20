//! `push` and `pull`: moving results between the local store and the remote.
//!
//! What moves is chosen as a run (`--run ID`), or a workflow's current results (every node,
//! or those named with `--node`). A push sends each record's missing blobs (multipart for
//! large ones), then its tree, then the record last; a pull copies records and downloads
//! every file they reach, verified (large ones in parallel ranges, resumed after an
//! interruption). A bar shows bytes and rate on a terminal; plain lines otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peirce_dag::engine::{Engine, EngineOptions, PlanState};
use peirce_dag::runs::RunRecord;
use peirce_store::{ActionKey, SyncReport, TransferSnapshot};
use serde::Serialize;

use super::{load, Globals, Missing, WorkflowArgs, EXIT_INVALID};

/// What to push or pull.
#[derive(Debug, Args)]
pub struct Selection {
    /// The workflow whose current results move (all its nodes, or those given with --node)
    #[arg(value_name = "WORKFLOW", required_unless_present = "run")]
    workflow: Option<PathBuf>,
    /// Override a parameter of the workflow: `node.key=value` (repeatable)
    #[arg(long = "set", value_name = "NODE.KEY=VALUE")]
    set: Vec<String>,
    /// Only these nodes' results (repeatable)
    #[arg(long, value_name = "NODE")]
    node: Vec<String>,
    /// Every result of this run (its id, as `peirce runs` lists it)
    #[arg(long, value_name = "RUN", conflicts_with_all = ["workflow", "node"])]
    run: Option<String>,
    /// Results moved at once
    #[arg(short, long, default_value_t = 4)]
    jobs: usize,
    /// Print a JSON report on stdout
    #[arg(long)]
    json: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Push,
    Pull,
}

/// One result to move.
#[derive(Debug, Clone)]
struct Item {
    node: String,
    key: ActionKey,
}

#[derive(Debug, Serialize)]
struct ItemReport {
    node: String,
    key: ActionKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<SyncReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    remote: String,
    direction: &'static str,
    results: Vec<ItemReport>,
    /// Nodes that have no result to move (never computed, or inputs not computed).
    skipped: Vec<String>,
    transfers: TransferSnapshot,
    seconds: f64,
}

/// `1.5 MB`, `320 kB`, `12 B`.
pub fn human_bytes(bytes: u64) -> String {
    let value = bytes as f64;
    if value >= 1e9 {
        format!("{:.2} GB", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.1} MB", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} kB", value / 1e3)
    } else {
        format!("{bytes} B")
    }
}

pub async fn push(globals: &Globals, args: PushArgs) -> anyhow::Result<ExitCode> {
    transfer(globals, args.selection, Direction::Push).await
}

pub async fn pull(globals: &Globals, args: PullArgs) -> anyhow::Result<ExitCode> {
    transfer(globals, args.selection, Direction::Pull).await
}

async fn transfer(
    globals: &Globals,
    selection: Selection,
    direction: Direction,
) -> anyhow::Result<ExitCode> {
    let verb = match direction {
        Direction::Push => "push",
        Direction::Pull => "pull",
    };
    let workflow = match &selection.workflow {
        Some(path) => {
            let args = WorkflowArgs {
                workflow: path.clone(),
                set: selection.set.clone(),
            };
            match load(&args) {
                Ok(workflow) => Some(workflow),
                Err(code) => return Ok(code),
            }
        }
        None => None,
    };
    if let Some(workflow) = &workflow {
        for name in &selection.node {
            if workflow.node(name).is_none() {
                eprintln!("error: `--node {name}`: the workflow has no node `{name}`");
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        }
    }
    let workflow_path = selection.workflow.as_deref();
    let workflow_remote = workflow.as_ref().and_then(|w| w.remote.as_deref());
    let Some(_) = globals.remote_url(workflow_remote)? else {
        eprintln!(
            "error: `peirce {verb}` needs a remote: pass `--remote s3://bucket/prefix`, or set \
             `remote` in the workflow's [workflow] table or in {}",
            super::user_config_path()
                .map(|path| format!("`{}`", path.display()))
                .unwrap_or_else(|| "~/.config/peirce/config.toml".into())
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let missing = match direction {
        Direction::Push => Missing::Fail,
        Direction::Pull => Missing::Create,
    };
    let store = globals.open_store_with(workflow_path, workflow_remote, missing)?;
    let remote = store.remote().expect("a remote was configured").clone();

    // What to move, as (node, key).
    let mut skipped = Vec::new();
    let mut items = Vec::new();
    if let Some(run_id) = &selection.run {
        let location = RunRecord::location(run_id);
        if direction == Direction::Pull && !store.pull_document(&location).await? {
            bail!("No run `{run_id}` on the remote `{}`", remote.url());
        }
        let record: RunRecord = store
            .get_document(&location)
            .await?
            .ok_or_else(|| anyhow!("No run `{run_id}` in the store at `{}`", store.url()))?;
        // A record written by an older peirce may hold credentials in its errors: it is
        // kept here, and pushed, redacted (docs/architecture.md §10).
        let mut redacted = record.clone();
        redacted.redact();
        if redacted != record {
            store.put_document(&location, &redacted).await?;
        }
        for (node, run) in &record.nodes {
            match (run.key, run.output) {
                (Some(key), Some(_)) => items.push(Item {
                    node: node.clone(),
                    key,
                }),
                _ => skipped.push(node.clone()),
            }
        }
        if direction == Direction::Push {
            store.push_document(&location).await?;
        }
    } else if let Some(workflow) = &workflow {
        // Push what is here (the local store alone decides); pull what either tier has.
        let planning_store = match direction {
            Direction::Push => globals.open_local_store(workflow_path, Missing::Fail)?,
            Direction::Pull => store.clone(),
        };
        let root = planning_store
            .local_root()
            .expect("a local store")
            .to_path_buf();
        let engine = Engine::new(
            planning_store,
            peirce_nodes::registry(),
            EngineOptions::new(root.join("scratch")),
        );
        for planned in engine.plan(workflow).await? {
            if !selection.node.is_empty() && !selection.node.contains(&planned.node) {
                continue;
            }
            match planned.state {
                PlanState::Cached { key, .. } => items.push(Item {
                    node: planned.node,
                    key,
                }),
                PlanState::Runs { .. } => skipped.push(planned.node),
            }
        }
    }
    for node in &skipped {
        if !selection.quiet && !selection.json {
            eprintln!("{verb}: `{node}` has no result to {verb} (run it first)");
        }
    }

    // Sizes first, for the bar (a pull has copied records and trees by now).
    let mut total = 0u64;
    for item in &items {
        if let Ok(Some(size)) = store.action_size(item.key).await {
            total += size;
        }
    }
    let before = store.transfer_stats();
    let started = Instant::now();
    let bar = progress_bar(&selection, direction, total, items.len());
    let ticker = bar.clone().map(|bar| {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let moved = store.transfer_stats().since(&before);
                bar.set_position(progress(direction, &moved).min(bar.length().unwrap_or(u64::MAX)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let plain = bar.is_none() && !selection.quiet && !selection.json;
    let store_ref = &store;
    let bar_ref = &bar;
    let results: Vec<ItemReport> = futures::stream::iter(items)
        .map(|item| async move {
            let outcome = match direction {
                Direction::Push => store_ref.push_action(item.key).await.map(Some),
                Direction::Pull => store_ref.pull_action(item.key).await,
            };
            let (report, error) = match outcome {
                Ok(Some(report)) => (Some(report), None),
                Ok(None) => (None, Some("the remote has no complete result".to_string())),
                Err(error) => (None, Some(peirce_store::redact_url(&error.to_string()))),
            };
            let line = match (&report, &error) {
                (Some(report), _) => format!(
                    "{verb}ed `{}`: {} files, {} {}{}",
                    item.node,
                    report.blobs,
                    human_bytes(report.transferred_bytes),
                    match direction {
                        Direction::Push => "sent",
                        Direction::Pull => "received",
                    },
                    if report.transferred_blobs == 0 {
                        " (all there already)"
                    } else {
                        ""
                    }
                ),
                (None, Some(error)) => format!("error: cannot {verb} `{}`: {error}", item.node),
                (None, None) => unreachable!("an outcome is a report or an error"),
            };
            match bar_ref {
                Some(bar) => bar.println(line),
                None if plain || error.is_some() => eprintln!("{line}"),
                None => {}
            }
            ItemReport {
                node: item.node,
                key: item.key,
                report,
                error,
            }
        })
        .buffer_unordered(selection.jobs.max(1))
        .collect()
        .await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let moved = store.transfer_stats().since(&before);
    if let Some(bar) = &bar {
        bar.set_position(progress(direction, &moved).min(total));
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let report = Report {
        remote: remote.url().to_string(),
        direction: verb,
        results,
        skipped,
        transfers: moved,
        seconds,
    };
    if selection.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !selection.quiet || failed > 0 {
        let bytes = match direction {
            Direction::Push => moved.bytes_uploaded,
            Direction::Pull => moved.bytes_downloaded,
        };
        eprintln!(
            "{verb}: {} results {verb}ed, {} failed; {} {} in {seconds:.2}s ({}/s), {} already there; remote {}",
            report.results.len() - failed,
            failed,
            human_bytes(bytes),
            match direction {
                Direction::Push => "sent",
                Direction::Pull => "received",
            },
            human_bytes((bytes as f64 / seconds.max(1e-3)) as u64),
            human_bytes(moved.bytes_present),
            remote.url()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Bytes done: moved, plus found already there.
fn progress(direction: Direction, moved: &TransferSnapshot) -> u64 {
    let transferred = match direction {
        Direction::Push => moved.bytes_uploaded,
        Direction::Pull => moved.bytes_downloaded,
    };
    transferred + moved.bytes_present
}

fn progress_bar(
    selection: &Selection,
    direction: Direction,
    total: u64,
    count: usize,
) -> Option<ProgressBar> {
    if selection.quiet || selection.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(match direction {
        Direction::Push => "push",
        Direction::Pull => "pull",
    });
    bar.set_message(format!("{count} results"));
    Some(bar)
}
