//! The standing fault-injection suite: seeded, randomized trials against the real binary and
//! a real store. Each trial injects one fault:
//!
//! - `kill`: `peirce run` gets SIGKILL at a random moment (docs/architecture.md §4);
//! - `term`: `peirce run` gets SIGTERM at a random moment and must stop as §12 says;
//! - `corrupt`: a random store file reachable from the latest records (a blob, a tree
//!   encoding, a log, an action record or the workflow's ref) has bytes flipped, is
//!   truncated or grows, between runs; a read must detect it and never serve it (§5, §11);
//! - `race`: two or three `peirce run` share the store at once, one of them sometimes
//!   killed (§6);
//! - `s3-kill`: with a private moto server (`PEIRCE_TEST_MOTO`), the server is killed at a
//!   random moment of a run that writes through to it, and restarted (§10).
//!
//! After each trial the store's invariant holds (every action record's tree, blobs and log
//! present and hashing to their names, `Sandbox::store_problems_in_process`), and the next
//! clean `peirce run` finishes with exactly the output digests of a clean run of the same
//! workflow in a store of its own. Runs change the salts of a random subset of nodes, so
//! there is always work to interrupt; salts move keys, never output bytes (§3), so the
//! reference digests hold whatever the salts.
//!
//! `PEIRCE_FAULT_TRIALS` sets the number of trials, `PEIRCE_FAULT_SEED` the seed (printed
//! either way; it reproduces every choice, though not the machine's timing). What this
//! suite does not do: faults inside the store's own process (a full disk, a failing
//! `fsync`), and power loss, which a killed process does not model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use common::{finish, outputs, toml_string, Outcome, Sandbox};

/// Every class forty times or more, in about two and a half minutes of a loaded 2-core
/// machine (README.md, Development, has the measured figures).
const DEFAULT_TRIALS: usize = 200;

/// The workflow's nodes, in file order.
const NODES: [&str; 6] = ["gen", "left", "right", "join", "solo", "report"];

/// A diamond (`gen` feeds `left` and `right`, which feed `join`) beside `solo`, with
/// `report` reading `join` and `solo`. Some nodes sleep a few tens of milliseconds so that
/// kills land while nodes run; `join` writes into a subfolder and `report` prints, so its
/// log is not empty. Nothing depends on the sandbox, so every store computes the same bytes.
fn workflow() -> String {
    let nodes = [
        (
            "gen",
            "",
            "sleep 0.03; seq 1 300 > out/numbers.txt; echo gen > out/tag.txt",
        ),
        (
            "left",
            r#"inputs = ["gen"]"#,
            "awk '{s+=$1} END {print s}' {inputs.gen}/numbers.txt > out/sum.txt; sleep 0.02",
        ),
        (
            "right",
            r#"inputs = ["gen"]"#,
            "sleep 0.04; awk '{print $1*3}' {inputs.gen}/numbers.txt > out/scaled.txt",
        ),
        (
            "join",
            r#"inputs = { sum = "left", scaled = "right" }"#,
            "cat {inputs.sum}/sum.txt {inputs.scaled}/scaled.txt > out/join.txt; \
             mkdir -p out/deep; wc -l < {inputs.scaled}/scaled.txt > out/deep/lines.txt",
        ),
        ("solo", "", "sleep 0.05; echo solo > out/solo.txt"),
        (
            "report",
            r#"inputs = { join = "join", solo = "solo" }"#,
            "sleep 0.02; cat {inputs.join}/join.txt {inputs.solo}/solo.txt > out/report.txt; \
             echo report written",
        ),
    ];
    let mut text = String::from("[workflow]\nname = \"faults\"\n");
    for (name, inputs, command) in nodes {
        text.push_str(&format!(
            "\n[{name}]\nkind = \"exec\"\n{inputs}\ncommand = {}\n",
            toml_string(command)
        ));
    }
    text
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Kill,
    Term,
    Corrupt,
    Race,
    S3Kill,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Kill => "kill",
            Class::Term => "term",
            Class::Corrupt => "corrupt",
            Class::Race => "race",
            Class::S3Kill => "s3-kill",
        }
    }
}

/// What a clean run of the workflow gives: node to output tree digest, and how long it took.
struct Reference {
    outputs: std::collections::BTreeMap<String, String>,
    run_time: Duration,
}

