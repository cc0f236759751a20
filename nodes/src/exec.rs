//! `exec`: run any command, inputs as paths, outputs from a folder.
//!
//! The command runs in a private working folder. Inputs are given as environment variables
//! (`PEIRCE_INPUT_<NAME>`) and by substitution (`{inputs.name}`, `{out}`, `{node}`); the
//! folder named by `outputs` (default `out`, also `$PEIRCE_OUT`) becomes the node's output
//! tree. A string command runs through `sh -c`; an array runs as argv without a shell.
//! `env` sets variables; `pass_env` names credentials of peirce's environment that the
//! command may see (by default it sees none, see [`crate::process::is_credential`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeEvent, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use peirce_dag::spec::NodeSpec;
use peirce_dag::value::Value;

use crate::process::{node_environment, pass_env_param, run_process, Line, ProcessSpec};

/// The `exec` kind.
pub struct Exec;

impl Exec {
    /// Bump when the meaning of an exec node's output changes.
    pub const VERSION: u32 = 1;
}

/// Replaces `{inputs.NAME}`, `{out}` and `{node}`. Any other brace text is left alone, so
/// shell and awk syntax (`${HOME}`, `{print $1}`) passes through untouched.
fn substitute(
    text: &str,
    node: &str,
    inputs: &BTreeMap<String, PathBuf>,
    output: &str,
) -> Result<String, NodeError> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        result.push_str(&rest[..start]);
        let tail = &rest[start..];
        let placeholder = tail[1..].find('}').map(|end| &tail[1..end + 1]);
        let value = match placeholder {
            Some("out") => Some(output.to_string()),
            Some("node") => Some(node.to_string()),
            Some(name) if name.starts_with("inputs.") => {
                let input = &name["inputs.".len()..];
                match inputs.get(input) {
                    Some(path) => Some(path.display().to_string()),
                    None => {
                        let known: Vec<&str> = inputs.keys().map(String::as_str).collect();
                        return Err(NodeError::BadInput(format!(
                            "command refers to `{{{name}}}` but the node has no input `{input}` (inputs: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        )));
                    }
                }
            }
            _ => None,
        };
        match (value, placeholder) {
            (Some(value), Some(name)) => {
                result.push_str(&value);
                rest = &tail[name.len() + 2..];
            }
            _ => {
                result.push('{');
                rest = &tail[1..];
            }
        }
    }
    result.push_str(rest);
    Ok(result)
}

/// What `outputs` says: the folder that becomes the node's output, and the files (`name`)
/// and folders (`name/`) the command must leave in it.
#[derive(Debug, PartialEq)]
struct Outputs {
    folder: String,
    declared: Vec<String>,
}

/// Whether `path` stays inside the folder it is relative to.
fn is_inside(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|part| part == "..")
}

/// `outputs` as a folder name (`"out"`, the default), or as the list of files and folders
/// the command must write into `out/` (`["model.json", "metrics/"]`).
fn outputs(params: &BTreeMap<String, Value>) -> Result<Outputs, String> {
    match params.get("outputs") {
        Some(Value::List(items)) => {
            let mut declared = Vec::with_capacity(items.len());
            for item in items {
                let name = item.as_str().unwrap_or_default();
                if !is_inside(name.trim_end_matches('/')) {
                    return Err(format!(
                        "`outputs` lists files and folders inside `out/`, such as \"model.json\" \
                         or \"metrics/\", got {name:?}"
                    ));
                }
                declared.push(name.to_string());
            }
            Ok(Outputs {
                folder: "out".into(),
                declared,
            })
        }
        other => {
            let folder = other.and_then(Value::as_str).unwrap_or("out").to_string();
            if !is_inside(&folder) {
                return Err(format!(
                    "`outputs` must be a relative folder inside the working folder, got {folder:?}"
                ));
            }
            Ok(Outputs {
                folder,
                declared: Vec::new(),
            })
        }
    }
}

/// Where an exec command runs and how it reaches files beside the workflow: the hint of every
/// failure that looks like a command looking for its files in the wrong place.
fn private_folder_hint(work: &Path, folder: &str) -> String {
    format!(
        "the command runs in a private working folder (`{}`), not in the workflow's folder: \
         it writes its results into `{folder}/` there (also `$PEIRCE_OUT`), and a file beside \
         the workflow (a script, data) reaches it only as an input, e.g. \
         `inputs = {{ script = \"./prep.py\" }}` with `command = \"python3 {{inputs.script}}\"`",
        work.display()
    )
}

