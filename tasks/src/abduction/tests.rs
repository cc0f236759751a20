//! Family-level tests: every generated instance verifies, layouts hold, the verifier
//! rejects what it must and never panics. The solver's own tests are in `solve.rs`.

use super::*;

/// Instances per (level, layout): 10,000 with `PEIRCE_LARGE_TESTS` set, else 300.
fn sample_size() -> u64 {
    crate::test_sample_size()
}

fn options(layout: Option<&str>, with_solution: bool) -> Options {
    Options {
        layout: layout.map(str::to_string),
        with_solution,
    }
}

fn instance(level: u32, index: u64, layout: Option<&str>) -> Instance {
    let mut rng = TaskRng::for_instance(11, "abduction", level, index);
    Abduction.generate(level, &mut rng, &options(layout, index.is_multiple_of(4)))
}

/// The goal names, the known atoms, and the answer's statuses, read from the text.
fn lists(instance: &Instance) -> (Vec<String>, Vec<String>, Vec<bool>) {
    let list = |prefix: &str| -> Vec<String> {
        let line = instance
            .puzzle
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .expect("list line");
        line.split(',')
            .map(|name| name.trim().to_string())
            .collect()
    };
    let statuses = instance
        .answer
        .lines()
        .map(|line| line.ends_with(" is reachable"))
        .collect();
    (list("Goals: "), list("Known atoms: "), statuses)
}

const LAYOUTS: [Option<&str>; 3] = [None, Some("shortcut-free"), Some("paper")];

#[test]
fn every_instance_verifies() {
    for level in 1..=5 {
        for layout in [None, Some("paper")] {
            for index in 0..sample_size() {
                let instance = instance(level, index, layout);
                if let Err(error) = Abduction.verify(&instance) {
                    panic!(
                        "level {level} {layout:?} #{index}: {error}\n{}\n{}",
                        instance.puzzle, instance.answer
                    );
                }
            }
        }
    }
}

#[test]
fn construction_meets_the_guarantees_without_retrying() {
    // The final check in `generate` is a safety net: a retry means a construction bug.
    for level in 1..=5 {
        let spec = LEVELS[level as usize - 1];
        for layout in [Layout::ShortcutFree, Layout::Paper] {
            for index in 0..sample_size() {
                let mut rng = TaskRng::for_instance(13, "abduction", level, index);
                assert!(
                    generate::try_build(&spec, layout, &mut rng).is_some(),
                    "level {level} {layout:?} #{index}"
                );
            }
        }
    }
}

#[test]
fn same_stream_same_instance() {
    for level in 1..=5 {
        for layout in LAYOUTS {
            for index in 0..20 {
                assert_eq!(
                    instance(level, index, layout),
                    instance(level, index, layout)
                );
            }
        }
        assert_ne!(instance(level, 0, None), instance(level, 1, None));
    }
}

#[test]
fn shortcut_free_never_lists_a_reachable_goal_as_known() {
    for level in 1..=5 {
        let mut reachable_seen = 0;
        for index in 0..sample_size() {
            let instance = instance(level, index, None);
            assert_eq!(instance.params["layout"], "shortcut-free");
            let (goals, known, statuses) = lists(&instance);
            assert_eq!(goals.len(), LEVELS[level as usize - 1].goals);
            for (goal, reachable) in goals.iter().zip(statuses) {
                if reachable {
                    reachable_seen += 1;
                    assert!(
                        !known.contains(goal),
                        "{goal} is known:\n{}",
                        instance.puzzle
                    );
                }
            }
        }
        assert!(
            reachable_seen > 0,
            "level {level} never has a reachable goal"
        );
    }
}

#[test]
fn paper_layout_has_three_goals_one_reachable_and_known() {
    for level in 1..=5 {
        for index in 0..sample_size() {
            let instance = instance(level, index, Some("paper"));
            assert_eq!(instance.params["layout"], "paper");
            let (goals, known, statuses) = lists(&instance);
            assert_eq!(goals.len(), 3);
            assert_eq!(statuses.iter().filter(|&&reachable| reachable).count(), 1);
            for (goal, reachable) in goals.iter().zip(statuses) {
                assert_eq!(
                    known.contains(goal),
                    reachable,
                    "{goal}:\n{}",
                    instance.puzzle
                );
            }
        }
    }
}

