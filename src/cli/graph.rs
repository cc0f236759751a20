//! `dag`: a workflow's graph as Graphviz DOT or Mermaid, from the file alone (nothing is
//! hashed, planned or run). Nodes are labelled with their name and kind, edges with the
//! input name; external inputs are drawn as their own boxes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use peirce_dag::spec::{InputRef, Workflow};

use super::{load, WorkflowArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Graphviz: `peirce dag wf.toml | dot -Tsvg > dag.svg`
    Dot,
    /// Mermaid, for markdown (GitHub renders ```mermaid blocks)
    Mermaid,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

/// One edge: from a node (index) or an external path (index into `paths`), to a node.
struct Edge {
    from: Source,
    to: usize,
    input: String,
}

enum Source {
    Node(usize),
    Path(usize),
}

impl Source {
    /// Its id in both formats: `n3` for a node, `p0` for an external path.
    fn id(&self) -> String {
        match self {
            Source::Node(i) => format!("n{i}"),
            Source::Path(i) => format!("p{i}"),
        }
    }
}

/// The graph in drawing order: nodes as the workflow orders them, external paths by
/// first use.
struct Graph {
    nodes: Vec<(String, String)>,
    paths: Vec<String>,
    edges: Vec<Edge>,
}

fn graph(workflow: &Workflow) -> Graph {
    let index: BTreeMap<&str, usize> = workflow
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.name.as_str(), i))
        .collect();
    let mut paths: Vec<String> = Vec::new();
    let mut edges = Vec::new();
    for (to, node) in workflow.nodes.iter().enumerate() {
        for (input, reference) in &node.inputs {
            let from = match reference {
                InputRef::Node(name) => match index.get(name.as_str()) {
                    Some(&from) => Source::Node(from),
                    None => continue,
                },
                InputRef::Path(path) => {
                    let shown = path.display().to_string();
                    let at = paths.iter().position(|p| *p == shown).unwrap_or_else(|| {
                        paths.push(shown);
                        paths.len() - 1
                    });
                    Source::Path(at)
                }
            };
            edges.push(Edge {
                from,
                to,
                input: input.clone(),
            });
        }
    }
    Graph {
        nodes: workflow
            .nodes
            .iter()
            .map(|node| (node.name.clone(), node.kind.clone()))
            .collect(),
        paths,
        edges,
    }
}

/// A DOT string literal.
fn dot_quoted(text: &str) -> String {
    format!("\"{}\"", dot_escaped(text))
}

/// Text inside a DOT string literal.
fn dot_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(name: &str, graph: &Graph) -> String {
    let mut text = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
        dot_quoted(name)
    );
    for (i, (node, kind)) in graph.nodes.iter().enumerate() {
        // `\n`, escaped: a line break in Graphviz's labels.
        let label = format!("\"{}\\n{}\"", dot_escaped(node), dot_escaped(kind));
        let _ = writeln!(text, "  n{i} [label={label}];");
    }
    for (i, path) in graph.paths.iter().enumerate() {
        let _ = writeln!(text, "  p{i} [label={}, shape=note];", dot_quoted(path));
    }
    for edge in &graph.edges {
        let from = edge.from.id();
        let _ = writeln!(
            text,
            "  {from} -> n{} [label={}];",
            edge.to,
            dot_quoted(&edge.input)
        );
    }
    text.push_str("}\n");
    text
}

/// A Mermaid label: quoted, with the characters Mermaid reads as markup escaped.
fn mermaid_quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "#quot;"))
}

fn mermaid(graph: &Graph) -> String {
    let mut text = String::from("flowchart LR\n");
    for (i, (node, kind)) in graph.nodes.iter().enumerate() {
        let _ = writeln!(
            text,
            "  n{i}[{}]",
            mermaid_quoted(&format!("{node}<br/>{kind}"))
        );
    }
    for (i, path) in graph.paths.iter().enumerate() {
        let _ = writeln!(text, "  p{i}[/{}/]", mermaid_quoted(path));
    }
    for edge in &graph.edges {
        let from = edge.from.id();
        let _ = writeln!(
            text,
            "  {from} -->|{}| n{}",
            mermaid_quoted(&edge.input),
            edge.to
        );
    }
    text
}

pub fn dag(args: DagArgs) -> anyhow::Result<ExitCode> {
    let workflow = match load(&args.workflow) {
        Ok(workflow) => workflow,
        Err(code) => return Ok(code),
    };
    let graph = graph(&workflow);
    let text = match args.format {
        Format::Dot => dot(&workflow.name, &graph),
        Format::Mermaid => mermaid(&graph),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
