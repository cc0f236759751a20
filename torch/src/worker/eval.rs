//! The `eval` kind: held-out accuracy of one model on every dataset it is given.
//!
//! Inputs: `model` (a model tree) and any number of datasets under other names (a
//! `generate`/`verify` output, or an imported benchmark); the input name is the dataset's
//! column in `peirce report`. For each dataset, up to `count` records per level of the
//! `split` are answered greedily (accuracy, mean reward, response length, per level) and,
//! with `k` > 1, sampled `k` times at `temperature` (avg@k: the mean accuracy of the
//! samples). Deduction, induction and abduction are `task` sets; everything else
//! (arithmetic, imported math) is a `domain` set.
//!
//! Outputs: `metrics.json` (the schema `peirce report` reads: `label`, `sets`, `average`)
//! `metrics.md`, the same as a markdown table, and `responses.jsonl`, every greedy response
//! with its reward, to read what the model actually says.
//!
//! Parameters: [`EvalParams`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;
use tch::Device;

use peirce_protocol::event::{metric, progress};
use peirce_protocol::params::{self, EvalParams};
use peirce_protocol::{WorkerError, WorkerSpec};

use crate::data;
use crate::pretrained::Model;
use crate::sampler::SamplingParams;
use crate::train::{self, Rollout};

/// The reasoning tasks of the paper; every other dataset is a domain set.
const TASKS: [&str; 3] = ["deduction", "induction", "abduction"];

/// Accuracy and friends over a set of graded rollouts.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    correct: usize,
    count: usize,
    reward: f64,
    tokens: usize,
}

