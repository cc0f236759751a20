//! Parameter values: the one dynamic value type of workflow specs and cache keys.
//!
//! A [`Value`] is what a TOML parameter becomes after parsing, and what a node kind
//! reads back. Its [`Value::write_canonical`] encoding is the stable byte form that
//! enters action keys (docs/architecture.md §3), so it is spelled out by hand here and never
//! goes through `std::hash::Hash`, `HashMap` order or float formatting. `Display`
//! is for humans only (plan reasons, error messages) and must never feed a key.

use std::collections::BTreeMap;
use std::fmt;

/// A parameter value as written in a workflow file (TOML data model, minus dates,
/// which are kept as strings).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Value>),
    Table(BTreeMap<String, Value>),
}

/// Tag bytes of the canonical encoding. Never renumber: existing cache keys depend
/// on them. A new variant takes a new tag.
mod tag {
    pub const BOOL: u8 = 0x01;
    pub const INT: u8 = 0x02;
    pub const FLOAT: u8 = 0x03;
    pub const STRING: u8 = 0x04;
    pub const LIST: u8 = 0x05;
    pub const TABLE: u8 = 0x06;
}

/// The one NaN bit pattern every NaN is encoded as (the quiet NaN Rust's `f64::NAN` uses).
const CANONICAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0000;

impl Value {
    /// The TOML name of this value's type, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::List(_) => "array",
            Value::Table(_) => "table",
        }
    }

    /// An empty table, the usual default of map-typed parameters.
    pub fn empty_table() -> Value {
        Value::Table(BTreeMap::new())
    }

    /// Appends the stable canonical encoding of this value to `out`.
    ///
    /// Layout: one tag byte, then the payload. Booleans are one byte (0 or 1);
    /// integers 8 little-endian bytes; floats their IEEE-754 bits as 8 little-endian
    /// bytes, with `-0.0` written as `0.0` and every NaN as one canonical NaN;
    /// strings a u64 LE byte length then UTF-8 bytes; lists a u64 LE count then the
    /// elements; tables a u64 LE count then (key as a string payload, value) pairs in
    /// sorted key order.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => {
                out.push(tag::BOOL);
                out.push(u8::from(*b));
            }
            Value::Int(i) => {
                out.push(tag::INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(tag::FLOAT);
                out.extend_from_slice(&canonical_float_bits(*f).to_le_bytes());
            }
            Value::String(s) => {
                out.push(tag::STRING);
                write_str(s, out);
            }
            Value::List(items) => {
                out.push(tag::LIST);
                write_len(items.len(), out);
                for item in items {
                    item.write_canonical(out);
                }
            }
            Value::Table(entries) => {
                out.push(tag::TABLE);
                write_len(entries.len(), out);
                for (key, value) in entries {
                    write_str(key, out);
                    value.write_canonical(out);
                }
            }
        }
    }

    /// The canonical encoding as a fresh buffer.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }

    /// Converts to JSON. Floats stay floats (`1.0` prints as `1.0`); NaN and the
    /// infinities, which JSON cannot hold, become the strings `"nan"`, `"inf"`, `"-inf"`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(number) => serde_json::Value::Number(number),
                None => serde_json::Value::String(non_finite_name(*f).to_owned()),
            },
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Table(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Converts from JSON, best effort: `null` becomes the string `"null"`, and
    /// integers beyond `i64` become floats.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::String("null".to_owned()),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(entries) => Value::Table(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), Value::from_json(value)))
                    .collect(),
            ),
        }
    }

    /// Looks up a dotted path (`"weights.induction"`) through nested tables; a
    /// segment that is a number indexes a list. The empty path is the value itself.
    pub fn get_path(&self, dotted: &str) -> Option<&Value> {
        if dotted.is_empty() {
            return Some(self);
        }
        let mut current = self;
        for segment in dotted.split('.') {
            current = match current {
                Value::Table(entries) => entries.get(segment)?,
                Value::List(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as a float; integers convert, since `lr = 1` means `lr = 1.0`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Table(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }
}

fn canonical_float_bits(f: f64) -> u64 {
    if f.is_nan() {
        CANONICAL_NAN_BITS
    } else if f == 0.0 {
        // Both 0.0 and -0.0 compare equal to 0.0; write the positive one.
        0
    } else {
        f.to_bits()
    }
}

fn write_len(len: usize, out: &mut Vec<u8>) {
    // usize always fits in u64 on the platforms Rust supports.
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    write_len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "nan"
    } else if f > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// TOML inline syntax, for messages: `0.001`, `"out"`, `[1, 2]`, `{ a = 1.0 }`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if !x.is_finite() => f.write_str(non_finite_name(*x)),
            // Debug keeps a `.0` on integral floats and switches to exponents for
            // very large or small magnitudes, both valid TOML.
            Value::Float(x) => write!(f, "{x:?}"),
            Value::String(s) => write_quoted(s, f),
            Value::List(items) => {
                f.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Table(entries) if entries.is_empty() => f.write_str("{}"),
            Value::Table(entries) => {
                f.write_str("{ ")?;
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write_key(key, f)?;
                    write!(f, " = {value}")?;
                }
                f.write_str(" }")
            }
        }
    }
}

