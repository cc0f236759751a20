//! reward: PLACEHOLDER, being written.

use super::AnswerKind;

/// How the answer part of a response fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Parsed and exactly right.
    Correct,
    /// Parsed, wrong.
    Wrong,
    /// Did not parse, or the format failed first.
    Unparseable,
}

/// The reward of one response.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Score {
    /// The total reward: one of {+3, -0.5, -1, -3} for the logic tasks, 1 or 0 for boxed math.
    pub total: f64,
    /// Whether the tag format held.
    pub format_ok: bool,
    /// The answer's fate.
    pub answer: AnswerStatus,
}

impl Score {
    /// Counts toward accuracy (+3 for logic tasks, 1 for math).
    pub fn is_correct(&self) -> bool {
        self.answer == AnswerStatus::Correct && self.format_ok
    }
}

/// Scores `response` (the assistant's text after the prompt's opening `<think>`) against
/// `ground_truth` (an [`super::Instance::answer`]).
pub fn score(_kind: AnswerKind, _response: &str, _ground_truth: &str) -> Score {
    Score { total: -3.0, format_ok: false, answer: AnswerStatus::Unparseable }
}

/// A response that must score full marks for `ground_truth`: the solution (or a stub
/// thought), then the answer block.
pub fn perfect_response(kind: AnswerKind, ground_truth: &str, solution: Option<&str>) -> String {
    let thought = solution.unwrap_or("Let me work through this carefully.");
    match kind {
        AnswerKind::Boxed => format!("{thought}</think>\n<answer>\\boxed{{{ground_truth}}}</answer>"),
        _ => format!("{thought}</think>\n<answer>\n{ground_truth}\n</answer>"),
    }
}
