//! The engine side of the worker protocol, and the `worker` kind.
//!
//! Heavy kinds (anything linking libtorch) run in a separate process per node: the engine
//! writes the node's spec to `node.json` in the scratch folder and starts the worker with
//! that path as its last argument (also in `PEIRCE_NODE_SPEC`). The worker writes its
//! outputs into `output_dir` and reports on stdout, one JSON object per line:
//!
//! ```text
//! {"event":"progress","done":3,"total":100,"message":"step 3"}
//! {"event":"metric", ...any fields...}
//! {"event":"message","text":"loaded model"}
//! {"event":"error","class":"bad_input"|"transient"|"failed","message":"..."}
//! ```
//!
//! Other stdout lines and all of stderr go to the node's log. Exit status 0 means success;
//! anything else fails the node (classified by the last `error` event, if any), and a crash
//! fails only that node. The `worker` kind starts any program that speaks this protocol;
//! the torch kinds are the same machinery with `peirce-worker` as the program.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeEvent, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use peirce_dag::value::Value;
use serde::Serialize;

use crate::process::{node_environment, run_process, Line, ProcessSpec};

/// The protocol version written into every spec.
pub const PROTOCOL: u32 = 1;

/// What the worker reads from `node.json`.
#[derive(Debug, Serialize)]
pub struct WorkerSpec<'a> {
    /// Protocol version.
    pub protocol: u32,
    /// The node kind the worker should execute.
    pub kind: &'a str,
    /// Node name.
    pub node: &'a str,
    /// Workflow name.
    pub workflow: &'a str,
    /// Parameters, as JSON.
    pub params: serde_json::Value,
    /// Input name to path.
    pub inputs: BTreeMap<String, String>,
    /// Where outputs go.
    pub output_dir: String,
    /// A private folder.
    pub scratch_dir: String,
    /// CPU threads granted.
    pub cpus: u32,
    /// GPU ids granted (also in `CUDA_VISIBLE_DEVICES`).
    pub gpus: Vec<u32>,
}

/// One protocol line, parsed. Returns `None` for lines that are not protocol messages.
fn parse_line(line: &str) -> Option<Result<NodeEvent, NodeError>> {
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(trimmed).ok()?;
    let event = json.get("event")?.as_str()?;
    let text = |field: &str| {
        json.get(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some(match event {
        "progress" => Ok(NodeEvent::Progress {
            done: json.get("done").and_then(|v| v.as_u64()).unwrap_or(0),
            total: json.get("total").and_then(|v| v.as_u64()).unwrap_or(0),
            message: text("message"),
        }),
        "metric" => Ok(NodeEvent::Metric(json)),
        "message" => Ok(NodeEvent::Message(text("text"))),
        "error" => Err(match text("class").as_str() {
            "bad_input" => NodeError::BadInput(text("message")),
            "transient" => NodeError::Transient(text("message")),
            _ => NodeError::Failed(text("message")),
        }),
        _ => return None,
    })
}

/// Runs `program args... <node.json>` under the worker protocol.
pub async fn run_worker(
    kind: &str,
    program: &str,
    args: &[String],
    params: serde_json::Value,
    context: &NodeContext,
) -> Result<(), NodeError> {
    let spec = WorkerSpec {
        protocol: PROTOCOL,
        kind,
        node: &context.node,
        workflow: &context.workflow,
        params,
        inputs: context
            .inputs
            .iter()
            .map(|(name, path)| (name.clone(), path.display().to_string()))
            .collect(),
        output_dir: context.output_dir.display().to_string(),
        scratch_dir: context.scratch_dir.display().to_string(),
        cpus: context.cpus,
        gpus: context.gpus.clone(),
    };
    let spec_path = context.scratch_dir.join("node.json");
    let bytes = serde_json::to_vec_pretty(&spec).expect("worker specs serialize");
    std::fs::write(&spec_path, bytes).map_err(|error| {
        NodeError::Internal(format!("cannot write `{}`: {error}", spec_path.display()))
    })?;
    let mut env = node_environment(context, &context.output_dir);
    env.insert("PEIRCE_NODE_SPEC".into(), spec_path.display().to_string());
    env.insert("OMP_NUM_THREADS".into(), context.cpus.to_string());
    let mut argv = args.to_vec();
    argv.push(spec_path.display().to_string());
    let process = ProcessSpec {
        program: program.to_string(),
        args: argv,
        env,
        cwd: context.scratch_dir.clone(),
    };
    let reported: Arc<Mutex<Option<NodeError>>> = Arc::default();
    let events = context.events.clone();
    let seen = reported.clone();
    let result = run_process(&process, context, move |line| match parse_line(line) {
        Some(Ok(event)) => {
            let _ = events.send(event);
            Line::Consumed
        }
        Some(Err(error)) => {
            *seen.lock().expect("error slot") = Some(error);
            Line::Log
        }
        None => Line::Log,
    })
    .await;
    match result {
        Err(NodeError::Failed(exit)) => match reported.lock().expect("error slot").take() {
            Some(NodeError::BadInput(message)) => {
                Err(NodeError::BadInput(format!("{message} ({exit})")))
            }
            Some(NodeError::Transient(message)) => {
                Err(NodeError::Transient(format!("{message} ({exit})")))
            }
            Some(NodeError::Failed(message)) => {
                Err(NodeError::Failed(format!("{message} ({exit})")))
            }
            _ => Err(NodeError::Failed(exit)),
        },
        other => other,
    }
}

/// The `worker` kind: any program that speaks the worker protocol.
pub struct Worker;

impl Worker {
    /// Bump when the meaning of a worker node's output changes.
    pub const VERSION: u32 = 1;
}

#[async_trait]
impl NodeKind for Worker {
    fn name(&self) -> &'static str {
        "worker"
    }

    fn version(&self) -> u32 {
        Self::VERSION
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required(
                "program",
                ParamType::String,
                "The worker program (path or name on PATH)",
            ),
            ParamSpec::optional(
                "args",
                ParamType::list(ParamType::String),
                Some(Value::List(Vec::new())),
                "Arguments before the spec path",
            ),
            ParamSpec::optional(
                "config",
                ParamType::Table,
                Some(Value::Table(BTreeMap::new())),
                "Free-form configuration passed to the worker as `params`",
            ),
        ]
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        let program = context
            .params
            .get("program")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let args: Vec<String> = context
            .params
            .get("args")
            .and_then(Value::as_list)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let config = context
            .params
            .get("config")
            .map(Value::to_json)
            .unwrap_or_default();
        run_worker("worker", &program, &args, config, &context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocol_lines() {
        let progress = parse_line(r#"{"event":"progress","done":3,"total":10,"message":"step"}"#);
        assert!(matches!(
            progress,
            Some(Ok(NodeEvent::Progress {
                done: 3,
                total: 10,
                ..
            }))
        ));
        let error =
            parse_line(r#"{"event":"error","class":"bad_input","message":"no such model"}"#);
        assert!(matches!(error, Some(Err(NodeError::BadInput(ref m))) if m == "no such model"));
        assert!(parse_line("plain text").is_none());
        assert!(parse_line("{not json").is_none());
        assert!(parse_line(r#"{"event":"unknown"}"#).is_none());
        assert!(matches!(
            parse_line(r#"{"event":"metric","loss":1.5}"#),
            Some(Ok(NodeEvent::Metric(_)))
        ));
    }
}
