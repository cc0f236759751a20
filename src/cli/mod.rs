//! Command-line arguments and their dispatch.

mod diff;
mod display;
mod export;
mod graph;
mod inspect;
mod maintain;
mod merge;
mod report;
mod run;
mod share;
mod slurm;
mod tasks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use peirce_dag::spec::{load_workflow, Override, Workflow};
use peirce_store::{SigningKey, Store};

/// Exit code for invalid workflows and flags.
pub const EXIT_INVALID: u8 = 2;
/// Exit codes of a run stopped by a signal: 128 + the signal's number, as a shell reports a
/// process killed by it (docs/architecture.md §12). Ctrl-C (SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;
/// SIGTERM: what Slurm, Docker and systemd send.
pub const EXIT_TERMINATED: u8 = 143;
/// SIGHUP: the terminal went away.
pub const EXIT_HANGUP: u8 = 129;

/// `peirce --version`: the package version and the commit it was built from (`build.rs`;
/// `unknown` when built outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PEIRCE_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "peirce",
    version = VERSION,
    about = "A workflow DAG engine with content-addressed artifacts"
)]
pub struct Cli {
    /// The local store folder (default: the nearest `.peirce` in the current folder or above
    /// it; `run` makes one in the current folder)
    #[arg(long, global = true, env = "PEIRCE_STORE")]
    store: Option<PathBuf>,
    /// A remote store shared with other machines, e.g. `s3://bucket/prefix` (default: the
    /// workflow's `remote`, else `remote` in ~/.config/peirce/config.toml)
    #[arg(
        long,
        global = true,
        env = "PEIRCE_REMOTE",
        hide_env_values = true,
        value_name = "URL",
        value_parser = RemoteParser
    )]
    remote: Option<String>,
    /// Use no remote, whatever the workflow or the user config says
    #[arg(long, global = true, conflicts_with = "remote")]
    no_remote: bool,
    /// More logging (-v: debug, -vv: trace); also RUST_LOG
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow: execute what is not cached, in parallel
    Run(run::RunArgs),
    /// Show what a run would execute, and why, without executing anything
    Plan(run::PlanArgs),
    /// Each node's state: cached or stale, and its last run
    Status(run::StatusArgs),
    /// A node's latest result: key, output files, parameters, inputs, timings
    Show(inspect::ShowArgs),
    /// Print a node's captured stdout and stderr
    Log(inspect::LogArgs),
    /// Print a blob, list a tree, or print one file of a tree
    Cat(inspect::CatArgs),
    /// The lineage of an artifact: the nodes and inputs that made it
    Why(inspect::WhyArgs),
    /// Send results to the remote: a workflow's, some nodes', or a run's
    Push(share::PushArgs),
    /// Fetch results from the remote, with all their files: a workflow's, some nodes', or a run's
    Pull(share::PullArgs),
    /// List runs, newest first
    Runs(maintain::RunsArgs),
    /// Delete results no workflow's latest run, recent experiment or pinned run uses
    Gc(maintain::GcArgs),
    /// What differs between two runs: workflow file, overrides, parameters, metrics
    Diff(diff::DiffArgs),
    /// Write a node's output files into a folder (hard links where possible, verified)
    Export(export::ExportArgs),
    /// The workflow's graph as Graphviz DOT or Mermaid
    Dag(graph::DagArgs),
    /// Merge model folders (weighted average, sum or task arithmetic) into a new folder
    Merge(merge::MergeArgs),
    /// The accuracy table across a workflow's eval nodes, and its bar chart (PNG)
    Report(report::ReportArgs),
    /// The task suite: sample instances of a task family
    Tasks(tasks::TasksArgs),
    /// Print a shell completion script: `peirce completions bash > /etc/bash_completion.d/peirce`
    Completions(CompletionsArgs),
    /// Inside a Slurm job: run one node's kind from its job file (docs/architecture.md §21)
    #[command(name = "__run-node", hide = true)]
    RunNode(RunNodeArgs),
}

#[derive(Debug, Args)]
pub struct RunNodeArgs {
    /// The job file the runner wrote into the node's scratch folder
    job: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    shell: clap_complete::Shell,
}

/// Workflow file plus `--set` overrides, shared by run, plan and status.
#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// The workflow file (TOML); also given as `-w FILE`
    workflow: PathBuf,
    /// Override a parameter: `node.key=value` or `defaults.key=value` (repeatable)
    #[arg(long = "set", value_name = "NODE.KEY=VALUE")]
    set: Vec<String>,
}

