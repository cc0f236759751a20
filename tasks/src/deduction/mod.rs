//! Deduction: propositional satisfiability with exactly one model (arXiv 2505.10554, task 1).
//!
//! A puzzle lists 3 to 6 nested formulas over the variables `A`, `B`, ... with the
//! connectives `¬ ∧ ∨ → ↔ ⊕`, fully parenthesized; exactly one assignment satisfies them
//! all, and the answer lists it, `(1) A is True` per line in alphabetical order. Levels 1..5
//! have 4/6/8/10/12 variables and formulas of nesting depth 1/2/3/4/5.
//!
//! Formulas are drawn exactly as the paper's generator draws them, but the set is built
//! around a hidden target assignment rather than by rejecting random sets, which at the
//! high levels almost never have one model ([`construct`] says how and what that
//! changes). Verification re-reads the puzzle text with an independent parser and solver
//! ([`solve`]); worked solutions are [`solution`]. This module does not score responses: that is the reward function's job.

mod construct;
mod draw;
mod formula;
mod solution;
mod solve;
mod tables;

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AnswerKind, Family, Instance, Options, TaskRng, VerifyError};
use construct::{Construction, MAX_FORMULAS, MIN_FORMULAS};
use formula::variable_name;

/// The deduction family.
pub struct Deduction;

/// What a level asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LevelSpec {
    variables: usize,
    max_depth: u32,
}

/// Levels 1..=5: variables 4/6/8/10/12, depth 1/2/3/4/5.
fn level_spec(level: u32) -> Option<LevelSpec> {
    (1..=5).contains(&level).then(|| LevelSpec {
        variables: 2 + 2 * level as usize,
        max_depth: level,
    })
}

/// The answer: `(k) X is True|False` per variable, alphabetical, one per line.
fn render_answer(values: impl IntoIterator<Item = bool>) -> String {
    let mut answer = String::with_capacity(16 * formula::MAX_VARIABLES);
    for (index, value) in values.into_iter().enumerate() {
        if index > 0 {
            answer.push('\n');
        }
        answer.push('(');
        push_number(&mut answer, index + 1);
        answer.push_str(") ");
        answer.push(variable_name(index));
        answer.push_str(if value { " is True" } else { " is False" });
    }
    answer
}

/// Appends `number` in decimal (without the formatting machinery, which is slow enough
/// to show in generation at the low levels).
fn push_number(text: &mut String, number: usize) {
    if number >= 10 {
        push_number(text, number / 10);
    }
    text.push(char::from(b'0' + (number % 10) as u8));
}

/// The puzzle text around `count` formulas, each written by `write_formula(index, text)`.
fn render_puzzle(
    variables: usize,
    count: usize,
    mut write_formula: impl FnMut(usize, &mut String),
) -> String {
    let mut text = String::with_capacity(512 + 256 * count);
    text.push_str("Below are ");
    push_number(&mut text, count);
    text.push_str(" logical formulas over the ");
    push_number(&mut text, variables);
    text.push_str(" variables ");
    for index in 0..variables {
        if index > 0 {
            text.push_str(", ");
        }
        text.push(variable_name(index));
    }
    text.push_str(
        ". Exactly one assignment of truth values to these variables makes all of the \
         formulas true. Find it.\n\n",
    );
    for index in 0..count {
        text.push('(');
        push_number(&mut text, index + 1);
        text.push_str(") ");
        write_formula(index, &mut text);
        text.push('\n');
    }
    text.push_str(
        "\nSymbols: ¬ not, ∧ and, ∨ or, → implies, ↔ if and only if, ⊕ exclusive or.\n\
         Please list the truth value of each variable.",
    );
    text
}

/// A puzzle in this family's text around `formulas` (each in the formula syntax the
/// verifier reads) over the variables `A, B, ...` (`variables` of them): how imported
/// puzzles of the paper's release are put to the solver ([`crate::release`]).
pub(crate) fn puzzle_from_formulas(variables: usize, formulas: &[&str]) -> String {
    render_puzzle(variables, formulas.len(), |index, text| {
        text.push_str(formulas[index])
    })
}

