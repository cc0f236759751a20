//! The paper's released data (arXiv 2505.10554): recognising its rows and mapping them to
//! the task families, so that `verify` re-solves them with the families' own solvers.
//!
//! The layout, as the release's generator scripts and reward code show it (facts read from
//! them; none of the release's rows are in this repository): each row carries `puzzle_text`
//! and the answer, `solution_text_format` (text) or `solution_text` (text, or an integer for
//! induction), and `difficulty`, either as top-level fields (the generators' JSONL) or inside
//! `reward_model.ground_truth` as a struct (the training parquet, whose `data_source` is a
//! name such as `logic_assignment` that the release's trainer routes to its logic reward).
//! Answers may end in a newline.
//!
//! The family is read off the answer, as the release's reward code dispatches: `True` /
//! `False` values are deduction, an integer is induction, `reachable` / `unreachable`
//! values are abduction. The puzzle text is then put into the family's own form:
//!
//! * deduction: `Below are some nested formulas:`, one `  - FORMULA` line each, `Please
//!   list the truth value of each variable`; the variables are those the answer lists (`A`,
//!   `B`, ... in order);
//! * induction: `Given the following sequence,`, the terms as a list (`[2, 4, ?]` or
//!   `['2', '4', '?']`), the question; the masked term may be inside the sequence (the
//!   release's level-2 "missing term" puzzles), which the induction verifier reads.
//! * abduction: the puzzle text goes to the abduction parser as it is (`Premises:` with
//!   numbered premises, `Known atoms:`, `Goals:`), under the `paper` layout (3 goals, 1
//!   reachable); a goal listed twice, or a text in another layout, is dropped as
//!   `unparseable` with the parser's reason.
//!
//! What cannot be put into the family's form is imported as it is, with the reason under
//! the [`UNREAD`] parameter, and `verify` drops it as `unparseable` with that reason.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::Instance;

/// The parameter that marks an instance imported from the release (value `paper`).
pub const SOURCE_LAYOUT: &str = "source_layout";
/// The parameter holding why an imported puzzle could not be put into its family's form.
pub const UNREAD: &str = "release_unread";

/// The struct holding a row's fields: `reward_model.ground_truth` when it is an object.
fn fields(row: &Value) -> Option<&serde_json::Map<String, Value>> {
    row.get("reward_model")
        .and_then(|reward| reward.get("ground_truth"))
        .and_then(Value::as_object)
}

/// Whether `row` is in the release's layout: a struct ground truth, or a top-level
/// `puzzle_text`.
pub fn is_release_row(row: &Value) -> bool {
    fields(row).is_some() || row.get("puzzle_text").is_some()
}

/// A field of the ground-truth struct, else of the row itself.
fn field<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    fields(row)
        .and_then(|fields| fields.get(name))
        .filter(|value| !value.is_null())
        .or_else(|| row.get(name).filter(|value| !value.is_null()))
}

/// Text or an integer, as text.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) if number.is_i64() => Some(number.to_string()),
        _ => None,
    }
}

/// The family an answer belongs to, as the release's reward code dispatches on it.
fn family_of(answer: &str) -> Option<&'static str> {
    let lower = answer.to_lowercase();
    let integer = answer.trim().strip_prefix('-').unwrap_or(answer.trim());
    if lower.contains("true") || lower.contains("false") {
        Some("deduction")
    } else if !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) {
        Some("induction")
    } else if lower.contains("reachable") {
        Some("abduction")
    } else {
        None
    }
}

/// A release deduction puzzle in the deduction family's form, over `variables` variables.
fn deduction_puzzle(text: &str, variables: usize) -> Result<String, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Err("the deduction puzzle text is empty".into());
    };
    if *first != "Below are some nested formulas:"
        || last.trim_end_matches('.') != "Please list the truth value of each variable"
    {
        return Err("the deduction puzzle text is not `Below are some nested formulas:` ... `Please list the truth value of each variable`".into());
    }
    let formulas = lines[1..lines.len() - 1]
        .iter()
        .map(|line| line.strip_prefix("- ").map(str::trim))
        .collect::<Option<Vec<&str>>>()
        .ok_or("a deduction formula line does not start with `- `")?;
    if formulas.is_empty() || !(1..=26).contains(&variables) {
        return Err(format!(
            "{} formulas over {variables} variables",
            formulas.len()
        ));
    }
    Ok(crate::deduction::puzzle_from_formulas(variables, &formulas))
}

