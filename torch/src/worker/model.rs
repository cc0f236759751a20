//! The `model` kind: a model tree from a local Hugging Face folder (input `base`) or a
//! freshly built tiny model.
//!
//! Import validates the folder by loading it (every tensor present, named and shaped as
//! the config says, tokenizer readable), then copies its files unchanged, so the output's
//! bytes are the input's; with `dtype` set, the weights are rewritten in that dtype.
//! Tiny builds a byte-level BPE tokenizer over the task text and a randomly initialized
//! Qwen2-shaped model, seeded. Either can then be warmed up by supervised fine-tuning on
//! the worked solutions of its dataset inputs (`warmup_steps` > 0), so the pipeline
//! starts from a model that follows the answer format, as an instruct model does; the
//! warm-up's per-step loss is kept in `warmup.jsonl` and plotted in `warmup.png`.
//!
//! Parameters: [`ModelParams`].

use std::path::Path;

use tch::{Device, Kind};

use peirce_protocol::event::{metric, progress};
use peirce_protocol::hf;
use peirce_protocol::params::{ModelParams, Source};
use peirce_protocol::{WorkerError, WorkerSpec};

use crate::data;
use crate::pretrained::{self, Model, TinyModelBuilder};
use crate::train::{self, TrainConfig};

/// Runs a `model` node.
pub fn run(spec: &WorkerSpec, device: Device) -> Result<(), WorkerError> {
    let params = ModelParams::parse(&spec.params)?;
    let base = spec.inputs.get("base");
    let source = params.source.unwrap_or(if base.is_some() {
        Source::Import
    } else {
        Source::Tiny
    });
    let dtype = params.dtype.map(pretrained::kind_of);
    let max_shard_bytes = params.max_shard_bytes.map(|bytes| bytes.get());
    let warmup = Warmup {
        steps: params.warmup_steps as usize,
        lr: params.warmup_lr,
        batch: params.warmup_batch.get() as usize,
        seed: params.seed,
    };
    if warmup.steps > 0 && spec.inputs.keys().all(|name| name == "base") {
        return Err(WorkerError::bad_input(
            "`warmup_steps` needs dataset inputs (any name but `base`; generated with \
             `solutions = true`)",
        ));
    }
    let out = &spec.output_dir;
    match source {
        Source::Import => {
            let base = base.ok_or_else(|| {
                WorkerError::bad_input("`source = \"import\"` needs an input named `base`")
            })?;
            if warmup.steps > 0 {
                let dtype = dtype.unwrap_or(pretrained::stored_kind(base)?);
                let mut model = Model::load(base, device, Kind::Float)?;
                warmup.run(&mut model, spec)?;
                model.save(out, dtype, max_shard_bytes)?;
                return Ok(());
            }
            import(base, out, dtype, max_shard_bytes)
        }
        Source::Tiny => {
            let builder = TinyModelBuilder::from_params(&params);
            let dtype = dtype.unwrap_or(Kind::Float);
            progress(0, 2, "building tokenizer and model");
            // Trained in fp32 whatever the stored dtype.
            let mut model = builder.build(device, Kind::Float)?;
            if warmup.steps > 0 {
                warmup.run(&mut model, spec)?;
            }
            let parameters = pretrained::parameter_count(&model.vs);
            progress(1, 2, "saving");
            model.save(out, dtype, max_shard_bytes)?;
            metric(serde_json::json!({
                "parameters": parameters,
                "vocab_size": model.tokenizer.vocab_size(),
                "dtype": pretrained::dtype_of_kind(dtype)?.name(),
            }));
            progress(2, 2, "done");
            Ok(())
        }
    }
}

/// Supervised warm-up settings.
struct Warmup {
    steps: usize,
    lr: f64,
    batch: usize,
    seed: u64,
}

