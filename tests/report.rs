//! `peirce report` through the real binary: exec nodes that write a fixed `metrics.json`
//! stand in for `eval` nodes (the report reads any node whose result holds one), run by a
//! real `peirce run` into a real store.

mod common;

use common::{toml_string, Sandbox};
use serde_json::{json, Value};

/// An exec node writing `metrics` as its `metrics.json`.
fn metrics_node(sandbox: &Sandbox, name: &str, metrics: &Value) -> String {
    let file = sandbox.write(&format!("{name}.json"), &format!("{metrics:#}\n"));
    let command = format!("cp '{}' out/metrics.json", file.display());
    format!(
        "[{name}]\nkind = \"exec\"\ncommand = {}\n\n",
        toml_string(&command)
    )
}

fn set(name: &str, role: &str, accuracy: f64) -> Value {
    json!({
        "name": name, "role": role, "accuracy": accuracy, "reward": accuracy,
        "response_length": 50.0, "count": 64, "k": 1, "avg_at_k": null,
        "levels": {"1": {"accuracy": accuracy, "count": 64}},
    })
}

/// Three evaluated models (declared start, merged, specialist: not alphabetical), a node
/// without metrics in between, and sets whose first appearance puts a domain set before a
/// task set.
fn three_models(sandbox: &Sandbox) -> String {
    let start = json!({"label": "start", "model": null, "average": 0.2, "sets": [
        set("arithmetic", "domain", 0.30), set("deduction", "task", 0.126),
    ]});
    let merged = json!({"label": "merged", "sets": [
        set("deduction", "task", 0.41), set("induction", "task", 0.2),
        set("arithmetic", "domain", 0.35),
    ]});
    // No label: the node name stands in.
    let specialist = json!({"sets": [set("induction", "task", 0.5)]});
    let mut text = metrics_node(sandbox, "eval-start", &start);
    text.push_str("[data]\nkind = \"exec\"\ncommand = \"echo 1 > out/data.txt\"\n\n");
    text.push_str(&metrics_node(sandbox, "eval-merged", &merged));
    text.push_str(&metrics_node(sandbox, "eval-induction", &specialist));
    text
}

#[test]
fn report_prints_the_table_in_declaration_order() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&three_models(&sandbox));
    sandbox.run_ok(&[]);
    let outcome = sandbox.peirce(&["report", "wf.toml"]).success();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "| model          | deduction | induction | arithmetic | Average |",
            "| -------------- | --------: | --------: | ---------: | ------: |",
            "| start          |      12.6 |         - |       30.0 |    21.3 |",
            "| merged         |      41.0 |      20.0 |       35.0 |    32.0 |",
            "| eval-induction |         - |      50.0 |          - |    50.0 |",
        ],
        "{outcome}"
    );
    assert!(
        outcome.stderr.contains("chart written to report.png"),
        "{outcome}"
    );
    let png = std::fs::read(sandbox.path("report.png")).expect("the chart");
    assert!(png.len() > 1000, "a {}-byte chart", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // JSON: the same table, accuracies as fractions.
    let json = sandbox
        .peirce(&["report", "wf.toml", "--json", "--out", "again.png"])
        .success()
        .json();
    let columns: Vec<&str> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["deduction", "induction", "arithmetic"]);
    assert_eq!(json["columns"][2]["role"], "domain");
    let rows = json["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["start", "merged", "eval-induction"]);
    assert_eq!(rows[0]["node"], "eval-start");
    assert_eq!(rows[0]["accuracy"], json!([0.126, null, 0.3]));
    assert!((rows[1]["average"].as_f64().unwrap() - 0.32).abs() < 1e-12);
    assert_eq!(rows[1]["up_to_date"], true);
    assert_eq!(json["missing"], json!([]));
    // The same table gives the same chart, byte for byte.
    assert_eq!(std::fs::read(sandbox.path("again.png")).unwrap(), png);
}

