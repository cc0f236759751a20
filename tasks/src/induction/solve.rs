//! The induction verifier: reads the visible terms back from the puzzle text and searches
//! every rule the task uses, without the generator's rule.
//!
//! Hypotheses, shortest first: op-cycles of 1 to [`MAX_CYCLE`] steps applied from the
//! first term, each step one of `+a`, `−a` (a in `1..=add_max` of the level), `×c`, `÷c`
//! (c in 2..=4, exact); and, at length 2, period-2 patterns after a free first term. The
//! shortest length with a consistent rule wins (Occam); every consistent rule of that
//! length must predict the same masked value.
//!
//! The prompt never states the level's alphabet, so a solver that does not know it may
//! reach another answer. The verifier therefore checks a second, broader rule space too
//! ([`simplest_broad`]): op-cycles of 1 to 5 steps over `+a`, `−a` (a in 1..=10), `×c`,
//! `÷c` (c in 2..=5), and value-periodic patterns (each term repeats the one `p` places
//! before it, p in 1..=5, after no or one free first term). Its shortest consistent rules
//! must all predict the ground truth; otherwise the instance is ambiguous.

use super::{
    level_spec, Op, BROAD_ADD_MAX, BROAD_FACTOR_MAX, FACTOR_MAX, FACTOR_MIN, HEADER, MAX_ABS,
    MAX_CYCLE, QUESTION,
};
use crate::{Instance, VerifyError};

/// The consistent rules of the shortest length that has any.
#[derive(Debug, Default)]
pub(super) struct Explanation {
    /// Their length in steps.
    pub length: usize,
    /// Whether an op-cycle (not only a period-2 pattern) is among them.
    pub has_cycle: bool,
    /// Whether some of them make the masked term by a step seen among the visible terms
    /// (one that does not still counts when the predictions are compared).
    pub observed: bool,
    /// Each rule's prediction of the masked term (`None`: its step is undefined there).
    pub predictions: Vec<Option<i64>>,
}

/// Reads the visible terms (the `?` excluded) from a puzzle.
pub(super) fn parse_puzzle(puzzle: &str) -> Result<Vec<i64>, VerifyError> {
    let unparseable = |why: &str| VerifyError::Unparseable(format!("Induction puzzle {why}"));
    let mut parts = puzzle.split("\n\n");
    let (Some(header), Some(line), Some(question), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unparseable("does not have three paragraphs"));
    };
    if header != HEADER || question != QUESTION {
        return Err(unparseable("has an unknown header or question"));
    }
    let mut tokens: Vec<&str> = line.split(',').map(str::trim).collect();
    if tokens.pop() != Some("?") {
        return Err(unparseable("does not end its sequence with `?`"));
    }
    let visible = tokens
        .iter()
        .map(|token| token.parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| unparseable("has a term that is not an integer"))?;
    if visible.len() < 2 {
        return Err(unparseable("shows fewer than two terms"));
    }
    Ok(visible)
}

/// An alphabet of steps: `±1..=add_max`, `×` and `÷` by `2..=factor_max`.
fn alphabet(add_max: i64, factor_max: i64) -> Vec<Op> {
    let mut ops = Vec::new();
    for constant in 1..=add_max {
        ops.push(Op::Add(constant));
        ops.push(Op::Add(-constant));
    }
    for factor in FACTOR_MIN..=factor_max {
        ops.push(Op::Mul(factor));
        ops.push(Op::Div(factor));
    }
    ops
}

