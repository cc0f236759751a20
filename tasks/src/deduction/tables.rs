//! Truth tables over all 2^n assignments of a level's variables, bit-parallel: one bit per
//! assignment, 64 words at level 5.
//!
//! A table is evaluated from a draft's choices with one pass of word operations per binary
//! connective (negations fold into the next pass). The passes, and the other loops over
//! whole tables here, run with the widest vector instructions the processor has
//! ([`Kernel`]); the results are the same bits on every machine.

use super::draw::{Choices, Draft};
use super::formula::{Op, MAX_DEPTH, MAX_VARIABLES};

/// Words of a truth table over [`MAX_VARIABLES`] variables.
pub(super) const MAX_WORDS: usize = 1 << (MAX_VARIABLES - 6);

/// A truth table: bit `x` of the words is the formula's value under assignment `x`, where
/// variable `i` is true in `x` when bit `i` of `x` is set.
pub(super) type Table = [u64; MAX_WORDS];

/// Column `i`: the assignments of 12 variables where variable `i` is true. An assignment of
/// fewer variables has the same index, so their columns are the start of these.
static COLUMNS: [Table; MAX_VARIABLES] = {
    const PATTERNS: [u64; 6] = [
        0xAAAA_AAAA_AAAA_AAAA,
        0xCCCC_CCCC_CCCC_CCCC,
        0xF0F0_F0F0_F0F0_F0F0,
        0xFF00_FF00_FF00_FF00,
        0xFFFF_0000_FFFF_0000,
        0xFFFF_FFFF_0000_0000,
    ];
    let mut columns = [[0; MAX_WORDS]; MAX_VARIABLES];
    let mut variable = 0;
    while variable < MAX_VARIABLES {
        let mut word = 0;
        while word < MAX_WORDS {
            columns[variable][word] = if variable < 6 {
                PATTERNS[variable]
            } else {
                0u64.wrapping_sub((word >> (variable - 6)) as u64 & 1)
            };
            word += 1;
        }
        variable += 1;
    }
    columns
};

/// The assignment space of one level: which assignments exist, and scratch space for
/// evaluating formulas into truth tables.
pub(super) struct Space {
    variables: usize,
    words: usize,
    /// The assignments that exist (all bits but the unused top of a lone word).
    all: Table,
    /// One buffer per nesting level.
    scratch: [Table; MAX_DEPTH as usize + 1],
    kernel: Kernel,
}

impl Space {
    pub(super) fn new(variables: usize) -> Self {
        Space::with_kernel(variables, Kernel::detect())
    }

    fn with_kernel(variables: usize, kernel: Kernel) -> Self {
        let variables = variables.min(MAX_VARIABLES);
        let words = (1usize << variables).div_ceil(64);
        let mut all = [0; MAX_WORDS];
        all[..words].fill(u64::MAX);
        if variables < 6 {
            all[0] = (1u64 << (1 << variables)) - 1;
        }
        Space {
            variables,
            words,
            all,
            scratch: [[0; MAX_WORDS]; MAX_DEPTH as usize + 1],
            kernel,
        }
    }

    pub(super) fn variables(&self) -> usize {
        self.variables
    }

    pub(super) fn words(&self) -> usize {
        self.words
    }

    /// The assignments where `variable` is true.
    pub(super) fn column(&self, variable: usize) -> &[u64] {
        &COLUMNS[variable][..self.words]
    }

    pub(super) fn all(&self) -> &Table {
        &self.all
    }

    /// The truth table of the formula of `draft` (bits beyond the space are unspecified).
    pub(super) fn evaluate(&mut self, draft: &Draft, out: &mut Table) {
        let (depth, choices) = draft.choices();
        let mut tables = Tables {
            words: self.words,
            kernel: self.kernel,
            choices,
        };
        let (operand, flip) = tables.node(depth, 0, &mut self.scratch);
        let source = match operand.checked_sub(BUFFER_OPERAND) {
            None => tables.column(operand),
            Some(slot) => &self.scratch[slot][..self.words],
        };
        let flip = if flip { u64::MAX } else { 0 };
        for (o, s) in out.iter_mut().zip(source) {
            *o = s ^ flip;
        }
    }

