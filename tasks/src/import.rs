//! Importing a dataset a user has (e.g. MATH500) from a local JSONL or parquet file.
//!
//! Three layouts are read, row by row (a parquet row is read as the JSON object of its
//! columns): plain rows with a problem and an answer column (names configurable, default
//! `problem` / `answer`, optional `level`), and the verl layout (`prompt` as a list of
//! messages, whose last user message is the problem, or `extra_info.puzzle` in peirce's own
//! export; and `reward_model.ground_truth`) become math instances graded by boxed-answer
//! equivalence; rows of the paper's release
//! (`puzzle_text`, a struct ground truth) become instances of their task family
//! ([`crate::release`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::dataset::DatasetError;
use super::release;
#[cfg(feature = "parquet")]
use super::verl::{read_parquet, row_json};
use super::Instance;

/// Column names of the plain layout.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The task name given to imported rows (e.g. `math500`).
    pub name: String,
    /// Problem column.
    pub problem_field: String,
    /// Answer column.
    pub answer_field: String,
    /// Level column (integer, or text like `Level 3`); absent: level 0.
    pub level_field: String,
}

fn malformed(path: &Path, line: usize, message: String) -> DatasetError {
    DatasetError::Malformed {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads `Level 3`, `3` or 3 as 3.
fn parse_level(value: Option<&serde_json::Value>) -> u32 {
    match value {
        Some(serde_json::Value::Number(number)) => number.as_u64().unwrap_or(0) as u32,
        Some(serde_json::Value::String(text)) => text
            .trim()
            .trim_start_matches("Level")
            .trim()
            .parse()
            .unwrap_or(0),
        _ => 0,
    }
}

fn answer_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn instance(
    options: &ImportOptions,
    level: u32,
    puzzle: String,
    answer: String,
    index: usize,
) -> Instance {
    let mut params = BTreeMap::new();
    params.insert("source_index".to_string(), serde_json::json!(index));
    Instance {
        task: options.name.clone(),
        level,
        puzzle,
        answer,
        params,
        solution: None,
    }
}

/// Reads one row (a JSON object, from a JSONL line or a parquet row): the paper's release
/// layout ([`crate::release`]), the verl layout, or the plain layout.
fn row_instance(
    row: &serde_json::Value,
    options: &ImportOptions,
    index: usize,
) -> Result<Instance, String> {
    if release::is_release_row(row) {
        return release::instance(row, index);
    }
    let (puzzle, answer) = if let Some(messages) = row.get("prompt").and_then(|p| p.as_array()) {
        // peirce's own export keeps the puzzle in `extra_info` (its one message is the
        // whole rendered prompt); other verl data has it as the last user message.
        let own = row
            .get("extra_info")
            .and_then(|extra| extra.get("puzzle")?.as_str());
        let puzzle = own
            .or_else(|| {
                messages
                    .iter()
                    .rev()
                    .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
                    .and_then(|m| m.get("content")?.as_str())
            })
            .map(str::to_string);
        let answer = row
            .get("reward_model")
            .and_then(|r| r.get("ground_truth"))
            .and_then(answer_text);
        (puzzle, answer)
    } else {
        (
            row.get(&options.problem_field)
                .and_then(|p| p.as_str())
                .map(str::to_string),
            row.get(&options.answer_field).and_then(answer_text),
        )
    };
    let (Some(puzzle), Some(answer)) = (puzzle, answer) else {
        return Err(format!(
            "expected `{}` and `{}` fields (or the verl layout: `prompt` messages and `reward_model.ground_truth`; or the paper's release: `puzzle_text` and `solution_text`)",
            options.problem_field, options.answer_field
        ));
    };
    let level = parse_level(row.get(&options.level_field));
    Ok(instance(options, level, puzzle, answer, index))
}

/// Reads every row of a JSONL or parquet file (by extension) as an instance.
pub fn import(path: &Path, options: &ImportOptions) -> Result<Vec<Instance>, DatasetError> {
    let rows = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => parquet_rows(path)?,
        Some("jsonl") | Some("json") => jsonl_rows(path)?,
        _ => {
            return Err(malformed(
                path,
                0,
                "expected a `.jsonl` or `.parquet` file".into(),
            ))
        }
    };
    rows.iter()
        .enumerate()
        .map(|(index, (line, row))| {
            row_instance(row, options, index).map_err(|message| malformed(path, *line, message))
        })
        .collect()
}

/// The rows of a JSONL file with their line numbers; blank lines are skipped.
fn jsonl_rows(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line)
            .map_err(|error| malformed(path, index + 1, error.to_string()))?;
        rows.push((index + 1, row));
    }
    Ok(rows)
}

/// The rows of a parquet file as JSON objects, numbered from 1.
#[cfg(feature = "parquet")]
fn parquet_rows(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, DatasetError> {
    let mut rows = Vec::new();
    for batch in read_parquet(path)? {
        for row in 0..batch.num_rows() {
            rows.push((rows.len() + 1, row_json(&batch, row)));
        }
    }
    Ok(rows)
}

#[cfg(not(feature = "parquet"))]
fn parquet_rows(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, DatasetError> {
    Err(malformed(
        path,
        0,
        "this build of peirce-tasks reads no parquet (its `parquet` feature is off)".into(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Import options with the default column names.
    pub(crate) fn options() -> ImportOptions {
        ImportOptions {
            name: "bench".into(),
            problem_field: "problem".into(),
            answer_field: "answer".into(),
            level_field: "level".into(),
        }
    }

    #[test]
    fn reads_plain_and_verl_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("math.jsonl");
        std::fs::write(
            &path,
            "{\"problem\": \"1+1?\", \"answer\": \"2\", \"level\": \"Level 3\"}\n\n{\"prompt\": [{\"role\": \"user\", \"content\": \"2+2?\"}], \"reward_model\": {\"ground_truth\": 4}}\n",
        )
        .unwrap();
        let instances = import(&path, &options()).unwrap();
        assert_eq!(instances.len(), 2);
        assert_eq!((instances[0].level, instances[0].answer.as_str()), (3, "2"));
        assert_eq!(
            (instances[1].puzzle.as_str(), instances[1].answer.as_str()),
            ("2+2?", "4")
        );
    }

    #[cfg(feature = "parquet")]
    #[test]
    fn reads_the_verl_parquet_peirce_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.parquet");
        let records = vec![
            crate::dataset::tests::record(1, "test"),
            crate::dataset::tests::record(4, "test"),
        ];
        crate::verl::write_parquet(&path, &records).unwrap();
        let instances = import(&path, &options()).unwrap();
        assert_eq!(instances.len(), 2);
        for (instance, record) in instances.iter().zip(&records) {
            assert_eq!(instance.task, "bench");
            assert_eq!(instance.puzzle, record.puzzle);
            assert_eq!(instance.answer, record.answer);
        }
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(
            &path,
            "{\"problem\": \"x\", \"answer\": \"1\"}\n{\"question\": \"y\"}\n",
        )
        .unwrap();
        let error = import(&path, &options()).unwrap_err().to_string();
        assert!(
            error.contains("bad.jsonl") && error.contains("line 2"),
            "{error}"
        );
        std::fs::write(&path, "not json\n").unwrap();
        assert!(import(&path, &options()).is_err());
        let other = dir.path().join("data.csv");
        std::fs::write(&other, "a,b").unwrap();
        assert!(import(&other, &options())
            .unwrap_err()
            .to_string()
            .contains(".jsonl"));
    }
}
