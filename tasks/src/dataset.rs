//! Datasets: records, JSONL and parquet files, and per-level statistics.
//!
//! A dataset tree holds `train.jsonl`, `test.jsonl`, `train.parquet`, `test.parquet` and
//! `stats.json`. The JSONL records are complete (rendered prompt, messages, puzzle, answer,
//! parameters, worked solution); the parquet files carry the same rows in the column layout
//! verl and OpenRLHF read: `data_source`, `prompt` (one `{role, content}` message holding the
//! rendered prompt), `ability`, `reward_model {style, ground_truth}`, `extra_info {...}`.
//! Output bytes depend only on the records (serde_json with sorted maps; parquet written
//! without timestamps). The parquet side lives in [`crate::verl`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::prompt::{self, Message};
use super::{AnswerKind, Family, Instance};

/// A dataset file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// I/O failure.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A malformed line or row.
    #[error("`{path}` line {line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line (or row) number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A parquet or arrow failure.
    #[error("parquet error on `{path}`: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One row of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Stable id: the first 16 hex digits of blake3(task, puzzle).
    pub id: String,
    /// Task family or imported source name.
    pub task: String,
    /// Level (0: none).
    pub level: u32,
    /// `train` or `test`.
    pub split: String,
    /// verl's `data_source`, e.g. `peirce/deduction`.
    pub data_source: String,
    /// verl's `ability`: `logic` or `math`.
    pub ability: String,
    /// How answers are graded.
    pub answer_kind: AnswerKind,
    /// The rendered ChatML prompt, ending in `<think>`.
    pub prompt: String,
    /// The system and user messages.
    pub messages: Vec<Message>,
    /// The puzzle (user message).
    pub puzzle: String,
    /// The ground truth.
    pub answer: String,
    /// Instance parameters and statistics.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Worked solution for warm-up, if generated.
    pub solution: Option<String>,
}

/// The id of a (task, puzzle) pair.
pub fn instance_id(task: &str, puzzle: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(task.as_bytes());
    hasher.update(&[0]);
    hasher.update(puzzle.as_bytes());
    hasher.finalize().to_hex()[..16].to_string()
}

impl Record {
    /// A record for an instance of a family.
    pub fn from_instance(instance: Instance, family: &dyn Family, split: &str) -> Self {
        Self::build(instance, family.instruction(), family.answer_kind(), split)
    }

    /// A record with an explicit instruction and answer kind (imported data).
    pub fn build(
        instance: Instance,
        instruction: &str,
        answer_kind: AnswerKind,
        split: &str,
    ) -> Self {
        let ability = if answer_kind == AnswerKind::Boxed {
            "math"
        } else {
            "logic"
        };
        Record {
            id: instance_id(&instance.task, &instance.puzzle),
            data_source: format!("peirce/{}", instance.task),
            ability: ability.to_string(),
            answer_kind,
            prompt: prompt::render(instruction, &instance.puzzle),
            messages: prompt::messages(instruction, &instance.puzzle),
            task: instance.task,
            level: instance.level,
            split: split.to_string(),
            puzzle: instance.puzzle,
            answer: instance.answer,
            params: instance.params,
            solution: instance.solution,
        }
    }

    /// The instance this record was made from.
    pub fn instance(&self) -> Instance {
        Instance {
            task: self.task.clone(),
            level: self.level,
            puzzle: self.puzzle.clone(),
            answer: self.answer.clone(),
            params: self.params.clone(),
            solution: self.solution.clone(),
        }
    }
}

/// Writes records as JSON lines.
pub fn write_jsonl(path: &Path, records: &[Record]) -> Result<(), DatasetError> {
    let mut out = BufWriter::new(File::create(path).map_err(io(path))?);
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|e| io(path)(e.into()))?;
        out.write_all(b"\n").map_err(io(path))?;
    }
    out.flush().map_err(io(path))
}

/// Reads records written by [`write_jsonl`]; a bad line is an error naming it.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, DatasetError> {
    let reader = BufReader::new(File::open(path).map_err(io(path))?);
    let mut records = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|error| DatasetError::Malformed {
            path: path.to_path_buf(),
            line: index + 1,
            message: error.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Minimum, maximum and mean of a numeric parameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Statistics of one level.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LevelStats {
    /// Instances.
    pub count: u64,
    /// Numeric parameters.
    pub params: BTreeMap<String, Summary>,
    /// Answer balance (e.g. true/false values).
    pub answers: BTreeMap<String, u64>,
}

/// Per-level statistics of `records` (keys: level numbers as strings, for JSON).
pub fn level_stats(
    records: &[Record],
    family: Option<&dyn Family>,
) -> BTreeMap<String, LevelStats> {
    let mut sums: BTreeMap<u32, (LevelStats, BTreeMap<String, f64>)> = BTreeMap::new();
    for record in records {
        let (stats, totals) = sums.entry(record.level).or_default();
        stats.count += 1;
        for (name, value) in &record.params {
            let Some(number) = value.as_f64() else {
                continue;
            };
            let summary = stats.params.entry(name.clone()).or_insert(Summary {
                min: number,
                max: number,
                mean: 0.0,
            });
            summary.min = summary.min.min(number);
            summary.max = summary.max.max(number);
            *totals.entry(name.clone()).or_default() += number;
        }
        if let Some(family) = family {
            for (name, count) in family.answer_balance(&record.answer) {
                *stats.answers.entry(name.to_string()).or_default() += count;
            }
        }
    }
    sums.into_iter()
        .map(|(level, (mut stats, totals))| {
            for (name, total) in totals {
                if let Some(summary) = stats.params.get_mut(&name) {
                    summary.mean = total / stats.count as f64;
                }
            }
            (level.to_string(), stats)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deduction record of `level` in `split`, for tests.
    pub(crate) fn record(level: u32, split: &str) -> Record {
        let mut params = BTreeMap::new();
        params.insert("variables".to_string(), serde_json::json!(4 + level));
        let instance = Instance {
            task: "deduction".into(),
            level,
            puzzle: format!("puzzle {level}"),
            answer: "(1) A is True".into(),
            params,
            solution: Some("A must be true.".into()),
        };
        Record::build(instance, "List the values.", AnswerKind::Assignment, split)
    }

    #[test]
    fn jsonl_round_trips_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        let records = vec![record(1, "train"), record(2, "train")];
        write_jsonl(&path, &records).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), records);
        std::fs::write(&path, "{\"id\": 1}\n").unwrap();
        let error = read_jsonl(&path).unwrap_err().to_string();
        assert!(
            error.contains("train.jsonl") && error.contains("line 1"),
            "{error}"
        );
    }

    #[test]
    fn stats_per_level() {
        let records = vec![record(1, "train"), record(1, "train"), record(2, "test")];
        let stats = level_stats(&records, None);
        assert_eq!(stats["1"].count, 2);
        assert_eq!(stats["2"].params["variables"].max, 6.0);
    }
}