    /// The assignments where at most one of `tables` is false.
    pub(super) fn at_most_one_fails<'t>(&self, tables: impl Iterator<Item = &'t Table>) -> Table {
        let twos = match self.kernel {
            Kernel::Portable => failing_twice(tables, self.words),
            // SAFETY: `Kernel::detect` chose these only where the processor has the
            // features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { failing_twice_avx2(tables, self.words) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { failing_twice_avx512(tables, self.words) },
        };
        std::array::from_fn(|word| self.all[word] & !twos[word])
    }
}

/// Which instructions the loops over whole tables (and [`super::draw::WideSample`]'s)
/// use: the build's, or wider vector ones that the processor has. The results are the
/// same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Every kernel the processor can run, the portable one first.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        kernels
    }

    /// `out = (left ^ left_flip) op (right ^ right_flip)` word by word, where `left` is
    /// `out` itself when `None`.
    fn combine(
        self,
        op: Op,
        out: &mut [u64],
        left: Option<&[u64]>,
        flips: (u64, u64),
        right: &[u64],
    ) {
        match self {
            Kernel::Portable => combine(op, out, left, flips, right),
            // SAFETY: `detect` chose these only where the processor has the features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { combine_avx2(op, out, left, flips, right) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { combine_avx512(op, out, left, flips, right) },
        }
    }
}

