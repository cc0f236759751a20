//! Tests of workflow loading: one per error class (message and exact line), and
//! the resolution rules (defaults precedence, overrides, coercion, path inputs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::params::{ParamSpec, ParamType};
use crate::value::Value;

use super::*;

struct TestCatalog;

impl KindCatalog for TestCatalog {
    fn kind_names(&self) -> Vec<&str> {
        vec!["exec", "train"]
    }

    fn params(&self, kind: &str) -> Option<Vec<ParamSpec>> {
        match kind {
            "exec" => Some(vec![
                ParamSpec::required(
                    "command",
                    ParamType::either(ParamType::String, ParamType::list(ParamType::String)),
                    "what to run",
                ),
                ParamSpec::optional("outputs", ParamType::String, Some("out".into()), ""),
                ParamSpec::optional(
                    "env",
                    ParamType::map(ParamType::String),
                    Some(Value::empty_table()),
                    "",
                ),
            ]),
            "train" => Some(vec![
                ParamSpec::optional("lr", ParamType::Float, Some(Value::Float(0.001)), ""),
                ParamSpec::optional("weights", ParamType::map(ParamType::Float), None, ""),
                ParamSpec::optional("steps", ParamType::Int, Some(Value::Int(10)), ""),
            ]),
            _ => None,
        }
    }
}

const FILE: &str = "/nonexistent/flows/wf.toml";

fn parse(text: &str) -> Result<Workflow, SpecErrors> {
    parse_workflow(Path::new(FILE), text, &TestCatalog, &[])
}

fn parse_with(text: &str, sets: &[&str]) -> Result<Workflow, SpecErrors> {
    let overrides: Vec<Override> = sets
        .iter()
        .map(|text| Override::parse(text).unwrap())
        .collect();
    parse_workflow(Path::new(FILE), text, &TestCatalog, &overrides)
}

/// The only error of a failing parse.
fn single_error(result: Result<Workflow, SpecErrors>) -> SpecError {
    let errors = result.unwrap_err();
    assert_eq!(errors.0.len(), 1, "expected one error, got:\n{errors}");
    errors.0.into_iter().next().unwrap()
}

fn param<'a>(workflow: &'a Workflow, node: &str, key: &str) -> &'a Value {
    workflow
        .node(node)
        .unwrap_or_else(|| panic!("no node {node}"))
        .params
        .get(key)
        .unwrap_or_else(|| panic!("no param {key} in {node}"))
}

#[test]
fn valid_workflow_resolves_completely() {
    let workflow = parse(
        r#"
[workflow]
name = "tiny"
remote = "s3://bucket/prefix"

[fit]
kind = "train"
inputs = { data = "prep" }
lr = 0.01
resources = { cpus = 4, gpus = 0.5, memory = "16G" }
retries = 2
salt = "v2"
timeout = "10m"

[prep]
kind = "exec"
command = ["python", "prep.py"]
"#,
    )
    .unwrap();
    assert_eq!(workflow.name, "tiny");
    assert_eq!(workflow.remote.as_deref(), Some("s3://bucket/prefix"));
    let names: Vec<&str> = workflow.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["prep", "fit"]);
    let fit = workflow.node("fit").unwrap();
    assert_eq!(fit.kind, "train");
    assert_eq!(fit.line, 6);
    assert_eq!(
        fit.inputs.get("data"),
        Some(&InputRef::Node("prep".to_owned()))
    );
    assert_eq!(
        fit.resources,
        Resources {
            cpus: 4,
            gpu_millis: 500,
            memory_bytes: Some(16 << 30)
        }
    );
    assert_eq!(fit.retries, 2);
    assert_eq!(fit.salt, "v2");
    assert_eq!(fit.timeout, Some(Duration::from_secs(600)));
    assert_eq!(param(&workflow, "fit", "lr"), &Value::Float(0.01));
    assert_eq!(param(&workflow, "fit", "steps"), &Value::Int(10));
    assert!(!fit.params.contains_key("weights"));
    let prep = workflow.node("prep").unwrap();
    assert_eq!(prep.resources, Resources::default());
    assert_eq!(prep.timeout, None);
    assert_eq!(param(&workflow, "prep", "outputs"), &Value::from("out"));
    assert_eq!(param(&workflow, "prep", "env"), &Value::empty_table());
}

