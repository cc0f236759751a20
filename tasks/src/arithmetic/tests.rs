use std::collections::BTreeMap;

use serde_json::json;

use super::solve::{evaluate, EvaluateError};
use super::templates::{fill, TEMPLATES};
use super::{Arithmetic, COMPUTE, SUFFIX};
use crate::{Family, Instance, Options, TaskRng, VerifyError};

fn count() -> u64 {
    crate::test_sample_size()
}

fn instance(level: u32, index: u64) -> Instance {
    let mut rng = TaskRng::for_instance(5, "arithmetic", level, index);
    let options = Options {
        with_solution: true,
        ..Options::default()
    };
    Arithmetic.generate(level, &mut rng, &options)
}

#[test]
fn every_level_verifies() {
    for level in 1..=5 {
        let mut words = 0;
        for index in 0..count() {
            let instance = instance(level, index);
            assert_eq!(
                Arithmetic.verify(&instance),
                Ok(()),
                "level {level} #{index}: {instance:#?}"
            );
            assert_eq!(instance.params["steps"], json!(level));
            let solution = instance.solution.as_deref().unwrap();
            assert!(solution.ends_with(&format!("So the final answer is {}.", instance.answer)));
            assert_eq!(
                solution.lines().count(),
                level as usize + 1 + usize::from(instance.params["word_problem"] == json!(true))
            );
            words += usize::from(instance.params["word_problem"] == json!(true));
        }
        if level == 1 {
            assert_eq!(words, 0);
        } else {
            assert!(
                words > 0 && words < count() as usize,
                "level {level}: {words} word problems"
            );
        }
    }
}

#[test]
fn templates_match_their_trees() {
    for template in TEMPLATES {
        // Distinct numbers, so a slot mix-up shows.
        let numbers: Vec<i64> = (0..template.ranges.len() as i64).map(|k| 11 + k).collect();
        let tree = (template.build)(&numbers);
        assert_eq!(
            tree.render(true),
            fill(template.expression, &numbers),
            "{}",
            template.text
        );
        let evaluation = evaluate(&fill(template.expression, &numbers));
        assert_eq!(
            evaluation.map(|e| e.operations).unwrap_or(template.steps),
            template.steps,
            "{}",
            template.text
        );
    }
}

#[test]
fn the_evaluator_follows_precedence_and_exactness() {
    let value = |text: &str| evaluate(text).map(|e| e.value);
    assert_eq!(value("2 + 3 × 4"), Ok(14));
    assert_eq!(value("(2 + 3) * 4"), Ok(20));
    assert_eq!(value("20 - 5 - 3"), Ok(12));
    assert_eq!(value("20 - (5 - 3)"), Ok(18));
    assert_eq!(value("48 ÷ 4 ÷ 2"), Ok(6));
    assert_eq!(value("-3 * -(2 + 1)"), Ok(9));
    assert!(matches!(value("7 / 2"), Err(EvaluateError::Value(_))));
    assert!(matches!(value("7 / 0"), Err(EvaluateError::Value(_))));
    assert!(matches!(
        value("9223372036854775807 + 1"),
        Err(EvaluateError::Value(_))
    ));
    assert!(matches!(value("2 +"), Err(EvaluateError::Syntax(_))));
    assert!(matches!(value("(2"), Err(EvaluateError::Syntax(_))));
    assert!(matches!(value("2 3"), Err(EvaluateError::Syntax(_))));
    assert!(matches!(value("2 ^ 3"), Err(EvaluateError::Syntax(_))));
    assert_eq!(evaluate("(12 × 7) - 5").unwrap().normalized, "(12*7)-5");
    assert_eq!(evaluate("(12 × 7) - 5").unwrap().operations, 2);
}