/// Searches the hypothesis space for the shortest consistent rules; `None` if no rule of
/// up to [`MAX_CYCLE`] steps fits the visible terms.
pub(super) fn explain(visible: &[i64], add_max: i64) -> Option<Explanation> {
    let alphabet = alphabet(add_max, FACTOR_MAX);
    let transitions = visible.len() - 1;
    // The masked term is made by transition `transitions`, from the last visible term.
    let last = visible[transitions];
    for length in 1..=MAX_CYCLE {
        let mut explanation = Explanation {
            length,
            ..Explanation::default()
        };
        let classes = fit_classes(visible, length, &alphabet);
        if classes.iter().all(|(_, fitting)| !fitting.is_empty()) {
            let (seen, fitting) = &classes[transitions % length];
            explanation.has_cycle = true;
            explanation.observed |= *seen > 0;
            explanation
                .predictions
                .extend(fitting.iter().map(|op| op.apply(last)));
        }
        if length == 2 && visible.len() >= 3 {
            let repeats = (3..visible.len()).all(|i| visible[i] == visible[i - 2]);
            if repeats {
                // The masked term is `visible[len]`; it repeats `visible[len - 2]`. The
                // repetition must have been seen at its parity.
                let masked = visible.len();
                let seen = (3..visible.len()).any(|i| i % 2 == masked % 2);
                explanation.observed |= seen;
                explanation.predictions.push(Some(visible[masked - 2]));
            }
        }
        if !explanation.predictions.is_empty() {
            return Some(explanation);
        }
    }
    None
}

/// For an op-cycle of `length` steps: per step (class of transitions), how often it was
/// seen and the steps of `alphabet` that fit every place it was seen (all of them when it
/// was never seen).
fn fit_classes(visible: &[i64], length: usize, alphabet: &[Op]) -> Vec<(usize, Vec<Op>)> {
    let transitions = visible.len() - 1;
    (0..length)
        .map(|class| {
            let seen: Vec<usize> = (class..transitions).step_by(length).collect();
            let fitting = alphabet
                .iter()
                .copied()
                .filter(|op| {
                    seen.iter()
                        .all(|&t| op.apply(visible[t]) == Some(visible[t + 1]))
                })
                .collect();
            (seen.len(), fitting)
        })
        .collect()
}

/// The broader rule space's simplest explanation of `visible`: the shortest length (1 to
/// [`MAX_CYCLE`]) at which an op-cycle over `±1..=10`, `×2..=5`, `÷2..=5` or a
/// value-periodic pattern fits, and every such rule's prediction of the masked term (`None`:
/// the rule's step is undefined there). A value-periodic pattern of period `p` after `f`
/// free terms (f in 0..=1) must have been seen to repeat at every phase (at least `2p + f`
/// visible terms). `None` when nothing of up to [`MAX_CYCLE`] steps fits.
pub(super) fn simplest_broad(visible: &[i64]) -> Option<(usize, Vec<Option<i64>>)> {
    let alphabet = alphabet(BROAD_ADD_MAX, BROAD_FACTOR_MAX);
    let count = visible.len();
    let last = visible[count - 1];
    for length in 1..=MAX_CYCLE {
        let mut predictions = Vec::new();
        let classes = fit_classes(visible, length, &alphabet);
        if classes.iter().all(|(_, fitting)| !fitting.is_empty()) {
            let (_, fitting) = &classes[(count - 1) % length];
            predictions.extend(fitting.iter().map(|op| op.apply(last)));
        }
        for free in 0..=1 {
            if count >= 2 * length + free
                && (length + free..count).all(|i| visible[i] == visible[i - length])
            {
                predictions.push(Some(visible[count - length]));
            }
        }
        if !predictions.is_empty() {
            return Some((length, predictions));
        }
    }
    None
}

/// Lists predictions for messages: `7, 10, undefined`.
fn list_predictions(predictions: &[Option<i64>]) -> String {
    let listed: Vec<String> = predictions
        .iter()
        .map(|p| p.map_or("undefined".to_string(), |v| v.to_string()))
        .collect();
    listed.join(", ")
}

