//! Resolution of one node: layering defaults, node values and overrides, then
//! checking every key against the node's kind.

use std::collections::{BTreeMap, BTreeSet};

use crate::params::{check_type, scalars_as_strings};
use crate::value::Value;

use super::error::{backticked, did_you_mean, Origin};
use super::fields::{
    apply_resource, parse_executor, parse_retries, parse_salt, parse_timeout, GENERIC_KEYS,
};
use super::load::{Defaults, Entry, Layer, Loader, RawNode};
use super::model::{NodeNames, NodeSpec, Resources};
use super::overrides::{set_path, Override};

impl Loader<'_> {
    /// Applies `defaults.key=value` or `defaults.<kind>.key=value` to the defaults.
    pub(super) fn apply_defaults_override(
        &mut self,
        defaults: &mut Defaults,
        item: &Override,
        used_kinds: &BTreeSet<String>,
    ) {
        let origin = Origin::Set(item.text());
        let segments = item.segments();
        let (kind, key, path) = match segments.as_slice() {
            [_, kind, key, path @ ..] if self.kinds.contains_key(*kind) => {
                (Some((*kind).to_owned()), *key, path)
            }
            [_, key, path @ ..] => (None, *key, path),
            _ => return,
        };
        let accepted = match &kind {
            Some(kind) => {
                let place = format!("`[defaults.{kind}]`");
                self.defaults_key_ok(key, &origin, &place, std::iter::once(kind))
            }
            None => self.defaults_key_ok(key, &origin, "`[defaults]`", used_kinds.iter()),
        };
        if !accepted {
            return;
        }
        let layer = match kind {
            Some(kind) => defaults.by_kind.entry(kind).or_default(),
            None => &mut defaults.general,
        };
        self.set_in_layer(layer, key, path, item.value.clone(), origin);
    }

    /// Sets `key[.path] = value` in a layer, on top of what the layer holds.
    fn set_in_layer(
        &mut self,
        layer: &mut Layer,
        key: &str,
        path: &[&str],
        value: Value,
        origin: Origin,
    ) {
        if key == "resources" {
            match (path, value) {
                ([], Value::Table(entries)) => {
                    for (sub_key, sub_value) in entries {
                        self.add_resource(layer, &sub_key, sub_value, origin.clone());
                    }
                }
                ([sub_key], value) => self.add_resource(layer, sub_key, value, origin),
                ([], value) => self.reporter.error(
                    &origin,
                    format!(
                        "Wrong type for `resources`: expected table, found {}",
                        value.type_name()
                    ),
                    None,
                ),
                (_, _) => self.reporter.error(
                    &origin,
                    "Resources have no nested keys".to_owned(),
                    Some("use `node.resources.cpus=4`".to_owned()),
                ),
            }
            return;
        }
        let existing = layer.get(key).map(|entry| entry.value.clone());
        match set_path(existing, path, value) {
            Ok(value) => {
                layer.insert(key.to_owned(), Entry { value, origin });
            }
            Err((depth, found)) => {
                let parent: Vec<&str> = std::iter::once(key)
                    .chain(path.iter().copied().take(depth))
                    .collect();
                self.reporter.error(
                    &origin,
                    format!(
                        "Cannot apply override: `{}` is {}, not a table",
                        parent.join("."),
                        with_article(found)
                    ),
                    None,
                );
            }
        }
    }

    /// Resolves one node. Problems are reported; the returned node is then unused.
    pub(super) fn resolve_node(
        &mut self,
        node: &RawNode,
        defaults: &Defaults,
        overrides: &[(Origin, Override)],
        node_names: &NodeNames,
    ) -> NodeSpec {
        let kind = node.kind.clone().unwrap_or_default();
        // Without a known kind only generic keys can be checked.
        let known_kind = self.kinds.contains_key(&kind);
        let specs = self.params_of(&kind).to_vec();
        let declares = |key: &str| specs.iter().any(|spec| spec.name == key);
        let is_generic = |key: &str| GENERIC_KEYS.contains(&key) || key.starts_with("resources.");

        let mut merged = Layer::new();
        for (key, entry) in &defaults.general {
            if is_generic(key) || declares(key) {
                merged.insert(key.clone(), entry.clone());
            }
        }
        if let Some(layer) = defaults.by_kind.get(&kind) {
            merged.extend(
                layer
                    .iter()
                    .map(|(key, entry)| (key.clone(), entry.clone())),
            );
        }
        merged.extend(
            node.entries
                .iter()
                .map(|(key, entry)| (key.clone(), entry.clone())),
        );
        // Keys an override or a matrix set: read as loosely as `--set` reads them.
        let mut overridden = BTreeSet::new();
        for (origin, item) in overrides {
            let origin = origin.clone();
            if let Some(key) = item.segments().get(1) {
                overridden.insert((*key).to_owned());
            }
            match item.segments().as_slice() {
                [_, key @ ("kind" | "inputs"), ..] => self.reporter.error(
                    &origin,
                    format!("Key `{key}` cannot be overridden"),
                    Some(format!("edit `{key}` in the workflow file")),
                ),
                [_, key, path @ ..] if is_generic(key) || declares(key) || !known_kind => {
                    self.set_in_layer(&mut merged, key, path, item.value.clone(), origin);
                }
                [_, key, ..] => {
                    let hint = self.unknown_key_hint(key, &kind);
                    self.reporter.error(
                        &origin,
                        format!("Unknown key `{key}` for node `{}`", node.name),
                        Some(hint),
                    );
                }
                _ => {}
            }
        }

        let mut spec = NodeSpec {
            name: node.name.clone(),
            kind: kind.clone(),
            params: BTreeMap::new(),
            inputs: self.resolve_inputs(node, node_names),
            resources: Resources::default(),
            retries: 0,
            salt: String::new(),
            timeout: None,
            executor: None,
            bindings: Vec::new(),
            line: match node.header {
                Origin::File { line, .. } => line,
                Origin::Set(_) => 0,
            },
        };
        // Keys that were given, even with a bad value: not "missing" as well.
        let given: BTreeSet<String> = merged.keys().cloned().collect();
        for (key, Entry { value, origin }) in merged {
            let result = match key.as_str() {
                "retries" => parse_retries(&value).map(|retries| spec.retries = retries),
                "salt" => parse_salt(&value).map(|salt| spec.salt = salt),
                "timeout" => parse_timeout(&value).map(|timeout| spec.timeout = Some(timeout)),
                "executor" => parse_executor(&value).map(|executor| spec.executor = Some(executor)),
                _ => match key.strip_prefix("resources.") {
                    Some(resource) => apply_resource(&mut spec.resources, resource, &value),
                    None => match specs.iter().find(|param| param.name == key) {
                        Some(param) => check_type(&param.ty, &value)
                            .or_else(|problem| match origin {
                                // `--set env.TOP=3` means the string "3" where a string is
                                // expected: the shell gives no way to say which was meant;
                                // nor does a matrix's `"env.SEED" = [1, 2]`.
                                _ if overridden.contains(&key) => {
                                    check_type(&param.ty, &scalars_as_strings(&param.ty, &value))
                                        .map_err(|_| problem)
                                }
                                _ => Err(problem),
                            })
                            .map(|checked| {
                                spec.params.insert(key.clone(), checked);
                            }),
                        None if known_kind => {
                            let hint = self.unknown_key_hint(&key, &kind);
                            self.reporter.error(
                                &origin,
                                format!("Unknown key `{key}` in node `{}`", node.name),
                                Some(hint),
                            );
                            Ok(())
                        }
                        None => Ok(()),
                    },
                },
            };
            if let Err(problem) = result {
                let message = if problem.starts_with("expected") {
                    format!("Wrong type for `{key}`: {problem}")
                } else {
                    format!("Invalid `{key}`: {problem}")
                };
                self.reporter.error(&origin, message, None);
            }
        }

        for param in &specs {
            if given.contains(param.name) {
                continue;
            }
            if param.required {
                self.reporter.error(
                    &node.header,
                    format!(
                        "Missing required parameter `{}` in node `{}` (kind `{kind}`)",
                        param.name, node.name
                    ),
                    Some(format!(
                        "add `{} = <{}>` to `[{}]`",
                        param.name,
                        param.ty.describe(),
                        node.name
                    )),
                );
            } else if let Some(default) = &param.default {
                // A default that does not fit its own type is a bug in the kind;
                // use it as declared rather than fail the user's workflow.
                let value = check_type(&param.ty, default).unwrap_or_else(|_| default.clone());
                spec.params.insert(param.name.to_owned(), value);
            }
        }
        spec
    }

    /// Suggests the closest accepted key, or lists them all.
    fn unknown_key_hint(&self, key: &str, kind: &str) -> String {
        let params: Vec<&str> = self.params_of(kind).iter().map(|spec| spec.name).collect();
        let all = params
            .iter()
            .copied()
            .chain(GENERIC_KEYS)
            .chain(["kind", "inputs"]);
        did_you_mean(key, all).unwrap_or_else(|| {
            if params.is_empty() {
                format!("`{kind}` nodes take no parameters")
            } else {
                format!("`{kind}` nodes accept {}", backticked(params))
            }
        })
    }
}

/// `an integer`, `a float`.
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {word}")
}
