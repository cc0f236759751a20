//! The CPU training path end to end, through the real `peirce-worker` binary: a tiny model
//! warmed up by supervised fine-tuning on worked solutions, then REINFORCE++ on level-1
//! deduction. Seeded; asserts directions ("reward rises"), never exact values.

mod common;

use std::path::{Path, PathBuf};

use common::dataset;

fn worker(dir: &Path, kind: &str, params: serde_json::Value, inputs: serde_json::Value) -> PathBuf {
    let output = common::worker_command(dir, kind, params, inputs)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{kind} failed:\n{log}");
    std::fs::write(dir.join("log.txt"), log).unwrap();
    dir.join("out")
}

/// The seeded run behind the threshold, measured with these settings (2026-11-22):
/// warm-up 300 steps; REINFORCE++ rewards averaged -0.69 over the first 8 steps and -0.40
/// over the last 8 (the format is mostly right after the warm-up, so the rise comes from
/// right answers: +3 instead of -0.5). The threshold asked for half of that rise. Since
/// AdamW keeps fp32 masters and runs libtorch's fused kernel, and rollouts are continuously
/// batched (2026-12-06), the same seeds give -0.518 and -0.363: the warm-up leaves a better
/// start, and the rise (0.155) is just above the threshold, which is unchanged.
/// On another CPU (an AMD EPYC, 2026-12-07) libtorch's CPU kernels round differently and the
/// same 30 steps rose by 0.085 only (-0.575 to -0.490), failing the threshold; REINFORCE++
/// now runs 50 steps and compares the first 8 with the last 8 (there: -0.575 to -0.383, a
/// rise of 0.19), the threshold unchanged.
#[test]
fn warmed_up_tiny_model_raises_reward_with_reinforce_pp() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    dataset(&data, "deduction", 1, 480, 60);
    let model = worker(
        &root.path().join("model"),
        "model",
        serde_json::json!({
            "source": "tiny", "seed": 1, "hidden_size": 128, "intermediate_size": 352,
            "warmup_steps": 300, "warmup_lr": 3e-3, "warmup_batch": 16,
        }),
        serde_json::json!({"data": data}),
    );
    let warmup = std::fs::read_to_string(model.join("warmup.jsonl")).unwrap();
    let losses: Vec<f64> = warmup
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 300);
    assert!(
        losses[290..].iter().sum::<f64>() < 0.5 * losses[..10].iter().sum::<f64>(),
        "warm-up loss did not fall: {losses:?}"
    );
    let aligned = worker(
        &root.path().join("align"),
        "align",
        serde_json::json!({
            "steps": 50, "prompts_per_step": 16, "rollouts": 4, "lr": 1e-4,
            "max_new_tokens": 200, "temperature": 1.0, "micro_batch": 16, "eval_count": 60,
            "seed": 3,
        }),
        serde_json::json!({"model": model, "data": data}),
    );
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(aligned.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 50);
    let mean = |rows: &[serde_json::Value]| {
        rows.iter()
            .map(|m| m["reward"].as_f64().unwrap())
            .sum::<f64>()
            / rows.len() as f64
    };
    let (first, last) = (mean(&metrics[..8]), mean(&metrics[42..]));
    let eval = std::fs::read_to_string(aligned.join("eval.json")).unwrap();
    println!("reward: first 8 steps {first:.3}, last 8 steps {last:.3}\neval: {eval}");
    let rewards: Vec<String> = metrics
        .iter()
        .map(|m| format!("{:.2}", m["reward"].as_f64().unwrap()))
        .collect();
    assert!(
        last > first + 0.15,
        "reward did not rise: {first:.3} -> {last:.3}; per step: {}",
        rewards.join(" ")
    );
    assert!(metrics.iter().all(|m| m["kl"].as_f64().unwrap() >= 0.0));
    for file in ["model.safetensors", "tokenizer.json", "curves.png"] {
        assert!(aligned.join(file).is_file(), "no {file}");
    }
    // The curves are a real PNG.
    let png = std::fs::read(aligned.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
