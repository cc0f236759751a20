//! `reward = "paper"`: the reward as the paper's released code computes it (arXiv
//! 2505.10554, its verl fork's logic reward), case for case, for the logic tasks.
//!
//! The released code receives the decoded prompt and response together. It cuts that text
//! after the first `Assistant:` if there is one, else after the first
//! `<|im_start|>assistant` (which ends peirce's prompt, followed by the prompt's `<think>`).
//! peirce's rendered prompts contain no `Assistant:`, so the text graded here is the
//! response after its first `Assistant:` when it has one (the prompt's `<think>` is then
//! lost), else `<think>` followed by the response.
//!
//! * Format: each of `<think>`, `</think>`, `<answer>`, `</answer>` exactly once, in that
//!   order. Nothing else: any text may stand between `</think>` and `<answer>` or after
//!   `</answer>`.
//! * The answer is the text between `<answer>` and `</answer>`, stripped of whitespace; it
//!   is graded only when the format holds and it is not empty.
//! * Deduction and abduction: the ground truth's names are read line by line, the first
//!   `NAME is VALUE` on each line (NAME a word, VALUE `True`/`False` or
//!   `reachable`/`unreachable`, any case). The answer must mention `is VALUE` exactly as
//!   many times as there are names, and for each name the first `NAME is VALUE` in the
//!   answer (anywhere: numbering, prose, punctuation and order do not matter; the name in any
//!   case) gives its value. Matching follows Python's `re` with `IGNORECASE`: `\b` word
//!   boundaries over Unicode letters, digits and `_`; `\s` any Unicode whitespace.
//! * Induction: the answer is read as Python's `int()` reads text: optional sign, decimal
//!   digits of any script (Unicode category Nd, as in Python 3.10: Unicode 13), single `_`
//!   between digits, no limit on their number.
//! * Totals as in the strict reward: format ±1, answer +2 right, -1.5 wrong, -2 unread.
//!
//! One deviation, so that peirce's own data can be graded at all: the released code reads a
//! name as `[A-Za-z]+`, which cannot read peirce's abduction goals (`U7`); here a name is a
//! whole word (letters, digits, `_`). On the release's letter names the two agree.

use super::AnswerStatus;

/// Where the released code's format check and answer extraction look (see the module docs).
fn graded_text(response: &str) -> std::borrow::Cow<'_, str> {
    const HEADER: &str = "Assistant:";
    match response.find(HEADER) {
        Some(at) => std::borrow::Cow::Borrowed(&response[at + HEADER.len()..]),
        None => std::borrow::Cow::Owned(format!("{}{response}", super::THINK_OPEN)),
    }
}

/// The released format check: each tag once, in order. Returns the answer block's text.
fn answer_block(text: &str) -> Option<&str> {
    let tags = [
        super::THINK_OPEN,
        super::THINK_CLOSE,
        super::ANSWER_OPEN,
        super::ANSWER_CLOSE,
    ];
    let mut positions = [0usize; 4];
    for (slot, tag) in positions.iter_mut().zip(tags) {
        if text.matches(tag).count() != 1 {
            return None;
        }
        *slot = text.find(tag)?;
    }
    if !positions.windows(2).all(|pair| pair[0] < pair[1]) {
        return None;
    }
    Some(&text[positions[2] + super::ANSWER_OPEN.len()..positions[3]])
}

/// Checks the released format and returns the stripped answer text when it holds.
pub(super) fn check_format(response: &str) -> Option<String> {
    let text = graded_text(response);
    answer_block(&text).map(|answer| answer.trim_matches(is_space).to_string())
}

/// Python's `str.isspace` (and `re`'s `\s`): Unicode whitespace and the separators
/// U+001C..U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `re`'s `\w`: Unicode letters and digits, and `_`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `c` matches the pattern character `p` under `IGNORECASE` (simple case folding,
/// with `re`'s extra equivalences for `i`, `s` and `k`).
fn folds_to(c: char, p: char) -> bool {
    if c == p {
        return true;
    }
    let p = p.to_ascii_lowercase();
    if p.is_ascii_alphabetic() {
        return c.to_ascii_lowercase() == p
            || matches!((p, c), ('i', 'ı' | 'İ') | ('s', 'ſ') | ('k', '\u{212a}'));
    }
    let mut lower = c.to_lowercase();
    let mut pattern = p.to_lowercase();
    lower.len() == 1 && pattern.len() == 1 && lower.next() == pattern.next()
}

/// A word boundary before index `at` of `chars`.
fn boundary(chars: &[char], at: usize) -> bool {
    let before = at > 0 && is_word(chars[at - 1]);
    let after = at < chars.len() && is_word(chars[at]);
    before != after
}

