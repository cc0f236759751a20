//! The induction generator: draws a rule and a sequence by level, then keeps it only if
//! the rule is inferable from the visible terms.
//!
//! The inferability check works on analytic candidate sets (which of the level's
//! operations map `x` to `y`, read off the difference and ratio), deliberately unlike the
//! verifier's brute-force search over the alphabet, so the two can disagree when one of
//! them is wrong.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    level_spec, render_puzzle, LevelSpec, Op, BROAD_ADD_MAX, BROAD_FACTOR_MAX, FACTOR_MAX,
    FACTOR_MIN, MAX_ABS, MAX_CYCLE,
};
use crate::{Instance, Options, TaskRng};

/// The hidden rule of a draft.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// `x[i + 1] = ops[i % len](x[i])` from the first term on.
    Cycle(Vec<Op>),
    /// A free first term, then two values alternating: `x[i] = x[i - 2]` for `i >= 3`.
    Period2,
}

/// A candidate instance: the whole sequence, the masked last term included.
#[derive(Debug, Clone)]
struct Draft {
    family: &'static str,
    rule: Rule,
    values: Vec<i64>,
}

impl Draft {
    /// The rule's length in steps (2 for period-2 patterns).
    fn cycle(&self) -> usize {
        match &self.rule {
            Rule::Cycle(ops) => ops.len(),
            Rule::Period2 => 2,
        }
    }

    /// The steps shown in `params["ops"]`: the cycle, or the two alternating steps that
    /// follow the first term of a period-2 pattern.
    fn ops(&self) -> Vec<Op> {
        match &self.rule {
            Rule::Cycle(ops) => ops.clone(),
            Rule::Period2 => vec![
                Op::Add(self.values[2] - self.values[1]),
                Op::Add(self.values[1] - self.values[2]),
            ],
        }
    }
}

/// Generates one instance of `level` (clamped to 1..=5), redrawing until the guarantees
/// hold.
pub(super) fn generate(level: u32, rng: &mut TaskRng, options: &Options) -> Instance {
    let level = level.clamp(1, 5);
    let spec = level_spec(level).expect("levels 1..=5 have a spec");
    let draft = loop {
        if let Some(draft) = draw(level, rng) {
            if inferable(&draft, spec) {
                break draft;
            }
        }
    };
    let count = draft.values.len();
    let answer = draft.values[count - 1];
    let mut params = BTreeMap::new();
    params.insert("length".to_string(), json!(count));
    params.insert("family".to_string(), json!(draft.family));
    params.insert("cycle".to_string(), json!(draft.cycle()));
    let ops: Vec<Value> = draft
        .ops()
        .iter()
        .map(|op| Value::String(op.to_string()))
        .collect();
    params.insert("ops".to_string(), Value::Array(ops));
    let max_abs = draft.values.iter().map(|v| v.unsigned_abs()).max();
    params.insert("max_abs".to_string(), json!(max_abs.unwrap_or(0)));
    Instance {
        task: "induction".to_string(),
        level,
        puzzle: render_puzzle(&draft.values[..count - 1]),
        answer: answer.to_string(),
        params,
        solution: options.with_solution.then(|| solution(&draft)),
    }
}

