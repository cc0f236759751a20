//! The merge bench: `peirce merge` against mergekit's `mergekit-yaml` on the same three
//! ~1 GB checkpoints, in the same run.
//!
//! Builds three bf16 model folders of Qwen2-0.5B's shape (24 layers, hidden 896, vocab
//! 151936, tied embeddings: 494 M parameters, 988 MB each) with random weights in a
//! temporary folder, then runs each tool in turn (alternating, `PEIRCE_BENCH_ROUNDS` rounds,
//! default 2) on the linear merge with weights 1.0 / 0.2 / 0.1, measuring the wall time and
//! the peak resident memory of each child process (`wait4`'s `ru_maxrss`). Prints every run,
//! the best of each tool, their ratios against the targets (at least 2x faster, at most half
//! the peak memory), and whether the two outputs are identical tensor by tensor.
//!
//! Needs mergekit: `source scripts/mergekit.sh; peirce_mergekit_setup` exports
//! `PEIRCE_MERGEKIT`. Run with `CARGO_TARGET_DIR=~/.cache/peirce-bench cargo bench --bench
//! merge`. `PEIRCE_BENCH_LAYERS` changes the depth (for a quick try); the inputs are written
//! under `PEIRCE_BENCH_DIR` (default: the system's temporary folder), about 5 GB in all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use peirce_nodes::merge::checkpoint::{header, OutputTensor};
use safetensors::{Dtype, SafeTensors};

const PEIRCE: &str = env!("CARGO_BIN_EXE_peirce");

/// The merged models and their weights, in name order (the order both tools sum in).
const MODELS: [(&str, f64); 3] = [("abduction", 0.1), ("deduction", 1.0), ("induction", 0.2)];

struct Shape {
    layers: usize,
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
}

fn tensor_shapes(s: &Shape) -> Vec<(String, Vec<usize>)> {
    let kv = s.kv_heads * (s.hidden / s.heads);
    let mut shapes = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![s.vocab, s.hidden],
    )];
    for layer in 0..s.layers {
        let p = format!("model.layers.{layer}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![s.hidden, s.hidden]),
            ("self_attn.q_proj.bias", vec![s.hidden]),
            ("self_attn.k_proj.weight", vec![kv, s.hidden]),
            ("self_attn.k_proj.bias", vec![kv]),
            ("self_attn.v_proj.weight", vec![kv, s.hidden]),
            ("self_attn.v_proj.bias", vec![kv]),
            ("self_attn.o_proj.weight", vec![s.hidden, s.hidden]),
            ("mlp.gate_proj.weight", vec![s.intermediate, s.hidden]),
            ("mlp.up_proj.weight", vec![s.intermediate, s.hidden]),
            ("mlp.down_proj.weight", vec![s.hidden, s.intermediate]),
            ("input_layernorm.weight", vec![s.hidden]),
            ("post_attention_layernorm.weight", vec![s.hidden]),
        ] {
            shapes.push((format!("{p}.{name}"), shape));
        }
    }
    shapes.push(("model.norm.weight".into(), vec![s.hidden]));
    shapes
}

/// Writes a bf16 model folder with weights uniform in (-0.05, 0.05) from a xorshift stream,
/// tensor by tensor (never the whole model in memory). Returns the weight bytes.
fn write_model(dir: &Path, shape: &Shape, seed: u64) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "vocab_size": shape.vocab,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "torch_dtype": "bfloat16",
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let tensors: Vec<OutputTensor> = tensor_shapes(shape)
        .into_iter()
        .map(|(name, shape)| OutputTensor {
            name,
            dtype: Dtype::BF16,
            shape,
        })
        .collect();
    let mut file = BufWriter::with_capacity(1 << 22, File::create(dir.join("model.safetensors"))?);
    file.write_all(&header(&tensors))?;
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut buffer = Vec::with_capacity(1 << 20);
    let mut bytes = 0u64;
    for tensor in &tensors {
        let mut left = tensor.shape.iter().product::<usize>();
        while left > 0 {
            let count = left.min(1 << 19);
            buffer.clear();
            for _ in 0..count {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                let value = (unit - 0.5) * 0.1;
                buffer.extend_from_slice(&half::bf16::from_f32(value).to_le_bytes());
            }
            file.write_all(&buffer)?;
            bytes += buffer.len() as u64;
            left -= count;
        }
    }
    file.flush()?;
    Ok(bytes)
}

/// Wall seconds and peak resident memory (bytes) of one child process run to completion.
fn measure(command: &mut Command) -> (f64, u64) {
    let started = Instant::now();
    // Reaped by `wait4` below, which `Child::wait` cannot replace: it also gives the rusage.
    #[allow(clippy::zombie_processes)]
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    let stderr = reader.join().unwrap_or_default();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed (status {status}):\n{stderr}"
    );
    (seconds, usage.ru_maxrss as u64 * 1024)
}