/// The instance's parameters: sizes, the answer's True count, and connective counts over
/// all formulas (`ops_not` counts `¬(...)`, negated literals aside).
fn params(level: LevelSpec, construction: &Construction) -> BTreeMap<String, Value> {
    let mut totals = formula::Shape::default();
    for chosen in &construction.chosen {
        let shape = chosen.formula.shape();
        totals.depth = totals.depth.max(shape.depth);
        totals.leaves += shape.leaves;
        totals.negated_literals += shape.negated_literals;
        totals.nots += shape.nots;
        for (total, count) in totals.ops.iter_mut().zip(shape.ops) {
            *total += count;
        }
    }
    let true_count = construction.target.count_ones();
    let [implies, and, or, iff, xor] = totals.ops;
    [
        ("variables", level.variables as u64),
        ("depth", u64::from(totals.depth)),
        ("formulas", construction.chosen.len() as u64),
        ("implied_formulas", u64::from(construction.implied)),
        ("true_count", u64::from(true_count)),
        ("leaves", u64::from(totals.leaves)),
        ("negated_literals", u64::from(totals.negated_literals)),
        ("ops_not", u64::from(totals.nots)),
        ("ops_implies", u64::from(implies)),
        ("ops_and", u64::from(and)),
        ("ops_or", u64::from(or)),
        ("ops_iff", u64::from(iff)),
        ("ops_xor", u64::from(xor)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), Value::from(value)))
    .collect()
}

