use std::collections::BTreeMap;

use serde_json::json;

use super::{render_puzzle, Induction};
use crate::{Family, Instance, Options, TaskRng, VerifyError};

fn count() -> u64 {
    crate::test_sample_size()
}

fn instance(level: u32, index: u64) -> Instance {
    let mut rng = TaskRng::for_instance(3, "induction", level, index);
    let options = Options {
        with_solution: true,
        ..Options::default()
    };
    Induction.generate(level, &mut rng, &options)
}

/// A hand-made instance with consistent params.
fn hand_made(level: u32, visible: &[i64], answer: i64, cycle: usize) -> Instance {
    let mut params = BTreeMap::new();
    params.insert("length".to_string(), json!(visible.len() + 1));
    params.insert("cycle".to_string(), json!(cycle));
    Instance {
        task: "induction".to_string(),
        level,
        puzzle: render_puzzle(visible),
        answer: answer.to_string(),
        params,
        solution: None,
    }
}

#[test]
fn every_level_verifies() {
    for level in 1..=5 {
        let mut families = BTreeMap::new();
        for index in 0..count() {
            let instance = instance(level, index);
            assert_eq!(
                Induction.verify(&instance),
                Ok(()),
                "level {level} #{index}: {instance:#?}"
            );
            let family = instance.params["family"].as_str().unwrap().to_string();
            *families.entry(family).or_insert(0) += 1;
            assert!(instance
                .solution
                .as_deref()
                .unwrap()
                .contains(&instance.answer));
        }
        let expected: &[&str] = match level {
            1 => &["alternation", "arithmetic", "geometric"],
            2 => &["alternation", "period2"],
            3 => &["cycle3"],
            4 => &["cycle4"],
            _ => &["cycle5"],
        };
        let seen: Vec<&str> = families.keys().map(String::as_str).collect();
        assert_eq!(seen, expected, "level {level}");
    }
}

#[test]
fn puzzle_and_params_have_the_documented_shape() {
    let instance = instance(4, 0);
    assert!(instance
        .puzzle
        .starts_with("Given the following sequence, find the pattern"));
    assert!(instance
        .puzzle
        .ends_with(", ?\n\nWhat is the value at the question mark?"));
    for key in ["length", "family", "cycle", "ops", "max_abs"] {
        assert!(instance.params.contains_key(key), "{key}");
    }
    assert_eq!(instance.params["cycle"], json!(4));
    assert_eq!(instance.params["ops"].as_array().unwrap().len(), 4);
    let geometric = hand_made(1, &[3, 6, 12, 24], 48, 1);
    assert_eq!(
        geometric.puzzle,
        "Given the following sequence, find the pattern and determine the value at the question mark.\n\n3, 6, 12, 24, ?\n\nWhat is the value at the question mark?"
    );
    assert_eq!(Induction.verify(&geometric), Ok(()));
}

#[test]
fn generation_is_deterministic() {
    for level in 1..=5 {
        for index in 0..20 {
            assert_eq!(instance(level, index), instance(level, index));
        }
    }
    assert_ne!(instance(3, 0), instance(3, 1));
}

#[test]
fn tampered_answer_is_wrong() {
    for level in 1..=5 {
        let mut instance = instance(level, 7);
        let answer: i64 = instance.answer.parse().unwrap();
        instance.answer = (answer + 1).to_string();
        assert!(
            matches!(
                Induction.verify(&instance),
                Err(VerifyError::WrongAnswer { .. })
            ),
            "level {level}"
        );
    }
}

#[test]
fn masked_step_never_shown_is_uninferable() {
    // The paper's newer generator: a 6-step cycle (+1, ×2, +3, −1, ×3, +2, ...) shown for
    // 7 terms, so the step making the masked term (the 7th) never appears. No rule of at
    // most 5 steps fits.
    let newer = hand_made(5, &[1, 2, 4, 7, 6, 18, 20], 80, 5);
    assert!(matches!(
        Induction.verify(&newer),
        Err(VerifyError::Uninferable(_))
    ));
    // After the first term the terms alternate 3, 9, 3: the odd places were seen to repeat,
    // the even place of the masked term never was.
    let period = hand_made(1, &[7, 3, 9, 3], 9, 2);
    assert!(matches!(
        Induction.verify(&period),
        Err(VerifyError::Uninferable(_))
    ));
}