#[test]
fn the_chart_is_deterministic_across_runs_and_stores() {
    let first = Sandbox::new();
    first.workflow(&three_models(&first));
    first.run_ok(&[]);
    first
        .peirce(&["report", "wf.toml", "--out", "a.png"])
        .success();
    first
        .peirce(&["report", "wf.toml", "--out", "b.png"])
        .success();
    let a = std::fs::read(first.path("a.png")).unwrap();
    assert_eq!(a, std::fs::read(first.path("b.png")).unwrap());

    let second = Sandbox::new();
    second.workflow(&three_models(&second));
    second.run_ok(&[]);
    second
        .peirce(&["report", "wf.toml", "--out", "c.png"])
        .success();
    assert_eq!(a, std::fs::read(second.path("c.png")).unwrap());
}

#[test]
fn malformed_metrics_name_the_node_and_the_key() {
    let sandbox = Sandbox::new();
    let good = json!({"label": "good", "sets": [set("deduction", "task", 0.5)]});
    let bad = json!({"label": "bad", "sets": [
        set("deduction", "task", 0.5),
        {"name": "induction", "role": "task", "accuracy": "high"},
    ]});
    let mut text = metrics_node(&sandbox, "eval-good", &good);
    text.push_str(&metrics_node(&sandbox, "eval-bad", &bad));
    sandbox.workflow(&text);
    sandbox.run_ok(&[]);
    let outcome = sandbox.peirce(&["report", "wf.toml"]).expect_code(1);
    assert!(outcome.stderr.contains("Node `eval-bad`"), "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("`sets[1].accuracy` must be a number from 0 to 1"),
        "{outcome}"
    );
    assert!(!outcome.stderr.contains("panicked"), "{outcome}");
    assert!(!sandbox.path("report.png").exists());

    // Not JSON at all.
    sandbox.write("eval-bad.json", "{\"sets\": [");
    sandbox.run_ok(&["--force", "eval-bad"]);
    let outcome = sandbox.peirce(&["report", "wf.toml"]).expect_code(1);
    assert!(outcome.stderr.contains("Node `eval-bad`"), "{outcome}");
    assert!(outcome.stderr.contains("is not JSON"), "{outcome}");
}

#[test]
fn missing_results_say_how_to_make_them() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&three_models(&sandbox));
    // Nothing has run: no results at all.
    let outcome = sandbox.peirce(&["report", "wf.toml"]).expect_code(1);
    assert!(
        outcome.stderr.contains("no evaluation results"),
        "{outcome}"
    );
    assert!(outcome.stderr.contains("`peirce run wf.toml`"), "{outcome}");
    assert!(!sandbox.path("report.png").exists());

    // A node whose result is out of date is shown, marked, with the reason and the fix.
    sandbox.run_ok(&[]);
    let outcome = sandbox
        .peirce(&["report", "wf.toml", "--set", "eval-merged.env.X=\"1\""])
        .success();
    assert!(
        outcome.stdout.contains("| merged *       |      41.0 |"),
        "{outcome}"
    );
    assert!(
        outcome
            .stderr
            .contains("* `eval-merged` shows an earlier result, out of date (param `env` changed"),
        "{outcome}"
    );
    assert!(
        outcome.stderr.contains("`peirce run wf.toml` updates it"),
        "{outcome}"
    );
    let json = sandbox
        .peirce(&[
            "report",
            "wf.toml",
            "--json",
            "--set",
            "eval-merged.env.X=\"1\"",
        ])
        .success()
        .json();
    assert_eq!(json["rows"][1]["up_to_date"], false);
    assert_eq!(json["rows"][0]["up_to_date"], true);
}

#[test]
fn a_workflow_without_evaluations_is_an_error() {
    let sandbox = Sandbox::new();
    sandbox.workflow("[data]\nkind = \"exec\"\ncommand = \"echo 1 > out/data.txt\"\n");
    sandbox.run_ok(&[]);
    let outcome = sandbox.peirce(&["report", "wf.toml"]).expect_code(1);
    assert!(
        outcome
            .stderr
            .contains("no node of kind `eval`, and no result holding a top-level `metrics.json`"),
        "{outcome}"
    );
}

