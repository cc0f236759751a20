//! A fuzz of workflow files through the loader, in process: valid workflows (the ones in
//! `workflows/`, the bad fixtures, and a diamond with every field) are mutated (byte flips,
//! token swaps and replacements, lines deleted, duplicated or moved, huge and odd strings,
//! deep nesting, invalid UTF-8) and given random `--set` overrides, then loaded exactly as
//! `peirce plan` loads them (`Override::parse`, `parse_workflow` with the real registry, or
//! `load_workflow` for bytes that are not UTF-8, then `Workflow::select`). Rejecting a case
//! is fine; a panic or a case slower than a second is a bug (house style 5: no panics on
//! input; docs/architecture.md §3 for what loading feeds).
//!
//! `PEIRCE_FUZZ_CASES` sets the number of cases (default [`DEFAULT_CASES`]), `PEIRCE_FUZZ_SEED`
//! the seed; every case draws from its own generator, seeded by the seed and its index, so a
//! failure names the one case to replay. What this does not reach: keys and the planner
//! against a store (they take a loaded workflow, which this checks is all the loader yields).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peirce_dag::spec::{load_workflow, parse_workflow, Override};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Cases a CI run tries: well under a minute on a loaded 2-core machine (README.md,
/// Development, has the figures).
const DEFAULT_CASES: u64 = 20_000;

/// The slowest a case may be.
const CASE_LIMIT: Duration = Duration::from_secs(1);

/// A workflow using every generic field, defaults by kind, named and listed inputs, and a
/// path input.
const FULL: &str = r#"[workflow]
name = "full"
remote = "s3://bucket/prefix"

[defaults]
retries = 1
timeout = "10m"

[defaults.exec]
env = { A = "1" }

[gen]
kind = "exec"
command = "seq 1 10 > out/numbers.txt"
salt = "1"
resources = { cpus = 2, gpus = 0.5, memory = "1G" }

[left]
kind = "exec"
inputs = ["gen"]
command = "cat {inputs.gen}/numbers.txt > out/a.txt"

[right]
kind = "exec"
inputs = { data = "gen", extra = "./data" }
env = { FACTOR = "2" }
pass_env = ["HOME_TOKEN"]
command = "cat $PEIRCE_INPUT_DATA/numbers.txt > out/b.txt"

[join]
kind = "exec"
inputs = { l = "left", r = "right" }
command = """
cat {inputs.l}/a.txt {inputs.r}/b.txt > out/c.txt
"""
"#;

/// Tokens a mutation may put in place of another.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "#",
    "\n",
    "\\",
    "inputs",
    "kind",
    "exec",
    "worker",
    "generate",
    "verify",
    "merge",
    "model",
    "align",
    "domain-rl",
    "eval",
    "command",
    "defaults",
    "workflow",
    "name",
    "remote",
    "salt",
    "resources",
    "cpus",
    "gpus",
    "memory",
    "retries",
    "timeout",
    "env",
    "pass_env",
    "params",
    "seed",
    "weights",
    "gen",
    "left",
    "right",
    "join",
    "-1",
    "0",
    "-0.0",
    "1e309",
    "nan",
    "-inf",
    "inf",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "0x7fffffff",
    "1979-05-27T07:32:00Z",
    "true",
    "false",
    "\"{inputs.gen}\"",
    "\"{inputs.}\"",
    "\"{inputs.nope}\"",
    "\"../../etc\"",
    "\"/abs\"",
    "\"\"",
    "[]",
    "{}",
    "\"1.5G\"",
    "\"-1m\"",
    "\"99999999999999999999d\"",
    "\"\u{0}\"",
    "\"\u{202e}\"",
    "é",
    "\u{feff}",
    "\r",
    "\t",
];

/// Valid workflows to start from, and the bad fixtures (already rejected, one way each).
fn seeds() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = vec![("full.toml".to_string(), FULL.to_string())];
    for folder in ["workflows", "tests/fixtures/bad"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
            .unwrap_or_else(|error| panic!("listing {folder}: {error}"))
            .flatten()
            .map(|item| item.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("a seed workflow");
            seeds.push((path.file_name().unwrap().to_string_lossy().into(), text));
        }
    }
    seeds
}

/// A random odd string: huge, control characters, unicode, or deep nesting.
fn odd_string(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..7) {
        0 => "x".repeat(rng.random_range(1_000..200_000)),
        1 => format!(
            "\"{}\"",
            "é\u{0}\u{7f}\u{202e}😀".repeat(rng.random_range(1..2_000))
        ),
        2 => {
            let depth = rng.random_range(10..2_000);
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
        }
        3 => {
            let depth = rng.random_range(10..2_000);
            format!("{}{}", "{a=".repeat(depth), "}".repeat(depth))
        }
        4 => format!(
            "[{}]",
            (0..rng.random_range(1..500))
                .map(|n| format!("n{n}"))
                .collect::<Vec<_>>()
                .join(".")
        ),
        5 => (0..rng.random_range(1..5_000))
            .map(|_| char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('\u{fffd}'))
            .collect(),
        _ => format!(
            "\"{}\"",
            "\\u0000\\\\\\\"".repeat(rng.random_range(1..1_000))
        ),
    }
}

