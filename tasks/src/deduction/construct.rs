//! Building a formula set whose only model is a hidden target assignment.
//!
//! Naive rejection (draw 3..=6 formulas, keep the set if it has exactly one model), as the
//! paper's generator does, almost never succeeds at the high levels. Here every formula is
//! still drawn from the paper's distribution, but conditioned on being true at a uniform
//! target (so the target stays a model) and on excluding some remaining model, and the set
//! is chosen greedily:
//!
//! 1. Fill. A planned count `m` is drawn uniform in 3..=6. A pool of [`POOL`] candidates is
//!    on offer; each slot takes the candidate whose cut brings the model count closest, in
//!    log scale, to an even schedule that reaches one model at slot `m` (`count^((s-1)/s)`
//!    with `s` planned slots left; past the plan, the smallest count). Candidates that no
//!    longer exclude any remaining model on the sample leave the pool.
//! 2. Repair. A full set of 6 that still has several models (deep formulas over 12 variables
//!    rarely single out one model in 6 greedy picks: each excludes the target's neighbour
//!    in a variable only if it is sensitive to that variable at the target) takes fresh
//!    candidates in place of whichever formula that lowers the count most, for up to
//!    [`REPAIR_DRAWS`] candidates.
//! 3. Otherwise, or if one model remains with fewer than 3 formulas, start over with a new
//!    target (keeping `m`).
//!
//! What this changes against rejection: formula shapes follow the paper's distribution
//! given the selection, but the selection favours formulas that exclude many assignments;
//! the answer is uniform over all assignments (the paper's, with literals negated at 2/5,
//! leans to True); counts lean to 6 formulas at the high levels, as rejection's would, and
//! follow the plan more at the low ones. Each formula cut the model set when it was chosen,
//! but a later one may imply it; such sets are kept, as rejection keeps them, and counted
//! ([`Construction::implied`]).
//!
//! Speed: candidates are screened on a [`Sample`] of at most 64 assignments evaluated in one
//! word while they are drawn: the target, and the remaining models, all of them once at
//! most 63 others remain, else an even spread (whose counts then estimate the fill's cuts,
//! and which the fill thins out with each cut until too little of it is left).
//! The repair counts each swap exactly on a [`WideSample`] of up to 512 assignments: the
//! remaining models and every assignment that fails just one formula, the only ones a swap
//! can make models (full tables only for the rare set with more). Full truth tables are
//! built only for formulas that are chosen.

use super::draw::{Draft, Draws, Sample, Wide, WideSample, WIDE};
use super::formula::{Formula, MAX_DEPTH};
use super::tables::{and_into, count_common, Space, Table, MAX_WORDS};
use crate::TaskRng;

/// Fewest formulas in a puzzle.
pub(super) const MIN_FORMULAS: usize = 3;
/// Most formulas in a puzzle.
pub(super) const MAX_FORMULAS: usize = 6;
/// Candidates on offer at each slot of the fill.
const POOL: usize = 16;
/// Candidates drawn while repairing a full set before starting over.
const REPAIR_DRAWS: u32 = 400;
/// While more than this many of the spread of remaining models on the fill's sample (the
/// target included) survive a cut, the fill keeps the sample rather than spread afresh.
const MIN_SAMPLED: u32 = 8;
/// Assignments a [`WideSample`] holds.
const WIDE_MEMBERS: usize = 64 * WIDE;

/// A chosen formula with its truth table.
pub(super) struct Chosen {
    pub formula: Formula,
    pub draft: Draft,
    pub table: Table,
}

impl Chosen {
    /// The table is filled in place (see [`Attempt::choose`]), the formula built when the
    /// set is done (see [`Chosen::finish`]).
    fn new(draft: Draft) -> Self {
        Chosen {
            formula: Formula::empty(),
            draft,
            table: [0; MAX_WORDS],
        }
    }

    fn finish(&mut self) {
        self.formula = self.draft.formula();
    }
}

/// A formula set whose only model is `target`.
pub(super) struct Construction {
    pub target: u32,
    pub chosen: Vec<Chosen>,
    /// How many of the formulas the others imply.
    pub implied: u32,
}

