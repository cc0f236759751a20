//! The reward function: the verifier that grades a model's response against an instance's
//! ground truth. The `verify` node, the trainers and `eval` all call [`score`], so a
//! response earns the same reward everywhere. It only reads text: no regex, no floats in
//! comparisons, no panics on any input (arbitrary UTF-8), linear time in the response.
//!
//! # Logic tasks (deduction, induction, abduction): the paper's reward (arXiv 2505.10554)
//!
//! * Format, +1 or -1 ([`check_format`]). The prompt ends with `<think>`, so the response
//!   must contain no `<think>`, exactly one `</think>`, then exactly one `<answer>`, then
//!   exactly one `</answer>`. Two choices where the paper is silent: only whitespace may
//!   stand between `</think>` and `<answer>`, and after `</answer>` only whitespace and the
//!   end-of-turn tokens `<|im_end|>` / `<|endoftext|>`; any other trailing text ("Hope this
//!   helps!") is *extra text* and fails the format. The answer then is exactly the text of
//!   the one answer block.
//! * Answer, graded only when the format held: parses and exactly right +2, parses but
//!   wrong -1.5, does not parse (or the format failed) -2. Totals are therefore exactly
//!   one of +3, -0.5, -1, -3 ([`LOGIC_TOTALS`]); accuracy is the share of +3
//!   ([`Score::is_correct`]).
//! * Parsing (see `logic.rs` for the full grammar): deduction wants one
//!   `[(k)] X is True|False` line per variable of the ground truth, in any order; abduction
//!   one `[(k)] G is reachable|unreachable` line per goal *in the ground truth's goal order*
//!   (the right goals in another order do not parse); induction one integer. Unknown,
//!   missing or repeated names, prose lines, and numbering that is not `(1)`, `(2)`, ... on
//!   every line make the answer unparseable. Value words are case-insensitive; whitespace
//!   is free; everything else is strict.
//!
//! # Boxed math (arithmetic, imported math sets): SimpleRL-Zoo's reward
//!
//! 1 if the final `\boxed{..}` (the last one in the answer block, else the last one
//! anywhere) is mathematically equivalent to the ground truth (see `math.rs`), else 0. The
//! tag format is checked and reported in [`Score::format_ok`] but not required, as in
//! SimpleRL-Zoo; [`AnswerStatus::Unparseable`] means no usable box was found.
//!
//! A malformed ground truth (which [`check_ground_truth`] reports, and the families'
//! `verify` should reject first) grades every answer as unparseable.
//!
//! # Two modes
//!
//! The rules above are [`RewardMode::Strict`], the default. [`RewardMode::Paper`] grades
//! the logic tasks as the paper's released reward code does, case for case (see
//! `paper.rs`): any text between `</think>` and `<answer>` and after `</answer>`, numbering,
//! prose, punctuation and goal order in the answer are all accepted, while an `Assistant:`
//! anywhere in the response, or digits written as `5_9` or in another script, are read as
//! that code reads them. The totals are the same four. Boxed math is graded the same way in
//! both modes. The README's table lists every difference.

pub mod corpus;
mod format;
mod logic;
mod math;
mod paper;
pub mod python;

pub use format::{
    check_format, last_answer_span, FormatViolation, ANSWER_CLOSE, ANSWER_OPEN, END_OF_TURN,
    THINK_CLOSE, THINK_OPEN,
};
pub use math::{last_boxed, math_equivalent};

use super::{AnswerKind, VerifyError};

/// Reward for a response whose tag format holds (logic tasks).
pub const FORMAT_OK: f64 = 1.0;
/// Reward for a response whose tag format fails (logic tasks).
pub const FORMAT_FAILED: f64 = -1.0;
/// Reward for an answer that parses and is exactly right (logic tasks).
pub const ANSWER_CORRECT: f64 = 2.0;
/// Reward for an answer that parses but is wrong (logic tasks; the paper's code, not its
/// text, which says -2).
pub const ANSWER_WRONG: f64 = -1.5;
/// Reward for an answer that does not parse, or is not graded because the format failed
/// (logic tasks).
pub const ANSWER_UNPARSEABLE: f64 = -2.0;
/// Every total a logic task can give, best first.
pub const LOGIC_TOTALS: [f64; 4] = [3.0, -0.5, -1.0, -3.0];
/// Every total boxed math can give, best first.
pub const BOXED_TOTALS: [f64; 2] = [1.0, 0.0];

