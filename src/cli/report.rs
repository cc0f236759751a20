//! `report`: the paper-style accuracy table across a workflow's evaluation nodes, printed,
//! and drawn as a grouped bar chart (PNG).
//!
//! A row is a node whose result holds a top-level `metrics.json` in the evaluation schema
//! (the `eval` kind's output; any other kind that writes `sets` counts too; other metrics
//! are for `peirce diff`), in the order the workflow file
//! declares the nodes. Results come from the store as `peirce status` sees them: a node's
//! current result, else (marked out of date) its latest earlier one. Nothing runs here: a
//! node without a result is named with the command that makes it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use peirce_dag::engine::PlanState;
use peirce_dag::runs::WorkflowRef;
use peirce_dag::spec::{base_name, instance_name, Binding, NodeSpec, Workflow};
use peirce_store::{Store, TreeDigest};
use serde_json::{json, Value};

use super::diff::METRICS_FILE;
use super::{load, run::engine, Globals, WorkflowArgs};

/// The kind whose nodes are rows even before they have a result.
const EVAL_KIND: &str = "eval";

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// Where to write the bar chart (PNG)
    #[arg(long, value_name = "FILE", default_value = "report.png")]
    out: PathBuf,
    /// Print the table as JSON (accuracies as fractions)
    #[arg(long)]
    json: bool,
}

/// One dataset's result in a `metrics.json`.
#[derive(Debug, Clone, PartialEq)]
struct SetResult {
    name: String,
    role: String,
    accuracy: f64,
    /// Prompts graded, when the file says.
    count: Option<u64>,
}

/// What the report reads of a `metrics.json`, after checking the whole file.
#[derive(Debug, Clone, PartialEq)]
struct Metrics {
    label: Option<String>,
    sets: Vec<SetResult>,
}

/// A JSON value's type, for messages.
fn type_name(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {text:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A fraction in [0, 1] at `key`.
fn fraction(value: &Value, key: &str) -> Result<f64, String> {
    match value.as_f64() {
        Some(number) if (0.0..=1.0).contains(&number) => Ok(number),
        _ => Err(format!(
            "`{key}` must be a number from 0 to 1, got {}",
            type_name(value)
        )),
    }
}

/// An optional value at `key` (absent or null is fine) that must pass `check` when present.
fn optional(
    object: &serde_json::Map<String, Value>,
    field: &str,
    key: &str,
    check: impl Fn(&Value) -> bool,
    expected: &str,
) -> Result<(), String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if check(value) => Ok(()),
        Some(value) => Err(format!(
            "`{key}` must be {expected}, got {}",
            type_name(value)
        )),
    }
}

/// Checks a set's per-level results: `{"1": {"accuracy": 0.6, "count": 32}, ...}`.
fn check_levels(value: &Value, key: &str) -> Result<(), String> {
    let Some(levels) = value.as_object() else {
        return Err(format!(
            "`{key}` must be an object of levels, got {}",
            type_name(value)
        ));
    };
    for (level, result) in levels {
        let key = format!("{key}.{level}");
        let Some(object) = result.as_object() else {
            return Err(format!(
                "`{key}` must be an object, got {}",
                type_name(result)
            ));
        };
        fraction(
            object.get("accuracy").unwrap_or(&Value::Null),
            &format!("{key}.accuracy"),
        )?;
        optional(
            object,
            "count",
            &format!("{key}.count"),
            |v| v.is_u64(),
            "a whole number",
        )?;
    }
    Ok(())
}