#[test]
fn ambiguous_sequence_is_ambiguous() {
    // Cycle (+3, −2, ?) where the third step was seen only as 2 → 4: +2 or ×2 (7 or 10).
    let instance = hand_made(3, &[1, 4, 2, 4, 7, 5], 7, 3);
    assert!(matches!(
        Induction.verify(&instance),
        Err(VerifyError::Ambiguous(_))
    ));
}

/// Instances of `level` (out of `count()`) that the broader rule space finds ambiguous.
fn broad_ambiguous(level: u32) -> u64 {
    (0..count())
        .filter(|&index| {
            let instance = instance(level, index);
            let terms = super::solve::parse_puzzle(&instance.puzzle).unwrap();
            let answer: i64 = instance.answer.parse().unwrap();
            super::solve::check_broad(&terms, answer).is_err()
        })
        .count() as u64
}

#[test]
fn at_most_one_percent_is_ambiguous_under_the_broader_rule_space() {
    let ambiguous: Vec<u64> = (1..=5).map(broad_ambiguous).collect();
    eprintln!(
        "ambiguous under the broader rule space, levels 1-5, of {} each: {ambiguous:?}",
        count()
    );
    assert!(
        ambiguous.iter().all(|&found| found * 100 <= count()),
        "{ambiguous:?} of {}",
        count()
    );
}

#[test]
fn the_broader_rule_space_catches_what_the_level_alphabet_misses() {
    // The example: the cycle (+2, −3, ×2, ×2, +1); the masked term's step was seen
    // only as 8 → 16, which `+8` (outside the level's ±1..4) fits as well as `×2`.
    let instance = hand_made(5, &[5, 7, 4, 8, 16, 17, 19, 16, 32], 64, 5);
    let Err(VerifyError::Ambiguous(message)) = Induction.verify(&instance) else {
        panic!("{:?}", Induction.verify(&instance));
    };
    assert!(
        message.contains("broader") && message.contains("40"),
        "{message}"
    );
    // Value-periodic patterns, with and without a free first term.
    let simplest = |visible: &[i64]| {
        let terms = super::solve::Terms::last_masked(visible);
        let (length, mut predictions) = super::solve::simplest_broad(&terms).unwrap();
        predictions.sort_unstable();
        predictions.dedup();
        (length, predictions)
    };
    assert_eq!(simplest(&[3, 7, 2, 3, 7, 2, 3]), (3, vec![Some(7)]));
    assert_eq!(simplest(&[9, 4, 6, 4, 6, 4]), (2, vec![Some(6)]));
    // A period seen at only some phases is not a pattern: the op-cycle decides.
    assert_eq!(simplest(&[1, 2, 4, 8, 16]), (1, vec![Some(32)]));
    // An unseen step admits the whole alphabet.
    let (length, predictions) = simplest(&[1, 2, 1, 3, 7]);
    assert!(
        length == 5 || predictions.len() > 1,
        "{length} {predictions:?}"
    );
}

#[test]
fn a_term_masked_inside_the_sequence_is_read_and_solved() {
    // The paper's released "missing term" form: the masked term must follow from the one
    // before it and lead on to the one after.
    let masked = |terms: &[Option<i64>], answer: i64| {
        let mut instance = hand_made(2, &[0, 0], answer, 1);
        instance.puzzle = super::render_masked(terms);
        instance
            .params
            .insert(crate::release::SOURCE_LAYOUT.to_string(), json!("paper"));
        instance
            .params
            .insert("length".to_string(), json!(terms.len()));
        instance.params.remove("cycle");
        instance
    };
    let terms = [Some(3), Some(6), None, Some(12), Some(15), Some(18)];
    assert_eq!(Induction.verify(&masked(&terms, 9)), Ok(()));
    assert!(matches!(
        Induction.verify(&masked(&terms, 10)),
        Err(VerifyError::WrongAnswer { .. })
    ));
    // A two-step cycle (×2, +1) with the masked term made by ×2 and leading on by +1.
    let cycle = [Some(1), Some(2), Some(3), None, Some(7), Some(14), Some(15)];
    assert_eq!(Induction.verify(&masked(&cycle, 6)), Ok(()));
    // Two masks, or the first term masked, do not parse.
    for terms in [
        vec![Some(1), None, None, Some(4)],
        vec![None, Some(2), Some(4), Some(8)],
    ] {
        assert!(matches!(
            Induction.verify(&masked(&terms, 1)),
            Err(VerifyError::Unparseable(_))
        ));
    }
}