/// Whether the end of the log says a file or program was not found.
fn log_says_not_found(log: &Path) -> bool {
    let Some((text, _)) = peirce_dag::kind::read_log_end(log, 0, 16 * 1024) else {
        return false;
    };
    ["No such file", "can't open file", ": not found"]
        .iter()
        .any(|sign| text.contains(sign))
}

/// The names of the files under `folder`, relative to it, sorted.
fn files_under(folder: &Path) -> Vec<String> {
    fn walk(root: &Path, folder: &Path, found: &mut Vec<String>) {
        let Ok(reader) = std::fs::read_dir(folder) else {
            return;
        };
        for item in reader.flatten() {
            let path = item.path();
            if path.is_dir() {
                walk(root, &path, found);
            } else if let Ok(name) = path.strip_prefix(root) {
                found.push(name.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(folder, folder, &mut found);
    found.sort();
    found
}

/// Checks what the command left in `output` (the node's output folder): every declared
/// output present (a name ending in `/` is a folder), and something at all unless the node
/// says `allow_empty = true`.
fn check_outputs(
    output: &Path,
    outputs: &Outputs,
    allow_empty: bool,
    work: &Path,
) -> Result<(), NodeError> {
    let written = files_under(output);
    let missing: Vec<&str> = outputs
        .declared
        .iter()
        .filter(|name| {
            let path = output.join(name.trim_end_matches('/'));
            if name.ends_with('/') {
                !path.is_dir()
            } else {
                !path.is_file()
            }
        })
        .map(String::as_str)
        .collect();
    let folder = &outputs.folder;
    let hint = private_folder_hint(work, folder);
    if !missing.is_empty() {
        let shown: Vec<&str> = written.iter().take(10).map(String::as_str).collect();
        let wrote = match written.len() {
            0 => "nothing".to_string(),
            count if count > shown.len() => {
                format!("{} and {} more", shown.join(", "), count - shown.len())
            }
            _ => shown.join(", "),
        };
        return Err(NodeError::Failed(format!(
            "the command did not write its declared output{} `{}` into `{folder}/` (it wrote {wrote}); {hint}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join("`, `")
        )));
    }
    if written.is_empty() && !allow_empty {
        return Err(NodeError::Failed(format!(
            "the command wrote nothing into its output folder `{folder}/`; {hint}. A node meant \
             to output nothing says `allow_empty = true`"
        )));
    }
    Ok(())
}

#[async_trait]
impl NodeKind for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn version(&self) -> u32 {
        Self::VERSION
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required(
                "command",
                ParamType::either(ParamType::String, ParamType::list(ParamType::String)),
                "The command: a string for `sh -c`, or an array of program and arguments",
            ),
            ParamSpec::optional(
                "outputs",
                ParamType::either(ParamType::String, ParamType::list(ParamType::String)),
                Some(Value::String("out".into())),
                "The folder, relative to the working folder, collected as the node's output; or \
                 the files (`model.json`) and folders (`metrics/`) the command must write into \
                 `out/`, checked after it ran",
            ),
            // No default, so nodes without it keep their keys.
            ParamSpec::optional(
                "allow_empty",
                ParamType::Bool,
                None,
                "Whether the node may output nothing (otherwise an empty output folder fails it)",
            ),
            ParamSpec::optional(
                "env",
                ParamType::map(ParamType::String),
                Some(Value::Table(BTreeMap::new())),
                "Extra environment variables",
            ),
            pass_env_param(),
        ]
    }

    fn validate(&self, node: &NodeSpec) -> Result<(), String> {
        outputs(&node.params)?;
        let texts: Vec<&str> = match node.params.get("command") {
            Some(Value::String(command)) => vec![command.as_str()],
            Some(Value::List(items)) if items.is_empty() => {
                return Err("`command` is an empty array".into())
            }
            Some(Value::List(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        // Every `{inputs.NAME}` names an input: substituted with placeholder paths here, so
        // the check is the one the run makes.
        let inputs: BTreeMap<String, PathBuf> = node
            .inputs
            .keys()
            .map(|name| (name.clone(), PathBuf::new()))
            .collect();
        for text in texts {
            substitute(text, &node.name, &inputs, "").map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        let outputs = outputs(&context.params).map_err(NodeError::BadInput)?;
        let folder = outputs.folder.clone();
        let work = context.scratch_dir.join("work");
        let output = work.join(&folder);
        std::fs::create_dir_all(&output).map_err(|error| {
            NodeError::Internal(format!("cannot create `{}`: {error}", output.display()))
        })?;
        let output_text = output.display().to_string();
        let (program, args) = match context.params.get("command") {
            Some(Value::String(command)) => (
                "sh".to_string(),
                vec![
                    "-c".to_string(),
                    substitute(command, &context.node, &context.inputs, &output_text)?,
                ],
            ),
            Some(Value::List(items)) => {
                let mut argv = Vec::with_capacity(items.len());
                for item in items {
                    let text = item.as_str().ok_or_else(|| {
                        NodeError::BadInput("`command` items must be strings".into())
                    })?;
                    argv.push(substitute(
                        text,
                        &context.node,
                        &context.inputs,
                        &output_text,
                    )?);
                }
                let program = argv.remove(0);
                (program, argv)
            }
            _ => return Err(NodeError::BadInput("`command` is missing".into())),
        };
        let mut env = node_environment(&context, &output);
        if let Some(Value::Table(extra)) = context.params.get("env") {
            for (name, value) in extra {
                if let Some(value) = value.as_str() {
                    env.insert(name.clone(), value.to_string());
                }
            }
        }
        let spec = ProcessSpec {
            program,
            args,
            env,
            cwd: work.clone(),
        };
        let events = context.events.clone();
        run_process(&spec, &context, |line| {
            let _ = events.send(NodeEvent::Progress {
                done: 0,
                total: 0,
                message: line.chars().take(120).collect(),
            });
            Line::Log
        })
        .await
        .map_err(|error| match error {
            // A command that did not find its script or data: say where it ran.
            NodeError::Failed(message) if log_says_not_found(&context.log_path) => {
                NodeError::Failed(format!(
                    "{message}; {}",
                    private_folder_hint(&work, &folder)
                ))
            }
            other => other,
        })?;
        // The declared folder becomes the output (moved, not copied).
        std::fs::remove_dir_all(&context.output_dir).ok();
        if output.is_dir() {
            std::fs::rename(&output, &context.output_dir).map_err(|error| {
                NodeError::Internal(format!("cannot collect `{}`: {error}", output.display()))
            })?;
        } else {
            return Err(NodeError::Failed(format!(
                "the command removed its output folder `{folder}`"
            )));
        }
        let allow_empty = matches!(context.params.get("allow_empty"), Some(Value::Bool(true)));
        check_outputs(&context.output_dir, &outputs, allow_empty, &work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn context() -> NodeContext {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let mut inputs = BTreeMap::new();
        inputs.insert("data".to_string(), PathBuf::from("/in/data"));
        NodeContext {
            node: "n".into(),
            workflow: "w".into(),
            params: BTreeMap::new(),
            inputs,
            output_dir: PathBuf::from("/o"),
            scratch_dir: PathBuf::from("/s"),
            log_path: PathBuf::from("/s/log"),
            cpus: 1,
            gpus: vec![],
            cancel: CancellationToken::new(),
            events,
        }
    }

    #[test]
    fn substitutes_placeholders_and_leaves_other_braces() {
        let context = context();
        let sub = |text: &str| substitute(text, &context.node, &context.inputs, "/out");
        let text = sub("cat {inputs.data}/x > {out}/y # {node}").unwrap();
        assert_eq!(text, "cat /in/data/x > /out/y # n");
        let awk = "awk '{print $1}' ${HOME}/f {unclosed";
        assert_eq!(sub(awk).unwrap(), awk);
    }

    #[test]
    fn unknown_inputs_are_bad_input() {
        let context = context();
        let error =
            substitute("{inputs.nope}", &context.node, &context.inputs, "/out").unwrap_err();
        assert!(
            matches!(error, NodeError::BadInput(ref m) if m.contains("no input `nope`") && m.contains("data")),
            "{error}"
        );
    }

    #[test]
    fn output_folder_must_stay_inside() {
        for bad in ["", "/abs", "../up", "a/../../b"] {
            let mut params = BTreeMap::new();
            params.insert("outputs".to_string(), Value::String(bad.into()));
            assert!(outputs(&params).is_err(), "{bad}");
            let list = Value::List(vec![
                Value::String("ok.json".into()),
                Value::String(bad.into()),
            ]);
            params.insert("outputs".to_string(), list);
            assert!(outputs(&params).is_err(), "[{bad}]");
        }
        let mut params = BTreeMap::new();
        params.insert(
            "outputs".to_string(),
            Value::List(vec![
                Value::String("model.json".into()),
                Value::String("metrics/".into()),
            ]),
        );
        assert_eq!(
            outputs(&params).unwrap(),
            Outputs {
                folder: "out".into(),
                declared: vec!["model.json".into(), "metrics/".into()]
            }
        );
    }
}