#[test]
fn workflow_name_defaults_to_file_stem() {
    let workflow = parse("[a]\nkind = \"train\"\n").unwrap();
    assert_eq!(workflow.name, "wf");
    assert_eq!(workflow.remote, None);
}

#[test]
fn error_toml_syntax() {
    let error = single_error(parse("[a]\nkind = \"train\"\nlr = = 3\n"));
    assert_eq!(error.line, 3);
    assert!(error.message.starts_with("Invalid TOML: "), "{error}");
    assert_eq!(error.file, PathBuf::from(FILE));
    let error = single_error(parse("[a]\nkind = \"train\"\n[a]\nkind = \"exec\"\n"));
    assert_eq!(error.line, 3);
}

#[test]
fn error_unknown_kind() {
    let error = single_error(parse(
        "[a]\nkind = \"exec\"\ncommand = \"ls\"\n\n[b]\nkind = \"trian\"\n",
    ));
    assert_eq!(error.message, "Unknown kind `trian` in node `b`");
    assert_eq!(error.line, 6);
    assert_eq!(
        error.hint.as_deref(),
        Some("did you mean `train`? Known kinds: `exec`, `train`")
    );
    let error = single_error(parse("[a]\ncommand = \"ls\"\n"));
    assert_eq!(error.message, "Node `a` has no `kind`");
    assert_eq!(error.line, 1);
}

#[test]
fn error_unknown_key() {
    let error = single_error(parse("[a]\nkind = \"train\"\nsteps = 3\nlrr = 0.1\n"));
    assert_eq!(error.message, "Unknown key `lrr` in node `a`");
    assert_eq!(error.line, 4);
    assert_eq!(error.column, 1);
    assert_eq!(error.hint.as_deref(), Some("did you mean `lr`?"));
    let error = single_error(parse("[a]\nkind = \"train\"\nzzzzzz = 1\n"));
    assert_eq!(
        error.hint.as_deref(),
        Some("`train` nodes accept `lr`, `weights`, `steps`")
    );
    let error = single_error(parse("[a]\nkind = \"train\"\nresources = { cpu = 2 }\n"));
    assert_eq!(error.message, "Unknown key `cpu` in `resources`");
    assert_eq!(error.line, 3);
    assert_eq!(error.hint.as_deref(), Some("did you mean `cpus`?"));
    let error = single_error(parse("[workflow]\nnmae = \"x\"\n[a]\nkind = \"train\"\n"));
    assert_eq!(error.message, "Unknown key `nmae` in `[workflow]`");
    assert_eq!(error.line, 2);
}

#[test]
fn error_missing_input() {
    let error = single_error(parse(
        "[prep]\nkind = \"exec\"\ncommand = \"ls\"\n\n[a]\nkind = \"train\"\ninputs = [\"prpe\"]\n",
    ));
    assert_eq!(error.message, "Missing input: no node `prpe`");
    assert_eq!(error.line, 7);
    assert_eq!(error.hint.as_deref(), Some("did you mean `prep`?"));
    let error = single_error(parse(
        "[a]\nkind = \"train\"\ninputs = { data = \"./no/such/file.jsonl\" }\n",
    ));
    assert_eq!(
        error.message,
        "Missing input: path `./no/such/file.jsonl` does not exist"
    );
    assert_eq!(error.line, 3);
    let error = single_error(parse("[a]\nkind = \"train\"\n\ninputs = [\"a\"]\n"));
    assert_eq!(error.message, "Node `a` takes itself as input");
    assert_eq!(error.line, 4);
}

#[test]
fn error_wrong_type() {
    let error = single_error(parse("[a]\nkind = \"train\"\nlr = \"fast\"\n"));
    assert_eq!(
        error.message,
        "Wrong type for `lr`: expected float, found string"
    );
    assert_eq!(error.line, 3);
    let error = single_error(parse("[a]\nkind = \"exec\"\ncommand = [\"ls\", 3]\n"));
    assert_eq!(
        error.message,
        "Wrong type for `command`: expected array of string, found integer at index 1"
    );
    let error = single_error(parse("[a]\nkind = \"train\"\n\n\nretries = -1\n"));
    assert_eq!(error.line, 5);
    assert!(error.message.starts_with("Invalid `retries`"), "{error}");
    let error = single_error(parse("[a]\nkind = \"train\"\nresources = { gpus = 1.5 }\n"));
    assert!(
        error.message.starts_with("Invalid `resources.gpus`"),
        "{error}"
    );
    // A bad default is reported once, at the default, not once per node.
    let error = single_error(parse(
        "[defaults]\nsteps = \"many\"\n[a]\nkind = \"train\"\n[b]\nkind = \"train\"\n",
    ));
    assert_eq!(
        error.message,
        "Wrong type for `steps`: expected integer, found string"
    );
    assert_eq!(error.line, 2);
}

