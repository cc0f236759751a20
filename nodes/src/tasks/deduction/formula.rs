//! The generator's formulas: drawn from the paper's distribution, evaluated bit-parallel,
//! rendered to text.
//!
//! Candidates are drawn as a [`Draft`]: every choice of a full-shape tree, evaluated on a
//! [`Sample`] of at most 64 assignments (one bit each, one `u64` per node) bottom-up without
//! a branch, which is fast enough to screen hundreds of candidates per instance. A draft
//! that passes becomes a [`Formula`], a fixed-size post-order arena (nothing allocates),
//! which is evaluated into full truth tables over all 2^n assignments (64 words at level 5,
//! one pass of word operations per connective) and rendered.
//!
//! Nothing here reads text back: verification parses the rendered puzzle with its own parser
//! and evaluator (`solver`), so a bug here cannot hide itself.

use crate::tasks::TaskRng;

/// The most variables of any level.
pub(super) const MAX_VARIABLES: usize = 12;
/// Words of a truth table over [`MAX_VARIABLES`] variables.
pub(super) const MAX_WORDS: usize = 1 << (MAX_VARIABLES - 6);
/// The deepest formula of any level.
pub(super) const MAX_DEPTH: u32 = 5;
/// Nodes of a full binary formula of [`MAX_DEPTH`].
const MAX_NODES: usize = (1 << (MAX_DEPTH + 1)) - 1;
/// Connectives of a full binary formula of [`MAX_DEPTH`].
const MAX_CONNECTIVES: usize = (1 << MAX_DEPTH) - 1;
/// Literals of a full binary formula of [`MAX_DEPTH`].
const MAX_LITERALS: usize = 1 << MAX_DEPTH;

/// A truth table: bit `x` of the words is the formula's value under assignment `x`, where
/// variable `i` is true in `x` when bit `i` of `x` is set.
pub(super) type Table = [u64; MAX_WORDS];

/// A binary connective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Implies,
    And,
    Or,
    Iff,
    Xor,
}

/// The connectives in the paper's order (`→ ∧ ∨ ↔ ⊕`), drawn uniformly.
pub(super) const OPS: [Op; 5] = [Op::Implies, Op::And, Op::Or, Op::Iff, Op::Xor];

impl Op {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Op::Implies => "→",
            Op::And => "∧",
            Op::Or => "∨",
            Op::Iff => "↔",
            Op::Xor => "⊕",
        }
    }

    /// `out = (left ^ left_flip) op (right ^ right_flip)` word by word, where `left` is
    /// `out` itself when `None`. One loop per connective, so each vectorizes.
    fn combine(self, out: &mut [u64], left: Option<&[u64]>, flips: (u64, u64), right: &[u64]) {
        match self {
            Op::Implies => combine_with(out, left, flips, right, |a, b| !a | b),
            Op::And => combine_with(out, left, flips, right, |a, b| a & b),
            Op::Or => combine_with(out, left, flips, right, |a, b| a | b),
            Op::Iff => combine_with(out, left, flips, right, |a, b| !(a ^ b)),
            Op::Xor => combine_with(out, left, flips, right, |a, b| a ^ b),
        }
    }
}

#[inline(always)]
fn combine_with(
    out: &mut [u64],
    left: Option<&[u64]>,
    (left_flip, right_flip): (u64, u64),
    right: &[u64],
    word: impl Fn(u64, u64) -> u64,
) {
    match left {
        Some(left) => {
            for ((o, l), r) in out.iter_mut().zip(left).zip(right) {
                *o = word(l ^ left_flip, r ^ right_flip);
            }
        }
        None => {
            for (o, r) in out.iter_mut().zip(right) {
                *o = word(*o ^ left_flip, r ^ right_flip);
            }
        }
    }
}

/// A node of a formula; children are indices into the same arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// A variable, possibly negated (`A`, `¬A`): depth 0.
    Leaf { variable: u8, negated: bool },
    /// `¬(sub)`.
    Not(u8),
    /// `(left op right)`.
    Binary(Op, u8, u8),
}

/// Counts of a formula's parts, for the instance's parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Shape {
    pub depth: u32,
    pub leaves: u32,
    pub negated_literals: u32,
    /// `¬(...)` nodes (negated literals aside).
    pub nots: u32,
    /// Per connective, in [`OPS`] order.
    pub ops: [u32; 5],
}