/// Splits into tokens: runs of word characters, runs of spaces, and single other bytes.
fn tokens(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut kind_of_last = 0u8;
    for c in text.chars() {
        let kind = if c.is_alphanumeric() || c == '_' || c == '-' {
            1
        } else if c == ' ' {
            2
        } else {
            3
        };
        match tokens.last_mut() {
            Some(last) if kind == kind_of_last && kind != 3 => last.push(c),
            _ => tokens.push(c.to_string()),
        }
        kind_of_last = kind;
    }
    tokens
}

/// One mutation of `bytes`; `others` are the seeds, for lines from elsewhere.
fn mutate(bytes: &mut Vec<u8>, rng: &mut ChaCha8Rng, others: &[(String, String)]) {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    match rng.random_range(0..10) {
        // Byte flips, which may leave invalid UTF-8.
        0 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..=4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
        }
        // Swap two tokens.
        1 => {
            let mut parts = tokens(&text());
            if parts.len() > 1 {
                let a = rng.random_range(0..parts.len());
                let b = rng.random_range(0..parts.len());
                parts.swap(a, b);
                *bytes = parts.concat().into_bytes();
            }
        }
        // Replace or insert a token.
        2 | 3 => {
            let mut parts = tokens(&text());
            let token = TOKENS.choose(rng).unwrap().to_string();
            let at = rng.random_range(0..=parts.len());
            if at < parts.len() && rng.random_bool(0.5) {
                parts[at] = token;
            } else {
                parts.insert(at, token);
            }
            *bytes = parts.concat().into_bytes();
        }
        // Delete, duplicate or move a line; or bring one from another seed.
        4 | 5 => {
            let current = text();
            let mut lines: Vec<String> = current.lines().map(String::from).collect();
            if lines.is_empty() {
                lines.push(String::new());
            }
            let at = rng.random_range(0..lines.len());
            match rng.random_range(0..4) {
                0 => {
                    lines.remove(at);
                }
                1 => {
                    let line = lines[at].clone();
                    lines.insert(rng.random_range(0..=lines.len()), line);
                }
                2 => {
                    let line = lines.remove(at);
                    lines.insert(rng.random_range(0..=lines.len()), line);
                }
                _ => {
                    let (_, other) = others.choose(rng).unwrap();
                    let other: Vec<&str> = other.lines().collect();
                    if let Some(line) = other.choose(rng) {
                        lines.insert(at, line.to_string());
                    }
                }
            }
            *bytes = lines.join("\n").into_bytes();
        }
        // A huge or odd string somewhere, or as a value.
        6 => {
            let current = text();
            let odd = odd_string(rng);
            let mut lines: Vec<String> = current.lines().map(String::from).collect();
            let at = rng.random_range(0..=lines.len());
            let line = match rng.random_range(0..3) {
                0 => odd,
                1 => format!("command = {odd}"),
                _ => format!("inputs = {odd}"),
            };
            lines.insert(at, line);
            *bytes = lines.join("\n").into_bytes();
        }
        // Invalid UTF-8 bytes inserted.
        7 => {
            let at = rng.random_range(0..=bytes.len());
            let bad: &[u8] = [
                &b"\xff"[..],
                b"\xc3",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\x80",
            ]
            .choose(rng)
            .unwrap();
            bytes.splice(at..at, bad.iter().copied());
        }
        // Cut short.
        8 if !bytes.is_empty() => {
            let keep = rng.random_range(0..bytes.len());
            bytes.truncate(keep);
        }
        // Two seeds glued together (duplicate tables and nodes).
        _ => {
            let (_, other) = others.choose(rng).unwrap();
            bytes.push(b'\n');
            bytes.extend_from_slice(other.as_bytes());
        }
    }
}