fn write_key(key: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        f.write_str(key)
    } else {
        write_quoted(key, f)
    }
}

fn write_quoted(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, Value)]) -> Value {
        Value::Table(
            entries
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect(),
        )
    }

    fn sample() -> Value {
        table(&[
            ("lr", Value::Float(0.001)),
            ("steps", Value::Int(-42)),
            ("name", Value::from("qwen \"tiny\"")),
            ("on", Value::Bool(true)),
            (
                "weights",
                table(&[
                    ("induction", Value::Float(0.3)),
                    ("deduction", Value::Float(0.7)),
                ]),
            ),
            (
                "command",
                Value::List(vec![
                    Value::from("python"),
                    Value::from("-c"),
                    Value::Int(1),
                ]),
            ),
            ("empty", Value::empty_table()),
        ])
    }

    #[test]
    fn golden_canonical_digest() {
        // Pinned: if this changes, every cache key changes. Only update it together
        // with an engine schema version bump.
        let digest = blake3::hash(&sample().canonical_bytes());
        assert_eq!(
            digest.to_hex().as_str(),
            "da8c8da9bccaaba98d198cd1c9ac955287bf785def6082aee0dbc0bc34b91190"
        );
    }

    #[test]
    fn canonical_layout_is_explicit() {
        assert_eq!(Value::Bool(true).canonical_bytes(), vec![0x01, 1]);
        assert_eq!(
            Value::Int(1).canonical_bytes(),
            vec![0x02, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Value::from("ab").canonical_bytes(),
            vec![0x04, 2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']
        );
        let mut expected = vec![0x03];
        expected.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        assert_eq!(Value::Float(1.5).canonical_bytes(), expected);
    }

    #[test]
    fn canonical_normalizes_zero_and_nan() {
        assert_eq!(
            Value::Float(-0.0).canonical_bytes(),
            Value::Float(0.0).canonical_bytes()
        );
        let other_nan = f64::from_bits(0x7ff0_0000_0000_0001);
        assert!(other_nan.is_nan());
        assert_eq!(
            Value::Float(other_nan).canonical_bytes(),
            Value::Float(f64::NAN).canonical_bytes()
        );
        assert_eq!(
            Value::Float(-f64::NAN).canonical_bytes(),
            Value::Float(f64::NAN).canonical_bytes()
        );
    }

    #[test]
    fn canonical_distinguishes_types_and_nesting() {
        let pairs = [
            (Value::Int(1), Value::Float(1.0)),
            (Value::from("1"), Value::Int(1)),
            (
                Value::List(vec![Value::from("ab")]),
                Value::List(vec![Value::from("a"), Value::from("b")]),
            ),
            (
                table(&[("a", Value::from("bc"))]),
                table(&[("ab", Value::from("c"))]),
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(a.canonical_bytes(), b.canonical_bytes(), "{a} vs {b}");
        }
    }

    #[test]
    fn json_round_trip_keeps_floats() {
        let value = sample();
        let json = value.to_json();
        assert_eq!(Value::from_json(&json), value);
        assert_eq!(Value::Float(1.0).to_json().to_string(), "1.0");
        assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::json!("nan"));
        assert_eq!(
            Value::Float(f64::INFINITY).to_json(),
            serde_json::json!("inf")
        );
        assert_eq!(
            Value::Float(f64::NEG_INFINITY).to_json(),
            serde_json::json!("-inf")
        );
        assert_eq!(
            Value::from_json(&serde_json::Value::Null),
            Value::from("null")
        );
        assert_eq!(
            Value::from_json(&serde_json::json!(u64::MAX)),
            Value::Float(u64::MAX as f64)
        );
    }

    #[test]
    fn get_path_walks_tables_and_lists() {
        let value = sample();
        assert_eq!(
            value.get_path("weights.induction"),
            Some(&Value::Float(0.3))
        );
        assert_eq!(value.get_path("command.1"), Some(&Value::from("-c")));
        assert_eq!(value.get_path("weights.missing"), None);
        assert_eq!(value.get_path("lr.x"), None);
        assert_eq!(value.get_path("command.9"), None);
        assert_eq!(value.get_path(""), Some(&value));
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::Int(3).as_f64(), Some(3.0));
        assert_eq!(Value::Int(3).as_i64(), Some(3));
        assert_eq!(Value::Float(3.0).as_i64(), None);
        assert_eq!(Value::from("x").as_str(), Some("x"));
        assert_eq!(Value::Bool(false).as_bool(), Some(false));
        assert!(sample().as_table().is_some());
        assert!(Value::Int(1).as_list().is_none());
    }

    #[test]
    fn display_is_toml_like() {
        assert_eq!(Value::Float(0.001).to_string(), "0.001");
        assert_eq!(Value::Float(2.0).to_string(), "2.0");
        assert_eq!(Value::Float(f64::NAN).to_string(), "nan");
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_string(), "-inf");
        assert_eq!(Value::from("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(
            table(&[
                ("b", Value::List(vec![Value::Int(1), Value::Bool(false)])),
                ("a key", Value::empty_table()),
            ])
            .to_string(),
            r#"{ "a key" = {}, b = [1, false] }"#
        );
    }
}
