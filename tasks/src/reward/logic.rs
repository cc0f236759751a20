//! Answer parsers of the logic tasks: truth assignments (deduction), goal reachability
//! (abduction) and single integers (induction).
//!
//! Each grader reads the expected names (variables, goals) from the ground truth and
//! decides whether the response's answer text *parses* against them (every expected name
//! exactly once, nothing else) before comparing values. Parsing is strict about content and
//! lenient only about whitespace and the case of the value words.
//!
//! Line grammar, shared by assignments and reachability: blank lines are ignored; every
//! other line is `[(k)] NAME is VALUE` with any whitespace between tokens and around the
//! line. NAME is everything between the numbering and the final `is` (inner whitespace
//! collapsed), so multi-word names work. VALUE is `True`/`False` (assignments) or
//! `reachable`/`unreachable` (reachability), in any case. Numbering is all or nothing: when
//! present on one line it must be on every line and read `(1)`, `(2)`, ... in line order
//! (no leading zeros). Anything else (a trailing period, `1.` numbering, a prose line, a
//! misspelled value) makes the answer unparseable.

use std::collections::{BTreeMap, BTreeSet};

use super::AnswerStatus;

/// One answer line: a name and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    value: bool,
}

/// Reads a truth value, any case.
fn truth_value(word: &str) -> Option<bool> {
    if word.eq_ignore_ascii_case("true") {
        Some(true)
    } else if word.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Reads a reachability verdict, any case.
fn reachability_value(word: &str) -> Option<bool> {
    if word.eq_ignore_ascii_case("reachable") {
        Some(true)
    } else if word.eq_ignore_ascii_case("unreachable") {
        Some(false)
    } else {
        None
    }
}

/// Parses answer lines (see the module docs); `None` when any line breaks the grammar.
fn parse_entries(text: &str, value_of: fn(&str) -> Option<bool>) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut numbered = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (number, rest) = split_numbering(line);
        if *numbered.get_or_insert(number.is_some()) != number.is_some() {
            return None;
        }
        if let Some(number) = number {
            if number != (entries.len() + 1).to_string() {
                return None;
            }
        }
        let (head, value) = rest.rsplit_once(char::is_whitespace)?;
        let (name, is) = head.trim_end().rsplit_once(char::is_whitespace)?;
        if is != "is" {
            return None;
        }
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            return None;
        }
        entries.push(Entry {
            name,
            value: value_of(value)?,
        });
    }
    Some(entries)
}

/// Splits a leading `(digits)` off a trimmed line: the digits and the rest, trimmed.
fn split_numbering(line: &str) -> (Option<&str>, &str) {
    if let Some(inner) = line.strip_prefix('(') {
        if let Some((digits, rest)) = inner.split_once(')') {
            if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return (Some(digits), rest.trim_start());
            }
        }
    }
    (None, line)
}

/// The ground truth's entries: non-empty, names unique. `None` when it is malformed.
fn expected_entries(ground_truth: &str, value_of: fn(&str) -> Option<bool>) -> Option<Vec<Entry>> {
    let entries = parse_entries(ground_truth, value_of)?;
    let names: BTreeSet<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    (!entries.is_empty() && names.len() == entries.len()).then_some(entries)
}

/// Checks a ground truth of the assignment or reachability kind.
pub(super) fn check_lines_ground_truth(
    ground_truth: &str,
    reachability: bool,
) -> Result<(), String> {
    let value_of = if reachability {
        reachability_value
    } else {
        truth_value
    };
    match expected_entries(ground_truth, value_of) {
        Some(_) => Ok(()),
        None => Err(format!(
            "expected one `[(k)] NAME is {}` line per {}, names unique",
            if reachability {
                "reachable|unreachable"
            } else {
                "True|False"
            },
            if reachability { "goal" } else { "variable" },
        )),
    }
}

