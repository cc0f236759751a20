//! Action keys: the cache key of one node execution.
//!
//! `key = blake3(canonical(schema, kind, kind version, params, sorted inputs, salt))`, with an
//! explicit byte encoding (see [`crate::value::Value::write_canonical`]) so that keys are
//! stable across machines, Rust versions and library upgrades. Inputs enter by the digest of
//! the tree they hold, never by path or run: a rerun that produces identical bytes stops
//! invalidation there (early cutoff). Retries, timeouts, devices and log levels stay out.

use std::collections::BTreeMap;

use peirce_store::{ActionKey, KeyComponents, TreeDigest};

use crate::value::Value;

/// The version of the key schema itself. Bumping it invalidates every cache. 2: store
/// schema 2 (binary tree encodings, so every tree digest changed), so that no key of the
/// new store can meet a record an older peirce wrote.
pub const SCHEMA_VERSION: u32 = 2;

/// Everything a key is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInput<'a> {
    /// Node kind.
    pub kind: &'a str,
    /// The kind's `VERSION`.
    pub kind_version: u32,
    /// Resolved parameters.
    pub params: &'a BTreeMap<String, Value>,
    /// Input name to tree digest.
    pub inputs: &'a BTreeMap<String, TreeDigest>,
    /// The node's salt.
    pub salt: &'a str,
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl KeyInput<'_> {
    /// The canonical byte encoding the key hashes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"peirce-action\0");
        out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
        write_str(&mut out, self.kind);
        out.extend_from_slice(&self.kind_version.to_le_bytes());
        Value::Table(self.params.clone()).write_canonical(&mut out);
        out.extend_from_slice(&(self.inputs.len() as u64).to_le_bytes());
        for (name, digest) in self.inputs {
            write_str(&mut out, name);
            out.extend_from_slice(digest.as_bytes());
        }
        write_str(&mut out, self.salt);
        out
    }

    /// The action key.
    pub fn key(&self) -> ActionKey {
        ActionKey::of(&self.canonical_bytes())
    }

    /// The components kept in the action record, for explaining later misses.
    pub fn components(&self) -> KeyComponents {
        KeyComponents {
            schema: SCHEMA_VERSION,
            kind: self.kind.to_string(),
            kind_version: self.kind_version,
            params: Value::Table(self.params.clone()).to_json(),
            inputs: self.inputs.clone(),
            salt: self.salt.to_string(),
        }
    }
}

/// Checks that a record's key components hash to `key`, the key it is stored under (for
/// [`peirce_store::Store::set_key_check`]): that binds a record to its key, so a record
/// copied from another action is refused (docs/architecture.md §15). The error says what
/// the components hash to instead, or why they cannot be derived.
///
/// Parameters come back from their JSON form. JSON has no non-finite floats, which
/// [`Value::to_json`] writes as the strings `NaN`, `inf` and `-inf`; parameters holding such
/// strings are derived both ways, and either reading hashing to `key` binds the record (a
/// forger still needs components that hash to the key).
pub fn check_components(key: ActionKey, components: &KeyComponents) -> Result<(), String> {
    if components.schema != SCHEMA_VERSION {
        return Err(format!(
            "its key components are of key schema {}, and this peirce derives schema \
             {SCHEMA_VERSION}",
            components.schema
        ));
    }
    let serde_json::Value::Object(json) = &components.params else {
        return Err("its parameters are not a table".into());
    };
    let derive = |params: &BTreeMap<String, Value>| {
        KeyInput {
            kind: &components.kind,
            kind_version: components.kind_version,
            params,
            inputs: &components.inputs,
            salt: &components.salt,
        }
        .key()
    };
    let params: BTreeMap<String, Value> = json
        .iter()
        .map(|(name, value)| (name.clone(), Value::from_json(value)))
        .collect();
    let derived = derive(&params);
    if derived == key {
        return Ok(());
    }
    let mut non_finite = false;
    let floats: BTreeMap<String, Value> = params
        .iter()
        .map(|(name, value)| (name.clone(), non_finite_floats(value, &mut non_finite)))
        .collect();
    if non_finite && derive(&floats) == key {
        return Ok(());
    }
    Err(format!(
        "its key components hash to `{derived}`, not to the key it is stored under (a forged \
         or misplaced record)"
    ))
}