/// The assignments candidates are screened on while they are drawn, and what their bits
/// stand for.
struct Screen {
    sample: Sample,
    /// Bits of the remaining models on the sample; bit 0, the target, always.
    remaining: u64,
    /// Every `stride`-th remaining model (by rank) is on the sample; 1: all of them, or in
    /// the repair the first 63 (the rest are on [`Swaps`]).
    stride: u32,
}

impl Screen {
    /// A candidate must hold at the target and exclude some sampled remaining model.
    fn passes(&self, values: u64) -> bool {
        values & 1 == 1 && values & self.remaining != self.remaining
    }
}

/// What the repair counts swaps on: the target, every remaining model, and every
/// assignment that fails just one formula, so that the count a swap leaves is exact.
struct Swaps {
    sample: WideSample,
    /// Bits of the remaining models, the target included.
    remaining: Wide,
    /// Per chosen formula, the bits of the assignments that fail only it.
    exclusive: [Wide; MAX_FORMULAS],
}

impl Swaps {
    /// Per slot, the models that remain if a formula with `values` takes its place,
    /// counted on the sample: the fewest, and the slot.
    fn fewest_kept(&self, values: &Wide, slots: usize) -> (u32, usize) {
        (self.exclusive[..slots].iter().enumerate())
            .map(|(slot, exclusive)| {
                let kept = (values.0.iter().zip(&self.remaining.0).zip(&exclusive.0))
                    .map(|((value, remaining), exclusive)| {
                        (value & (remaining | exclusive)).count_ones()
                    })
                    .sum::<u32>();
                (kept, slot)
            })
            .min()
            .expect("the set is full")
    }
}

/// The assignments of a sample being gathered, in bit order, at most `N`.
struct Members<const N: usize> {
    assignments: [u16; N],
    len: usize,
}

impl<const N: usize> Members<N> {
    fn new() -> Self {
        Members {
            assignments: [0; N],
            len: 0,
        }
    }

    /// Adds `assignment` as the next bit (the caller keeps within `N`); returns the bit.
    fn push(&mut self, assignment: u32) -> usize {
        let bit = self.len;
        self.assignments[bit % N] = assignment as u16;
        self.len = (bit + 1).min(N);
        bit
    }

    fn assignments(&self) -> &[u16] {
        &self.assignments[..self.len]
    }
}

/// The lowest `count` bits of a [`Wide`].
fn low_bits(count: usize) -> Wide {
    Wide(std::array::from_fn(|word| {
        match count.saturating_sub(64 * word) {
            0 => 0,
            bits @ 1..=63 => (1 << bits) - 1,
            _ => u64::MAX,
        }
    }))
}

/// The position of the set bit of rank `rank` (from 0) in `bits`, which has more: the
/// byte that holds it from byte-wise prefix counts compared all at once, then a table.
fn select(bits: u64, rank: u32) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut counts = bits - ((bits >> 1) & 0x5555_5555_5555_5555);
    counts = (counts & 0x3333_3333_3333_3333) + ((counts >> 2) & 0x3333_3333_3333_3333);
    counts = (counts + (counts >> 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    // Byte `i`: the set bits in bytes `0..=i` (at most 64, so no byte overflows).
    let prefix = counts.wrapping_mul(ONES);
    // The high bit of byte `i` is set where that count is at most `rank`.
    let at_most = ((u64::from(rank) * ONES) | HIGHS).wrapping_sub(prefix) & HIGHS;
    let byte = at_most.count_ones();
    let before = ((prefix << 8) >> (8 * byte)) & 0xFF;
    let within = (bits >> (8 * byte)) & 0xFF;
    8 * byte + u32::from(SELECT_IN_BYTE[within as usize][(u64::from(rank) - before) as usize % 8])
}

/// Per byte value, the position of its set bit of each rank.
const SELECT_IN_BYTE: [[u8; 8]; 256] = {
    let mut table = [[0; 8]; 256];
    let mut value = 0;
    while value < 256 {
        let (mut bit, mut rank) = (0, 0);
        while bit < 8 {
            if value >> bit & 1 == 1 {
                table[value][rank] = bit as u8;
                rank += 1;
            }
            bit += 1;
        }
        value += 1;
    }
    table
};

/// A candidate in the fill's pool.
struct Pooled {
    draft: Draft,
    /// Its values on the screen's sample.
    values: u64,
}

/// One attempt at a construction.
struct Attempt<'a> {
    space: &'a mut Space,
    max_depth: u32,
    target: u32,
    /// Assignments where every chosen formula holds, and how many.
    models: Table,
    count: u32,
    chosen: Vec<Chosen>,
    screen: Screen,
    /// In the repair, while the assignments failing at most one formula fit.
    swaps: Option<Swaps>,
    /// The candidate being drawn, reused.
    draft: Draft,
    /// A candidate's table, when the repair needs one.
    candidate_table: Table,
    /// Per chosen formula, the models of all the others (see [`Attempt::refresh_except`]),
    /// if fresh.
    except: [Table; MAX_FORMULAS],
    except_fresh: bool,
}

