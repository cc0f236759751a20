//! `show`, `log`, `cat` and `why`: looking at what is in the store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use peirce_dag::engine::lineage::{lineage, trees_containing, Lineage};
use peirce_dag::runs::{format_utc, NodeRef, NodeRun, NodeStatus, RunRecord, WorkflowRef};
use peirce_store::{ActionKey, ActionRecord, BlobDigest, Store, TreeDigest};

use super::{to_stdout, Globals, Missing};

/// Which result of a node `show`, `log`, `cat`, `why` and `export` read: `-w` and `--run`.
#[derive(Debug, Args)]
pub struct Pick {
    /// The workflow the node belongs to (default: the one workflow in the store that has it)
    #[arg(short, long)]
    workflow: Option<PathBuf>,
    /// The node's result in this run (an experiment's, say) instead of its latest
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
}

impl Pick {
    /// The store these flags (and the global ones) name.
    pub(super) fn store(&self, globals: &Globals) -> anyhow::Result<Store> {
        globals.open_store(self.workflow.as_deref(), Missing::Fail)
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The node
    node: String,
    #[command(flatten)]
    pick: Pick,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The node
    node: String,
    #[command(flatten)]
    pick: Pick,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// A digest (`blake3:...`) or a node name (its latest output)
    target: String,
    /// A file inside the tree
    path: Option<String>,
    #[command(flatten)]
    pick: Pick,
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// A digest (an output tree, or a file inside one) or a node name
    target: String,
    #[command(flatten)]
    pick: Pick,
    /// How many levels of inputs to follow
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

/// The workflow name of a `-w` file (its `[workflow] name`, else its file stem).
pub(super) fn workflow_name(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let parsed: Option<String> = text.parse::<toml_edit::DocumentMut>().ok().and_then(|doc| {
        doc.get("workflow")?
            .get("name")?
            .as_str()
            .map(str::to_string)
    });
    Ok(parsed.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }))
}

/// The latest result of `node`, from the workflow refs in the store.
async fn node_ref(
    store: &Store,
    node: &str,
    workflow: Option<&PathBuf>,
) -> anyhow::Result<(WorkflowRef, NodeRef)> {
    let refs = match workflow {
        Some(path) => {
            let name = workflow_name(path)?;
            vec![WorkflowRef::load(store, &name).await.ok_or_else(|| {
                anyhow!(
                    "Workflow `{name}` has never run with the store at `{}`",
                    store.url()
                )
            })?]
        }
        None => WorkflowRef::all(store).await?,
    };
    let mut matches: Vec<(WorkflowRef, NodeRef)> = refs
        .into_iter()
        .filter_map(|r| r.nodes.get(node).copied().map(|n| (r, n)))
        .collect();
    match matches.len() {
        0 => bail!(
            "No result for node `{node}` in the store at `{}` (run its workflow first)",
            store.url()
        ),
        1 => Ok(matches.remove(0)),
        _ => {
            let names: Vec<String> = matches
                .iter()
                .map(|(r, _)| format!("`{}`", r.workflow_path))
                .collect();
            bail!(
                "Node `{node}` exists in several workflows ({}); pick one with `-w FILE`",
                names.join(", ")
            )
        }
    }
}

/// `node` as it ended in run `wanted` (an id, or the start or end of one, as `peirce runs`
/// lists them): how an experiment's results are reached, since they never become the
/// workflow's latest (docs/architecture.md §17).
pub(super) async fn node_in_run(
    store: &Store,
    wanted: &str,
    node: &str,
) -> anyhow::Result<(RunRecord, NodeRun)> {
    let mut run = RunRecord::find(store, wanted)
        .await
        .map_err(|e| anyhow!(e))?;
    run.redact();
    let found = run.nodes.get(node).cloned().ok_or_else(|| {
        anyhow!(
            "Run {} has no node `{node}` (it has {} nodes; `peirce runs --json` lists them)",
            run.id,
            run.nodes.len()
        )
    })?;
    Ok((run, found))
}

/// The key and output of `node`'s result: its latest, or its result in run `run`.
async fn result_of(
    store: &Store,
    node: &str,
    pick: &Pick,
) -> anyhow::Result<(ActionKey, TreeDigest)> {
    let Some(wanted) = pick.run.as_deref() else {
        let (_, latest) = node_ref(store, node, pick.workflow.as_ref()).await?;
        return Ok((latest.key, latest.output));
    };
    let (run, found) = node_in_run(store, wanted, node).await?;
    match (found.key, found.output) {
        (Some(key), Some(output)) => Ok((key, output)),
        _ => bail!(
            "Run {} has no result for node `{node}` (it {})",
            run.id,
            status_words(found.status)
        ),
    }
}

/// The output of `node`: its latest, or its output in run `run`.
pub(super) async fn output_of(
    store: &Store,
    node: &str,
    pick: &Pick,
) -> anyhow::Result<TreeDigest> {
    Ok(result_of(store, node, pick).await?.1)
}