/// How the answer part of a response fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Parsed and exactly right.
    Correct,
    /// Parsed, wrong.
    Wrong,
    /// Did not parse, or the format failed first (logic tasks); no usable box (math).
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
    /// Counts toward accuracy: +3 for logic tasks, 1 for math. [`score`] reports a logic
    /// answer as correct only when the format held too, while math does not require the
    /// format, so the answer's status alone decides.
    pub fn is_correct(&self) -> bool {
        self.answer == AnswerStatus::Correct
    }
}

/// Which rules grade a response: peirce's documented strict reward, or the paper's
/// released code's (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardMode {
    /// peirce's reward, as documented above (the default).
    #[default]
    Strict,
    /// The paper's released reward code's behaviour.
    Paper,
}

impl RewardMode {
    /// Its name in workflow files: `strict` or `paper`.
    pub fn name(self) -> &'static str {
        match self {
            RewardMode::Strict => "strict",
            RewardMode::Paper => "paper",
        }
    }

    /// Reads a name given in a workflow file.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "strict" => Some(RewardMode::Strict),
            "paper" => Some(RewardMode::Paper),
            _ => None,
        }
    }
}

/// The totals `kind` can give, best first.
pub fn totals(kind: AnswerKind) -> &'static [f64] {
    match kind {
        AnswerKind::Boxed => &BOXED_TOTALS,
        AnswerKind::Assignment | AnswerKind::Reachability | AnswerKind::Integer => &LOGIC_TOTALS,
    }
}

/// Scores `response` (the assistant's text after the prompt's opening `<think>`) against
/// `ground_truth` (an [`super::Instance::answer`]) under the strict rules.
pub fn score(kind: AnswerKind, response: &str, ground_truth: &str) -> Score {
    score_with(RewardMode::Strict, kind, response, ground_truth)
}

/// Scores `response` against `ground_truth` under `mode`'s rules.
pub fn score_with(mode: RewardMode, kind: AnswerKind, response: &str, ground_truth: &str) -> Score {
    if mode == RewardMode::Paper && kind != AnswerKind::Boxed {
        let answer = match paper::check_format(response) {
            Some(answer) if !answer.is_empty() => match kind {
                AnswerKind::Assignment => paper::grade_lines(&answer, ground_truth, false),
                AnswerKind::Reachability => paper::grade_lines(&answer, ground_truth, true),
                _ => paper::grade_integer(&answer, ground_truth),
            },
            Some(_) => AnswerStatus::Unparseable,
            None => return logic_score(false, AnswerStatus::Unparseable),
        };
        return logic_score(true, answer);
    }
    let format = check_format(response);
    let format_ok = format.is_ok();
    let grade = match kind {
        AnswerKind::Assignment => logic::grade_assignment,
        AnswerKind::Reachability => logic::grade_reachability,
        AnswerKind::Integer => logic::grade_integer,
        AnswerKind::Boxed => {
            let answer = math::grade_boxed(response, ground_truth);
            let total = if answer == AnswerStatus::Correct {
                1.0
            } else {
                0.0
            };
            return Score {
                total,
                format_ok,
                answer,
            };
        }
    };
    let answer = match format {
        Ok(text) => grade(text, ground_truth),
        Err(_) => AnswerStatus::Unparseable,
    };
    logic_score(format_ok, answer)
}

/// A logic task's score from its two parts.
fn logic_score(format_ok: bool, answer: AnswerStatus) -> Score {
    let format_part = if format_ok { FORMAT_OK } else { FORMAT_FAILED };
    let answer_part = match answer {
        AnswerStatus::Correct => ANSWER_CORRECT,
        AnswerStatus::Wrong => ANSWER_WRONG,
        AnswerStatus::Unparseable => ANSWER_UNPARSEABLE,
    };
    Score {
        total: format_part + answer_part,
        format_ok,
        answer,
    }
}