/// lcm(1..=12): every variable count divides it.
const LEAF_SPAN: u64 = 27_720;

/// Several independent uniform choices from one draw: the base-`BASE` digits of a number
/// drawn uniformly below `BASE^PER_DRAW` are independent and uniform. They are split all at
/// once, each by its own constant divisor, so that no chain of divisions runs through the
/// drawing loop.
#[derive(Clone, Copy)]
struct Digits<const BASE: u64, const PER_DRAW: usize> {
    digits: [u64; PER_DRAW],
    left: usize,
}

impl<const BASE: u64, const PER_DRAW: usize> Digits<BASE, PER_DRAW> {
    fn new() -> Self {
        Digits {
            digits: [0; PER_DRAW],
            left: 0,
        }
    }

    #[inline(always)]
    fn next(&mut self, rng: &mut TaskRng) -> u64 {
        if self.left == 0 {
            let value = rng.below(BASE.pow(PER_DRAW as u32));
            let mut power = 1;
            for digit in &mut self.digits {
                *digit = value / power % BASE;
                power *= BASE;
            }
            self.left = PER_DRAW;
        }
        self.left -= 1;
        self.digits[self.left]
    }
}

/// The random choices of formula drawing, all from one [`TaskRng`].
///
/// A node above the maximum depth takes a digit below 25: 5 of the 25 outcomes make it
/// `¬(sub)` (probability 1/5), the other 20 pick each connective 4 times. A literal takes a
/// digit below `5 * LEAF_SPAN`: its quotient by 5 is uniform below `LEAF_SPAN`, which every
/// variable count divides, so it picks the variable uniformly; its remainder, independent,
/// negates with probability 2/5. Thirteen connective digits or three literal digits share
/// one draw. The distribution is exactly the paper's.
pub(super) struct Draws<'a> {
    rng: &'a mut TaskRng,
    connectives: Digits<25, 13>,
    literals: Digits<{ 5 * LEAF_SPAN }, 3>,
}

impl<'a> Draws<'a> {
    pub(super) fn new(rng: &'a mut TaskRng) -> Self {
        Draws {
            rng,
            connectives: Digits::new(),
            literals: Digits::new(),
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
}

/// At most 64 assignments, one bit each, on which formulas are evaluated in one word.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    variables: usize,
    /// Per variable, the sampled assignments where it is true.
    columns: [u64; MAX_VARIABLES],
    len: u32,
}

impl Sample {
    pub(super) fn new(variables: usize) -> Self {
        Sample {
            variables: variables.min(MAX_VARIABLES),
            columns: [0; MAX_VARIABLES],
            len: 0,
        }
    }

    /// How many assignments it holds.
    pub(super) fn len(&self) -> u32 {
        self.len
    }

    /// Adds `assignment` as the next bit; returns the bit, or `None` when full.
    #[inline(always)]
    pub(super) fn push(&mut self, assignment: u32) -> Option<u32> {
        if self.len == 64 {
            return None;
        }
        let bit = self.len;
        // All twelve, unrolled: bits of absent variables are zero.
        for (variable, column) in self.columns.iter_mut().enumerate() {
            *column |= u64::from((assignment >> variable) & 1) << bit;
        }
        self.len += 1;
        Some(bit)
    }
}

/// The kinds of connective node in a [`Draft`]: the five of [`OPS`], by index, then `¬`.
const NOT: u8 = 5;

/// Each kind of connective node as the masks `[d, a, b, c]` of its algebraic normal form,
/// `f(l, r) = d ^ (a & l) ^ (b & r) ^ (c & l & r)` (negation ignores `r`): one formula for
/// all kinds, so evaluating a drawn node needs no branch.
const NORMAL_FORMS: [[u64; 4]; 6] = [
    [ON, ON, 0, ON], // l → r = 1 ^ l ^ lr
    [0, 0, 0, ON],   // l ∧ r = lr
    [0, ON, ON, ON], // l ∨ r = l ^ r ^ lr
    [ON, ON, ON, 0], // l ↔ r = 1 ^ l ^ r
    [0, ON, ON, 0],  // l ⊕ r = l ^ r
    [ON, ON, 0, 0],  // ¬l = 1 ^ l
];

const ON: u64 = u64::MAX;

/// A candidate as drawn: the choices of every node of a full binary tree of the maximum
/// depth, in heap order (the children of node `i` are `2i + 1` and `2i + 2`). A `¬` node
/// uses only its left subtree; the right one is drawn and ignored, so the formula that
/// results has exactly the paper's distribution while every draft costs the same fixed,
/// branch-free work.
#[derive(Debug, Clone, Copy)]
pub(super) struct Draft {
    height: usize,
    /// Per connective node, its kind: an index into [`OPS`], or [`NOT`].
    kinds: [u8; MAX_CONNECTIVES],
    /// Per literal, its variable and whether it is negated.
    literals: [(u8, bool); MAX_LITERALS],
}

impl Draft {
    pub(super) fn new() -> Self {
        Draft {
            height: 0,
            kinds: [0; MAX_CONNECTIVES],
            literals: [(0, false); MAX_LITERALS],
        }
    }