/// The action record of `node`: of its latest result, or of its result in run `run`.
async fn record_of(store: &Store, node: &str, pick: &Pick) -> anyhow::Result<ActionRecord> {
    let (key, _) = result_of(store, node, pick).await?;
    store
        .get_action(key)
        .await?
        .ok_or_else(|| anyhow!("The record `{key}` of node `{node}` is gone (removed by gc?)"))
}

fn status_words(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Failed => "failed there: `peirce log NODE --run RUN` shows why",
        NodeStatus::Cancelled => "was cancelled there",
        NodeStatus::Skipped => "was skipped there: an input failed",
        NodeStatus::Cached | NodeStatus::Ran => "has no output there",
    }
}

pub async fn show(globals: &Globals, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = args.pick.store(globals)?;
    let record = record_of(&store, &args.node, &args.pick).await?;
    let tree = store.check_tree(record.output).await?;
    if args.json {
        let files: Option<serde_json::Value> = tree.as_ref().ok().map(|tree| {
            tree.iter()
                .map(|(name, entry)| {
                    (
                        name.to_string(),
                        serde_json::to_value(entry).expect("entries serialize"),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        });
        let json =
            serde_json::json!({ "record": record, "files": files, "complete": tree.is_ok() });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "node      {} ({} v{})",
        record.node, record.components.kind, record.components.kind_version
    );
    println!("workflow  {}", record.workflow);
    println!("key       {}", record.key);
    println!("output    {}", record.output);
    println!(
        "ran       {} on {} for {:.2}s (peirce {})",
        format_utc(record.started_at),
        record.host,
        record.duration_s,
        record.engine_version
    );
    if !record.components.salt.is_empty() {
        println!("salt      {:?}", record.components.salt);
    }
    println!("params");
    if let Some(params) = record.components.params.as_object() {
        for (name, value) in params {
            println!("  {name} = {}", peirce_dag::value::Value::from_json(value));
        }
    }
    if !record.components.inputs.is_empty() {
        println!("inputs");
        for (name, digest) in &record.components.inputs {
            let source = record.input_sources.get(name).cloned().unwrap_or_default();
            println!("  {name:16} {digest}  {source}");
        }
    }
    match tree {
        Ok(tree) => {
            println!("files ({}, {} bytes)", tree.len(), tree.total_size());
            for (name, entry) in tree.iter() {
                let mode = if entry.executable { "x" } else { " " };
                println!(
                    "  {mode} {:>10}  {}  {name}",
                    entry.size,
                    entry.digest.short()
                );
            }
        }
        Err(reason) => println!("files     INCOMPLETE: {reason}"),
    }
    if let Some(log) = record.log {
        println!("log       {log}  (peirce log {})", record.node);
    }
    Ok(ExitCode::SUCCESS)
}

/// The node's run in the latest run of its workflow, when it failed there: newer than its
/// latest result, if it has one. With several workflows, the most recent failure.
async fn latest_failure(
    store: &Store,
    node: &str,
    workflow: Option<&PathBuf>,
) -> anyhow::Result<Option<(RunRecord, NodeRun)>> {
    let refs = match workflow {
        Some(path) => WorkflowRef::load(store, &workflow_name(path)?)
            .await
            .into_iter()
            .collect(),
        None => WorkflowRef::all(store).await?,
    };
    let mut found: Option<(RunRecord, NodeRun)> = None;
    for workflow_ref in refs {
        let Some(mut record) = store
            .get_document::<RunRecord>(&RunRecord::location(&workflow_ref.latest_run))
            .await?
        else {
            continue;
        };
        let Some(run) = record.nodes.get(node).cloned() else {
            continue;
        };
        let newer = found
            .as_ref()
            .is_none_or(|(best, _)| best.started_at < record.started_at);
        if run.status == NodeStatus::Failed && newer {
            record.redact();
            found = Some((record.clone(), run));
        }
    }
    Ok(found)
}

pub async fn log(globals: &Globals, args: LogArgs) -> anyhow::Result<ExitCode> {
    let store = args.pick.store(globals)?;
    let failure = match &args.pick.run {
        Some(wanted) => Some(node_in_run(&store, wanted, &args.node).await?)
            .filter(|(_, run)| run.status == NodeStatus::Failed),
        None => latest_failure(&store, &args.node, args.pick.workflow.as_ref()).await?,
    };
    if let Some((record, run)) = failure {
        let error = run.error.unwrap_or_default();
        let first = error.lines().next().unwrap_or_default();
        eprintln!(
            "node `{}` failed in run {} of workflow `{}` ({}): {first}",
            args.node,
            record.id,
            record.workflow,
            format_utc(record.started_at)
        );
        match run.log {
            Some(log) => {
                let bytes = store.get_bytes(log).await.with_context(|| {
                    format!(
                        "the log of the failed node `{}` is gone (removed by gc?)",
                        args.node
                    )
                })?;
                to_stdout(std::io::stdout().write_all(&bytes))?;
            }
            None => eprintln!("node `{}` printed nothing", args.node),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = record_of(&store, &args.node, &args.pick).await?;
    match record.log {
        Some(log) => {
            let bytes = store.get_bytes(log).await?;
            to_stdout(std::io::stdout().write_all(&bytes))?;
        }
        None => eprintln!("node `{}` printed nothing", args.node),
    }
    Ok(ExitCode::SUCCESS)
}

/// A digest argument, or a node name meaning its latest output.
async fn resolve_target(store: &Store, target: &str, pick: &Pick) -> anyhow::Result<BlobDigest> {
    if let Ok(digest) = target.parse::<BlobDigest>() {
        if pick.run.is_some() {
            bail!("`--run` picks a node's result: give a node name, not a digest");
        }
        return Ok(digest);
    }
    if target.starts_with("blake3:") {
        bail!("`{target}` is not a digest: expected `blake3:` and 64 hex digits");
    }
    Ok(output_of(store, target, pick).await?.cast())
}

pub async fn cat(globals: &Globals, args: CatArgs) -> anyhow::Result<ExitCode> {
    let store = args.pick.store(globals)?;
    let digest = resolve_target(&store, &args.target, &args.pick).await?;
    let bytes = store.get_bytes(digest).await?;
    let as_tree =
        peirce_store::Tree::decode(digest.cast::<peirce_store::digest::TreeKind>(), &bytes).ok();
    let mut out = std::io::stdout().lock();
    match (as_tree, &args.path) {
        (Some(tree), Some(path)) => {
            let entry = tree.get(path).ok_or_else(|| {
                anyhow!("Tree `{digest}` has no file `{path}` (it has {} files; list them with `peirce cat {digest}`)", tree.len())
            })?;
            to_stdout(out.write_all(&store.get_bytes(entry.digest).await?))?;
        }
        (Some(tree), None) => {
            for (name, entry) in tree.iter() {
                to_stdout(writeln!(
                    out,
                    "{:>10}  {}  {name}",
                    entry.size, entry.digest
                ))?;
            }
        }
        (None, Some(_)) => bail!("`{digest}` is a file, not a tree: drop the PATH argument"),
        (None, None) => to_stdout(out.write_all(&bytes))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_lineage(item: &Lineage, name: &str, indent: usize) {
    let pad = "  ".repeat(indent);
    match &item.producer {
        Some(record) => {
            println!(
                "{pad}{name}{} made by node `{}` ({} v{}) of workflow `{}` at {}, key {}",
                item.tree.short(),
                record.node,
                record.components.kind,
                record.components.kind_version,
                record.workflow,
                format_utc(record.started_at),
                record.key.short()
            );
            if let Some(params) = record.components.params.as_object() {
                let shown: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", peirce_dag::value::Value::from_json(v)))
                    .collect();
                println!("{pad}  params: {}", shown.join(", "));
            }
            let mut inputs = item.inputs.iter().peekable();
            if inputs.peek().is_none() && !record.components.inputs.is_empty() {
                println!("{pad}  (inputs not followed: depth limit)");
            }
            for (input, child) in inputs {
                let source = record.input_sources.get(input).cloned().unwrap_or_default();
                let label = format!("input `{input}` {source} ");
                print_lineage(child, &label, indent + 1);
            }
        }
        None => println!(
            "{pad}{name}{} (external input, or not produced by a recorded node)",
            item.tree.short()
        ),
    }
}

pub async fn why(globals: &Globals, args: WhyArgs) -> anyhow::Result<ExitCode> {
    let store = args.pick.store(globals)?;
    let digest = resolve_target(&store, &args.target, &args.pick).await?;
    let tree: TreeDigest = digest.cast();
    let roots: Vec<(TreeDigest, Option<String>)> = if store.producer_of(tree).await?.is_some() {
        vec![(tree, None)]
    } else {
        let containing = trees_containing(&store, digest).await?;
        if containing.is_empty() {
            bail!("No recorded node produced `{digest}` (nor a file with these bytes) in the store at `{}`", store.url());
        }
        let mut roots = Vec::new();
        for (key, name) in containing {
            if let Some(record) = store.get_action(key).await? {
                roots.push((record.output, Some(name)));
            }
        }
        roots
    };
    let mut all = Vec::new();
    for (root, file) in roots {
        let item = lineage(&store, root, args.depth).await?;
        if !args.json {
            if let Some(file) = &file {
                println!("`{digest}` is file `{file}` of output {}", root);
            }
            print_lineage(&item, "", 0);
        }
        all.push(serde_json::json!({ "file": file, "lineage": item }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(ExitCode::SUCCESS)
}