#[test]
fn error_cycle() {
    let error = single_error(parse(
        r#"
[x]
kind = "train"

[a]
kind = "train"
inputs = ["c"]

[b]
kind = "train"
inputs = ["a", "x"]

[c]
kind = "train"
inputs = ["b"]
"#,
    ));
    assert_eq!(error.message, "Cycle between nodes: a -> b -> c -> a");
    assert_eq!(error.line, 5);
    assert_eq!(error.column, 1);
}

#[test]
fn error_missing_required() {
    let error = single_error(parse("\n[run]\nkind = \"exec\"\noutputs = \"o\"\n"));
    assert_eq!(
        error.message,
        "Missing required parameter `command` in node `run` (kind `exec`)"
    );
    assert_eq!(error.line, 2);
    assert_eq!(
        error.hint.as_deref(),
        Some("add `command = <string or array of string>` to `[run]`")
    );
}

#[test]
fn error_bad_override() {
    let text = "[a]\nkind = \"train\"\n";
    let error = single_error(parse_with(text, &["b.lr=0.1"]));
    assert_eq!(error.message, "Unknown node `b` in override");
    assert_eq!(error.file, PathBuf::from("--set b.lr=0.1"));
    assert_eq!(error.line, 0);
    assert_eq!(
        error.to_string(),
        "--set b.lr=0.1: Unknown node `b` in override"
    );
    let error = single_error(parse_with(text, &["a.lrr=0.1"]));
    assert_eq!(error.message, "Unknown key `lrr` for node `a`");
    assert_eq!(error.hint.as_deref(), Some("did you mean `lr`?"));
    assert_eq!(error.line, 0);
    let error = single_error(parse_with(text, &["a.lr=fast"]));
    assert_eq!(
        error.message,
        "Wrong type for `lr`: expected float, found string"
    );
    assert_eq!(error.file, PathBuf::from("--set a.lr=fast"));
    let error = single_error(parse_with(text, &["defaults.command=ls"]));
    assert_eq!(error.message, "Unknown key `command` in `[defaults]`");
    let error = single_error(parse_with(text, &["a.kind=exec"]));
    assert_eq!(error.message, "Key `kind` cannot be overridden");
    let error = Override::parse("a.lr").unwrap_err();
    assert!(error.message.starts_with("Invalid override"), "{error}");
}

#[test]
fn errors_are_collected_in_file_order() {
    let errors = parse(
        "[a]\nkind = \"train\"\nlr = \"x\"\n[b]\nkind = \"nope\"\n[c]\nkind = \"exec\"\ninputs = [\"zz\"]\n",
    )
    .unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5, 6, 8]);
    let text = errors.to_string();
    assert!(
        text.starts_with(&format!("{FILE}:3:1: Wrong type for `lr`")),
        "{text}"
    );
}

#[test]
fn defaults_precedence() {
    let workflow = parse(
        r#"
[defaults]
lr = 0.1
steps = 20
retries = 1
resources = { cpus = 2, memory = 1024 }
command = "echo general"

[defaults.train]
lr = 0.2
resources = { gpus = 1 }

[plain]
kind = "train"

[own]
kind = "train"
lr = 0.3
resources = { cpus = 8 }

[shell]
kind = "exec"
"#,
    )
    .unwrap();
    // Kind defaults beat general defaults; node values beat both.
    assert_eq!(param(&workflow, "plain", "lr"), &Value::Float(0.2));
    assert_eq!(param(&workflow, "own", "lr"), &Value::Float(0.3));
    assert_eq!(param(&workflow, "plain", "steps"), &Value::Int(20));
    // General defaults reach only kinds that declare the key.
    assert!(!workflow.node("shell").unwrap().params.contains_key("lr"));
    assert_eq!(
        param(&workflow, "shell", "command"),
        &Value::from("echo general")
    );
    // Generic keys apply to every node; resources merge key by key.
    let own = workflow.node("own").unwrap();
    assert_eq!(own.retries, 1);
    assert_eq!(
        own.resources,
        Resources {
            cpus: 8,
            gpu_millis: 1000,
            memory_bytes: Some(1024)
        }
    );
    let shell = workflow.node("shell").unwrap();
    assert_eq!(shell.resources.cpus, 2);
    assert_eq!(shell.resources.gpu_millis, 0);
}