/// `value` with the strings [`Value::to_json`] writes for non-finite floats read as floats.
fn non_finite_floats(value: &Value, found: &mut bool) -> Value {
    match value {
        Value::String(text) => {
            let float = match text.as_str() {
                "NaN" => f64::NAN,
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                _ => return value.clone(),
            };
            *found = true;
            Value::Float(float)
        }
        Value::List(items) => Value::List(
            items
                .iter()
                .map(|item| non_finite_floats(item, found))
                .collect(),
        ),
        Value::Table(entries) => Value::Table(
            entries
                .iter()
                .map(|(name, item)| (name.clone(), non_finite_floats(item, found)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, Value> {
        let mut weights = BTreeMap::new();
        weights.insert("deduction".to_string(), Value::Float(1.0));
        weights.insert("induction".to_string(), Value::Float(0.2));
        let mut params = BTreeMap::new();
        params.insert("command".to_string(), Value::String("echo hi".into()));
        params.insert("seed".to_string(), Value::Int(7));
        params.insert("weights".to_string(), Value::Table(weights));
        params
    }

    fn inputs() -> BTreeMap<String, TreeDigest> {
        let mut inputs = BTreeMap::new();
        inputs.insert("data".to_string(), TreeDigest::of(b"data"));
        inputs
    }

    fn key_of(kind: &str, version: u32, params: &BTreeMap<String, Value>, salt: &str) -> ActionKey {
        let inputs = inputs();
        KeyInput {
            kind,
            kind_version: version,
            params,
            inputs: &inputs,
            salt,
        }
        .key()
    }

    /// Pinned keys: if one of these changes, every user's cache is invalidated. Change them
    /// only together with [`SCHEMA_VERSION`] or a kind's version, on purpose.
    #[test]
    fn golden_keys() {
        let empty = BTreeMap::new();
        let no_inputs = BTreeMap::new();
        let bare = KeyInput {
            kind: "exec",
            kind_version: 1,
            params: &empty,
            inputs: &no_inputs,
            salt: "",
        };
        assert_eq!(
            bare.key().to_string(),
            "blake3:991804bcb91b86b1a731d4ea0289528c832927bff6ae471efa2441e97530d1c2"
        );
        assert_eq!(
            key_of("merge", 3, &params(), "").to_string(),
            "blake3:3b1776fe4d1910d79d16809406d089fbb1953a2791af79855363955bc98f91fa"
        );
        assert_eq!(
            key_of("merge", 3, &params(), "v2").to_string(),
            "blake3:3436c63762419c346899a17a4e2d8cf15d21873baf80a46073f7575599a1517f"
        );
    }

    #[test]
    fn every_component_matters() {
        let base = key_of("merge", 3, &params(), "");
        assert_ne!(base, key_of("exec", 3, &params(), ""));
        assert_ne!(base, key_of("merge", 4, &params(), ""));
        assert_ne!(base, key_of("merge", 3, &params(), "salt"));
        let mut changed = params();
        changed.insert("seed".to_string(), Value::Int(8));
        assert_ne!(base, key_of("merge", 3, &changed, ""));
        let mut other_inputs = inputs();
        other_inputs.insert("data".to_string(), TreeDigest::of(b"other"));
        let params = params();
        let other = KeyInput {
            kind: "merge",
            kind_version: 3,
            params: &params,
            inputs: &other_inputs,
            salt: "",
        };
        assert_ne!(base, other.key());
    }

    #[test]
    fn components_bind_a_record_to_its_key() {
        let mut params = params();
        params.insert("lr".to_string(), Value::Float(3.0000000000000004e-5));
        params.insert("floor".to_string(), Value::Float(f64::NEG_INFINITY));
        let inputs = inputs();
        let input = KeyInput {
            kind: "merge",
            kind_version: 3,
            params: &params,
            inputs: &inputs,
            salt: "",
        };
        // Through the record's stored form: parameters as JSON text.
        let mut components = input.components();
        let text = components.params.to_string();
        components.params = serde_json::from_str(&text).unwrap();
        assert_eq!(check_components(input.key(), &components), Ok(()));
        let other = key_of("exec", 1, &params, "");
        let error = check_components(other, &components).unwrap_err();
        assert!(
            error.contains("not to the key it is stored under"),
            "{error}"
        );
        components.salt = "v2".into();
        assert!(check_components(input.key(), &components).is_err());
    }

    #[test]
    fn names_and_values_do_not_run_together() {
        // ("ab", "c") and ("a", "bc") must not collide: strings are length-prefixed.
        let mut one = BTreeMap::new();
        one.insert("ab".to_string(), Value::String("c".into()));
        let mut two = BTreeMap::new();
        two.insert("a".to_string(), Value::String("bc".into()));
        assert_ne!(key_of("exec", 1, &one, ""), key_of("exec", 1, &two, ""));
    }
}
