//! Sweeps: one node declaration over a matrix of values (docs/architecture.md §18).
//!
//! `matrix = { seed = [1, 2, 3], "weights.induction" = [0.1, 0.3] }` in a node (or in
//! `[defaults]`, for every node whose kind has the parameter) expands the node into one
//! node per combination, named `base[label=value,...]` where a label is the last segment
//! of its path: `train[seed=1,induction=0.1]`. Each instance has its values set as a
//! `--set` of that instance would set them; `"inputs.NAME" = ["a", "b"]` varies an input.
//!
//! A node that reads a swept node is swept with it: each of its instances reads the
//! instance whose values agree with its own on the labels both have, and takes that
//! instance's values as its own labels. So `eval` reading `train[seed=...]` becomes
//! `eval[seed=...]`, and a node swept over `seed` itself that reads `train` pairs seed with
//! seed instead of crossing them.

use std::collections::{BTreeMap, BTreeSet};

use crate::value::Value;

use super::error::Origin;
use super::graph::topological_order;
use super::load::{Defaults, Loader, RawNode};
use super::overrides::Override;

/// The key of a node (or of `[defaults]`) that declares a sweep.
pub(crate) const MATRIX_KEY: &str = "matrix";

/// The most instances one declaration may expand to: a typo such as `[1, 10000]` for a
/// range stays an error instead of a workflow of millions of nodes.
const MAX_INSTANCES: usize = 10_000;

/// A label and its value's text, in a node's name: `seed` and `1` in `train[seed=1]`.
pub type Binding = (String, String);

/// One swept path of a node.
#[derive(Debug, Clone)]
struct Dimension {
    label: String,
    /// Dotted path inside the node: `seed`, `weights.induction`, `inputs.model`.
    path: String,
    /// Each value with the text it shows in names.
    values: Vec<(String, Value)>,
    origin: Origin,
}

/// The workflow's nodes after expansion.
pub(super) struct Expansion {
    /// Every node, instances in place of their declaration (file order, then combination
    /// order: the first path varies slowest).
    pub(super) nodes: Vec<RawNode>,
    /// Per instance, the values its matrix sets, as overrides with the matrix's origin.
    pub(super) settings: BTreeMap<String, Vec<(Origin, Override)>>,
    /// Per instance, its labels and values in name order.
    pub(super) bindings: BTreeMap<String, Vec<Binding>>,
    /// Per swept declaration, its instances' names.
    pub(super) instances: BTreeMap<String, Vec<String>>,
}

