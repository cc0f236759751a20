//! Drawing formulas from the paper's distribution, and evaluating them on samples of
//! assignments, one bit each.
//!
//! A candidate is a [`Draft`]: its random choices in the order drawn, top-down and left to
//! right, so that a `¬` node's missing right subtree costs nothing. The choices are decoded
//! from the random stream in bulk ([`Draws`]) and read by an evaluator unrolled for each
//! depth (one function with no call inside, the reading positions in registers), which
//! computes the formula's values on a [`Sample`] of 64 assignments in one word, or on a
//! [`WideSample`] of 512 in eight. That is fast enough to screen a few hundred candidates
//! per instance. Only the chosen ever become a [`Formula`].

use super::formula::{Formula, Node, Op, MAX_DEPTH, MAX_LITERALS, MAX_VARIABLES, OPS};
use super::tables::Kernel;
use crate::TaskRng;

/// The kind of connective node drawn: the five of [`OPS`], by index, then `¬`.
const NOT: u8 = 5;

/// A connective node's choice is a 5-bit field: 0..5 make it `¬(sub)` (probability 1/5 of
/// the 25 kept), 5..25 pick each connective of [`OPS`] 4 times, 25..32 are drawn again.
const KIND_OF_FIELD: [u8; 64] = {
    let mut kinds = [0; 64];
    let mut field = 0;
    while field < 32 {
        kinds[field] = if field < 5 { NOT } else { (field % 5) as u8 };
        field += 1;
    }
    kinds
};
/// Connective fields below this are kept.
const KIND_FIELDS: u64 = 25;

/// A literal as drawn: its variable, plus [`NEGATED`] if negated.
const NEGATED: u8 = 128;

/// Choices decoded but not yet used, per kind, at most.
const BUFFER: usize = 128;
/// Choices one formula may use at most, per kind: one per literal of a full tree (and
/// one more than its connective nodes).
const WINDOW: usize = MAX_LITERALS;

/// The random choices of formula drawing, all from one [`TaskRng`], by rejection on bit
/// fields, which is exact: a connective node takes a 5-bit field, kept below 25 (see
/// [`KIND_OF_FIELD`]); a literal over `n` variables takes a 5-bit field if `5n` fits in
/// one, else a 6-bit field, kept below `5n`: its quotient by 5 picks the variable
/// uniformly, its remainder, independent, negates with probability 2/5. The distribution
/// is exactly the paper's. Each 64-bit draw is split into fields at once, without a
/// branch, into a buffer of each kind that formulas then read in order.
pub(super) struct Draws<'a> {
    rng: &'a mut TaskRng,
    /// Per field value, the literal it stands for (from `5n` on, unused).
    literal_of_field: [u8; 64],
    literal_fields: u64,
    kinds: Buffer,
    literals: Buffer,
}

/// Decoded choices of one kind: `items[read..len]` are not used yet.
struct Buffer {
    items: [u8; BUFFER],
    read: usize,
    len: usize,
}

impl Buffer {
    fn new() -> Self {
        Buffer {
            items: [0; BUFFER],
            read: 0,
            len: 0,
        }
    }

    /// The next [`WINDOW`] choices, decoding more with `refill` (which must leave more than
    /// `BUFFER - 64`) if fewer are left.
    #[inline(always)]
    fn window(&mut self, refill: impl FnOnce(&mut Buffer)) -> [u8; WINDOW] {
        if self.len - self.read < WINDOW {
            self.items.copy_within(self.read..self.len, 0);
            self.len -= self.read;
            self.read = 0;
            refill(self);
        }
        let mut window = [0; WINDOW];
        window.copy_from_slice(&self.items[self.read..self.read + WINDOW]);
        window
    }

    /// Appends the fields of `value`, `BITS` each, that are below `limit`, mapped by
    /// `table` (at most 12 items, so at most `BUFFER - 64` must be in the buffer).
    #[inline(always)]
    fn push_fields<const BITS: u32>(&mut self, value: u64, limit: u64, table: &[u8; 64]) {
        let mut len = self.len;
        for field in 0..64 / BITS {
            let field = (value >> (field * BITS)) & ((1 << BITS) - 1);
            // Written unconditionally, kept only when below the limit: no branch.
            self.items[len % BUFFER] = table[field as usize % 64];
            len += usize::from(field < limit);
        }
        self.len = len;
    }
}

