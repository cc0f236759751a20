//! The task suite through the binary: `generate` and `verify` nodes produce dataset trees
//! whose instances all verify, deterministically, and `peirce tasks sample` prints them.

mod common;

use std::collections::BTreeSet;

use common::Sandbox;
use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

const WORKFLOW: &str = r#"
[defaults]
count = 40
seed = 3
split = 0.25

[deduction]
kind = "generate"
task = "deduction"
levels = [1, 3]

[induction]
kind = "generate"
task = "induction"
levels = [1, 5]

[abduction]
kind = "generate"
task = "abduction"
levels = [2]
layout = "paper"

[arithmetic]
kind = "generate"
task = "arithmetic"
levels = [1, 2]

[check-deduction]
kind = "verify"
inputs = { data = "deduction" }
max_drop_fraction = 0.0

[check-induction]
kind = "verify"
inputs = { data = "induction" }
max_drop_fraction = 0.0

[check-abduction]
kind = "verify"
inputs = { data = "abduction" }
max_drop_fraction = 0.0

[check-arithmetic]
kind = "verify"
inputs = { data = "arithmetic" }
max_drop_fraction = 0.0
"#;

/// `WORKFLOW` with a `paper-TASK` node per task: `verify` under `reward = "paper"`.
fn with_paper_verify() -> String {
    let mut workflow = WORKFLOW.to_string();
    for task in ["deduction", "induction", "abduction", "arithmetic"] {
        workflow.push_str(&format!(
            "\n[paper-{task}]\nkind = \"verify\"\ninputs = {{ data = \"{task}\" }}\nreward = \"paper\"\nmax_drop_fraction = 0.0\n"
        ));
    }
    workflow
}

#[test]
fn generated_datasets_verify_and_split_cleanly() {
    let sandbox = Sandbox::new();
    sandbox.workflow(&with_paper_verify());
    sandbox.run_ok(&[]);
    for task in ["deduction", "induction", "abduction", "arithmetic"] {
        let train = lines(&sandbox.cat(task, "train.jsonl"));
        let test = lines(&sandbox.cat(task, "test.jsonl"));
        let levels = if task == "abduction" { 1 } else { 2 };
        assert_eq!(train.len() + test.len(), 40 * levels, "{task}");
        assert_eq!(test.len(), 10 * levels, "{task}: 25% of each level is test");
        let train_ids: BTreeSet<&str> = train.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert!(
            test.iter()
                .all(|r| !train_ids.contains(r["id"].as_str().unwrap())),
            "{task}: split overlap"
        );
        let record = &train[0];
        assert_eq!(record["task"], task);
        assert!(record["prompt"]
            .as_str()
            .unwrap()
            .ends_with("<|im_start|>assistant\n<think>"));
        assert_eq!(record["messages"][1]["content"], record["puzzle"]);
        assert!(!record["answer"].as_str().unwrap().is_empty());

        let report: Value =
            serde_json::from_str(&sandbox.cat(&format!("check-{task}"), "report.json")).unwrap();
        assert_eq!(
            report["kept"]["train"].as_u64().unwrap() as usize,
            train.len(),
            "{task}: {report}"
        );
        assert_eq!(
            report["kept"]["test"].as_u64().unwrap() as usize,
            test.len(),
            "{task}: {report}"
        );
        assert_eq!(report["dropped"], serde_json::json!({}), "{task}");
        assert_eq!(report["reward"], "strict", "{task}");
        // Under the paper's reward rules every ground truth scores full marks too.
        let paper: Value =
            serde_json::from_str(&sandbox.cat(&format!("paper-{task}"), "report.json")).unwrap();
        assert_eq!(paper["reward"], "paper", "{task}");
        assert_eq!(paper["kept"], report["kept"], "{task}: {paper}");
        assert_eq!(paper["dropped"], serde_json::json!({}), "{task}");
        let listing = sandbox.listing(&format!("check-{task}"));
        for file in [
            "train.jsonl",
            "test.jsonl",
            "train.parquet",
            "test.parquet",
            "report.json",
        ] {
            assert!(
                listing.contains_key(file),
                "{task}: {file} missing from {listing:?}"
            );
        }
    }
    let abduction = lines(&sandbox.cat("abduction", "train.jsonl"));
    assert!(abduction.iter().all(|r| r["params"]["layout"] == "paper"));
}

