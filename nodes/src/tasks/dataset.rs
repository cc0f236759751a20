//! Datasets: records, JSONL and parquet files, and per-level statistics.
//!
//! A dataset tree holds `train.jsonl`, `test.jsonl`, `train.parquet`, `test.parquet` and
//! `stats.json`. The JSONL records are complete (rendered prompt, messages, puzzle, answer,
//! parameters, worked solution); the parquet files carry the same rows in the column layout
//! verl and OpenRLHF read: `data_source`, `prompt` (a list of `{role, content}` messages),
//! `ability`, `reward_model {style, ground_truth}`, `extra_info {...}`. Output bytes depend
//! only on the records (serde_json with sorted maps; parquet written without timestamps).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parquet_error(path: &Path, error: impl std::fmt::Display) -> DatasetError {
    DatasetError::Parquet {
        path: path.to_path_buf(),
        message: error.to_string(),
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

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// The verl/OpenRLHF parquet schema.
pub fn parquet_schema() -> Schema {
    let message = DataType::Struct(message_fields());
    let reward = Fields::from(vec![
        Field::new("style", DataType::Utf8, false),
        Field::new("ground_truth", DataType::Utf8, false),
    ]);
    let extra = Fields::from(vec![
        Field::new("split", DataType::Utf8, false),
        Field::new("index", DataType::Int64, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("level", DataType::Int64, false),
        Field::new("answer_kind", DataType::Utf8, false),
        Field::new("puzzle", DataType::Utf8, false),
        Field::new("prompt_text", DataType::Utf8, false),
        Field::new("params", DataType::Utf8, false),
    ]);
    Schema::new(vec![
        Field::new("data_source", DataType::Utf8, false),
        Field::new(
            "prompt",
            DataType::List(Arc::new(Field::new("item", message, true))),
            false,
        ),
        Field::new("ability", DataType::Utf8, false),
        Field::new("reward_model", DataType::Struct(reward), false),
        Field::new("extra_info", DataType::Struct(extra), false),
    ])
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn answer_kind_name(kind: AnswerKind) -> &'static str {
    match kind {
        AnswerKind::Assignment => "assignment",
        AnswerKind::Reachability => "reachability",
        AnswerKind::Integer => "integer",
        AnswerKind::Boxed => "boxed",
    }
}

/// Writes records as parquet in the verl/OpenRLHF layout.
pub fn write_parquet(path: &Path, records: &[Record]) -> Result<(), DatasetError> {
    let schema = Arc::new(parquet_schema());
    let mut prompts = ListBuilder::new(StructBuilder::from_fields(
        message_fields(),
        records.len() * 2,
    ));
    for record in records {
        let messages = prompts.values();
        for message in &record.messages {
            messages
                .field_builder::<StringBuilder>(0)
                .expect("role column")
                .append_value(&message.role);
            messages
                .field_builder::<StringBuilder>(1)
                .expect("content column")
                .append_value(&message.content);
            messages.append(true);
        }
        prompts.append(true);
    }
    let prompts: ListArray = prompts.finish();
    let prompt_field = schema
        .field_with_name("prompt")
        .expect("schema has prompt")
        .clone();
    let prompts = ListArray::try_new(
        match prompt_field.data_type() {
            DataType::List(item) => item.clone(),
            _ => unreachable!("prompt is a list"),
        },
        prompts.offsets().clone(),
        prompts.values().clone(),
        None,
    )
    .map_err(|e| parquet_error(path, e))?;
    let reward = StructArray::try_new(
        match schema
            .field_with_name("reward_model")
            .expect("schema")
            .data_type()
        {
            DataType::Struct(fields) => fields.clone(),
            _ => unreachable!("reward_model is a struct"),
        },
        vec![
            strings(records.iter().map(|_| "rule")),
            strings(records.iter().map(|r| r.answer.as_str())),
        ],
        None,
    )
    .map_err(|e| parquet_error(path, e))?;
    let params: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(&r.params).expect("params serialize"))
        .collect();
    let extra = StructArray::try_new(
        match schema
            .field_with_name("extra_info")
            .expect("schema")
            .data_type()
        {
            DataType::Struct(fields) => fields.clone(),
            _ => unreachable!("extra_info is a struct"),
        },
        vec![
            strings(records.iter().map(|r| r.split.as_str())),
            Arc::new(Int64Array::from_iter_values(0..records.len() as i64)),
            strings(records.iter().map(|r| r.id.as_str())),
            strings(records.iter().map(|r| r.task.as_str())),
            Arc::new(Int64Array::from_iter_values(
                records.iter().map(|r| r.level as i64),
            )),
            strings(records.iter().map(|r| answer_kind_name(r.answer_kind))),
            strings(records.iter().map(|r| r.puzzle.as_str())),
            strings(records.iter().map(|r| r.prompt.as_str())),
            strings(params.iter().map(String::as_str)),
        ],
        None,
    )
    .map_err(|e| parquet_error(path, e))?;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(records.iter().map(|r| r.data_source.as_str())),
            Arc::new(prompts),
            strings(records.iter().map(|r| r.ability.as_str())),
            Arc::new(reward),
            Arc::new(extra),
        ],
    )
    .map_err(|e| parquet_error(path, e))?;
    let file = File::create(path).map_err(io(path))?;
    let properties = WriterProperties::builder()
        .set_created_by("peirce".to_string())
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(properties)).map_err(|e| parquet_error(path, e))?;
    writer.write(&batch).map_err(|e| parquet_error(path, e))?;
    writer.close().map_err(|e| parquet_error(path, e))?;
    Ok(())
}