/// Checks `--remote` (and `PEIRCE_REMOTE`) as it is parsed, so a malformed URL is a usage
/// error (exit 2). Unlike clap's own value errors, its message shows the value redacted.
#[derive(Debug, Clone, Copy)]
struct RemoteParser;

impl clap::builder::TypedValueParser for RemoteParser {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        argument: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let name = argument
            .map(|argument| argument.to_string())
            .unwrap_or_else(|| "--remote".into());
        let invalid = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for `{name}`: {reason}\n"),
            )
            .with_cmd(command)
        };
        let Some(text) = value.to_str() else {
            return Err(invalid("not valid UTF-8".into()));
        };
        peirce_store::validate_store_location(text).map_err(|error| invalid(error.to_string()))?;
        Ok(text.to_string())
    }
}

/// Parses the command line. Clap's errors quote what was typed (a mistyped flag's URL
/// value included), so they are printed redacted, with clap's exit status (2 for usage).
/// Help and version go out as they are: they hold no values (`PEIRCE_REMOTE`'s is hidden).
pub fn parse_arguments() -> Result<Cli, ExitCode> {
    let args = workflow_flag_as_positional(std::env::args_os().collect());
    Cli::try_parse_from(args).map_err(|error| {
        if error.use_stderr() {
            eprint!("{}", peirce_store::redact_url(&error.render().to_string()));
        } else {
            let _ = error.print();
        }
        ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_INVALID))
    })
}

/// Commands whose workflow file is their first positional argument. `-w FILE` (or
/// `--workflow FILE`) names it for them too, as it does for `show`, `log`, `cat` and `why`, so
/// every command that takes a workflow takes `-w`.
const WORKFLOW_FIRST: [&str; 6] = ["run", "plan", "status", "report", "push", "pull"];

/// Global options that take a value, whose value is not the subcommand.
const GLOBAL_WITH_VALUES: [&str; 2] = ["--store", "--remote"];

/// Rewrites `peirce run -w wf.toml NODE` as `peirce run wf.toml NODE` for the commands of
/// [`WORKFLOW_FIRST`]; anything else is left as it is, for clap to judge.
fn workflow_flag_as_positional(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let text = |arg: &std::ffi::OsString| arg.to_str().unwrap_or_default().to_string();
    let mut command = 1;
    while command < args.len() {
        let arg = text(&args[command]);
        if GLOBAL_WITH_VALUES.contains(&arg.as_str()) {
            command += 2;
        } else if arg.starts_with('-') {
            command += 1;
        } else {
            break;
        }
    }
    if command >= args.len() || !WORKFLOW_FIRST.contains(&text(&args[command]).as_str()) {
        return args;
    }
    for index in command + 1..args.len() {
        let arg = text(&args[index]);
        let value = match arg.as_str() {
            "--" => return args,
            "-w" | "--workflow" if index + 1 < args.len() => {
                let value = args.remove(index + 1);
                args.remove(index);
                value
            }
            _ => match arg
                .strip_prefix("--workflow=")
                .or_else(|| arg.strip_prefix("-w").filter(|rest| !rest.is_empty()))
            {
                Some(value) => {
                    args.remove(index);
                    value.into()
                }
                None => continue,
            },
        };
        args.insert(command + 1, value);
        return args;
    }
    args
}

/// Log lines go to stderr redacted (`redact_url`): object_store and its HTTP client log
/// request URLs, and errors carry the endpoint (docs/architecture.md §10).
struct RedactingWriter {
    line: Vec<u8>,
}

