//! Boxed math answers: finding the final `\boxed{...}` and deciding whether it is
//! mathematically the same as the ground truth.
//!
//! Extraction takes the last complete top-level box (`\boxed{..}` with balanced braces,
//! `\fbox{..}`, or the `\boxed 42` form) of the answer block, or of the whole response when
//! the answer block holds none. Escaped braces (`\{`, `\}`) do not count toward balance; an
//! unclosed box is skipped.
//!
//! Equivalence first normalizes both sides the same way (box wrappers, `$`, `\left`/
//! `\right`, thin spaces, `\dfrac`/`\tfrac`, degrees, percent signs, `x =` prefixes, all
//! whitespace, trailing periods), then compares them as exact rationals when both read as
//! numbers (integers, decimals, `1,000`-style thousands, `a/b`, `\frac{a}{b}`, `\frac12`,
//! with trailing `\text{..}` units dropped), else as normalized strings (text wrappers
//! unwrapped, `\frac12` and `\sqrt2` braced). There are no floats: `0.1 + 0.2`-style
//! rounding cannot make two answers equal. A percent sign is simply dropped (`50\%` equals
//! `50`, not `0.5`). Numbers too large for 128-bit fractions fall back to the string
//! comparison. This is deliberately not a computer algebra system: `\frac{\sqrt2}{2}` and
//! `\frac{1}{\sqrt2}` differ.

use std::ops::Range;

use super::format::last_answer_span;
use super::AnswerStatus;

/// Commands whose braced argument is the answer itself.
const BOX_COMMANDS: [&str; 2] = ["\\boxed", "\\fbox"];
/// Commands that wrap text; unwrapped for the string comparison.
const TEXT_COMMANDS: [&str; 7] = [
    "\\text",
    "\\textbf",
    "\\textrm",
    "\\mathrm",
    "\\mathbf",
    "\\mbox",
    "\\operatorname",
];
/// Openings of a trailing unit after a number (`5\text{ cm}`).
const UNIT_OPENINGS: [&str; 4] = ["\\text{", "\\mbox{", "\\mathrm{", "\\textrm{"];

/// For each byte that is a `{`, the index of its matching `}`; `None` elsewhere and for
/// unclosed braces. A backslash escapes the next byte, so `\{` and `\}` are not braces.
/// Unmatched `}` are ignored. Linear time.
fn match_braces(text: &str) -> Vec<Option<usize>> {
    let bytes = text.as_bytes();
    let mut matches = vec![None; bytes.len()];
    let mut open = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 1,
            b'{' => open.push(index),
            b'}' => {
                if let Some(start) = open.pop() {
                    matches[start] = Some(index);
                }
            }
            _ => {}
        }
        index += 1;
    }
    matches
}

/// Whether `command` starts at byte `at` of `text` as a whole command (not followed by
/// another letter, so `\text` does not match `\textbf`).
fn command_at(text: &str, at: usize, command: &str) -> bool {
    let bytes = text.as_bytes();
    bytes[at..].starts_with(command.as_bytes())
        && !bytes
            .get(at + command.len())
            .is_some_and(|byte| byte.is_ascii_alphabetic())
}

