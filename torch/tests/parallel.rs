//! Data-parallel training on the CPU over Gloo, with real processes (issue 13, must-shows 2
//! and 3): the trainer's step on 2 ranks equals 1 rank's, with and without sharded optimizer
//! state; an `align` node with `ranks = 2` runs through `peirce-worker`; and a rank killed
//! mid-run fails the node naming it, leaving no process behind.
//!
//! A trainer rank is this test binary run again (`child_rank`, selected by
//! `PEIRCE_PARALLEL_CHILD`); the node-level tests start the real `peirce-worker`, which starts
//! its own ranks.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peirce_tasks::reward::{AnswerStatus, Score};
use peirce_torch::checkpoint;
use peirce_torch::dist::{Backend, ProcessGroup};
use peirce_torch::parallel::Ranks;
use peirce_torch::qwen2::{Config, Qwen2};
use peirce_torch::sampler::Finish;
use peirce_torch::train::{self, Algorithm, Rollout, StepStats, TrainConfig};
use tch::{nn, Device, Kind, Tensor};

const CHILD: &str = "PEIRCE_PARALLEL_CHILD";
const RANK: &str = "PEIRCE_PARALLEL_RANK";
const DIR: &str = "PEIRCE_PARALLEL_DIR";
const STEPS: usize = 3;

fn config() -> Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 61, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500.0, "tie_word_embeddings": true, "initializer_range": 0.02,
    }))
    .unwrap()
}

fn model(seed: i64) -> (nn::VarStore, Qwen2) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Qwen2::new(&config(), &vs.root()).unwrap();
    (vs, net)
}

/// Eight fixed rollouts of varied lengths and rewards, the same in every process.
fn rollouts() -> Vec<Rollout> {
    let totals = [3.0, -0.5, -1.0, -3.0, 3.0, -1.0, -0.5, 3.0];
    (0..8)
        .map(|row: usize| {
            let token = |i: usize| ((row * 13 + i * 7) % 61) as i64;
            let total = totals[row];
            Rollout {
                prompt: (0..4 + row % 3).map(token).collect(),
                response: (10..18 + 2 * row).map(token).collect(),
                text: String::new(),
                score: Score {
                    total,
                    format_ok: total > -3.0,
                    answer: if total > 0.0 {
                        AnswerStatus::Correct
                    } else {
                        AnswerStatus::Wrong
                    },
                },
                finish: Finish::Length,
            }
        })
        .collect()
}

/// `STEPS` REINFORCE++ steps on this rank's share of [`rollouts`]; returns the last step's
/// statistics and every fp32 master weight (gathered from their owners).
fn train(ranks: &Ranks, sharded: bool) -> (StepStats, BTreeMap<String, Tensor>) {
    let (policy_vs, policy) = model(11);
    let (mut reference_vs, reference) = model(11);
    reference_vs.freeze();
    let config = TrainConfig {
        lr: 1e-3,
        micro_batch: 2,
        ..TrainConfig::default()
    };
    let (rank, world) = if sharded {
        (ranks.rank(), ranks.world())
    } else {
        (0, 1)
    };
    let mut optimizer = train::adamw(&policy_vs, &config, rank, world).unwrap();
    let (mine, all) = optimizer.share();
    eprintln!(
        "rank {} of {}: optimizer state for {mine} of {all} weights ({} bytes)",
        ranks.rank(),
        ranks.world(),
        optimizer.state_bytes()
    );
    let rollouts = rollouts();
    let mut stats = StepStats::default();
    for _ in 0..STEPS {
        stats = train::policy_step(
            &policy,
            &policy_vs,
            &mut optimizer,
            &reference,
            ranks.split(&rollouts),
            Algorithm::ReinforcePlusPlus,
            0,
            &config,
            ranks,
        )
        .unwrap();
    }
    (stats, ranks.gather_masters(&optimizer).unwrap())
}

/// A rank of [`two_ranks`]: does nothing unless started by it.
#[test]
fn child_rank() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return;
    };
    let rank: usize = std::env::var(RANK).unwrap().parse().unwrap();
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let group = ProcessGroup::new(&dir, rank, 2, Backend::Gloo, Duration::from_secs(60)).unwrap();
    let ranks = Ranks::new(group, Device::Cpu);
    let (stats, masters) = train(&ranks, scenario == "sharded");
    // Every rank has every master; each writes its own copy for the parent to compare.
    checkpoint::save_tensors(
        &masters,
        &dir.join(format!("rank{rank}")),
        Kind::Float,
        None,
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("rank{rank}.json")),
        serde_json::to_string(&stats).unwrap(),
    )
    .unwrap();
}

