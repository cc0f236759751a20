//! Conversion of TOML items into [`Value`]s, and the parsing of the generic node
//! fields (`executor`, `resources`, `retries`, `salt`, `timeout`) that every kind shares.
//!
//! Each parser returns the problem as text; the loader adds the location.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::value::Value;

use super::model::{Executor, Resources};

/// Node keys that are not kind parameters and may appear in `[defaults]`.
pub(crate) const GENERIC_KEYS: [&str; 5] = ["executor", "resources", "retries", "salt", "timeout"];

/// Keys of a `resources` table.
pub(crate) const RESOURCE_KEYS: [&str; 3] = ["cpus", "gpus", "memory"];

/// Converts a TOML item; `None` for the empty item. Dates stay strings.
pub(crate) fn item_to_value(item: &toml_edit::Item) -> Option<Value> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(value) => Some(toml_to_value(value)),
        toml_edit::Item::Table(table) => Some(Value::Table(
            table
                .iter()
                .filter_map(|(key, item)| Some((key.to_owned(), item_to_value(item)?)))
                .collect(),
        )),
        toml_edit::Item::ArrayOfTables(array) => Some(Value::List(
            array
                .iter()
                .filter_map(|table| item_to_value(&toml_edit::Item::Table(table.clone())))
                .collect(),
        )),
    }
}