/// Checks that the broader rule space's simplest rules all predict `answer`
/// ([`simplest_broad`]).
pub(super) fn check_broad(visible: &[i64], answer: i64) -> Result<(), VerifyError> {
    let Some((length, mut predictions)) = simplest_broad(visible) else {
        return Err(VerifyError::Ambiguous(format!(
            "No rule of the broader space (±1..{BROAD_ADD_MAX}, ×/÷ 2..{BROAD_FACTOR_MAX}, value periods 1-{MAX_CYCLE}) fits the visible terms"
        )));
    };
    predictions.sort_unstable();
    predictions.dedup();
    if predictions != [Some(answer)] {
        return Err(VerifyError::Ambiguous(format!(
            "Under the broader rule space (±1..{BROAD_ADD_MAX}, ×/÷ 2..{BROAD_FACTOR_MAX}, value periods 1-{MAX_CYCLE}), the simplest rules ({length} steps) predict {}, not only {answer}",
            list_predictions(&predictions)
        )));
    }
    Ok(())
}

/// Checks an induction instance against the independent solver.
pub(super) fn verify(instance: &Instance) -> Result<(), VerifyError> {
    let visible = parse_puzzle(&instance.puzzle)?;
    let answer: i64 = instance.answer.trim().parse().map_err(|_| {
        VerifyError::Unparseable(format!("Answer `{}` is not an integer", instance.answer))
    })?;
    let level = instance.level;
    let spec = level_spec(level)
        .ok_or_else(|| VerifyError::Invalid(format!("Level {level} is not in 1..=5")))?;
    let length = visible.len() + 1;
    if !(spec.min_length..=spec.max_length).contains(&length) {
        return Err(VerifyError::Invalid(format!(
            "Sequence length {length} is outside {}..={} for level {level}",
            spec.min_length, spec.max_length
        )));
    }
    let bound = MAX_ABS.unsigned_abs();
    if visible
        .iter()
        .chain([&answer])
        .any(|v| v.unsigned_abs() > bound)
    {
        return Err(VerifyError::Invalid(format!(
            "A value exceeds the bound {MAX_ABS}"
        )));
    }
    if level >= 3 && !(1..=5).contains(&visible[0]) {
        return Err(VerifyError::Invalid(format!(
            "Start {} is outside 1..=5 for level {level}",
            visible[0]
        )));
    }
    let explanation = explain(&visible, spec.add_max).ok_or_else(|| {
        VerifyError::Uninferable(format!(
            "No rule of up to {MAX_CYCLE} steps fits the visible terms: the step making the masked term was never shown"
        ))
    })?;
    if !explanation.observed {
        return Err(VerifyError::Uninferable(format!(
            "Every shortest rule ({} steps) makes the masked term by a step never shown",
            explanation.length
        )));
    }
    let mut predictions = explanation.predictions.clone();
    predictions.sort_unstable();
    predictions.dedup();
    let prediction = match predictions[..] {
        [Some(prediction)] => prediction,
        _ => {
            return Err(VerifyError::Ambiguous(format!(
                "Rules of {} steps predict {}",
                explanation.length,
                list_predictions(&predictions)
            )));
        }
    };
    let allowed = match level {
        1 => explanation.length <= 2 && explanation.has_cycle,
        2 => explanation.length == 2,
        _ => explanation.length == level as usize && explanation.has_cycle,
    };
    if !allowed {
        return Err(VerifyError::Invalid(format!(
            "The shortest rule has {} steps, not a level-{level} family",
            explanation.length
        )));
    }
    if prediction != answer {
        return Err(VerifyError::WrongAnswer {
            expected: answer.to_string(),
            found: prediction.to_string(),
        });
    }
    check_broad(&visible, answer)?;
    // Imported instances (the paper's release, `crate::release`) carry no `cycle`.
    let param = |name: &str| instance.params.get(name).and_then(|v| v.as_u64());
    if param("length") != Some(length as u64) {
        return Err(VerifyError::Invalid(format!(
            "`length` param does not match the {length} shown elements"
        )));
    }
    let imported = instance.params.contains_key(crate::release::SOURCE_LAYOUT);
    if !(imported && param("cycle").is_none()) && param("cycle") != Some(explanation.length as u64)
    {
        return Err(VerifyError::Invalid(format!(
            "`cycle` param does not match the solver's {}-step rule",
            explanation.length
        )));
    }
    Ok(())
}
