//! Datasets in the verl/OpenRLHF parquet layout: the columns verl's and OpenRLHF's
//! RL trainers read (`data_source`, `prompt` as chat messages, `ability`, `reward_model`
//! with the ground truth, `extra_info`), written without timestamps so the same records give
//! the same bytes, and read back for `generate`'s import of user datasets.
//!
//! `prompt` is one user message holding peirce's whole rendered prompt (ChatML, the
//! assistant turn opened with `<think>`), so every verl reads exactly that prompt: the
//! paper's fork (arXiv 2505.10554) tokenizes the first message's content as it is, and
//! current verl applies a chat template, for which the export writes [`CHAT_TEMPLATE_FILE`],
//! a template that passes the one message through (`data.apply_chat_template_kwargs`).
//! Beside it, [`write_verl_files`] writes [`crate::reward::python::MODULE_FILE`], peirce's
//! reward as a `custom_reward_function`.
//!
//! Behind the crate's default `parquet` feature: the torch worker reads JSONL only and
//! builds without arrow and parquet.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::dataset::{io, DatasetError, Record};
use crate::prompt::Message;
use crate::reward::python::{python_module, MODULE_FILE};
use crate::reward::RewardMode;
use crate::AnswerKind;

/// The chat template that reads the `prompt` column into peirce's rendered prompt: the one
/// message's content, verbatim (whatever `add_generation_prompt` says: the prompt already
/// opens the assistant turn). Anything but one message is an error.
pub const CHAT_TEMPLATE: &str = "{%- if messages | length != 1 -%}{{ raise_exception('a peirce dataset row holds its whole rendered prompt in one message') }}{%- endif -%}{{ messages[0]['content'] }}";

/// The file the chat template is written to, beside the parquet files.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Writes the files verl needs beside the parquet files: the chat template and the reward
/// module grading under `mode`.
pub fn write_verl_files(dir: &Path, mode: RewardMode) -> Result<(), DatasetError> {
    for (name, text) in [
        (CHAT_TEMPLATE_FILE, CHAT_TEMPLATE.to_string()),
        (MODULE_FILE, python_module(mode)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

fn parquet_error(path: &Path, error: impl std::fmt::Display) -> DatasetError {
    DatasetError::Parquet {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
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
    let mut prompts = ListBuilder::new(StructBuilder::from_fields(message_fields(), records.len()));
    for record in records {
        let message = prompts.values();
        message
            .field_builder::<StringBuilder>(0)
            .expect("role column")
            .append_value("user");
        message
            .field_builder::<StringBuilder>(1)
            .expect("content column")
            .append_value(&record.prompt);
        message.append(true);
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

/// Row `row` of `batch` as a JSON object (column name to value), for readers that interpret
/// rows by their fields whatever their parquet types: strings, integers, floats, booleans,
/// structs (objects) and lists (arrays), nested; nulls and other types read as `null`.
pub fn row_json(batch: &RecordBatch, row: usize) -> serde_json::Value {
    let schema = batch.schema();
    let object = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| (field.name().clone(), value_json(column.as_ref(), row)))
        .collect();
    serde_json::Value::Object(object)
}

/// One value of an arrow array as JSON (see [`row_json`]).
fn value_json(array: &dyn Array, row: usize) -> serde_json::Value {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type,
    };
    use serde_json::Value;

    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Value::from(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(row)),
        DataType::Struct(fields) => {
            let parts = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(parts.columns())
                    .map(|(field, column)| (field.name().clone(), value_json(column.as_ref(), row)))
                    .collect(),
            )
        }
        DataType::List(_) => items_json(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => items_json(array.as_list::<i64>().value(row).as_ref()),
        _ => Value::Null,
    }
}

/// Every value of `items` (one list entry's values) as a JSON array.
fn items_json(items: &dyn Array) -> serde_json::Value {
    serde_json::Value::Array((0..items.len()).map(|i| value_json(items, i)).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::tests::record;

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
        // One user message: the whole rendered prompt, which opens the assistant turn.
        let messages = prompt_messages(batch, 1).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].role, "user");
        assert_eq!(messages[0].content, records[1].prompt);
        assert!(messages[0]
            .content
            .ends_with("<|im_start|>assistant\n<think>"));
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
}