/// One sandbox whose store the trials keep working on, and the salts its last complete run
/// used (`None` when nothing has run to completion since it was made).
struct Bench {
    sandbox: Sandbox,
    salts: [u32; 6],
    complete: Option<Value>,
}

impl Bench {
    fn new() -> Bench {
        let sandbox = Sandbox::new();
        sandbox.workflow(&workflow());
        Bench {
            sandbox,
            salts: [0; 6],
            complete: None,
        }
    }

    /// `peirce run` with the current salts.
    fn run_args(&self) -> Vec<String> {
        // Salted runs are the latest (not experiments), so refs are written as before.
        let mut args: Vec<String> = ["run", "wf.toml", "--json", "--as-latest"]
            .map(String::from)
            .to_vec();
        for (node, salt) in NODES.iter().zip(self.salts) {
            args.push("--set".into());
            args.push(format!("{node}.salt=\"{salt}\""));
        }
        args
    }

    fn spawn_run(&self) -> Child {
        let args = self.run_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sandbox.spawn(&args)
    }

    /// New salts for a random, non-empty subset of the nodes: those (and whatever their
    /// outputs reach, were the bytes to change) have work to do.
    fn shuffle_salts(&mut self, rng: &mut ChaCha8Rng) {
        let chosen = rng.random_range(0..NODES.len());
        for (index, salt) in self.salts.iter_mut().enumerate() {
            if index == chosen || rng.random_bool(0.4) {
                *salt = rng.random_range(1..1_000_000);
            }
        }
        self.complete = None;
    }

    /// The next clean run: it must succeed with exactly the reference digests, and leave the
    /// store sound.
    fn clean_run(&mut self, reference: &Reference, problems: &mut Vec<String>, label: &str) {
        let outcome = finish(self.spawn_run());
        check_complete_run(&outcome, reference, problems, label);
        if let Ok(record) = serde_json::from_str::<Value>(&outcome.stdout) {
            if outcome.code == 0 {
                self.complete = Some(record);
            }
        }
        store_check(&self.sandbox, problems, &format!("after {label}"));
    }
}

/// Problems of a run that should have completed: exit code 0 and the reference outputs.
fn check_complete_run(
    outcome: &Outcome,
    reference: &Reference,
    problems: &mut Vec<String>,
    label: &str,
) {
    if outcome.code != 0 {
        problems.push(format!("{label} failed:\n{outcome}"));
        return;
    }
    match serde_json::from_str::<Value>(&outcome.stdout) {
        Ok(record) => {
            let got = outputs(&record);
            if got != reference.outputs {
                problems.push(format!(
                    "{label} gave other outputs than the reference:\n got {got:?}\n want {:?}",
                    reference.outputs
                ));
            }
        }
        Err(error) => problems.push(format!("{label}: stdout is not JSON ({error}):\n{outcome}")),
    }
}

