//! `--set target=value` overrides from the command line.
//!
//! An override edits the workflow as if the file had said it: `node.key=value`
//! sets a node's key (beating every default), `defaults.key=value` and
//! `defaults.<kind>.key=value` set a default (which a node's own value still
//! beats). Further segments reach inside tables: `merge.weights.induction=0.3`.

use std::collections::BTreeMap;

use crate::value::Value;

use super::error::SpecError;
use super::fields::toml_to_value;

/// One `--set` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// `node.key`, `node.key.sub`, `defaults.key` or `defaults.<kind>.key`.
    pub target: String,
    pub value: Value,
}

impl Override {
    /// Parses `target=value`. The value is read as a TOML value when it is one
    /// (`0.3`, `true`, `[1, 2]`, `"text"`), and taken as a plain string otherwise.
    pub fn parse(text: &str) -> Result<Override, SpecError> {
        let error = |message: String| SpecError::new(format!("--set {text}"), 0, 0, message);
        // An instance name holds `=` inside its brackets: `train[seed=1].lr=0.1`.
        let after_brackets = match (text.find('['), text.find('='), text.find(']')) {
            (Some(open), Some(equals), Some(close)) if open < equals && open < close => close,
            _ => 0,
        };
        let split = text[after_brackets..]
            .find('=')
            .map(|at| text.split_at(after_brackets + at))
            .map(|(target, rest)| (target, &rest[1..]));
        let Some((target, raw_value)) = split else {
            return Err(error(format!(
                "Invalid override `{text}`: expected `node.key=value`"
            )));
        };
        let target = target.trim();
        let segments = split_target(target);
        if segments.len() < 2 || segments.iter().any(|segment| segment.trim().is_empty()) {
            return Err(error(format!(
                "Invalid override target `{target}`: expected `node.key` or `defaults.key`"
            )));
        }
        let value = match raw_value.trim().parse::<toml_edit::Value>() {
            Ok(value) => toml_to_value(&value),
            Err(_) => Value::String(raw_value.to_owned()),
        };
        Ok(Override {
            target: segments
                .iter()
                .map(|segment| segment.trim())
                .collect::<Vec<_>>()
                .join("."),
            value,
        })
    }

    /// The override as the user could have typed it, naming it in errors.
    pub(crate) fn text(&self) -> String {
        match &self.value {
            Value::String(s) => format!("{}={s}", self.target),
            value => format!("{}={value}", self.target),
        }
    }

    pub(crate) fn segments(&self) -> Vec<&str> {
        split_target(&self.target)
    }
}

/// A target's dotted segments; an instance name's brackets are one segment with its dots:
/// `train[lr=0.1].env.X` is `train[lr=0.1]`, `env`, `X` (docs/architecture.md §18).
fn split_target(target: &str) -> Vec<&str> {
    let bracket = target.find('[');
    let dot = target.find('.');
    match (bracket, target.find(']')) {
        (Some(open), Some(close)) if open < close && dot.is_none_or(|dot| open < dot) => {
            let (first, rest) = target.split_at(close + 1);
            let mut segments = vec![first];
            match rest.strip_prefix('.') {
                Some(rest) => segments.extend(rest.split('.')),
                None if rest.is_empty() => {}
                // `a[b]c.d`: nothing names a node so; an empty segment makes it invalid.
                None => segments.push(""),
            }
            segments
        }
        _ => target.split('.').collect(),
    }
}

/// Sets `value` at `path` inside `existing` (a table, created when absent) and
/// returns the result. An empty path replaces `existing`. The error is how many
/// segments of `path` lead to the value that is not a table, and that value's type.
pub(crate) fn set_path(
    existing: Option<Value>,
    path: &[&str],
    value: Value,
) -> Result<Value, (usize, &'static str)> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(value);
    };
    let mut entries = match existing {
        None => BTreeMap::new(),
        Some(Value::Table(entries)) => entries,
        Some(other) => return Err((0, other.type_name())),
    };
    let inner = set_path(entries.remove(*first), rest, value)
        .map_err(|(depth, found)| (depth + 1, found))?;
    entries.insert((*first).to_owned(), inner);
    Ok(Value::Table(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_values_and_plain_strings() {
        let o = Override::parse("merge.weights.induction=0.3").unwrap();
        assert_eq!(o.target, "merge.weights.induction");
        assert_eq!(o.value, Value::Float(0.3));
        assert_eq!(Override::parse("a.b=3").unwrap().value, Value::Int(3));
        assert_eq!(
            Override::parse("a.b=true").unwrap().value,
            Value::Bool(true)
        );
        assert_eq!(
            Override::parse("a.b=python train.py").unwrap().value,
            Value::from("python train.py")
        );
        assert_eq!(
            Override::parse("a.b=\"quoted\"").unwrap().value,
            Value::from("quoted")
        );
        assert_eq!(
            Override::parse("a.b=[1, 2]").unwrap().value,
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(
            Override::parse("a.b=x=y").unwrap().value,
            Value::from("x=y")
        );
        assert_eq!(Override::parse("a.b=").unwrap().value, Value::from(""));
    }

    #[test]
    fn rejects_malformed_targets() {
        for text in ["nothing", "node=1", "a..b=1", ".a=1", "=1"] {
            let error = Override::parse(text).unwrap_err();
            assert_eq!(error.file.to_string_lossy(), format!("--set {text}"));
            assert_eq!(error.line, 0);
            assert!(error.message.starts_with("Invalid override"), "{error}");
        }
    }

    #[test]
    fn set_path_builds_tables() {
        let base = Value::Table([("a".to_owned(), Value::Int(1))].into_iter().collect());
        let out = set_path(Some(base), &["b", "c"], Value::Int(2)).unwrap();
        assert_eq!(out.to_string(), "{ a = 1, b = { c = 2 } }");
        assert_eq!(
            set_path(Some(Value::Int(1)), &["x"], Value::Int(2)),
            Err((0, "integer"))
        );
        let nested = Value::Table([("a".to_owned(), Value::Int(1))].into_iter().collect());
        assert_eq!(
            set_path(Some(nested), &["a", "b"], Value::Int(2)),
            Err((1, "integer"))
        );
        assert_eq!(set_path(None, &[], Value::Int(5)).unwrap(), Value::Int(5));
    }
}