    /// Draws every choice afresh for formulas of depth `max_depth` (at most [`MAX_DEPTH`]):
    /// at the maximum depth a literal, negated with probability 2/5; above it `¬(sub)`
    /// with probability 1/5, else `(left op right)` with `op` uniform over [`OPS`]. Returns
    /// the formula's values on `sample`.
    pub(super) fn draw(&mut self, draws: &mut Draws, sample: &Sample, max_depth: u32) -> u64 {
        self.height = max_depth.min(MAX_DEPTH) as usize;
        let variables = sample.variables as u64;
        // The digit sources in locals, so that they stay in registers.
        let mut literal_digits = draws.literals;
        let mut connective_digits = draws.connectives;
        for literal in &mut self.literals[..1 << self.height] {
            let choice = literal_digits.next(draws.rng);
            *literal = ((choice / 5 * variables / LEAF_SPAN) as u8, choice % 5 < 2);
        }
        for kind in &mut self.kinds[..(1 << self.height) - 1] {
            let choice = connective_digits.next(draws.rng);
            *kind = if choice < 5 { NOT } else { (choice % 5) as u8 };
        }
        draws.literals = literal_digits;
        draws.connectives = connective_digits;
        self.values(sample)
    }

    /// Its values on `sample`, bottom-up without a branch.
    pub(super) fn values(&self, sample: &Sample) -> u64 {
        let connectives = (1 << self.height) - 1;
        let mut values = [0u64; MAX_NODES];
        for (&(variable, negated), value) in self.literals[..connectives + 1]
            .iter()
            .zip(&mut values[connectives..])
        {
            *value = sample.columns[variable as usize] ^ 0u64.wrapping_sub(u64::from(negated));
        }
        for node in (0..connectives).rev() {
            let [d, a, b, c] = NORMAL_FORMS[self.kinds[node] as usize];
            let (left, right) = (values[2 * node + 1], values[2 * node + 2]);
            values[node] = d ^ (a & left) ^ (b & right) ^ (c & left & right);
        }
        values[0]
    }

    /// The formula drawn, without the subtrees that negations ignore.
    pub(super) fn formula(&self) -> Formula {
        let mut formula = Formula::empty();
        self.build(&mut formula, 0);
        formula
    }

    fn build(&self, formula: &mut Formula, index: usize) -> u8 {
        let connectives = (1 << self.height) - 1;
        let node = if index >= connectives {
            let (variable, negated) = self.literals[index - connectives];
            Node::Leaf { variable, negated }
        } else {
            match self.kinds[index] {
                NOT => Node::Not(self.build(formula, 2 * index + 1)),
                kind => {
                    let left = self.build(formula, 2 * index + 1);
                    let right = self.build(formula, 2 * index + 2);
                    Node::Binary(OPS[kind as usize], left, right)
                }
            }
        };
        let position = formula.len;
        formula.nodes[usize::from(position)] = node;
        formula.len += 1;
        position
    }
}

/// One formula, nodes in post-order: children precede parents, the root is last.
#[derive(Debug, Clone, Copy)]
pub(super) struct Formula {
    nodes: [Node; MAX_NODES],
    len: u8,
}

impl Formula {
    pub(super) fn empty() -> Self {
        Formula {
            nodes: [Node::Not(0); MAX_NODES],
            len: 0,
        }
    }

