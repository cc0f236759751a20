//! The loader's driver: reads the document, splits it into `[workflow]`,
//! `[defaults]` and node tables, and hands each node to resolution.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml_edit::{Item, TableLike};

use crate::params::ParamSpec;
use crate::value::Value;

use super::error::{backticked, did_you_mean, Origin, Reporter, SpecError, SpecErrors};
use super::fields::{item_to_value, GENERIC_KEYS, RESOURCE_KEYS};
use super::graph::topological_order;
use super::matrix::MATRIX_KEY;
use super::model::{Executor, KindCatalog, NodeNames, NodeSpec, SlurmSettings, Workflow};
use super::overrides::Override;

/// One value and where it was written.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) value: Value,
    pub(super) origin: Origin,
}

/// Keys to values at one level of precedence. `resources` is flattened into
/// `resources.cpus` and so on, so each resource merges and reports on its own.
pub(super) type Layer = BTreeMap<String, Entry>;

/// A node table as written, before defaults and checks.
#[derive(Clone)]
pub(super) struct RawNode {
    pub(super) name: String,
    pub(super) header: Origin,
    pub(super) kind: Option<String>,
    pub(super) entries: Layer,
    /// `(input name if written, reference, where)`.
    pub(super) inputs: Vec<(Option<String>, String, Origin)>,
}

pub(super) struct Defaults {
    pub(super) general: Layer,
    pub(super) by_kind: BTreeMap<String, Layer>,
}

pub(super) struct Loader<'a> {
    pub(super) reporter: Reporter<'a>,
    pub(super) path: &'a Path,
    /// Known kinds and their parameters, from the catalog.
    pub(super) kinds: BTreeMap<String, Vec<ParamSpec>>,
}

/// Reads and loads a workflow file. An unreadable file is one error at line 0.
pub fn load_workflow(
    path: &Path,
    catalog: &dyn KindCatalog,
    overrides: &[Override],
) -> Result<Workflow, SpecErrors> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Err(
                SpecError::new(path, 0, 0, format!("Cannot read workflow file: {error}")).into(),
            )
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => parse_workflow(path, &text, catalog, overrides),
        Err(error) => Err(invalid_utf8(path, error.as_bytes(), error.utf8_error()).into()),
    }
}

/// The error for a file that is not UTF-8, at the first invalid byte: its line, and its
/// column counted in characters like every other position (docs/architecture.md §9).
fn invalid_utf8(path: &Path, bytes: &[u8], error: std::str::Utf8Error) -> SpecError {
    let valid = &bytes[..error.valid_up_to()];
    let line_start = valid
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |index| index + 1);
    let line = 1 + valid.iter().filter(|&&byte| byte == b'\n').count();
    // `valid` is UTF-8 up to `valid_up_to`, so this slice is too.
    let column =
        1 + std::str::from_utf8(&valid[line_start..]).map_or(0, |prefix| prefix.chars().count());
    let offending = &bytes[error.valid_up_to()..];
    let shown: Vec<String> = offending
        .iter()
        .take(error.error_len().unwrap_or(offending.len()).clamp(1, 4))
        .map(|byte| format!("0x{byte:02x}"))
        .collect();
    SpecError::new(
        path,
        line,
        column,
        format!(
            "Invalid UTF-8: {} `{}` is not text; workflow files must be UTF-8",
            if shown.len() == 1 { "byte" } else { "bytes" },
            shown.join(" ")
        ),
    )
    .with_hint(Some(
        "re-save the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)".to_owned(),
    ))
}

/// Parses and validates workflow `text` read from `path` (which places relative
/// input paths and names the file in errors). Returns every problem found.
pub fn parse_workflow(
    path: &Path,
    text: &str,
    catalog: &dyn KindCatalog,
    overrides: &[Override],
) -> Result<Workflow, SpecErrors> {
    let mut loader = Loader {
        reporter: Reporter::new(path, text),
        path,
        kinds: catalog
            .kind_names()
            .into_iter()
            .map(|kind| (kind.to_owned(), catalog.params(kind).unwrap_or_default()))
            .collect(),
    };
    let document = match toml_edit::Document::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let origin = loader.reporter.origin(error.span());
            loader.reporter.error(
                &origin,
                format!("Invalid TOML: {}", error.message().trim_end_matches('.')),
                None,
            );
            return Err(SpecErrors(loader.reporter.finish()));
        }
    };
    let mut workflow = loader.load(document.as_table(), overrides);
    workflow.digest = format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex());
    workflow.overrides = overrides.iter().map(Override::text).collect();
    if loader.reporter.has_errors() {
        Err(SpecErrors(loader.reporter.finish()))
    } else {
        Ok(workflow)
    }
}