impl Tally {
    fn add(&mut self, rollout: &Rollout) {
        self.correct += usize::from(rollout.score.is_correct());
        self.count += 1;
        self.reward += rollout.score.total;
        self.tokens += rollout.response.len();
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

/// Runs an `eval` node.
pub fn run(spec: &WorkerSpec, device: Device) -> Result<(), WorkerError> {
    let params = EvalParams::parse(&spec.params)?;
    let label = params.label.clone().unwrap_or_else(|| spec.node.clone());
    let count = params.count.map(|c| c.get() as usize);
    let levels = params::levels(&params.levels);
    let split = params.split.name();
    let k = params.k.get() as usize;
    let mut sampling = SamplingParams {
        temperature: params.temperature,
        top_p: params.top_p,
        max_new_tokens: i64::from(params.max_new_tokens.get()),
        seed: params.seed,
        ..SamplingParams::default()
    };
    let batch = params.batch.get() as usize;
    let dtype = crate::pretrained::kind_of(params.dtype);

    let model_dir = spec.input("model")?;
    let datasets: Vec<(&String, &std::path::PathBuf)> = spec
        .inputs
        .iter()
        .filter(|(name, _)| name.as_str() != "model")
        .collect();
    if datasets.is_empty() {
        return Err(WorkerError::bad_input(
            "`eval` needs at least one dataset input besides `model`",
        ));
    }
    let model = Model::load(model_dir, device, dtype)?;
    sampling.eos = model.special.eos.clone();
    sampling.pad = model.special.pad;
    sampling.stop_sequences = vec![model.tokenizer.encode("</answer>")?];

    // Every dataset's examples first, so progress has a total.
    let mut sets = Vec::new();
    for (name, dir) in &datasets {
        let records = data::read_split(dir, split, levels.as_deref())?;
        if records.is_empty() {
            return Err(WorkerError::bad_input(format!(
                "input `{name}` (`{}`) has no `{split}` records{}",
                dir.display(),
                levels
                    .as_ref()
                    .map(|l| format!(" at levels {l:?}"))
                    .unwrap_or_default()
            )));
        }
        let mut per_level: BTreeMap<u32, usize> = BTreeMap::new();
        let kept: Vec<_> = records
            .into_iter()
            .filter(|r| {
                let seen = per_level.entry(r.level).or_default();
                *seen += 1;
                count.is_none_or(|c| *seen <= c)
            })
            .collect();
        let task = kept[0].task.clone();
        let examples = data::examples(&kept, &model.tokenizer)?;
        sets.push((name.to_string(), task, examples));
    }
    let total: usize = sets.iter().map(|(_, _, e)| e.len()).sum();
    let mut done = 0usize;

    let mut rows = Vec::new();
    let mut responses = String::new();
    for (name, task, examples) in &sets {
        let greedy = SamplingParams {
            temperature: 0.0,
            ..sampling.clone()
        };
        let graded = train::rollouts(&model.net, &model.tokenizer, examples, 1, batch, &greedy)?;
        let mut overall = Tally::default();
        let mut by_level: BTreeMap<u32, Tally> = BTreeMap::new();
        for (example, rollout) in examples.iter().zip(&graded) {
            overall.add(rollout);
            by_level.entry(example.level).or_default().add(rollout);
            let line = json!({
                "dataset": name, "id": example.id, "level": example.level,
                "reward": rollout.score.total, "correct": rollout.score.is_correct(),
                "answer": example.answer, "response": rollout.text,
            });
            let _ = writeln!(responses, "{line}");
        }
        let avg_at_k = if k > 1 {
            let sampled =
                train::rollouts(&model.net, &model.tokenizer, examples, k, batch, &sampling)?;
            let mut tally = Tally::default();
            sampled.iter().for_each(|r| tally.add(r));
            Some(tally.accuracy())
        } else {
            None
        };
        done += examples.len();
        progress(
            done as u64,
            total as u64,
            &format!("{name}: accuracy {:.3}", overall.accuracy()),
        );
        let role = if TASKS.contains(&task.as_str()) {
            "task"
        } else {
            "domain"
        };
        rows.push(json!({
            "name": name,
            "role": role,
            "task": task,
            "accuracy": overall.accuracy(),
            "reward": overall.reward / overall.count.max(1) as f64,
            "response_length": overall.tokens as f64 / overall.count.max(1) as f64,
            "count": overall.count,
            "k": k,
            "avg_at_k": avg_at_k,
            "levels": by_level
                .iter()
                .map(|(level, t)| {
                    (level.to_string(), json!({"accuracy": t.accuracy(), "count": t.count}))
                })
                .collect::<serde_json::Map<_, _>>(),
        }));
    }
    // Task sets first, then domain sets, each in input-name order.
    rows.sort_by_key(|row| row["role"] != "task");
    let average = rows
        .iter()
        .map(|r| r["accuracy"].as_f64().unwrap_or(0.0))
        .sum::<f64>()
        / rows.len() as f64;
    let metrics = json!({
        "label": label,
        "model": model_digest(model_dir),
        "sets": rows,
        "average": average,
    });
    metric(json!({"phase": "eval", "label": label, "average": average}));
    let out = &spec.output_dir;
    std::fs::create_dir_all(out)
        .map_err(|e| WorkerError::failed(format!("cannot create `{}`: {e}", out.display())))?;
    write(out, "metrics.json", &format!("{metrics:#}\n"))?;
    write(out, "metrics.md", &markdown(&label, &metrics))?;
    write(out, "responses.jsonl", &responses)?;
    Ok(())
}

/// The model tree's digest when the engine put it in the path (store paths end in the
/// tree digest's hex), else nothing.
fn model_digest(dir: &std::path::Path) -> serde_json::Value {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        json!(format!("blake3:{name}"))
    } else {
        serde_json::Value::Null
    }
}

fn write(out: &std::path::Path, name: &str, text: &str) -> Result<(), WorkerError> {
    let path = out.join(name);
    std::fs::write(&path, text)
        .map_err(|e| WorkerError::failed(format!("cannot write `{}`: {e}", path.display())))
}

/// `metrics.json` as a markdown table: one row per dataset, one column per level.
fn markdown(label: &str, metrics: &serde_json::Value) -> String {
    let empty = Vec::new();
    let sets = metrics["sets"].as_array().unwrap_or(&empty);
    let mut levels: Vec<String> = sets
        .iter()
        .filter_map(|s| s["levels"].as_object())
        .flat_map(|l| l.keys().cloned())
        .collect();
    levels.sort_by_key(|l| l.parse::<u32>().unwrap_or(u32::MAX));
    levels.dedup();
    let mut text = format!("# {label}\n\n| dataset | accuracy | reward | length |");
    for level in &levels {
        let _ = write!(text, " L{level} |");
    }
    text.push_str("\n|---|---:|---:|---:|");
    text.push_str(&"---:|".repeat(levels.len()));
    text.push('\n');
    let pct = |v: &serde_json::Value| {
        v.as_f64()
            .map(|a| format!("{:.1}", a * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    for set in sets {
        let _ = write!(
            text,
            "| {} | {} | {:.2} | {:.0} |",
            set["name"].as_str().unwrap_or("?"),
            pct(&set["accuracy"]),
            set["reward"].as_f64().unwrap_or(0.0),
            set["response_length"].as_f64().unwrap_or(0.0),
        );
        for level in &levels {
            let _ = write!(text, " {} |", pct(&set["levels"][level]["accuracy"]));
        }
        text.push('\n');
    }
    let _ = writeln!(text, "\nAverage accuracy: {}", pct(&metrics["average"]));
    text
}