impl std::io::Write for RedactingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let text = peirce_store::redact_url(&String::from_utf8_lossy(&self.line));
            self.line.clear();
            std::io::stderr().write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// Logging to stderr; `-v` raises the level, RUST_LOG overrides.
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingWriter { line: Vec::new() })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let globals = Globals {
        store: cli.store,
        remote: cli.remote,
        no_remote: cli.no_remote,
    };
    match cli.command {
        Command::Run(args) => run::run(&globals, args).await,
        Command::RunNode(args) => slurm::run_node(&args.job).await,
        Command::Plan(args) => run::plan(&globals, args).await,
        Command::Status(args) => run::status(&globals, args).await,
        Command::Show(args) => inspect::show(&globals, args).await,
        Command::Log(args) => inspect::log(&globals, args).await,
        Command::Cat(args) => inspect::cat(&globals, args).await,
        Command::Why(args) => inspect::why(&globals, args).await,
        Command::Push(args) => share::push(&globals, args).await,
        Command::Pull(args) => share::pull(&globals, args).await,
        Command::Runs(args) => maintain::runs(&globals, args).await,
        Command::Gc(args) => maintain::gc(&globals, args).await,
        Command::Diff(args) => diff::diff(&globals, args).await,
        Command::Export(args) => export::export(&globals, args).await,
        Command::Dag(args) => graph::dag(args),
        Command::Merge(args) => merge::merge(args),
        Command::Report(args) => report::report(&globals, args).await,
        Command::Tasks(args) => tasks::tasks(args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(args.shell, &mut command, "peirce", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Options shared by every command.
pub struct Globals {
    store: Option<PathBuf>,
    remote: Option<String>,
    no_remote: bool,
}

/// Where a remote setting came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSource {
    Flag,
    Workflow,
    UserConfig,
}

/// The user config file: `PEIRCE_CONFIG`, else `$XDG_CONFIG_HOME/peirce/config.toml`, else
/// `~/.config/peirce/config.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PEIRCE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("peirce").join("config.toml"))
}

/// `remote` from the user config file, if the file exists and sets it.
fn user_config_remote() -> anyhow::Result<Option<String>> {
    user_config_string("remote", "a string such as \"s3://bucket/prefix\"")
}

/// `executor` from the user config file (`"local"` or `"slurm"`), if the file exists and
/// sets it: the default of runs whose workflow and command line name none.
pub fn user_config_executor() -> anyhow::Result<Option<peirce_dag::spec::Executor>> {
    let Some(text) = user_config_string("executor", "\"local\" or \"slurm\"")? else {
        return Ok(None);
    };
    peirce_dag::spec::Executor::parse(&text)
        .map(Some)
        .map_err(|message| {
            let path = user_config_path().unwrap_or_default();
            anyhow::anyhow!("`{}`: `executor`: {message}", path.display())
        })
}

/// The string `key` of the user config file, if the file exists and sets it; `expected` says
/// what it must be in the error when it is not a string.
fn user_config_string(key: &str, expected: &str) -> anyhow::Result<Option<String>> {
    let Some(path) = user_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read `{}`", path.display()))
        }
    };
    let document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("`{}` is not valid TOML", path.display()))?;
    match document.get(key) {
        None => Ok(None),
        Some(item) => match item.as_str() {
            Some(value) => Ok(Some(value.to_string())),
            None => anyhow::bail!("`{}`: `{key}` must be {expected}", path.display()),
        },
    }
}

/// `remote` in a workflow file's `[workflow]` table, read without loading the workflow.
fn workflow_file_remote(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let document: toml_edit::DocumentMut = text.parse().ok()?;
    document
        .get("workflow")?
        .get("remote")?
        .as_str()
        .map(str::to_string)
}

/// What a command does when no store is found (docs/architecture.md §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Make one: `.peirce` in the current folder (`run`, `pull`).
    Create,
    /// Work against an empty store held in memory, never written to disk: nothing is cached
    /// (`plan`, `status`, `report`).
    Empty,
    /// Stop with an error saying where peirce looked (`show`, `log`, `cat`, `why`, `runs`,
    /// `gc`, `push`).
    Fail,
}

/// The environment variable listing folders (`:`-separated) that the search for a store does
/// not enter, as `GIT_CEILING_DIRECTORIES` does for `.git`.
const CEILING_DIRECTORIES: &str = "PEIRCE_CEILING_DIRECTORIES";

/// The name of a store folder.
const STORE_FOLDER: &str = ".peirce";

/// The nearest `.peirce` folder in `start` or a folder above it, as git finds `.git`. The
/// search does not enter `ceilings` (a ceiling's subfolders are searched, the ceiling and
/// what is above it are not).
pub fn find_store(start: &Path, ceilings: &[PathBuf]) -> Option<PathBuf> {
    for folder in start.ancestors() {
        if ceilings.iter().any(|ceiling| ceiling == folder) {
            return None;
        }
        let candidate = folder.join(STORE_FOLDER);
        if candidate.is_dir() {
            return Some(candidate);
        }
    }
    None
}

/// The folders of `PEIRCE_CEILING_DIRECTORIES`.
fn ceilings() -> Vec<PathBuf> {
    std::env::var_os(CEILING_DIRECTORIES)
        .map(|value| {
            std::env::split_paths(&value)
                .filter(|path| !path.as_os_str().is_empty())
                .map(|path| path.canonicalize().unwrap_or(path))
                .collect()
        })
        .unwrap_or_default()
}

/// The folder peirce runs from, as an absolute path.
fn current_folder() -> anyhow::Result<PathBuf> {
    let folder = std::env::current_dir().context("cannot read the current folder")?;
    Ok(folder.canonicalize().unwrap_or(folder))
}