#[test]
fn defaults_unknown_key() {
    let error = single_error(parse(
        "[defaults]\nsteps = 3\nstesp = 4\n[a]\nkind = \"train\"\n",
    ));
    assert_eq!(error.message, "Unknown key `stesp` in `[defaults]`");
    assert_eq!(error.line, 3);
    assert_eq!(error.hint.as_deref(), Some("did you mean `steps`?"));
    // `command` exists in the catalog, but no node here is an `exec`.
    let error = single_error(parse(
        "[defaults]\ncommand = \"ls\"\n[a]\nkind = \"train\"\n",
    ));
    assert_eq!(error.message, "Unknown key `command` in `[defaults]`");
    let error = single_error(parse("[defaults.exec]\nlr = 0.1\n[a]\nkind = \"train\"\n"));
    assert_eq!(error.message, "Unknown key `lr` in `[defaults.exec]`");
    assert_eq!(error.line, 2);
    let error = single_error(parse(
        "[defaults]\ninputs = [\"x\"]\n[a]\nkind = \"train\"\n",
    ));
    assert_eq!(error.message, "Key `inputs` cannot be set in `[defaults]`");
}

#[test]
fn overrides_apply_after_defaults() {
    let text = r#"
[defaults]
steps = 5

[merge]
kind = "train"
weights = { induction = 0.5, deduction = 0.5 }

[other]
kind = "train"
steps = 7
"#;
    let workflow = parse_with(
        text,
        &[
            "merge.weights.induction=0.3",
            "merge.lr=1",
            "defaults.steps=9",
            "other.resources.gpus=2",
            "other.timeout=30",
            "defaults.train.salt=s",
        ],
    )
    .unwrap();
    assert_eq!(
        param(&workflow, "merge", "weights").to_string(),
        "{ deduction = 0.5, induction = 0.3 }"
    );
    assert_eq!(param(&workflow, "merge", "lr"), &Value::Float(1.0));
    // `defaults.steps` changes the default; a node's own value still wins.
    assert_eq!(param(&workflow, "merge", "steps"), &Value::Int(9));
    assert_eq!(param(&workflow, "other", "steps"), &Value::Int(7));
    let other = workflow.node("other").unwrap();
    assert_eq!(other.resources.gpu_millis, 2000);
    assert_eq!(other.timeout, Some(Duration::from_secs(30)));
    assert_eq!(other.salt, "s");
    // A node override beats the node's own value.
    let workflow = parse_with(text, &["other.steps=1"]).unwrap();
    assert_eq!(param(&workflow, "other", "steps"), &Value::Int(1));
}

#[test]
fn int_coerces_to_float_everywhere() {
    let written_int = parse("[a]\nkind = \"train\"\nlr = 1\nweights = { x = 2 }\n").unwrap();
    let written_float = parse("[a]\nkind = \"train\"\nlr = 1.0\nweights = { x = 2.0 }\n").unwrap();
    assert_eq!(param(&written_int, "a", "lr"), &Value::Float(1.0));
    for key in ["lr", "weights"] {
        assert_eq!(
            param(&written_int, "a", key).canonical_bytes(),
            param(&written_float, "a", key).canonical_bytes()
        );
    }
}

#[test]
fn path_inputs_resolve_against_the_workflow_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/base-model")).unwrap();
    std::fs::write(dir.path().join("data/train.jsonl"), "{}\n").unwrap();
    let path = dir.path().join("wf.toml");
    let text = r#"
[prep]
kind = "exec"
command = "ls"

[fit]
kind = "train"
inputs = ["prep", "./data/train.jsonl", "data/base-model/"]

