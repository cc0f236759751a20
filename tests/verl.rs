//! The verl round trip of exported datasets (issue 16): peirce generates and verifies a
//! small dataset of each family (strict and paper reward) and a tiny model whose tokenizer
//! is the datasets' tokenizer; then verl itself (from PyPI, in the virtualenv of
//! scripts/verl.sh, on CPU) loads every parquet file with its own `RLHFDataset`, and the
//! prompt its rollout builds decodes to exactly peirce's rendered prompt, as does the paper's
//! fork's reading; verl's own loader loads the exported `reward.py`, every ground truth
//! scores full marks (+3 for a logic task, 1 for boxed math) and every response of a corpus,
//! logic and boxed math (arithmetic in both modes, an imported math set) alike, scores exactly as peirce's reward
//! scored it (tests/verl_check.py does the Python side).

mod common;

use std::path::Path;
use std::process::Command;

use common::Sandbox;
use peirce_tasks::dataset::{read_jsonl, Record};
use peirce_tasks::reward::corpus::{
    box_response, decorated_forms, fragment_string, integer_forms, mode_cases, mutate, SplitMix,
    BOX_RESPONSE_VARIANTS, MATH_DIFFERENT, MATH_EQUIVALENT,
};
use peirce_tasks::reward::{perfect_response, score_with, totals, AnswerStatus, RewardMode};
use peirce_tasks::AnswerKind;
use serde_json::{json, Value};

const WORKFLOW: &str = r#"
[defaults]
seed = 4
count = 10
split = 0.3

[deduction]
kind = "generate"
task = "deduction"
levels = [1, 3]

[induction]
kind = "generate"
task = "induction"
levels = [1, 3]

[abduction]
kind = "generate"
task = "abduction"
levels = [1, 2]

[abduction-paper]
kind = "generate"
task = "abduction"
levels = [1, 2]
layout = "paper"

[arithmetic]
kind = "generate"
task = "arithmetic"
levels = [1, 5]

[paper-arithmetic]
kind = "verify"
inputs = { data = "arithmetic" }
reward = "paper"

[math]
kind = "generate"
task = "import"
inputs = { source = "./math.jsonl" }

[strict-deduction]
kind = "verify"
inputs = { data = "deduction" }

[strict-induction]
kind = "verify"
inputs = { data = "induction" }

[strict-abduction]
kind = "verify"
inputs = { data = "abduction" }

[paper-deduction]
kind = "verify"
inputs = { data = "deduction" }
reward = "paper"

[paper-induction]
kind = "verify"
inputs = { data = "induction" }
reward = "paper"

[paper-abduction]
kind = "verify"
inputs = { data = "abduction-paper" }
reward = "paper"

[tokenizer]
kind = "model"
source = "tiny"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
corpus_per_level = 20
max_vocab = 400
"#;

/// The exported datasets and the reward mode each was made with.
const DATASETS: [(&str, RewardMode); 9] = [
    ("strict-deduction", RewardMode::Strict),
    ("strict-induction", RewardMode::Strict),
    ("strict-abduction", RewardMode::Strict),
    ("paper-deduction", RewardMode::Paper),
    ("paper-induction", RewardMode::Paper),
    ("paper-abduction", RewardMode::Paper),
    ("arithmetic", RewardMode::Strict),
    ("paper-arithmetic", RewardMode::Paper),
    ("math", RewardMode::Strict),
];

/// The imported math set's answers: the forms `math.rs` reads (see its module docs).
const MATH_ANSWERS: [&str; 14] = [
    "\\frac{1}{2}",
    "\\boxed{3\\sqrt{2}}",
    "(1, 2)",
    "0.75",
    "\\dfrac{7}{3}",
    "10\\%",
    "45^\\circ",
    "x = 4",
    "\\text{(B)}",
    "1,000",
    "-\\frac{3}{4}",
    "\\pi",
    "5\\text{ cm}",
    "\\left[ 0, 1 \\right)",
];

/// Fuzzed responses per dataset.
const FUZZ: usize = 1_500;

fn verl_python() -> Option<String> {
    peirce_testing::external(
        "PEIRCE_VERL_PYTHON",
        "verl_round_trip",
        "source scripts/mergekit.sh and scripts/verl.sh, then run peirce_mergekit_setup and peirce_verl_setup",
    )
}

fn kind_name(kind: AnswerKind) -> Value {
    serde_json::to_value(kind).expect("answer kinds serialize")
}

/// One corpus line: a response, its ground truth, and peirce's score under `mode`.
fn case(
    dataset: &str,
    mode: RewardMode,
    record: &Record,
    truth: &str,
    response: String,
    perfect: bool,
) -> Value {
    let score = score_with(mode, record.answer_kind, &response, truth);
    json!({
        "dataset": dataset,
        "data_source": record.data_source,
        "ground_truth": truth,
        "extra_info": {"answer_kind": kind_name(record.answer_kind)},
        "response": response,
        "total": score.total,
        "format_ok": score.format_ok,
        "answer": match score.answer {
            AnswerStatus::Correct => "correct",
            AnswerStatus::Wrong => "wrong",
            AnswerStatus::Unparseable => "unparseable",
        },
        "perfect": perfect,
    })
}

