//! A deterministic corpus of responses for testing reward implementations: random strings
//! of fragments (tags, answer words, LaTeX, digits, odd Unicode) and mutations of perfect
//! responses. The fuzz test of [`super::score`] and the agreement test of the exported
//! Python reward (tests/verl.rs) draw from it, as from [`mode_cases`], the hand-written
//! cases of the README's table of differences between the reward modes, and from the boxed
//! math cases: [`MATH_EQUIVALENT`] and [`MATH_DIFFERENT`] (which `math.rs`'s tests check),
//! [`integer_forms`] and [`decorated_forms`] of a ground truth and the [`box_response`]s
//! around them.

use crate::AnswerKind::{self, Assignment, Integer, Reachability};

/// SplitMix64: a tiny deterministic generator, so the fuzz corpus is the same on every run.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform below `n` (with SplitMix's negligible modulo bias).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Pieces responses are made of: the tags, end-of-turn tokens, answer words, LaTeX, digits
/// and the odd Unicode character.
pub const FRAGMENTS: &[&str] = &[
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<|im_end|>",
    "<|endoftext|>",
    "<",
    ">",
    "/",
    "\\boxed{",
    "\\boxed ",
    "\\boxed",
    "\\fbox{",
    "{",
    "}",
    "\\{",
    "\\}",
    "\\",
    "\\frac",
    "\\dfrac{",
    "\\frac12",
    "\\sqrt",
    "\\text{",
    "\\mbox{ cm}",
    "\\left(",
    "\\right)",
    "\\rightarrow",
    "\\!",
    "\\,",
    "$",
    "\\$",
    "%",
    "\\%",
    "^\\circ",
    "^{\\circ}",
    "=",
    "x =",
    "(1) ",
    "(2) ",
    "(3) ",
    "(",
    ")",
    "A",
    "B",
    "C",
    "X",
    "Y",
    "Z",
    " is ",
    "is",
    "True",
    "false",
    "TRUE",
    "reachable",
    "unreachable",
    "\n",
    "\r\n",
    " ",
    "\t",
    "-",
    "+",
    "--",
    ".",
    ",",
    "1,000",
    "0",
    "1",
    "7",
    "10",
    "42",
    "0.5",
    ".5",
    "1/2",
    "/0",
    "999999999999999999999999999999999999999999",
    "é",
    "∧",
    "→",
    "😀",
    "\u{200b}",
    "\u{2212}",
    "\u{b0}",
    "٣",
    "Ⅻ",
    "\u{feff}",
    "\u{0}",
    "ß",
];

/// `pieces` fragments, random bytes (lossily decoded) or random characters, concatenated.
pub fn fragment_string(rng: &mut SplitMix, pieces: usize) -> String {
    let mut text = String::new();
    for _ in 0..pieces {
        match rng.below(10) {
            0 => {
                let bytes: Vec<u8> = (0..rng.below(6) + 1)
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
            1 => text.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}')),
            _ => text.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]),
        }
    }
    text
}

/// Inserts, deletes or replaces a few pieces at char boundaries.
pub fn mutate(rng: &mut SplitMix, text: &str) -> String {
    let mut text = text.to_string();
    for _ in 0..rng.below(3) + 1 {
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(index, _)| index)
            .chain([text.len()])
            .collect();
        let at = boundaries[rng.below(boundaries.len())];
        let mut after = boundaries.iter().copied().filter(|&boundary| boundary > at);
        match rng.below(3) {
            0 => text.insert_str(at, &fragment_string(rng, 1)),
            1 => {
                let end = after.nth(rng.below(12)).unwrap_or(text.len());
                text.replace_range(at..end, "");
            }
            _ => {
                let end = after.next().unwrap_or(text.len());
                text.replace_range(at..end, &fragment_string(rng, 1));
            }
        }
    }
    text
}

/// A deduction ground truth of the mode cases.
const TRUTH: &str = "(1) A is True\n(2) B is False\n(3) C is True";
/// An abduction ground truth of the mode cases.
const GOALS: &str = "(1) X is reachable\n(2) Y7 is unreachable\n(3) Z is unreachable";

/// A case of the README's table of differences between the reward modes (or one where they
/// agree, `row` "same"): a response and its total under each mode.
pub struct ModeCase {
    /// The README row it illustrates, or "same".
    pub row: &'static str,
    /// How it is graded.
    pub kind: AnswerKind,
    /// The ground truth.
    pub truth: &'static str,
    /// The response.
    pub response: &'static str,
    /// Its total under the strict rules.
    pub strict: f64,
    /// Its total under the paper's rules.
    pub paper: f64,
}