#[test]
fn level_constraints_are_checked() {
    // A fine sequence that is too short for level 3.
    let short = hand_made(3, &[1, 2, 4, 8], 16, 1);
    assert!(matches!(
        Induction.verify(&short),
        Err(VerifyError::Invalid(_))
    ));
    // A 1-step rule offered at level 3.
    let simple = hand_made(3, &[1, 2, 4, 8, 16, 32], 64, 1);
    assert!(matches!(
        Induction.verify(&simple),
        Err(VerifyError::Invalid(_))
    ));
    // Only a period-2 pattern explains it (0 → 0 fits every ×c and ÷c, but 1 → 0 is −1):
    // not a level-1 family.
    let zeros = hand_made(1, &[1, 0, 0, 0, 0], 0, 2);
    assert!(matches!(
        Induction.verify(&zeros),
        Err(VerifyError::Invalid(_))
    ));
    // Wrong `cycle` param.
    let params = hand_made(1, &[3, 6, 12, 24], 48, 2);
    assert!(matches!(
        Induction.verify(&params),
        Err(VerifyError::Invalid(_))
    ));
}

#[test]
fn parser_never_panics_on_garbage() {
    let base = instance(3, 0);
    let mut rng = TaskRng::from_seed(11);
    let alphabet: Vec<char> = "0123456789-+,? \n×÷abc\u{0}é".chars().collect();
    for round in 0..2_000 {
        let mut broken = base.clone();
        match round % 4 {
            0 => {
                let cut = rng.below(base.puzzle.len() as u64 + 1) as usize;
                broken.puzzle = base.puzzle.get(..cut).unwrap_or("").to_string();
            }
            1 => {
                let length = rng.below(200) as usize;
                broken.puzzle = (0..length).map(|_| *rng.pick(&alphabet)).collect();
            }
            2 => {
                let length = rng.below(30) as usize;
                let line: String = (0..length).map(|_| *rng.pick(&alphabet)).collect();
                broken.puzzle = format!("{}\n\n{line}\n\n{}", super::HEADER, super::QUESTION);
            }
            _ => {
                let length = rng.below(12) as usize;
                let terms: Vec<String> = (0..length)
                    .map(|_| match rng.below(4) {
                        0 => i64::MAX.to_string(),
                        1 => i64::MIN.to_string(),
                        2 => "0".to_string(),
                        _ => rng.range(-1_000_000_000_000, 1_000_000_000_000).to_string(),
                    })
                    .collect();
                broken.puzzle = format!(
                    "{}\n\n{}, ?\n\n{}",
                    super::HEADER,
                    terms.join(", "),
                    super::QUESTION
                );
                broken.level = rng.below(7) as u32;
                broken.answer = (*rng.pick(&["", "x", "9223372036854775807", "-3"])).to_string();
            }
        }
        let _ = Induction.verify(&broken);
    }
    let mut unparseable = base.clone();
    unparseable.puzzle = "3, 6, 12, ?".to_string();
    assert!(matches!(
        Induction.verify(&unparseable),
        Err(VerifyError::Unparseable(_))
    ));
    let mut answer = base;
    answer.answer = "ten".to_string();
    assert!(matches!(
        Induction.verify(&answer),
        Err(VerifyError::Unparseable(_))
    ));
}

#[test]
fn answer_balance_counts_signs() {
    assert_eq!(
        Induction.answer_balance("10"),
        vec![("positive", 1), ("non_positive", 0)]
    );
    assert_eq!(
        Induction.answer_balance("-4"),
        vec![("positive", 0), ("non_positive", 1)]
    );
    assert_eq!(
        Induction.answer_balance("x"),
        vec![("positive", 0), ("non_positive", 0)]
    );
}