/// Parses and checks a `metrics.json`; the error names the offending key.
fn parse_metrics(bytes: &[u8]) -> Result<Metrics, String> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|error| format!("is not JSON: {error}"))?;
    let Some(top) = document.as_object() else {
        return Err(format!(
            "must be a JSON object, got {}",
            type_name(&document)
        ));
    };
    let label = match top.get("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(label)) if !label.trim().is_empty() => Some(label.clone()),
        Some(value) => {
            return Err(format!(
                "`label` must be a non-empty string, got {}",
                type_name(value)
            ))
        }
    };
    optional(top, "model", "model", Value::is_string, "a digest string")?;
    optional(top, "average", "average", Value::is_number, "a number")?;
    let sets = match top.get("sets") {
        Some(Value::Array(sets)) => sets,
        None => return Err("has no `sets` (the list of evaluated datasets)".into()),
        Some(value) => return Err(format!("`sets` must be an array, got {}", type_name(value))),
    };
    let mut results: Vec<SetResult> = Vec::with_capacity(sets.len());
    for (index, set) in sets.iter().enumerate() {
        let key = format!("sets[{index}]");
        let Some(object) = set.as_object() else {
            return Err(format!("`{key}` must be an object, got {}", type_name(set)));
        };
        let name = match object.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            other => {
                return Err(format!(
                    "`{key}.name` must be a non-empty string, got {}",
                    other.map_or("nothing".into(), type_name)
                ))
            }
        };
        if results.iter().any(|earlier| earlier.name == name) {
            return Err(format!("`{key}.name`: the set `{name}` appears twice"));
        }
        let role = match object.get("role") {
            Some(Value::String(role)) if !role.trim().is_empty() => role.clone(),
            other => {
                return Err(format!(
                    "`{key}.role` must be \"task\" or \"domain\", got {}",
                    other.map_or("nothing".into(), type_name)
                ))
            }
        };
        let accuracy = fraction(
            object.get("accuracy").unwrap_or(&Value::Null),
            &format!("{key}.accuracy"),
        )?;
        for field in ["reward", "response_length"] {
            optional(
                object,
                field,
                &format!("{key}.{field}"),
                Value::is_number,
                "a number",
            )?;
        }
        for field in ["count", "k"] {
            optional(
                object,
                field,
                &format!("{key}.{field}"),
                Value::is_u64,
                "a whole number",
            )?;
        }
        if let Some(value) = object.get("avg_at_k").filter(|v| !v.is_null()) {
            fraction(value, &format!("{key}.avg_at_k"))?;
        }
        if let Some(value) = object.get("levels").filter(|v| !v.is_null()) {
            check_levels(value, &format!("{key}.levels"))?;
        }
        results.push(SetResult {
            name,
            role,
            accuracy,
            count: object.get("count").and_then(Value::as_u64),
        });
    }
    Ok(Metrics {
        label,
        sets: results,
    })
}

/// A column: a dataset, by name, with the role it first appeared with.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    role: String,
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    node: String,
    kind: String,
    label: String,
    /// The node's sweep labels and values (docs/architecture.md §18).
    bindings: Vec<Binding>,
    output: TreeDigest,
    /// Why the shown result is out of date (empty: it is current).
    stale: Vec<String>,
    metrics: Metrics,
}

impl Row {
    fn accuracy(&self, column: &str) -> Option<f64> {
        self.metrics
            .sets
            .iter()
            .find(|set| set.name == column)
            .map(|set| set.accuracy)
    }

    /// The mean of the row's present cells.
    fn average(&self, columns: &[Column]) -> Option<f64> {
        let present: Vec<f64> = columns
            .iter()
            .filter_map(|column| self.accuracy(&column.name))
            .collect();
        (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
    }
}

/// Task sets first, then domain sets, then any other role; each in order of first
/// appearance down the rows.
fn columns(rows: &[Row]) -> Vec<Column> {
    let mut seen = BTreeSet::new();
    let mut columns: Vec<Column> = Vec::new();
    for row in rows {
        for set in &row.metrics.sets {
            if seen.insert(set.name.clone()) {
                columns.push(Column {
                    name: set.name.clone(),
                    role: set.role.clone(),
                });
            }
        }
    }
    let rank = |role: &str| match role {
        "task" => 0,
        "domain" => 1,
        _ => 2,
    };
    // A stable sort keeps first-appearance order within each role.
    columns.sort_by_key(|column| rank(&column.role));
    columns
}

/// An accuracy as a percentage with one decimal, `-` when absent.
fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |value| format!("{:.1}", value * 100.0))
}