/// Every case, each row of the README's table at least once.
pub fn mode_cases() -> Vec<ModeCase> {
    let row = |row, kind, truth, response, strict, paper| ModeCase {
        row,
        kind,
        truth,
        response,
        strict,
        paper,
    };
    vec![
        // Agreement: a perfect response, a wrong one, a broken format.
        row("same", Assignment, TRUTH, "ok</think>\n<answer>\n(1) A is True\n(2) B is False\n(3) C is True\n</answer>", 3.0, 3.0),
        row("same", Assignment, TRUTH, "ok</think>\n<answer>\n(1) A is True\n(2) B is True\n(3) C is True\n</answer>", -0.5, -0.5),
        row("same", Integer, "10", "ok</think><answer>10</answer><|im_end|>", 3.0, 3.0),
        row("same", Integer, "10", "<think>again</think><answer>10</answer>", -3.0, -3.0),
        row("same", Integer, "10", "ok</think><answer>10</answer><answer>10</answer>", -3.0, -3.0),
        row("same", Integer, "10", "ok</think><answer>ten</answer>", -1.0, -1.0),
        row("same", Integer, "10", "ok</think><answer> </answer>", -1.0, -1.0),
        // Text after `</answer>`.
        row("text after </answer>", Integer, "10", "ok</think>\n<answer>10</answer>\nHope this helps!", -3.0, 3.0),
        row("text after </answer>", Reachability, GOALS, "ok</think><answer>X is reachable\nY7 is unreachable\nZ is unreachable</answer> Done.", -3.0, 3.0),
        // Text between `</think>` and `<answer>`.
        row("text between </think> and <answer>", Integer, "10", "ok</think>\nSo the answer is:\n<answer>10</answer>", -3.0, 3.0),
        row("text between </think> and <answer>", Assignment, TRUTH, "ok</think>Final: <answer>A is True\nB is False\nC is True</answer>", -3.0, 3.0),
        // `1.` numbering.
        row("1. numbering", Assignment, TRUTH, "ok</think><answer>\n1. A is True\n2. B is False\n3. C is True\n</answer>", -1.0, 3.0),
        row("1. numbering", Reachability, GOALS, "ok</think><answer>\n1. X is reachable\n2. Y7 is unreachable\n3. Z is unreachable\n</answer>", -1.0, 3.0),
        // Prose lines inside the answer.
        row("prose lines", Assignment, TRUTH, "ok</think><answer>\nHere are the values:\n(1) A is True\n(2) B is False\n(3) C is True\nThat is all.\n</answer>", -1.0, 3.0),
        row("prose lines", Assignment, TRUTH, "ok</think><answer>A is True, B is False and C is True</answer>", -1.0, 3.0),
        // Trailing periods.
        row("trailing periods", Assignment, TRUTH, "ok</think><answer>\n(1) A is True.\n(2) B is False.\n(3) C is True.\n</answer>", -1.0, 3.0),
        row("trailing periods", Reachability, GOALS, "ok</think><answer>\n(1) X is reachable.\n(2) Y7 is unreachable.\n(3) Z is unreachable.\n</answer>", -1.0, 3.0),
        // Abduction goals out of order.
        row("goals out of order", Reachability, GOALS, "ok</think><answer>\n(1) Z is unreachable\n(2) X is reachable\n(3) Y7 is unreachable\n</answer>", -1.0, 3.0),
        row("goals out of order", Reachability, GOALS, "ok</think><answer>\n(1) Z is unreachable\n(2) X is unreachable\n(3) Y7 is unreachable\n</answer>", -1.0, -0.5),
        // Names in another case.
        row("names in another case", Assignment, TRUTH, "ok</think><answer>\na is true\nb is false\nc is true\n</answer>", -1.0, 3.0),
        // A value mentioned once too often (a restated line) cannot be read by either.
        row("same", Assignment, TRUTH, "ok</think><answer>\n(1) A is True\n(2) B is False\n(3) C is True\nso A is True\n</answer>", -1.0, -1.0),
        // `Assistant:` inside the thinking: the released code grades only what follows
        // it, which lacks the prompt's `<think>`.
        row("Assistant: in the response", Integer, "10", "Let me recall how the Assistant: replies.</think><answer>10</answer>", 3.0, -3.0),
        row("Assistant: in the response", Assignment, TRUTH, "User asked, Assistant: thinks.</think>\n<answer>\n(1) A is True\n(2) B is False\n(3) C is True\n</answer>", 3.0, -3.0),
        // ... and takes a `<think>` after it as the thought's opening.
        row("Assistant: in the response", Integer, "10", "Assistant: <think>fine</think><answer>10</answer>", -3.0, 3.0),
        // Digits with `_` or in other scripts: Python's int() reads them.
        row("digits as 5_9", Integer, "59", "ok</think><answer>5_9</answer>", -1.0, 3.0),
        row("digits as 5_9", Integer, "60", "ok</think><answer>5_9</answer>", -1.0, -0.5),
        row("digits as 5_9", Integer, "59", "ok</think><answer>5__9</answer>", -1.0, -1.0),
        row("digits in other scripts", Integer, "59", "ok</think><answer>٥٩</answer>", -1.0, 3.0),
        row("digits in other scripts", Integer, "10", "ok</think><answer>１０</answer>", -1.0, 3.0),
        row("digits in other scripts", Integer, "-7", "ok</think><answer>-७</answer>", -1.0, 3.0),
    ]
}

