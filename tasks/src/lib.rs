//! The task suite: self-verifiable reasoning tasks graded by level (arXiv 2505.10554).
//!
//! Each task family generates [`Instance`]s from a seeded [`TaskRng`] and re-solves them
//! with a solver independent of its generator ([`Family::verify`]), reading the puzzle text
//! back rather than trusting the generator's internals. The reward function ([`reward`]) is
//! shared by the `verify` node, the trainers and `eval`. Everything here is deterministic:
//! the same seed gives the same bytes on any machine (no hash-map iteration, no
//! platform-dependent float formatting in outputs).

pub mod abduction;
pub mod arithmetic;
pub mod dataset;
pub mod deduction;
pub mod import;
pub mod induction;
pub mod prompt;
pub mod release;
pub mod reward;
pub mod rng;
#[cfg(feature = "parquet")]
pub mod verl;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use rng::TaskRng;

/// One task instance: what the model sees, and the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The family (`deduction`, `induction`, `abduction`, `arithmetic`) or an imported
    /// dataset's source name.
    pub task: String,
    /// Difficulty level, from 1 (0 for imported data without levels).
    pub level: u32,
    /// The puzzle: the user message.
    pub puzzle: String,
    /// The ground-truth answer, exactly as a perfect response puts it inside
    /// `<answer>...</answer>` (deduction: `(1) A is True\n(2) B is False`; induction: `10`;
    /// abduction: `(1) X is reachable\n(2) Y is unreachable`; arithmetic: `42`).
    pub answer: String,
    /// The instance's parameters and statistics (numbers of variables, depth, formulas,
    /// premises, layout...). Numeric entries are aggregated per level by `verify`.
    pub params: BTreeMap<String, serde_json::Value>,
    /// A short worked solution in the paper's format (the reasoning that goes inside
    /// `<think>`, without the tags), for supervised warm-up. `None` when not asked for.
    pub solution: Option<String>,
}

/// How a family's answers are read by the reward function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// One `(k) X is True|False` line per variable (deduction).
    Assignment,
    /// One `(k) X is reachable|unreachable` line per goal, in goal order (abduction).
    Reachability,
    /// One integer (induction).
    Integer,
    /// A final `\boxed{...}` answer compared by mathematical equivalence (arithmetic,
    /// imported math); reward 1 or 0.
    Boxed,
}

/// Why an instance fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The puzzle or answer text cannot be read back.
    #[error("unparseable: {0}")]
    Unparseable(String),
    /// The independent solver finds a different answer.
    #[error("wrong answer: expected {expected}, solver found {found}")]
    WrongAnswer {
        /// The instance's ground truth.
        expected: String,
        /// What the solver found.
        found: String,
    },
    /// More than one answer fits (deduction: several models).
    #[error("ambiguous: {0}")]
    Ambiguous(String),
    /// The hidden rule cannot be inferred from what is shown (induction).
    #[error("uninferable: {0}")]
    Uninferable(String),
    /// Violates the family's constraints (level ranges, layout rules).
    #[error("invalid: {0}")]
    Invalid(String),
}

impl VerifyError {
    /// A stable short name for reports (`unparseable`, `wrong_answer`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Unparseable(_) => "unparseable",
            VerifyError::WrongAnswer { .. } => "wrong_answer",
            VerifyError::Ambiguous(_) => "ambiguous",
            VerifyError::Uninferable(_) => "uninferable",
            VerifyError::Invalid(_) => "invalid",
        }
    }
}

/// Generation options beyond task, level and seed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Abduction layout: `None` or `Some("shortcut-free")` (default), or `Some("paper")`.
    pub layout: Option<String>,
    /// Fill [`Instance::solution`].
    pub with_solution: bool,
}

/// A task family.
pub trait Family: Send + Sync {
    /// Its name, as in `task = "deduction"`.
    fn name(&self) -> &'static str;
    /// The highest level (levels are `1..=max_level`).
    fn max_level(&self) -> u32;
    /// The one-line task instruction that follows the system text.
    fn instruction(&self) -> &'static str;
    /// How the reward function reads answers.
    fn answer_kind(&self) -> AnswerKind;
    /// Generates one instance. Never fails: internal rejection sampling retries until the
    /// instance meets the family's guarantees. `level` is within `1..=max_level`.
    fn generate(&self, level: u32, rng: &mut TaskRng, options: &Options) -> Instance;
    /// Re-solves `instance` from its puzzle text with a solver independent of the
    /// generator and checks its answer and guarantees.
    fn verify(&self, instance: &Instance) -> Result<(), VerifyError>;
    /// Counts for the answer-balance statistic (e.g. `true`/`false` values, `reachable`/
    /// `unreachable` goals, `positive`/`negative` answers), from the answer text.
    fn answer_balance(&self, answer: &str) -> Vec<(&'static str, u64)>;
}

/// The answer balance of families whose answers are integers: `positive` counts answers above
/// zero, `non_positive` the others (zero and negative); an unparseable answer counts in
/// neither.
pub(crate) fn sign_balance(answer: &str) -> Vec<(&'static str, u64)> {
    let value = answer.trim().parse::<i64>().ok();
    vec![
        ("positive", u64::from(value.is_some_and(|v| v > 0))),
        ("non_positive", u64::from(value.is_some_and(|v| v <= 0))),
    ]
}

/// The built-in families, by name.
pub fn family(name: &str) -> Option<&'static dyn Family> {
    match name {
        "deduction" => Some(&deduction::Deduction),
        "induction" => Some(&induction::Induction),
        "abduction" => Some(&abduction::Abduction),
        "arithmetic" => Some(&arithmetic::Arithmetic),
        _ => None,
    }
}

/// Instances per level in the families' tests: 10,000 when `PEIRCE_LARGE_TESTS` is set (CI),
/// else 300.
#[cfg(test)]
pub(crate) fn test_sample_size() -> u64 {
    if std::env::var_os("PEIRCE_LARGE_TESTS").is_some() {
        10_000
    } else {
        300
    }
}

/// Names of the built-in families.
pub const FAMILIES: [&str; 4] = ["deduction", "induction", "abduction", "arithmetic"];
