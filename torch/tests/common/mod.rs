//! What the worker-level tests share: task datasets written to disk, and `peirce-worker`
//! started on a `node.json` as the engine starts it.

use std::path::Path;
use std::process::Command;

use peirce_tasks::dataset::{write_jsonl, Record};
use peirce_tasks::{family, Options, TaskRng};

/// Writes `train.jsonl` (`train` records) and `test.jsonl` (`test` more) of `task` at
/// `level`, with worked solutions, into `dir`.
pub fn dataset(dir: &Path, task: &str, level: u32, train: u64, test: u64) {
    let family = family(task).unwrap();
    let options = Options {
        layout: None,
        with_solution: true,
    };
    let records = |split: &str, range: std::ops::Range<u64>| -> Vec<Record> {
        range
            .map(|i| {
                let mut rng = TaskRng::for_instance(7, task, level, i);
                Record::from_instance(family.generate(level, &mut rng, &options), family, split)
            })
            .collect()
    };
    std::fs::create_dir_all(dir).unwrap();
    write_jsonl(&dir.join("train.jsonl"), &records("train", 0..train)).unwrap();
    write_jsonl(
        &dir.join("test.jsonl"),
        &records("test", train..train + test),
    )
    .unwrap();
}

/// `peirce-worker` on a node of `kind` with `params` and `inputs`, its spec in
/// `dir/scratch/node.json` and its outputs going to `dir/out` (2 CPUs, no GPU).
pub fn worker_command(
    dir: &Path,
    kind: &str,
    params: serde_json::Value,
    inputs: serde_json::Value,
) -> Command {
    let out = dir.join("out");
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let spec = serde_json::json!({
        "protocol": peirce_protocol::PROTOCOL, "kind": kind, "node": kind, "workflow": "test",
        "params": params, "inputs": inputs, "output_dir": out, "scratch_dir": scratch,
        "cpus": 2, "gpus": [],
    });
    std::fs::write(scratch.join("node.json"), spec.to_string()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_peirce-worker"));
    command
        .arg(scratch.join("node.json"))
        .env_remove("CUDA_VISIBLE_DEVICES");
    command
}