    fn root(&self) -> usize {
        usize::from(self.len).saturating_sub(1)
    }

    fn nodes(&self) -> &[Node] {
        &self.nodes[..usize::from(self.len)]
    }

    /// The variables that occur, one bit each.
    pub(super) fn variables(&self) -> u16 {
        self.nodes().iter().fold(0, |mask, node| match node {
            Node::Leaf { variable, .. } => mask | 1 << variable,
            _ => mask,
        })
    }

    pub(super) fn shape(&self) -> Shape {
        let mut shape = Shape::default();
        // Post-order: a node's children have their depths before it.
        let mut depths = [0u32; MAX_NODES];
        for (index, node) in self.nodes().iter().enumerate() {
            depths[index] = match *node {
                Node::Leaf { negated, .. } => {
                    shape.leaves += 1;
                    shape.negated_literals += u32::from(negated);
                    0
                }
                Node::Not(child) => {
                    shape.nots += 1;
                    depths[child as usize] + 1
                }
                Node::Binary(op, left, right) => {
                    if let Some(slot) = OPS.iter().position(|&o| o == op) {
                        shape.ops[slot] += 1;
                    }
                    depths[left as usize].max(depths[right as usize]) + 1
                }
            };
        }
        shape.depth = depths[self.root()];
        shape
    }

    /// Writes the formula fully parenthesized: `(A ∧ ¬B)`, `¬(A ∨ B)`, `¬(¬A)`. A
    /// literal's negation sits on its variable; any other negation wraps its operand in
    /// parentheses, which a binary operand already has (the paper's code writes
    /// `¬((A ∨ B))`; the meaning and the depth are the same).
    pub(super) fn render(&self, out: &mut String) {
        if self.len > 0 {
            self.render_node(self.root(), out);
        }
    }

    fn render_node(&self, index: usize, out: &mut String) {
        match self.nodes[index] {
            Node::Leaf { variable, negated } => {
                if negated {
                    out.push('¬');
                }
                out.push(variable_name(variable as usize));
            }
            Node::Not(child) => {
                out.push('¬');
                // A binary child brings its own parentheses: `¬(A ∧ B)`, not `¬((A ∧ B))`.
                if matches!(self.nodes[child as usize], Node::Binary(..)) {
                    self.render_node(child as usize, out);
                } else {
                    out.push('(');
                    self.render_node(child as usize, out);
                    out.push(')');
                }
            }
            Node::Binary(op, left, right) => {
                out.push('(');
                self.render_node(left as usize, out);
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                self.render_node(right as usize, out);
                out.push(')');
            }
        }
    }
}

/// The name of variable `index`: `A`, `B`, ...
pub(super) fn variable_name(index: usize) -> char {
    char::from(b'A' + index as u8)
}

/// The assignment space of one level: the variables' columns over all 2^n assignments and
/// scratch space for evaluating formulas into truth tables.
pub(super) struct Space {
    variables: usize,
    words: usize,
    /// Column `i`: the assignments where variable `i` is true.
    columns: [Table; MAX_VARIABLES],
    /// The assignments that exist (all bits but the unused top of a lone word).
    all: Table,
    /// One buffer per nesting level.
    scratch: [Table; MAX_DEPTH as usize + 1],
}

impl Space {
    pub(super) fn new(variables: usize) -> Self {
        let variables = variables.min(MAX_VARIABLES);
        let words = (1usize << variables).div_ceil(64);
        const PATTERNS: [u64; 6] = [
            0xAAAA_AAAA_AAAA_AAAA,
            0xCCCC_CCCC_CCCC_CCCC,
            0xF0F0_F0F0_F0F0_F0F0,
            0xFF00_FF00_FF00_FF00,
            0xFFFF_0000_FFFF_0000,
            0xFFFF_FFFF_0000_0000,
        ];
        let mut columns = [[0; MAX_WORDS]; MAX_VARIABLES];
        for (variable, column) in columns.iter_mut().enumerate().take(variables) {
            for (word, bits) in column.iter_mut().enumerate().take(words) {
                *bits = match PATTERNS.get(variable) {
                    Some(&pattern) => pattern,
                    None if (word >> (variable - 6)) & 1 == 1 => u64::MAX,
                    None => 0,
                };
            }
        }
        let mut all = [0; MAX_WORDS];
        all[..words].fill(u64::MAX);
        if variables < 6 {
            all[0] = (1u64 << (1 << variables)) - 1;
        }
        Space {
            variables,
            words,
            columns,
            all,
            scratch: [[0; MAX_WORDS]; MAX_DEPTH as usize + 1],
        }
    }

