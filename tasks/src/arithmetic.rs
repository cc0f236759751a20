//! Arithmetic: the miniature math domain for domain RL (arXiv 2505.10554, stage C).
//!
//! Multi-step integer problems graded by level: level `k` has exactly `k` operations
//! (`+`, `−`, `×`, `÷`), with larger operands and values as the level rises, parentheses
//! from level 2 on, and, from level 2 on, a word-problem framing for about a third of the
//! instances ("A shop has 12 boxes with 7 apples in each box..."). Every answer is an exact
//! integer: division only where it is exact. The answer is graded as a `\boxed{}` value.
//!
//! The verifier does not trust the generator's tree: it reads the expression back from the
//! puzzle text (for word problems by matching the problem's template and filling its
//! expression with the numbers found in the text), evaluates it with its own small parser,
//! and checks it against `params["expression"]` and the answer. It does not judge whether
//! a word problem reads naturally.

mod generate;
mod solve;
mod templates;
#[cfg(test)]
mod tests;

use super::{AnswerKind, Family, Instance, Options, TaskRng, VerifyError};

/// The sentence that ends every puzzle.
const SUFFIX: &str = "\n\nPut your final answer in \\boxed{}.";
/// What an expression puzzle starts with; word problems start with their story.
const COMPUTE: &str = "Compute: ";

/// The arithmetic family.
pub struct Arithmetic;

impl Family for Arithmetic {
    fn name(&self) -> &'static str {
        "arithmetic"
    }

    fn max_level(&self) -> u32 {
        5
    }

    fn instruction(&self) -> &'static str {
        "Solve the problem step by step and give the final answer inside <answer> </answer> as \\boxed{...}, like <answer>\\boxed{42}</answer>."
    }

    fn answer_kind(&self) -> AnswerKind {
        AnswerKind::Boxed
    }

    fn generate(&self, level: u32, rng: &mut TaskRng, options: &Options) -> Instance {
        generate::generate(level, rng, options)
    }

    fn verify(&self, instance: &Instance) -> Result<(), VerifyError> {
        solve::verify(instance)
    }

    /// By sign ([`crate::sign_balance`]); only expression problems have answers of zero or
    /// below.
    fn answer_balance(&self, answer: &str) -> Vec<(&'static str, u64)> {
        crate::sign_balance(answer)
    }
}

/// What a level allows.
#[derive(Debug, Clone, Copy)]
struct LevelSpec {
    /// Operations per problem.
    steps: usize,
    /// Operands are drawn from `1..=max_operand` (a dividend built as divisor × quotient
    /// may exceed it).
    max_operand: i64,
    /// Every intermediate value stays within `±max_value`.
    max_value: i64,
    /// Divisors are drawn from `2..=max_divisor`.
    max_divisor: i64,
}

fn level_spec(level: u32) -> Option<LevelSpec> {
    let (steps, max_operand, max_value, max_divisor) = match level {
        1 => (1, 20, 1_000, 10),
        2 => (2, 50, 10_000, 12),
        3 => (3, 100, 100_000, 15),
        4 => (4, 200, 1_000_000, 20),
        5 => (5, 500, 1_000_000, 25),
        _ => return None,
    };
    Some(LevelSpec {
        steps,
        max_operand,
        max_value,
        max_divisor,
    })
}