/// A mean over seeds and the half-width of its 95% confidence interval (`None` for one
/// seed).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    mean: f64,
    half_width: Option<f64>,
    n: usize,
}

/// The 0.975 quantile of Student's t distribution with `df` degrees of freedom: the table
/// to 30, then the Cornish-Fisher expansion around the normal quantile (within 0.001 of
/// the exact value from 30 on).
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if (1..=30).contains(&df) {
        return TABLE[df - 1];
    }
    let (z, v): (f64, f64) = (1.959_963_985, df.max(1) as f64);
    z + (z.powi(3) + z) / (4.0 * v)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * v.powi(3))
}

/// The mean of `values` with its 95% confidence interval (Student t, sample standard
/// deviation); `None` for no values, no interval for one.
fn mean_ci95(values: &[f64]) -> Option<Interval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let half_width = (n >= 2).then(|| {
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t_975(n - 1) * (variance / n as f64).sqrt()
    });
    Some(Interval {
        mean,
        half_width,
        n,
    })
}

/// Whether a sweep label is a seed: rows that differ only in it are one model.
fn is_seed(label: &str) -> bool {
    label.eq_ignore_ascii_case("seed")
}

/// A line of the table: one row, or the rows of one model that differ only by seed,
/// aggregated.
#[derive(Debug)]
struct Line {
    label: String,
    /// Indices into the rows.
    rows: Vec<usize>,
    stale: bool,
    cells: Vec<Option<Interval>>,
    average: Option<Interval>,
    /// Prompts per seed over the line's sets, when every set says how many.
    prompts: Option<u64>,
}

impl Line {
    fn shown_label(&self) -> String {
        if self.stale {
            format!("{} *", self.label)
        } else {
            self.label.clone()
        }
    }
}

/// The table's lines, in the rows' order: rows whose sweep values differ only by seed
/// (`eval-merged[seed=1]`, `[seed=2]`, ...) are one line, its label without the seed.
fn lines(rows: &[Row], columns: &[Column]) -> Vec<Line> {
    // (label, whether it gathers seeds, rows)
    let mut groups: Vec<(String, bool, Vec<usize>)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if !row.bindings.iter().any(|(label, _)| is_seed(label)) {
            groups.push((row.label.clone(), false, vec![index]));
            continue;
        }
        let others: Vec<Binding> = row
            .bindings
            .iter()
            .filter(|(label, _)| !is_seed(label))
            .cloned()
            .collect();
        let label = if row.label == row.node {
            instance_name(base_name(&row.node), &others)
        } else if others.is_empty() {
            row.label.clone()
        } else {
            let inner: Vec<String> = others.iter().map(|(l, v)| format!("{l}={v}")).collect();
            format!("{} [{}]", row.label, inner.join(","))
        };
        match groups
            .iter_mut()
            .find(|(key, seeds, _)| *seeds && *key == label)
        {
            Some((_, _, members)) => members.push(index),
            None => groups.push((label, true, vec![index])),
        }
    }
    groups
        .into_iter()
        .map(|(label, _, members)| {
            let cells = columns
                .iter()
                .map(|column| {
                    let values: Vec<f64> = members
                        .iter()
                        .filter_map(|&m| rows[m].accuracy(&column.name))
                        .collect();
                    mean_ci95(&values)
                })
                .collect();
            let averages: Vec<f64> = members
                .iter()
                .filter_map(|&m| rows[m].average(columns))
                .collect();
            let first = &rows[members[0]];
            let prompts = first
                .metrics
                .sets
                .iter()
                .map(|set| set.count)
                .sum::<Option<u64>>();
            Line {
                label,
                stale: members.iter().any(|&m| !rows[m].stale.is_empty()),
                cells,
                average: mean_ci95(&averages),
                prompts,
                rows: members,
            }
        })
        .collect()
}

/// A cell: the percentage, with its interval when there is one (`41.0 ± 3.2`).
fn shown(interval: Option<Interval>) -> String {
    match interval {
        Some(Interval {
            mean,
            half_width: Some(half),
            ..
        }) => format!("{:.1} ± {:.1}", mean * 100.0, half * 100.0),
        other => percent(other.map(|interval| interval.mean)),
    }
}

