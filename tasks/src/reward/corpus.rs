//! A deterministic corpus of responses for testing reward implementations: random strings
//! of fragments (tags, answer words, LaTeX, digits, odd Unicode) and mutations of perfect
//! responses. The fuzz test of [`super::score`] and the agreement test of the exported
//! Python reward (tests/verl.rs) draw from it.

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