/// The first of `commands` starting at byte `at`, if any.
fn which_command(text: &str, at: usize, commands: &[&'static str]) -> Option<&'static str> {
    if text.as_bytes().get(at) != Some(&b'\\') {
        return None;
    }
    commands
        .iter()
        .copied()
        .find(|command| command_at(text, at, command))
}

/// Index of the first byte at or after `from` that is not an ASCII space or tab.
fn skip_spaces(bytes: &[u8], from: usize) -> usize {
    let mut index = from;
    while index < bytes.len() && matches!(bytes[index], b' ' | b'\t') {
        index += 1;
    }
    index
}

/// The byte ranges of the contents of every complete top-level box in `text`, in order.
fn find_boxes(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let matches = match_braces(text);
    let mut boxes = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let Some(command) = which_command(text, index, &BOX_COMMANDS) else {
            index += 1;
            continue;
        };
        let after = index + command.len();
        let start = skip_spaces(bytes, after);
        if bytes.get(start) == Some(&b'{') {
            if let Some(end) = matches[start] {
                boxes.push(start + 1..end);
                index = end + 1;
                continue;
            }
        } else if start > after {
            // `\boxed 42`: one token, up to whitespace, `$` or a tag's `<`.
            let end = bytes[start..]
                .iter()
                .position(|byte| byte.is_ascii_whitespace() || matches!(byte, b'$' | b'<'))
                .map_or(bytes.len(), |offset| start + offset);
            if end > start {
                boxes.push(start..end);
                index = end;
                continue;
            }
        }
        index = after;
    }
    boxes
}

/// The content of the last complete top-level box in `text`, if any.
pub fn last_boxed(text: &str) -> Option<&str> {
    find_boxes(text).pop().map(|range| &text[range])
}

/// The box a math response is graded on: the last one inside the last answer block, else
/// the last one anywhere.
pub(super) fn final_box(response: &str) -> Option<&str> {
    last_answer_span(response)
        .and_then(|span| last_boxed(&response[span]))
        .or_else(|| last_boxed(response))
}

/// Removes each of `commands` and the braces of its argument, keeping the argument
/// (`\boxed{\frac{1}{2}}` -> `\frac{1}{2}`); a command without a braced argument is just
/// dropped. One linear pass, nested uses included.
fn unwrap_commands(text: &str, commands: &[&'static str]) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let matches = match_braces(text);
    let mut drop_close = vec![false; bytes.len()];
    let mut out = String::with_capacity(text.len());
    // Bytes from `kept` up to `index` are copied in one go at the next cut; every cut is at
    // an ASCII byte (a command or a brace), so slices stay on char boundaries.
    let mut kept = 0;
    let mut index = 0;
    while index < bytes.len() {
        if let Some(command) = which_command(text, index, commands) {
            out.push_str(&text[kept..index]);
            let start = skip_spaces(bytes, index + command.len());
            match (bytes.get(start), matches.get(start).copied().flatten()) {
                (Some(b'{'), Some(end)) => {
                    drop_close[end] = true;
                    index = start + 1;
                }
                _ => index += command.len(),
            }
            kept = index;
        } else if drop_close[index] {
            out.push_str(&text[kept..index]);
            index += 1;
            kept = index;
        } else {
            index += 1;
        }
    }
    out.push_str(&text[kept..]);
    out
}

/// Decoration removed (or rewritten) wherever it stands, in one pass: `(pattern, whole
/// command only, replacement)`. A whole command is not followed by a letter, so `\right`
/// goes but `\rightarrow` stays.
const DECORATION: [(&str, bool, &str); 20] = [
    ("$", false, ""),
    ("~", false, ""),
    ("%", false, ""),
    ("\\$", false, ""),
    ("\\%", false, ""),
    ("\\!", false, ""),
    ("\\,", false, ""),
    ("\\;", false, ""),
    ("\\:", false, ""),
    ("\\ ", false, ""),
    ("\\left", true, ""),
    ("\\right", true, ""),
    ("\\displaystyle", true, ""),
    ("\\dfrac", true, "\\frac"),
    ("\\tfrac", true, "\\frac"),
    ("{,}", false, ","),
    ("^{\\circ}", false, ""),
    ("^\\circ", false, ""),
    ("\u{2212}", false, "-"),
    ("\u{b0}", false, ""),
];

/// Removes the [`DECORATION`]s: dollar signs, thin spaces, `\left`/`\right`, degree and
/// percent signs; `\dfrac`/`\tfrac` become `\frac`, `{,}` a comma, `−` a minus.
fn strip_decoration(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Copy runs in one go; every cut is at the first byte of a pattern, a char boundary.
    let mut kept = 0;
    let mut index = 0;
    while index < bytes.len() {
        // The first bytes of the patterns (`−` and `°` start with 0xE2 and 0xC2).
        if !matches!(
            bytes[index],
            b'$' | b'~' | b'%' | b'\\' | b'{' | b'^' | 0xC2 | 0xE2
        ) {
            index += 1;
            continue;
        }
        let found = DECORATION.iter().find(|(pattern, whole, _)| {
            bytes[index..].starts_with(pattern.as_bytes())
                && (!whole || command_at(text, index, pattern))
        });
        match found {
            Some((pattern, _, replacement)) => {
                out.push_str(&text[kept..index]);
                out.push_str(replacement);
                index += pattern.len();
                kept = index;
            }
            None => index += 1,
        }
    }
    out.push_str(&text[kept..]);
    out
}

/// Braces the single-character arguments of `command` (`\frac12` -> `\frac{1}{2}`,
/// `\sqrt2` -> `\sqrt{2}`). Braced arguments are kept as they are.
fn brace_short_arguments(text: &str, command: &str, arguments: usize) -> String {
    if !text.contains(command) {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let matches = match_braces(text);
    let mut out = String::with_capacity(text.len() + 8);
    // As in `unwrap_commands`: copy runs in one go, cut only at ASCII bytes.
    let mut kept = 0;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'\\' || !command_at(text, index, command) {
            index += 1;
            continue;
        }
        index += command.len();
        out.push_str(&text[kept..index]);
        for _ in 0..arguments {
            match bytes.get(index) {
                Some(b'{') => match matches[index] {
                    Some(end) => {
                        out.push_str(&text[index..=end]);
                        index = end + 1;
                    }
                    None => break,
                },
                Some(b'\\' | b'[' | b'}') | None => break,
                Some(_) => {
                    // `index` follows ASCII (the command or a `}`), so it is a boundary.
                    let Some(character) = text[index..].chars().next() else {
                        break;
                    };
                    out.push('{');
                    out.push(character);
                    out.push('}');
                    index += character.len_utf8();
                }
            }
        }
        kept = index;
    }
    out.push_str(&text[kept..]);
    out
}

/// The normalization both sides share before any comparison.
fn normalize(answer: &str) -> String {
    let mut text = strip_decoration(&unwrap_commands(answer, &BOX_COMMANDS));
    text.retain(|character| !character.is_whitespace());
    let text = text.trim_end_matches('.');
    // `x = 5` -> `5`: one `=` after a name of one or two letters.
    match text.split_once('=') {
        Some((name, value))
            if !value.is_empty()
                && !value.contains('=')
                && (1..=2).contains(&name.len())
                && name.bytes().all(|byte| byte.is_ascii_alphabetic()) =>
        {
            value.to_string()
        }
        _ => text.to_string(),
    }
}

/// An exact rational in lowest terms with a positive denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rational {
    numerator: i128,
    denominator: i128,
}

impl Rational {
    /// `numerator / denominator` reduced; `None` for a zero denominator or on overflow.
    fn new(numerator: i128, denominator: i128) -> Option<Rational> {
        if denominator == 0 {
            return None;
        }
        let divisor = gcd(numerator.unsigned_abs(), denominator.unsigned_abs());
        let divisor = i128::try_from(divisor).ok()?;
        let (mut numerator, mut denominator) = (numerator / divisor, denominator / divisor);
        if denominator < 0 {
            numerator = numerator.checked_neg()?;
            denominator = denominator.checked_neg()?;
        }
        Some(Rational {
            numerator,
            denominator,
        })
    }

    fn negate(self) -> Option<Rational> {
        Some(Rational {
            numerator: self.numerator.checked_neg()?,
            denominator: self.denominator,
        })
    }

    fn divide(self, other: Rational) -> Option<Rational> {
        Rational::new(
            self.numerator.checked_mul(other.denominator)?,
            self.denominator.checked_mul(other.numerator)?,
        )
    }
}

/// Greatest common divisor; 1 when both are zero (so `0/d` reduces to `0/1`).
fn gcd(mut left: u128, mut right: u128) -> u128 {
    while right != 0 {
        (left, right) = (right, left % right);
    }
    left.max(1)
}

/// Reads a decimal: optional sign, digits with optional `1,000`-style thousands groups,
/// optional `.digits`. At least one digit.
fn parse_decimal(text: &str) -> Option<Rational> {
    let (negative, body) = split_sign(text);
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if whole.contains(',') {
        let mut groups = whole.split(',');
        let first = groups.next()?;
        if first.is_empty() || first.len() > 3 || groups.any(|group| group.len() != 3) {
            return None;
        }
    }
    let mut numerator: i128 = 0;
    let mut denominator: i128 = 1;
    for byte in whole.bytes().filter(|&byte| byte != b',') {
        numerator = push_digit(numerator, byte)?;
    }
    for byte in fraction.bytes() {
        numerator = push_digit(numerator, byte)?;
        denominator = denominator.checked_mul(10)?;
    }
    let value = Rational::new(numerator, denominator)?;
    if negative {
        value.negate()
    } else {
        Some(value)
    }
}

fn push_digit(number: i128, byte: u8) -> Option<i128> {
    if !byte.is_ascii_digit() {
        return None;
    }
    number.checked_mul(10)?.checked_add(i128::from(byte - b'0'))
}

/// Splits one leading `+` or `-` off.
fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// Reads a normalized (whitespace-free) answer as a number: a decimal, `a/b`,
/// `\frac{a}{b}` or `\frac12`, with an optional sign in front.
fn parse_number(text: &str) -> Option<Rational> {
    let (negative, body) = split_sign(text);
    // One sign in front at most (`--3` is not a number); signs inside `a/b` or
    // `\frac{a}{b}` are the parts' own.
    if matches!(body.as_bytes().first(), Some(b'-' | b'+')) {
        return None;
    }
    let value = if let Some(arguments) = body.strip_prefix("\\frac") {
        let (numerator, denominator) = if let Some(braced) = arguments
            .strip_prefix('{')
            .and_then(|inner| inner.strip_suffix('}'))
        {
            braced.split_once("}{")?
        } else if arguments.len() == 2 && arguments.bytes().all(|byte| byte.is_ascii_digit()) {
            arguments.split_at(1)
        } else {
            return None;
        };
        parse_decimal(numerator)?.divide(parse_decimal(denominator)?)?
    } else if let Some((numerator, denominator)) = body.split_once('/') {
        parse_decimal(numerator)?.divide(parse_decimal(denominator)?)?
    } else {
        parse_decimal(body)?
    };
    if negative {
        value.negate()
    } else {
        Some(value)
    }
}

/// Reads a normalized answer as a number: as it is, without a trailing unit
/// (`5\text{cm}`), or with its text wrappers removed (`\text{5}`).
fn numeric_value(normalized: &str, text: &str) -> Option<Rational> {
    parse_number(normalized)
        .or_else(|| {
            let cut = UNIT_OPENINGS
                .iter()
                .filter_map(|opening| normalized.find(opening))
                .min()?;
            (cut > 0)
                .then(|| parse_number(&normalized[..cut]))
                .flatten()
        })
        .or_else(|| parse_number(text))
}

/// The string form compared when either side is not a number.
fn comparable_text(normalized: &str) -> String {
    let text = unwrap_commands(normalized, &TEXT_COMMANDS);
    let text = brace_short_arguments(&text, "\\frac", 2);
    brace_short_arguments(&text, "\\sqrt", 1)
}

/// An answer read for comparison.
#[derive(Debug)]
struct Canonical {
    number: Option<Rational>,
    text: String,
}

fn canonical(answer: &str) -> Canonical {
    let normalized = normalize(answer);
    let text = comparable_text(&normalized);
    Canonical {
        number: numeric_value(&normalized, &text),
        text,
    }
}

/// Whether two math answers (box contents, or whole `\boxed{..}` strings) are the same:
/// equal as exact rationals when both are numbers, else equal as normalized strings. An
/// answer that normalizes to nothing equals nothing.
pub fn math_equivalent(answer: &str, ground_truth: &str) -> bool {
    let (answer, ground_truth) = (canonical(answer), canonical(ground_truth));
    match (answer.number, ground_truth.number) {
        (Some(left), Some(right)) => left == right,
        _ => !answer.text.is_empty() && answer.text == ground_truth.text,
    }
}

/// Checks a math ground truth: it must not normalize to nothing.
pub(super) fn check_boxed_ground_truth(ground_truth: &str) -> Result<(), String> {
    if canonical(ground_truth).text.is_empty() {
        Err("the math answer is empty".to_string())
    } else {
        Ok(())
    }
}

/// The ground truth without a box around the whole of it, for building a perfect response.
pub(super) fn unboxed(ground_truth: &str) -> &str {
    let trimmed = ground_truth.trim();
    if let [only] = find_boxes(trimmed).as_slice() {
        let head = trimmed[..only.start].trim_end_matches('{').trim_end();
        if BOX_COMMANDS.contains(&head) && matches!(&trimmed[only.end..], "" | "}") {
            return &trimmed[only.clone()];
        }
    }
    ground_truth
}

/// Grades a math response: its final box against the ground truth.
pub(super) fn grade_boxed(response: &str, ground_truth: &str) -> AnswerStatus {
    match final_box(response) {
        Some(content) if !normalize(content).is_empty() => {
            if math_equivalent(content, ground_truth) {
                AnswerStatus::Correct
            } else {
                AnswerStatus::Wrong
            }
        }
        _ => AnswerStatus::Unparseable,
    }
}

#[cfg(test)]
mod tests {
    use super::super::corpus::{integer_forms, MATH_DIFFERENT, MATH_EQUIVALENT};
    use super::*;

    fn equivalent(left: &str, right: &str) -> bool {
        math_equivalent(left, right) && math_equivalent(right, left)
    }

    #[test]
    fn boxes_are_found_with_balanced_braces() {
        assert_eq!(last_boxed("so \\boxed{42}."), Some("42"));
        assert_eq!(last_boxed("\\boxed{1} then \\boxed{2}"), Some("2"));
        assert_eq!(
            last_boxed("\\boxed{\\frac{1}{\\sqrt{2}}}"),
            Some("\\frac{1}{\\sqrt{2}}")
        );
        assert_eq!(last_boxed("\\fbox{7}"), Some("7"));
        assert_eq!(last_boxed("$\\boxed 5$"), Some("5"));
        assert_eq!(last_boxed("\\boxed  {5}"), Some("5"));
        assert_eq!(last_boxed("\\boxed{\\{1,2\\}}"), Some("\\{1,2\\}"));
        // Nested boxes: the outer one is the top-level box.
        assert_eq!(last_boxed("\\boxed{\\boxed{3}}"), Some("\\boxed{3}"));
        // Unclosed: skipped, the earlier complete box stands.
        assert_eq!(last_boxed("\\boxed{1} and \\boxed{2"), Some("1"));
        assert_eq!(last_boxed("\\boxed{"), None);
        assert_eq!(last_boxed("\\boxed"), None);
        assert_eq!(last_boxed("\\boxedx{3}"), None);
        assert_eq!(last_boxed("no box"), None);
        assert_eq!(last_boxed("\\boxed{é∧😀}"), Some("é∧😀"));
    }

    #[test]
    fn the_answer_block_box_is_preferred() {
        let response = "try \\boxed{1}</think><answer>\\boxed{2}</answer> \\boxed{3}";
        assert_eq!(final_box(response), Some("2"));
        let response = "try \\boxed{1}</think><answer>2</answer> \\boxed{3}";
        assert_eq!(final_box(response), Some("3"));
        assert_eq!(final_box("<answer>\\boxed{4}"), Some("4"));
    }

    #[test]
    fn the_corpus_pairs_compare_as_documented() {
        for (left, right) in MATH_EQUIVALENT {
            assert!(equivalent(left, right), "{left:?} {right:?}");
        }
        for (left, right) in MATH_DIFFERENT {
            assert!(
                !math_equivalent(left, right) && !math_equivalent(right, left),
                "{left:?} {right:?}"
            );
        }
        assert!(canonical("1/0").number.is_none());
        assert!(canonical("\\frac{1}{2}").number.is_some());
        assert!(canonical("\\frac{1}{\\sqrt{2}}").number.is_none());
    }

    #[test]
    fn integer_forms_are_read_as_documented() {
        for truth in [0, 7, -12, 1_234, -999_999, 1_000_000] {
            let forms = integer_forms(truth);
            assert!(forms.iter().filter(|(_, same)| *same).count() >= 25);
            assert!(forms.iter().filter(|(_, same)| !*same).count() >= 10);
            for (form, same) in forms {
                assert_eq!(
                    math_equivalent(&form, &truth.to_string()),
                    same,
                    "{form:?} vs {truth}"
                );
            }
        }
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let big = "9".repeat(60);
        assert!(equivalent(&big, &big));
        assert!(!equivalent(&big, &"9".repeat(59)));
        assert!(equivalent(
            "0.1234567890123456789012345",
            "0.1234567890123456789012345"
        ));
        assert!(!equivalent(&format!("\\frac{{{big}}}{{{big}}}"), "1"));
    }

    #[test]
    fn grading_a_response() {
        use AnswerStatus::{Correct, Unparseable, Wrong};
        assert_eq!(
            grade_boxed("</think><answer>\\boxed{\\frac12}</answer>", "0.5"),
            Correct
        );
        assert_eq!(
            grade_boxed("so \\boxed{0.5}", "\\boxed{\\frac{1}{2}}"),
            Correct
        );
        assert_eq!(grade_boxed("so \\boxed{0.6}", "\\frac{1}{2}"), Wrong);
        assert_eq!(grade_boxed("the answer is 0.5", "0.5"), Unparseable);
        assert_eq!(grade_boxed("\\boxed{}", "0.5"), Unparseable);
        assert_eq!(grade_boxed("\\boxed{ $ $ }", "0.5"), Unparseable);
    }

    #[test]
    fn unboxed_strips_a_whole_box_only() {
        assert_eq!(unboxed("\\boxed{42}"), "42");
        assert_eq!(unboxed(" \\boxed{\\frac{1}{2}} "), "\\frac{1}{2}");
        assert_eq!(unboxed("\\fbox{x}"), "x");
        assert_eq!(unboxed("42"), "42");
        assert_eq!(unboxed("2\\boxed{3}"), "2\\boxed{3}");
        assert_eq!(unboxed("\\boxed{1}+\\boxed{2}"), "\\boxed{1}+\\boxed{2}");
        assert_eq!(unboxed("\\boxed 7"), "7");
        assert_eq!(unboxed("\\boxedx\\boxed{3}"), "\\boxedx\\boxed{3}");
        assert_eq!(unboxed("\\boxed{3} cm"), "\\boxed{3} cm");
    }

    #[test]
    fn helpers_are_linear_on_adversarial_input() {
        let opens = "\\boxed{".repeat(50_000);
        assert_eq!(last_boxed(&opens), None);
        let nested = format!("{}1{}", "\\boxed{".repeat(20_000), "}".repeat(20_000));
        assert!(last_boxed(&nested).is_some());
        assert!(math_equivalent(&nested, "1"));
        let fracs = "\\frac".repeat(50_000);
        assert!(!math_equivalent(&fracs, "1"));
        let rights = "\\right".repeat(50_000) + "\\rightarrow";
        assert!(math_equivalent(&rights, "\\rightarrow"));
    }
}
