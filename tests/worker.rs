//! The engine side of the worker protocol (see `nodes/src/worker.rs`), with a small Python
//! worker: the spec it is given, progress and metric lines kept out of the log, outputs
//! published and cached, and failures (a crash, an error event) confined to the node and
//! classified.

mod common;

use common::{expect_statuses, toml_string, Sandbox};

/// A worker speaking the protocol. `config.mode` picks its behaviour: `ok`, `crash`
/// (SIGKILL to itself), `exit3`, `bad_input` (an error event, then exit 1). It counts its
/// executions in `config.counter` and checks every spec field it relies on.
const WORKER: &str = r#"
import json, os, sys

spec_path = sys.argv[-1]
assert os.environ["PEIRCE_NODE_SPEC"] == spec_path, "PEIRCE_NODE_SPEC differs from argv"
with open(spec_path) as f:
    spec = json.load(f)
for field in ["protocol", "kind", "node", "workflow", "params", "inputs", "output_dir",
              "scratch_dir", "cpus", "gpus"]:
    assert field in spec, "spec lacks " + field
assert spec["protocol"] == 1, spec["protocol"]
assert spec["kind"] == "worker", spec["kind"]
assert spec["cpus"] >= 1 and spec["gpus"] == []
assert os.path.isdir(spec["output_dir"]) and not os.listdir(spec["output_dir"])
config = spec["params"]
with open(config["counter"], "a") as f:
    f.write("x\n")

def emit(**event):
    print(json.dumps(event), flush=True)

mode = config.get("mode", "ok")
emit(event="message", text="worker " + spec["node"] + " starting")
print("plain stdout line from " + spec["node"], flush=True)
print("stderr line from " + spec["node"], file=sys.stderr, flush=True)
if mode == "crash":
    os.kill(os.getpid(), 9)
if mode == "exit3":
    sys.exit(3)
if mode == "bad_input":
    emit(event="error", **{"class": "bad_input"}, message="the data set has no rows")
    sys.exit(1)

text = ""
for name in sorted(spec["inputs"]):
    folder = spec["inputs"][name]
    for file in sorted(os.listdir(folder)):
        with open(os.path.join(folder, file)) as f:
            text += f.read()
total = len(text.splitlines())
for step in range(total):
    emit(event="progress", done=step + 1, total=total, message="line %d" % (step + 1))
emit(event="metric", step=total, loss=1.0 / (total + 1))
os.makedirs(os.path.join(spec["output_dir"], "sub"))
with open(os.path.join(spec["output_dir"], "sub", "result.txt"), "w") as f:
    f.write(config["prefix"] + ":" + text.replace("\n", ",") + "\n")
"#;

/// `numbers` (exec) feeds the worker node `model`; `side` stands apart.
fn workflow(sandbox: &Sandbox, mode: &str, retries: u32) -> String {
    let script = sandbox.write("worker.py", WORKER);
    format!(
        r#"[workflow]
name = "workers"

[numbers]
kind = "exec"
command = {numbers}

[model]
kind = "worker"
inputs = ["numbers"]
retries = {retries}
program = "python3"
args = [{script}]
config = {{ prefix = "rows", mode = {mode}, counter = {counter} }}

[side]
kind = "exec"
command = {side}
"#,
        numbers = toml_string(&format!(
            "{}; seq 1 3 > out/numbers.txt",
            sandbox.counter("numbers")
        )),
        script = toml_string(script.to_str().unwrap()),
        mode = toml_string(mode),
        counter = toml_string(sandbox.path("count-model").to_str().unwrap()),
        side = toml_string(&format!(
            "{}; echo side > out/side.txt",
            sandbox.counter("side")
        )),
    )
}

#[test]
fn worker_node_runs_logs_and_caches() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&workflow(&sandbox, "ok", 0));
    let (outcome, record) = sandbox.run(&[]);
    let outcome = outcome.success();
    expect_statuses(
        &record,
        &[("model", "ran"), ("numbers", "ran"), ("side", "ran")],
    );
    assert_eq!(sandbox.cat("model", "sub/result.txt"), "rows:1,2,3,\n");
    assert!(
        outcome.stderr.contains("worker model starting"),
        "message events are shown:\n{outcome}"
    );

    let log = sandbox.peirce(&["log", "model"]).success().stdout;
    assert!(log.contains("stderr line from model"), "{log}");
    assert!(log.contains("plain stdout line from model"), "{log}");
    assert!(
        !log.contains("\"event\""),
        "protocol lines must not reach the log:\n{log}"
    );

    let record = sandbox.run_ok(&[]);
    expect_statuses(
        &record,
        &[
            ("model", "cached"),
            ("numbers", "cached"),
            ("side", "cached"),
        ],
    );
    assert_eq!(sandbox.counts(&["numbers", "model", "side"]), [1, 1, 1]);

    // The worker's config is part of its key.
    let record = sandbox.run_ok(&["--set", "model.config.prefix=\"lines\"", "--as-latest"]);
    assert_eq!(record["nodes"]["model"]["status"], "ran");
    assert_eq!(sandbox.cat("model", "sub/result.txt"), "lines:1,2,3,\n");
    sandbox.assert_store_sound();
}

/// A failing worker fails its node only; nothing is recorded, so the next run tries again.
fn fails_alone(mode: &str, error_says: &str) {
    let sandbox = Sandbox::new();
    sandbox.workflow(&workflow(&sandbox, mode, 0));
    for attempt in 1..=2 {
        let (outcome, record) = sandbox.run(&[]);
        outcome.expect_code(1);
        assert_eq!(record["nodes"]["model"]["status"], "failed", "{record:#}");
        let side = if attempt == 1 { "ran" } else { "cached" };
        assert_eq!(record["nodes"]["side"]["status"], side, "{record:#}");
        let error = record["nodes"]["model"]["error"].as_str().unwrap();
        assert!(error.contains(error_says), "{mode}: {error}");
        assert!(
            !sandbox.has_record_for("model"),
            "a failed worker was recorded"
        );
        assert_eq!(sandbox.count("model"), attempt, "{mode}: not tried again");
    }
    assert_eq!(sandbox.counts(&["numbers", "side"]), [1, 1]);
    sandbox.assert_store_sound();
}

#[test]
fn a_crashing_worker_fails_only_its_node() {
    fails_alone("crash", "killed by signal 9");
}

#[test]
fn a_worker_exiting_non_zero_fails_only_its_node() {
    fails_alone("exit3", "status 3");
}

#[test]
fn a_bad_input_error_is_reported_and_not_retried() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&workflow(&sandbox, "bad_input", 2));
    let (outcome, record) = sandbox.run(&[]);
    outcome.expect_code(1);
    let model = &record["nodes"]["model"];
    assert_eq!(model["status"], "failed");
    assert_eq!(model["attempts"], 1, "bad input was retried: {model:#}");
    let error = model["error"].as_str().unwrap();
    assert!(
        error.contains("the data set has no rows") && error.contains("bad input"),
        "{error}"
    );
    assert_eq!(sandbox.count("model"), 1);
    assert_eq!(record["nodes"]["side"]["status"], "ran");

    // The same worker exiting without an error event is retried as asked.
    let sandbox = Sandbox::new();
    sandbox.workflow(&workflow(&sandbox, "exit3", 2));
    let (outcome, record) = sandbox.run(&[]);
    outcome.expect_code(1);
    assert_eq!(record["nodes"]["model"]["attempts"], 3);
    assert_eq!(sandbox.count("model"), 3);
}
