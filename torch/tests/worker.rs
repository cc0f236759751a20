//! The `peirce-worker` binary under the worker protocol: a real child process reading a
//! real `node.json`, as the engine starts it.

use std::path::Path;
use std::process::Command;

fn run_worker(
    dir: &Path,
    kind: &str,
    params: serde_json::Value,
    inputs: serde_json::Value,
) -> (bool, Vec<serde_json::Value>, String) {
    run_worker_speaking(peirce_protocol::PROTOCOL, dir, kind, params, inputs)
}

fn run_worker_speaking(
    protocol: u32,
    dir: &Path,
    kind: &str,
    params: serde_json::Value,
    inputs: serde_json::Value,
) -> (bool, Vec<serde_json::Value>, String) {
    let output_dir = dir.join("out");
    let scratch_dir = dir.join("scratch");
    std::fs::create_dir_all(&output_dir).unwrap();
    std::fs::create_dir_all(&scratch_dir).unwrap();
    let spec = serde_json::json!({
        "protocol": protocol, "kind": kind, "node": "m", "workflow": "test", "params": params,
        "inputs": inputs, "output_dir": output_dir, "scratch_dir": scratch_dir,
        "cpus": 2, "gpus": [],
    });
    let spec_path = scratch_dir.join("node.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_peirce-worker"))
        .arg(&spec_path)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let events = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .collect();
    (
        output.status.success(),
        events,
        format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

#[test]
fn model_kind_builds_a_tiny_model_tree_and_imports_it_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny");
    let (ok, events, log) = run_worker(
        &tiny,
        "model",
        serde_json::json!({"source": "tiny", "hidden_size": 32, "intermediate_size": 64, "corpus_per_level": 2, "seed": 3}),
        serde_json::json!({}),
    );
    assert!(ok, "{log}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "progress" && e["done"] == 2),
        "{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "metric" && e["parameters"].as_i64().unwrap() > 0),
        "{log}"
    );
    let out = tiny.join("out");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(file).exists(), "{file}: {log}");
    }

    // Import: validated, then copied byte for byte.
    let import = dir.path().join("import");
    let (ok, _, log) = run_worker(
        &import,
        "model",
        serde_json::json!({}),
        serde_json::json!({"base": out}),
    );
    assert!(ok, "{log}");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(import.join("out").join(file)).unwrap(),
            "{file}"
        );
    }

    // A broken folder is bad input, with the tensor named.
    let broken = dir.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(out.join(file), broken.join(file)).unwrap();
    }
    let tensors: Vec<(String, tch::Tensor)> =
        tch::Tensor::read_safetensors(out.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(name, _)| name != "model.norm.weight")
            .collect();
    tch::Tensor::write_safetensors(&tensors, broken.join("model.safetensors")).unwrap();
    let (ok, events, log) = run_worker(
        &dir.path().join("b"),
        "model",
        serde_json::json!({}),
        serde_json::json!({"base": broken}),
    );
    assert!(!ok, "{log}");
    let error = events
        .iter()
        .find(|e| e["event"] == "error")
        .expect("an error event");
    assert_eq!(error["class"], "bad_input");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("`model.norm.weight`"),
        "{log}"
    );
}

/// The message of the run's error event, which must be of class `bad_input`.
fn bad_input_message(events: &[serde_json::Value], log: &str) -> String {
    let error = events
        .iter()
        .find(|e| e["event"] == "error")
        .expect("an error event");
    assert_eq!(error["class"], "bad_input", "{log}");
    error["message"].as_str().unwrap().to_string()
}

#[test]
fn bad_specs_fail_with_a_classified_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, events, log) = run_worker(
        &dir.path().join("a"),
        "model",
        serde_json::json!({"hiden_size": 8}),
        serde_json::json!({}),
    );
    assert!(!ok);
    let message = bad_input_message(&events, &log);
    assert!(message.contains("`hiden_size`"), "{log}");

    let (ok, events, _) = run_worker(
        &dir.path().join("b"),
        "juggle",
        serde_json::json!({}),
        serde_json::json!({}),
    );
    assert!(!ok);
    assert!(events
        .iter()
        .any(|e| e["event"] == "error" && e["message"].as_str().unwrap().contains("`juggle`")));

    // The reward mode is read by the worker, and an unknown one refused by name.
    for kind in ["eval", "align", "domain-rl"] {
        let (ok, events, log) = run_worker(
            &dir.path().join(format!("reward-{kind}")),
            kind,
            serde_json::json!({"reward": "lenient"}),
            serde_json::json!({}),
        );
        assert!(!ok);
        let message = bad_input_message(&events, &log);
        assert!(message.contains("`lenient`"), "{kind}: {message}");
    }

    // A spec written by another version of the engine is refused, naming the file.
    let (ok, events, log) = run_worker_speaking(
        peirce_protocol::PROTOCOL + 1,
        &dir.path().join("c"),
        "model",
        serde_json::json!({"source": "tiny"}),
        serde_json::json!({}),
    );
    assert!(!ok);
    let message = bad_input_message(&events, &log);
    assert!(
        message.contains("node.json") && message.contains("rebuild"),
        "{message}"
    );
}