#[test]
fn the_same_parameters_give_the_same_bytes_and_a_new_seed_does_not() {
    let first = Sandbox::new();
    first.workflow(WORKFLOW);
    let one = common::outputs(&first.run_ok(&[]));
    let second = Sandbox::new();
    second.workflow(WORKFLOW);
    let two = common::outputs(&second.run_ok(&["-j", "1"]));
    assert_eq!(
        one, two,
        "thread count and machine state must not change datasets"
    );
    let third = Sandbox::new();
    third.workflow(WORKFLOW);
    let three = common::outputs(&third.run_ok(&["--set", "deduction.seed=4"]));
    assert_ne!(one["deduction"], three["deduction"]);
    assert_eq!(one["induction"], three["induction"]);
}

#[test]
fn a_broken_instance_is_dropped_with_its_reason() {
    let sandbox = Sandbox::new();
    // An exec node forges a dataset from sampled instances, tampering with the answers of
    // the last two; verify must keep the four good ones and drop exactly those two.
    let forge = sandbox.write(
        "forge.py",
        r#"import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
for record in records[4:]:
    first, rest = record["answer"].split("\n", 1)
    flipped = first.replace("True", "False") if "True" in first else first.replace("False", "True")
    record["answer"] = flipped + "\n" + rest
with open("out/train.jsonl", "w") as out:
    out.writelines(json.dumps(r) + "\n" for r in records[:4])
with open("out/test.jsonl", "w") as out:
    out.writelines(json.dumps(r) + "\n" for r in records[4:])
"#,
    );
    let command = format!(
        "'{}' tasks sample deduction --level 1 --count 6 --json > all.jsonl && python3 '{}' all.jsonl",
        common::PEIRCE,
        forge.display()
    );
    sandbox.workflow(&format!(
        "[forged]\nkind = \"exec\"\ncommand = {}\n\n[check]\nkind = \"verify\"\ninputs = {{ data = \"forged\" }}\n",
        common::toml_string(&command)
    ));
    sandbox.run_ok(&[]);
    let report: Value = serde_json::from_str(&sandbox.cat("check", "report.json")).unwrap();
    assert_eq!(report["kept"]["train"], 4, "{report}");
    assert_eq!(report["kept"]["test"], 0, "{report}");
    assert_eq!(report["dropped"]["wrong_answer"], 2, "{report}");
    let kept = lines(&sandbox.cat("check", "train.jsonl"));
    assert_eq!(kept.len(), 4);
}

#[test]
fn the_reward_mode_is_part_of_verifys_key() {
    let sandbox = Sandbox::new();
    sandbox.workflow(
        "[data]\nkind = \"generate\"\ntask = \"induction\"\nlevels = [1]\ncount = 4\n\n[check]\nkind = \"verify\"\ninputs = { data = \"data\" }\n",
    );
    sandbox.run_ok(&[]);
    let same = sandbox.plan(&["--set", "check.reward=strict"]);
    assert_eq!(
        common::planned(&same, "check")["state"],
        "cached",
        "{same:#}"
    );
    let plan = sandbox.plan(&["--set", "check.reward=paper"]);
    assert_eq!(
        common::planned(&plan, "data")["state"],
        "cached",
        "{plan:#}"
    );
    let reasons = &common::planned(&plan, "check")["reasons"];
    assert_eq!(reasons[0]["reason"], "param_changed", "{reasons:#}");
    assert_eq!(reasons[0]["name"], "reward");
}

#[test]
fn an_unknown_reward_mode_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.workflow(
        "[data]\nkind = \"generate\"\ntask = \"induction\"\nlevels = [1]\ncount = 2\n\n[check]\nkind = \"verify\"\ninputs = { data = \"data\" }\nreward = \"lenient\"\n",
    );
    let outcome = sandbox.peirce(&["run", "wf.toml"]).expect_code(2);
    assert!(
        outcome.stderr.contains("reward") && outcome.stderr.contains("lenient"),
        "{outcome}"
    );
}

