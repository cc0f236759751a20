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
use std::path::Path;

use serde_json::json;
use tch::Device;

use peirce_protocol::event::{metric, progress};
use peirce_protocol::params::{self, EvalParams};
use peirce_protocol::{WorkerError, WorkerSpec};

use crate::data;
use crate::parallel::Ranks;
use crate::pretrained::Model;
use crate::sampler::SamplingParams;
use crate::train::{self, Rollout};

use super::ranks;

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

impl Tally {
    fn values(&self) -> [f64; 4] {
        [
            self.correct as f64,
            self.count as f64,
            self.reward,
            self.tokens as f64,
        ]
    }

    fn from_values(values: &[f64]) -> Self {
        Self {
            correct: values[0] as usize,
            count: values[1] as usize,
            reward: values[2],
            tokens: values[3] as usize,
        }
    }
}

/// Sums tallies over ranks (in one collective).
fn sum_tallies(ranks: &Ranks, tallies: &[Tally]) -> Result<Vec<Tally>, WorkerError> {
    let flat: Vec<f64> = tallies.iter().flat_map(Tally::values).collect();
    Ok(ranks
        .sum(&flat)?
        .chunks(4)
        .map(Tally::from_values)
        .collect())
}

/// Runs an `eval` node: on one device, or split across the node's ranks (one per granted
/// GPU, see [`super::ranks`]), each grading its share of every dataset's prompts.
pub fn run(spec: &WorkerSpec, spec_path: &Path, device: Device) -> Result<(), WorkerError> {
    let params = EvalParams::parse(&spec.params)?;
    ranks::run(spec, spec_path, params.ranks, device, |ranks, device| {
        evaluate(spec, &params, ranks, device)
    })
}

fn evaluate(
    spec: &WorkerSpec,
    params: &EvalParams,
    ranks: &Ranks,
    device: Device,
) -> Result<(), WorkerError> {
    let label = params.label.clone().unwrap_or_else(|| spec.node.clone());
    let count = params.count.map(|c| c.get() as usize);
    let levels = params::levels(&params.levels);
    let split = params.split.name();
    let k = params.k.get() as usize;
    let mut sampling = SamplingParams {
        temperature: params.temperature,
        top_p: params.top_p,
        top_k: i64::from(params.top_k),
        cuda_graphs: params.cuda_graphs,
        kernels: params.decode_kernels,
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
        let examples = data::examples(&kept, &model.tokenizer, params.reward)?;
        sets.push((name.to_string(), task, examples));
    }
    let total: usize = sets.iter().map(|(_, _, e)| e.len()).sum();
    let mut done = 0usize;

    let mut rows = Vec::new();
    let mut responses = String::new();
    for (index, (name, task, examples)) in sets.iter().enumerate() {
        let greedy = SamplingParams {
            temperature: 0.0,
            ..sampling.clone()
        };
        // This rank's contiguous share: rank order is the dataset's order.
        let mine = ranks.split(examples);
        let graded = train::rollouts(&model.net, &model.tokenizer, mine, 1, batch, &greedy)?;
        let levels: Vec<u32> = {
            let mut levels: Vec<u32> = examples.iter().map(|e| e.level).collect();
            levels.sort_unstable();
            levels.dedup();
            levels
        };
        // [overall, each level..., avg@k samples]
        let mut tallies = vec![Tally::default(); levels.len() + 2];
        let mut lines = String::new();
        for (example, rollout) in mine.iter().zip(&graded) {
            tallies[0].add(rollout);
            let at = levels
                .binary_search(&example.level)
                .expect("a level of the set");
            tallies[1 + at].add(rollout);
            let line = json!({
                "dataset": name, "id": example.id, "level": example.level,
                "reward": rollout.score.total, "correct": rollout.score.is_correct(),
                "answer": example.answer, "response": rollout.text,
            });
            let _ = writeln!(lines, "{line}");
        }
        if k > 1 {
            let sampled = train::rollouts(&model.net, &model.tokenizer, mine, k, batch, &sampling)?;
            sampled
                .iter()
                .for_each(|r| tallies[levels.len() + 1].add(r));
        }
        // The other ranks' responses reach rank 0 through the scratch folder: each writes
        // its share before the sum below, which rank 0 cannot leave before they all enter.
        let share = spec
            .scratch_dir
            .join(format!("responses-{index}-rank{}.jsonl", ranks.rank()));
        if !ranks.is_first() {
            write_file(&share, &lines)?;
        }
        let tallies = sum_tallies(ranks, &tallies)?;
        if ranks.is_first() {
            responses.push_str(&lines);
            for rank in 1..ranks.world() {
                let path = spec
                    .scratch_dir
                    .join(format!("responses-{index}-rank{rank}.jsonl"));
                responses.push_str(&std::fs::read_to_string(&path).map_err(|e| {
                    WorkerError::failed(format!("cannot read `{}`: {e}", path.display()))
                })?);
            }
        }
        let overall = tallies[0];
        let by_level: BTreeMap<u32, Tally> = levels
            .iter()
            .zip(&tallies[1..=levels.len()])
            .map(|(level, tally)| (*level, *tally))
            .collect();
        let avg_at_k = (k > 1).then(|| tallies[levels.len() + 1].accuracy());
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
    if !ranks.is_first() {
        return Ok(());
    }
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
fn model_digest(dir: &Path) -> serde_json::Value {
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

fn write(out: &Path, name: &str, text: &str) -> Result<(), WorkerError> {
    write_file(&out.join(name), text)
}

fn write_file(path: &Path, text: &str) -> Result<(), WorkerError> {
    std::fs::write(path, text)
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