[named]
kind = "train"
inputs = { corpus = "data/train.jsonl", upstream = "fit" }
"#;
    std::fs::write(&path, text).unwrap();
    let workflow = load_workflow(&path, &TestCatalog, &[]).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let fit = workflow.node("fit").unwrap();
    assert_eq!(fit.inputs.get("prep"), Some(&InputRef::Node("prep".into())));
    assert_eq!(
        fit.inputs.get("train.jsonl"),
        Some(&InputRef::Path(root.join("data/train.jsonl")))
    );
    assert_eq!(
        fit.inputs.get("base-model"),
        Some(&InputRef::Path(root.join("data/base-model")))
    );
    let named = workflow.node("named").unwrap();
    assert_eq!(
        named.inputs.get("corpus"),
        Some(&InputRef::Path(root.join("data/train.jsonl")))
    );
    let names: Vec<&str> = workflow.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["prep", "fit", "named"]);
}

#[test]
fn unreadable_file_is_an_error_at_line_zero() {
    let errors = load_workflow(Path::new("/no/such/wf.toml"), &TestCatalog, &[]).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].line, 0);
    assert!(errors.0[0].message.starts_with("Cannot read workflow file"));
}

#[test]
fn invalid_utf8_is_an_error_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wf.toml");
    let bytes = b"[prep]\nkind = \"exec\"\ncommand = \"\xc3\xa9cho \xff\"\n".to_vec();
    std::fs::write(&path, &bytes).unwrap();
    let error = single_error(load_workflow(&path, &TestCatalog, &[]));
    assert_eq!(error.file, path);
    // `command = "` is 11 characters and `é` one more, so `0xff` is the 17th character.
    assert_eq!((error.line, error.column), (3, 17), "{error}");
    assert!(error.message.contains("UTF-8"), "{error}");
    assert!(error.message.contains("`0xff`"), "{error}");
    assert!(error
        .to_string()
        .starts_with(&format!("{}:3:17: ", path.display())));
    // A truncated character at the very end is found too.
    let bytes = b"[prep]\nkind = \"exec\"\ncommand = \"ls\"\nx = \"\xe2\x82".to_vec();
    std::fs::write(&path, bytes).unwrap();
    let error = single_error(load_workflow(&path, &TestCatalog, &[]));
    assert_eq!((error.line, error.column), (4, 6), "{error}");
    assert!(error.message.contains("`0xe2 0x82`"), "{error}");
}

#[test]
fn huge_names_with_a_typo_fail_fast_with_a_plain_error() {
    let long = "n".repeat(70_000);
    let typo = format!("{}m", &long[1..]);
    let text = format!(
        "[{long}]\nkind = \"exec\"\ncommand = \"ls\"\n\n[a]\nkind = \"train\"\ninputs = [\"{typo}\"]\n{typo} = 1\n"
    );
    let started = std::time::Instant::now();
    let errors = parse(&text).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert_eq!(errors.0[0].line, 7);
    assert_eq!(
        errors.0[0].message,
        format!("Missing input: no node `{typo}`")
    );
    assert_eq!(errors.0[1].line, 8);
    assert!(
        errors.0[1].message.starts_with("Unknown key"),
        "{}",
        errors.0[1]
    );
}

#[test]
fn odd_documents_do_not_panic() {
    let texts = [
        "",
        "x = 1",
        "[[x]]\nkind = \"train\"",
        "[\"a b\"]\nkind = \"train\"",
        "a.kind = \"train\"\na.lr = 2",
        "[a]\nkind = 3\ninputs = 4\nresources = 5",
        "[a]\nkind = \"exec\"\ncommand = \"x\"\ninputs = [\"..\", \"~\", \"~bob/x\", \"s3://b/k\"]",
        "[defaults]\nexec = 3\n[a]\nkind = \"exec\"\ncommand = \"x\"",
        "[workflow]\nname = 1\n[defaults]\n[defaults.train]\nkind = \"x\"",
        "[a]\nkind = \"train\"\nresources = { cpus = 0, gpus = -1, memory = \"lots\" }\ntimeout = \"soon\"",
        "é = 1\n[é]\n",
        "[a]\nkind = \"train\"\nlr = nan\nsteps = 9223372036854775807",
    ];
    for text in texts {
        let _ = parse(text);
        let _ = parse_with(
            text,
            &["a.lr.x=1", "a.resources.cpus.x=1", "defaults.train=1"],
        );
    }
    let workflow = parse("a.kind = \"train\"\na.lr = 2").unwrap();
    assert_eq!(param(&workflow, "a", "lr"), &Value::Float(2.0));
    assert_eq!(workflow.node("a").unwrap().line, 1);
    let error = single_error(parse("[\"a b\"]\nkind = \"train\""));
    assert_eq!(error.message, "Invalid node name `a b`");
    assert_eq!(parse("").unwrap().nodes.len(), 0);
}

