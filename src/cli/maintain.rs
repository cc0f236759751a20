//! `runs` and `gc`.

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::Args;
use peirce_dag::engine::Engine;
use peirce_dag::runs::{format_utc, NodeStatus, RunRecord};

use super::{parse_duration, Globals, Missing};

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only the runs of this workflow (its `[workflow] name`, else its file stem)
    #[arg(short, long)]
    workflow: Option<std::path::PathBuf>,
    /// Show at most this many runs
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Pin a run: gc keeps its results regardless of newer runs
    #[arg(long, value_name = "RUN")]
    pin: Option<String>,
    /// Unpin a run
    #[arg(long, value_name = "RUN")]
    unpin: Option<String>,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Spare anything younger than this (a concurrent run's fresh results), e.g. 30m, 2h
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    grace: std::time::Duration,
    /// Keep the results of experiments (runs with `--set`) younger than this; older ones
    /// go unless pinned
    #[arg(long, default_value = "14d", value_parser = parse_duration, value_name = "AGE")]
    keep_experiments: std::time::Duration,
    /// Report what would be removed without removing it
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub async fn runs(globals: &Globals, args: RunsArgs) -> anyhow::Result<ExitCode> {
    let store = globals.open_store(None, Missing::Fail)?;
    for (id, pinned) in [(&args.pin, true), (&args.unpin, false)] {
        let Some(id) = id else { continue };
        let location = RunRecord::location(id);
        let mut record: RunRecord = store
            .get_document(&location)
            .await?
            .ok_or_else(|| anyhow!("No run `{id}` in `{}`", store.url()))?;
        record.pinned = pinned;
        record.redact();
        store.put_document(&location, &record).await?;
        eprintln!("run {id} {}", if pinned { "pinned" } else { "unpinned" });
        return Ok(ExitCode::SUCCESS);
    }
    let mut records = RunRecord::all(&store).await?;
    if let Some(path) = &args.workflow {
        let name = super::inspect::workflow_name(path)?;
        records.retain(|record| record.workflow == name);
    }
    records.truncate(args.limit);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    for record in &records {
        let count = |status| record.nodes.values().filter(|n| n.status == status).count();
        let duration = record
            .finished_at
            .map(|end| format!("{:.1}s", end - record.started_at))
            .unwrap_or("-".into());
        let overrides: String = record
            .overrides
            .iter()
            .map(|set| format!("  --set {set}"))
            .collect();
        let jobs = super::slurm::jobs_text(record.nodes.values().flat_map(|node| &node.jobs));
        let jobs = if jobs.is_empty() {
            jobs
        } else {
            format!("  {jobs}")
        };
        println!(
            "{}  {}  {:10} {:>8}  {:20} ran {} cached {} failed {}{}{}{}{}",
            record.id,
            format_utc(record.started_at),
            format!("{:?}", record.status).to_lowercase(),
            duration,
            record.workflow,
            count(NodeStatus::Ran),
            count(NodeStatus::Cached),
            count(NodeStatus::Failed),
            if record.experiment {
                "  experiment"
            } else {
                ""
            },
            if record.pinned { "  (pinned)" } else { "" },
            jobs,
            overrides
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn gc(globals: &Globals, args: GcArgs) -> anyhow::Result<ExitCode> {
    let store = globals.open_store(None, Missing::Fail)?;
    let live = Engine::live_keys(&store, args.keep_experiments)
        .await
        .context(
        "Garbage collection stopped before deleting anything: cannot tell which results are live",
    )?;
    let logs = Engine::live_failure_logs(&store).await?;
    let report = store
        .gc_keeping(&live, &logs, args.grace, args.dry_run)
        .await?;
    if let Some(root) = store.local_root() {
        sweep_scratch(&root.join("scratch"), args.grace, args.dry_run);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}{} action records and {} blobs ({:.1} MB) removed; kept {} live records, {} live blobs; {} spared as younger than {}s",
            if args.dry_run { "dry run: " } else { "" },
            report.removed_actions,
            report.removed_blobs,
            report.removed_bytes as f64 / 1e6,
            report.live_actions,
            report.live_blobs,
            report.spared_young,
            args.grace.as_secs()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes per-run scratch folders (kept from failed nodes) older than `grace`.
fn sweep_scratch(scratch: &std::path::Path, grace: std::time::Duration, dry_run: bool) {
    let Ok(reader) = std::fs::read_dir(scratch) else {
        return;
    };
    for item in reader.flatten() {
        let old = item
            .metadata()
            .and_then(|m| m.modified())
            .map(|m| m.elapsed().unwrap_or_default() >= grace);
        if old.unwrap_or(false) && !dry_run {
            let _ = std::fs::remove_dir_all(item.path());
        }
    }
}