impl<'a> Draws<'a> {
    /// Choices for formulas over `variables` variables (1 to [`MAX_VARIABLES`]).
    pub(super) fn new(rng: &'a mut TaskRng, variables: usize) -> Self {
        let variables = variables.clamp(1, MAX_VARIABLES);
        let mut literal_of_field = [0; 64];
        for (field, literal) in literal_of_field.iter_mut().enumerate() {
            let negated = if field % 5 < 2 { NEGATED } else { 0 };
            *literal = (field / 5 % variables) as u8 | negated;
        }
        Draws {
            rng,
            literal_of_field,
            literal_fields: 5 * variables as u64,
            kinds: Buffer::new(),
            literals: Buffer::new(),
        }
    }

    /// Uniform in `0..n` (straight from the underlying stream).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// Uniform in `low..=high`.
    pub(super) fn range(&mut self, low: i64, high: i64) -> i64 {
        self.rng.range(low, high)
    }

    /// The next choices of each kind, as many as a formula may use.
    #[inline(always)]
    fn windows(&mut self) -> ([u8; WINDOW], [u8; WINDOW]) {
        let rng = &mut *self.rng;
        let kinds = self.kinds.window(|buffer| {
            while buffer.len <= BUFFER - 64 {
                buffer.push_fields::<5>(rng.next_u64(), KIND_FIELDS, &KIND_OF_FIELD);
            }
        });
        let (table, limit) = (&self.literal_of_field, self.literal_fields);
        let literals = self.literals.window(|buffer| {
            while buffer.len <= BUFFER - 64 {
                if limit <= 32 {
                    buffer.push_fields::<5>(rng.next_u64(), limit, table);
                } else {
                    buffer.push_fields::<6>(rng.next_u64(), limit, table);
                }
            }
        });
        (kinds, literals)
    }

    /// Marks the choices a formula used as used.
    fn consume(&mut self, kinds: usize, literals: usize) {
        self.kinds.read += kinds;
        self.literals.read += literals;
    }
}

/// Up to 64 assignments, one bit each, on which formulas are evaluated in one word.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    /// Per variable, the sampled assignments where it is true (16, so that a 4-bit index
    /// needs no check).
    columns: [u64; 16],
}

impl Sample {
    /// The sample of `assignments` (at most 64; more are ignored), bit `i` for the `i`-th.
    pub(super) fn from_members(assignments: &[u16]) -> Self {
        let assignments = &assignments[..assignments.len().min(64)];
        let mut columns = [0; 16];
        // Eight at a time: their low and high bytes as 8x8 bit matrices, transposed so that
        // byte `v` holds variable `v` (or `8 + v`) of the eight.
        for (group, chunk) in assignments.chunks(8).enumerate() {
            let (mut low, mut high) = (0u64, 0u64);
            for (index, &assignment) in chunk.iter().enumerate() {
                low |= u64::from(assignment & 0xFF) << (8 * index);
                high |= u64::from(assignment >> 8) << (8 * index);
            }
            let (low, high) = (transpose_bytes(low), transpose_bytes(high));
            for variable in 0..8 {
                columns[variable] |= (low >> (8 * variable) & 0xFF) << (8 * group);
                columns[8 + variable] |= (high >> (8 * variable) & 0xFF) << (8 * group);
            }
        }
        Sample { columns }
    }
}

/// Transposes the 8x8 bit matrix whose row `i` is byte `i` (Hacker's Delight, 7-3).
fn transpose_bytes(x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    let x = x ^ t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    let x = x ^ t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Words of a [`WideSample`].
pub(super) const WIDE: usize = 8;

/// Values on up to `64 * WIDE` sampled assignments, word by word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wide(pub [u64; WIDE]);

impl Wide {
    /// `self & !other`.
    pub(super) fn and_not(self, other: Wide) -> Wide {
        self.and(other.not())
    }
}

/// Up to `64 * WIDE` assignments on which formulas are evaluated [`WIDE`] words at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct WideSample {
    columns: [Wide; 16],
    kernel: Kernel,
}

impl WideSample {
    /// The sample of `assignments` (at most `64 * WIDE`; more are ignored), bit `i % 64`
    /// of word `i / 64` for the `i`-th.
    pub(super) fn from_members(assignments: &[u16]) -> Self {
        let assignments = &assignments[..assignments.len().min(64 * WIDE)];
        let mut columns = [Wide([0; WIDE]); 16];
        for (word, chunk) in assignments.chunks(64).enumerate() {
            let sample = Sample::from_members(chunk);
            for (column, bits) in columns.iter_mut().zip(sample.columns) {
                column.0[word] = bits;
            }
        }
        WideSample {
            columns,
            kernel: Kernel::detect(),
        }
    }

    /// The same, evaluated with `kernel`.
    #[cfg(test)]
    pub(super) fn with_kernel(self, kernel: Kernel) -> Self {
        WideSample { kernel, ..self }
    }