/// Runs [`train`] on 2 ranks (child processes) and returns each rank's stats and masters.
fn two_ranks(scenario: &str) -> Vec<(serde_json::Value, BTreeMap<String, Tensor>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(&exe)
                .args(["child_rank", "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, scenario)
                .env(RANK, rank.to_string())
                .env(DIR, dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .drain(..)
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    outputs
        .into_iter()
        .enumerate()
        .map(|(rank, output)| {
            let log = String::from_utf8_lossy(&output.stderr).to_string();
            assert!(output.status.success(), "rank {rank}:\n{log}");
            let stats: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.path().join(format!("rank{rank}.json"))).unwrap(),
            )
            .unwrap();
            let (vs, _) = model(99);
            checkpoint::load(&vs, &dir.path().join(format!("rank{rank}"))).unwrap();
            let weights = vs
                .variables()
                .into_iter()
                .map(|(name, t)| (name, t.detach().copy()))
                .collect();
            (stats, weights, log)
        })
        .collect()
}

fn assert_like_one_rank(scenario: &str) -> Vec<String> {
    let (stats, expected) = train(&Ranks::single(Device::Cpu), false);
    let expected_stats = serde_json::to_value(&stats).unwrap();
    let start: BTreeMap<String, Tensor> = model(11).0.variables().into_iter().collect();
    let mut logs = Vec::new();
    for (rank, (stats, weights, log)) in two_ranks(scenario).into_iter().enumerate() {
        // Metrics are the whole batch's, aggregated over ranks.
        for key in ["reward", "accuracy", "format", "response_length", "tokens"] {
            assert_eq!(stats[key], expected_stats[key], "rank {rank}: `{key}`");
        }
        for key in ["kl", "entropy", "grad_norm"] {
            let (a, b) = (
                stats[key].as_f64().unwrap(),
                expected_stats[key].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1e-3),
                "rank {rank}: `{key}` {a} vs {b}"
            );
        }
        // The same weights as one rank, within fp32 reduction-order tolerance.
        for (name, tensor) in &expected {
            let moved = (tensor - &start[name]).abs().max().double_value(&[]);
            let diff = (tensor - &weights[name]).abs().max().double_value(&[]);
            assert!(moved > 1e-4, "`{name}` did not train");
            assert!(diff < 2e-6, "rank {rank}: `{name}` {diff} from one rank's");
        }
        logs.push(log);
    }
    logs
}

/// `(mine, all)` from a rank's "optimizer state for MINE of ALL weights" line.
fn share_of(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|line| line.contains("optimizer state for"))
        .unwrap_or_else(|| panic!("no share line:\n{log}"));
    eprintln!("{line}");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "for").unwrap();
    (
        words[at + 1].parse().unwrap(),
        words[at + 3].parse().unwrap(),
    )
}

/// Must-show 2: 2 ranks over Gloo give 1 rank's weights and metrics.
#[test]
fn two_ranks_train_as_one() {
    for log in assert_like_one_rank("replicated") {
        // Unsharded: every rank keeps all of the state.
        let (mine, all) = share_of(&log);
        assert_eq!(mine, all);
    }
}