/// A string column of a batch (top level or `parent.child`), if present and of string type.
pub fn string_column<'a>(batch: &'a RecordBatch, path: &str) -> Option<&'a StringArray> {
    let (parent, child) = match path.split_once('.') {
        Some((parent, child)) => (parent, Some(child)),
        None => (path, None),
    };
    let column = batch.column_by_name(parent)?;
    match child {
        None => column.as_any().downcast_ref::<StringArray>(),
        Some(child) => column
            .as_any()
            .downcast_ref::<StructArray>()?
            .column_by_name(child)?
            .as_any()
            .downcast_ref(),
    }
}

/// Reads every batch of a parquet file.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, DatasetError> {
    let file = File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parquet_error(path, e))?
        .build()
        .map_err(|e| parquet_error(path, e))?;
    reader
        .map(|batch| batch.map_err(|e| parquet_error(path, e)))
        .collect()
}

/// The messages of row `row` of a `prompt` list column.
pub fn prompt_messages(batch: &RecordBatch, row: usize) -> Option<Vec<Message>> {
    let list = batch
        .column_by_name("prompt")?
        .as_any()
        .downcast_ref::<ListArray>()?;
    if list.is_null(row) {
        return None;
    }
    let value = list.value(row);
    let structs = value.as_any().downcast_ref::<StructArray>()?;
    let roles = structs
        .column_by_name("role")?
        .as_any()
        .downcast_ref::<StringArray>()?;
    let contents = structs
        .column_by_name("content")?
        .as_any()
        .downcast_ref::<StringArray>()?;
    Some(
        (0..structs.len())
            .map(|i| Message {
                role: roles.value(i).to_string(),
                content: contents.value(i).to_string(),
            })
            .collect(),
    )
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
mod tests {
    use super::*;

    fn record(level: u32, split: &str) -> Record {
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
    fn parquet_reads_back_with_the_verl_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.parquet");
        let records = vec![record(1, "test"), record(3, "test")];
        write_parquet(&path, &records).unwrap();
        let batches = read_parquet(&path).unwrap();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "data_source",
                "prompt",
                "ability",
                "reward_model",
                "extra_info"
            ]
        );
        assert_eq!(
            string_column(batch, "data_source").unwrap().value(0),
            "peirce/deduction"
        );
        assert_eq!(
            string_column(batch, "reward_model.ground_truth")
                .unwrap()
                .value(1),
            "(1) A is True"
        );
        assert_eq!(
            string_column(batch, "extra_info.split").unwrap().value(0),
            "test"
        );
        let messages = prompt_messages(batch, 1).unwrap();
        assert_eq!(messages[0].role, "system");
        assert_eq!(messages[1].content, "puzzle 3");
    }

    #[test]
    fn same_records_same_parquet_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let records = vec![record(1, "train")];
        write_parquet(&a, &records).unwrap();
        write_parquet(&b, &records).unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    #[test]
    fn stats_per_level() {
        let records = vec![record(1, "train"), record(1, "train"), record(2, "test")];
        let stats = level_stats(&records, None);
        assert_eq!(stats["1"].count, 2);
        assert_eq!(stats["2"].params["variables"].max, 6.0);
    }
}