fn store_check(sandbox: &Sandbox, problems: &mut Vec<String>, when: &str) {
    for problem in sandbox.store_problems_in_process() {
        problems.push(format!("store unsound {when}: {problem}"));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: a plain syscall on a child this test started and has not reaped yet, so the
    // PID cannot have been reused.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// A moment within a run: up to 1.3 times the reference run's wall time.
fn random_delay(rng: &mut ChaCha8Rng, reference: &Reference) -> Duration {
    let most = (reference.run_time.as_millis() as u64 * 13 / 10).max(20);
    Duration::from_millis(rng.random_range(0..=most))
}

/// SIGKILL or SIGTERM of `peirce run` at a random moment, then the store check and the next
/// clean run.
fn interrupt_trial(
    bench: &mut Bench,
    rng: &mut ChaCha8Rng,
    reference: &Reference,
    sig: i32,
) -> Vec<String> {
    let mut problems = Vec::new();
    bench.shuffle_salts(rng);
    let delay = random_delay(rng, reference);
    let child = bench.spawn_run();
    std::thread::sleep(delay);
    signal(&child, sig);
    let outcome = finish(child);
    problems.push(format!("(signal {sig} after {delay:?})"));
    let described = problems.len();
    let expected: &[i32] = if sig == libc::SIGKILL {
        // Killed, or finished first.
        &[137, 0]
    } else {
        // Stopped like Ctrl-C (§12), or finished first.
        &[143, 0]
    };
    if !expected.contains(&outcome.code) {
        problems.push(format!(
            "`peirce run` ended with {} (expected one of {expected:?}):\n{outcome}",
            outcome.code
        ));
    }
    if outcome.code == 0 {
        check_complete_run(&outcome, reference, &mut problems, "the signalled run");
    }
    store_check(&bench.sandbox, &mut problems, "after the signal");
    bench.clean_run(reference, &mut problems, "the next clean run");
    if problems.len() == described {
        problems.clear();
    }
    problems
}

/// Store files that the latest complete run's records reach, by what they are.
struct Reachable {
    files: Vec<(&'static str, PathBuf, Option<String>)>,
}

fn reachable(sandbox: &Sandbox, record: &Value) -> Reachable {
    let mut files: Vec<(&'static str, PathBuf, Option<String>)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |kind: &'static str, path: PathBuf, digest: Option<String>| {
        if seen.insert(path.clone()) {
            files.push((kind, path, digest));
        }
    };
    for node in NODES {
        let key = record["nodes"][node]["key"].as_str().unwrap_or_default();
        let Some(hex) = key.strip_prefix("blake3:") else {
            continue;
        };
        let record_path = sandbox.store().join("ac").join(hex);
        let Ok(bytes) = std::fs::read(&record_path) else {
            continue;
        };
        let Ok(action) = peirce_store::encoding::decode_record(&bytes) else {
            continue;
        };
        add("record", record_path, None);
        let tree_digest = action.output.to_string();
        if let Ok(bytes) = std::fs::read(sandbox.blob_path(&tree_digest)) {
            if let Ok(tree) = peirce_store::Tree::decode(action.output, &bytes) {
                for (_, entry) in tree.iter() {
                    let digest = entry.digest.to_string();
                    add("blob", sandbox.blob_path(&digest), Some(digest));
                }
            }
        }
        add("tree", sandbox.blob_path(&tree_digest), Some(tree_digest));
        if let Some(log) = action.log {
            let digest = log.to_string();
            add("log", sandbox.blob_path(&digest), Some(digest));
        }
    }
    if let Ok(reader) = std::fs::read_dir(sandbox.store().join("refs")) {
        for item in reader.flatten() {
            add("ref", item.path(), None);
        }
    }
    Reachable { files }
}

/// Changes `path` in place: flips one to three bytes, truncates it, or appends bytes (an
/// empty file can only grow). Returns what it did.
fn mutate(path: &Path, rng: &mut ChaCha8Rng) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(path).expect("reading the file to corrupt");
    // Blobs are read-only files; the corruption comes from outside peirce.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .expect("making the file writable");
    let choice = if bytes.is_empty() {
        2
    } else {
        rng.random_range(0..3)
    };
    let what = match choice {
        0 => {
            let flips = rng.random_range(1..=3);
            let mut at = Vec::new();
            for _ in 0..flips {
                let index = rng.random_range(0..bytes.len());
                bytes[index] ^= rng.random_range(1..=255u8);
                at.push(index);
            }
            format!("flipped bytes at {at:?} of {}", bytes.len())
        }
        1 => {
            let length = bytes.len();
            let keep = rng.random_range(0..length);
            bytes.truncate(keep);
            format!("truncated {length} bytes to {keep}")
        }
        _ => {
            let extra = rng.random_range(1..=64);
            bytes.extend((0..extra).map(|_| rng.random::<u8>()));
            format!("appended {extra} bytes")
        }
    };
    std::fs::write(path, &bytes).expect("corrupting the file");
    what
}

/// `peirce cat DIGEST` on a corrupted blob: it must fail, or (after a run healed the blob)
/// serve exactly the named bytes; a failure must leave the blob out of `cas/` (§5).
fn read_back(sandbox: &Sandbox, kind: &str, digest: &str, problems: &mut Vec<String>) {
    let read = sandbox.peirce(&["cat", digest]);
    let path = sandbox.blob_path(digest);
    let intact = sandbox.verified_blob(digest).is_ok();
    if read.code == 0 {
        let served_ok = match kind {
            // A tree is listed, not printed; listing it means it verified.
            "tree" => intact,
            _ => peirce_store::BlobDigest::of(read.stdout.as_bytes()).to_string() == digest,
        };
        if !served_ok {
            problems.push(format!(
                "`peirce cat {digest}` served corrupt bytes:\n{read}"
            ));
        }
    } else if path.exists() && !intact {
        problems.push(format!(
            "`peirce cat {digest}` failed but left the corrupt file in `cas/`:\n{read}"
        ));
    }
}

/// One store file reachable from the latest records is corrupted; then, in a random order,
/// a read of it and the next clean run; then a second clean run and the store check.
fn corrupt_trial(bench: &mut Bench, rng: &mut ChaCha8Rng, reference: &Reference) -> Vec<String> {
    let mut problems = Vec::new();
    if bench.complete.is_none() {
        bench.clean_run(reference, &mut problems, "the preparing run");
        if !problems.is_empty() {
            return problems;
        }
    }
    let record = bench.complete.clone().expect("a complete run");
    let reachable = reachable(&bench.sandbox, &record);
    let kinds: Vec<&str> = {
        let mut kinds: Vec<&str> = reachable.files.iter().map(|(kind, ..)| *kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    };
    let kind = *kinds.choose(rng).expect("the store has files");
    let candidates: Vec<&(&str, PathBuf, Option<String>)> = reachable
        .files
        .iter()
        .filter(|(k, ..)| *k == kind)
        .collect();
    let (_, path, digest) = *candidates.choose(rng).expect("a file of that kind");
    let what = mutate(path, rng);
    let read_first = rng.random_bool(0.5);
    problems.push(format!(
        "(corrupted {kind} `{}`: {what}; read {} the next run)",
        path.strip_prefix(bench.sandbox.store())
            .unwrap_or(path)
            .display(),
        if read_first { "before" } else { "after" }
    ));
    let violations_before = problems.len();
    if let (true, Some(digest)) = (read_first, digest) {
        read_back(&bench.sandbox, kind, digest, &mut problems);
    }
    // The run may meet the corruption or not (a hit checks sizes, not bytes: §5); either
    // way it must finish with the reference outputs.
    let outcome = finish(bench.spawn_run());
    check_complete_run(
        &outcome,
        reference,
        &mut problems,
        "the run after the corruption",
    );
    if let (false, Some(digest)) = (read_first, digest) {
        read_back(&bench.sandbox, kind, digest, &mut problems);
    }
    bench.clean_run(reference, &mut problems, "the next clean run");
    if problems.len() == violations_before {
        // Nothing wrong: drop the description line too.
        problems.clear();
    }
    problems
}

/// Two or three runners on one store at once, with the same new salts; half the time one
/// of them is killed at a random moment. The others must finish with the reference outputs.
fn race_trial(bench: &mut Bench, rng: &mut ChaCha8Rng, reference: &Reference) -> Vec<String> {
    let mut problems = Vec::new();
    bench.shuffle_salts(rng);
    let count = rng.random_range(2..=3);
    let victim = rng.random_bool(0.5).then(|| rng.random_range(0..count));
    let delay = random_delay(rng, reference);
    problems.push(format!(
        "({count} runners, {})",
        match victim {
            Some(victim) => format!("runner {victim} killed after {delay:?}"),
            None => "none killed".into(),
        }
    ));
    let described = problems.len();
    let children: Vec<Child> = (0..count).map(|_| bench.spawn_run()).collect();
    if let Some(victim) = victim {
        std::thread::sleep(delay);
        signal(&children[victim], libc::SIGKILL);
    }
    for (index, child) in children.into_iter().enumerate() {
        let outcome = finish(child);
        if Some(index) == victim {
            if ![0, 137].contains(&outcome.code) {
                problems.push(format!(
                    "the killed runner ended with {}:\n{outcome}",
                    outcome.code
                ));
            }
            continue;
        }
        check_complete_run(
            &outcome,
            reference,
            &mut problems,
            &format!("runner {index}"),
        );
    }
    store_check(&bench.sandbox, &mut problems, "after the race");
    bench.clean_run(reference, &mut problems, "the next clean run");
    if problems.len() == described {
        problems.clear();
    }
    problems
}

/// The S3 server dies at a random moment of a run that writes through to it (§10), and comes
/// back holding what it had completed. No record on either side may lack its bytes; the
/// next run completes the push, and a fresh workspace gets the reference outputs from it.
fn s3_trial(rng: &mut ChaCha8Rng, reference: &Reference, program: &Path) -> Vec<String> {
    use common::s3;
    let mut problems = Vec::new();
    let dir = tempfile::tempdir().expect("a folder for moto");
    let mut moto = s3::Moto::start(program, dir.path());
    let endpoint = moto.endpoint();
    let (bucket, remote) = s3::fresh_remote(&endpoint, "faults");
    // Fail fast while the server is down instead of retrying for minutes.
    let remote = format!("{remote}&retries=1&retry_timeout=2");
    let bench = Bench::new();
    let mut args = bench.run_args();
    args.extend(["--remote".to_string(), remote.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A write-through run takes longer than a local one: a wider window.
    let delay = Duration::from_millis(
        rng.random_range(0..=(reference.run_time.as_millis() as u64 * 3).max(100)),
    );
    problems.push(format!("(server killed after {delay:?})"));
    let described = problems.len();
    let child = bench.sandbox.spawn(&args);
    std::thread::sleep(delay);
    moto.kill();
    let outcome = finish(child);
    // A node whose lookup or push met the dead server may fail (1); nothing else is right.
    if ![0, 1].contains(&outcome.code) {
        problems.push(format!("the run ended with {}:\n{outcome}", outcome.code));
    }
    moto.restart(program);
    store_check(&bench.sandbox, &mut problems, "after the server's death");
    for problem in remote_problems(&endpoint, &bucket) {
        problems.push(format!(
            "remote unsound after the server's death: {problem}"
        ));
    }
    let outcome = bench.sandbox.peirce(&args);
    check_complete_run(&outcome, reference, &mut problems, "the next run");
    // The same salts as the runs, or the push would look for other keys.
    let mut push = vec![
        "push".to_string(),
        "wf.toml".into(),
        "--remote".into(),
        remote.clone(),
    ];
    // The salts (`--set`), not `run`'s own flags.
    push.extend(bench.run_args().into_iter().skip(4));
    let push: Vec<&str> = push.iter().map(String::as_str).collect();
    let pushed = bench.sandbox.peirce(&push);
    if pushed.code != 0 {
        problems.push(format!("the push after the restart failed:\n{pushed}"));
    }
    for problem in remote_problems(&endpoint, &bucket) {
        problems.push(format!("remote unsound after the push: {problem}"));
    }
    let fresh = Bench::new();
    let outcome = fresh.sandbox.peirce(&args);
    check_complete_run(
        &outcome,
        reference,
        &mut problems,
        "a fresh workspace's run",
    );
    if let Ok(record) = serde_json::from_str::<Value>(&outcome.stdout) {
        let statuses = common::statuses(&record);
        if statuses.values().any(|status| status != "cached") {
            problems.push(format!(
                "a fresh workspace ran nodes the remote holds: {statuses:?}"
            ));
        }
    }
    let report = fresh
        .sandbox
        .peirce(&["cat", "report", "report.txt", "--remote", &remote]);
    if report.code != 0 || !report.stdout.ends_with("solo\n") {
        problems.push(format!("reading `report` through the remote:\n{report}"));
    }
    if problems.len() == described {
        problems.clear();
    }
    problems
}

/// Every record on the remote whose tree, blobs or log are missing or do not hash to their
/// names.
fn remote_problems(endpoint: &str, bucket: &str) -> Vec<String> {
    use common::s3;
    let mut problems = Vec::new();
    let verified = |digest: &str| -> Result<Vec<u8>, String> {
        let bytes = s3::get_object(endpoint, bucket, &s3::blob_key(digest))
            .ok_or_else(|| format!("{digest} missing"))?;
        if peirce_store::BlobDigest::of(&bytes).to_string() != digest {
            return Err(format!("{digest} corrupt"));
        }
        Ok(bytes)
    };
    for key in s3::list_keys(endpoint, bucket, "team/ac") {
        let Some(bytes) = s3::get_object(endpoint, bucket, &key) else {
            continue;
        };
        let record = match peirce_store::encoding::decode_record(&bytes) {
            Ok(record) => record,
            Err(error) => {
                problems.push(format!("{key}: does not decode: {error}"));
                continue;
            }
        };
        let tree = match verified(&record.output.to_string()) {
            Ok(bytes) => bytes,
            Err(problem) => {
                problems.push(format!("{key}: tree {problem}"));
                continue;
            }
        };
        match peirce_store::Tree::decode(record.output, &tree) {
            Ok(tree) => {
                for (name, entry) in tree.iter() {
                    if let Err(problem) = verified(&entry.digest.to_string()) {
                        problems.push(format!("{key}: `{name}` {problem}"));
                    }
                }
            }
            Err(error) => problems.push(format!("{key}: tree does not decode: {error}")),
        }
        if let Some(log) = record.log {
            if let Err(problem) = verified(&log.to_string()) {
                problems.push(format!("{key}: log {problem}"));
            }
        }
    }
    problems
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

#[test]
fn random_faults_leave_the_store_sound_and_the_next_run_complete() {
    let trials = env_number("PEIRCE_FAULT_TRIALS").unwrap_or(DEFAULT_TRIALS as u64) as usize;
    let seed = env_number("PEIRCE_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64
    });
    eprintln!(
        "faults: seed {seed} (PEIRCE_FAULT_SEED={seed} repeats the choices), {trials} trials"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();

    // The reference: a clean run in a store of its own.
    let reference = {
        let bench = Bench::new();
        let begun = Instant::now();
        let outcome = finish(bench.spawn_run()).success();
        let run_time = begun.elapsed();
        let outputs = outputs(&outcome.json());
        assert_eq!(outputs.len(), NODES.len(), "{outcome}");
        bench.sandbox.assert_store_sound();
        Reference { outputs, run_time }
    };
    eprintln!("faults: a clean run takes {:?}", reference.run_time);

    // Every 20th trial kills the S3 server, when there is one to kill (`PEIRCE_TEST_MOTO`,
    // set by scripts/test; a bare `cargo test` skips the class and says so).
    let moto = common::s3::moto_program("faults: the s3-kill trial class");
    let mut counts: std::collections::BTreeMap<Class, usize> = Default::default();
    let mut violations: Vec<String> = Vec::new();
    let mut bench = Bench::new();
    // `PEIRCE_FAULT_CLASSES=corrupt,race` keeps to some classes, to chase one failure.
    let only: Option<Vec<String>> = std::env::var("PEIRCE_FAULT_CLASSES").ok().map(|text| {
        text.split(',')
            .map(|name| name.trim().to_string())
            .collect()
    });
    let wanted = |class: Class| {
        only.as_ref()
            .is_none_or(|names| names.iter().any(|name| name == class.name()))
    };
    let local: Vec<Class> = [Class::Kill, Class::Term, Class::Corrupt, Class::Race]
        .into_iter()
        .filter(|class| wanted(*class))
        .collect();
    let with_s3 = moto.is_some() && wanted(Class::S3Kill);
    assert!(
        with_s3 || !local.is_empty(),
        "PEIRCE_FAULT_CLASSES names no class that can run"
    );
    for trial in 0..trials {
        let class = if with_s3 && (local.is_empty() || trial % 20 == 19) {
            Class::S3Kill
        } else {
            local[trial % local.len()]
        };
        *counts.entry(class).or_default() += 1;
        let problems = match class {
            Class::Kill => interrupt_trial(&mut bench, &mut rng, &reference, libc::SIGKILL),
            Class::Term => interrupt_trial(&mut bench, &mut rng, &reference, libc::SIGTERM),
            Class::Corrupt => corrupt_trial(&mut bench, &mut rng, &reference),
            Class::Race => race_trial(&mut bench, &mut rng, &reference),
            Class::S3Kill => s3_trial(
                &mut rng,
                &reference,
                moto.as_deref().expect("chosen only with moto"),
            ),
        };
        let violated = !problems.is_empty();
        if violated {
            let report = format!(
                "trial {trial} ({}), seed {seed}:\n  {}",
                class.name(),
                problems.join("\n  ")
            );
            eprintln!("faults: VIOLATION {report}");
            violations.push(report);
        }
        // A fresh store now and then (and after a violation, so one does not cascade): the
        // trials see empty, partial and long-lived stores, and checks stay quick.
        if violated || rng.random_bool(0.1) {
            bench = Bench::new();
        }
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(class, count)| format!("{} {count}", class.name()))
        .collect();
    eprintln!(
        "faults: {trials} trials ({}{}), {} violations, {:.1} s, seed {seed}",
        summary.join(", "),
        if moto.is_none() {
            "; s3-kill skipped: no PEIRCE_TEST_MOTO"
        } else {
            ""
        },
        violations.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        violations.is_empty(),
        "{} of {trials} fault trials broke an invariant (seed {seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