    pub(super) fn variables(&self) -> usize {
        self.variables
    }

    pub(super) fn words(&self) -> usize {
        self.words
    }

    pub(super) fn column(&self, variable: usize) -> &[u64] {
        &self.columns[variable][..self.words]
    }

    pub(super) fn all(&self) -> &Table {
        &self.all
    }

    /// The truth table of `formula` (bits beyond the space are unspecified).
    pub(super) fn evaluate(&mut self, formula: &Formula, out: &mut Table) {
        let columns = Columns {
            columns: &self.columns,
            words: self.words,
        };
        let (operand, flip) = columns.evaluate(formula, formula.root(), 0, &mut self.scratch);
        let source = match operand {
            Operand::Column(variable) => columns.column(variable),
            Operand::Buffer(slot) => &self.scratch[slot][..self.words],
        };
        for (o, s) in out.iter_mut().zip(source) {
            *o = s ^ flip;
        }
    }
}

/// Where a subformula's table is: a variable's column, read in place, or a scratch buffer.
#[derive(Debug, Clone, Copy)]
enum Operand {
    Column(u8),
    Buffer(usize),
}

/// The columns of a [`Space`], borrowed apart from its scratch buffers.
struct Columns<'a> {
    columns: &'a [Table; MAX_VARIABLES],
    words: usize,
}

impl Columns<'_> {
    fn column(&self, variable: u8) -> &[u64] {
        &self.columns[variable as usize][..self.words]
    }

    /// Evaluates node `index` with scratch buffers `slot..`; returns where its table is and
    /// a mask to XOR it with. Negations fold into the next connective rather than take a
    /// pass of their own, and literals are read in place, never copied. A binary node at
    /// `slot` writes buffer `slot` (its left operand's, if any) and hands `slot + 1` to its
    /// right operand, so a formula of depth `d` needs `d` buffers.
    fn evaluate(
        &self,
        formula: &Formula,
        index: usize,
        slot: usize,
        buffers: &mut [Table],
    ) -> (Operand, u64) {
        match formula.nodes[index] {
            Node::Leaf { variable, negated } => {
                let flip = if negated { u64::MAX } else { 0 };
                (Operand::Column(variable), flip)
            }
            Node::Not(child) => {
                let (operand, flip) = self.evaluate(formula, child as usize, slot, buffers);
                (operand, !flip)
            }
            Node::Binary(op, left, right) => {
                let (left, left_flip) = self.evaluate(formula, left as usize, slot, buffers);
                let (right, right_flip) = self.evaluate(formula, right as usize, slot + 1, buffers);
                let (head, tail) = buffers.split_at_mut(slot + 1);
                let right = match right {
                    Operand::Column(variable) => self.column(variable),
                    Operand::Buffer(_) => &tail[0][..self.words],
                };
                let left = match left {
                    Operand::Column(variable) => Some(self.column(variable)),
                    Operand::Buffer(_) => None,
                };
                let out = &mut head[slot][..self.words];
                op.combine(out, left, (left_flip, right_flip), right);
                (Operand::Buffer(slot), 0)
            }
        }
    }
}

/// `into &= other` over the first `words` words.
pub(super) fn and_into(into: &mut Table, other: &Table, words: usize) {
    into[..words]
        .iter_mut()
        .zip(&other[..words])
        .for_each(|(i, o)| *i &= o);
}

/// Ones in `a & b` over the first `words` words.
pub(super) fn count_common(a: &Table, b: &Table, words: usize) -> u32 {
    // Builds for baseline x86-64 count bits with a dozen instructions a word; the popcnt
    // instruction, where the processor has it, does it in one. The result is the same.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the processor supports popcnt, as just checked.
        return unsafe { count_common_popcnt(a, b, words) };
    }
    count_common_portable(a, b, words)
}