/// Draws a rule and a sequence for `level`, or `None` when the draw breaks a value bound
/// or an exact division (the caller redraws).
fn draw(level: u32, rng: &mut TaskRng) -> Option<Draft> {
    match level {
        1 => {
            let length = rng.range(5, 8) as usize;
            match rng.below(3) {
                0 => {
                    let op = additive(rng, 10);
                    cycle_draft("arithmetic", vec![op], rng.range(-10, 30), length)
                }
                1 => {
                    let sign = if rng.chance(1, 4) { -1 } else { 1 };
                    let start = sign * rng.range(1, 5);
                    let op = Op::Mul(rng.range(FACTOR_MIN, FACTOR_MAX));
                    cycle_draft("geometric", vec![op], start, length)
                }
                _ => {
                    let ops = vec![additive(rng, 10), additive(rng, 10)];
                    cycle_draft("alternation", ops, rng.range(-10, 30), length)
                }
            }
        }
        2 => {
            let length = rng.range(6, 9) as usize;
            match rng.below(4) {
                0 => {
                    let ops = vec![additive(rng, 10), additive(rng, 10)];
                    cycle_draft("alternation", ops, rng.range(-10, 30), length)
                }
                1 => {
                    let mut ops = vec![
                        Op::Mul(rng.range(FACTOR_MIN, FACTOR_MAX)),
                        additive(rng, 10),
                    ];
                    rng.shuffle(&mut ops);
                    cycle_draft("alternation", ops, rng.range(1, 10), length)
                }
                2 => {
                    // ×c and ÷d alternate; the start is a multiple of d to the number of
                    // divisions, so every division is exact.
                    let factor = rng.range(FACTOR_MIN, FACTOR_MAX);
                    let divisor = rng.range(FACTOR_MIN, FACTOR_MAX);
                    // With equal constants it would be a period-2 pattern.
                    if factor == divisor {
                        return None;
                    }
                    let mut ops = vec![Op::Mul(factor), Op::Div(divisor)];
                    rng.shuffle(&mut ops);
                    let divisions = (0..length - 1)
                        .filter(|step| ops[step % 2] == Op::Div(divisor))
                        .count();
                    let start = rng.range(1, 5) * divisor.checked_pow(divisions as u32)?;
                    cycle_draft("alternation", ops, start, length)
                }
                _ => {
                    let first = rng.range(-10, 30);
                    let pair = [rng.range(-10, 30), rng.range(-10, 30)];
                    // With `first == pair[1]` it would be a plain alternation.
                    if pair[0] == pair[1] || first == pair[1] {
                        return None;
                    }
                    let mut values = vec![first];
                    values.extend((0..length - 1).map(|i| pair[i % 2]));
                    Some(Draft {
                        family: "period2",
                        rule: Rule::Period2,
                        values,
                    })
                }
            }
        }
        _ => {
            let steps = level as usize;
            let length = rng.range(7, 11) as usize;
            let ops = (0..steps)
                .map(|_| match rng.below(3) {
                    0 => Op::Add(rng.range(1, 4)),
                    1 => Op::Add(-rng.range(1, 4)),
                    _ => Op::Mul(rng.range(FACTOR_MIN, FACTOR_MAX)),
                })
                .collect();
            let family = ["cycle3", "cycle4", "cycle5"][steps - 3];
            cycle_draft(family, ops, rng.range(1, 5), length)
        }
    }
}

/// `+a` or `−a` with `a` in `1..=max`.
fn additive(rng: &mut TaskRng, max: i64) -> Op {
    let magnitude = rng.range(1, max);
    Op::Add(if rng.chance(1, 2) {
        magnitude
    } else {
        -magnitude
    })
}

/// Runs the cycle `ops` from `start` for `length` terms; `None` when a step is undefined
/// or a value leaves `±MAX_ABS`.
fn cycle_draft(family: &'static str, ops: Vec<Op>, start: i64, length: usize) -> Option<Draft> {
    let mut values = Vec::with_capacity(length);
    values.push(start);
    for step in 0..length - 1 {
        let next = ops[step % ops.len()].apply(values[step])?;
        if next.unsigned_abs() > MAX_ABS as u64 {
            return None;
        }
        values.push(next);
    }
    Some(Draft {
        family,
        rule: Rule::Cycle(ops),
        values,
    })
}

/// Candidate sets are bit masks over the broader alphabet (which holds every level's): bit
/// `a + 10` for `Add(a)` (`a` in `-10..=10`), bits 21..=24 for `×2..5`, bits 25..=28 for
/// `÷2..5`. A step never seen keeps the all-ones mask.
const ADD_OFFSET: i64 = BROAD_ADD_MAX;
const MUL_BASE: u32 = 21;
const DIV_BASE: u32 = MUL_BASE + (BROAD_FACTOR_MAX - FACTOR_MIN + 1) as u32;
const UNSEEN: u32 = u32::MAX;