/// The table as markdown, columns padded so it also reads well in a terminal; with seeds
/// aggregated, two more columns: how many seeds, and the prompts per seed.
fn render_table(lines: &[Line], columns: &[Column]) -> String {
    let seeds = lines.iter().any(|line| line.rows.len() > 1);
    let mut header = vec!["model".to_string()];
    header.extend(columns.iter().map(|column| column.name.clone()));
    header.push("Average".into());
    if seeds {
        header.extend(["seeds".into(), "prompts".into()]);
    }
    let body: Vec<Vec<String>> = lines
        .iter()
        .map(|line| {
            let mut cells = vec![line.shown_label()];
            cells.extend(line.cells.iter().map(|cell| shown(*cell)));
            cells.push(shown(line.average));
            if seeds {
                cells.push(line.rows.len().to_string());
                cells.push(line.prompts.map_or("-".into(), |p| p.to_string()));
            }
            cells
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&body)
                .map(|cells| cells[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, width)| {
            if i == 0 {
                "-".repeat(*width)
            } else {
                format!("{}:", "-".repeat(width - 1))
            }
        })
        .collect();
    let mut text = line(&header);
    text.push('\n');
    text.push_str(&format!("| {} |\n", rule.join(" | ")));
    for cells in &body {
        text.push_str(&line(cells));
        text.push('\n');
    }
    text
}

/// A node's result as the report sees it.
enum Found {
    /// The result for the workflow as it stands.
    Current(TreeDigest),
    /// An earlier result; the node would rerun for these reasons.
    Stale(TreeDigest, Vec<String>),
    /// No result at all.
    Missing,
}

/// Why a candidate row has no result, for the message.
struct Missing {
    node: String,
    reason: String,
}

/// The metrics of `node`'s result, or `None` when it holds no `metrics.json` (an error for
/// an `eval` node) or its tree is gone from the store.
async fn read_metrics(
    store: &Store,
    node: &NodeSpec,
    output: TreeDigest,
) -> anyhow::Result<Option<Metrics>> {
    let tree = match store.get_tree(output).await {
        Ok(tree) => tree,
        Err(error) => {
            tracing::debug!("node `{}`: tree `{output}` unreadable: {error}", node.name);
            return Ok(None);
        }
    };
    let Some(entry) = tree.get(METRICS_FILE) else {
        if node.kind == EVAL_KIND {
            bail!(
                "Node `{}` (kind `eval`) has no `{METRICS_FILE}` in its output `{output}`",
                node.name
            );
        }
        return Ok(None);
    };
    let bytes = store.get_bytes(entry.digest).await.with_context(|| {
        format!(
            "cannot read `{METRICS_FILE}` of node `{}` ({})",
            node.name, entry.digest
        )
    })?;
    // Any node may write metrics for `peirce diff`; only the evaluation schema (`sets`)
    // makes a row, and an `eval` node must write it.
    let evaluation = serde_json::from_slice::<Value>(&bytes)
        .map(|document| document.get("sets").is_some())
        .unwrap_or(true);
    if node.kind != EVAL_KIND && !evaluation {
        return Ok(None);
    }
    parse_metrics(&bytes).map(Some).map_err(|problem| {
        anyhow!(
            "Node `{}`: its `{METRICS_FILE}` ({}) {problem}",
            node.name,
            entry.digest
        )
    })
}

/// The report's rows, in declaration order, and the `eval` nodes without a result.
async fn collect(
    globals: &Globals,
    args: &ReportArgs,
    workflow: &Workflow,
) -> anyhow::Result<(Vec<Row>, Vec<Missing>)> {
    let engine = engine(globals, &args.workflow, workflow, &[])?;
    let planned = engine.plan(workflow).await?;
    let store = engine.store();
    let previous = WorkflowRef::load(store, &workflow.name).await;
    let mut nodes: Vec<&NodeSpec> = workflow.nodes.iter().collect();
    nodes.sort_by_key(|node| node.line);
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for node in nodes {
        let state = planned
            .iter()
            .find(|p| p.node == node.name)
            .map(|p| &p.state);
        let earlier = previous
            .as_ref()
            .and_then(|r| r.nodes.get(&node.name))
            .map(|r| r.output);
        let found = match (state, earlier) {
            (Some(PlanState::Cached { output, .. }), _) => Found::Current(*output),
            (Some(PlanState::Runs { reasons, .. }), Some(output)) => {
                Found::Stale(output, reasons.iter().map(ToString::to_string).collect())
            }
            _ => Found::Missing,
        };
        let (output, stale) = match found {
            Found::Current(output) => (output, Vec::new()),
            Found::Stale(output, reasons) => (output, reasons),
            Found::Missing => {
                if node.kind == EVAL_KIND {
                    missing.push(Missing {
                        node: node.name.clone(),
                        reason: "has never run".into(),
                    });
                }
                continue;
            }
        };
        match read_metrics(store, node, output).await? {
            Some(metrics) => rows.push(Row {
                node: node.name.clone(),
                kind: node.kind.clone(),
                label: metrics.label.clone().unwrap_or_else(|| node.name.clone()),
                bindings: node.bindings.clone(),
                output,
                stale,
                metrics,
            }),
            None if node.kind == EVAL_KIND => missing.push(Missing {
                node: node.name.clone(),
                reason: "has no result left in the store (removed by gc?)".into(),
            }),
            None => {}
        }
    }
    Ok((rows, missing))
}

pub async fn report(globals: &Globals, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let workflow = match load(&args.workflow) {
        Ok(workflow) => workflow,
        Err(code) => return Ok(code),
    };
    let (rows, missing) = collect(globals, &args, &workflow).await?;
    let run_command = format!("peirce run {}", args.workflow.workflow.display());
    let missing_text: Vec<String> = missing
        .iter()
        .map(|item| format!("`{}` {}", item.node, item.reason))
        .collect();
    if rows.is_empty() {
        if missing.is_empty() {
            bail!(
                "Workflow `{}` has no evaluation results: no node of kind `eval`, and no result holding a top-level `{METRICS_FILE}` (run it first: `{run_command}`)",
                workflow.name
            );
        }
        bail!(
            "No evaluation results yet: {}; `{run_command}` computes them",
            missing_text.join(", ")
        );
    }
    let columns = columns(&rows);
    let lines = lines(&rows, &columns);

    let mut groups: Vec<String> = columns.iter().map(|column| column.name.clone()).collect();
    groups.push("Average".into());
    let cells = |line: &Line| -> Vec<Option<Interval>> {
        line.cells.iter().copied().chain([line.average]).collect()
    };
    let series: Vec<(String, Vec<Option<f64>>)> = lines
        .iter()
        .map(|line| {
            let values = cells(line)
                .iter()
                .map(|c| c.map(|c| c.mean * 100.0))
                .collect();
            (line.shown_label(), values)
        })
        .collect();
    // Error bars: the 95% interval over seeds.
    let errors: Vec<Vec<Option<f64>>> = lines
        .iter()
        .map(|line| {
            cells(line)
                .iter()
                .map(|c| c.and_then(|c| c.half_width).map(|h| h * 100.0))
                .collect()
        })
        .collect();
    let chart = peirce_plot::render_bar_chart_with_errors(
        &format!("{}: accuracy", workflow.name),
        &groups,
        &series,
        &errors,
        "accuracy (%)",
    )?;

    if args.json {
        let json = json!({
            "workflow": workflow.name,
            "columns": columns.iter().map(|c| json!({"name": c.name, "role": c.role})).collect::<Vec<_>>(),
            "rows": lines.iter().map(|line| {
                let first = &rows[line.rows[0]];
                let members = line.rows.iter().map(|&m| &rows[m]);
                json!({
                    "node": first.node,
                    "nodes": members.clone().map(|row| row.node.clone()).collect::<Vec<_>>(),
                    "kind": first.kind,
                    "label": line.label,
                    "output": first.output.to_string(),
                    "up_to_date": !line.stale,
                    "stale_reasons": members.flat_map(|row| row.stale.clone()).collect::<Vec<_>>(),
                    "accuracy": line.cells.iter().map(|c| c.map(|c| c.mean)).collect::<Vec<_>>(),
                    "ci95": line.cells.iter().map(|c| c.and_then(|c| c.half_width)).collect::<Vec<_>>(),
                    "average": line.average.map(|c| c.mean),
                    "average_ci95": line.average.and_then(|c| c.half_width),
                    "seeds": line.rows.len(),
                    "prompts": line.prompts,
                })
            }).collect::<Vec<_>>(),
            "missing": missing.iter().map(|m| json!({"node": m.node, "reason": m.reason})).collect::<Vec<_>>(),
            "chart": args.out.display().to_string(),
            "chart_warning": chart.warning,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", render_table(&lines, &columns));
    }
    for row in rows.iter().filter(|row| !row.stale.is_empty()) {
        eprintln!(
            "* `{}` shows an earlier result, out of date ({}): `{run_command}` updates it",
            row.node,
            row.stale.join("; ")
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "not yet evaluated: {}; `{run_command}` computes them",
            missing_text.join(", ")
        );
    }
    chart.write(&args.out)?;
    if let Some(warning) = &chart.warning {
        eprintln!("warning: {warning}");
    }
    eprintln!("chart written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, sets: &[(&str, &str, f64)]) -> Row {
        Row {
            node: label.into(),
            kind: "eval".into(),
            label: label.into(),
            output: "blake3:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
            bindings: Vec::new(),
            stale: Vec::new(),
            metrics: Metrics {
                label: Some(label.into()),
                sets: sets
                    .iter()
                    .map(|(name, role, accuracy)| SetResult {
                        name: name.to_string(),
                        role: role.to_string(),
                        accuracy: *accuracy,
                        count: Some(100),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn columns_put_tasks_first_in_order_of_appearance() {
        let rows = [
            row(
                "a",
                &[("arithmetic", "domain", 0.1), ("induction", "task", 0.2)],
            ),
            row("b", &[("deduction", "task", 0.3), ("math", "domain", 0.4)]),
        ];
        let names: Vec<String> = columns(&rows).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["induction", "deduction", "arithmetic", "math"]);
    }

    #[test]
    fn table_shows_percentages_and_the_mean_of_present_cells() {
        let rows = [
            row(
                "start",
                &[("deduction", "task", 0.126), ("induction", "task", 0.5)],
            ),
            row("merged", &[("deduction", "task", 0.41)]),
        ];
        let columns = columns(&rows);
        let text = render_table(&lines(&rows, &columns), &columns);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "| model  | deduction | induction | Average |");
        assert_eq!(lines[1], "| ------ | --------: | --------: | ------: |");
        assert_eq!(lines[2], "| start  |      12.6 |      50.0 |    31.3 |");
        assert_eq!(lines[3], "| merged |      41.0 |         - |    41.0 |");
    }

    #[test]
    fn metrics_are_checked_key_by_key() {
        let good = br#"{"label": "merged", "model": null, "average": 0.35,
            "sets": [{"name": "deduction", "role": "task", "accuracy": 0.41, "reward": 0.9,
                      "response_length": 85.2, "count": 64, "k": 1, "avg_at_k": null,
                      "levels": {"1": {"accuracy": 0.6, "count": 32}}}]}"#;
        let metrics = parse_metrics(good).unwrap();
        assert_eq!(metrics.label.as_deref(), Some("merged"));
        assert_eq!(metrics.sets[0].accuracy, 0.41);
        let cases: [(&str, &str); 9] = [
            ("[1]", "must be a JSON object"),
            ("{\"label\": \"x\"}", "has no `sets`"),
            ("{\"sets\": {}}", "`sets` must be an array"),
            ("{\"sets\": [{\"role\": \"task\", \"accuracy\": 0.1}]}", "`sets[0].name`"),
            (
                "{\"sets\": [{\"name\": \"d\", \"role\": \"task\", \"accuracy\": \"high\"}]}",
                "`sets[0].accuracy` must be a number from 0 to 1, got the string \"high\"",
            ),
            ("{\"sets\": [{\"name\": \"d\", \"role\": \"task\", \"accuracy\": 41}]}", "`sets[0].accuracy`"),
            ("{\"sets\": [{\"name\": \"d\", \"accuracy\": 0.4}]}", "`sets[0].role`"),
            (
                "{\"sets\": [{\"name\": \"d\", \"role\": \"task\", \"accuracy\": 0.4, \"levels\": {\"2\": {\"accuracy\": 2}}}]}",
                "`sets[0].levels.2.accuracy`",
            ),
            (
                "{\"sets\": [{\"name\": \"d\", \"role\": \"task\", \"accuracy\": 0.4}, {\"name\": \"d\", \"role\": \"task\", \"accuracy\": 0.4}]}",
                "appears twice",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_metrics(text.as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(parse_metrics(b"{not json")
            .unwrap_err()
            .starts_with("is not JSON"));
    }

    #[test]
    fn student_t_quantiles_match_the_tables() {
        for (df, expected) in [
            (1, 12.706),
            (2, 4.303),
            (4, 2.776),
            (10, 2.228),
            (30, 2.042),
            (40, 2.021),
            (60, 2.000),
            (120, 1.980),
            (100_000, 1.960),
        ] {
            assert!(
                (t_975(df) - expected).abs() < 1e-3,
                "df {df}: {}",
                t_975(df)
            );
        }
    }

    #[test]
    fn mean_and_95_percent_interval_over_seeds() {
        // Mean 0.3, sample sd 0.1, n 3: 4.303 x 0.1 / sqrt(3) = 0.24844.
        let interval = mean_ci95(&[0.2, 0.3, 0.4]).unwrap();
        assert!((interval.mean - 0.3).abs() < 1e-12);
        assert!(
            (interval.half_width.unwrap() - 0.248_434).abs() < 1e-5,
            "{interval:?}"
        );
        assert_eq!(interval.n, 3);
        // Identical values: a zero-width interval; one value: none; no values: nothing.
        assert_eq!(mean_ci95(&[0.5, 0.5]).unwrap().half_width, Some(0.0));
        assert_eq!(mean_ci95(&[0.5]).unwrap().half_width, None);
        assert!(mean_ci95(&[]).is_none());
    }

    #[test]
    fn rows_that_differ_only_by_seed_are_one_line_with_intervals() {
        let seeded = |seed: &str, accuracy: f64| {
            let mut row = row("Merged", &[("deduction", "task", accuracy)]);
            row.node = format!("eval-merged[seed={seed}]");
            row.bindings = vec![("seed".into(), seed.into())];
            row
        };
        let mut other = row("eval-w[w=0.1,seed=1]", &[("deduction", "task", 0.9)]);
        other.bindings = vec![("w".into(), "0.1".into()), ("seed".into(), "1".into())];
        let rows = [
            row("start", &[("deduction", "task", 0.1)]),
            seeded("1", 0.2),
            seeded("2", 0.3),
            seeded("3", 0.4),
            other,
        ];
        let columns = columns(&rows);
        let found = lines(&rows, &columns);
        let labels: Vec<&str> = found.iter().map(|line| line.label.as_str()).collect();
        assert_eq!(labels, ["start", "Merged", "eval-w[w=0.1]"]);
        assert_eq!(found[1].rows, [1, 2, 3]);
        assert_eq!(found[1].prompts, Some(100));
        let text = render_table(&lines(&rows, &columns), &columns);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "| model         |   deduction |     Average | seeds | prompts |"
        );
        assert_eq!(
            lines[3],
            "| Merged        | 30.0 ± 24.8 | 30.0 ± 24.8 |     3 |     100 |"
        );
        assert_eq!(
            lines[2],
            "| start         |        10.0 |        10.0 |     1 |     100 |"
        );
    }
}