/// One loop per connective, so that each vectorizes.
#[inline(always)]
fn combine(op: Op, out: &mut [u64], left: Option<&[u64]>, flips: (u64, u64), right: &[u64]) {
    match op {
        Op::Implies => combine_with(out, left, flips, right, |a, b| !a | b),
        Op::And => combine_with(out, left, flips, right, |a, b| a & b),
        Op::Or => combine_with(out, left, flips, right, |a, b| a | b),
        Op::Iff => combine_with(out, left, flips, right, |a, b| !(a ^ b)),
        Op::Xor => combine_with(out, left, flips, right, |a, b| a ^ b),
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn combine_avx2(
    op: Op,
    out: &mut [u64],
    left: Option<&[u64]>,
    flips: (u64, u64),
    right: &[u64],
) {
    combine(op, out, left, flips, right)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn combine_avx512(
    op: Op,
    out: &mut [u64],
    left: Option<&[u64]>,
    flips: (u64, u64),
    right: &[u64],
) {
    combine(op, out, left, flips, right)
}

/// Where at least two of `tables` are false, by counting failures bit-sliced.
#[inline(always)]
fn failing_twice<'t>(tables: impl Iterator<Item = &'t Table>, words: usize) -> Table {
    let (mut ones, mut twos) = ([0u64; MAX_WORDS], [0u64; MAX_WORDS]);
    for table in tables {
        for ((one, two), &holds) in ones[..words]
            .iter_mut()
            .zip(&mut twos[..words])
            .zip(&table[..words])
        {
            *two |= *one & !holds;
            *one |= !holds;
        }
    }
    twos
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn failing_twice_avx2<'t>(tables: impl Iterator<Item = &'t Table>, words: usize) -> Table {
    failing_twice(tables, words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn failing_twice_avx512<'t>(tables: impl Iterator<Item = &'t Table>, words: usize) -> Table {
    failing_twice(tables, words)
}

/// Where a subformula's table is: a variable's column, read in place, below
/// [`BUFFER_OPERAND`], else scratch buffer `operand - BUFFER_OPERAND`. Plain numbers, so
/// that results travel in registers.
const BUFFER_OPERAND: usize = 16;

/// Evaluates a draft into a truth table, reading its choices in order.
struct Tables<'a> {
    words: usize,
    kernel: Kernel,
    choices: Choices<'a>,
}

impl Tables<'_> {
    fn column(&self, variable: usize) -> &'static [u64] {
        &COLUMNS[variable % MAX_VARIABLES][..self.words]
    }

    /// Evaluates the next node, of depth `depth`, with scratch buffers `slot..`; returns
    /// where its table is and whether to negate it. Negations fold into the next
    /// connective rather than take a pass of their own, and literals are read in place,
    /// never copied. A binary node at `slot` writes buffer `slot` (its left operand's, if
    /// any) and hands `slot + 1` to its right operand, so a formula of depth `d` needs `d`
    /// buffers.
    fn node(&mut self, depth: u32, slot: usize, buffers: &mut [Table]) -> (usize, bool) {
        if depth == 0 {
            let (variable, negated) = self.choices.literal();
            return (usize::from(variable), negated);
        }
        let connective = self.choices.connective();
        let (left, left_flip) = self.node(depth - 1, slot, buffers);
        let Some(op) = connective else {
            return (left, !left_flip);
        };
        let (right, right_flip) = self.node(depth - 1, slot + 1, buffers);
        let (head, tail) = buffers.split_at_mut(slot + 1);
        let right = match right {
            BUFFER_OPERAND.. => &tail[0][..self.words],
            variable => self.column(variable),
        };
        let left = match left {
            BUFFER_OPERAND.. => None,
            variable => Some(self.column(variable)),
        };
        let out = &mut head[slot][..self.words];
        let mask = |flip: bool| if flip { u64::MAX } else { 0 };
        let flips = (mask(left_flip), mask(right_flip));
        self.kernel.combine(op, out, left, flips, right);
        (BUFFER_OPERAND + slot, false)
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
    use super::super::draw::{Draws, Sample, WideSample};
    use super::*;
    use crate::TaskRng;

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
    fn tables_agree_with_the_formula_drawn() {
        let mut rng = TaskRng::from_seed(3);
        for (variables, depth) in [(4, 1), (6, 2), (8, 3), (10, 4), (12, 5)] {
            let mut draws = Draws::new(&mut rng, variables);
            let mut space = Space::new(variables);
            let sample = Sample::from_members(&[]);
            let mut draft = Draft::new();
            for _ in 0..200 {
                draft.draw(&mut draws, &sample, depth);
                let formula = draft.formula();
                let mut table = [0; MAX_WORDS];
                space.evaluate(&draft, &mut table);
                for x in 0..(1u32 << variables) {
                    let bit = table[x as usize / 64] >> (x % 64) & 1 == 1;
                    assert_eq!(bit, formula.value_at(x));
                }
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits() {
        let kernels = Kernel::available();
        let mut rng = TaskRng::from_seed(13);
        let mut draws = Draws::new(&mut rng, 12);
        let members: Vec<u16> = (0..512).map(|i| (i * 8 + i / 64) as u16).collect();
        let wide: Vec<WideSample> = kernels
            .iter()
            .map(|&kernel| WideSample::from_members(&members).with_kernel(kernel))
            .collect();
        let mut spaces: Vec<Space> = kernels
            .iter()
            .map(|&kernel| Space::with_kernel(12, kernel))
            .collect();
        let mut draft = Draft::new();
        let mut tables = Vec::new();
        for _ in 0..200 {
            draft.draw(&mut draws, &Sample::from_members(&[]), 5);
            let found: Vec<Table> = spaces
                .iter_mut()
                .map(|space| {
                    let mut table = [0; MAX_WORDS];
                    space.evaluate(&draft, &mut table);
                    table
                })
                .collect();
            assert!(found.iter().all(|table| *table == found[0]));
            let values: Vec<_> = wide
                .iter()
                .map(|sample| draft.wide_values(sample))
                .collect();
            assert!(values.iter().all(|value| *value == values[0]));
            tables.push(found[0]);
        }
        for chunk in tables.chunks(6) {
            let found: Vec<Table> = spaces
                .iter()
                .map(|space| space.at_most_one_fails(chunk.iter()))
                .collect();
            assert!(found.iter().all(|table| *table == found[0]));
        }
    }

    #[test]
    fn at_most_one_fails_counts_failures() {
        for variables in [4, 12] {
            let space = Space::new(variables);
            // Three tables: variable 0, variable 1, variable 2.
            let tables: Vec<Table> = (0..3)
                .map(|variable| std::array::from_fn(|word| COLUMNS[variable][word]))
                .collect();
            let found = space.at_most_one_fails(tables.iter());
            for x in 0..(1usize << variables) {
                let failing = (0..3).filter(|variable| x >> variable & 1 == 0).count();
                assert_eq!(found[x / 64] >> (x % 64) & 1 == 1, failing <= 1, "{x}");
            }
            let count = count_common(&found, space.all(), space.words());
            assert_eq!(count, 4 << (variables - 3), "{variables}");
            // Nothing beyond the space.
            assert_eq!(count_common(&found, &found, space.words()), count);
        }
    }
}