/// The release's generator (arXiv 2505.10554, its abduction script) at levels 1 and 2: the
/// mean and standard deviation of the premise counts of the puzzles it keeps, measured by
/// running that script's construction and validity filter for 2,000 and 1,000 puzzles
/// (2026-12-06). The paper layout must draw from the same distribution.
const RELEASE_PREMISES: [(u32, f64, f64); 2] = [(1, 8.35, 1.88), (2, 13.38, 1.86)];

#[test]
fn paper_layout_premise_counts_follow_the_release() {
    let count = sample_size().max(1_000);
    for (level, mean, deviation) in RELEASE_PREMISES {
        let counts: Vec<f64> = (0..count)
            .map(|index| {
                let instance = instance(level, index, Some("paper"));
                let premises = instance.params["premises"].as_u64().unwrap() as f64;
                let listed = instance
                    .puzzle
                    .lines()
                    .filter(|line| {
                        line.split_once(". ").is_some_and(|(number, premise)| {
                            number.parse::<u32>().is_ok() && premise.contains(" => ")
                        })
                    })
                    .count() as f64;
                assert_eq!(premises, listed, "{}", instance.puzzle);
                premises
            })
            .collect();
        let ours = counts.iter().sum::<f64>() / counts.len() as f64;
        let spread =
            (counts.iter().map(|c| (c - ours).powi(2)).sum::<f64>() / counts.len() as f64).sqrt();
        assert!(
            (ours - mean).abs() < 0.3,
            "level {level}: mean {ours:.2} premises, the release's {mean}"
        );
        assert!(
            (spread - deviation).abs() < 0.4,
            "level {level}: deviation {spread:.2}, the release's {deviation}"
        );
    }
}

#[test]
fn shortcut_free_answers_are_balanced() {
    let (mut reachable, mut total) = (0, 0);
    for level in 1..=5 {
        for index in 0..sample_size() {
            let instance = instance(level, index, None);
            let balance = Abduction.answer_balance(&instance.answer);
            assert_eq!(balance[0].0, "reachable");
            reachable += balance[0].1;
            total += balance[0].1 + balance[1].1;
        }
    }
    let share = reachable as f64 / total as f64;
    assert!((0.42..0.58).contains(&share), "reachable share {share}");
}

#[test]
fn params_describe_the_instance() {
    for level in 1..=5 {
        let spec = LEVELS[level as usize - 1];
        for index in 0..50 {
            let instance = instance(level, index, None);
            let number = |key: &str| {
                instance.params[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("`{key}` missing"))
            };
            assert!((u64::from(spec.depth.0)..=u64::from(spec.depth.1)).contains(&number("depth")));
            assert!(
                (u64::from(spec.distractors.0)..=u64::from(spec.distractors.1))
                    .contains(&number("distractors"))
            );
            assert_eq!(number("goals"), spec.goals as u64);
            assert_eq!(
                number("premises"),
                instance
                    .puzzle
                    .lines()
                    .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
                    .count() as u64
            );
            assert_eq!(
                number("reachable"),
                Abduction.answer_balance(&instance.answer)[0].1
            );
            assert_eq!(number("known"), lists(&instance).1.len() as u64);
            assert!(number("atoms") >= number("known") + number("goals"));
            assert!(number("cycles") <= number("goals"));
        }
    }
}

#[test]
fn solutions_trace_back_and_end_with_the_answer() {
    for level in 1..=5 {
        for layout in [None, Some("paper")] {
            for index in 0..40 {
                let mut rng = TaskRng::for_instance(3, "abduction", level, index);
                let instance = Abduction.generate(level, &mut rng, &options(layout, true));
                let solution = instance.solution.as_deref().expect("asked for");
                let summary = instance.answer.replace('\n', ", ");
                assert!(
                    solution.ends_with(&format!("So the answer is: {summary}.")),
                    "{solution}"
                );
                assert!(solution.starts_with("Goal (1) "));
                assert!(!solution.contains("<think>") && !solution.contains("</think>"));
                let mut rng = TaskRng::for_instance(3, "abduction", level, index);
                let without = Abduction.generate(level, &mut rng, &options(layout, false));
                assert_eq!(without.solution, None);
                assert_eq!(
                    without.puzzle, instance.puzzle,
                    "solutions must not change the stream"
                );
            }
        }
    }
}