#[test]
fn sample_prints_readable_and_json_instances() {
    let sandbox = Sandbox::new();
    let text = sandbox
        .peirce(&[
            "tasks",
            "sample",
            "abduction",
            "--level",
            "2",
            "--count",
            "2",
        ])
        .success()
        .stdout;
    assert_eq!(text.matches("=== abduction level 2").count(), 2, "{text}");
    assert!(text.contains("--- answer ---"));
    let sample_json = || {
        sandbox
            .peirce(&[
                "tasks",
                "sample",
                "deduction",
                "--level",
                "4",
                "--json",
                "--seed",
                "9",
            ])
            .success()
            .stdout
    };
    let json = sample_json();
    let records = lines(&json);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["level"], 4);
    assert_eq!(records[0]["params"]["variables"], 10);
    let again = sample_json();
    assert_eq!(json, again);
    let bad = sandbox.peirce(&["tasks", "sample", "deduction", "--level", "9"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("levels 1..=5"), "{}", bad.stderr);
}

/// Golden digests of fixed (task, level, seed, count) datasets: the same parameters must give
/// the same bytes on every machine, forever, unless a kind's VERSION is bumped on purpose.
#[test]
fn golden_dataset_digests() {
    let sandbox = Sandbox::new();
    let mut workflow = String::new();
    for (task, level) in [
        ("deduction", 3),
        ("induction", 4),
        ("abduction", 2),
        ("arithmetic", 5),
    ] {
        workflow.push_str(&format!(
            "[{task}]\nkind = \"generate\"\ntask = \"{task}\"\nlevels = [{level}]\ncount = 25\nseed = 2026\n\n"
        ));
    }
    sandbox.workflow(&workflow);
    let outputs = common::outputs(&sandbox.run_ok(&[]));
    let expected = [
        (
            "deduction",
            "blake3:94641560d65d89671a88b511b1f0d7c21d59fdfc649d849b31dfc1f57aaf6c9a",
        ),
        (
            "induction",
            "blake3:355eaf53565de43ac9b9b6a252c5740cea80a95468f9a82d9f6f5a8e796d2280",
        ),
        (
            "abduction",
            "blake3:a5dec6029cbcca51910e515ba7564dd91e3c9d5735fa2fb46bdd6bf275cd16db",
        ),
        (
            "arithmetic",
            "blake3:9618b5d618660408d41b8386de23673393667472f285fb3f47c48f398045528d",
        ),
    ];
    // The instances themselves (the JSONL files) have not changed since generate v3: v4
    // changed only the verl files beside them (one-message prompts, chat template, reward),
    // and v5 only the exported `reward.py` (it grades boxed math too).
    let instances = [
        (
            "deduction",
            "blake3:e336d3642caff906cc8e3f1aba0c58b014b0976466b50b536607612ade929631",
            "blake3:e8f8cd9e8c818ea5740b22a05988b7b8b7efa7dd25bbfb0697b2e9f5759a264e",
        ),
        (
            "induction",
            "blake3:313c45ad52dce7b612ae7baeead49ef3292749a25bc558438bbde999269ce522",
            "blake3:c0923dfe7274d239c8046b2f267a74c74328b5bdcc5f2faade2f9dfba73bb4e6",
        ),
        (
            "abduction",
            "blake3:c0b17ff56869522d4e27fc80f567e6876647c7118713c6a596359c0dbc8d5cb3",
            "blake3:12b1008c84c473c4059edc2efc62a1d622b936671609a8da9d6ad913a19ef31d",
        ),
        (
            "arithmetic",
            "blake3:b7b833b0e41e0efb6a6818cec43ee06a039787e07fe438136d703a16813937b2",
            "blake3:c347818e97312655940bf750eadbf87f65ca52651869e1593f6b73421b7a77c1",
        ),
    ];
    let mut mismatches = Vec::new();
    for (task, digest) in expected {
        if outputs[task] != digest {
            mismatches.push(format!("{task}: expected {digest}, got {}", outputs[task]));
        }
    }
    for (task, train, test) in instances {
        let listing = sandbox.listing(task);
        for (file, digest) in [("train.jsonl", train), ("test.jsonl", test)] {
            if listing[file].1 != digest {
                mismatches.push(format!(
                    "{task} {file}: expected {digest}, got {}",
                    listing[file].1
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "dataset bytes changed:\n{}",
        mismatches.join("\n")
    );
}

/// Rows in the layout of the paper's released data (generator JSONL: `puzzle_text`,
/// `solution_text_format` or an integer `solution_text`, `difficulty`; answers ending in a
/// newline), written here: no row of the release is in this repository.
fn release_rows() -> Vec<Value> {
    let deduction = "Below are some nested formulas:\n  - (¬A ∨ ¬C)\n  - ¬(A)\n  - (¬C ⊕ B)\n  - (D → C)\n  - (B → D)\n  - ¬(D)\nPlease list the truth value of each variable\n";
    let answer = "(1) A is False\n(2) B is False\n(3) C is False\n(4) D is False\n";
    let sequence = |terms: &str| {
        format!("Given the following sequence,\n[{terms}]\nWhat is the value at the question mark?")
    };
    vec![
        serde_json::json!({"problem_id": "1", "difficulty": 1, "puzzle_text": deduction, "solution_text_format": answer}),
        serde_json::json!({"problem_id": "2", "difficulty": 1, "puzzle_text": deduction, "solution_text_format": answer}),
        serde_json::json!({"problem_id": "3", "difficulty": 1, "puzzle_text": "Below are some nested formulas:\n  - (A ∨ B)\n  - (C → D)\n  - ¬A\nPlease list the truth value of each variable\n", "solution_text_format": "(1) A is False\n(2) B is True\n(3) C is False\n(4) D is False\n"}),
        serde_json::json!({"problem_id": "4", "difficulty": 2, "puzzle_text": sequence("'8', '7', '21', '20', '60', '?'"), "solution_text": 59}),
        serde_json::json!({"problem_id": "5", "difficulty": 2, "puzzle_text": sequence("3, 6, ?, 12, 15, 18"), "solution_text": 9}),
        serde_json::json!({"problem_id": "6", "difficulty": 1, "puzzle_text": sequence("1, 2, 4, 7, 6, 18, 20, ?"), "solution_text": 80}),
    ]
}

#[test]
fn the_papers_release_layout_imports_and_verifies_with_drops_by_reason() {
    let sandbox = Sandbox::new();
    let rows: Vec<String> = release_rows().iter().map(Value::to_string).collect();
    sandbox.write("release.jsonl", &rows.join("\n"));
    sandbox.workflow(
        "[release]\nkind = \"generate\"\ntask = \"import\"\ninputs = { source = \"./release.jsonl\" }\nsplit = 0.0\n\n[check]\nkind = \"verify\"\ninputs = { data = \"release\" }\n",
    );
    sandbox.run_ok(&[]);
    let imported = lines(&sandbox.cat("release", "train.jsonl"));
    // By level, then in file order.
    let tasks: Vec<(u64, &str)> = imported
        .iter()
        .map(|r| (r["level"].as_u64().unwrap(), r["task"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tasks,
        [
            (1, "deduction"),
            (1, "deduction"),
            (1, "deduction"),
            (1, "induction"),
            (2, "induction"),
            (2, "induction")
        ]
    );
    assert_eq!(imported[0]["answer_kind"], "assignment");
    assert_eq!(
        imported[0]["answer"],
        "(1) A is False\n(2) B is False\n(3) C is False\n(4) D is False"
    );
    assert_eq!(imported[4]["answer"], "59");
    assert_eq!(imported[4]["answer_kind"], "integer");
    let report: Value = serde_json::from_str(&sandbox.cat("check", "report.json")).unwrap();
    // Kept: the deduction puzzle once, the sequence, and the "missing term" sequence.
    assert_eq!(report["kept"]["train"], 3, "{report}");
    assert_eq!(
        report["dropped"],
        serde_json::json!({"duplicate": 1, "ambiguous": 1, "uninferable": 1}),
        "{report}"
    );
    let kept = lines(&sandbox.cat("check", "train.jsonl"));
    let missing_term = kept.iter().find(|r| r["answer"] == "9").unwrap();
    assert!(
        missing_term["puzzle"]
            .as_str()
            .unwrap()
            .contains("3, 6, ?, 12, 15, 18"),
        "{missing_term}"
    );
}