/// Pairs of math answers (box contents) that `math.rs` reads as the same, each way round:
/// every form it documents. Its unit tests and the Python reward's agreement test use them.
pub const MATH_EQUIVALENT: &[(&str, &str)] = &[
    // Exact rationals.
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("0.5", "1/2"),
    (".5", "0.50"),
    ("\\frac12", "0.5"),
    ("\\dfrac{3}{4}", "0.75"),
    ("\\tfrac{3}{4}", "3/4"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"),
    ("\\frac{6}{8}", "\\frac{3}{4}"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}"),
    ("\\frac{1}{-2}", "-0.5"),
    ("1,000", "1000"),
    ("1{,}000", "1000"),
    ("1,234,567.5", "1234567.5"),
    ("-3", "- 3"),
    ("+3", "3"),
    ("3.0", "3"),
    ("007", "7"),
    ("\u{2212}4", "-4"),
    ("\\text{5}", "5.0"),
    ("0.1234567890123456789012345", "0.1234567890123456789012345"),
    // Decoration.
    ("$42$", "42"),
    ("\\$42", "42"),
    ("5\\text{ cm}", "5"),
    ("5 \\mbox{ meters}", "5"),
    ("5\\text{ cm}^2", "5"),
    ("30^\\circ", "30"),
    ("30^{\\circ}", "30"),
    ("30\u{b0}", "30"),
    ("50\\%", "50"),
    ("50%", "50"),
    ("x = 5", "5"),
    ("5.", "5"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("1\\,000", "1000"),
    ("\\!\\!12", "12"),
    ("\\displaystyle 12", "12"),
    ("\\text{(A)}", "(A)"),
    ("\\textbf{Yes}", "\\text{Yes}"),
    ("\\boxed{5}", "5"),
    // Normalized strings.
    ("\\frac{1}{\\sqrt{2}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\dfrac{1}{\\sqrt{2}}", "\\frac{1}{\\sqrt2}"),
    ("\\frac1{\\sqrt 2}", "\\frac{1}{\\sqrt{2}}"),
    ("2\\sqrt{3}", "2 \\sqrt 3"),
    ("\\pi", " \\pi "),
    ("(1, 2)", "(1,2)"),
    ("1,2", "1, 2"),
    ("\\rightarrow", "\\right\\rightarrow"),
    // At the edges of 128-bit fractions: i128::MAX, 10^-38, i128::MIN as a quotient.
    (
        "0170141183460469231731687303715884105727",
        "170141183460469231731687303715884105727",
    ),
    (
        "0.00000000000000000000000000000000000001",
        "1/100000000000000000000000000000000000000",
    ),
    (
        "\\frac{-21267647932558653966460912964485513216}{0.125}",
        "\\frac{-21267647932558653966460912964485513216}{0.1250}",
    ),
];

/// Pairs of math answers that `math.rs` reads as different, each way round.
pub const MATH_DIFFERENT: &[(&str, &str)] = &[
    ("0.3333", "\\frac{1}{3}"),
    ("2", "3"),
    ("-3", "3"),
    ("--3", "3"),
    ("1/0", "0"),
    ("\\rightarrow", "arrow"),
    ("50\\%", "0.5"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("x^2", "x^3"),
    ("", ""),
    ("$ $", ""),
    ("ans = 5", "5"),
    ("(5)", "5"),
    ("5 + 0", "5"),
    (
        "999999999999999999999999999999999999999999",
        "99999999999999999999999999999999999999999",
    ),
    (
        "\\frac{999999999999999999999999999999999999999999}{999999999999999999999999999999999999999999}",
        "1",
    ),
    // Past the edges: no longer numbers, so compared as strings.
    (
        "0170141183460469231731687303715884105728",
        "170141183460469231731687303715884105728",
    ),
    (
        "0.000000000000000000000000000000000000001",
        "0.0000000000000000000000000000000000000010",
    ),
    (
        "\\frac{-21267647932558653966460912964485513216}{0.125}",
        "-170141183460469231731687303715884105728",
    ),
    (
        "-\\frac{-21267647932558653966460912964485513216}{0.125}",
        "-\\frac{-21267647932558653966460912964485513216}{0.1250}",
    ),
];

/// Box contents that write `truth` (an integer ground truth, such as arithmetic's), each
/// with whether `math.rs` reads it as the same number: every form it documents, then near
/// misses.
pub fn integer_forms(truth: i64) -> Vec<(String, bool)> {
    let n = truth;
    let magnitude = n.unsigned_abs();
    let sign = if n < 0 { "-" } else { "" };
    let mut same = vec![
        format!("{n}"),
        format!(" {n} "),
        format!("{n}.0"),
        format!("{n}.000"),
        format!("{sign}0{magnitude}"),
        format!("\\frac{{{}}}{{2}}", 2 * n),
        format!("\\dfrac{{{n}}}{{1}}"),
        format!("\\tfrac{{{}}}{{-3}}", -3 * n),
        format!("{}/4", 4 * n),
        format!("$ {n} $"),
        format!("\\${n}"),
        format!("x = {n}"),
        format!("{n}."),
        format!("{n}\\text{{ apples}}"),
        format!("{n} \\mbox{{ cm}}^2"),
        format!("{n}^\\circ"),
        format!("{n}^{{\\circ}}"),
        format!("{n}\u{b0}"),
        format!("{n}\\%"),
        format!("\\text{{{n}}}"),
        format!("\\mathrm{{{n}}}"),
        format!("\\displaystyle {n}"),
        format!("\\!{n}\\,"),
        format!("\\boxed{{{n}}}"),
        format!("{sign} {magnitude}"),
    ];
    if n >= 0 {
        same.push(format!("+{n}"));
    } else {
        same.push(format!("\u{2212}{magnitude}"));
    }
    let mut different = vec![
        format!("{}", n + 1),
        format!("{}", -n - 1),
        format!("{n}.5"),
        format!("\\frac{{{}}}{{2}}", 2 * n + 1),
        format!("{n}/0"),
        format!("\\left({n}\\right)"),
        format!("{n} + 0"),
        format!("ans = {n}"),
        format!("{n}e0"),
        format!("--{n}"),
        format!("{n}, {n}"),
        String::new(),
        "$ $".to_string(),
    ];
    if magnitude >= 1_000 {
        // Groups of three digits from the right.
        let digits = magnitude.to_string();
        let head = digits.len() % 3;
        let mut groups: Vec<&str> = if head > 0 {
            vec![&digits[..head]]
        } else {
            vec![]
        };
        groups.extend(
            (head..digits.len())
                .step_by(3)
                .map(|at| &digits[at..at + 3]),
        );
        for separator in [",", "{,}", "\\,", "\\!"] {
            same.push(format!("{sign}{}", groups.join(separator)));
        }
        // Not thousands groups.
        different.push(format!("{sign}{}0", groups.join(",")));
    }
    let same = same.into_iter().map(|form| (form, true));
    same.chain(different.into_iter().map(|form| (form, false)))
        .collect()
}

/// Box contents that write any math ground truth `truth` with decoration added (dollars,
/// spaces, a box, `\displaystyle`, a period, a text wrapper, a unit, degrees, percent, an
/// `x =`) or changed (negated, plus one, parenthesized); whether `math.rs` reads each as
/// the same depends on `truth`.
pub fn decorated_forms(truth: &str) -> Vec<String> {
    [
        "$@$",
        " @ ",
        "\\boxed{@}",
        "\\displaystyle @",
        "@.",
        "\\text{@}",
        "@\\text{ cm}",
        "@^\\circ",
        "@\\%",
        "x = @",
        "\\left(@\\right)",
        "-@",
        "@+1",
        "\\dfrac{@}{1}",
    ]
    .iter()
    .map(|template| template.replace('@', truth))
    .collect()
}

/// Responses around the box contents `content`, one per `variant` (0 to
/// [`BOX_RESPONSE_VARIANTS`] - 1): in the answer block, inside `$..$` with an end-of-turn
/// token, in sloppy prose with no tags, after an earlier wrong box, as `\fbox`, after a box
/// outside the block, as `\boxed ..` without braces, and with no box at all.
pub fn box_response(content: &str, variant: usize) -> String {
    match variant % BOX_RESPONSE_VARIANTS {
        0 => format!("Adding up.</think>\n<answer>\\boxed{{{content}}}</answer>"),
        1 => format!("ok</think><answer>The answer is $\\boxed{{{content}}}$.</answer><|im_end|>"),
        2 => format!("So the answer is \\boxed{{{content}}}. Hope this helps!"),
        3 => format!("first \\boxed{{0}}, then \\boxed{{{content}}}"),
        4 => format!("ok</think>\n<answer>\\fbox{{{content}}}</answer>"),
        5 => format!("ok \\boxed{{{content}}}</think>\n<answer>\\boxed{{1}}</answer>"),
        6 => format!("ok</think>\n<answer>$\\boxed {content}$</answer>"),
        _ => format!("ok</think>\n<answer>{content}</answer>"),
    }
}

/// How many variants [`box_response`] has.
pub const BOX_RESPONSE_VARIANTS: usize = 8;
