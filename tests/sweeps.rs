//! Sweeps (docs/architecture.md §18) through the real binary: a 3x2 matrix expands to six
//! named nodes that `plan`, `run NODE`, `--set` and `--force` address, and changing one of
//! its values reruns exactly the nodes that value makes.

mod common;

use std::collections::BTreeMap;

use common::{statuses, Sandbox};

/// `train` over 3 seeds x 2 weights; `eval` reads it, so it is swept with it.
fn sweep(sandbox: &Sandbox, weights: &str) -> String {
    let count = sandbox.path("count").display().to_string();
    format!(
        r#"[workflow]
name = "sweep"

[train]
kind = "exec"
matrix = {{ "env.SEED" = [1, 2, 3], "env.W" = {weights} }}
command = "echo x >> '{count}-{{node}}'; echo $SEED $W > out/model.txt"

[eval]
kind = "exec"
inputs = {{ model = "train" }}
command = "echo x >> '{count}-{{node}}'; cat {{inputs.model}}/model.txt > out/score.txt"
"#
    )
}

/// Node name to status, for the nodes that ran.
fn ran(record: &serde_json::Value) -> Vec<String> {
    statuses(record)
        .into_iter()
        .filter(|(_, status)| status == "ran")
        .map(|(name, _)| name)
        .collect()
}

/// How many times each node's command executed, by node name.
fn executions(sandbox: &Sandbox) -> BTreeMap<String, usize> {
    std::fs::read_dir(sandbox.root())
        .unwrap()
        .filter_map(|item| {
            let name = item.unwrap().file_name().to_string_lossy().into_owned();
            let node = name.strip_prefix("count-")?.to_string();
            Some((node.clone(), sandbox.count(&node)))
        })
        .collect()
}

#[test]
fn a_three_by_two_matrix_makes_six_nodes_and_one_changed_value_reruns_exactly_its_own() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&sweep(&sandbox, r#"["0.1", "0.5"]"#));
    let plan = sandbox.plan(&[]);
    let planned: Vec<&str> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["node"].as_str().unwrap())
        .collect();
    let trains = [
        "train[SEED=1,W=0.1]",
        "train[SEED=1,W=0.5]",
        "train[SEED=2,W=0.1]",
        "train[SEED=2,W=0.5]",
        "train[SEED=3,W=0.1]",
        "train[SEED=3,W=0.5]",
    ];
    assert_eq!(&planned[..6], trains, "{plan:#}");
    assert_eq!(planned.len(), 12, "{plan:#}");
    assert!(planned.contains(&"eval[SEED=2,W=0.5]"), "{plan:#}");

    let first = sandbox.run_ok(&[]);
    assert_eq!(ran(&first).len(), 12, "{first:#}");
    assert!(executions(&sandbox).values().all(|&count| count == 1));
    assert_eq!(sandbox.cat("eval[SEED=3,W=0.5]", "score.txt"), "3 0.5\n");

    // One value changed in the file: exactly the three instances it makes, and their evals.
    sandbox.workflow(&sweep(&sandbox, r#"["0.1", "0.7"]"#));
    let second = sandbox.run_ok(&[]);
    let mut expected: Vec<String> = (1..=3)
        .flat_map(|seed| {
            [
                format!("eval[SEED={seed},W=0.7]"),
                format!("train[SEED={seed},W=0.7]"),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(ran(&second), expected, "{second:#}");
    assert_eq!(
        statuses(&second)
            .values()
            .filter(|status| *status == "cached")
            .count(),
        6
    );
    assert!(executions(&sandbox).values().all(|&count| count == 1));

    // One instance addressed by name: `--set` and `run NODE`.
    let one = sandbox.run_ok(&["--set", "train[SEED=2,W=0.1].env.W=0.9", "--as-latest"]);
    assert_eq!(
        ran(&one),
        ["eval[SEED=2,W=0.1]", "train[SEED=2,W=0.1]"],
        "{one:#}"
    );
    assert_eq!(sandbox.cat("eval[SEED=2,W=0.1]", "score.txt"), "2 0.9\n");
    let alone = sandbox.run_ok(&["train[SEED=1,W=0.7]", "--force", "train[SEED=1,W=0.7]"]);
    assert_eq!(ran(&alone), ["train[SEED=1,W=0.7]"], "{alone:#}");
    // The declaration's name addresses all its instances.
    let all = sandbox.run_ok(&["train", "--force", "train"]);
    assert_eq!(ran(&all).len(), 6, "{all:#}");
    assert!(ran(&all).iter().all(|name| name.starts_with("train[")));

    // A typo in an instance name is named, with the nearest one.
    let typo = sandbox.peirce(&["run", "wf.toml", "train[SEED=9,W=0.7]"]);
    assert_eq!(typo.code, 2, "{typo}");
    assert!(
        typo.stderr.contains("has no node `train[SEED=9,W=0.7]`"),
        "{typo}"
    );
}