/// Must-show 3: with sharded optimizer state, each rank keeps about half of it, and the
/// result is the same.
#[test]
fn sharded_optimizer_state_trains_as_one_rank() {
    let shares: Vec<(u64, u64)> = assert_like_one_rank("sharded")
        .iter()
        .map(|log| share_of(log))
        .collect();
    let all = shares[0].1;
    assert_eq!(shares[0].0 + shares[1].0, all, "{shares:?}");
    for (mine, _) in &shares {
        // Balanced by tensor: no rank keeps more than 60%.
        assert!(*mine * 10 <= all * 6, "{shares:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Through the worker: an `align` node with 2 CPU ranks.

fn dataset(dir: &Path) {
    common::dataset(dir, "deduction", 1, 16, 8);
}

/// A worker process for `kind` with `params` and `inputs`, in `dir`, whose collectives time
/// out after 20 s.
fn worker(dir: &Path, kind: &str, params: serde_json::Value, inputs: serde_json::Value) -> Command {
    let mut command = common::worker_command(dir, kind, params, inputs);
    command.env("PEIRCE_DIST_TIMEOUT_S", "20");
    command
}

fn tiny_model(dir: &Path) -> PathBuf {
    let output = worker(
        dir,
        "model",
        serde_json::json!({"source": "tiny", "hidden_size": 32, "intermediate_size": 64,
            "corpus_per_level": 2, "seed": 3}),
        serde_json::json!({}),
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    dir.join("out")
}

fn align_params(steps: u32) -> serde_json::Value {
    serde_json::json!({
        "steps": steps, "prompts_per_step": 4, "rollouts": 2, "max_new_tokens": 16,
        "eval_count": 4, "micro_batch": 2, "lr": 1e-4, "ranks": 2, "seed": 5,
    })
}

/// Pids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`: the command may hold spaces and parentheses.
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// An `align` node with `ranks = 2`: rank 0 reports the whole batch's metrics and writes the
/// outputs; the other rank's share of the optimizer state is logged.
#[test]
fn an_align_node_runs_on_two_cpu_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("model"));
    let data = dir.path().join("data");
    dataset(&data);
    let node = dir.path().join("align");
    let output = worker(
        &node,
        "align",
        align_params(2),
        serde_json::json!({"model": model, "data": data}),
    )
    .output()
    .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{log}");
    assert!(log.contains("rank 0 of 2: optimizer state for"), "{log}");
    assert!(log.contains("rank 1 of 2: optimizer state for"), "{log}");
    let metrics = std::fs::read_to_string(node.join("out/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // The whole batch: 4 prompts x 2 rollouts over both ranks.
    for line in &lines {
        let length = line["response_length"].as_f64().unwrap();
        assert_eq!(
            line["tokens"].as_f64().unwrap(),
            (length * 8.0).round(),
            "{line}"
        );
    }
    for file in [
        "model.safetensors",
        "eval.json",
        "curves.png",
        "config.json",
    ] {
        assert!(node.join("out").join(file).exists(), "{file} missing");
    }
    // Saved in fp32 (the masters) by default.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.join("out/config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "float32");
}

/// Must-show 2: killing one rank fails the node cleanly, naming the rank, and leaves no
/// process behind.
#[test]
fn a_killed_rank_fails_the_node_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("model"));
    let data = dir.path().join("data");
    dataset(&data);
    let node = dir.path().join("align");
    let mut child = worker(
        &node,
        "align",
        align_params(1000),
        serde_json::json!({"model": model, "data": data}),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let worker_pid = child.id();
    // Wait for rank 1 to exist and be training.
    let started = Instant::now();
    let rank1 = loop {
        if let Some(&pid) = children_of(worker_pid).first() {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rank 1 never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the node ended early");
    let status = Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    let output = child.wait_with_output().unwrap();
    let elapsed = killed.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(!output.status.success());
    assert!(
        elapsed < Duration::from_secs(30),
        "took {elapsed:?} to fail"
    );
    let error = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "error")
        .unwrap_or_else(|| panic!("no error event:\n{stdout}"));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("rank 1"), "{message}");
    assert!(
        message.contains("SIGKILL") || message.contains("signal: 9"),
        "{message}"
    );
    assert!(!alive(rank1), "rank 1 outlived the node");
    assert!(children_of(worker_pid).is_empty());
    assert!(!node.join("out/model.safetensors").exists());
}

/// `eval` on 2 CPU ranks grades the same prompts as on one: the same metrics and the same
/// responses, in the same order.
#[test]
fn an_eval_node_split_across_two_ranks_reports_what_one_rank_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("model"));
    let data = dir.path().join("data");
    dataset(&data);
    let run = |ranks: u32| {
        let node = dir.path().join(format!("eval-{ranks}"));
        let output = worker(
            &node,
            "eval",
            serde_json::json!({"max_new_tokens": 12, "batch": 3, "ranks": ranks, "k": 2}),
            serde_json::json!({"model": model, "deduction": data}),
        )
        .output()
        .unwrap();
        assert!(output.status.success(), "{output:?}");
        let metrics: serde_json::Value =
            serde_json::from_slice(&std::fs::read(node.join("out/metrics.json")).unwrap()).unwrap();
        let responses = std::fs::read_to_string(node.join("out/responses.jsonl")).unwrap();
        (metrics, responses)
    };
    let (one, one_responses) = run(1);
    let (two, two_responses) = run(2);
    assert_eq!(one["sets"][0]["count"], 8);
    assert_eq!(one_responses.lines().count(), 8);
    for key in ["accuracy", "reward", "response_length", "count", "levels"] {
        assert_eq!(one["sets"][0][key], two["sets"][0][key], "`{key}`");
    }
    assert_eq!(one_responses, two_responses);
}