#[inline(always)]
fn count_common_portable(a: &Table, b: &Table, words: usize) -> u32 {
    a[..words]
        .iter()
        .zip(&b[..words])
        .map(|(x, y)| (x & y).count_ones())
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn count_common_popcnt(a: &Table, b: &Table, words: usize) -> u32 {
    count_common_portable(a, b, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(formula: &Formula, index: usize, x: u32) -> bool {
        match formula.nodes[index] {
            Node::Leaf { variable, negated } => ((x >> variable) & 1 == 1) != negated,
            Node::Not(child) => !scalar(formula, child as usize, x),
            Node::Binary(op, left, right) => {
                let left = scalar(formula, left as usize, x);
                let right = scalar(formula, right as usize, x);
                match op {
                    Op::Implies => !left || right,
                    Op::And => left && right,
                    Op::Or => left || right,
                    Op::Iff => left == right,
                    Op::Xor => left != right,
                }
            }
        }
    }

    #[test]
    fn columns_follow_the_bit_convention() {
        for variables in [4, 6, 8, 12] {
            let space = Space::new(variables);
            for x in 0..(1usize << variables) {
                for variable in 0..variables {
                    let bit = space.column(variable)[x / 64] >> (x % 64) & 1 == 1;
                    assert_eq!(bit, (x >> variable) & 1 == 1);
                }
            }
            let total = count_common(space.all(), space.all(), space.words());
            assert_eq!(total, 1 << variables);
        }
    }

    #[test]
    fn tables_and_samples_agree_with_a_scalar_walk() {
        let mut rng = TaskRng::from_seed(3);
        let mut draws = Draws::new(&mut rng);
        for (variables, depth) in [(4, 1), (8, 3), (12, 5)] {
            let mut space = Space::new(variables);
            let mut sample = Sample::new(variables);
            let sampled: Vec<u32> = (0..64).map(|i| (i * 37 + 5) % (1 << variables)).collect();
            for &assignment in &sampled {
                sample.push(assignment);
            }
            assert_eq!(sample.push(0), None);
            let mut draft = Draft::new();
            for _ in 0..300 {
                let values = draft.draw(&mut draws, &sample, depth);
                let formula = draft.formula();
                assert_eq!(formula.shape().depth, depth);
                let mut table = [0; MAX_WORDS];
                space.evaluate(&formula, &mut table);
                for x in 0..(1u32 << variables) {
                    let expected = scalar(&formula, formula.root(), x);
                    assert_eq!(table[x as usize / 64] >> (x % 64) & 1 == 1, expected);
                }
                for (bit, &x) in sampled.iter().enumerate() {
                    let expected = scalar(&formula, formula.root(), x);
                    assert_eq!(values >> bit & 1 == 1, expected);
                }
            }
        }
    }

    #[test]
    fn draws_follow_the_papers_frequencies() {
        // Depth-1 formulas over 4 variables: 1/5 are `¬(literal)`, the rest split evenly
        // over the 5 connectives; 2/5 of literals are negated; variables are uniform.
        let mut rng = TaskRng::from_seed(11);
        let mut draws = Draws::new(&mut rng);
        let sample = Sample::new(4);
        let mut draft = Draft::new();
        let (mut nots, mut ops, mut negated, mut leaves) = (0, [0u32; 5], 0, 0);
        let mut variables = [0u32; 4];
        let total = 50_000;
        for _ in 0..total {
            draft.draw(&mut draws, &sample, 1);
            let formula = draft.formula();
            let shape = formula.shape();
            nots += shape.nots;
            for (count, op) in ops.iter_mut().zip(shape.ops) {
                *count += op;
            }
            negated += shape.negated_literals;
            leaves += shape.leaves;
            for node in formula.nodes() {
                if let Node::Leaf { variable, .. } = node {
                    variables[*variable as usize] += 1;
                }
            }
        }
        let near =
            |count: u32, expected: f64| (f64::from(count) - expected).abs() < expected * 0.05;
        assert!(near(nots, total as f64 / 5.0), "{nots}");
        for count in ops {
            assert!(near(count, total as f64 * 4.0 / 25.0), "{ops:?}");
        }
        assert!(
            near(negated, f64::from(leaves) * 0.4),
            "{negated} of {leaves}"
        );
        for count in variables {
            assert!(near(count, f64::from(leaves) / 4.0), "{variables:?}");
        }
    }
}