/// Each fixture under `tests/fixtures/bad/` says on its first line where its one
/// error is: `# error on line N: <message or its start>`.
#[test]
fn bad_fixtures_fail_where_they_say() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bad");
    let mut checked = 0;
    for name in [
        "cycle",
        "unknown_kind",
        "unknown_key",
        "missing_input",
        "wrong_type",
        "syntax",
    ] {
        let path = folder.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let expectation = text.lines().next().unwrap();
        let rest = expectation.strip_prefix("# error on line ").unwrap();
        let (line, message) = rest.split_once(": ").unwrap();
        let error = single_error(load_workflow(&path, &TestCatalog, &[]));
        assert_eq!(
            error.line,
            line.parse::<usize>().unwrap(),
            "{name}: {error}"
        );
        assert!(error.message.starts_with(message), "{name}: {error}");
        assert_eq!(error.file, path);
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn error_details_for_odd_entries() {
    let error = single_error(parse("[b]\nkind = 3\n"));
    assert_eq!(
        error.message,
        "Wrong type for `kind`: expected string, found integer"
    );
    let error = single_error(parse("[[c]]\nkind = \"train\"\n"));
    assert_eq!(
        error.message,
        "Node `c` must be a table, found array of tables"
    );
    assert_eq!((error.line, error.column), (1, 1));
    let error = single_error(parse_with(
        "[a]\nkind = \"train\"\nweights = { x = 1 }\n",
        &["a.weights.x.y=1"],
    ));
    assert_eq!(
        error.message,
        "Cannot apply override: `weights.x` is an integer, not a table"
    );
    let error = single_error(parse(
        "[a]\nkind = \"train\"\ninputs = [\"s3://bucket/key\"]\n",
    ));
    assert_eq!(
        error.message,
        "Unsupported input `s3://bucket/key`: URL inputs are not supported"
    );
}

// --- sweeps (docs/architecture.md §18) ---------------------------------------------------

const SWEEP: &str = r#"
[fit]
kind = "train"
matrix = { steps = [1, 2, 3], "weights.a" = [0.1, 0.5] }
weights = { b = 1.0 }

[score]
kind = "exec"
inputs = { model = "fit" }
command = "cat {inputs.model}/m"
"#;

fn names(workflow: &Workflow) -> Vec<&str> {
    workflow.nodes.iter().map(|n| n.name.as_str()).collect()
}

/// The names of the instances of declaration `base`, in order.
fn instances<'a>(workflow: &'a Workflow, base: &str) -> Vec<&'a str> {
    names(workflow)
        .into_iter()
        .filter(|n| base_name(n) == base)
        .collect()
}

#[test]
fn a_three_by_two_matrix_expands_to_six_named_nodes_and_its_readers_follow() {
    let workflow = parse(SWEEP).unwrap();
    let fits = instances(&workflow, "fit");
    assert_eq!(
        fits,
        [
            "fit[steps=1,a=0.1]",
            "fit[steps=1,a=0.5]",
            "fit[steps=2,a=0.1]",
            "fit[steps=2,a=0.5]",
            "fit[steps=3,a=0.1]",
            "fit[steps=3,a=0.5]"
        ]
    );
    assert_eq!(
        param(&workflow, "fit[steps=2,a=0.5]", "steps"),
        &Value::Int(2)
    );
    // A nested path merges into the node's own table.
    assert_eq!(
        param(&workflow, "fit[steps=2,a=0.5]", "weights").to_string(),
        "{ a = 0.5, b = 1.0 }"
    );
    let fit = workflow.node("fit[steps=3,a=0.1]").unwrap();
    assert_eq!(
        fit.bindings,
        [("steps".into(), "3".into()), ("a".into(), "0.1".into())]
    );
    // The reader is swept with what it reads, instance for instance.
    let score = workflow.node("score[steps=3,a=0.1]").unwrap();
    assert_eq!(
        score.inputs.get("model"),
        Some(&InputRef::Node("fit[steps=3,a=0.1]".into()))
    );
    assert_eq!(workflow.nodes.len(), 12);
    // The declaration's name addresses every instance.
    assert_eq!(workflow.addressed("fit").len(), 6);
    let selected = workflow.clone().select(&["score".into()]).unwrap();
    assert_eq!(selected.nodes.len(), 12);
}