/// Random `--set` texts: real and made-up targets, and values of every kind.
fn overrides(rng: &mut ChaCha8Rng) -> Vec<String> {
    const TARGETS: &[&str] = &[
        "gen.salt",
        "gen.command",
        "left.inputs",
        "right.env.FACTOR",
        "join.resources.cpus",
        "join.resources.gpus",
        "defaults.retries",
        "defaults.exec.env",
        "defaults.timeout",
        "defaults.nope.key",
        "workflow.name",
        "nope.key",
        "gen",
        ".",
        "..",
        "gen..salt",
        "defaults",
        "gen.timeout",
        "gen.resources",
        "merge.weights.induction",
        "gen.kind",
        "deduction.count",
        "align.lr",
        "gen.salt.deeper.still",
    ];
    const VALUES: &[&str] = &[
        "1",
        "-1",
        "0.3",
        "1e309",
        "nan",
        "true",
        "\"text\"",
        "[1, 2]",
        "[[[]]]",
        "{a = 1}",
        "",
        "=",
        "\"",
        "[",
        "{",
        "'unterminated",
        "9223372036854775808",
        "\"10m\"",
        "\"-5s\"",
        "\"1.5G\"",
        "\u{0}",
        "é",
        "{inputs.gen}",
    ];
    (0..rng.random_range(0..4))
        .map(|_| {
            let target = if rng.random_bool(0.8) {
                TARGETS.choose(rng).unwrap().to_string()
            } else {
                odd_string(rng).chars().take(300).collect()
            };
            let value = if rng.random_bool(0.85) {
                VALUES.choose(rng).unwrap().to_string()
            } else {
                odd_string(rng)
            };
            match rng.random_range(0..10) {
                0 => target,
                1 => format!("{target}=={value}"),
                _ => format!("{target}={value}"),
            }
        })
        .collect()
}

/// Loads one case as `peirce plan` would. Errors are answers; only panics escape.
fn load(bytes: &[u8], sets: &[String], scratch: &Path, rng: &mut ChaCha8Rng) {
    let catalog = peirce_nodes::registry();
    let mut parsed = Vec::new();
    for text in sets {
        if let Ok(item) = Override::parse(text) {
            parsed.push(item);
        }
    }
    let path = Path::new("fuzz/wf.toml");
    let loaded = match std::str::from_utf8(bytes) {
        Ok(text) => parse_workflow(path, text, &catalog, &parsed),
        Err(_) => {
            // Not UTF-8: the file reader's path, as the CLI takes it.
            let file = scratch.join("wf.toml");
            std::fs::write(&file, bytes).expect("writing the case");
            load_workflow(&file, &catalog, &parsed)
        }
    };
    match loaded {
        Ok(workflow) => {
            // Errors render (the CLI prints them); a loaded workflow selects.
            let mut targets: Vec<String> = workflow
                .nodes
                .iter()
                .filter(|_| rng.random_bool(0.3))
                .map(|node| node.name.clone())
                .collect();
            if rng.random_bool(0.2) {
                targets.push("no-such-node".into());
            }
            let _ = workflow.select(&targets);
        }
        Err(errors) => {
            for error in errors.iter() {
                let _ = error.to_string();
            }
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

/// What to print of a case: its `--set`s and text, cut to a readable size.
fn describe(bytes: &[u8], sets: &[String]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown: String = text.chars().take(2_000).collect();
    format!(
        "--set {sets:?}\n{} bytes{}:\n{shown}",
        bytes.len(),
        if shown.len() < text.len() {
            " (cut)"
        } else {
            ""
        }
    )
}

#[test]
fn mutated_workflows_never_panic_or_stall_the_loader() {
    let cases = env_number("PEIRCE_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let seed = env_number("PEIRCE_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64
    });
    eprintln!("fuzz: seed {seed} (PEIRCE_FUZZ_SEED={seed} repeats the cases), {cases} cases");
    let seeds = seeds();
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let mut slowest = (Duration::ZERO, 0u64);
    let mut accepted = 0u64;
    // Panics are caught and reported with their case; the default hook would only add noise.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for case in 0..cases {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (name, text) = seeds.choose(&mut rng).unwrap();
        let mut bytes = text.clone().into_bytes();
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut bytes, &mut rng, &seeds);
        }
        let sets = overrides(&mut rng);
        let begun = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            load(&bytes, &sets, scratch.path(), &mut rng)
        }));
        let took = begun.elapsed();
        if took > slowest.0 {
            slowest = (took, case);
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let catalog = peirce_nodes::registry();
            if result.is_ok()
                && parse_workflow(Path::new("fuzz/wf.toml"), text, &catalog, &[]).is_ok()
            {
                accepted += 1;
            }
        }
        let problem = match result {
            Err(payload) => Some(format!(
                "panicked: {}",
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(()) if took > CASE_LIMIT => Some(format!("took {took:?}")),
            Ok(()) => None,
        };
        if let Some(problem) = problem {
            let saved = std::env::temp_dir().join(format!("peirce-fuzz-{seed}-{case}.toml"));
            let _ = std::fs::write(&saved, &bytes);
            failures.push(format!(
                "case {case} (seed {seed}, from `{name}`, saved as {}) {problem}\n{}",
                saved.display(),
                describe(&bytes, &sets)
            ));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz: {cases} cases ({accepted} still valid without --set), {} failures, slowest {:?} (case {}), {:.1} s, seed {seed}",
        failures.len(),
        slowest.0,
        slowest.1,
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "the loader failed on mutated workflows:\n{}",
        failures.join("\n\n")
    );
}