    /// Its first 64 assignments.
    pub(super) fn first_word(&self) -> Sample {
        Sample {
            columns: self.columns.map(|column| column.0[0]),
        }
    }
}

/// A candidate as drawn: its choices in the order drawn, enough to evaluate it quickly
/// and to build its [`Formula`] when it is wanted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Draft {
    depth: u32,
    /// Connective nodes' kinds in pre-order (an index into [`OPS`], or [`NOT`]); only the
    /// formula's first ones count.
    kinds: [u8; WINDOW],
    /// Literals left to right (the variable, plus [`NEGATED`]); likewise.
    literals: [u8; WINDOW],
}

impl Draft {
    pub(super) fn new() -> Self {
        Draft {
            depth: 1,
            kinds: [0; WINDOW],
            literals: [0; WINDOW],
        }
    }

    /// Draws a formula of depth `max_depth` (1 to [`MAX_DEPTH`]) top-down, as the paper's
    /// generator does: at the maximum depth a literal, negated with probability 2/5; above
    /// it `¬(sub)` with probability 1/5, else `(left op right)` with `op` uniform over
    /// [`OPS`]. Returns the formula's values on `sample`.
    pub(super) fn draw(&mut self, draws: &mut Draws, sample: &Sample, max_depth: u32) -> u64 {
        self.depth = max_depth.clamp(1, MAX_DEPTH);
        (self.kinds, self.literals) = draws.windows();
        let (values, kinds, literals) = evaluate_narrow(self, &sample.columns);
        draws.consume(kinds, literals);
        values
    }

    /// Its values on `sample`.
    pub(super) fn values(&self, sample: &Sample) -> u64 {
        evaluate_narrow(self, &sample.columns).0
    }

    /// Its values on `sample`.
    pub(super) fn wide_values(&self, sample: &WideSample) -> Wide {
        match sample.kernel {
            Kernel::Portable => evaluate_wide(self, &sample.columns),
            // SAFETY: `Kernel::detect` chose these only where the processor has the
            // features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { evaluate_wide_avx2(self, &sample.columns) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { evaluate_wide_avx512(self, &sample.columns) },
        }
    }

    /// Its depth, and its choices to read in order.
    pub(super) fn choices(&self) -> (u32, Choices<'_>) {
        let choices = Choices {
            draft: self,
            kind: 0,
            literal: 0,
        };
        (self.depth, choices)
    }

    /// The formula drawn.
    pub(super) fn formula(&self) -> Formula {
        fn build(formula: &mut Formula, choices: &mut Choices, depth: u32) -> u8 {
            let node = if depth == 0 {
                let (variable, negated) = choices.literal();
                Node::Leaf { variable, negated }
            } else {
                let connective = choices.connective();
                let left = build(formula, choices, depth - 1);
                match connective {
                    Some(op) => Node::Binary(op, left, build(formula, choices, depth - 1)),
                    None => Node::Not(left),
                }
            };
            formula.push(node)
        }
        let mut formula = Formula::empty();
        let (depth, mut choices) = self.choices();
        build(&mut formula, &mut choices, depth);
        formula
    }
}

/// A draft's choices, read in the order drawn: each connective node (pre-order) before its
/// operands, literals left to right.
pub(super) struct Choices<'a> {
    draft: &'a Draft,
    kind: usize,
    literal: usize,
}

impl Choices<'_> {
    /// The next connective node: its connective, or `None` for `¬`.
    pub(super) fn connective(&mut self) -> Option<Op> {
        let kind = self.draft.kinds[self.kind % WINDOW];
        self.kind += 1;
        OPS.get(usize::from(kind)).copied()
    }

    /// The next literal: its variable and whether it is negated.
    pub(super) fn literal(&mut self) -> (u8, bool) {
        let literal = self.draft.literals[self.literal % WINDOW];
        self.literal += 1;
        (literal % NEGATED, literal >= NEGATED)
    }
}

/// Values on sampled assignments, one bit each: one word, or [`Wide`].
trait Lanes: Copy {
    fn splat(mask: u64) -> Self;
    fn xor(self, other: Self) -> Self;
    fn and(self, other: Self) -> Self;
    fn not(self) -> Self;
}

impl Lanes for u64 {
    #[inline(always)]
    fn splat(mask: u64) -> Self {
        mask
    }
    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        self ^ other
    }
    #[inline(always)]
    fn and(self, other: Self) -> Self {
        self & other
    }
    #[inline(always)]
    fn not(self) -> Self {
        !self
    }
}