/// Matches `word` (case-insensitively) at `at`; returns the index after it.
fn word_at(chars: &[char], at: usize, word: &[char]) -> Option<usize> {
    let end = at + word.len();
    (end <= chars.len()
        && chars[at..end]
            .iter()
            .zip(word)
            .all(|(&c, &p)| folds_to(c, p)))
    .then_some(end)
}

/// Skips one or more whitespace characters from `at`.
fn spaces_at(chars: &[char], at: usize) -> Option<usize> {
    let count = chars[at.min(chars.len())..]
        .iter()
        .take_while(|&&c| is_space(c))
        .count();
    (count > 0).then_some(at + count)
}

/// `\s+is\s+(VALUE_0|VALUE_1)\b` from `at`: the index of the value matched (0 or 1).
fn is_value_at(chars: &[char], at: usize, values: &[Vec<char>; 2]) -> Option<usize> {
    let at = spaces_at(chars, at)?;
    let at = word_at(chars, at, &['i', 's'])?;
    let at = spaces_at(chars, at)?;
    values
        .iter()
        .position(|value| word_at(chars, at, value).is_some_and(|end| boundary(chars, end)))
}

/// The two value words of a kind, true first.
fn value_words(reachability: bool) -> [Vec<char>; 2] {
    let (yes, no) = if reachability {
        ("reachable", "unreachable")
    } else {
        ("true", "false")
    };
    [yes.chars().collect(), no.chars().collect()]
}

/// The ground truth's names and values (`true` for True/reachable), in first-seen order; a
/// repeated name keeps its first place and its last value.
fn ground_truth_entries(ground_truth: &str, values: &[Vec<char>; 2]) -> Vec<(Vec<char>, bool)> {
    let mut entries: Vec<(Vec<char>, bool)> = Vec::new();
    for line in ground_truth.split('\n') {
        let chars: Vec<char> = line.trim_matches(is_space).chars().collect();
        // The first word starting at a boundary that is followed by `is VALUE`.
        let found = (0..chars.len())
            .filter(|&at| is_word(chars[at]) && boundary(&chars, at))
            .find_map(|start| {
                let end = start + chars[start..].iter().take_while(|&&c| is_word(c)).count();
                let value = is_value_at(&chars, end, values)?;
                Some((chars[start..end].to_vec(), value == 0))
            });
        if let Some((name, value)) = found {
            match entries.iter_mut().find(|(seen, _)| *seen == name) {
                Some(entry) => entry.1 = value,
                None => entries.push((name, value)),
            }
        }
    }
    entries
}

/// How often `\bis\s+VALUE\b` occurs, for either value.
fn count_value_mentions(chars: &[char], values: &[Vec<char>; 2]) -> usize {
    (0..chars.len())
        .filter(|&at| {
            boundary(chars, at)
                && word_at(chars, at, &['i', 's'])
                    .is_some_and(|end| is_value_at_after_is(chars, end, values))
        })
        .count()
}

/// `\s+(VALUE_0|VALUE_1)\b` right after an `is`.
fn is_value_at_after_is(chars: &[char], at: usize, values: &[Vec<char>; 2]) -> bool {
    let Some(at) = spaces_at(chars, at) else {
        return false;
    };
    values
        .iter()
        .any(|value| word_at(chars, at, value).is_some_and(|end| boundary(chars, end)))
}

/// The value of the first `\bNAME\b\s+is\s+VALUE\b` in `chars`.
fn named_value(chars: &[char], name: &[char], values: &[Vec<char>; 2]) -> Option<bool> {
    (0..chars.len()).find_map(|at| {
        if !boundary(chars, at) {
            return None;
        }
        let end = word_at(chars, at, name)?;
        if !boundary(chars, end) {
            return None;
        }
        is_value_at(chars, end, values).map(|value| value == 0)
    })
}

/// Grades a deduction (`reachability` false) or abduction answer as the released code does.
pub(super) fn grade_lines(answer: &str, ground_truth: &str, reachability: bool) -> AnswerStatus {
    let values = value_words(reachability);
    let expected = ground_truth_entries(ground_truth, &values);
    let chars: Vec<char> = answer.chars().collect();
    if expected.is_empty() || count_value_mentions(&chars, &values) != expected.len() {
        return AnswerStatus::Unparseable;
    }
    let mut all_right = true;
    for (name, value) in &expected {
        match named_value(&chars, name, &values) {
            Some(given) => all_right &= given == *value,
            None => return AnswerStatus::Unparseable,
        }
    }
    if all_right {
        AnswerStatus::Correct
    } else {
        AnswerStatus::Wrong
    }
}

/// The zero of every run of ten decimal digits (Unicode category Nd, Unicode 13).
pub(super) const DIGIT_ZEROS: [u32; 65] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16B50, 0x1D7CE,
    0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit of any script.
