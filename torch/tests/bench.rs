//! `peirce-worker bench` as a real child process: a tiny model on the CPU, a few tokens,
//! one JSON line with positive throughputs.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peirce-worker"))
        .arg("bench")
        .args(args)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .unwrap()
}

/// A successful bench run's JSON line.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = bench(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// A tiny model on one CPU thread, and a training step of 3 rows of 5 + 6 tokens.
const TINY: &[&str] = &[
    "--preset",
    "tiny",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--train-rows",
    "3",
    "--train-prompt-tokens",
    "5",
    "--response-tokens",
    "6",
];

#[test]
fn bench_prints_positive_sampling_and_training_throughput() {
    let args = [
        "--batch",
        "3",
        "--prompt-tokens",
        "5",
        "--new-tokens",
        "6",
        "--warmup-tokens",
        "2",
        "--micro-batch",
        "2",
        "--train-warmup",
        "1",
        "--train-iterations",
        "1",
    ];
    let result = bench_json(&[TINY, &args].concat());
    assert_eq!(result["bench"], "peirce");
    assert_eq!(result["model"]["hidden_size"], 32);
    assert_eq!(result["sample"]["batch"], 3);
    assert_eq!(result["sample"]["new_tokens"], 6);
    for part in ["sample", "train"] {
        let rate = result[part]["tokens_per_second"].as_f64().unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{part}: {result}");
    }
    assert!(
        result["train"]["grad_norm"].as_f64().unwrap() > 0.0,
        "{result}"
    );
}

/// `--shared-reference`: the KL's reference forward runs on the policy itself, so after a
/// warm-up step has moved the policy its KL is zero, where a frozen copy's is not.
#[test]
fn a_shared_reference_is_the_policy_itself() {
    let kl = |shared: bool| {
        let mut args = TINY.to_vec();
        args.extend([
            "--skip-sample",
            "--train-warmup",
            "2",
            "--train-iterations",
            "1",
        ]);
        if shared {
            args.push("--shared-reference");
        }
        let result = bench_json(&args);
        assert_eq!(result["train"]["shared_reference"], shared, "{result}");
        result["train"]["kl"].as_f64().unwrap()
    };
    let (own, copy) = (kl(true), kl(false));
    assert_eq!(own, 0.0, "KL against the policy itself");
    assert!(
        copy > 0.0,
        "KL against the frozen copy after two steps: {copy}"
    );
}

#[test]
fn bench_rejects_unknown_arguments_and_presets() {
    for args in [
        &["--frobnicate"][..],
        &["--preset", "qwen9-900b", "--device", "cpu"],
    ] {
        let output = bench(args);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("usage: peirce-worker bench"), "{stderr}");
    }
}

/// `--profile-kernels`: the generation is profiled; a CPU run has no device kernels, so the
/// profile is there and empty (on a GPU it lists the step's kernels).
#[test]
fn the_kernel_profile_is_reported_and_a_cpu_has_no_device_kernels() {
    let args = [
        "--batch",
        "2",
        "--prompt-tokens",
        "4",
        "--new-tokens",
        "4",
        "--warmup-tokens",
        "1",
        "--skip-train",
        "--profile-kernels",
        "5",
    ];
    let result = bench_json(&[TINY, &args].concat());
    let profile = &result["sample"]["kernel_profile"];
    assert_eq!(profile["kernels_per_step"].as_f64(), Some(0.0), "{result}");
    assert_eq!(profile["top"].as_array().map(Vec::len), Some(0), "{result}");
    assert_eq!(
        profile["prefill"]["kernel_ms"].as_f64(),
        Some(0.0),
        "{result}"
    );
    assert_eq!(
        profile["prefill"]["top"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
    let plain = bench_json(&[TINY, &args[..args.len() - 2]].concat());
    assert!(plain["sample"].get("kernel_profile").is_none(), "{plain}");
}
