//! The tag format every response must follow, and where its answer block lies.
//!
//! The prompt ends with `<think>`, so a well-formed response is
//! `thought </think> ws <answer> answer </answer> ws [end-of-turn tokens and ws]`:
//! no `<think>` of its own, exactly one of each other tag, in that order, only whitespace
//! between `</think>` and `<answer>`, and after `</answer>` only whitespace and the
//! end-of-turn tokens `<|im_end|>` / `<|endoftext|>`. Tags are matched byte for byte
//! (case-sensitive, no inner spaces). Nothing here looks inside the thought or the answer.

use std::ops::Range;

/// The tag that opens the thought; the prompt already ends with it.
pub const THINK_OPEN: &str = "<think>";
/// The tag that closes the thought.
pub const THINK_CLOSE: &str = "</think>";
/// The tag that opens the answer.
pub const ANSWER_OPEN: &str = "<answer>";
/// The tag that closes the answer.
pub const ANSWER_CLOSE: &str = "</answer>";
/// End-of-turn tokens tolerated after `</answer>` (Qwen ChatML's), along with whitespace.
pub const END_OF_TURN: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

/// The first way a response breaks the tag format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatViolation {
    /// The response opens a second thought (the prompt's `<think>` is the only one allowed).
    ThinkInResponse,
    /// A required tag is absent.
    Missing(&'static str),
    /// A tag appears more than once.
    Duplicate(&'static str),
    /// The tags are not in the order `</think>`, `<answer>`, `</answer>`.
    OutOfOrder,
    /// Something other than whitespace lies between `</think>` and `<answer>`.
    TextBetween,
    /// Something other than whitespace and end-of-turn tokens follows `</answer>`.
    TextAfter,
}

impl FormatViolation {
    /// A stable short name for reports.
    pub fn reason(&self) -> &'static str {
        match self {
            FormatViolation::ThinkInResponse => "think_in_response",
            FormatViolation::Missing(_) => "missing_tag",
            FormatViolation::Duplicate(_) => "duplicate_tag",
            FormatViolation::OutOfOrder => "out_of_order",
            FormatViolation::TextBetween => "text_between",
            FormatViolation::TextAfter => "text_after",
        }
    }
}

/// Checks the tag format of `response` (the text after the prompt's `<think>`) and returns
/// the answer text (between `<answer>` and `</answer>`, untrimmed) when it holds.
pub fn check_format(response: &str) -> Result<&str, FormatViolation> {
    if response.contains(THINK_OPEN) {
        return Err(FormatViolation::ThinkInResponse);
    }
    let think_close = only(response, THINK_CLOSE)?;
    let answer_open = only(response, ANSWER_OPEN)?;
    let answer_close = only(response, ANSWER_CLOSE)?;
    // Distinct tags cannot overlap (each starts with `<` and holds no other `<`), so
    // comparing starts orders them.
    if !(think_close < answer_open && answer_open < answer_close) {
        return Err(FormatViolation::OutOfOrder);
    }
    let between = &response[think_close + THINK_CLOSE.len()..answer_open];
    if !between.trim().is_empty() {
        return Err(FormatViolation::TextBetween);
    }
    if !only_end_of_turn(&response[answer_close + ANSWER_CLOSE.len()..]) {
        return Err(FormatViolation::TextAfter);
    }
    Ok(&response[answer_open + ANSWER_OPEN.len()..answer_close])
}

/// The byte range of the last answer block's text: from the last `<answer>` to the first
/// `</answer>` after it, or to the end of the text when it is never closed. `None` without
/// any `<answer>`. Used where the format is not required (boxed math).
pub fn last_answer_span(text: &str) -> Option<Range<usize>> {
    let start = text.rfind(ANSWER_OPEN)? + ANSWER_OPEN.len();
    let end = text[start..]
        .find(ANSWER_CLOSE)
        .map_or(text.len(), |offset| start + offset);
    Some(start..end)
}

/// The start of the single occurrence of `tag`.
fn only(text: &str, tag: &'static str) -> Result<usize, FormatViolation> {
    let mut found = text.match_indices(tag).map(|(index, _)| index);
    let first = found.next().ok_or(FormatViolation::Missing(tag))?;
    match found.next() {
        Some(_) => Err(FormatViolation::Duplicate(tag)),
        None => Ok(first),
    }
}