#[test]
fn a_tampered_answer_is_wrong() {
    for level in 1..=5 {
        for layout in [None, Some("paper")] {
            for index in 0..30 {
                let mut instance = instance(level, index, layout);
                let flip = index as usize % instance.answer.lines().count();
                instance.answer = instance
                    .answer
                    .lines()
                    .enumerate()
                    .map(|(line_index, line)| {
                        if line_index != flip {
                            line.to_string()
                        } else if let Some(stem) = line.strip_suffix(" unreachable") {
                            format!("{stem} reachable")
                        } else {
                            line.replace(" reachable", " unreachable")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let verdict = Abduction.verify(&instance);
                assert!(
                    matches!(verdict, Err(VerifyError::WrongAnswer { .. })),
                    "{verdict:?}"
                );
            }
        }
    }
}

#[test]
fn rule_breaking_instances_are_invalid() {
    // A shortcut-free puzzle relabeled as paper, and a paper puzzle relabeled shortcut-free.
    let mut instance = instance(2, 5, None);
    instance.params.insert("layout".into(), "paper".into());
    assert!(matches!(
        Abduction.verify(&instance),
        Err(VerifyError::Invalid(_))
    ));
    let mut instance = self::instance(2, 5, Some("paper"));
    instance
        .params
        .insert("layout".into(), "shortcut-free".into());
    assert!(matches!(
        Abduction.verify(&instance),
        Err(VerifyError::Invalid(_))
    ));
    // The level must match the depths and counts.
    let mut instance = self::instance(5, 1, None);
    instance.level = 1;
    assert!(matches!(
        Abduction.verify(&instance),
        Err(VerifyError::Invalid(_))
    ));
    instance.level = 9;
    assert!(matches!(
        Abduction.verify(&instance),
        Err(VerifyError::Invalid(_))
    ));
}

#[test]
fn garbage_never_panics() {
    let mut rng = TaskRng::from_seed(5);
    const ALPHABET: &[u8] = b"()=> ANDORNOT.,:\nA1B2 Premises:Known atoms:Goals:12";
    for round in 0..3_000u64 {
        let mut instance = instance(1 + (round % 5) as u32, round, LAYOUTS[round as usize % 3]);
        let mut bytes = instance.puzzle.clone().into_bytes();
        match round % 4 {
            0 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = *rng.pick(ALPHABET);
                }
            }
            2 => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes.remove(at);
            }
            _ => bytes = (0..rng.below(200)).map(|_| *rng.pick(ALPHABET)).collect(),
        }
        instance.puzzle = String::from_utf8_lossy(&bytes).into_owned();
        if round % 7 == 0 {
            instance.answer = String::from_utf8_lossy(
                &(0..rng.below(60))
                    .map(|_| *rng.pick(ALPHABET))
                    .collect::<Vec<_>>(),
            )
            .into_owned();
        }
        let _ = Abduction.verify(&instance);
    }
    for text in [
        "",
        "Premises:",
        "Premises:\n1. ((((",
        "Premises:\n1. (A1) =>\nKnown atoms:\nGoals:",
        "Premises:\nKnown atoms: \nGoals: A1",
    ] {
        let instance = Instance {
            task: "abduction".into(),
            level: 1,
            puzzle: text.into(),
            answer: "(1) A1 is reachable".into(),
            params: Default::default(),
            solution: None,
        };
        assert!(Abduction.verify(&instance).is_err(), "{text:?}");
    }
    let deep = format!(
        "Premises:\n1. {}A1{} => B1\nKnown atoms: A1\nGoals: B1",
        "(".repeat(5_000),
        ")".repeat(5_000)
    );
    assert!(parse::parse_puzzle(&deep).is_err());
}

#[test]
fn puzzle_text_reads_as_documented() {
    let instance = instance(3, 2, None);
    assert!(instance.puzzle.starts_with("Premises:\n1. ("));
    assert!(instance.puzzle.contains("\nKnown atoms: "));
    assert!(instance.puzzle.ends_with(GUIDANCE));
    assert!(Abduction.instruction().contains("(1) X is reachable"));
    for line in instance.answer.lines() {
        assert!(
            line.ends_with(" is reachable") || line.ends_with(" is unreachable"),
            "{line}"
        );
    }
}