/// Grades a deduction answer: one `X is True|False` line per variable of the ground truth,
/// in any order, no unknown or repeated variable, no other line.
pub(super) fn grade_assignment(answer: &str, ground_truth: &str) -> AnswerStatus {
    let Some(expected) = expected_entries(ground_truth, truth_value) else {
        return AnswerStatus::Unparseable;
    };
    let Some(given) = parse_entries(answer, truth_value) else {
        return AnswerStatus::Unparseable;
    };
    if given.len() != expected.len() {
        return AnswerStatus::Unparseable;
    }
    let expected: BTreeMap<&str, bool> = expected
        .iter()
        .map(|entry| (entry.name.as_str(), entry.value))
        .collect();
    let mut seen = BTreeSet::new();
    let mut all_right = true;
    for entry in &given {
        let Some(&value) = expected.get(entry.name.as_str()) else {
            return AnswerStatus::Unparseable;
        };
        if !seen.insert(entry.name.as_str()) {
            return AnswerStatus::Unparseable;
        }
        all_right &= value == entry.value;
    }
    if all_right {
        AnswerStatus::Correct
    } else {
        AnswerStatus::Wrong
    }
}

/// Grades an abduction answer: one `G is reachable|unreachable` line per goal, the goals in
/// the ground truth's order (a different order, even of the right goals, does not parse).
pub(super) fn grade_reachability(answer: &str, ground_truth: &str) -> AnswerStatus {
    let Some(expected) = expected_entries(ground_truth, reachability_value) else {
        return AnswerStatus::Unparseable;
    };
    let Some(given) = parse_entries(answer, reachability_value) else {
        return AnswerStatus::Unparseable;
    };
    if given.len() != expected.len()
        || given
            .iter()
            .zip(&expected)
            .any(|(given, expected)| given.name != expected.name)
    {
        return AnswerStatus::Unparseable;
    }
    if given == expected {
        AnswerStatus::Correct
    } else {
        AnswerStatus::Wrong
    }
}

/// A parsed integer: its sign and its digits without leading zeros (zero is unsigned), so
/// equal integers of any size compare equal without overflow.
#[derive(Debug, PartialEq, Eq)]
struct Integer<'a> {
    negative: bool,
    digits: &'a str,
}

/// Reads one integer: optional `+`/`-` directly followed by ASCII digits, nothing else
/// besides surrounding whitespace.
fn parse_integer(text: &str) -> Option<Integer<'_>> {
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    let digits = if significant.is_empty() {
        "0"
    } else {
        significant
    };
    Some(Integer {
        negative: negative && digits != "0",
        digits,
    })
}

/// Checks an induction ground truth.
pub(super) fn check_integer_ground_truth(ground_truth: &str) -> Result<(), String> {
    parse_integer(ground_truth)
        .map(|_| ())
        .ok_or_else(|| "expected one integer".to_string())
}