#[test]
fn overrides_address_one_instance_all_of_them_or_the_matrix() {
    let one = parse_with(SWEEP, &["fit[steps=2,a=0.5].lr=0.3"]).unwrap();
    assert_eq!(param(&one, "fit[steps=2,a=0.5]", "lr"), &Value::Float(0.3));
    assert_eq!(
        param(&one, "fit[steps=1,a=0.5]", "lr"),
        &Value::Float(0.001)
    );
    let all = parse_with(SWEEP, &["fit.lr=0.3"]).unwrap();
    assert!(all
        .nodes
        .iter()
        .filter(|n| n.kind == "train")
        .all(|n| n.params["lr"] == Value::Float(0.3)));
    let matrix = parse_with(SWEEP, &["fit.matrix.weights.a=[0.5, 0.7]"]).unwrap();
    assert!(matrix.node("fit[steps=1,a=0.7]").is_some());
    assert!(matrix.node("fit[steps=1,a=0.1]").is_none());
    // `[defaults]` sweeps every node whose kind has the parameter; the others follow.
    let text = "[defaults]\nmatrix = { steps = [4, 5] }\n[fit]\nkind = \"train\"\n[use]\nkind = \"exec\"\ninputs = { m = \"fit\" }\ncommand = \"true\"\n";
    let swept = parse(text).unwrap();
    assert_eq!(
        names(&swept),
        [
            "fit[steps=4]",
            "fit[steps=5]",
            "use[steps=4]",
            "use[steps=5]"
        ]
    );
    let by_set = parse_with(
        "[fit]\nkind = \"train\"\n",
        &["defaults.matrix.steps=[1, 2]"],
    )
    .unwrap();
    assert_eq!(names(&by_set), ["fit[steps=1]", "fit[steps=2]"]);
}

#[test]
fn a_reader_swept_over_the_same_label_pairs_instead_of_crossing() {
    let text = r#"
[fit]
kind = "train"
matrix = { steps = [1, 2] }

[more]
kind = "train"
inputs = { base = "fit" }
matrix = { steps = [1, 2], lr = [0.1, 0.2] }

[pick]
kind = "exec"
matrix = { "inputs.model" = ["fit", "more"] }
command = "true"
"#;
    let workflow = parse(text).unwrap();
    let more = instances(&workflow, "more");
    assert_eq!(
        more,
        // Paths in alphabetical order, the first varying slowest.
        [
            "more[lr=0.1,steps=1]",
            "more[lr=0.1,steps=2]",
            "more[lr=0.2,steps=1]",
            "more[lr=0.2,steps=2]"
        ]
    );
    assert_eq!(
        workflow.node("more[lr=0.1,steps=2]").unwrap().inputs["base"],
        InputRef::Node("fit[steps=2]".into())
    );
    // A swept input: one `pick` per model, each crossed with that model's own sweep.
    let picks = instances(&workflow, "pick");
    assert_eq!(picks.len(), 2 + 4, "{picks:?}");
    assert!(picks.contains(&"pick[model=fit,steps=1]"), "{picks:?}");
    assert!(
        picks.contains(&"pick[model=more,lr=0.2,steps=2]"),
        "{picks:?}"
    );
}