/// Tensor name to bytes, of every `*.safetensors` file in `dir`.
fn tensors(dir: &Path) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("an output folder") {
        let path = entry.expect("a folder entry").path();
        if path.extension().is_none_or(|e| e != "safetensors") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable weights");
        let parsed = SafeTensors::deserialize(&bytes).expect("valid safetensors");
        for (name, view) in parsed.tensors() {
            found.insert(
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            );
        }
    }
    found
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let Some(mergekit) = std::env::var_os("PEIRCE_MERGEKIT").filter(|p| !p.is_empty()) else {
        eprintln!(
            "PEIRCE_MERGEKIT is not set: `source scripts/mergekit.sh; peirce_mergekit_setup` first"
        );
        std::process::exit(1);
    };
    let layers = std::env::var("PEIRCE_BENCH_LAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let rounds: usize = std::env::var("PEIRCE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let base = std::env::var_os("PEIRCE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("peirce-merge-bench-")
        .tempdir_in(&base)
        .expect("a scratch folder");
    let shape = Shape {
        layers,
        hidden: 896,
        intermediate: 4864,
        heads: 14,
        kv_heads: 2,
        vocab: 151936,
    };
    let started = Instant::now();
    let mut model_bytes = 0;
    for (seed, (name, _)) in MODELS.iter().enumerate() {
        model_bytes = write_model(&scratch.path().join(name), &shape, seed as u64 + 1)
            .expect("writing a bench model");
    }
    println!(
        "merge bench: 3 bf16 models of Qwen2-0.5B's shape ({layers} layers, {:.0} M parameters, {:.0} MB each), written in {:.1} s",
        model_bytes as f64 / 2e6,
        model_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let mut yaml = String::from("merge_method: linear\ndtype: bfloat16\nmodels:\n");
    for (name, weight) in MODELS {
        yaml.push_str(&format!(
            "  - model: {}\n    parameters:\n      weight: {weight}\n",
            scratch.path().join(name).display()
        ));
    }
    let config = scratch.path().join("mergekit.yml");
    std::fs::write(&config, yaml).expect("writing the mergekit config");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("linear merge, weights abduction 0.1, deduction 1.0, induction 0.2; {cores} cores; page cache warm\n");
    println!(
        "{:<10} {:>5} {:>9} {:>14}",
        "tool", "round", "wall (s)", "peak RSS (MB)"
    );
    let mut best: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for round in 1..=rounds {
        for tool in ["peirce", "mergekit"] {
            let out = scratch.path().join(format!("out-{tool}"));
            let _ = std::fs::remove_dir_all(&out);
            let mut command = if tool == "peirce" {
                let mut command = Command::new(PEIRCE);
                command.arg("merge").arg("--out").arg(&out);
                for (name, weight) in MODELS {
                    command.arg("--weight").arg(format!("{name}={weight}"));
                }
                for (name, _) in MODELS {
                    command.arg(format!("{name}={}", scratch.path().join(name).display()));
                }
                command
            } else {
                let mut command = Command::new(&mergekit);
                command.arg(&config).arg(&out).args([
                    "--no-copy-tokenizer",
                    "--quiet",
                    "--no-cuda",
                ]);
                command
            };
            let (seconds, peak) = measure(&mut command);
            println!(
                "{tool:<10} {round:>5} {seconds:>9.2} {:>14.0}",
                peak as f64 / 1e6
            );
            let entry = best.entry(tool).or_insert((f64::INFINITY, u64::MAX));
            entry.0 = entry.0.min(seconds);
            entry.1 = entry.1.min(peak);
        }
    }
    let (ours, theirs) = (best["peirce"], best["mergekit"]);
    println!(
        "\nbest of {rounds}: peirce {:.2} s, {:.0} MB; mergekit {:.2} s, {:.0} MB",
        ours.0,
        ours.1 as f64 / 1e6,
        theirs.0,
        theirs.1 as f64 / 1e6
    );
    let speedup = theirs.0 / ours.0;
    let memory = ours.1 as f64 / theirs.1 as f64;
    println!(
        "speed: peirce is {speedup:.2}x as fast as mergekit (target >= 2x: {})",
        if speedup >= 2.0 { "met" } else { "NOT met" }
    );
    println!(
        "memory: peirce's peak is {memory:.3} of mergekit's (target <= 0.5: {})",
        if memory <= 0.5 { "met" } else { "NOT met" }
    );
    let ours = tensors(&scratch.path().join("out-peirce"));
    let theirs = tensors(&scratch.path().join("out-mergekit"));
    let differing: Vec<&String> = ours
        .iter()
        .filter(|(name, tensor)| theirs.get(*name) != Some(tensor))
        .map(|(name, _)| name)
        .collect();
    let extra: Vec<&String> = theirs
        .keys()
        .filter(|name| !ours.contains_key(*name))
        .collect();
    println!(
        "outputs: {} tensors of ours, {} of mergekit's; {} differ{}{}",
        ours.len(),
        theirs.len(),
        differing.len(),
        if differing.is_empty() {
            " (bit for bit identical)"
        } else {
            ""
        },
        if extra.is_empty() {
            String::new()
        } else {
            format!("; only mergekit's: {extra:?}")
        }
    );
}