impl Family for Deduction {
    fn name(&self) -> &'static str {
        "deduction"
    }

    fn max_level(&self) -> u32 {
        5
    }

    fn instruction(&self) -> &'static str {
        "List the truth value of each variable inside <answer> </answer>, one per line in \
         alphabetical order, like (1) A is True"
    }

    fn answer_kind(&self) -> AnswerKind {
        AnswerKind::Assignment
    }

    /// A level outside 1..=5 is clamped into it (the instance records the level used).
    fn generate(&self, level: u32, rng: &mut TaskRng, options: &Options) -> Instance {
        let level = level.clamp(1, self.max_level());
        let spec = level_spec(level).expect("clamped into the level range");
        let mut space = tables::Space::new(spec.variables);
        let construction = construct::construct(rng, &mut space, spec.max_depth);
        let chosen = &construction.chosen;
        let puzzle = render_puzzle(spec.variables, chosen.len(), |index, text| {
            chosen[index].formula.render(text)
        });
        let target = construction.target;
        let answer = render_answer((0..spec.variables).map(|v| (target >> v) & 1 == 1));
        let solution = options
            .with_solution
            .then(|| solution::worked_solution(&space, &construction.chosen, target));
        Instance {
            task: self.name().into(),
            level,
            puzzle,
            answer,
            params: params(spec, &construction),
            solution,
        }
    }

    fn verify(&self, instance: &Instance) -> Result<(), VerifyError> {
        if instance.task != self.name() {
            return Err(VerifyError::Invalid(format!(
                "Task `{}` is not `deduction`",
                instance.task
            )));
        }
        let spec = level_spec(instance.level).ok_or_else(|| {
            VerifyError::Invalid(format!("Level {} is not within 1..=5", instance.level))
        })?;
        let puzzle = solve::read_puzzle(&instance.puzzle)?;
        if puzzle.variables.len() != spec.variables {
            return Err(VerifyError::Invalid(format!(
                "Level {} has {} variables, the puzzle {}",
                instance.level,
                spec.variables,
                puzzle.variables.len()
            )));
        }
        let expected_names = (0..spec.variables).map(variable_name);
        if !puzzle.variables.iter().copied().eq(expected_names) {
            return Err(VerifyError::Invalid(
                "The variables are not A, B, C, ... in order".into(),
            ));
        }
        if !(MIN_FORMULAS..=MAX_FORMULAS).contains(&puzzle.formulas.len()) {
            return Err(VerifyError::Invalid(format!(
                "{} formulas, not {MIN_FORMULAS} to {MAX_FORMULAS}",
                puzzle.formulas.len()
            )));
        }
        if let Some((index, formula)) = puzzle
            .formulas
            .iter()
            .enumerate()
            .find(|(_, formula)| formula.depth > spec.max_depth)
        {
            return Err(VerifyError::Invalid(format!(
                "Formula ({}) has depth {}, more than level {}'s {}",
                index + 1,
                formula.depth,
                instance.level,
                spec.max_depth
            )));
        }
        let (count, models) = puzzle.models(2);
        match models.as_slice() {
            [] => Err(VerifyError::Invalid(
                "No assignment satisfies all formulas".into(),
            )),
            [model] => {
                let found = render_answer(model.iter().copied());
                if found == instance.answer {
                    Ok(())
                } else {
                    Err(VerifyError::WrongAnswer {
                        expected: instance.answer.clone(),
                        found,
                    })
                }
            }
            [first, second, ..] => Err(VerifyError::Ambiguous(format!(
                "{count} assignments satisfy all formulas, among them `{}` and `{}`",
                render_answer(first.iter().copied()).replace('\n', ", "),
                render_answer(second.iter().copied()).replace('\n', ", ")
            ))),
        }
    }

    fn answer_balance(&self, answer: &str) -> Vec<(&'static str, u64)> {
        let count = |suffix: &str| answer.lines().filter(|l| l.ends_with(suffix)).count() as u64;
        vec![("true", count(" is True")), ("false", count(" is False"))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances_per_level() -> u64 {
        crate::test_sample_size()
    }

    fn instance(level: u32, index: u64, with_solution: bool) -> Instance {
        let mut rng = TaskRng::for_instance(7, "deduction", level, index);
        let options = Options {
            with_solution,
            ..Options::default()
        };
        Deduction.generate(level, &mut rng, &options)
    }

    /// The answer's values, if it is one `(k) X is True|False` line per variable in order.
    fn read_answer(answer: &str) -> Option<Vec<bool>> {
        answer
            .lines()
            .enumerate()
            .map(|(index, line)| {
                let prefix = format!("({}) {} is ", index + 1, variable_name(index));
                match line.strip_prefix(&prefix)? {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn every_level_generates_verified_unique_puzzles() {
        for level in 1..=5 {
            let spec = level_spec(level).unwrap();
            for index in 0..instances_per_level() {
                let instance = instance(level, index, false);
                assert_eq!(
                    Deduction.verify(&instance),
                    Ok(()),
                    "level {level} #{index}:\n{}\n{}",
                    instance.puzzle,
                    instance.answer
                );
                let values = read_answer(&instance.answer).expect("answer lines");
                assert_eq!(values.len(), spec.variables);
                let param = |key: &str| instance.params[key].as_u64().unwrap();
                assert_eq!(param("variables"), spec.variables as u64);
                assert_eq!(param("depth"), u64::from(spec.max_depth));
                assert!((3..=6).contains(&param("formulas")));
                let trues = values.iter().filter(|&&v| v).count() as u64;
                assert_eq!(param("true_count"), trues);
                assert_eq!(
                    Deduction.answer_balance(&instance.answer),
                    vec![("true", trues), ("false", values.len() as u64 - trues)]
                );
            }
        }
    }

    #[test]
    fn rendered_formulas_parse_back_to_the_same_function() {
        let mut rng = TaskRng::from_seed(5);
        for level in 1..=5 {
            let spec = level_spec(level).unwrap();
            let mut draws = draw::Draws::new(&mut rng, spec.variables);
            let names: Vec<char> = (0..spec.variables).map(variable_name).collect();
            let mut space = tables::Space::new(spec.variables);
            let sample = draw::Sample::from_members(&[]);
            let mut draft = draw::Draft::new();
            for _ in 0..50 {
                draft.draw(&mut draws, &sample, spec.max_depth);
                let generated = draft.formula();
                let mut text = String::new();
                generated.render(&mut text);
                let parsed = solve::parse_formula(&text, &names).expect(&text);
                assert_eq!(parsed.depth, generated.shape().depth, "{text}");
                let mut table = [0; tables::MAX_WORDS];
                space.evaluate(&draft, &mut table);
                let puzzle = solve::Puzzle {
                    variables: names.clone(),
                    formulas: vec![parsed],
                };
                let (count, models) = puzzle.models(usize::MAX);
                let ones = tables::count_common(&table, space.all(), space.words());
                assert_eq!(count, u64::from(ones), "{text}");
                for model in models {
                    let x = (0..model.len()).fold(0, |x, i| x | usize::from(model[i]) << i);
                    assert_eq!(table[x / 64] >> (x % 64) & 1, 1, "{text}");
                }
            }
        }
    }

    #[test]
    fn the_same_stream_gives_the_same_instance() {
        for level in 1..=5 {
            for index in [0, 1, 99] {
                assert_eq!(instance(level, index, true), instance(level, index, true));
            }
            assert_ne!(instance(level, 0, false), instance(level, 1, false));
        }
        // Solutions are extra: asking for one changes nothing else.
        let mut plain = instance(5, 3, false);
        plain.solution = instance(5, 3, true).solution;
        assert_eq!(plain, instance(5, 3, true));
    }

    #[test]
    fn a_flipped_value_is_a_wrong_answer() {
        for level in 1..=5 {
            let mut instance = instance(level, 11, false);
            let line = instance
                .answer
                .lines()
                .nth(level as usize)
                .unwrap()
                .to_string();
            let flipped = if line.ends_with("True") {
                line.replace("True", "False")
            } else {
                line.replace("False", "True")
            };
            instance.answer = instance.answer.replace(&line, &flipped);
            assert!(matches!(
                Deduction.verify(&instance),
                Err(VerifyError::WrongAnswer { .. })
            ));
        }
    }

    fn hand_made(level: u32, formulas: &[&str], answer: &str) -> Instance {
        let formulas: Vec<String> = formulas.iter().map(|f| f.to_string()).collect();
        Instance {
            task: "deduction".into(),
            level,
            puzzle: render_puzzle(
                level_spec(level).unwrap().variables,
                formulas.len(),
                |index, text| text.push_str(&formulas[index]),
            ),
            answer: answer.into(),
            params: BTreeMap::new(),
            solution: None,
        }
    }

    #[test]
    fn hand_made_puzzles_get_the_right_verdicts() {
        let unique = "(1) A is True\n(2) B is False\n(3) C is True\n(4) D is False";
        let good = hand_made(1, &["(A ∧ ¬B)", "(C ∧ ¬D)", "(B → C)"], unique);
        assert_eq!(Deduction.verify(&good), Ok(()));

        let ambiguous = hand_made(1, &["(A ∧ ¬B)", "(C ∨ D)", "(B → C)"], unique);
        assert!(matches!(
            Deduction.verify(&ambiguous),
            Err(VerifyError::Ambiguous(_))
        ));

        let contradictory = hand_made(1, &["(A ∧ ¬B)", "(C ∧ ¬D)", "(B ↔ A)"], unique);
        assert!(matches!(
            Deduction.verify(&contradictory),
            Err(VerifyError::Invalid(_))
        ));

        let too_deep = hand_made(1, &["(A ∧ ¬B)", "(C ∧ ¬D)", "¬(B ∧ C)"], unique);
        assert!(matches!(
            Deduction.verify(&too_deep),
            Err(VerifyError::Invalid(_))
        ));

        let too_few = hand_made(1, &["(A ∧ ¬B)", "(C ∧ ¬D)"], unique);
        assert!(matches!(
            Deduction.verify(&too_few),
            Err(VerifyError::Invalid(_))
        ));

        let wrong_level = hand_made(1, &["(A ∧ ¬B)", "(C ∧ ¬D)", "(B → C)"], unique);
        let wrong_level = Instance {
            level: 2,
            ..wrong_level
        };
        assert!(matches!(
            Deduction.verify(&wrong_level),
            Err(VerifyError::Invalid(_))
        ));

        let unknown = hand_made(1, &["(A ∧ ¬B)", "(C ∧ ¬E)", "(B → C)"], unique);
        assert!(matches!(
            Deduction.verify(&unknown),
            Err(VerifyError::Unparseable(_))
        ));

        let mut garbled = good.clone();
        garbled.puzzle = garbled.puzzle.replace("(B → C)", "(B → C");
        assert!(matches!(
            Deduction.verify(&garbled),
            Err(VerifyError::Unparseable(_))
        ));
        garbled.puzzle = "garbage".into();
        assert!(matches!(
            Deduction.verify(&garbled),
            Err(VerifyError::Unparseable(_))
        ));
    }

    #[test]
    fn worked_solutions_only_claim_true_values() {
        for level in 1..=5 {
            for index in 0..20 {
                let instance = instance(level, index, true);
                let solution = instance.solution.expect("asked for");
                let values = read_answer(&instance.answer).expect("answer lines");
                let holds = |claim: &str| {
                    let (name, value) = claim.split_once(" is ").expect("`X is V`");
                    let variable = (name.as_bytes()[0] - b'A') as usize;
                    values[variable] == (value == "True")
                };
                for line in solution.lines() {
                    // A line's conclusions: after "can only hold if" outside suppositions,
                    // and the final "So ..." of each line.
                    let conclusion = match line.rsplit_once("So ") {
                        Some((_, last)) => last,
                        None => match line.rsplit_once("can only hold if ") {
                            Some((_, last)) => last,
                            None => continue,
                        },
                    };
                    let conclusion = conclusion.split(". With these values").next().unwrap();
                    for claim in conclusion.trim_end_matches('.').split(',') {
                        for claim in claim.split(" and ") {
                            let claim = claim.trim();
                            if !claim.is_empty() {
                                assert!(holds(claim), "{claim}: {line}\n{}", instance.answer);
                            }
                        }
                    }
                }
                assert!(solution.ends_with("formulas are true."), "{solution}");
            }
        }
    }
}