#[test]
fn puzzle_and_params_have_the_documented_shape() {
    let instance = instance(1, 0);
    assert!(instance.puzzle.starts_with(COMPUTE));
    assert!(instance
        .puzzle
        .ends_with("Put your final answer in \\boxed{}."));
    for key in ["steps", "expression", "max_operand", "word_problem"] {
        assert!(instance.params.contains_key(key), "{key}");
    }
    let word = (0..100)
        .map(|index| self::instance(3, index))
        .find(|i| i.params["word_problem"] == json!(true))
        .unwrap();
    assert!(!word.puzzle.starts_with(COMPUTE));
    assert!(word.answer.parse::<i64>().unwrap() > 0);
    let mut params = BTreeMap::new();
    params.insert("steps".to_string(), json!(2));
    params.insert("expression".to_string(), json!("12*7-5"));
    params.insert("max_operand".to_string(), json!(12));
    params.insert("word_problem".to_string(), json!(true));
    let hand_made = Instance {
        task: "arithmetic".to_string(),
        level: 2,
        puzzle: format!(
            "A shop has 12 boxes with 7 apples in each box. It sells 5 apples. How many apples are left?{SUFFIX}"
        ),
        answer: "79".to_string(),
        params,
        solution: None,
    };
    assert_eq!(Arithmetic.verify(&hand_made), Ok(()));
    let mut other = hand_made.clone();
    other
        .params
        .insert("expression".to_string(), json!("12*7+5"));
    assert!(matches!(
        Arithmetic.verify(&other),
        Err(VerifyError::Invalid(_))
    ));
}

#[test]
fn generation_is_deterministic() {
    for level in 1..=5 {
        for index in 0..20 {
            assert_eq!(instance(level, index), instance(level, index));
        }
    }
    assert_ne!(instance(4, 0), instance(4, 1));
}

#[test]
fn tampered_answer_is_wrong() {
    for level in 1..=5 {
        for index in 0..10 {
            let mut instance = instance(level, index);
            let answer: i64 = instance.answer.parse().unwrap();
            instance.answer = (answer - 1).to_string();
            assert!(
                matches!(
                    Arithmetic.verify(&instance),
                    Err(VerifyError::WrongAnswer { .. })
                ),
                "level {level}"
            );
        }
    }
}

#[test]
fn level_constraints_are_checked() {
    let mut instance = instance(2, 0);
    instance.level = 3;
    assert!(matches!(
        Arithmetic.verify(&instance),
        Err(VerifyError::Invalid(_))
    ));
    let mut inexact = instance.clone();
    inexact.level = 1;
    inexact.puzzle = format!("{COMPUTE}7 ÷ 2{SUFFIX}");
    inexact
        .params
        .insert("expression".to_string(), json!("7/2"));
    assert!(matches!(
        Arithmetic.verify(&inexact),
        Err(VerifyError::Invalid(_))
    ));
}

#[test]
fn parser_never_panics_on_garbage() {
    let base = instance(5, 1);
    let mut rng = TaskRng::from_seed(17);
    let alphabet: Vec<char> = "0123456789+-*/×÷()( )) {}\\boxed\n−é".chars().collect();
    for round in 0..3_000 {
        let mut broken = base.clone();
        let length = rng.below(80) as usize;
        let garbage: String = (0..length).map(|_| *rng.pick(&alphabet)).collect();
        match round % 5 {
            0 => {
                let cut = rng.below(base.puzzle.len() as u64 + 1) as usize;
                broken.puzzle = base.puzzle.get(..cut).unwrap_or("").to_string();
            }
            1 => broken.puzzle = format!("{COMPUTE}{garbage}{SUFFIX}"),
            2 => {
                broken
                    .params
                    .insert("expression".to_string(), json!(garbage));
            }
            3 => {
                let depth = rng.below(100_000) as usize;
                broken.puzzle = format!(
                    "{COMPUTE}{}1{}{SUFFIX}",
                    "(".repeat(depth),
                    ")".repeat(depth)
                );
            }
            _ => {
                broken.puzzle = garbage.clone();
                broken.answer = garbage;
                broken.level = rng.below(7) as u32;
            }
        }
        let _ = Arithmetic.verify(&broken);
    }
    let mut word = base;
    word.puzzle = format!("A shop has many boxes.{SUFFIX}");
    assert!(matches!(
        Arithmetic.verify(&word),
        Err(VerifyError::Unparseable(_))
    ));
}

#[test]
fn answer_balance_counts_signs() {
    assert_eq!(
        Arithmetic.answer_balance("42"),
        vec![("positive", 1), ("non_positive", 0)]
    );
    assert_eq!(
        Arithmetic.answer_balance("0"),
        vec![("positive", 0), ("non_positive", 1)]
    );
}