impl Attempt<'_> {
    /// Draws until a candidate passes the screen; it is left in `draft`, its values on the
    /// sample returned.
    fn draw(&mut self, draws: &mut Draws) -> u64 {
        loop {
            let values = self.draft.draw(draws, &self.screen.sample, self.max_depth);
            if self.screen.passes(values) {
                return values;
            }
        }
    }

    /// Puts `draft` in `slot`, or in a new one, with its table: evaluated in place, or
    /// copied from `candidate_table` if `tabled`.
    fn choose(&mut self, slot: Option<usize>, draft: Draft, tabled: bool) {
        let slot = slot.unwrap_or_else(|| {
            self.chosen.push(Chosen::new(draft));
            self.chosen.len() - 1
        });
        let chosen = &mut self.chosen[slot];
        chosen.draft = draft;
        if tabled {
            chosen.table = self.candidate_table;
        } else {
            self.space.evaluate(&draft, &mut chosen.table);
        }
        self.update_models();
    }

    /// Recomputes the models of the chosen set.
    fn update_models(&mut self) {
        self.except_fresh = false;
        let words = self.space.words();
        self.models = *self.space.all();
        for chosen in &self.chosen {
            and_into(&mut self.models, &chosen.table, words);
        }
        self.count = count_common(&self.models, self.space.all(), words);
    }

    /// Fills `except` by prefix and suffix conjunctions, unless it is fresh (only the
    /// repair without [`Swaps`] and the final count of implied formulas need it).
    fn refresh_except(&mut self) {
        if self.except_fresh {
            return;
        }
        self.except_fresh = true;
        let words = self.space.words();
        let mut prefix = *self.space.all();
        for (except, chosen) in self.except.iter_mut().zip(&self.chosen) {
            *except = prefix;
            and_into(&mut prefix, &chosen.table, words);
        }
        let mut suffix = *self.space.all();
        for (except, chosen) in self.except.iter_mut().zip(&self.chosen).rev() {
            and_into(except, &suffix, words);
            and_into(&mut suffix, &chosen.table, words);
        }
    }

    /// Rebuilds the screen for the current models: the target and the remaining models,
    /// all of them once at most 63 others remain, else every `stride`-th by rank.
    fn rescreen(&mut self) {
        let mut members = Members::<64>::new();
        members.push(self.target);
        let stride = (self.count - 1).div_ceil(63).max(1);
        self.remaining_members(&mut members, stride);
        self.screen = Screen {
            sample: Sample::from_members(members.assignments()),
            remaining: low_bits(members.len).0[0],
            stride,
        };
    }

    /// Rebuilds the screen and the swaps for the repair: the swaps' sample holds the
    /// target, the other remaining models and then every assignment that fails just one
    /// formula, if they fit; the screen is its first word. Otherwise the screen is rebuilt
    /// as in the fill.
    fn rescreen_swaps(&mut self) {
        self.swaps = None;
        if self.count as usize > WIDE_MEMBERS {
            self.rescreen();
            return;
        }
        let mut members = Members::<WIDE_MEMBERS>::new();
        members.push(self.target);
        self.remaining_members(&mut members, 1);
        let words = self.space.words();
        let at_most_one = self
            .space
            .at_most_one_fails(self.chosen.iter().map(|chosen| &chosen.table));
        for (word, (&at_most_one, &models)) in
            at_most_one[..words].iter().zip(&self.models).enumerate()
        {
            let mut bits = at_most_one & !models;
            if members.len + bits.count_ones() as usize > WIDE_MEMBERS {
                self.rescreen();
                return;
            }
            while bits != 0 {
                members.push((word * 64) as u32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        let sample = WideSample::from_members(members.assignments());
        self.screen = Screen {
            sample: sample.first_word(),
            remaining: low_bits(self.count as usize).0[0],
            stride: 1,
        };
        // On the sample, a formula fails only where it is the one that fails.
        let valid = low_bits(members.len);
        let mut exclusive = [Wide([0; WIDE]); MAX_FORMULAS];
        for (chosen, exclusive) in self.chosen.iter().zip(&mut exclusive) {
            *exclusive = valid.and_not(chosen.draft.wide_values(&sample));
        }
        self.swaps = Some(Swaps {
            sample,
            remaining: low_bits(self.count as usize),
            exclusive,
        });
    }

    /// Adds the remaining models but the target of every `stride`-th rank.
    fn remaining_members<const N: usize>(&self, members: &mut Members<N>, stride: u32) {
        let target = self.target;
        if self.count == 1 << self.space.variables() {
            // Every assignment remains: the member of each rank is plain.
            for rank in (0..self.count - 1).step_by(stride as usize) {
                members.push(rank + u32::from(rank >= target));
            }
            return;
        }
        // `next` is the rank wanted next, counted from the start of the current word.
        let mut next = 0;
        for (word, &bits) in self.models[..self.space.words()].iter().enumerate() {
            let mut bits = bits;
            if target as usize / 64 == word {
                bits &= !(1 << (target % 64));
            }
            let base = (word * 64) as u32;
            if stride == 1 {
                while bits != 0 {
                    members.push(base + bits.trailing_zeros());
                    bits &= bits - 1;
                }
                continue;
            }
            let ones = bits.count_ones();
            while next < ones {
                members.push(base + select(bits, next));
                next += stride;
            }
            next -= ones;
        }
    }

    /// Remaining models a formula with `values` on the sample keeps: exact while all are
    /// on the sample, else estimated from the spread.
    fn estimated_cut(&self, values: u64) -> u32 {
        let kept = (values & self.screen.remaining).count_ones();
        if self.screen.stride == 1 {
            return kept;
        }
        let sampled = self.screen.remaining.count_ones();
        // At most 64 times 2^12: no overflow in 32 bits.
        kept * self.count / sampled
    }

    /// The fill: one slot at a time from the pool, until one model remains or all slots
    /// are taken.
    fn fill(&mut self, draws: &mut Draws, planned: usize) {
        let mut pool: Vec<Pooled> = Vec::with_capacity(POOL);
        while self.count > 1 && self.chosen.len() < MAX_FORMULAS {
            while pool.len() < POOL {
                let values = self.draw(draws);
                pool.push(Pooled {
                    draft: self.draft,
                    values,
                });
            }
            let slots_left = planned.saturating_sub(self.chosen.len()).max(1) as i64;
            let goal = (slots_left - 1) * log2_fixed(self.count);
            let (_, best) = pool
                .iter()
                .enumerate()
                .map(|(index, candidate)| {
                    let cut = self.estimated_cut(candidate.values);
                    ((slots_left * log2_fixed(cut) - goal).abs(), index)
                })
                .min()
                .expect("the pool is full");
            let taken = pool.swap_remove(best);
            let before = self.count;
            self.choose(None, taken.draft, false);
            // It excludes a remaining model on the sample, so it cuts.
            debug_assert!(self.count < before);
            let survivors = self.screen.remaining & taken.values;
            if self.screen.stride == 1 || (self.count > 64 && survivors.count_ones() > MIN_SAMPLED)
            {
                // The sample holds every remaining model, or enough of a spread: drop the
                // excluded ones. The candidates' values on it stay as they are.
                self.screen.remaining = survivors;
            } else {
                self.rescreen();
                let sample = &self.screen.sample;
                for candidate in &mut pool {
                    candidate.values = candidate.draft.values(sample);
                }
            }
            // Candidates that no longer cut any sampled model leave the pool.
            let remaining = self.screen.remaining;
            pool.retain(|candidate| candidate.values & remaining != remaining);
        }
    }

    /// The repair of a full set that still has several models: fresh candidates take the
    /// place of whichever formula that lowers the count most, as soon as one does.
    fn repair(&mut self, draws: &mut Draws) {
        if self.count == 1 {
            return;
        }
        self.rescreen_swaps();
        for _ in 0..REPAIR_DRAWS {
            self.draw(draws);
            let draft = self.draft;
            let (count, slot, tabled) = self.best_swap(&draft);
            if count < self.count {
                self.choose(Some(slot), draft, tabled);
                if self.count == 1 {
                    return;
                }
                self.rescreen_swaps();
            }
        }
    }

    /// The fewest models left by putting `draft` in place of a chosen formula, the slot,
    /// and whether its table had to be built to tell (into `candidate_table`).
    fn best_swap(&mut self, draft: &Draft) -> (u32, usize, bool) {
        let words = self.space.words();
        if let Some(swaps) = &self.swaps {
            let values = draft.wide_values(&swaps.sample);
            let (kept, slot) = swaps.fewest_kept(&values, self.chosen.len());
            return (kept, slot, false);
        }
        self.space.evaluate(draft, &mut self.candidate_table);
        self.refresh_except();
        let (count, slot) = self.fewest_kept(&self.candidate_table, words);
        (count, slot, true)
    }

    /// Per slot, the models that remain if a formula with `table` takes its place: the
    /// fewest, and the slot.
    fn fewest_kept(&self, table: &Table, words: usize) -> (u32, usize) {
        (self.except.iter().zip(0..self.chosen.len()))
            .map(|(except, slot)| (count_common(except, table, words), slot))
            .min()
            .expect("the set is full")
    }

    /// How many formulas the others imply.
    fn implied(&mut self) -> u32 {
        self.refresh_except();
        let words = self.space.words();
        let all = *self.space.all();
        self.except[..self.chosen.len()]
            .iter()
            .filter(|except| count_common(except, &all, words) == 1)
            .count() as u32
    }
}

/// Builds a set of 3..=6 formulas over the variables of `space` (at most 12), drawn at
/// depth `max_depth` (at most 5), with exactly one model. See the module documentation.
pub(super) fn construct(rng: &mut TaskRng, space: &mut Space, max_depth: u32) -> Construction {
    let mut draws = Draws::new(rng, space.variables());
    let max_depth = max_depth.min(MAX_DEPTH);
    let planned = draws.range(MIN_FORMULAS as i64, MAX_FORMULAS as i64) as usize;
    loop {
        let target = draws.below(1 << space.variables()) as u32;
        let mut attempt = Attempt {
            max_depth,
            target,
            models: *space.all(),
            count: 1 << space.variables(),
            chosen: Vec::with_capacity(MAX_FORMULAS),
            screen: Screen {
                sample: Sample::from_members(&[]),
                remaining: 0,
                stride: 1,
            },
            swaps: None,
            draft: Draft::new(),
            candidate_table: [0; MAX_WORDS],
            except: [[0; MAX_WORDS]; MAX_FORMULAS],
            except_fresh: false,
            space: &mut *space,
        };
        attempt.rescreen();
        attempt.fill(&mut draws, planned);
        attempt.repair(&mut draws);
        if attempt.count == 1 && attempt.chosen.len() >= MIN_FORMULAS {
            let implied = attempt.implied();
            attempt.chosen.iter_mut().for_each(Chosen::finish);
            return Construction {
                target,
                chosen: attempt.chosen,
                implied,
            };
        }
    }
}

/// `log2(x)` in 1/256 units, by integer arithmetic only (the same on every platform), for
/// `x` up to 2^12 (larger saturate there); 0 maps to 0.
fn log2_fixed(x: u32) -> i64 {
    i64::from(LOG2_FIXED[(x as usize).min(MAX_LOG2_ARGUMENT)])
}

const MAX_LOG2_ARGUMENT: usize = 1 << 12;

/// [`log2_fixed`] of each argument, computed at compile time.
const LOG2_FIXED: [u16; MAX_LOG2_ARGUMENT + 1] = {
    let mut table = [0; MAX_LOG2_ARGUMENT + 1];
    let mut x = 1;
    while x <= MAX_LOG2_ARGUMENT {
        let whole = 63 - (x as u64).leading_zeros();
        // `y` in [1, 2) as a 1.30 fixed-point number.
        let mut y = ((x as u64) << 30) >> whole;
        let mut fraction = 0;
        let mut bit = 8;
        while bit > 0 {
            bit -= 1;
            y = (y * y) >> 30;
            if y >= 2 << 30 {
                y >>= 1;
                fraction |= 1 << bit;
            }
        }
        table[x] = (whole * 256 + fraction) as u16;
        x += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_log_is_monotone_and_close() {
        assert_eq!(log2_fixed(1), 0);
        assert_eq!(log2_fixed(2), 256);
        assert_eq!(log2_fixed(4096), 12 * 256);
        for x in 1..4096 {
            assert!(log2_fixed(x) <= log2_fixed(x + 1), "{x}");
            let exact = f64::from(x).log2() * 256.0;
            assert!((exact - log2_fixed(x) as f64).abs() < 1.0, "{x}");
        }
    }

    #[test]
    fn select_finds_the_set_bit_of_each_rank() {
        let mut rng = TaskRng::from_seed(9);
        for round in 0..2000 {
            let bits = match round {
                0 => u64::MAX,
                1 => 1 << 63,
                _ => rng.next_u64() & rng.next_u64() | 1 << (round % 64),
            };
            let positions: Vec<u32> = (0..64).filter(|&bit| bits >> bit & 1 == 1).collect();
            for (rank, &position) in positions.iter().enumerate() {
                assert_eq!(select(bits, rank as u32), position, "{bits:#x} {rank}");
            }
        }
    }

    #[test]
    fn swaps_count_what_tables_count() {
        let mut covered = 0;
        for (variables, depth) in [(4, 1), (8, 3), (12, 5)] {
            let mut space = Space::new(variables);
            for seed in 0..20 {
                let mut rng = TaskRng::from_seed(seed);
                let mut draws = Draws::new(&mut rng, variables);
                let mut attempt = Attempt {
                    max_depth: depth,
                    target: draws.below(1 << variables) as u32,
                    models: *space.all(),
                    count: 1 << variables,
                    chosen: Vec::with_capacity(MAX_FORMULAS),
                    screen: Screen {
                        sample: Sample::from_members(&[]),
                        remaining: 0,
                        stride: 1,
                    },
                    swaps: None,
                    draft: Draft::new(),
                    candidate_table: [0; MAX_WORDS],
                    except: [[0; MAX_WORDS]; MAX_FORMULAS],
                    except_fresh: false,
                    space: &mut space,
                };
                attempt.rescreen();
                attempt.fill(&mut draws, MAX_FORMULAS);
                if attempt.count == 1 {
                    continue;
                }
                attempt.rescreen_swaps();
                let Some(swaps) = attempt.swaps.take() else {
                    continue;
                };
                covered += 1;
                for _ in 0..50 {
                    attempt.draw(&mut draws);
                    let draft = attempt.draft;
                    let (count, slot, tabled) = attempt.best_swap(&draft);
                    assert!(tabled);
                    let values = draft.wide_values(&swaps.sample);
                    assert_eq!(
                        swaps.fewest_kept(&values, attempt.chosen.len()),
                        (count, slot)
                    );
                }
            }
        }
        assert!(covered >= 10, "{covered}");
    }

    #[test]
    fn constructions_have_their_target_as_only_model() {
        for (variables, depth) in [(4, 1), (6, 2), (8, 3), (10, 4), (12, 5)] {
            let mut space = Space::new(variables);
            for seed in 0..40 {
                let mut rng = TaskRng::from_seed(seed);
                let construction = construct(&mut rng, &mut space, depth);
                let mut models = *space.all();
                for chosen in &construction.chosen {
                    let mut table = [0; MAX_WORDS];
                    space.evaluate(&chosen.draft, &mut table);
                    assert_eq!(table[..space.words()], chosen.table[..space.words()]);
                    and_into(&mut models, &chosen.table, space.words());
                }
                assert_eq!(count_common(&models, space.all(), space.words()), 1);
                let target = construction.target as usize;
                assert_eq!(models[target / 64] >> (target % 64) & 1, 1);
                let count = construction.chosen.len();
                assert!((MIN_FORMULAS..=MAX_FORMULAS).contains(&count));
                assert!(construction.implied as usize <= count);
            }
        }
    }
}