/// Whether `tail` is only whitespace and end-of-turn tokens, in any order and number.
fn only_end_of_turn(tail: &str) -> bool {
    let mut rest = tail;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return true;
        }
        match END_OF_TURN
            .iter()
            .find_map(|token| rest.strip_prefix(token))
        {
            Some(after) => rest = after,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_response_yields_its_answer_text() {
        assert_eq!(
            check_format("I think.</think>\n<answer>\n42\n</answer>"),
            Ok("\n42\n")
        );
        assert_eq!(check_format("</think><answer>x</answer>"), Ok("x"));
        // An empty thought and an empty answer are still well formed; the answer parser
        // decides what an empty answer is worth.
        assert_eq!(check_format("</think><answer></answer>"), Ok(""));
    }

    #[test]
    fn missing_tags_fail() {
        use FormatViolation::Missing;
        assert_eq!(check_format("no tags at all"), Err(Missing(THINK_CLOSE)));
        assert_eq!(
            check_format("thought <answer>1</answer>"),
            Err(Missing(THINK_CLOSE))
        );
        assert_eq!(
            check_format("thought</think> 1</answer>"),
            Err(Missing(ANSWER_OPEN))
        );
        assert_eq!(
            check_format("thought</think><answer>1"),
            Err(Missing(ANSWER_CLOSE))
        );
        assert_eq!(check_format(""), Err(Missing(THINK_CLOSE)));
    }

    #[test]
    fn duplicate_tags_fail() {
        use FormatViolation::Duplicate;
        assert_eq!(
            check_format("a</think>b</think><answer>1</answer>"),
            Err(Duplicate(THINK_CLOSE))
        );
        assert_eq!(
            check_format("a</think><answer>1</answer><answer>2</answer>"),
            Err(Duplicate(ANSWER_OPEN))
        );
        assert_eq!(
            check_format("a</think><answer>1</answer></answer>"),
            Err(Duplicate(ANSWER_CLOSE))
        );
    }

    #[test]
    fn a_second_think_fails() {
        assert_eq!(
            check_format("<think>again</think><answer>1</answer>"),
            Err(FormatViolation::ThinkInResponse)
        );
        assert_eq!(
            check_format("a</think><answer>1</answer><think>"),
            Err(FormatViolation::ThinkInResponse)
        );
    }

    #[test]
    fn misordered_tags_fail() {
        assert_eq!(
            check_format("a<answer>1</answer></think>"),
            Err(FormatViolation::OutOfOrder)
        );
        assert_eq!(
            check_format("a<answer>1</think></answer>"),
            Err(FormatViolation::OutOfOrder)
        );
        assert_eq!(
            check_format("a</think></answer>1<answer>"),
            Err(FormatViolation::OutOfOrder)
        );
    }

    #[test]
    fn text_between_think_and_answer_fails() {
        assert_eq!(
            check_format("a</think>So:<answer>1</answer>"),
            Err(FormatViolation::TextBetween)
        );
        assert_eq!(check_format("a</think> \n\t <answer>1</answer>"), Ok("1"));
    }

    #[test]
    fn only_whitespace_and_end_of_turn_tokens_may_follow_the_answer() {
        let ok = [
            "a</think><answer>1</answer>",
            "a</think><answer>1</answer>\n",
            "a</think><answer>1</answer>  \n\t ",
            "a</think><answer>1</answer><|im_end|>",
            "a</think><answer>1</answer>\n<|im_end|>\n",
            "a</think><answer>1</answer><|im_end|><|endoftext|>",
            "a</think><answer>1</answer> <|endoftext|> <|endoftext|>\n",
        ];
        for response in ok {
            assert_eq!(check_format(response), Ok("1"), "{response:?}");
        }
        let extra = [
            "a</think><answer>1</answer>.",
            "a</think><answer>1</answer>\nHope this helps!",
            "a</think><answer>1</answer><|im_end|>more",
            "a</think><answer>1</answer><|im_end",
            "a</think><answer>1</answer><|IM_END|>",
            "a</think><answer>1</answer><|im_start|>",
        ];
        for response in extra {
            assert_eq!(
                check_format(response),
                Err(FormatViolation::TextAfter),
                "{response:?}"
            );
        }
    }

    #[test]
    fn tags_are_matched_exactly() {
        assert_eq!(
            check_format("a</THINK><answer>1</answer>"),
            Err(FormatViolation::Missing(THINK_CLOSE))
        );
        assert_eq!(
            check_format("a</think><answer >1</answer>"),
            Err(FormatViolation::Missing(ANSWER_OPEN))
        );
    }

    #[test]
    fn the_last_answer_span_is_found_even_unclosed() {
        let text = "x<answer>first</answer> y <answer>second</answer> z";
        assert_eq!(
            last_answer_span(text).map(|span| &text[span]),
            Some("second")
        );
        let text = "x<answer>open to the end";
        assert_eq!(
            last_answer_span(text).map(|span| &text[span]),
            Some("open to the end")
        );
        assert_eq!(last_answer_span("no block"), None);
        let text = "é<answer>ü</answer>";
        assert_eq!(last_answer_span(text).map(|span| &text[span]), Some("ü"));
    }
}
