//! The engine side of the worker protocol, and the `worker` kind.
//!
//! Heavy kinds (anything linking libtorch) run in a separate process per node: the engine
//! writes the node's spec to `node.json` in the scratch folder and starts the worker with
//! that path as its last argument (also in `PEIRCE_NODE_SPEC`). The worker writes its
//! outputs into `output_dir` and reports on stdout, one JSON object per line.
//! The spec and the lines are [`peirce_protocol`]'s types (docs/architecture.md §7).
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
use peirce_protocol::{ErrorClass, Event, WorkerError, WorkerSpec, PROTOCOL};

use crate::process::{node_environment, pass_env_param, run_process, Line, ProcessSpec};

/// One protocol line, as an engine event or the worker's error; `None` for log lines.
fn parse_line(line: &str) -> Option<Result<NodeEvent, WorkerError>> {
    Some(match Event::parse(line)? {
        Event::Progress {
            done,
            total,
            message,
        } => Ok(NodeEvent::Progress {
            done,
            total,
            message,
        }),
        Event::Metric(fields) => Ok(NodeEvent::Metric(serde_json::Value::Object(fields))),
        Event::Message { text } => Ok(NodeEvent::Message(text)),
        Event::Error(error) => Err(error),
    })
}

/// The engine's error for a worker that exited with `exit` after reporting `reported`.
fn classify(reported: Option<WorkerError>, exit: String) -> NodeError {
    match reported {
        None => NodeError::Failed(exit),
        Some(WorkerError { class, message }) => {
            let message = format!("{message} ({exit})");
            match class {
                ErrorClass::BadInput => NodeError::BadInput(message),
                ErrorClass::Transient => NodeError::Transient(message),
                ErrorClass::Failed => NodeError::Failed(message),
            }
        }
    }
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
        kind: kind.to_string(),
        node: context.node.clone(),
        workflow: context.workflow.clone(),
        params,
        inputs: context.inputs.clone(),
        output_dir: context.output_dir.clone(),
        scratch_dir: context.scratch_dir.clone(),
        cpus: context.cpus,
        gpus: context.gpus.clone(),
    };
    let spec_path = context.scratch_dir.join("node.json");
    spec.write(&spec_path).map_err(|error| {
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
    let reported: Arc<Mutex<Option<WorkerError>>> = Arc::default();
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
        Err(NodeError::Failed(exit)) => {
            Err(classify(reported.lock().expect("error slot").take(), exit))
        }
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
            pass_env_param(),
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
        assert!(matches!(error, Some(Err(ref e)) if e == &WorkerError::bad_input("no such model")));
        assert!(parse_line("plain text").is_none());
        assert!(parse_line("{not json").is_none());
        assert!(parse_line(r#"{"event":"unknown"}"#).is_none());
        assert!(matches!(
            parse_line(r#"{"event":"metric","loss":1.5}"#),
            Some(Ok(NodeEvent::Metric(_)))
        ));
    }

    #[test]
    fn reported_errors_classify_the_failure() {
        let exit = || "exit status 1".to_string();
        assert_eq!(
            classify(Some(WorkerError::bad_input("no model")), exit()),
            NodeError::BadInput("no model (exit status 1)".into())
        );
        assert_eq!(
            classify(Some(WorkerError::transient("oom")), exit()),
            NodeError::Transient("oom (exit status 1)".into())
        );
        assert_eq!(classify(None, exit()), NodeError::Failed(exit()));
    }
}