/// A `.peirce` beside the workflow file, where peirce kept its store before the search above,
/// for a hint when the search found none.
fn store_beside(workflow: Option<&Path>) -> Option<PathBuf> {
    let folder = workflow?.parent()?;
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let beside = folder.join(STORE_FOLDER).canonicalize().ok()?;
    beside.is_dir().then_some(beside)
}

impl Globals {
    /// The local store folder, by one rule for every command (docs/architecture.md §11):
    /// `--store` (or `PEIRCE_STORE`), else the nearest `.peirce` in the current folder or
    /// above it, else what `missing` says: a new `.peirce` in the current folder, none
    /// (`Ok(None)`: an empty store in memory), or an error saying where peirce looked.
    /// `workflow` only improves messages: a store beside it, where peirce used to keep one,
    /// is named with the command that uses it.
    fn store_root(
        &self,
        workflow: Option<&Path>,
        missing: Missing,
    ) -> anyhow::Result<Option<PathBuf>> {
        if let Some(store) = &self.store {
            if missing != Missing::Create && !store.is_dir() {
                if missing == Missing::Empty {
                    return Ok(None);
                }
                bail!(
                    "No store at `{}` (given by --store or PEIRCE_STORE): a run makes it",
                    store.display()
                );
            }
            return Ok(Some(store.clone()));
        }
        let here = current_folder()?;
        if let Some(found) = find_store(&here, &ceilings()) {
            return Ok(Some(found));
        }
        let beside = store_beside(workflow);
        match missing {
            Missing::Create => {
                let root = here.join(STORE_FOLDER);
                if let Some(beside) = beside {
                    eprintln!(
                        "note: making a new store `{}`; the store `{}` beside the workflow is not \
                         used (peirce finds `.peirce` in the current folder or above it): move it \
                         here to keep its results, or pass `--store {}`",
                        root.display(),
                        beside.display(),
                        beside.display()
                    );
                }
                Ok(Some(root))
            }
            Missing::Empty => Ok(None),
            Missing::Fail => {
                let hint = match beside {
                    Some(beside) => format!(
                        "; there is one beside the workflow: pass `--store {}`, or move it here",
                        beside.display()
                    ),
                    None => String::new(),
                };
                bail!(
                    "No store found: no `{STORE_FOLDER}` folder in `{}` or any folder above it \
                     (`peirce run WORKFLOW` makes one in the current folder; `--store DIR` names \
                     another){hint}",
                    here.display()
                )
            }
        }
    }

    /// The local store, with the remote tier the flags, the workflow file or the user config
    /// name (in that order).
    fn open_store(&self, workflow: Option<&Path>, missing: Missing) -> anyhow::Result<Store> {
        let from_file = match (&self.remote, self.no_remote, workflow) {
            (None, false, Some(path)) => workflow_file_remote(path),
            _ => None,
        };
        self.open_store_with(workflow, from_file.as_deref(), missing)
    }

    /// [`Globals::open_store`] for a loaded workflow, whose `remote` is `workflow_remote`.
    fn open_store_with(
        &self,
        workflow: Option<&Path>,
        workflow_remote: Option<&str>,
        missing: Missing,
    ) -> anyhow::Result<Store> {
        let local = self.open_local_store(workflow, missing)?;
        match self.remote_url(workflow_remote)? {
            Some((url, _)) => Ok(local.with_remote(open_remote(&url)?)),
            None => Ok(local),
        }
    }

    /// The local store alone ([`Globals::store_root`]).
    fn open_local_store(&self, workflow: Option<&Path>, missing: Missing) -> anyhow::Result<Store> {
        let store = match self.store_root(workflow, missing)? {
            Some(root) => Store::open_local(&root)
                .with_context(|| format!("cannot open the store at `{}`", root.display()))?,
            None => Store::in_memory(),
        };
        // Every record read, by any command, is bound to its key (docs/architecture.md §15);
        // `with_remote` carries the check to the remote.
        store.set_key_check(peirce_dag::key::check_components);
        // With a team key, records are signed, and the remote's must be (§15).
        if let Some(key) = signing_key()? {
            store.set_signing_key(key);
        }
        Ok(store)
    }

    /// The remote to use, and where that setting came from.
    fn remote_url(
        &self,
        workflow_remote: Option<&str>,
    ) -> anyhow::Result<Option<(String, RemoteSource)>> {
        if self.no_remote {
            return Ok(None);
        }
        if let Some(url) = &self.remote {
            return Ok(Some((url.clone(), RemoteSource::Flag)));
        }
        if let Some(url) = workflow_remote {
            return Ok(Some((url.to_string(), RemoteSource::Workflow)));
        }
        Ok(user_config_remote()?.map(|url| (url, RemoteSource::UserConfig)))
    }
}