fn decimal_digit(c: char) -> Option<u8> {
    let code = u32::from(c);
    let index = DIGIT_ZEROS
        .partition_point(|&zero| zero <= code)
        .checked_sub(1)?;
    let offset = code - DIGIT_ZEROS[index];
    (offset < 10).then_some(offset as u8)
}

/// Reads an integer as Python's `int(text)` does; returns its sign and ASCII digits without
/// leading zeros (zero unsigned).
pub(super) fn python_int(text: &str) -> Option<(bool, String)> {
    let text = text.trim_matches(is_space);
    let (negative, rest) = match text.chars().next()? {
        '-' => (true, &text[1..]),
        '+' => (false, &text[1..]),
        _ => (false, text),
    };
    let mut digits = String::with_capacity(rest.len());
    let mut after_digit = false;
    for c in rest.chars() {
        if c == '_' {
            if !after_digit {
                return None;
            }
            after_digit = false;
        } else {
            digits.push(char::from(b'0' + decimal_digit(c)?));
            after_digit = true;
        }
    }
    if !after_digit {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some((false, "0".to_string()));
    }
    Some((negative, trimmed.to_string()))
}

/// Grades an induction answer as the released code does.
pub(super) fn grade_integer(answer: &str, ground_truth: &str) -> AnswerStatus {
    let (Some(expected), Some(given)) = (python_int(ground_truth), python_int(answer)) else {
        return AnswerStatus::Unparseable;
    };
    if given == expected {
        AnswerStatus::Correct
    } else {
        AnswerStatus::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::super::corpus::{mode_cases, ModeCase};
    use super::super::{score_with, RewardMode, Score};
    use super::*;
    use crate::AnswerKind::{Assignment, Integer, Reachability};

    const TRUTH: &str = "(1) A is True\n(2) B is False\n(3) C is True";
    const GOALS: &str = "(1) X is reachable\n(2) Y7 is unreachable\n(3) Z is unreachable";

    #[test]
    fn the_corpus_scores_as_the_readme_table_says_in_both_modes() {
        let corpus = mode_cases();
        for row in &corpus {
            for (mode, expected) in [
                (RewardMode::Strict, row.strict),
                (RewardMode::Paper, row.paper),
            ] {
                let score = score_with(mode, row.kind, row.response, row.truth);
                assert_eq!(
                    score.total, expected,
                    "{} ({mode:?}): {:?} -> {score:?}",
                    row.row, row.response
                );
                assert_eq!(score.is_correct(), expected == 3.0);
            }
        }
        // Every row of the README's table has a case, and it is a difference.
        let readme = include_str!("../../../README.md");
        let start = readme.find("<!-- reward-modes:begin -->").unwrap();
        let end = readme.find("<!-- reward-modes:end -->").unwrap();
        let table = &readme[start..end];
        let rows: Vec<&str> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| ")?.split(" | ").next())
            .filter(|name| *name != "case" && !name.starts_with("---"))
            .collect();
        assert!(rows.len() >= 9, "{rows:?}");
        for name in rows {
            let name = name.replace('`', "");
            let cases: Vec<&ModeCase> = corpus.iter().filter(|row| row.row == name).collect();
            assert!(!cases.is_empty(), "README row `{name}` has no corpus case");
            assert!(cases.iter().any(|row| row.strict != row.paper), "{name}");
        }
    }

    #[test]
    fn python_int_reads_as_python_does() {
        for (text, expected) in [
            ("10", Some((false, "10"))),
            (" +10\n", Some((false, "10"))),
            ("-007", Some((true, "7"))),
            ("-0", Some((false, "0"))),
            ("1_000", Some((false, "1000"))),
            ("٣", Some((false, "3"))),
            ("𝟗", Some((false, "9"))),
            ("_1", None),
            ("1_", None),
            ("1__0", None),
            ("- 5", None),
            ("10.0", None),
            ("", None),
            ("+", None),
            ("²", None),
        ] {
            let expected = expected.map(|(negative, digits)| (negative, digits.to_string()));
            assert_eq!(python_int(text), expected, "{text:?}");
        }
    }

    #[test]
    fn ground_truths_every_family_writes_score_full_marks() {
        for (kind, truth) in [
            (Assignment, TRUTH),
            (Reachability, GOALS),
            (Reachability, "(1) U7 is reachable"),
            (Integer, "-3"),
        ] {
            let response = super::super::perfect_response(kind, truth, None);
            assert_eq!(
                score_with(RewardMode::Paper, kind, &response, truth),
                Score {
                    total: 3.0,
                    format_ok: true,
                    answer: AnswerStatus::Correct
                }
            );
        }
    }
}