fn bit(op: Op) -> u32 {
    match op {
        Op::Add(constant) => 1 << (constant + ADD_OFFSET) as u32,
        Op::Mul(constant) => 1 << (MUL_BASE + (constant - FACTOR_MIN) as u32),
        Op::Div(constant) => 1 << (DIV_BASE + (constant - FACTOR_MIN) as u32),
    }
}

fn op_of_bit(index: u32) -> Op {
    if index < MUL_BASE {
        Op::Add(i64::from(index) - ADD_OFFSET)
    } else if index < DIV_BASE {
        Op::Mul(i64::from(index - MUL_BASE) + FACTOR_MIN)
    } else {
        Op::Div(i64::from(index - DIV_BASE) + FACTOR_MIN)
    }
}

/// The operations of an alphabet (`±1..=add_max`, `×`/`÷` by `2..=factor_max`) that turn
/// `x` into `y`.
fn candidates(x: i64, y: i64, add_max: i64, factor_max: i64) -> u32 {
    let mut mask = 0;
    let difference = y - x;
    if difference != 0 && difference.abs() <= add_max {
        mask |= bit(Op::Add(difference));
    }
    let factors = FACTOR_MIN..=factor_max;
    if x == 0 && y == 0 {
        for factor in factors {
            mask |= bit(Op::Mul(factor)) | bit(Op::Div(factor));
        }
        return mask;
    }
    if x != 0 && y % x == 0 && factors.contains(&(y / x)) {
        mask |= bit(Op::Mul(y / x));
    }
    if y != 0 && x % y == 0 && factors.contains(&(x / y)) {
        mask |= bit(Op::Div(x / y));
    }
    mask
}

/// For a cycle of `length` steps over the visible terms: the candidate set of each step
/// ([`UNSEEN`] where a step was never seen), or `None` when some step has no candidate.
fn fit_cycle(
    visible: &[i64],
    length: usize,
    add_max: i64,
    factor_max: i64,
) -> Option<[u32; MAX_CYCLE]> {
    let mut masks = [UNSEEN; MAX_CYCLE];
    for (step, pair) in visible.windows(2).enumerate() {
        masks[step % length] &= candidates(pair[0], pair[1], add_max, factor_max);
    }
    masks[..length]
        .iter()
        .all(|&mask| mask != 0)
        .then_some(masks)
}

/// Whether the terms after the first repeat with period 2.
fn period2_fits(visible: &[i64]) -> bool {
    (3..visible.len()).all(|i| visible[i] == visible[i - 2])
}

/// The guarantee: the masked term's step was applied among the visible terms, no shorter
/// rule fits them, every rule of the same length predicts the answer, and each step of a
/// cycle is the only candidate where it was seen.
fn inferable(draft: &Draft, spec: LevelSpec) -> bool {
    let count = draft.values.len();
    let (visible, answer) = (&draft.values[..count - 1], draft.values[count - 1]);
    let last = visible[visible.len() - 1];
    let length = draft.cycle();
    // Transitions are numbered from 0; the masked term is made by transition `count - 2`.
    let masked = count - 2;
    let observed = match draft.rule {
        // Transition `masked - length` applied the same step.
        Rule::Cycle(_) => masked >= length,
        // `x[i] == x[i - 2]` must have been seen at the masked term's parity.
        Rule::Period2 => count >= 6,
    };
    if !observed {
        return false;
    }
    for shorter in 1..length {
        if fit_cycle(visible, shorter, spec.add_max, FACTOR_MAX).is_some()
            || (shorter == 2 && period2_fits(visible))
        {
            return false;
        }
    }
    if let Some(masks) = fit_cycle(visible, length, spec.add_max, FACTOR_MAX) {
        if let Rule::Cycle(ops) = &draft.rule {
            if ops.iter().zip(masks).any(|(&op, mask)| mask != bit(op)) {
                return false;
            }
        }
        let mut rivals = masks[masked % length];
        while rivals != 0 {
            let index = rivals.trailing_zeros();
            rivals &= rivals - 1;
            if op_of_bit(index).apply(last) != Some(answer) {
                return false;
            }
        }
    } else if matches!(draft.rule, Rule::Cycle(_)) {
        // The true rule always fits unless a constant left the alphabet.
        return false;
    }
    if length == 2 && period2_fits(visible) && visible[visible.len() - 2] != answer {
        return false;
    }
    broad_unambiguous(visible, answer)
}