/// Every record's perfect responses (with and without its worked solution) and a wrong one,
/// the README's mode-difference cases of its family (logic) or the boxed-math cases (math),
/// then fuzzed responses: random fragments and mutated perfect responses (for math, also
/// mutated boxed forms), some behind an `Assistant:` (which the paper's rules read), some
/// against a fuzzed ground truth.
fn corpus(dataset: &str, mode: RewardMode, records: &[Record], rng: &mut SplitMix) -> Vec<Value> {
    let mut lines = Vec::new();
    let kind = records[0].answer_kind;
    for record in records {
        // A wrong answer in the right form: -0.5 in both modes (logic), 0 (math).
        let response = perfect_response(kind, &wrong(kind, &record.answer), None);
        let score = score_with(mode, kind, &response, &record.answer);
        assert!(!score.is_correct(), "{response:?} vs {:?}", record.answer);
        lines.push(case(dataset, mode, record, &record.answer, response, false));
        for solution in [record.solution.as_deref(), None] {
            let response = perfect_response(kind, &record.answer, solution);
            assert_eq!(
                score_with(mode, kind, &response, &record.answer).total,
                totals(kind)[0]
            );
            lines.push(case(dataset, mode, record, &record.answer, response, true));
        }
    }
    if kind == AnswerKind::Boxed {
        lines.extend(boxed_cases(dataset, mode, records));
    }
    // The README's table of differences between the modes, for this family.
    for example in mode_cases()
        .into_iter()
        .filter(|example| example.kind == kind)
    {
        let response = example.response.to_string();
        lines.push(case(
            dataset,
            mode,
            &records[0],
            example.truth,
            response,
            false,
        ));
    }
    for index in 0..FUZZ {
        let record = &records[rng.below(records.len())];
        let mut perfect = perfect_response(kind, &record.answer, None);
        if kind == AnswerKind::Boxed && index % 3 == 2 {
            let forms = boxed_forms(&record.answer);
            let form = &forms[rng.below(forms.len())];
            perfect = box_response(form, rng.below(BOX_RESPONSE_VARIANTS));
        }
        let mut response = match index % 3 {
            0 => {
                let pieces = rng.below(40);
                fragment_string(rng, pieces)
            }
            _ => mutate(rng, &perfect),
        };
        if index % 10 == 1 {
            response = format!("Assistant: <think>{response}");
        }
        let truth = if index % 7 == 0 {
            let pieces = rng.below(4);
            format!("{}{}", record.answer, fragment_string(rng, pieces))
        } else {
            record.answer.clone()
        };
        lines.push(case(dataset, mode, record, &truth, response, false));
    }
    lines
}

/// Box contents for a math ground truth: its [`integer_forms`] when it is an integer (as
/// arithmetic's are), and its [`decorated_forms`].
fn boxed_forms(answer: &str) -> Vec<String> {
    let integers = answer.parse().map(integer_forms).unwrap_or_default();
    let integers = integers.into_iter().map(|(form, _)| form);
    integers.chain(decorated_forms(answer)).collect()
}

/// Boxed math: every record's answer written in each of its [`boxed_forms`] (in the answer
/// block, and in one other of the [`box_response`] variants in turn; the integer forms must
/// score as [`integer_forms`] says), and both ways round the pairs of [`MATH_EQUIVALENT`]
/// and [`MATH_DIFFERENT`] in every variant.
fn boxed_cases(dataset: &str, mode: RewardMode, records: &[Record]) -> Vec<Value> {
    let mut lines = Vec::new();
    let mut turn = 0;
    for record in records {
        if let Ok(truth) = record.answer.parse() {
            for (form, same) in integer_forms(truth) {
                let response = box_response(&form, 0);
                let score = score_with(mode, AnswerKind::Boxed, &response, &record.answer);
                assert_eq!(score.is_correct(), same, "{form:?} vs {truth}");
            }
        }
        for form in boxed_forms(&record.answer) {
            let response = box_response(&form, 0);
            lines.push(case(dataset, mode, record, &record.answer, response, false));
            turn += 1;
            let response = box_response(&form, 1 + turn % (BOX_RESPONSE_VARIANTS - 1));
            lines.push(case(dataset, mode, record, &record.answer, response, false));
        }
    }
    for (left, right) in MATH_EQUIVALENT.iter().chain(MATH_DIFFERENT) {
        for (answer, truth) in [(left, right), (right, left)] {
            for variant in 0..BOX_RESPONSE_VARIANTS {
                let response = box_response(answer, variant);
                lines.push(case(dataset, mode, &records[0], truth, response, false));
            }
        }
    }
    lines
}