impl Lanes for Wide {
    #[inline(always)]
    fn splat(mask: u64) -> Self {
        Wide([mask; WIDE])
    }
    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        Wide(std::array::from_fn(|word| self.0[word] ^ other.0[word]))
    }
    #[inline(always)]
    fn and(self, other: Self) -> Self {
        Wide(std::array::from_fn(|word| self.0[word] & other.0[word]))
    }
    #[inline(always)]
    fn not(self) -> Self {
        Wide(self.0.map(|word| !word))
    }
}

const ON: u64 = u64::MAX;

/// Each binary connective as the masks `[d, a, b, c]` of its algebraic normal form,
/// `f(l, r) = d ^ (a & l) ^ (b & r) ^ (c & l & r)`, by index into [`OPS`]: one formula for
/// all, so evaluating a node needs no branch on its connective.
const NORMAL_FORMS: [[u64; 4]; 8] = [
    [ON, ON, 0, ON], // l → r = 1 ^ l ^ lr
    [0, 0, 0, ON],   // l ∧ r = lr
    [0, ON, ON, ON], // l ∨ r = l ^ r ^ lr
    [ON, ON, ON, 0], // l ↔ r = 1 ^ l ^ r
    [0, ON, ON, 0],  // l ⊕ r = l ^ r
    [0; 4],
    [0; 4],
    [0; 4],
];

/// Reads a draft's choices in order while evaluating it on a sample's columns.
struct Reader<'a, V> {
    kinds: &'a [u8; WINDOW],
    literals: &'a [u8; WINDOW],
    columns: &'a [V; 16],
    kind: usize,
    literal: usize,
}

impl<V: Lanes> Reader<'_, V> {
    #[inline(always)]
    fn leaf(&mut self) -> V {
        let literal = self.literals[self.literal % WINDOW];
        self.literal += 1;
        let flip = 0u64.wrapping_sub(u64::from(literal / NEGATED));
        self.columns[usize::from(literal % NEGATED) % 16].xor(V::splat(flip))
    }

    #[inline(always)]
    fn kind(&mut self) -> u8 {
        let kind = self.kinds[self.kind % WINDOW];
        self.kind += 1;
        kind
    }
}

/// `Reader` functions for depths 1 to 5, each inlining the one below, so that a whole
/// formula is evaluated without a call. The only branch is at `¬` nodes, which have no
/// right operand to read.
macro_rules! depth_readers {
    ($($name:ident => $child:ident),*) => {
        impl<V: Lanes> Reader<'_, V> {
            $(
                #[inline(always)]
                fn $name(&mut self) -> V {
                    let kind = self.kind();
                    let left = self.$child();
                    if kind == NOT {
                        return left.not();
                    }
                    let right = self.$child();
                    let [d, a, b, c] = NORMAL_FORMS[usize::from(kind) % NORMAL_FORMS.len()];
                    V::splat(d)
                        .xor(V::splat(a).and(left))
                        .xor(V::splat(b).and(right))
                        .xor(V::splat(c).and(left).and(right))
                }
            )*
        }
    };
}

depth_readers!(depth1 => leaf, depth2 => depth1, depth3 => depth2, depth4 => depth3, depth5 => depth4);

/// Evaluates the formula of depth `depth` (1 to [`MAX_DEPTH`]) that `kinds` and `literals`
/// begin with on `columns`; returns its values and how many choices of each kind it used.
#[inline(always)]
fn evaluate_choices<V: Lanes>(
    kinds: &[u8; WINDOW],
    literals: &[u8; WINDOW],
    columns: &[V; 16],
    depth: u32,
) -> (V, usize, usize) {
    let mut reader = Reader {
        kinds,
        literals,
        columns,
        kind: 0,
        literal: 0,
    };
    let values = match depth {
        0 | 1 => reader.depth1(),
        2 => reader.depth2(),
        3 => reader.depth3(),
        4 => reader.depth4(),
        _ => reader.depth5(),
    };
    (values, reader.kind, reader.literal)
}

#[inline(never)]
fn evaluate_narrow(draft: &Draft, columns: &[u64; 16]) -> (u64, usize, usize) {
    evaluate_choices(&draft.kinds, &draft.literals, columns, draft.depth)
}