/// A release induction puzzle in the induction family's form, and its length (the
/// question mark included). The masked term may be inside the sequence (the release's
/// "missing term" puzzles), not first.
fn induction_puzzle(text: &str) -> Result<(String, usize), String> {
    let list = text
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .ok_or("the induction puzzle text has no `[...]` sequence")?;
    let terms = list
        .split(',')
        .map(|term| term.trim().trim_matches(|c| c == '\'' || c == '"'))
        .map(|term| match term {
            "?" => Ok(None),
            _ => term.parse::<i64>().map(Some),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "an induction term is neither an integer nor `?`".to_string())?;
    match terms.iter().position(Option::is_none) {
        Some(0) => Err("the induction sequence masks its first term".into()),
        Some(_) if terms.iter().filter(|t| t.is_none()).count() == 1 => {
            Ok((crate::induction::render_masked(&terms), terms.len()))
        }
        _ => Err("the induction sequence does not mask exactly one term with `?`".into()),
    }
}

/// Maps a release row (see [`is_release_row`]) to an instance of its family. `Err` says
/// what the row lacks.
pub fn instance(row: &Value, index: usize) -> Result<Instance, String> {
    let puzzle = field(row, "puzzle_text")
        .and_then(Value::as_str)
        .ok_or("no `puzzle_text` (in `reward_model.ground_truth` or the row)")?;
    let raw_answer = field(row, "solution_text_format")
        .or_else(|| field(row, "solution_text"))
        .and_then(text_of)
        .ok_or("no `solution_text_format` or `solution_text` (text or an integer)")?;
    let family = family_of(&raw_answer).ok_or_else(|| {
        format!("the answer `{raw_answer}` is neither True/False values, an integer nor reachable/unreachable values")
    })?;
    let level = match field(row, "difficulty") {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .ok_or("no `difficulty` level")? as u32;
    let answer = raw_answer.trim_end().to_string();
    let mut params = BTreeMap::new();
    params.insert("source_index".to_string(), json!(index));
    params.insert(SOURCE_LAYOUT.to_string(), json!("paper"));
    if answer != raw_answer {
        params.insert("answer_trimmed".to_string(), json!(true));
    }
    if let Some(source) = row.get("data_source").and_then(Value::as_str) {
        params.insert("data_source".to_string(), json!(source));
    }
    let converted = match family {
        "deduction" => {
            let variables = answer.lines().filter(|l| !l.trim().is_empty()).count();
            deduction_puzzle(puzzle, variables)
        }
        "induction" => induction_puzzle(puzzle).map(|(text, length)| {
            params.insert("length".to_string(), json!(length));
            text
        }),
        // Read as it is, under the release's layout (3 goals, 1 reachable).
        _ => {
            params.insert("layout".to_string(), json!("paper"));
            Ok(puzzle.to_string())
        }
    };
    let puzzle = match converted {
        Ok(text) => text,
        Err(why) => {
            params.insert(UNREAD.to_string(), json!(why));
            puzzle.to_string()
        }
    };
    Ok(Instance {
        task: family.to_string(),
        level,
        puzzle,
        answer,
        params,
        solution: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::arrow::ArrowWriter;
    use serde_json::{json, Value};

    use super::*;
    use crate::{family, Options, TaskRng};

    /// The fixture rows, in the release's layout, made here from peirce's own instances
    /// and hand-made cases (no row of the release): `(reward_model.ground_truth fields,
    /// the verify outcome expected)`. Answers end in a newline, as the release's do.
    pub(crate) fn fixture_rows() -> Vec<(Value, &'static str)> {
        let options = Options::default();
        let deduction = |index| {
            let mut rng = TaskRng::for_instance(5, "deduction", 1, index);
            let instance = family("deduction").unwrap().generate(1, &mut rng, &options);
            let formulas: Vec<String> = instance
                .puzzle
                .lines()
                .filter_map(|line| Some(line.strip_prefix('(')?.split_once(") ")?.1.to_string()))
                .collect();
            let mut text = String::from("Below are some nested formulas:\n");
            for formula in formulas {
                text.push_str(&format!("  - {formula}\n"));
            }
            text.push_str("Please list the truth value of each variable\n");
            (text, format!("{}\n", instance.answer))
        };
        let induction = |index, quoted: bool| {
            let mut rng = TaskRng::for_instance(5, "induction", 2, index);
            let instance = family("induction").unwrap().generate(2, &mut rng, &options);
            let terms: Vec<String> = instance
                .puzzle
                .split("\n\n")
                .nth(1)
                .unwrap()
                .split(", ")
                .map(|t| {
                    if quoted {
                        format!("'{t}'")
                    } else {
                        t.to_string()
                    }
                })
                .collect();
            let text = format!(
                "Given the following sequence,\n[{}]\nWhat is the value at the question mark?",
                terms.join(", ")
            );
            (text, instance.answer.parse::<i64>().unwrap())
        };
        let row = |puzzle: String, answer: Value, difficulty: u32, id: &str| {
            json!({
                "problem_id": id,
                "difficulty": difficulty,
                "puzzle_text": puzzle,
                "solution_text_format": answer,
            })
        };
        let (d0, a0) = deduction(0);
        let (d1, a1) = deduction(1);
        let (i0, n0) = induction(0, false);
        let (i1, n1) = induction(1, true);
        // peirce's own abduction puzzle, in the layout the release's answers describe.
        let (abduction, goals) = {
            let paper = Options {
                layout: Some("paper".into()),
                with_solution: false,
            };
            let mut rng = TaskRng::for_instance(5, "abduction", 1, 0);
            let instance = family("abduction").unwrap().generate(1, &mut rng, &paper);
            (instance.puzzle, format!("{}\n", instance.answer))
        };
        vec![
            (row(d0.clone(), json!(a0.clone()), 1, "1"), "kept"),
            (row(d1, json!(a1), 1, "2"), "kept"),
            // The same puzzle again.
            (row(d0, json!(a0), 1, "3"), "duplicate"),
            // Several models satisfy it (the release does not require one).
            (
                row(
                    "Below are some nested formulas:\n  - (A ∨ B)\n  - (C → D)\n  - ¬A\nPlease list the truth value of each variable\n".into(),
                    json!("(1) A is False\n(2) B is True\n(3) C is False\n(4) D is False\n"),
                    1,
                    "4",
                ),
                "ambiguous",
            ),
            (row(i0, json!(n0), 2, "5"), "kept"),
            (row(i1, json!(n1), 2, "6"), "kept"),
            // A "missing term" puzzle: the question mark inside the sequence.
            (
                row(
                    "Given the following sequence,\n[3, 6, ?, 12, 15, 18]\nWhat is the value at the question mark?".into(),
                    json!(9),
                    2,
                    "7",
                ),
                "kept",
            ),
            // The newer generator's 6-step cycle, its masked step never shown.
            (
                row(
                    "Given the following sequence,\n[1, 2, 4, 7, 6, 18, 20, ?]\nWhat is the value at the question mark?".into(),
                    json!(80),
                    1,
                    "8",
                ),
                "uninferable",
            ),
            // Abduction, with a duplicated goal.
            (
                row(
                    "Premises:\n1. (A AND B) => C\n2. (C) => D\nKnown atoms: A, B\nGoals: D, E, D\n".into(),
                    json!("(1) D is reachable\n(2) E is unreachable\n(3) D is reachable\n"),
                    1,
                    "9",
                ),
                "unparseable",
            ),
            (row(abduction, json!(goals), 1, "10"), "kept"),
        ]
    }

    /// The rows as the release's training parquet has them: `data_source`, a `prompt`
    /// message list, `ability`, `reward_model {style, ground_truth {...}}` with the fields
    /// as a struct, `extra_info {index, split}`.
    pub(crate) fn write_release_parquet(path: &Path, rows: &[Value]) {
        let text_field = |name: &str| Field::new(name, DataType::Utf8, true);
        let truth_fields = Fields::from(vec![
            text_field("problem_id"),
            Field::new("difficulty", DataType::Int64, true),
            text_field("puzzle_text"),
            text_field("solution_text_format"),
        ]);
        let strings = |key: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(|row| {
                match &row[key] {
                    Value::String(text) => Some(text.clone()),
                    Value::Number(number) => Some(number.to_string()),
                    _ => None,
                }
            })))
        };
        let truth = StructArray::new(
            truth_fields.clone(),
            vec![
                strings("problem_id"),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|row| row["difficulty"].as_i64().unwrap()),
                )),
                strings("puzzle_text"),
                strings("solution_text_format"),
            ],
            None,
        );
        let reward_fields = Fields::from(vec![
            text_field("style"),
            Field::new("ground_truth", DataType::Struct(truth_fields), true),
        ]);
        let reward = StructArray::new(
            reward_fields.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "rule"))),
                Arc::new(truth),
            ],
            None,
        );
        let message_fields = Fields::from(vec![text_field("content"), text_field("role")]);
        let mut prompts = ListBuilder::new(StructBuilder::from_fields(message_fields, rows.len()));
        for row in rows {
            let messages = prompts.values();
            messages
                .field_builder::<StringBuilder>(0)
                .unwrap()
                .append_value(row["puzzle_text"].as_str().unwrap());
            messages
                .field_builder::<StringBuilder>(1)
                .unwrap()
                .append_value("user");
            messages.append(true);
            prompts.append(true);
        }
        let prompts = prompts.finish();
        let extra_fields = Fields::from(vec![
            Field::new("index", DataType::Int64, true),
            text_field("split"),
        ]);
        let extra = StructArray::new(
            extra_fields.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "train"))),
            ],
            None,
        );
        let schema = Arc::new(Schema::new(vec![
            text_field("data_source"),
            Field::new("prompt", prompts.data_type().clone(), true),
            text_field("ability"),
            Field::new("reward_model", DataType::Struct(reward_fields), true),
            Field::new("extra_info", DataType::Struct(extra_fields), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|_| "logic_assignment"),
                )),
                Arc::new(prompts),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "logic"))),
                Arc::new(reward),
                Arc::new(extra),
            ],
        )
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// What `verify` does with an instance, short of duplicates: `kept` or the reason.
    fn outcome(instance: &Instance) -> &'static str {
        if instance.params.contains_key(UNREAD) {
            return "unparseable";
        }
        match family(&instance.task).unwrap().verify(instance) {
            Ok(()) => "kept",
            Err(error) => error.reason(),
        }
    }

    fn check_imported(instances: &[Instance], expected: &[(Value, &'static str)]) {
        assert_eq!(instances.len(), expected.len());
        let mut seen = std::collections::BTreeSet::new();
        for (instance, (row, outcome_expected)) in instances.iter().zip(expected) {
            let fresh = seen.insert(instance.puzzle.clone());
            let got = if fresh {
                outcome(instance)
            } else {
                "duplicate"
            };
            assert_eq!(got, *outcome_expected, "{row}: {instance:#?}");
            assert_eq!(instance.params[SOURCE_LAYOUT], "paper");
            assert!(!instance.answer.ends_with('\n'));
            assert_eq!(instance.level, row["difficulty"].as_u64().unwrap() as u32);
        }
        let tasks: Vec<&str> = instances.iter().map(|i| i.task.as_str()).collect();
        assert_eq!(tasks[..4], ["deduction"; 4]);
        assert_eq!(tasks[4..8], ["induction"; 4]);
        assert_eq!(tasks[8..], ["abduction"; 2]);
        let Err(duplicated) = family("abduction").unwrap().verify(&instances[8]) else {
            panic!("a duplicated goal verifies");
        };
        assert!(
            duplicated.to_string().contains("listed twice"),
            "{duplicated}"
        );
    }

    #[test]
    fn release_rows_import_into_the_families_from_parquet_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = fixture_rows();
        let rows: Vec<Value> = fixtures.iter().map(|(row, _)| row.clone()).collect();
        let parquet = dir.path().join("train.parquet");
        write_release_parquet(&parquet, &rows);
        let jsonl = dir.path().join("train.jsonl");
        let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
        std::fs::write(&jsonl, lines.join("\n")).unwrap();
        for path in [parquet, jsonl] {
            let instances = crate::import::import(&path, &crate::import::tests::options()).unwrap();
            check_imported(&instances, &fixtures);
        }
        let from_parquet = crate::import::import(
            &dir.path().join("train.parquet"),
            &crate::import::tests::options(),
        )
        .unwrap();
        assert_eq!(from_parquet[0].params["data_source"], "logic_assignment");
    }

    #[test]
    fn bad_release_rows_are_named() {
        for (row, expected) in [
            (
                json!({"puzzle_text": "x", "difficulty": 1}),
                "solution_text",
            ),
            (
                json!({"puzzle_text": "x", "solution_text": "maybe", "difficulty": 1}),
                "neither",
            ),
            (
                json!({"puzzle_text": "x", "solution_text": 5}),
                "difficulty",
            ),
            (
                json!({"reward_model": {"ground_truth": {"solution_text": 5}}}),
                "puzzle_text",
            ),
        ] {
            let error = instance(&row, 0).unwrap_err();
            assert!(error.contains(expected), "{row}: {error}");
        }
    }
}