/// Whether `text` may stand in a node name as a matrix value.
fn name_safe(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

/// The name of an instance: `base[label=value,...]`, or `base` when it has no labels.
pub fn instance_name(base: &str, bindings: &[Binding]) -> String {
    if bindings.is_empty() {
        return base.to_string();
    }
    let inner: Vec<String> = bindings
        .iter()
        .map(|(label, value)| format!("{label}={value}"))
        .collect();
    format!("{base}[{}]", inner.join(","))
}

/// The declaration an instance name comes from: `train` of `train[seed=1]`.
pub fn base_name(name: &str) -> &str {
    name.split('[').next().unwrap_or(name)
}

impl Loader<'_> {
    /// The dimensions a `matrix` value declares; problems are reported at `origin`.
    fn dimensions(&mut self, value: &Value, origin: &Origin, place: &str) -> Vec<Dimension> {
        let Value::Table(entries) = value else {
            self.reporter.error(
                origin,
                format!(
                    "Wrong type for `matrix` in {place}: expected a table of lists, found {}",
                    value.type_name()
                ),
                Some("write `matrix = { seed = [1, 2, 3] }`".to_owned()),
            );
            return Vec::new();
        };
        let mut dimensions: Vec<Dimension> = Vec::new();
        for (path, values) in entries {
            let key = format!("matrix.{path}");
            let segments: Vec<&str> = path.split('.').collect();
            let problem = match segments.as_slice() {
                _ if segments.iter().any(|s| s.is_empty()) => Some(format!(
                    "`{key}` in {place} is not a path such as `seed` or `weights.induction`"
                )),
                ["kind", ..] | [MATRIX_KEY, ..] => Some(format!(
                    "`{key}` in {place}: `{}` cannot be swept",
                    segments[0]
                )),
                ["inputs"] | ["inputs", _, _, ..] => Some(format!(
                    "`{key}` in {place}: sweep one input at a time, as `\"inputs.model\"`"
                )),
                _ => None,
            };
            if let Some(message) = problem {
                self.reporter.error(origin, message, None);
                continue;
            }
            let items = match values {
                Value::List(items) if !items.is_empty() => items,
                other => {
                    self.reporter.error(
                        origin,
                        format!(
                            "`{key}` in {place} must be a non-empty list of values, found {}",
                            other.type_name()
                        ),
                        Some(format!("write `\"{path}\" = [1, 2, 3]`")),
                    );
                    continue;
                }
            };
            let mut shown: Vec<(String, Value)> = Vec::new();
            for item in items {
                let text = match item {
                    Value::Int(i) => i.to_string(),
                    Value::Float(x) if x.is_finite() => format!("{x}"),
                    Value::Bool(b) => b.to_string(),
                    Value::String(s) => s.clone(),
                    other => {
                        self.reporter.error(
                            origin,
                            format!(
                                "`{key}` in {place}: a value must be a number, a boolean or a string, found {}",
                                other.type_name()
                            ),
                            None,
                        );
                        continue;
                    }
                };
                if !name_safe(&text) {
                    self.reporter.error(
                        origin,
                        format!(
                            "`{key}` in {place}: the value `{text}` cannot be part of a node name"
                        ),
                        Some("matrix values use letters, digits, `_`, `-`, `.` and `+`".to_owned()),
                    );
                    continue;
                }
                if shown.iter().any(|(earlier, _)| *earlier == text) {
                    self.reporter.error(
                        origin,
                        format!("`{key}` in {place}: the value `{text}` appears twice"),
                        None,
                    );
                    continue;
                }
                if segments[0] == "inputs" && !matches!(item, Value::String(_)) {
                    self.reporter.error(
                        origin,
                        format!(
                            "`{key}` in {place}: an input is a node name or a path, found {}",
                            item.type_name()
                        ),
                        None,
                    );
                    continue;
                }
                shown.push((text, item.clone()));
            }
            let label = segments.last().copied().unwrap_or_default().to_owned();
            dimensions.push(Dimension {
                label,
                path: path.clone(),
                values: shown,
                origin: origin.clone(),
            });
        }
        dimensions
    }

    /// The dimensions of `node`: `[defaults]`'s and `[defaults.<kind>]`'s for the paths its
    /// kind has, then its own, a later one replacing an earlier one of the same path.
    fn node_dimensions(
        &mut self,
        node: &RawNode,
        general: Option<&(Value, Origin)>,
        by_kind: &BTreeMap<String, (Value, Origin)>,
    ) -> Vec<Dimension> {
        let kind = node.kind.clone().unwrap_or_default();
        let takes = |loader: &Loader<'_>, path: &str| {
            let first = path.split('.').next().unwrap_or_default();
            super::fields::GENERIC_KEYS.contains(&first)
                || loader
                    .params_of(&kind)
                    .iter()
                    .any(|spec| spec.name == first)
        };
        let mut found: Vec<Dimension> = Vec::new();
        let add = |found: &mut Vec<Dimension>, dimension: Dimension| {
            found.retain(|earlier| earlier.path != dimension.path);
            found.push(dimension);
        };
        if let Some((value, origin)) = general {
            for dimension in self.dimensions(value, origin, "`[defaults]`") {
                if takes(self, &dimension.path) {
                    add(&mut found, dimension);
                }
            }
        }
        if let Some((value, origin)) = by_kind.get(&kind) {
            let place = format!("`[defaults.{kind}]`");
            for dimension in self.dimensions(value, origin, &place) {
                if takes(self, &dimension.path) {
                    add(&mut found, dimension);
                }
            }
        }
        if let Some(entry) = node.entries.get(MATRIX_KEY) {
            let place = format!("node `{}`", node.name);
            for dimension in self.dimensions(&entry.value, &entry.origin, &place) {
                add(&mut found, dimension);
            }
        }
        let mut labels = BTreeSet::new();
        for dimension in &found {
            if !labels.insert(dimension.label.clone()) {
                self.reporter.error(
                    &dimension.origin,
                    format!(
                        "Two swept paths of node `{}` end in `{}`: names would be ambiguous",
                        node.name, dimension.label
                    ),
                    Some("sweep one of them in a node of its own".to_owned()),
                );
            }
        }
        found
    }

    /// Expands every swept node (and the nodes that read one) into its instances.
    pub(super) fn expand_sweeps(
        &mut self,
        mut raw: Vec<RawNode>,
        defaults: &mut Defaults,
    ) -> Expansion {
        let general = defaults
            .general
            .remove(MATRIX_KEY)
            .map(|entry| (entry.value, entry.origin));
        let by_kind: BTreeMap<String, (Value, Origin)> = defaults
            .by_kind
            .iter_mut()
            .filter_map(|(kind, layer)| {
                let entry = layer.remove(MATRIX_KEY)?;
                Some((kind.clone(), (entry.value, entry.origin)))
            })
            .collect();
        let index: BTreeMap<String, usize> = raw
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.clone(), i))
            .collect();
        // Dimensions first (inputs they set count as edges), then the order to expand in.
        let dimensions: Vec<Vec<Dimension>> = raw
            .iter()
            .map(|node| self.node_dimensions(node, general.as_ref(), &by_kind))
            .collect();
        let edges: Vec<BTreeSet<usize>> = raw
            .iter()
            .zip(&dimensions)
            .map(|(node, dims)| {
                let swept_inputs = dims
                    .iter()
                    .filter(|d| d.path.starts_with("inputs."))
                    .flat_map(|d| d.values.iter().map(|(text, _)| text.as_str()));
                node.inputs
                    .iter()
                    .map(|(_, reference, _)| reference.as_str())
                    .chain(swept_inputs)
                    .filter_map(|reference| index.get(reference).copied())
                    .collect()
            })
            .collect();
        let mut expansion = Expansion {
            nodes: Vec::new(),
            settings: BTreeMap::new(),
            bindings: BTreeMap::new(),
            instances: BTreeMap::new(),
        };
        let Ok(order) = topological_order(&edges) else {
            // A cycle is reported after expansion; the nodes stay as written until then.
            for node in &mut raw {
                node.entries.remove(MATRIX_KEY);
            }
            expansion.nodes = raw;
            return expansion;
        };
        // Per declaration, its instances: name and bindings.
        let mut made: Vec<Vec<(String, Vec<Binding>, RawNode)>> = vec![Vec::new(); raw.len()];
        for position in order {
            let node = &raw[position];
            let mut dims: &[Dimension] = &dimensions[position];
            let count = dims
                .iter()
                .try_fold(1usize, |count, dim| count.checked_mul(dim.values.len()));
            if count.is_none_or(|count| count > MAX_INSTANCES) {
                if let Some(first) = dims.first() {
                    self.reporter.error(
                        &first.origin,
                        format!(
                            "The matrix of node `{}` makes more than {MAX_INSTANCES} nodes",
                            node.name
                        ),
                        Some("sweep fewer values, or split the sweep".to_owned()),
                    );
                }
                dims = &[];
            }
            let mut instances = Vec::new();
            for combination in combinations(dims) {
                let own: Vec<Binding> = dims
                    .iter()
                    .zip(&combination)
                    .map(|(dim, &choice)| (dim.label.clone(), dim.values[choice].0.clone()))
                    .collect();
                let mut base = node.clone();
                base.entries.remove(MATRIX_KEY);
                let mut settings = Vec::new();
                for (dim, &choice) in dims.iter().zip(&combination) {
                    let (text, value) = &dim.values[choice];
                    match dim.path.strip_prefix("inputs.") {
                        Some(input) => {
                            base.inputs
                                .retain(|(name, _, _)| name.as_deref() != Some(input));
                            base.inputs.push((
                                Some(input.to_owned()),
                                text.clone(),
                                dim.origin.clone(),
                            ));
                        }
                        None => settings.push((
                            dim.origin.clone(),
                            Override {
                                target: format!("{}.{}", node.name, dim.path),
                                value: value.clone(),
                            },
                        )),
                    }
                }
                // Pair with every swept input's instances that agree with these values.
                let mut partial: Vec<(Vec<Binding>, RawNode)> = vec![(own, base)];
                let references: Vec<(usize, String)> = partial[0]
                    .1
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(slot, (_, reference, _))| (slot, reference.clone()))
                    .collect();
                for (slot, reference) in references {
                    let Some(&upstream) = index.get(&reference) else {
                        continue;
                    };
                    if dimensions_of(&made[upstream]).is_empty() {
                        continue;
                    }
                    if partial.len() * made[upstream].len() > MAX_INSTANCES * 10 {
                        let origin = node.header.clone();
                        self.reporter.error(
                            &origin,
                            format!(
                                "Node `{}` reads sweeps that cross into more than {MAX_INSTANCES} nodes",
                                node.name
                            ),
                            Some("give the sweeps a label in common, so they pair".to_owned()),
                        );
                        break;
                    }
                    let mut next = Vec::new();
                    for (bindings, node) in &partial {
                        for (name, theirs, _) in &made[upstream] {
                            if !agree(bindings, theirs) {
                                continue;
                            }
                            let mut bindings = bindings.clone();
                            for binding in theirs {
                                if !bindings.iter().any(|(label, _)| *label == binding.0) {
                                    bindings.push(binding.clone());
                                }
                            }
                            let mut node = node.clone();
                            node.inputs[slot].1 = name.clone();
                            next.push((bindings, node));
                        }
                    }
                    if next.is_empty() {
                        let wanted: Vec<String> = partial[0]
                            .0
                            .iter()
                            .map(|(l, v)| format!("{l}={v}"))
                            .collect();
                        let origin = node.header.clone();
                        self.reporter.error(
                            &origin,
                            format!(
                                "Node `{}` ({}) reads `{reference}`, which has no instance with the same values",
                                node.name,
                                wanted.join(",")
                            ),
                            Some(format!(
                                "sweep `{reference}` over the same values, or name one of its instances"
                            )),
                        );
                    }
                    partial = next;
                }
                for (bindings, mut instance) in partial {
                    let name = instance_name(&node.name, &bindings);
                    instance.name = name.clone();
                    let settings: Vec<(Origin, Override)> = settings
                        .iter()
                        .map(|(origin, item)| {
                            let path = item.target[node.name.len() + 1..].to_owned();
                            (
                                origin.clone(),
                                Override {
                                    target: format!("{name}.{path}"),
                                    value: item.value.clone(),
                                },
                            )
                        })
                        .collect();
                    instances.push((name, bindings, instance, settings));
                }
            }
            let mut list = Vec::new();
            for (name, bindings, instance, settings) in instances {
                if !bindings.is_empty() {
                    expansion
                        .instances
                        .entry(node.name.clone())
                        .or_default()
                        .push(name.clone());
                    expansion.bindings.insert(name.clone(), bindings.clone());
                }
                if !settings.is_empty() {
                    expansion.settings.insert(name.clone(), settings);
                }
                list.push((name, bindings, instance));
            }
            made[position] = list;
        }
        expansion.nodes = made
            .into_iter()
            .flat_map(|list| list.into_iter().map(|(_, _, node)| node))
            .collect();
        expansion
    }
}

/// The labels of a declaration's instances (all share them); empty when not swept.
fn dimensions_of(instances: &[(String, Vec<Binding>, RawNode)]) -> Vec<String> {
    instances
        .first()
        .map(|(_, bindings, _)| bindings.iter().map(|(label, _)| label.clone()).collect())
        .unwrap_or_default()
}

/// Whether two sets of bindings agree on every label they share.
fn agree(ours: &[Binding], theirs: &[Binding]) -> bool {
    theirs.iter().all(|(label, value)| {
        ours.iter()
            .find(|(our_label, _)| our_label == label)
            .is_none_or(|(_, our_value)| our_value == value)
    })
}

/// Every combination of one value per dimension, as value indices, the first dimension
/// varying slowest; one empty combination when there are no dimensions.
fn combinations(dimensions: &[Dimension]) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = vec![Vec::new()];
    for dimension in dimensions {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                (0..dimension.values.len()).map(move |choice| {
                    let mut next = prefix.clone();
                    next.push(choice);
                    next
                })
            })
            .collect();
    }
    all
}
