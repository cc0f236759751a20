//! Typed node parameters: getters that check types, and a final check that rejects keys
//! no getter read (a misspelled parameter is an error, not a silent default).

use std::collections::BTreeSet;

use super::protocol::WorkerError;

/// Reads typed parameters and rejects keys nobody read.
pub struct Params<'a> {
    values: serde_json::Map<String, serde_json::Value>,
    read: BTreeSet<&'a str>,
}

impl<'a> Params<'a> {
    /// The parameters of a spec (an object, or null for none).
    pub fn new(value: &serde_json::Value) -> Result<Self, WorkerError> {
        let values = match value {
            serde_json::Value::Object(map) => map.clone(),
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(WorkerError::bad_input(format!(
                    "params must be a table, got {other}"
                )))
            }
        };
        Ok(Self {
            values,
            read: BTreeSet::new(),
        })
    }

    fn get(&mut self, key: &'a str) -> Option<&serde_json::Value> {
        self.read.insert(key);
        self.values.get(key).filter(|v| !v.is_null())
    }

    fn wrong(key: &str, expected: &str, value: &serde_json::Value) -> WorkerError {
        WorkerError::bad_input(format!("`{key}` must be {expected}, got {value}"))
    }

    /// An optional string.
    pub fn string(&mut self, key: &'a str) -> Result<Option<String>, WorkerError> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Self::wrong(key, "a string", other)),
        }
    }

    /// An optional integer.
    pub fn int(&mut self, key: &'a str) -> Result<Option<i64>, WorkerError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::wrong(key, "an integer", value)),
        }
    }

    /// An optional number.
    pub fn float(&mut self, key: &'a str) -> Result<Option<f64>, WorkerError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| Self::wrong(key, "a number", value)),
        }
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &'a str) -> Result<Option<bool>, WorkerError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_bool()
                .map(Some)
                .ok_or_else(|| Self::wrong(key, "true or false", value)),
        }
    }

    /// An optional list of integers.
    pub fn int_list(&mut self, key: &'a str) -> Result<Option<Vec<i64>>, WorkerError> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| Self::wrong(key, "a list of integers", v))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(Self::wrong(key, "a list of integers", other)),
        }
    }

    /// An optional list of numbers.
    pub fn float_list(&mut self, key: &'a str) -> Result<Option<Vec<f64>>, WorkerError> {
        match self.get(key) {
            None => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| Self::wrong(key, "a list of numbers", v))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(Self::wrong(key, "a list of numbers", other)),
        }
    }

    /// `levels`: a list of positive integers.
    pub fn levels(&mut self) -> Result<Option<Vec<u32>>, WorkerError> {
        self.int_list("levels")?
            .map(|l| {
                l.into_iter()
                    .map(|v| positive("levels", v).map(|v| v as u32))
                    .collect()
            })
            .transpose()
    }

    /// `dtype`: a dtype name, float32 when absent.
    pub fn dtype(&mut self) -> Result<tch::Kind, WorkerError> {
        Ok(self
            .string("dtype")?
            .map(|d| crate::tree::parse_dtype(&d))
            .transpose()?
            .unwrap_or(tch::Kind::Float))
    }

    /// Fails on any key no getter asked for.
    pub fn finish(self) -> Result<(), WorkerError> {
        let unknown: Vec<&String> = self
            .values
            .keys()
            .filter(|key| !self.read.contains(key.as_str()))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(WorkerError::bad_input(format!(
            "unknown parameter(s) {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// `value`, when positive.
pub fn positive(key: &str, value: i64) -> Result<i64, WorkerError> {
    if value <= 0 {
        return Err(WorkerError::bad_input(format!(
            "`{key}` must be positive, got {value}"
        )));
    }
    Ok(value)
}