impl Loader<'_> {
    /// Loads everything it can; the caller discards the result if errors were reported.
    fn load(&mut self, root: &toml_edit::Table, overrides: &[Override]) -> Workflow {
        let mut name = self
            .path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut remote = None;
        let mut executor = None;
        let mut slurm = SlurmSettings::default();
        let mut raw_nodes = Vec::new();
        let mut defaults_item = None;
        for (key, item) in root.iter() {
            let origin = self.key_origin(root, key);
            match key {
                "workflow" => {
                    self.read_workflow_table(item, &origin, &mut name, &mut remote, &mut executor)
                }
                "executor" => self.read_executor_table(item, &origin, &mut slurm),
                "defaults" => defaults_item = Some((item, origin)),
                _ => raw_nodes.extend(self.read_node(key, item, origin)),
            }
        }
        raw_nodes.sort_by_key(|node| match &node.header {
            Origin::File { line, column } => (*line, *column),
            Origin::Set(_) => (usize::MAX, usize::MAX),
        });

        let used_kinds: BTreeSet<String> = raw_nodes
            .iter()
            .filter_map(|node| node.kind.clone())
            .filter(|kind| self.kinds.contains_key(kind))
            .collect();
        let mut defaults = match defaults_item {
            Some((item, origin)) => self.read_defaults(item, &origin, &used_kinds),
            None => Defaults {
                general: Layer::new(),
                by_kind: BTreeMap::new(),
            },
        };

        // `defaults.*` first, and each declaration's own `matrix`, then the sweeps are
        // expanded; other overrides address the expanded nodes (docs/architecture.md §18).
        let declared = NodeNames::new(raw_nodes.iter().map(|node| node.name.clone()).collect());
        let mut pending: Vec<&Override> = Vec::new();
        for item in overrides {
            let segments = item.segments();
            if segments.first() == Some(&"defaults") {
                self.apply_defaults_override(&mut defaults, item, &used_kinds);
            } else if let (Some(index), Some(&MATRIX_KEY)) = (
                segments.first().and_then(|first| declared.position(first)),
                segments.get(1),
            ) {
                let node = &mut raw_nodes[index];
                let existing = node
                    .entries
                    .get(MATRIX_KEY)
                    .map(|entry| entry.value.clone());
                // A matrix key is a whole dotted path: `train.matrix.env.SEED=[1, 2]`.
                let path = segments[2..].join(".");
                let path: Vec<&str> = [path.as_str()]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect();
                match super::overrides::set_path(existing, &path, item.value.clone()) {
                    Ok(value) => {
                        let origin = Origin::Set(item.text());
                        node.entries
                            .insert(MATRIX_KEY.to_owned(), Entry { value, origin });
                    }
                    Err(_) => self.reporter.error(
                        &Origin::Set(item.text()),
                        "Cannot apply override: `matrix` is not a table".to_owned(),
                        None,
                    ),
                }
            } else {
                pending.push(item);
            }
        }
        let expansion = self.expand_sweeps(raw_nodes, &mut defaults);
        let raw_nodes = expansion.nodes;
        let node_names = NodeNames::new(raw_nodes.iter().map(|node| node.name.clone()).collect());
        let mut node_overrides: BTreeMap<&str, Vec<(Origin, Override)>> = BTreeMap::new();
        for (name, settings) in &expansion.settings {
            node_overrides
                .entry(name.as_str())
                .or_default()
                .extend(settings.iter().cloned());
        }
        for item in pending {
            let segments = item.segments();
            let first = segments.first().copied().unwrap_or_default();
            let targets: Vec<&str> =
                match (node_names.position(first), expansion.instances.get(first)) {
                    (Some(index), _) => node_names
                        .get(index)
                        .map(String::as_str)
                        .into_iter()
                        .collect(),
                    (None, Some(instances)) => instances.iter().map(String::as_str).collect(),
                    (None, None) => Vec::new(),
                };
            if targets.is_empty() {
                let candidates = node_names
                    .iter()
                    .map(String::as_str)
                    .chain(expansion.instances.keys().map(String::as_str))
                    .chain(["defaults"]);
                self.reporter.error(
                    &Origin::Set(item.text()),
                    format!("Unknown node `{first}` in override"),
                    did_you_mean(first, candidates),
                );
            }
            for target in targets {
                let rest = &item.target[first.len()..];
                let item = Override {
                    target: format!("{target}{rest}"),
                    value: item.value.clone(),
                };
                let origin = Origin::Set(item.text());
                let name = node_names
                    .position(target)
                    .and_then(|index| node_names.get(index))
                    .map(String::as_str)
                    .unwrap_or_default();
                node_overrides.entry(name).or_default().push((origin, item));
            }
        }

        let mut nodes: Vec<NodeSpec> = raw_nodes
            .iter()
            .map(|node| {
                let node_overrides = node_overrides
                    .get(node.name.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let mut spec = self.resolve_node(node, &defaults, node_overrides, &node_names);
                spec.bindings = expansion
                    .bindings
                    .get(&node.name)
                    .cloned()
                    .unwrap_or_default();
                spec
            })
            .collect();

        let inputs: Vec<BTreeSet<usize>> = nodes
            .iter()
            .map(|node| {
                node.inputs
                    .values()
                    .filter_map(|input| match input {
                        super::model::InputRef::Node(name) => node_names.position(name),
                        super::model::InputRef::Path(_) => None,
                    })
                    .collect()
            })
            .collect();
        match topological_order(&inputs) {
            Ok(order) => {
                let mut slots: Vec<Option<NodeSpec>> = nodes.into_iter().map(Some).collect();
                nodes = order
                    .into_iter()
                    .filter_map(|index| slots.get_mut(index).and_then(Option::take))
                    .collect();
            }
            Err(cycles) => {
                for cycle in cycles {
                    let names: Vec<&str> = cycle
                        .iter()
                        .chain(cycle.first())
                        .filter_map(|&index| node_names.get(index).map(String::as_str))
                        .collect();
                    if let Some(first) = cycle.first().and_then(|&index| raw_nodes.get(index)) {
                        let header = first.header.clone();
                        self.reporter.error(
                            &header,
                            format!("Cycle between nodes: {}", names.join(" -> ")),
                            Some(
                                "a node cannot depend, directly or not, on its own output"
                                    .to_owned(),
                            ),
                        );
                    }
                }
            }
        }

        Workflow {
            path: self.path.to_path_buf(),
            name,
            remote,
            executor,
            slurm,
            nodes,
            omitted: Default::default(),
            digest: String::new(),
            overrides: Vec::new(),
        }
    }

    /// Where `key` of `table` was written; the table header for tables with one.
    pub(super) fn key_origin(&self, table: &dyn TableLike, key: &str) -> Origin {
        let span = table.get_key_value(key).and_then(|(key, item)| match item {
            Item::Table(inner) if !inner.is_dotted() => inner.span().or_else(|| key.span()),
            Item::ArrayOfTables(array) => array.span().or_else(|| key.span()),
            _ => key.span(),
        });
        self.reporter.origin(span)
    }

    fn read_workflow_table(
        &mut self,
        item: &Item,
        origin: &Origin,
        name: &mut String,
        remote: &mut Option<String>,
        executor: &mut Option<Executor>,
    ) {
        let Some(table) = item.as_table_like() else {
            self.reporter.error(
                origin,
                format!(
                    "Wrong type for `workflow`: expected table, found {}",
                    item_type(item)
                ),
                None,
            );
            return;
        };
        for (key, item) in table.iter() {
            let origin = self.key_origin(table, key);
            match (key, item.as_str()) {
                ("name", Some(text)) => *name = text.to_owned(),
                ("remote", Some(text)) => *remote = Some(text.to_owned()),
                ("executor", Some(text)) => match Executor::parse(text) {
                    Ok(parsed) => *executor = Some(parsed),
                    Err(problem) => self.reporter.error(
                        &origin,
                        format!("Invalid `executor` in `[workflow]`: {problem}"),
                        None,
                    ),
                },
                ("name" | "remote" | "executor", None) => self.reporter.error(
                    &origin,
                    format!(
                        "Wrong type for `{key}`: expected string, found {}",
                        item_type(item)
                    ),
                    None,
                ),
                _ => self.reporter.error(
                    &origin,
                    format!("Unknown key `{key}` in `[workflow]`"),
                    did_you_mean(key, ["name", "remote", "executor"]).or_else(|| {
                        Some("`[workflow]` accepts `name`, `remote` and `executor`".to_owned())
                    }),
                ),
            }
        }
    }

    /// `[executor.slurm]`: partition, account, qos (strings), flags (a list of strings) and
    /// via_remote (a boolean).
    fn read_executor_table(&mut self, item: &Item, origin: &Origin, slurm: &mut SlurmSettings) {
        let Some(table) = item.as_table_like() else {
            self.reporter.error(
                origin,
                format!(
                    "Wrong type for `executor`: expected table, found {}",
                    item_type(item)
                ),
                None,
            );
            return;
        };
        for (name, item) in table.iter() {
            let origin = self.key_origin(table, name);
            let Some(settings) = item.as_table_like().filter(|_| name == "slurm") else {
                self.reporter.error(
                    &origin,
                    format!("Unknown table `executor.{name}`"),
                    Some("the only executor with settings is `[executor.slurm]`".to_owned()),
                );
                continue;
            };
            for (key, item) in settings.iter() {
                let origin = self.key_origin(settings, key);
                let field = match key {
                    "partition" => &mut slurm.partition,
                    "account" => &mut slurm.account,
                    "qos" => &mut slurm.qos,
                    "flags" => {
                        let flags: Option<Vec<String>> = item.as_array().and_then(|array| {
                            array
                                .iter()
                                .map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        });
                        match flags {
                            Some(flags) => slurm.flags = flags,
                            None => self.reporter.error(
                                &origin,
                                format!(
                                    "Wrong type for `flags`: expected a list of strings, found {}",
                                    item_type(item)
                                ),
                                None,
                            ),
                        }
                        continue;
                    }
                    "via_remote" => {
                        match item.as_bool() {
                            Some(value) => slurm.via_remote = value,
                            None => self.reporter.error(
                                &origin,
                                format!(
                                    "Wrong type for `via_remote`: expected a boolean, found {}",
                                    item_type(item)
                                ),
                                None,
                            ),
                        }
                        continue;
                    }
                    _ => {
                        self.reporter.error(
                            &origin,
                            format!("Unknown key `{key}` in `[executor.slurm]`"),
                            did_you_mean(
                                key,
                                ["partition", "account", "qos", "flags", "via_remote"],
                            )
                            .or_else(|| {
                                Some(
                                    "`[executor.slurm]` accepts `partition`, `account`, `qos`, \
                                     `flags` and `via_remote`"
                                        .to_owned(),
                                )
                            }),
                        );
                        continue;
                    }
                };
                match item.as_str() {
                    Some(text) => *field = Some(text.to_owned()),
                    None => self.reporter.error(
                        &origin,
                        format!(
                            "Wrong type for `{key}`: expected string, found {}",
                            item_type(item)
                        ),
                        None,
                    ),
                }
            }
        }
    }

    fn read_node(&mut self, name: &str, item: &Item, header: Origin) -> Option<RawNode> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.reporter.error(
                &header,
                format!("Invalid node name `{name}`"),
                Some("node names use only letters, digits, `_` and `-`".to_owned()),
            );
        }
        let Some(table) = item.as_table_like() else {
            self.reporter.error(
                &header,
                format!("Node `{name}` must be a table, found {}", item_type(item)),
                Some(format!(
                    "write `[{name}]` followed by `kind = \"...\"` and its parameters"
                )),
            );
            return None;
        };
        let mut kind_given = false;
        let mut node = RawNode {
            name: name.to_owned(),
            header,
            kind: None,
            entries: Layer::new(),
            inputs: Vec::new(),
        };
        for (key, item) in table.iter() {
            let origin = self.key_origin(table, key);
            kind_given |= key == "kind";
            match key {
                "kind" => match item.as_str() {
                    Some(kind) => node.kind = Some(kind.to_owned()),
                    None => self.reporter.error(
                        &origin,
                        format!(
                            "Wrong type for `kind`: expected string, found {}",
                            item_type(item)
                        ),
                        None,
                    ),
                },
                "inputs" => node.inputs = self.read_inputs(item, &origin),
                _ => self.add_entries(&mut node.entries, key, item, origin),
            }
        }
        match &node.kind {
            None if kind_given => {}
            None => {
                let header = node.header.clone();
                self.reporter.error(
                    &header,
                    format!("Node `{name}` has no `kind`"),
                    Some(format!(
                        "known kinds: {}",
                        backticked(self.kinds.keys().map(String::as_str))
                    )),
                );
            }
            Some(kind) if !self.kinds.contains_key(kind) => {
                let origin = self.key_origin(table, "kind");
                let known = backticked(self.kinds.keys().map(String::as_str));
                let hint = match did_you_mean(kind, self.kinds.keys().map(String::as_str)) {
                    Some(close) => format!("{close} Known kinds: {known}"),
                    None => format!("known kinds: {known}"),
                };
                self.reporter.error(
                    &origin,
                    format!("Unknown kind `{kind}` in node `{name}`"),
                    Some(hint),
                );
            }
            Some(_) => {}
        }
        Some(node)
    }

    /// Adds `key = item` to a layer, flattening a `resources` table.
    pub(super) fn add_entries(
        &mut self,
        layer: &mut Layer,
        key: &str,
        item: &Item,
        origin: Origin,
    ) {
        let Some(value) = item_to_value(item) else {
            return;
        };
        if key != "resources" {
            layer.insert(key.to_owned(), Entry { value, origin });
            return;
        }
        let Some(table) = item.as_table_like() else {
            self.reporter.error(
                &origin,
                format!(
                    "Wrong type for `resources`: expected table, found {}",
                    value.type_name()
                ),
                None,
            );
            return;
        };
        for (sub_key, sub_item) in table.iter() {
            let sub_origin = self.key_origin(table, sub_key);
            if let Some(sub_value) = item_to_value(sub_item) {
                self.add_resource(layer, sub_key, sub_value, sub_origin);
            }
        }
    }

    pub(super) fn add_resource(
        &mut self,
        layer: &mut Layer,
        key: &str,
        value: Value,
        origin: Origin,
    ) {
        if RESOURCE_KEYS.contains(&key) {
            layer.insert(format!("resources.{key}"), Entry { value, origin });
        } else {
            self.reporter.error(
                &origin,
                format!("Unknown key `{key}` in `resources`"),
                did_you_mean(key, RESOURCE_KEYS)
                    .or_else(|| Some(format!("resources are {}", backticked(RESOURCE_KEYS)))),
            );
        }
    }

    fn read_defaults(
        &mut self,
        item: &Item,
        origin: &Origin,
        used_kinds: &BTreeSet<String>,
    ) -> Defaults {
        let mut defaults = Defaults {
            general: Layer::new(),
            by_kind: BTreeMap::new(),
        };
        let Some(table) = item.as_table_like() else {
            self.reporter.error(
                origin,
                format!(
                    "Wrong type for `defaults`: expected table, found {}",
                    item_type(item)
                ),
                None,
            );
            return defaults;
        };
        for (key, item) in table.iter() {
            let origin = self.key_origin(table, key);
            if self.kinds.contains_key(key) {
                if let Some(kind_table) = item.as_table_like() {
                    let layer = self.read_kind_defaults(key, kind_table);
                    defaults.by_kind.insert(key.to_owned(), layer);
                    continue;
                }
            }
            if self.defaults_key_ok(key, &origin, "`[defaults]`", used_kinds.iter()) {
                self.add_entries(&mut defaults.general, key, item, origin);
            }
        }
        defaults
    }

    fn read_kind_defaults(&mut self, kind: &str, table: &dyn TableLike) -> Layer {
        let mut layer = Layer::new();
        let place = format!("`[defaults.{kind}]`");
        let kinds = [kind.to_owned()];
        for (key, item) in table.iter() {
            let origin = self.key_origin(table, key);
            if self.defaults_key_ok(key, &origin, &place, kinds.iter()) {
                self.add_entries(&mut layer, key, item, origin);
            }
        }
        layer
    }

    /// Whether `key` may be a default for nodes of `kinds`; reports why not.
    pub(super) fn defaults_key_ok<'k>(
        &mut self,
        key: &str,
        origin: &Origin,
        place: &str,
        kinds: impl Iterator<Item = &'k String> + Clone,
    ) -> bool {
        if key == "kind" || key == "inputs" {
            self.reporter.error(
                origin,
                format!("Key `{key}` cannot be set in {place}"),
                Some(format!("set `{key}` in each node's own table")),
            );
            return false;
        }
        let accepted = GENERIC_KEYS.contains(&key)
            || key == MATRIX_KEY
            || kinds
                .clone()
                .any(|kind| self.params_of(kind).iter().any(|spec| spec.name == key));
        if accepted {
            return true;
        }
        let candidates: Vec<&str> = kinds
            .flat_map(|kind| self.params_of(kind).iter().map(|spec| spec.name))
            .chain(GENERIC_KEYS)
            .collect();
        self.reporter.error(
            origin,
            format!("Unknown key `{key}` in {place}"),
            did_you_mean(key, candidates.iter().copied())
                .or_else(|| Some(format!("no node's kind has a parameter `{key}`"))),
        );
        false
    }

    pub(super) fn params_of(&self, kind: &str) -> &[ParamSpec] {
        self.kinds.get(kind).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The type of an item, as error messages name it.
pub(super) fn item_type(item: &Item) -> &'static str {
    match item {
        Item::ArrayOfTables(_) => "array of tables",
        _ => item_to_value(item).map_or("nothing", |value| value.type_name()),
    }
}