impl Warmup {
    /// Fine-tunes `model` on the worked solutions of the train splits of every dataset
    /// input (every input but `base`), mixed.
    fn run(&self, model: &mut Model, spec: &WorkerSpec) -> Result<(), WorkerError> {
        let mut pairs = Vec::new();
        for (name, dir) in spec.inputs.iter().filter(|(name, _)| *name != "base") {
            let records = data::read_split(dir, "train", None)?;
            let found = data::sft_pairs(&records, &model.tokenizer)?;
            if found.is_empty() {
                return Err(WorkerError::bad_input(format!(
                    "input `{name}` (`{}`) has no training records with solutions \
                     (generate with `solutions = true`)",
                    dir.display()
                )));
            }
            pairs.extend(found);
        }
        let config = TrainConfig {
            lr: self.lr,
            betas: (0.9, 0.999),
            weight_decay: 0.01,
            ..TrainConfig::default()
        };
        let mut optimizer = train::adamw(&model.vs, &config, 0, 1)?;
        tch::manual_seed(self.seed as i64);
        let mut order: Vec<usize> = Vec::new();
        let mut rows = Vec::with_capacity(self.steps);
        for step in 0..self.steps {
            let mut batch = Vec::with_capacity(self.batch);
            while batch.len() < self.batch {
                if order.is_empty() {
                    order = super::align::permutation(pairs.len(), self.seed ^ step as u64);
                }
                if let Some(index) = order.pop() {
                    batch.push(pairs[index].clone());
                }
            }
            let started = std::time::Instant::now();
            let tokens: usize = batch.iter().map(|(p, t)| p.len() + t.len()).sum();
            let loss = train::sft_step(
                &model.net,
                &model.vs,
                &mut optimizer,
                &batch,
                model.special.pad,
                &config,
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let row = serde_json::json!({
                "step": step + 1, "loss": loss, "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds.max(1e-9),
            });
            let mut line = row.clone();
            line["phase"] = "warmup".into();
            metric(line);
            rows.push(row);
            progress(
                step as u64 + 1,
                self.steps as u64,
                &format!("warm-up loss {loss:.3}"),
            );
        }
        let out = &spec.output_dir;
        std::fs::create_dir_all(out).map_err(|error| {
            WorkerError::failed(format!("cannot create `{}`: {error}", out.display()))
        })?;
        let text: String = rows.iter().map(|row| format!("{row}\n")).collect();
        let path = out.join("warmup.jsonl");
        std::fs::write(&path, text).map_err(|error| {
            WorkerError::failed(format!("cannot write `{}`: {error}", path.display()))
        })?;
        super::align::plot_curves(spec, &rows, &out.join("warmup.png"))
    }
}

/// Files of a Hugging Face folder that make up the model tree (weights aside).
const TREE_FILES: [&str; 8] = [
    hf::CONFIG,
    hf::TOKENIZER,
    hf::TOKENIZER_CONFIG,
    hf::GENERATION_CONFIG,
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

fn copy(from: &Path, to: &Path) -> Result<(), WorkerError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|error| {
        WorkerError::failed(format!(
            "cannot copy `{}` to `{}`: {error}",
            from.display(),
            to.display()
        ))
    })
}

fn import(
    base: &Path,
    out: &Path,
    dtype: Option<Kind>,
    max_shard_bytes: Option<u64>,
) -> Result<(), WorkerError> {
    progress(0, 2, "validating");
    // Loaded on the CPU in its stored dtype (bf16 stays bf16), only to validate it.
    let stored = pretrained::stored_kind(base)?;
    let model = Model::load(base, Device::Cpu, dtype.unwrap_or(stored))?;
    progress(1, 2, "copying");
    std::fs::create_dir_all(out).map_err(|error| {
        WorkerError::failed(format!("cannot create `{}`: {error}", out.display()))
    })?;
    match dtype {
        Some(dtype) => model.save(out, dtype, max_shard_bytes)?,
        None => {
            for name in TREE_FILES {
                let from = base.join(name);
                if from.exists() {
                    copy(&from, &out.join(name))?;
                }
            }
            let entries = std::fs::read_dir(base).map_err(|error| {
                WorkerError::failed(format!("cannot list `{}`: {error}", base.display()))
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if hf::is_weights_file(&name) || name.ends_with(".safetensors") {
                    copy(&entry.path(), &out.join(&name))?;
                }
            }
        }
    }
    let parameters = pretrained::parameter_count(&model.vs);
    metric(serde_json::json!({"parameters": parameters}));
    progress(2, 2, "done");
    Ok(())
}
