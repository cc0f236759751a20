//! Shared helpers of the integration tests: a sandbox folder holding a workflow and its
//! store, the real `peirce` binary run as a child process (with a deadline, so a hang fails
//! the test instead of stalling it), its JSON read back, and a checker of the store's
//! central invariant (no action record whose blobs are not all present and intact).
//!
//! Nodes count their executions by appending a line to `count-<name>` in the sandbox,
//! outside the store: the counts say what really ran, whatever the run record claims.

#![allow(dead_code)]

pub mod s3;
pub mod tiny_meta_align;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const PEIRCE: &str = env!("CARGO_BIN_EXE_peirce");

/// How long one `peirce` command may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// What a finished `peirce` command left.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{self}"))
    }

    /// Panics unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }

    /// Panics unless the command succeeded.
    pub fn success(self) -> Self {
        self.expect_code(0)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Waits for `child` (whose stdout and stderr are piped) up to [`DEADLINE`], killing it
/// past that and failing.
pub fn finish(mut child: Child) -> Outcome {
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for peirce") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "peirce ran past {DEADLINE:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    Outcome {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Polls until `path` holds a complete line (written by a node), or fails after `timeout`.
pub fn wait_for_line(path: &Path, timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.trim().to_string();
            }
        }
        assert!(
            started.elapsed() < timeout,
            "`{}` did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TOML basic string holding `text` (JSON string syntax is valid TOML).
pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// Node name to status (`ran`, `cached`, `failed`, ...) of a `run --json` record.
pub fn statuses(record: &Value) -> BTreeMap<String, String> {
    record["nodes"]
        .as_object()
        .unwrap_or_else(|| panic!("not a run record: {record}"))
        .iter()
        .map(|(name, run)| (name.clone(), run["status"].as_str().unwrap().to_string()))
        .collect()
}

/// `statuses` for the expectations written as a literal list.
pub fn expect_statuses(record: &Value, expected: &[(&str, &str)]) {
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(node, status)| (node.to_string(), status.to_string()))
        .collect();
    assert_eq!(statuses(record), expected, "run record:\n{record:#}");
}

/// Node name to output tree digest of a `run --json` record.
pub fn outputs(record: &Value) -> BTreeMap<String, String> {
    record["nodes"]
        .as_object()
        .expect("run record")
        .iter()
        .map(|(name, run)| {
            (
                name.clone(),
                run["output"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The entry of `node` in a `plan --json` list.
pub fn planned<'a>(plan: &'a Value, node: &str) -> &'a Value {
    plan.as_array()
        .expect("a plan is a list")
        .iter()
        .find(|entry| entry["node"] == node)
        .unwrap_or_else(|| panic!("no node `{node}` in plan {plan:#}"))
}

/// The reasons of `node` in a plan, by name (`new`, `param_changed`, ...).
pub fn reason_names(plan: &Value, node: &str) -> Vec<String> {
    planned(plan, node)["reasons"]
        .as_array()
        .map(|reasons| {
            reasons
                .iter()
                .map(|r| r["reason"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A folder holding a workflow file (`wf.toml`), its store (`.peirce`) and counters.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("peirce-test-")
                .tempdir()
                .expect("a temporary folder"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// The default store: `.peirce` beside the workflow.
    pub fn store(&self) -> PathBuf {
        self.path(".peirce")
    }

    pub fn workflow_path(&self) -> PathBuf {
        self.path("wf.toml")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("writing into the sandbox");
        path
    }

    /// Writes the workflow file.
    pub fn workflow(&self, text: &str) -> PathBuf {
        self.write("wf.toml", text)
    }

    /// The workflow file's text.
    pub fn read_workflow(&self) -> String {
        std::fs::read_to_string(self.workflow_path()).expect("reading the workflow")
    }

    /// A shell snippet appending one line to `count-<name>` (outside the store).
    pub fn counter(&self, name: &str) -> String {
        format!(
            "echo x >> '{}'",
            self.path(&format!("count-{name}")).display()
        )
    }

    /// How many times the node counted by `counter(name)` executed.
    pub fn count(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path(&format!("count-{name}")))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// Counts of several nodes, in order.
    pub fn counts(&self, names: &[&str]) -> Vec<usize> {
        names.iter().map(|name| self.count(name)).collect()
    }

    /// `peirce ARGS` in the sandbox, with a clean environment, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(PEIRCE);
        command
            .args(args)
            .current_dir(self.root())
            .env_remove("PEIRCE_STORE")
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env_remove("RUST_LOG")
            .env_remove("PEIRCE_TEST_PAUSE_BEFORE_RECORD_MS")
            // No remote unless a test names one: the user's config and environment stay out.
            .env_remove("PEIRCE_REMOTE")
            .env_remove("PEIRCE_CONFIG")
            // Unsigned records unless a test sets a team key.
            .env_remove("PEIRCE_SIGNING_KEY")
            .env_remove("PEIRCE_SIGNING_KEY_FILE")
            .env("XDG_CONFIG_HOME", self.path("config"))
            // The search for a store stays inside the sandbox: a `.peirce` some other run
            // left in /tmp is not this test's.
            .env(
                "PEIRCE_CEILING_DIRECTORIES",
                self.root().parent().expect("the sandbox is in a folder"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `peirce ARGS`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("starting peirce")
    }

    /// Runs `peirce ARGS` to completion.
    pub fn peirce(&self, args: &[&str]) -> Outcome {
        finish(self.spawn(args))
    }

    /// `peirce run wf.toml --json EXTRA`: the outcome and the run record.
    pub fn run(&self, extra: &[&str]) -> (Outcome, Value) {
        let mut args = vec!["run", "wf.toml", "--json"];
        args.extend_from_slice(extra);
        let outcome = self.peirce(&args);
        let record = outcome.json();
        (outcome, record)
    }

    /// A run that must succeed; returns its record.
    pub fn run_ok(&self, extra: &[&str]) -> Value {
        let (outcome, record) = self.run(extra);
        outcome.success();
        record
    }

    /// `peirce plan wf.toml --json EXTRA`.
    pub fn plan(&self, extra: &[&str]) -> Value {
        let mut args = vec!["plan", "wf.toml", "--json"];
        args.extend_from_slice(extra);
        self.peirce(&args).success().json()
    }

    /// `peirce cat NODE FILE`: a file of a node's latest output.
    pub fn cat(&self, node: &str, file: &str) -> String {
        self.peirce(&["cat", node, file]).success().stdout
    }

    /// `peirce cat TARGET` listing a tree: file name to (size, blob digest).
    pub fn listing(&self, target: &str) -> BTreeMap<String, (u64, String)> {
        self.peirce(&["cat", target])
            .success()
            .stdout
            .lines()
            .map(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(parts.len(), 3, "unexpected listing line {line:?}");
                (
                    parts[2].to_string(),
                    (parts[0].parse().expect("a size"), parts[1].to_string()),
                )
            })
            .collect()
    }

    /// The file holding a blob in the local store.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("blake3:").expect("a blake3 digest");
        self.store().join("cas").join(&hex[..2]).join(hex)
    }

    /// Action records in the store: key hex to parsed record.
    pub fn action_records(&self) -> BTreeMap<String, Value> {
        let Ok(reader) = std::fs::read_dir(self.store().join("ac")) else {
            return BTreeMap::new();
        };
        reader
            .map(|item| {
                let item = item.expect("listing ac/");
                let bytes = std::fs::read(item.path()).expect("reading a record");
                let record =
                    peirce_store::encoding::decode_record(&bytes).unwrap_or_else(|error| {
                        panic!(
                            "record `{}` does not decode: {error}",
                            item.path().display()
                        )
                    });
                let record = serde_json::to_value(record).expect("a record is JSON");
                (item.file_name().to_string_lossy().into_owned(), record)
            })
            .collect()
    }

    /// Whether some action record was produced by `node`.
    pub fn has_record_for(&self, node: &str) -> bool {
        self.action_records()
            .values()
            .any(|record| record["node"] == node)
    }

    /// Every violation of the store's invariant: an action record whose tree or blobs are
    /// missing, of the wrong size, or corrupt (each blob is read back through `peirce cat`,
    /// which verifies it). Empty when the store is sound.
    pub fn store_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, record) in self.action_records() {
            let node = record["node"].as_str().unwrap_or("?").to_string();
            let output = record["output"].as_str().unwrap_or_default().to_string();
            let tree_path = self.blob_path(&output);
            let Ok(tree_bytes) = std::fs::read(&tree_path) else {
                problems.push(format!("record {key} ({node}): tree {output} is missing"));
                continue;
            };
            if self.peirce(&["cat", &output]).code != 0 {
                problems.push(format!(
                    "record {key} ({node}): tree {output} does not verify"
                ));
            }
            let tree: Value = match tree_json(&output, &tree_bytes) {
                Ok(tree) => tree,
                Err(error) => {
                    problems.push(format!(
                        "record {key} ({node}): tree does not decode: {error}"
                    ));
                    continue;
                }
            };
            let entries = tree["entries"].as_object().cloned().unwrap_or_default();
            let mut blobs: Vec<(String, String, Option<u64>)> = entries
                .iter()
                .map(|(name, entry)| {
                    (
                        name.clone(),
                        entry["digest"].as_str().unwrap_or_default().to_string(),
                        entry["size"].as_u64(),
                    )
                })
                .collect();
            if let Some(log) = record["log"].as_str() {
                blobs.push(("(log)".into(), log.to_string(), None));
            }
            for (name, digest, size) in blobs {
                let on_disk = std::fs::metadata(self.blob_path(&digest)).map(|m| m.len());
                match (on_disk, size) {
                    (Err(_), _) => {
                        problems.push(format!("record {key} ({node}): `{name}` {digest} missing"));
                        continue;
                    }
                    (Ok(actual), Some(expected)) if actual != expected => {
                        problems.push(format!(
                            "record {key} ({node}): `{name}` has {actual} bytes, expected {expected}"
                        ));
                        continue;
                    }
                    _ => {}
                }
                let read = self.peirce(&["cat", &digest]);
                if read.code != 0 {
                    problems.push(format!(
                        "record {key} ({node}): `{name}` does not verify: {}",
                        read.stderr.trim()
                    ));
                }
            }
        }
        problems
    }

    /// [`Sandbox::store_problems`] without a process per blob, for suites that check a store
    /// hundreds of times (tests/faults.rs): every record under `ac/` decodes and names its own
    /// key, and its tree, every blob the tree names and its log are present and hash to their
    /// names (docs/architecture.md §4, §5). Reads behind peirce's back, so it quarantines
    /// nothing. Empty when the store is sound.
    pub fn store_problems_in_process(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(reader) = std::fs::read_dir(self.store().join("ac")) else {
            return problems;
        };
        // Only names that are keys are records, as `Store::list_actions` reads `ac/`: a writer
        // killed mid-write leaves its staging file (`<hex>#<n>`), which no lookup reads.
        let mut files: Vec<PathBuf> = reader
            .flatten()
            .map(|item| item.path())
            .filter(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                name.len() == 64 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
            })
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    problems.push(format!("record {name}: unreadable: {error}"));
                    continue;
                }
            };
            let record = match peirce_store::encoding::decode_record(&bytes) {
                Ok(record) => record,
                Err(error) => {
                    problems.push(format!("record {name}: does not decode: {error}"));
                    continue;
                }
            };
            let node = &record.node;
            if record.key.hex() != name {
                problems.push(format!("record {name} ({node}): names key {}", record.key));
            }
            let tree_digest = record.output;
            let tree_bytes = match self.verified_blob(&tree_digest.to_string()) {
                Ok(bytes) => bytes,
                Err(problem) => {
                    problems.push(format!("record {name} ({node}): tree {problem}"));
                    continue;
                }
            };
            let tree = match peirce_store::Tree::decode(tree_digest, &tree_bytes) {
                Ok(tree) => tree,
                Err(error) => {
                    problems.push(format!(
                        "record {name} ({node}): tree does not decode: {error}"
                    ));
                    continue;
                }
            };
            for (file, entry) in tree.iter() {
                match self.verified_blob(&entry.digest.to_string()) {
                    Ok(bytes) if bytes.len() as u64 != entry.size => problems.push(format!(
                        "record {name} ({node}): `{file}` has {} bytes, expected {}",
                        bytes.len(),
                        entry.size
                    )),
                    Ok(_) => {}
                    Err(problem) => {
                        problems.push(format!("record {name} ({node}): `{file}` {problem}"))
                    }
                }
            }
            if let Some(log) = record.log {
                if let Err(problem) = self.verified_blob(&log.to_string()) {
                    problems.push(format!("record {name} ({node}): log {problem}"));
                }
            }
        }
        problems
    }

    /// The bytes of the local blob `digest`, or why they cannot be had: missing, or not
    /// hashing to their name.
    pub fn verified_blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let bytes =
            std::fs::read(self.blob_path(digest)).map_err(|_| format!("{digest} missing"))?;
        let actual = peirce_store::BlobDigest::of(&bytes).to_string();
        if actual != digest {
            return Err(format!("{digest} corrupt: its bytes hash to {actual}"));
        }
        Ok(bytes)
    }

    /// Asserts [`Sandbox::store_problems`] is empty.
    pub fn assert_store_sound(&self) {
        let problems = self.store_problems();
        assert!(
            problems.is_empty(),
            "store invariant broken:\n{problems:#?}"
        );
    }

    /// Regular files under the store (empty folders do not count).
    pub fn store_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            let Ok(reader) = std::fs::read_dir(dir) else {
                return;
            };
            for item in reader.flatten() {
                let path = item.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.store(), &mut found);
        found
    }
}

/// A stored tree encoding as JSON, `{"entries": {name: {"digest", "size", "executable"}}}`.
pub fn tree_json(digest: &str, bytes: &[u8]) -> Result<Value, String> {
    let digest: peirce_store::TreeDigest = digest.parse().map_err(|error| format!("{error}"))?;
    let tree = peirce_store::Tree::decode(digest, bytes).map_err(|error| error.to_string())?;
    let entries: serde_json::Map<String, Value> = tree
        .iter()
        .map(|(name, entry)| (name.to_string(), serde_json::to_value(entry).unwrap()))
        .collect();
    Ok(serde_json::json!({ "entries": entries }))
}

/// A TOML command string that counts node `name` in `sandbox`, sleeps `sleep` seconds
/// (0: no sleep), then runs `rest`.
pub fn counted(sandbox: &Sandbox, sleep: f64, name: &str, rest: &str) -> String {
    let pause = if sleep > 0.0 {
        format!("sleep {sleep}; ")
    } else {
        String::new()
    };
    toml_string(&format!("{}; {pause}{rest}", sandbox.counter(name)))
}

/// The diamond used by several tests: `gen` feeds `left` and `right`, both feed `join`;
/// `solo` stands apart. `left` has an `env` entry its command ignores, `right` scales by
/// `env.FACTOR`. Each node first sleeps `sleep` seconds (0: no sleep) and counts itself.
pub fn diamond(sandbox: &Sandbox, sleep: f64) -> String {
    let command = |name: &str, rest: &str| counted(sandbox, sleep, name, rest);
    format!(
        r#"[workflow]
name = "diamond"

[gen]
kind = "exec"
command = {gen}

[left]
kind = "exec"
inputs = ["gen"]
env = {{ UNUSED = "a" }}
command = {left}

[right]
kind = "exec"
inputs = ["gen"]
env = {{ FACTOR = "2" }}
command = {right}

[join]
kind = "exec"
inputs = {{ sum = "left", scaled = "right" }}
command = {join}

[solo]
kind = "exec"
command = {solo}
"#,
        gen = command("gen", "seq 1 10 > out/numbers.txt"),
        left = command(
            "left",
            "awk '{s+=$1} END {print s}' {inputs.gen}/numbers.txt > out/sum.txt"
        ),
        right = command(
            "right",
            "awk -v f=$FACTOR '{s+=$1*f} END {print s}' $PEIRCE_INPUT_GEN/numbers.txt > out/scaled.txt"
        ),
        join = command(
            "join",
            "cat {inputs.sum}/sum.txt {inputs.scaled}/scaled.txt > out/join.txt"
        ),
        solo = command("solo", "echo solo > out/solo.txt"),
    )
}

/// The nodes of [`diamond`], in file order.
pub const DIAMOND: [&str; 5] = ["gen", "left", "right", "join", "solo"];