/// Whether the terms repeat with period `period` after `free` free terms, seen at every
/// phase (at least `2 * period + free` terms).
fn value_periodic(visible: &[i64], period: usize, free: usize) -> bool {
    visible.len() >= 2 * period + free
        && visible[free..]
            .iter()
            .zip(&visible[free + period..])
            .all(|(a, b)| a == b)
}

/// The guarantee under the broader rule space (`±1..=10`, `×`/`÷` by `2..=5`, value periods
/// 1-5): at the shortest length where any such rule fits, every one predicts `answer`.
fn broad_unambiguous(visible: &[i64], answer: i64) -> bool {
    let last = visible[visible.len() - 1];
    // The masked term is made by transition `visible.len() - 1`.
    let masked = visible.len() - 1;
    for length in 1..=MAX_CYCLE {
        let masks = fit_cycle(visible, length, BROAD_ADD_MAX, BROAD_FACTOR_MAX);
        let periodic: Vec<usize> = (0..=1)
            .filter(|&free| value_periodic(visible, length, free))
            .collect();
        if masks.is_none() && periodic.is_empty() {
            continue;
        }
        if let Some(masks) = masks {
            let mut rivals = masks[masked % length];
            if rivals == UNSEEN {
                return false;
            }
            while rivals != 0 {
                let index = rivals.trailing_zeros();
                rivals &= rivals - 1;
                if op_of_bit(index).apply(last) != Some(answer) {
                    return false;
                }
            }
        }
        return periodic.is_empty() || visible[visible.len() - length] == answer;
    }
    false
}

/// The worked solution: the observed steps, the rule, and its application.
fn solution(draft: &Draft) -> String {
    use std::fmt::Write;

    let count = draft.values.len();
    let (visible, answer) = (&draft.values[..count - 1], draft.values[count - 1]);
    let last = visible[visible.len() - 1];
    let mut text = String::from("Look at how each term leads to the next:\n");
    match &draft.rule {
        Rule::Cycle(ops) => {
            for (step, pair) in visible.windows(2).enumerate() {
                let op = ops[step % ops.len()];
                let _ = writeln!(text, "{} → {}: {op}", pair[0], pair[1]);
            }
            let listed: Vec<String> = ops.iter().map(Op::to_string).collect();
            let masked = count - 2;
            let position = masked % ops.len();
            let seen = (0..masked)
                .filter(|step| step % ops.len() == position)
                .count();
            if ops.len() == 1 {
                let _ = writeln!(text, "Every step is {}.", listed[0]);
            } else {
                let _ = writeln!(
                    text,
                    "The steps repeat in a cycle of {}: {}.",
                    ops.len(),
                    listed.join(", ")
                );
            }
            let op = ops[position];
            let _ = write!(
                text,
                "The missing term comes from step {} of the cycle ({op}), seen {seen} time{} above.\n{} = {answer}, so the missing term is {answer}.",
                position + 1,
                if seen == 1 { "" } else { "s" },
                op.spell(last),
            );
        }
        Rule::Period2 => {
            for pair in visible.windows(2) {
                let _ = writeln!(
                    text,
                    "{} → {}: {}",
                    pair[0],
                    pair[1],
                    Op::Add(pair[1] - pair[0])
                );
            }
            let _ = writeln!(
                text,
                "After the first term {}, the terms alternate between {} and {}: each term equals the one two places before it.",
                visible[0], visible[1], visible[2]
            );
            let _ = write!(
                text,
                "The missing term repeats the term two places before it, so the missing term is {answer}."
            );
        }
    }
    text
}