pub(crate) fn toml_to_value(value: &toml_edit::Value) -> Value {
    match value {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Int(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(array) => Value::List(array.iter().map(toml_to_value).collect()),
        toml_edit::Value::InlineTable(table) => Value::Table(
            table
                .iter()
                .map(|(key, value)| (key.to_owned(), toml_to_value(value)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

fn wrong_type(expected: &str, value: &Value) -> String {
    format!("expected {expected}, found {}", value.type_name())
}

/// `retries`: an integer >= 0.
pub(crate) fn parse_retries(value: &Value) -> Result<u32, String> {
    match value {
        Value::Int(i) => u32::try_from(*i)
            .map_err(|_| format!("must be an integer between 0 and {}, found {i}", u32::MAX)),
        _ => Err(wrong_type("integer", value)),
    }
}

/// `executor`: `"local"` or `"slurm"` (docs/architecture.md §21).
pub(crate) fn parse_executor(value: &Value) -> Result<Executor, String> {
    let text = value.as_str().ok_or_else(|| wrong_type("string", value))?;
    Executor::parse(text)
}

/// `salt`: any string.
pub(crate) fn parse_salt(value: &Value) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| wrong_type("string", value))
}

/// `timeout`: integer seconds, or a string such as `"30s"`, `"10m"`, `"2h"`, `"1d"`.
pub(crate) fn parse_timeout(value: &Value) -> Result<Duration, String> {
    let seconds = match value {
        Value::Int(i) => u64::try_from(*i).map_err(|_| format!("must be positive, found {i}"))?,
        Value::String(text) => parse_duration_text(text)?,
        _ => return Err(wrong_type("string or integer", value)),
    };
    if seconds == 0 {
        return Err("must be positive, found 0".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_duration_text(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!("`{text}` is not a duration: use seconds or a number with `s`, `m`, `h` or `d`, such as `30m`")
    };
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((index, c)) if c.is_ascii_alphabetic() => (&trimmed[..index], Some(c)),
        _ => (trimmed, None),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let scale = match unit {
        None | Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some(_) => return Err(invalid()),
    };
    number.checked_mul(scale).ok_or_else(invalid)
}

/// Builds resources from the `resources.<key>` entries that apply to a node.
/// Unset keys keep their defaults (1 CPU, no GPU, no memory limit).
pub(crate) fn apply_resource(
    resources: &mut Resources,
    key: &str,
    value: &Value,
) -> Result<(), String> {
    match key {
        "cpus" => resources.cpus = parse_cpus(value)?,
        "gpus" => resources.gpu_millis = parse_gpus(value)?,
        "memory" => resources.memory_bytes = Some(parse_memory(value)?),
        _ => return Err(format!("unknown resource `{key}`")),
    }
    Ok(())
}

fn parse_cpus(value: &Value) -> Result<u32, String> {
    match value {
        Value::Int(i) if *i >= 1 => {
            u32::try_from(*i).map_err(|_| format!("must be at most {}, found {i}", u32::MAX))
        }
        Value::Int(i) => Err(format!("must be at least 1, found {i}")),
        _ => Err(wrong_type("integer", value)),
    }
}

/// GPUs as thousandths: whole numbers of GPUs, or a share (below 1) of one GPU.
fn parse_gpus(value: &Value) -> Result<u32, String> {
    let too_many = || format!("must be at most {}, found {value}", u32::MAX / 1000);
    match value {
        Value::Int(i) if *i < 0 => Err(format!("must be at least 0, found {i}")),
        Value::Int(i) => u32::try_from(*i)
            .ok()
            .and_then(|gpus| gpus.checked_mul(1000))
            .ok_or_else(too_many),
        Value::Float(f) if !f.is_finite() || *f < 0.0 => {
            Err(format!("must be at least 0, found {value}"))
        }
        Value::Float(f) if *f >= 1.0 => {
            if f.fract() != 0.0 {
                return Err(format!(
                    "must be a whole number of GPUs or a share below 1, found {value}"
                ));
            }
            if *f > f64::from(u32::MAX / 1000) {
                return Err(too_many());
            }
            // Integral and in range, so the conversion is exact.
            Ok((*f as u32) * 1000)
        }
        Value::Float(f) => {
            let millis = (f * 1000.0).round();
            if (f * 1000.0 - millis).abs() > 1e-6 || (millis == 0.0 && *f > 0.0) {
                return Err(format!(
                    "a GPU share must be a multiple of 0.001, found {value}"
                ));
            }
            // In 0..1000, so the conversion is exact.
            Ok(millis as u32)
        }
        _ => Err(wrong_type("integer or float", value)),
    }
}

/// Memory: integer bytes, or a string of digits with an optional binary suffix
/// `K`, `M`, `G` or `T` (`"16G"` is 16 GiB).
pub(crate) fn parse_memory(value: &Value) -> Result<u64, String> {
    match value {
        Value::Int(i) => u64::try_from(*i).map_err(|_| format!("must be at least 0, found {i}")),
        Value::String(text) => {
            let invalid = || {
                format!(
                    "`{text}` is not a size: use bytes or a number with `K`, `M`, `G` or `T`, such as `16G`"
                )
            };
            let trimmed = text.trim();
            let (digits, shift) = match trimmed.char_indices().last() {
                Some((index, c)) if c.is_ascii_alphabetic() => {
                    let shift = match c.to_ascii_uppercase() {
                        'K' => 10,
                        'M' => 20,
                        'G' => 30,
                        'T' => 40,
                        _ => return Err(invalid()),
                    };
                    (&trimmed[..index], shift)
                }
                _ => (trimmed, 0),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            let number: u64 = digits.parse().map_err(|_| invalid())?;
            number.checked_mul(1u64 << shift).ok_or_else(invalid)
        }
        _ => Err(wrong_type("string or integer", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let parse = |value: Value| parse_timeout(&value).map(|d| d.as_secs());
        assert_eq!(parse(Value::from("30s")), Ok(30));
        assert_eq!(parse(Value::from("10m")), Ok(600));
        assert_eq!(parse(Value::from("2h")), Ok(7200));
        assert_eq!(parse(Value::from("1d")), Ok(86_400));
        assert_eq!(parse(Value::from("45")), Ok(45));
        assert_eq!(parse(Value::Int(90)), Ok(90));
        assert!(parse(Value::Int(0)).is_err());
        assert!(parse(Value::Int(-5)).is_err());
        assert!(parse(Value::from("10 minutes")).is_err());
        assert!(parse(Value::from("h")).is_err());
        assert!(parse(Value::from("é")).is_err());
        assert!(parse(Value::from("99999999999999999999d")).is_err());
        assert!(parse(Value::Float(1.5)).is_err());
    }

    #[test]
    fn resources() {
        let mut resources = Resources::default();
        apply_resource(&mut resources, "cpus", &Value::Int(4)).unwrap();
        apply_resource(&mut resources, "gpus", &Value::Float(0.5)).unwrap();
        apply_resource(&mut resources, "memory", &Value::from("16G")).unwrap();
        assert_eq!(
            resources,
            Resources {
                cpus: 4,
                gpu_millis: 500,
                memory_bytes: Some(16 << 30),
            }
        );
        let gpus = |value: Value| parse_gpus(&value);
        assert_eq!(gpus(Value::Int(2)), Ok(2000));
        assert_eq!(gpus(Value::Float(2.0)), Ok(2000));
        assert_eq!(gpus(Value::Float(0.25)), Ok(250));
        assert_eq!(gpus(Value::Int(0)), Ok(0));
        assert!(gpus(Value::Float(1.5)).is_err());
        assert!(gpus(Value::Float(-0.5)).is_err());
        assert!(gpus(Value::Float(f64::NAN)).is_err());
        assert!(gpus(Value::Float(0.0001)).is_err());
        assert!(gpus(Value::Int(i64::MAX)).is_err());
        assert!(gpus(Value::Float(1e300)).is_err());
        assert!(parse_cpus(&Value::Int(0)).is_err());
        assert!(parse_cpus(&Value::Int(i64::MAX)).is_err());
        assert_eq!(parse_memory(&Value::Int(1024)), Ok(1024));
        assert_eq!(parse_memory(&Value::from("512m")), Ok(512 << 20));
        assert_eq!(parse_memory(&Value::from("2T")), Ok(2 << 40));
        assert_eq!(parse_memory(&Value::from("100")), Ok(100));
        assert!(parse_memory(&Value::from("16GB")).is_err());
        assert!(parse_memory(&Value::from("G")).is_err());
        assert!(parse_memory(&Value::from("99999999999T")).is_err());
        assert!(parse_memory(&Value::Int(-1)).is_err());
        assert!(apply_resource(&mut resources, "gpu", &Value::Int(1)).is_err());
    }

    #[test]
    fn retries_and_salt() {
        assert_eq!(parse_retries(&Value::Int(3)), Ok(3));
        assert!(parse_retries(&Value::Int(-1)).is_err());
        assert!(parse_retries(&Value::from("3")).is_err());
        assert_eq!(parse_salt(&Value::from("v2")), Ok("v2".to_owned()));
        assert!(parse_salt(&Value::Int(2)).is_err());
    }

    #[test]
    fn converts_toml() {
        let doc = toml_edit::Document::parse(
            "a = 1\nb = 1.5\nc = [\"x\", true]\nd = { e = 1979-05-27 }\n[t]\nf = 2\n[[arr]]\ng = 1\n",
        )
        .unwrap();
        let value = item_to_value(doc.as_item()).unwrap();
        assert_eq!(value.get_path("a"), Some(&Value::Int(1)));
        assert_eq!(value.get_path("b"), Some(&Value::Float(1.5)));
        assert_eq!(value.get_path("c.1"), Some(&Value::Bool(true)));
        assert_eq!(value.get_path("d.e"), Some(&Value::from("1979-05-27")));
        assert_eq!(value.get_path("t.f"), Some(&Value::Int(2)));
        assert_eq!(value.get_path("arr.0.g"), Some(&Value::Int(1)));
    }
}
