//! Node inputs: reading `inputs = { name = "ref" }` or `inputs = ["ref", ...]`,
//! and resolving each reference to another node or to an existing path.
//!
//! A reference that names a node is that node's output. Otherwise a reference
//! containing `/` or starting with `.` or `~` is a path, relative to the workflow
//! file's folder; anything else is a misspelled node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::Item;

use super::error::{did_you_mean, Origin};
use super::load::{item_type, Loader, RawNode};
use super::model::{InputRef, NodeNames};

impl Loader<'_> {
    /// Reads the `inputs` item of a node as `(name if written, reference, where)`.
    pub(super) fn read_inputs(
        &mut self,
        item: &Item,
        origin: &Origin,
    ) -> Vec<(Option<String>, String, Origin)> {
        let mut inputs = Vec::new();
        if let Some(text) = item.as_str() {
            inputs.push((None, text.to_owned(), origin.clone()));
        } else if let Some(array) = item.as_array() {
            for value in array.iter() {
                let value_origin = self.reporter.origin(value.span());
                match value.as_str() {
                    Some(text) => inputs.push((None, text.to_owned(), value_origin)),
                    None => self.reporter.error(
                        &value_origin,
                        format!(
                            "Wrong type for an input: expected string, found {}",
                            value.type_name()
                        ),
                        None,
                    ),
                }
            }
        } else if let Some(table) = item.as_table_like() {
            for (name, value) in table.iter() {
                let value_origin = self.key_origin(table, name);
                match value.as_str() {
                    Some(text) => {
                        inputs.push((Some(name.to_owned()), text.to_owned(), value_origin))
                    }
                    None => self.reporter.error(
                        &value_origin,
                        format!(
                            "Wrong type for input `{name}`: expected string, found {}",
                            item_type(value)
                        ),
                        None,
                    ),
                }
            }
        } else {
            self.reporter.error(
                origin,
                format!(
                    "Wrong type for `inputs`: expected table or array of string, found {}",
                    item_type(item)
                ),
                None,
            );
        }
        inputs
    }

    /// Resolves a node's references; problems are reported and the input dropped.
    pub(super) fn resolve_inputs(
        &mut self,
        node: &RawNode,
        node_names: &NodeNames,
    ) -> BTreeMap<String, InputRef> {
        let mut resolved = BTreeMap::new();
        for (name, reference, origin) in &node.inputs {
            let Some(input) = self.resolve_reference(node, reference, origin, node_names) else {
                continue;
            };
            let name = match name {
                Some(name) => name.clone(),
                None => match derived_name(reference, &input) {
                    Some(name) => name,
                    None => {
                        self.reporter.error(
                            origin,
                            format!("Cannot name input `{reference}`"),
                            Some(format!(
                                "name it with the table form: `inputs = {{ data = \"{reference}\" }}`"
                            )),
                        );
                        continue;
                    }
                },
            };
            if resolved.contains_key(&name) {
                self.reporter.error(
                    origin,
                    format!("Duplicate input `{name}` in node `{}`", node.name),
                    Some(
                        "give each input its own name with the table form: `inputs = { a = \"...\", b = \"...\" }`"
                            .to_owned(),
                    ),
                );
                continue;
            }
            resolved.insert(name, input);
        }
        resolved
    }

    fn resolve_reference(
        &mut self,
        node: &RawNode,
        reference: &str,
        origin: &Origin,
        node_names: &NodeNames,
    ) -> Option<InputRef> {
        if reference == node.name {
            self.reporter.error(
                origin,
                format!("Node `{}` takes itself as input", node.name),
                None,
            );
            return None;
        }
        if node_names.contains(reference) {
            return Some(InputRef::Node(reference.to_owned()));
        }
        if reference.contains("://") {
            self.reporter.error(
                origin,
                format!("Unsupported input `{reference}`: URL inputs are not supported"),
                Some("download it and refer to the local copy".to_owned()),
            );
            return None;
        }
        if !(reference.contains('/') || reference.starts_with('.') || reference.starts_with('~')) {
            let hint = did_you_mean(reference, node_names.iter().map(String::as_str))
                .unwrap_or_else(|| {
                    format!("a path input must contain `/` or start with `.` or `~`, as in `./{reference}`")
                });
            self.reporter.error(
                origin,
                format!("Missing input: no node `{reference}`"),
                Some(hint),
            );
            return None;
        }
        let joined = match self.expand(reference) {
            Ok(path) => path,
            Err(problem) => {
                self.reporter.error(origin, problem, None);
                return None;
            }
        };
        match std::fs::canonicalize(&joined) {
            Ok(path) => Some(InputRef::Path(path)),
            Err(error) => {
                let message = if error.kind() == std::io::ErrorKind::NotFound {
                    format!("Missing input: path `{reference}` does not exist")
                } else {
                    format!("Cannot read input `{reference}`: {error}")
                };
                self.reporter.error(
                    origin,
                    message,
                    Some(format!("looked for `{}`", joined.display())),
                );
                None
            }
        }
    }

    /// `~` expanded to `$HOME`, relative paths joined to the workflow's folder.
    fn expand(&self, reference: &str) -> Result<PathBuf, String> {
        if let Some(rest) = reference.strip_prefix('~') {
            let rest = match rest.strip_prefix('/') {
                Some(rest) => rest,
                None if rest.is_empty() => rest,
                None => {
                    return Err(format!(
                        "Cannot expand `{reference}`: only `~` and `~/...` are supported"
                    ))
                }
            };
            let home = std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .ok_or_else(|| format!("Cannot expand `{reference}`: `HOME` is not set"))?;
            return Ok(PathBuf::from(home).join(rest));
        }
        let base = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Ok(base.join(reference))
    }
}

/// The name of an input written without one: the node's name, or the path's file name.
fn derived_name(reference: &str, input: &InputRef) -> Option<String> {
    match input {
        InputRef::Node(name) => Some(name.clone()),
        InputRef::Path(_) => Path::new(reference.trim_end_matches('/'))
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty() && *name != "~")
            .map(str::to_owned),
    }
}