/// Checks that `ground_truth` is something [`score`] can grade against: well-formed lines
/// with unique names (assignment, reachability), one integer, or a non-empty math answer.
pub fn check_ground_truth(kind: AnswerKind, ground_truth: &str) -> Result<(), VerifyError> {
    let checked = match kind {
        AnswerKind::Assignment => logic::check_lines_ground_truth(ground_truth, false),
        AnswerKind::Reachability => logic::check_lines_ground_truth(ground_truth, true),
        AnswerKind::Integer => logic::check_integer_ground_truth(ground_truth),
        AnswerKind::Boxed => math::check_boxed_ground_truth(ground_truth),
    };
    checked.map_err(|problem| {
        VerifyError::Unparseable(format!(
            "Ground truth `{ground_truth}` cannot be graded: {problem}"
        ))
    })
}

/// A response that scores full marks for `ground_truth`: the solution (or a stub thought),
/// then the answer block. The solution must not contain the tags. A math ground truth
/// already wrapped in `\boxed{..}` is not boxed twice.
pub fn perfect_response(kind: AnswerKind, ground_truth: &str, solution: Option<&str>) -> String {
    let thought = solution.unwrap_or("Let me work through this carefully.");
    match kind {
        AnswerKind::Boxed => {
            let inner = math::unboxed(ground_truth);
            format!("{thought}</think>\n<answer>\\boxed{{{inner}}}</answer>")
        }
        _ => format!("{thought}</think>\n<answer>\n{ground_truth}\n</answer>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corpus::{fragment_string, mutate, SplitMix};
    use AnswerKind::{Assignment, Boxed, Integer, Reachability};
    use AnswerStatus::{Correct, Unparseable, Wrong};

    const TRUTH: &str = "(1) A is True\n(2) B is False\n(3) C is True";
    const GOALS: &str = "(1) X is reachable\n(2) Y is unreachable\n(3) Z is unreachable";

    fn respond(answer: &str) -> String {
        format!("Reasoning here.</think>\n<answer>\n{answer}\n</answer>")
    }

    fn total(kind: AnswerKind, response: &str, ground_truth: &str) -> f64 {
        score(kind, response, ground_truth).total
    }

    #[test]
    fn the_four_logic_totals() {
        let right = score(Assignment, &respond(TRUTH), TRUTH);
        assert_eq!(
            right,
            Score {
                total: 3.0,
                format_ok: true,
                answer: Correct
            }
        );
        assert!(right.is_correct());
        let wrong = score(
            Assignment,
            &respond("(1) A is True\n(2) B is True\n(3) C is True"),
            TRUTH,
        );
        assert_eq!(
            wrong,
            Score {
                total: -0.5,
                format_ok: true,
                answer: Wrong
            }
        );
        assert!(!wrong.is_correct());
        let unparseable = score(Assignment, &respond("(1) A is True\n(2) B is False"), TRUTH);
        assert_eq!(
            unparseable,
            Score {
                total: -1.0,
                format_ok: true,
                answer: Unparseable
            }
        );
        // The format failed: the answer is not even read, right as it is.
        let broken = score(Assignment, &format!("{}\nThanks!", respond(TRUTH)), TRUTH);
        assert_eq!(
            broken,
            Score {
                total: -3.0,
                format_ok: false,
                answer: Unparseable
            }
        );
        assert!(!broken.is_correct());
    }

    #[test]
    fn format_failures_cost_the_whole_answer() {
        // `@` stands for a right answer; each response is otherwise broken.
        let templates = [
            // Missing tags.
            "no tags @",
            "thought\n<answer>\n@\n</answer>",
            "thought</think>\n@\n</answer>",
            "thought</think>\n<answer>\n@\n",
            "thought</think>\n@",
            // Duplicate tags.
            "a</think>b</think>\n<answer>\n@\n</answer>",
            "a</think>\n<answer>\n@\n</answer><answer>\n@\n</answer>",
            "a</think>\n<answer>\n@\n</answer></answer>",
            "a</think>\n<answer><answer>\n@\n</answer>",
            // A second `<think>`.
            "<think>a</think>\n<answer>\n@\n</answer>",
            "a<think>b</think>\n<answer>\n@\n</answer>",
            // Misordered: the answer before `</think>`.
            "a<answer>\n@\n</answer></think>",
            "a<answer>\n@\n</think></answer>",
            "a</think></answer>\n@\n<answer>",
            // Extra text between the blocks and after the answer.
            "a</think>Answer:<answer>\n@\n</answer>",
            "a</think>\n<answer>\n@\n</answer>\nDone.",
            "a</think>\n<answer>\n@\n</answer><|im_end|>extra",
        ];
        let broken = Score {
            total: -3.0,
            format_ok: false,
            answer: Unparseable,
        };
        for (kind, truth) in [(Assignment, TRUTH), (Reachability, GOALS), (Integer, "10")] {
            assert_eq!(total(kind, &respond(truth), truth), 3.0);
            for template in templates {
                let response = template.replace('@', truth);
                assert_eq!(score(kind, &response, truth), broken, "{response:?}");
            }
        }
    }

    #[test]
    fn trailing_whitespace_and_end_of_turn_tokens_are_fine() {
        for tail in [
            "",
            "\n",
            " \n\t",
            "<|im_end|>",
            "\n<|im_end|>\n",
            "<|im_end|><|endoftext|>",
            "<|endoftext|>",
        ] {
            let response = format!("{}{tail}", respond(TRUTH));
            assert_eq!(total(Assignment, &response, TRUTH), 3.0, "{tail:?}");
            let response = format!("ok</think><answer>10</answer>{tail}");
            assert_eq!(total(Integer, &response, "10"), 3.0, "{tail:?}");
        }
    }

    #[test]
    fn deduction_rules() {
        let cases = [
            // Case leniency on values, numbering optional.
            ("(1) A is true\n(2) B is false\n(3) C is TRUE", 3.0),
            ("A is True\nB is False\nC is True", 3.0),
            ("C is True\nA is True\nB is False", 3.0),
            // Wrong value.
            ("(1) A is False\n(2) B is False\n(3) C is True", -0.5),
            // Too few, too many lines.
            ("(1) A is True\n(2) B is False", -1.0),
            (
                "(1) A is True\n(2) B is False\n(3) C is True\n(4) D is False",
                -1.0,
            ),
            // Unknown and duplicate variables.
            ("(1) A is True\n(2) B is False\n(3) Q is True", -1.0),
            ("(1) A is True\n(2) B is False\n(3) B is False", -1.0),
            // A prose line inside the answer.
            (
                "Here is my answer:\n(1) A is True\n(2) B is False\n(3) C is True",
                -1.0,
            ),
            // Numbering out of sequence, mixed numbering.
            ("(2) A is True\n(3) B is False\n(4) C is True", -1.0),
            ("(1) A is True\n(2) B is False\nC is True", -1.0),
            // Strict on everything but whitespace and value case.
            ("(1) A is Yes\n(2) B is False\n(3) C is True", -1.0),
            ("(1) A: True\n(2) B is False\n(3) C is True", -1.0),
        ];
        for (answer, expected) in cases {
            assert_eq!(
                total(Assignment, &respond(answer), TRUTH),
                expected,
                "{answer:?}"
            );
        }
    }

    #[test]
    fn abduction_rules() {
        let cases = [
            (GOALS, 3.0),
            ("X is Reachable\nY is unreachable\nZ is Unreachable", 3.0),
            (
                "(1) X is unreachable\n(2) Y is unreachable\n(3) Z is unreachable",
                -0.5,
            ),
            (
                "(1) Y is unreachable\n(2) X is reachable\n(3) Z is unreachable",
                -1.0,
            ),
            ("(1) X is reachable\n(2) Y is unreachable", -1.0),
            (
                "(1) X is reachable\n(2) Y is unreachable\n(3) Q is unreachable",
                -1.0,
            ),
            ("(1) X is True\n(2) Y is False\n(3) Z is False", -1.0),
        ];
        for (answer, expected) in cases {
            assert_eq!(
                total(Reachability, &respond(answer), GOALS),
                expected,
                "{answer:?}"
            );
        }
    }

    #[test]
    fn induction_rules() {
        for (answer, expected) in [("10", 3.0), (" +10 ", 3.0), ("-10", -0.5), ("11", -0.5)] {
            assert_eq!(
                total(Integer, &respond(answer), "10"),
                expected,
                "{answer:?}"
            );
        }
        for answer in [
            "10.0",
            "ten",
            "10 apples",
            "",
            "1e1",
            "10, 11",
            "\\boxed{10}",
            "x = 10",
        ] {
            assert_eq!(total(Integer, &respond(answer), "10"), -1.0, "{answer:?}");
        }
    }

    #[test]
    fn boxed_math_rules() {
        let cases = [
            (
                "</think><answer>\\boxed{\\frac{1}{2}}</answer>",
                "0.5",
                Correct,
            ),
            (
                "</think><answer>\\boxed{0.5}</answer>",
                "\\frac{1}{2}",
                Correct,
            ),
            (
                "</think><answer>\\boxed{1/2}</answer>",
                "\\boxed{\\frac{1}{2}}",
                Correct,
            ),
            ("</think><answer>\\boxed{1,000}</answer>", "1000", Correct),
            ("</think><answer>\\boxed{- 3}</answer>", "-3", Correct),
            (
                "</think><answer>\\boxed{\\dfrac{3}{4}}</answer>",
                "\\frac34",
                Correct,
            ),
            (
                "</think><answer>$\\boxed{\\frac{1}{\\sqrt{2}}}$</answer>",
                "\\frac{1}{\\sqrt{2}}",
                Correct,
            ),
            ("</think><answer>\\boxed{3}</answer>", "-3", Wrong),
            ("</think><answer>3</answer>", "3", Unparseable),
        ];
        for (response, truth, status) in cases {
            let score = score(Boxed, response, truth);
            assert_eq!(score.answer, status, "{response:?} vs {truth:?}");
            assert_eq!(score.total, if status == Correct { 1.0 } else { 0.0 });
            assert!(score.format_ok);
        }
        // The format is reported but not required.
        let sloppy = score(Boxed, "The answer is $\\boxed{42}$. Hope it helps!", "42");
        assert_eq!(
            sloppy,
            Score {
                total: 1.0,
                format_ok: false,
                answer: Correct
            }
        );
        assert!(sloppy.is_correct());
        assert_eq!(
            score(Boxed, "no box here: 42", "42"),
            Score {
                total: 0.0,
                format_ok: false,
                answer: Unparseable
            }
        );
    }

    #[test]
    fn perfect_responses_score_full_marks() {
        let cases = [
            (Assignment, TRUTH),
            (Assignment, "(1) A is False"),
            (Reachability, GOALS),
            (Integer, "10"),
            (Integer, "-3"),
            (Boxed, "42"),
            (Boxed, "\\frac{1}{\\sqrt{2}}"),
            (Boxed, "\\boxed{\\frac{3}{4}}"),
            (Boxed, "(1, 2]"),
        ];
        for (kind, truth) in cases {
            assert!(check_ground_truth(kind, truth).is_ok(), "{truth:?}");
            for solution in [None, Some("Step 1: think.\nStep 2: answer.")] {
                let response = perfect_response(kind, truth, solution);
                let score = score(kind, &response, truth);
                assert!(score.is_correct() && score.format_ok, "{response:?}");
                assert_eq!(score.total, totals(kind)[0], "{response:?}");
            }
        }
        assert_eq!(
            perfect_response(Boxed, "\\boxed{42}", None)
                .matches("\\boxed")
                .count(),
            1
        );
    }

    #[test]
    fn malformed_ground_truths_are_reported() {
        assert!(check_ground_truth(Assignment, "A is Maybe").is_err());
        assert!(check_ground_truth(Reachability, TRUTH).is_err());
        assert!(check_ground_truth(Integer, "10.5").is_err());
        assert!(check_ground_truth(Boxed, "\\boxed{ }").is_err());
        let error = check_ground_truth(Integer, "ten").unwrap_err();
        assert!(error.to_string().contains("Ground truth `ten`"), "{error}");
        assert_eq!(total(Integer, &respond("10"), "ten"), -1.0);
    }

    #[test]
    fn fuzzed_responses_never_panic_and_stay_in_the_allowed_totals() {
        let truths: [(AnswerKind, &str); 6] = [
            (Assignment, TRUTH),
            (Reachability, GOALS),
            (Integer, "10"),
            (Integer, "-7"),
            (Boxed, "\\frac{1}{2}"),
            (Boxed, "\\boxed{1,000}"),
        ];
        let kinds = [Assignment, Reachability, Integer, Boxed];
        let mut rng = SplitMix(0x5EED_1234_ABCD_0042);
        let mut seen_correct = [0usize; 4];
        let mut seen_paper_correct = 0;
        let cases = 300_000;
        for case in 0..cases {
            let (truth_kind, truth) = truths[(case / 2) % truths.len()];
            let response = if case % 2 == 0 {
                let pieces = rng.below(40);
                fragment_string(&mut rng, pieces)
            } else {
                mutate(&mut rng, &perfect_response(truth_kind, truth, None))
            };
            // Every kind against every response; sometimes a fuzzed ground truth too.
            let truth_pieces = rng.below(4);
            let fuzzed_truth = fragment_string(&mut rng, truth_pieces);
            for (index, kind) in kinds.into_iter().enumerate() {
                let truth = if case % 7 == 0 {
                    fuzzed_truth.as_str()
                } else {
                    truth
                };
                let score = score(kind, &response, truth);
                assert!(
                    totals(kind).contains(&score.total),
                    "{kind:?} {response:?} -> {score:?}"
                );
                assert_eq!(
                    score.is_correct(),
                    score.total == totals(kind)[0],
                    "{response:?}"
                );
                assert_eq!(score.format_ok, check_format(&response).is_ok());
                if kind != Boxed && !score.format_ok {
                    assert_eq!(score.answer, Unparseable);
                }
                seen_correct[index] += usize::from(score.is_correct());
                if case % 3 == 1 {
                    let paper = score_with(RewardMode::Paper, kind, &response, truth);
                    assert!(
                        totals(kind).contains(&paper.total),
                        "paper {kind:?} {response:?} -> {paper:?}"
                    );
                    assert_eq!(paper.is_correct(), paper.total == totals(kind)[0]);
                    seen_paper_correct += usize::from(paper.is_correct());
                }
            }
            // The other public helpers, on a third of the corpus (they are slow in debug).
            if case % 3 == 0 {
                for kind in kinds {
                    let _ = check_ground_truth(kind, &response);
                }
                let _ = last_boxed(&response);
                let _ = last_answer_span(&response).map(|span| &response[span]);
                let _ = math_equivalent(&response, &fuzzed_truth);
            }
        }
        // The mutated perfect responses keep many right answers: the corpus is not all noise.
        assert!(
            seen_correct.iter().all(|&count| count > 1_000),
            "{seen_correct:?}"
        );
        assert!(seen_paper_correct > 1_000, "{seen_paper_correct}");
    }

    #[test]
    fn huge_responses_are_handled_in_linear_time() {
        let noise = "</think><answer>\\boxed{(1) A is ".repeat(20_000);
        for kind in [Assignment, Reachability, Integer, Boxed] {
            assert!(totals(kind).contains(&score(kind, &noise, TRUTH).total));
        }
        let spaces = format!("</think><answer>{}</answer>", "A is  \n ".repeat(50_000));
        for kind in [Assignment, Reachability, Integer] {
            for response in [&noise, &spaces] {
                let paper = score_with(RewardMode::Paper, kind, response, TRUTH);
                assert!(totals(kind).contains(&paper.total));
            }
        }
        let many_lines = respond(&"(1) A is True\n".repeat(100_000));
        assert_eq!(total(Assignment, &many_lines, TRUTH), -1.0);
        let long_number = respond(&"9".repeat(200_000));
        assert_eq!(total(Integer, &long_number, "10"), -0.5);
    }
}
