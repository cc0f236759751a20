//! Induction: masked sequence completion (arXiv 2505.10554, task 2).
//!
//! A sequence of integers follows a hidden rule; the last element is masked and the answer
//! is its value. Level 1 uses progressions (`+c`, `×2..4`) and additive 2-step
//! alternations; level 2 uses 2-step alternations mixing adds, `×` and `÷`, and period-2
//! patterns after a free first term; levels 3, 4 and 5 use a cycle of 3, 4 or 5 operations
//! drawn from `+a`, `−b` (a, b in 1..=4) and `×c` (c in 2..=4), starting from 1..=5.
//!
//! The guarantee the paper's newer generator breaks and this one keeps: the rule is
//! inferable from the visible part. Every step of the cycle, in particular the one that
//! produces the masked element, is applied at least once among the visible terms; no
//! shorter rule fits the visible terms; and each step's operation and constant are the only
//! ones of the level's alphabet that fit where that step was seen.
//!
//! A solver is not told the level's alphabet, so the same must hold under a broader,
//! natural rule space: op-cycles of 1 to 5 steps over `±1..=10`, `×2..=5`, `÷2..=5`, and
//! value-periodic patterns of period 1 to 5. At the shortest length where any rule of that
//! space fits the visible terms, every such rule predicts the answer (the example:
//! in `5, 7, 4, 8, 16, 17, 19, 16, 32, ?` the masked step was seen only as `8 → 16`, which
//! `+8` fits as well as `×2`; such an instance is dropped). Before this check, 10,000
//! instances per level were 0.07%, 0%, 2.1%, 6.2% and 12.9% ambiguous under that space at
//! levels 1-5; now none are.
//!
//! The generator ([`generate`]) checks this with its own analytic candidate sets; the
//! verifier ([`solve`]) reads the numbers back from the puzzle text and brute-forces the
//! whole hypothesis space (op-cycles of 1 to 5 steps over `+a`, `−a`, `×c`, `÷c` with the
//! level's constants, and period-2 patterns, then the broader space) without looking at
//! the generator's rule.
//! Divisions are always exact and every value stays within [`MAX_ABS`].
//!
//! The verifier also reads puzzles whose masked term is inside the sequence (the paper's
//! released "missing term" puzzles, imported through [`crate::release`]): a rule must then
//! make the masked term from the one before it and lead on from it to the one after. Such a
//! puzzle is judged on its rule alone (found, unique in both rule spaces, equal to the
//! answer); the level's sizes and families describe generated puzzles only.

mod generate;
mod solve;
#[cfg(test)]
mod tests;

use std::fmt;

use super::{AnswerKind, Family, Instance, Options, TaskRng, VerifyError};

/// Every value of a sequence, the masked one included, stays within `±MAX_ABS`.
pub const MAX_ABS: i64 = 1_000_000_000;

/// The longest cycle (in steps) the solver considers.
const MAX_CYCLE: usize = 5;

/// The smallest and largest `×c` / `÷c` constant, at every level.
const FACTOR_MIN: i64 = 2;
const FACTOR_MAX: i64 = 4;

/// The broader rule space of the ambiguity check (see [`solve`]): the largest `±a` and the
/// largest `×c` / `÷c` constant a solver that does not know the level's alphabet might try.
const BROAD_ADD_MAX: i64 = 10;
const BROAD_FACTOR_MAX: i64 = 5;

/// The first paragraph of every puzzle.
const HEADER: &str =
    "Given the following sequence, find the pattern and determine the value at the question mark.";
/// The last paragraph of every puzzle.
const QUESTION: &str = "What is the value at the question mark?";

/// The induction family.
pub struct Induction;

impl Family for Induction {
    fn name(&self) -> &'static str {
        "induction"
    }

    fn max_level(&self) -> u32 {
        5
    }

    fn instruction(&self) -> &'static str {
        "Find the rule of the sequence and give the number that replaces the question mark inside the answer tags, like <answer>10</answer>."
    }

    fn answer_kind(&self) -> AnswerKind {
        AnswerKind::Integer
    }

    fn generate(&self, level: u32, rng: &mut TaskRng, options: &Options) -> Instance {
        generate::generate(level, rng, options)
    }

    fn verify(&self, instance: &Instance) -> Result<(), VerifyError> {
        solve::verify(instance)
    }

    /// By sign ([`crate::sign_balance`]).
    fn answer_balance(&self, answer: &str) -> Vec<(&'static str, u64)> {
        crate::sign_balance(answer)
    }
}

/// One step of a rule. Subtraction is `Add` with a negative constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add(i64),
    Mul(i64),
    /// Exact division: defined only when the value is a multiple of the constant.
    Div(i64),
}

impl Op {
    /// The next value, or `None` when the step is undefined (inexact division, overflow).
    fn apply(self, value: i64) -> Option<i64> {
        match self {
            Op::Add(constant) => value.checked_add(constant),
            Op::Mul(constant) => value.checked_mul(constant),
            Op::Div(constant) => match value.checked_rem(constant)? {
                0 => value.checked_div(constant),
                _ => None,
            },
        }
    }

    /// The step applied to `value`, spaced as in a worked solution: `8 + 9`, `-6 - 3`.
    fn spell(self, value: i64) -> String {
        let (symbol, constant) = match self {
            Op::Add(constant) if constant < 0 => ("-", constant.unsigned_abs()),
            Op::Add(constant) => ("+", constant.unsigned_abs()),
            Op::Mul(constant) => ("×", constant.unsigned_abs()),
            Op::Div(constant) => ("÷", constant.unsigned_abs()),
        };
        format!("{value} {symbol} {constant}")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Add(constant) if constant < 0 => write!(f, "-{}", constant.unsigned_abs()),
            Op::Add(constant) => write!(f, "+{constant}"),
            Op::Mul(constant) => write!(f, "×{constant}"),
            Op::Div(constant) => write!(f, "÷{constant}"),
        }
    }
}

/// What a level allows.
#[derive(Debug, Clone, Copy)]
struct LevelSpec {
    /// Shown elements, the question mark included.
    min_length: usize,
    max_length: usize,
    /// The largest `+a` / `−a` constant of the level's alphabet.
    add_max: i64,
}

fn level_spec(level: u32) -> Option<LevelSpec> {
    let (min_length, max_length, add_max) = match level {
        1 => (5, 8, 10),
        2 => (6, 9, 10),
        3..=5 => (7, 11, 4),
        _ => return None,
    };
    Some(LevelSpec {
        min_length,
        max_length,
        add_max,
    })
}

/// The puzzle text for terms with one masked (`None`) anywhere: how an imported "missing
/// term" puzzle of the paper's release is put to the solver ([`crate::release`]).
pub(crate) fn render_masked(terms: &[Option<i64>]) -> String {
    let line: Vec<String> = terms
        .iter()
        .map(|term| term.map_or_else(|| "?".to_string(), |value| value.to_string()))
        .collect();
    format!("{HEADER}\n\n{}\n\n{QUESTION}", line.join(", "))
}

/// The puzzle text for the visible terms (the masked one is not among them).
pub(crate) fn render_puzzle(visible: &[i64]) -> String {
    let mut line = String::with_capacity(visible.len() * 6 + 1);
    for value in visible {
        line.push_str(&value.to_string());
        line.push_str(", ");
    }
    line.push('?');
    format!("{HEADER}\n\n{line}\n\n{QUESTION}")
}