#[test]
fn bad_matrices_are_errors_naming_the_file_and_key() {
    let cases: [(&str, &str); 6] = [
        (
            "matrix = [1, 2]",
            "Wrong type for `matrix` in node `fit`: expected a table of lists",
        ),
        (
            "matrix = { steps = [] }",
            "`matrix.steps` in node `fit` must be a non-empty list",
        ),
        (
            "matrix = { steps = 3 }",
            "`matrix.steps` in node `fit` must be a non-empty list of values, found integer",
        ),
        (
            "matrix = { tag = [\"a b\"] }",
            "the value `a b` cannot be part of a node name",
        ),
        ("matrix = { steps = [1, 1] }", "the value `1` appears twice"),
        (
            "matrix = { \"weights.steps\" = [0.1], steps = [1] }",
            "end in `steps`: names would be ambiguous",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("[fit]\nkind = \"train\"\n{line}\n");
        let error = single_error(parse(&text));
        assert!(error.message.contains(expected), "{line}: {error}");
        assert_eq!(
            (error.file.to_str().unwrap(), error.line),
            (FILE, 3),
            "{line}: {error}"
        );
    }
    // A path the kind does not have is an unknown key, at the matrix's line.
    let errors = parse("[fit]\nkind = \"train\"\nmatrix = { stepz = [1, 2] }\n").unwrap_err();
    let error = &errors.0[0];
    assert!(error.message.contains("Unknown key `stepz`"), "{error}");
    assert_eq!(error.line, 3);
    // An instance a reader needs but its input lacks.
    let text = "[fit]\nkind = \"train\"\nmatrix = { steps = [1] }\n[more]\nkind = \"train\"\ninputs = { m = \"fit\" }\nmatrix = { steps = [2] }\n";
    let error = single_error(parse(text));
    assert!(
        error
            .message
            .contains("reads `fit`, which has no instance with the same values"),
        "{error}"
    );
}

#[test]
fn executors_and_slurm_settings() {
    let workflow = parse(
        "[workflow]\nexecutor = \"slurm\"\n\n[executor.slurm]\npartition = \"gpu\"\n\
         account = \"lab\"\nqos = \"high\"\nflags = [\"--constraint=h100\"]\nvia_remote = true\n\n\
         [defaults]\nexecutor = \"slurm\"\n\n[a]\nkind = \"train\"\n\n\
         [b]\nkind = \"train\"\nexecutor = \"local\"\n",
    )
    .unwrap();
    assert_eq!(workflow.executor, Some(Executor::Slurm));
    assert_eq!(
        workflow.slurm,
        SlurmSettings {
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            qos: Some("high".into()),
            flags: vec!["--constraint=h100".into()],
            via_remote: true,
        }
    );
    assert_eq!(workflow.node("a").unwrap().executor, Some(Executor::Slurm));
    assert_eq!(workflow.node("b").unwrap().executor, Some(Executor::Local));
    // An executor changes where a node runs, never its key.
    let plain = parse("[a]\nkind = \"train\"\n").unwrap();
    assert_eq!(plain.node("a").unwrap().executor, None);
    assert_eq!(
        plain.node("a").unwrap().params,
        workflow.node("a").unwrap().params
    );

    let error = single_error(parse("[a]\nkind = \"train\"\nexecutor = \"pbs\"\n"));
    assert!(error.message.contains("unknown executor `pbs`"), "{error}");
    assert_eq!(error.line, 3);
    let error = single_error(parse(
        "[workflow]\nexecutor = \"k8s\"\n[a]\nkind = \"train\"\n",
    ));
    assert!(error.message.contains("unknown executor `k8s`"), "{error}");
    assert_eq!(error.line, 2);
    let error = single_error(parse(
        "[executor.slurm]\npartiton = \"x\"\n[a]\nkind = \"train\"\n",
    ));
    assert_eq!(
        error.message,
        "Unknown key `partiton` in `[executor.slurm]`"
    );
    assert_eq!(error.hint.as_deref(), Some("did you mean `partition`?"));
    let error = single_error(parse(
        "[executor.slurm]\nflags = \"-N 2\"\n[a]\nkind = \"train\"\n",
    ));
    assert!(
        error.message.contains("expected a list of strings"),
        "{error}"
    );
    let error = single_error(parse(
        "[executor.slurm]\nvia_remote = \"yes\"\n[a]\nkind = \"train\"\n",
    ));
    assert!(
        error.message.contains("`via_remote`: expected a boolean"),
        "{error}"
    );
    assert!(!plain.slurm.via_remote);
    let error = single_error(parse(
        "[executor.pbs]\nqueue = \"x\"\n[a]\nkind = \"train\"\n",
    ));
    assert_eq!(error.message, "Unknown table `executor.pbs`");
}