/// Grades an induction answer: exactly one integer.
pub(super) fn grade_integer(answer: &str, ground_truth: &str) -> AnswerStatus {
    match (parse_integer(answer), parse_integer(ground_truth)) {
        (Some(given), Some(expected)) if given == expected => AnswerStatus::Correct,
        (Some(_), Some(_)) => AnswerStatus::Wrong,
        _ => AnswerStatus::Unparseable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerStatus::{Correct, Unparseable, Wrong};

    const TRUTH: &str = "(1) A is True\n(2) B is False\n(3) C is True";

    #[test]
    fn assignment_exactly_right_is_correct() {
        assert_eq!(grade_assignment(TRUTH, TRUTH), Correct);
        assert_eq!(
            grade_assignment(
                "\n  (1) A is True  \n\n(2) B is False\n(3) C is True\n\n",
                TRUTH
            ),
            Correct
        );
        // Any order of the variables; numbering follows the lines, not the variables.
        assert_eq!(
            grade_assignment("(1) C is True\n(2) A is True\n(3) B is False", TRUTH),
            Correct
        );
        // Whitespace is free, CRLF too.
        assert_eq!(
            grade_assignment("(1)A   is\tTrue\r\n(2)  B is False\r\n(3) C is True", TRUTH),
            Correct
        );
    }

    #[test]
    fn assignment_values_are_case_insensitive_and_nothing_else_is() {
        assert_eq!(
            grade_assignment("(1) A is true\n(2) B is FALSE\n(3) C is tRuE", TRUTH),
            Correct
        );
        assert_eq!(
            grade_assignment("(1) A IS True\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) a is True\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A is T\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A is True.\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A = True\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
    }

    #[test]
    fn assignment_numbering_is_optional_but_sequential() {
        assert_eq!(
            grade_assignment("A is True\nB is False\nC is True", TRUTH),
            Correct
        );
        assert_eq!(
            grade_assignment("(1) A is True\n(3) B is False\n(2) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(0) A is True\n(1) B is False\n(2) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(01) A is True\n(02) B is False\n(03) C is True", TRUTH),
            Unparseable
        );
        // All or nothing.
        assert_eq!(
            grade_assignment("(1) A is True\nB is False\n(3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("A is True\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
        // Other numbering styles are not numbering, so the name is wrong.
        assert_eq!(
            grade_assignment("1. A is True\n2. B is False\n3. C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("1) A is True\n2) B is False\n3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment(
                "(99999999999999999999999) A is True\n(2) B is False\n(3) C is True",
                TRUTH
            ),
            Unparseable
        );
    }

    #[test]
    fn assignment_wrong_value_parses_but_is_wrong() {
        assert_eq!(
            grade_assignment("(1) A is True\n(2) B is True\n(3) C is True", TRUTH),
            Wrong
        );
        assert_eq!(
            grade_assignment("(1) A is False\n(2) B is True\n(3) C is False", TRUTH),
            Wrong
        );
    }

    #[test]
    fn assignment_wrong_line_count_does_not_parse() {
        assert_eq!(
            grade_assignment("(1) A is True\n(2) B is False", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment(
                "(1) A is True\n(2) B is False\n(3) C is True\n(4) D is True",
                TRUTH
            ),
            Unparseable
        );
        assert_eq!(grade_assignment("", TRUTH), Unparseable);
        assert_eq!(grade_assignment("  \n \n", TRUTH), Unparseable);
    }

    #[test]
    fn assignment_unknown_or_duplicate_variables_do_not_parse() {
        assert_eq!(
            grade_assignment("(1) A is True\n(2) B is False\n(3) D is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A is True\n(2) B is False\n(3) A is True", TRUTH),
            Unparseable
        );
        // A duplicate, even with a contradicting value and the right line count.
        assert_eq!(
            grade_assignment("(1) A is True\n(2) A is False\n(3) C is True", TRUTH),
            Unparseable
        );
    }

    #[test]
    fn assignment_extra_prose_does_not_parse() {
        assert_eq!(
            grade_assignment(
                "The assignment is:\n(1) A is True\n(2) B is False\n(3) C is True",
                TRUTH
            ),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A is True\n(2) B is False\n(3) C is True\nDone.", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A is True, (2) B is False, (3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) A is True (2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
        assert_eq!(
            grade_assignment("(1) **A** is True\n(2) B is False\n(3) C is True", TRUTH),
            Unparseable
        );
    }

    #[test]
    fn assignment_names_may_be_words() {
        let truth = "(1) it rains is True\n(2) the grass is wet is False";
        assert_eq!(
            grade_assignment(
                "(1)  it  rains is true\n(2) the grass is wet is false",
                truth
            ),
            Correct
        );
        assert_eq!(
            grade_assignment("(1) it rains is true\n(2) the grass is wet is true", truth),
            Wrong
        );
        assert_eq!(
            grade_assignment("(1) it rains is true\n(2) the grass is true", truth),
            Unparseable
        );
    }

    #[test]
    fn malformed_ground_truths_grade_nothing() {
        for truth in [
            "",
            "A is Maybe",
            "(1) A is True\n(2) A is False",
            "A is True\nprose",
        ] {
            assert!(check_lines_ground_truth(truth, false).is_err(), "{truth:?}");
            assert_eq!(grade_assignment(truth, truth), Unparseable, "{truth:?}");
        }
        assert!(check_lines_ground_truth(TRUTH, false).is_ok());
        assert!(check_lines_ground_truth(TRUTH, true).is_err());
    }

    const GOALS: &str = "(1) X is reachable\n(2) Y is unreachable\n(3) Z is unreachable";

    #[test]
    fn reachability_in_goal_order() {
        assert!(check_lines_ground_truth(GOALS, true).is_ok());
        assert_eq!(grade_reachability(GOALS, GOALS), Correct);
        assert_eq!(
            grade_reachability("X is Reachable\nY is UNREACHABLE\nZ is unreachable", GOALS),
            Correct
        );
        assert_eq!(
            grade_reachability(
                "(1) X is reachable\n(2) Y is reachable\n(3) Z is unreachable",
                GOALS
            ),
            Wrong
        );
        // The right goals out of order do not parse, even with every value right.
        assert_eq!(
            grade_reachability(
                "(1) Y is unreachable\n(2) X is reachable\n(3) Z is unreachable",
                GOALS
            ),
            Unparseable
        );
        assert_eq!(
            grade_reachability("(1) X is reachable\n(2) Y is unreachable", GOALS),
            Unparseable
        );
        assert_eq!(
            grade_reachability("(1) X is reachable\n(2) Y is unreachable\n(3) Z is unreachable\n(4) W is reachable", GOALS),
            Unparseable
        );
        assert_eq!(
            grade_reachability(
                "(1) X is reachable\n(2) Y is unreachable\n(3) W is unreachable",
                GOALS
            ),
            Unparseable
        );
        assert_eq!(
            grade_reachability(
                "(1) X is reachable\n(2) X is unreachable\n(3) Z is unreachable",
                GOALS
            ),
            Unparseable
        );
        assert_eq!(
            grade_reachability("(1) X is True\n(2) Y is False\n(3) Z is False", GOALS),
            Unparseable
        );
        assert_eq!(
            grade_reachability(
                "(1) X is not reachable\n(2) Y is unreachable\n(3) Z is unreachable",
                GOALS
            ),
            Unparseable
        );
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(grade_integer("10", "10"), Correct);
        assert_eq!(grade_integer("  10 \n", "10"), Correct);
        assert_eq!(grade_integer("+10", "10"), Correct);
        assert_eq!(grade_integer("010", "10"), Correct);
        assert_eq!(grade_integer("-7", "-7"), Correct);
        assert_eq!(grade_integer("-0", "0"), Correct);
        assert_eq!(grade_integer("11", "10"), Wrong);
        assert_eq!(grade_integer("-10", "10"), Wrong);
        assert_eq!(
            grade_integer(
                "123456789012345678901234567890",
                "123456789012345678901234567890"
            ),
            Correct
        );
        assert_eq!(
            grade_integer(
                "123456789012345678901234567891",
                "123456789012345678901234567890"
            ),
            Wrong
        );
        for answer in [
            "10.0",
            "10.",
            "ten",
            "10 apples",
            "",
            "-",
            "+",
            "- 10",
            "1 0",
            "1,000",
            "1e3",
            "١٠",
            "10\n11",
            "(1) 10",
            "--1",
            "0x10",
        ] {
            assert_eq!(grade_integer(answer, "10"), Unparseable, "{answer:?}");
        }
        assert!(check_integer_ground_truth("-12").is_ok());
        assert!(check_integer_ground_truth("12.5").is_err());
        assert_eq!(grade_integer("12", "twelve"), Unparseable);
    }
}