/// The environment variable holding the team signing key, as 64 hex digits.
const SIGNING_KEY: &str = "PEIRCE_SIGNING_KEY";
/// The environment variable naming a file that holds the team signing key.
const SIGNING_KEY_FILE: &str = "PEIRCE_SIGNING_KEY_FILE";

/// The team signing key from `PEIRCE_SIGNING_KEY` or the file `PEIRCE_SIGNING_KEY_FILE`
/// names (docs/architecture.md §15); `None` when neither is set (or both are empty). Errors
/// say where the key came from, never what it is.
fn signing_key() -> anyhow::Result<Option<SigningKey>> {
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    match (set(SIGNING_KEY), set(SIGNING_KEY_FILE)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => {
            anyhow::bail!("both {SIGNING_KEY} and {SIGNING_KEY_FILE} are set: set one of them")
        }
        (Some(value), None) => value
            .to_str()
            .and_then(SigningKey::from_hex)
            .map(Some)
            .ok_or_else(|| {
                anyhow::anyhow!("the signing key in {SIGNING_KEY} is not 64 hex digits")
            }),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let text = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read the signing key file `{}` ({SIGNING_KEY_FILE})",
                    path.display()
                )
            })?;
            std::str::from_utf8(&text)
                .ok()
                .and_then(SigningKey::from_hex)
                .map(Some)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the signing key in `{}` ({SIGNING_KEY_FILE}) is not 64 hex digits",
                        path.display()
                    )
                })
        }
    }
}

/// Opens a remote store by URL (or folder), with a message that never shows credentials
/// (the store's errors show the URL redacted already).
fn open_remote(url: &str) -> anyhow::Result<Store> {
    peirce_store::open_store(url).map_err(|error| {
        anyhow::anyhow!(
            "cannot open the remote: {}",
            peirce_store::redact_url(&error.to_string())
        )
    })
}

/// Loads and validates a workflow; on failure prints every error and returns exit code 2.
fn load(args: &WorkflowArgs) -> Result<Workflow, ExitCode> {
    let registry = peirce_nodes::registry();
    let mut overrides = Vec::new();
    let mut bad = false;
    for text in &args.set {
        match Override::parse(text) {
            Ok(item) => overrides.push(item),
            Err(error) => {
                eprintln!("error: {error}");
                bad = true;
            }
        }
    }
    if bad {
        return Err(ExitCode::from(EXIT_INVALID));
    }
    load_workflow(&args.workflow, &registry, &overrides).map_err(|errors| {
        for error in errors.iter() {
            eprintln!("error: {error}");
        }
        ExitCode::from(EXIT_INVALID)
    })
}

/// Exit status of a `peirce` whose stdout was closed by its reader (a shell's SIGPIPE status).
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// A write to stdout, ending peirce quietly with [`EXIT_STDOUT_CLOSED`] when the reader went
/// away (`peirce cat NODE FILE | head -c 10`), as `println!` does through the panic hook in
/// main.rs; any other error is returned.
pub fn to_stdout(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(EXIT_STDOUT_CLOSED.into())
        }
        other => other,
    }
}

/// Parses `90`, `30s`, `10m`, `2h`, `7d` into a duration.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 10m, 2h, 7d"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (use s, m, h or d)"
            ))
        }
    };
    Ok(std::time::Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_flag_becomes_the_first_positional_argument() {
        let rewrite = |line: &str| {
            let args = line.split(' ').map(std::ffi::OsString::from).collect();
            workflow_flag_as_positional(args)
                .into_iter()
                .map(|arg| arg.into_string().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            rewrite("peirce run -w wf.toml a b"),
            "peirce run wf.toml a b"
        );
        assert_eq!(
            rewrite("peirce --store s -v plan --json --workflow=wf.toml"),
            "peirce --store s -v plan wf.toml --json"
        );
        assert_eq!(rewrite("peirce status -wwf.toml"), "peirce status wf.toml");
        assert_eq!(
            rewrite("peirce report --workflow wf.toml"),
            "peirce report wf.toml"
        );
        // Other commands keep their own `-w` (merge's weights), and `--` ends the search.
        assert_eq!(rewrite("peirce merge -w a=1"), "peirce merge -w a=1");
        assert_eq!(
            rewrite("peirce show top -w wf.toml"),
            "peirce show top -w wf.toml"
        );
        assert_eq!(
            rewrite("peirce run wf.toml -- -w"),
            "peirce run wf.toml -- -w"
        );
        assert_eq!(rewrite("peirce run -w"), "peirce run -w");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_duration("0s").unwrap().as_secs(), 0);
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("h").is_err());
    }
}