#[inline(always)]
fn evaluate_wide(draft: &Draft, columns: &[Wide; 16]) -> Wide {
    evaluate_choices(&draft.kinds, &draft.literals, columns, draft.depth).0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn evaluate_wide_avx2(draft: &Draft, columns: &[Wide; 16]) -> Wide {
    evaluate_wide(draft, columns)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn evaluate_wide_avx512(draft: &Draft, columns: &[Wide; 16]) -> Wide {
    evaluate_wide(draft, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of `assignments`, built bit by bit.
    fn plain_columns(assignments: &[u16]) -> [u64; 16] {
        let mut columns = [0; 16];
        for (bit, &assignment) in assignments.iter().enumerate() {
            for (variable, column) in columns.iter_mut().enumerate() {
                *column |= u64::from(assignment >> variable & 1) << bit;
            }
        }
        columns
    }

    #[test]
    fn samples_hold_their_members_bit_by_bit() {
        let members: Vec<u16> = (0..512)
            .map(|i| ((i * 2_654_435_761u64) % 4096) as u16)
            .collect();
        for len in [0, 1, 7, 8, 9, 33, 64] {
            let sample = Sample::from_members(&members[..len]);
            assert_eq!(sample.columns, plain_columns(&members[..len]), "{len}");
        }
        for len in [0, 1, 64, 65, 300, 512] {
            let wide = WideSample::from_members(&members[..len]);
            for (word, chunk) in members[..len].chunks(64).enumerate() {
                let columns = plain_columns(chunk);
                for (variable, column) in columns.iter().enumerate() {
                    assert_eq!(wide.columns[variable].0[word], *column, "{len} {word}");
                }
            }
            let first = &members[..len.min(64)];
            assert_eq!(wide.first_word().columns, plain_columns(first));
        }
    }

    #[test]
    fn samples_agree_with_the_formula_drawn() {
        let mut rng = TaskRng::from_seed(3);
        for (variables, depth) in [(4, 1), (6, 2), (8, 3), (10, 4), (12, 5)] {
            let mut draws = Draws::new(&mut rng, variables);
            let members: Vec<u16> = (0..512)
                .map(|i| ((i * 37 + 5) % (1 << variables)) as u16)
                .collect();
            let sample = Sample::from_members(&members[..64]);
            let wide = WideSample::from_members(&members);
            let mut draft = Draft::new();
            for _ in 0..300 {
                let values = draft.draw(&mut draws, &sample, depth);
                assert_eq!(draft.values(&sample), values);
                let formula = draft.formula();
                assert_eq!(formula.shape().depth, depth);
                let wide_values = draft.wide_values(&wide);
                for (index, &x) in members.iter().enumerate() {
                    let expected = formula.value_at(u32::from(x));
                    assert_eq!(wide_values.0[index / 64] >> (index % 64) & 1 == 1, expected);
                    if index < 64 {
                        assert_eq!(values >> index & 1 == 1, expected);
                    }
                }
            }
        }
    }

    #[test]
    fn draws_follow_the_papers_frequencies() {
        // 1/5 of connective nodes are `¬(sub)`, the rest split evenly over the 5
        // connectives; 2/5 of literals are negated; variables are uniform. For each
        // variable count, as the literal fields differ.
        let mut rng = TaskRng::from_seed(11);
        for (variables, depth) in [(4, 1), (6, 2), (8, 2), (10, 3), (12, 3)] {
            let mut draws = Draws::new(&mut rng, variables);
            let sample = Sample::from_members(&[]);
            let mut draft = Draft::new();
            let (mut nodes, mut nots, mut ops, mut negated, mut leaves) = (0, 0, [0u32; 5], 0, 0);
            let mut counts = vec![0u32; variables];
            for _ in 0..40_000 {
                draft.draw(&mut draws, &sample, depth);
                let formula = draft.formula();
                let shape = formula.shape();
                nots += shape.nots;
                for (count, op) in ops.iter_mut().zip(shape.ops) {
                    *count += op;
                }
                nodes += shape.nots + shape.ops.iter().sum::<u32>();
                negated += shape.negated_literals;
                leaves += shape.leaves;
                for node in formula.nodes() {
                    if let Node::Leaf { variable, .. } = node {
                        counts[usize::from(*variable)] += 1;
                    }
                }
            }
            let near =
                |count: u32, expected: f64| (f64::from(count) - expected).abs() < expected * 0.05;
            let nodes = f64::from(nodes);
            assert!(near(nots, nodes / 5.0), "{variables}: {nots} of {nodes}");
            for count in ops {
                assert!(near(count, nodes * 4.0 / 25.0), "{variables}: {ops:?}");
            }
            let leaves = f64::from(leaves);
            assert!(
                near(negated, leaves * 0.4),
                "{variables}: {negated} of {leaves}"
            );
            for &count in &counts {
                assert!(
                    near(count, leaves / variables as f64),
                    "{variables}: {counts:?}"
                );
            }
        }
    }
}