/// `answer` changed: the integer plus one, one plus a math answer, or the first line's value
/// word swapped.
fn wrong(kind: AnswerKind, answer: &str) -> String {
    if let Ok(number) = answer.trim().parse::<i64>() {
        return (number + 1).to_string();
    }
    if kind == AnswerKind::Boxed {
        // In front: after a trailing unit (`5\\text{ cm}+1`), it would be dropped with it.
        return format!("1+{answer}");
    }
    let (first, rest) = answer.split_once('\n').unwrap_or((answer, ""));
    let swapped = [
        ("True", "False"),
        ("False", "True"),
        ("unreachable", "reachable"),
        ("reachable", "unreachable"),
    ]
    .into_iter()
    .find_map(|(from, to)| Some(format!("{}{to}", first.strip_suffix(from)?)))
    .unwrap_or_else(|| panic!("no value word to swap in {answer:?}"));
    format!("{swapped}\n{rest}")
}

fn export(sandbox: &Sandbox, node: &str) -> std::path::PathBuf {
    let folder = sandbox.path(&format!("export/{node}"));
    sandbox
        .peirce(&["export", node, folder.to_str().unwrap(), "-w", "wf.toml"])
        .success();
    folder
}

#[test]
fn verl_round_trip() {
    let Some(python) = verl_python() else {
        return;
    };
    let sandbox = Sandbox::new();
    sandbox.workflow(WORKFLOW);
    let rows: Vec<String> = MATH_ANSWERS
        .iter()
        .enumerate()
        .map(|(index, answer)| {
            json!({"problem": format!("Problem {index}."), "answer": answer}).to_string()
        })
        .collect();
    sandbox.write("math.jsonl", &rows.join("\n"));
    sandbox.run_ok(&[]);
    let tokenizer = export(&sandbox, "tokenizer");
    let mut lines = Vec::new();
    let mut arguments = Vec::new();
    let mut rng = SplitMix(0x7E51_0016);
    let mut prompts = 0;
    for (node, mode) in DATASETS {
        let folder = export(&sandbox, node);
        for file in [
            "reward.py",
            "chat_template.jinja",
            "train.parquet",
            "test.parquet",
        ] {
            assert!(folder.join(file).is_file(), "{node} has no {file}");
        }
        // The README's verl config quotes the exported template.
        let template = std::fs::read_to_string(folder.join("chat_template.jinja")).unwrap();
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        assert!(readme.contains(&format!("chat_template: \"{template}\"")));
        let module = std::fs::read_to_string(folder.join("reward.py")).unwrap();
        assert!(
            module.contains(&format!("MODE = \"{}\"", mode.name())),
            "{node}"
        );
        let mut records = read_jsonl(&folder.join("train.jsonl")).unwrap();
        records.extend(read_jsonl(&folder.join("test.jsonl")).unwrap());
        assert!(records.len() >= 10, "{node}: {} records", records.len());
        prompts += records.len();
        lines.extend(corpus(node, mode, &records, &mut rng));
        arguments.push(format!("{node}={}", folder.display()));
    }
    let corpus_path = sandbox.path("corpus.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&corpus_path, text.join("\n")).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verl_check.py");
    let output = Command::new(python)
        .arg(script)
        .arg(&tokenizer)
        .arg(&corpus_path)
        .args(&arguments)
        // The project's libtorch (scripts/torch-env.sh) is not the one verl's torch needs.
        .env_remove("LD_LIBRARY_PATH")
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .expect("running the verl check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "verl round trip failed:\n{stderr}\n{stdout}"
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no summary ({error}):\n{stdout}\n{stderr}"));
    eprintln!("verl round trip: {summary}, {} corpus lines", lines.len());
    assert_eq!(summary["prompts"], prompts, "{summary}");
    assert_eq!(summary["perfect"], 2 * prompts, "{summary}");
    let boxed = lines
        .iter()
        .filter(|line| line["extra_info"]["answer_kind"] == "boxed")
        .count();
    assert_eq!(summary["boxed"], boxed, "{summary}");
    assert_eq!(
        summary["scored"],
        lines.len(),
        "every line is scored: {summary}"
    );
    // The corpus is not all noise: it holds each total a logic task can give, and each
    // fate of a boxed answer.
    let graded = |boxed: bool| {
        lines.iter().filter(move |line| {
            line["perfect"] == false && (line["extra_info"]["answer_kind"] == "boxed") == boxed
        })
    };
    for total in [3.0, -0.5, -1.0, -3.0] {
        let count = graded(false).filter(|line| line["total"] == total).count();
        assert!(count >= 20, "only {count} logic responses total {total}");
    }
    for answer in ["correct", "wrong", "unparseable"] {
        let count = graded(true).filter(|line| line["answer"] == answer).count();
        assert!(count >= 100, "only {count} boxed responses are {answer}");
    }
    eprintln!(
        "boxed lines: {boxed} ({} graded 1)",
        graded(true).filter(|line| line["total"] == 1.0).count()
    );
}