#[test]
fn an_unwritable_chart_path_is_an_error() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&three_models(&sandbox));
    sandbox.run_ok(&[]);
    let outcome = sandbox
        .peirce(&["report", "wf.toml", "--out", "no/such/folder/r.png"])
        .expect_code(1);
    assert!(outcome.stderr.contains("no/such/folder/r.png"), "{outcome}");
}

#[test]
fn eval_nodes_without_results_are_named() {
    let sandbox = Sandbox::new();
    let base = three_models(&sandbox);
    let later = "[eval-later]\nkind = \"eval\"\ninputs = { model = \"data\" }\n";
    // Only an `eval` node that never ran: an error naming it.
    sandbox.workflow(&format!(
        "[data]\nkind = \"exec\"\ncommand = \"echo 1 > out/data.txt\"\n\n{later}"
    ));
    let outcome = sandbox.peirce(&["report", "wf.toml"]).expect_code(1);
    assert!(
        outcome
            .stderr
            .contains("No evaluation results yet: `eval-later` has never run; `peirce run wf.toml` computes them"),
        "{outcome}"
    );

    // Beside rows with results: the table, and a note naming it.
    sandbox.workflow(&base);
    sandbox.run_ok(&[]);
    sandbox.workflow(&format!("{base}{later}"));
    let outcome = sandbox.peirce(&["report", "wf.toml"]).success();
    assert_eq!(outcome.stdout.lines().count(), 5, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("not yet evaluated: `eval-later` has never run"),
        "{outcome}"
    );
    let json = sandbox
        .peirce(&["report", "wf.toml", "--json"])
        .success()
        .json();
    assert_eq!(
        json["missing"],
        json!([{"node": "eval-later", "reason": "has never run"}])
    );
}

/// Rows that differ only by seed (a sweep over `SEED`) are one line: the mean, its 95%
/// interval (Student t), the number of seeds and of prompts per seed; the chart draws them.
#[test]
fn report_aggregates_seeds_into_a_mean_with_its_interval() {
    let sandbox = Sandbox::new();
    let metrics = r#"{"label": "merged", "sets": [{"name": "deduction", "role": "task", "accuracy": 0.%d, "count": 50}]}"#;
    let command = format!("printf '{metrics}' $((SEED + 1)) > out/metrics.json");
    sandbox.workflow(&format!(
        "[eval-merged]\nkind = \"exec\"\nmatrix = {{ \"env.SEED\" = [1, 2, 3] }}\ncommand = {}\n\n{}",
        toml_string(&command),
        metrics_node(
            &sandbox,
            "eval-start",
            &json!({"label": "start", "sets": [set("deduction", "task", 0.1)]})
        )
    ));
    sandbox.run_ok(&[]);
    let outcome = sandbox.peirce(&["report", "wf.toml"]).success();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "| model  |   deduction |     Average | seeds | prompts |",
            "| ------ | ----------: | ----------: | ----: | ------: |",
            "| merged | 30.0 ± 24.8 | 30.0 ± 24.8 |     3 |      50 |",
            "| start  |        10.0 |        10.0 |     1 |      64 |",
        ],
        "{outcome}"
    );
    let json = sandbox
        .peirce(&["report", "wf.toml", "--json"])
        .success()
        .json();
    let merged = &json["rows"][0];
    assert_eq!(merged["seeds"], 3, "{json:#}");
    assert_eq!(
        merged["nodes"],
        json!([
            "eval-merged[SEED=1]",
            "eval-merged[SEED=2]",
            "eval-merged[SEED=3]"
        ])
    );
    assert!((merged["accuracy"][0].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!((merged["ci95"][0].as_f64().unwrap() - 0.248_434).abs() < 1e-5);
    assert_eq!(json["rows"][1]["ci95"], json!([null]));
    assert!(sandbox.path("report.png").is_file());
}
