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
//! word while they are drawn: the target; the remaining models, all of them once at most 63
//! others remain, else an even spread (whose counts then estimate the fill's cuts); and in
//! the repair, the assignments that fail just one formula, as many as fit. Full truth
//! tables are built only for formulas that are chosen, and in the repair for candidates
//! that the sample cannot rule out.

use super::formula::{
    and_into, count_common, Draft, Draws, Formula, Sample, Space, Table, MAX_DEPTH, MAX_WORDS,
};
use crate::tasks::TaskRng;

/// Fewest formulas in a puzzle.
pub(super) const MIN_FORMULAS: usize = 3;
/// Most formulas in a puzzle.
pub(super) const MAX_FORMULAS: usize = 6;
/// Candidates on offer at each slot of the fill.
const POOL: usize = 8;
/// Candidates drawn while repairing a full set before starting over.
const REPAIR_DRAWS: u32 = 400;

/// A chosen formula with its truth table.
pub(super) struct Chosen {
    pub formula: Formula,
    pub table: Table,
}

/// A formula set whose only model is `target`.
pub(super) struct Construction {
    pub target: u32,
    pub chosen: Vec<Chosen>,
    /// How many of the formulas the others imply.
    pub implied: u32,
}

/// The assignments candidates are screened on, and what their bits stand for.
struct Screen {
    sample: Sample,
    /// Bits of the remaining models on the sample; bit 0, the target, always.
    remaining: u64,
    /// Every `stride`-th remaining model (by rank) is on the sample; 1: all of them.
    stride: u32,
    /// Per chosen formula, the bits of the assignments that fail only it.
    exclusive: [u64; MAX_FORMULAS],
    /// Whether every assignment failing at most one formula is on the sample.
    covers_exclusive: bool,
}

impl Screen {
    /// A candidate must hold at the target and exclude some sampled remaining model.
    fn passes(&self, values: u64) -> bool {
        values & 1 == 1 && values & self.remaining != self.remaining
    }
}

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
    /// The candidate being drawn, reused.
    draft: Draft,
    /// Per chosen formula, the models of all the others (see [`Attempt::refresh_except`]).
    except: [Table; MAX_FORMULAS],
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

    fn table(&mut self, formula: &Formula) -> Table {
        let mut table = [0; MAX_WORDS];
        self.space.evaluate(formula, &mut table);
        table
    }

    /// Recomputes the models of the chosen set.
    fn update_models(&mut self) {
        let words = self.space.words();
        self.models = *self.space.all();
        for chosen in &self.chosen {
            and_into(&mut self.models, &chosen.table, words);
        }
        self.count = count_common(&self.models, self.space.all(), words);
    }

    /// Fills `except` by prefix and suffix conjunctions.
    fn refresh_except(&mut self) {
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

    /// Rebuilds the screen for the current models; with `exclusive`, also for swaps (which
    /// needs `except` fresh).
    fn rescreen(&mut self, exclusive: bool) {
        let mut sample = Sample::new(self.space.variables());
        sample.push(self.target);
        // Every `stride`-th other model by rank: all of them when at most 63 remain.
        let stride = (self.count - 1).div_ceil(63).max(1);
        let remaining = 1 | self.push_remaining(&mut sample, stride);
        let mut exclusive_bits = [0; MAX_FORMULAS];
        let covers_exclusive =
            exclusive && stride == 1 && self.push_exclusive(&mut sample, &mut exclusive_bits);
        self.screen = Screen {
            sample,
            remaining,
            stride,
            exclusive: exclusive_bits,
            covers_exclusive,
        };
    }

    /// Puts the remaining models but the target of every `stride`-th rank on `sample`;
    /// returns their bits.
    fn push_remaining(&self, sample: &mut Sample, stride: u32) -> u64 {
        let target = self.target;
        let mut bits_taken = 0;
        let mut take = |sample: &mut Sample, member: u32| {
            if let Some(bit) = sample.push(member) {
                bits_taken |= 1 << bit;
            }
        };
        if self.count == 1 << self.space.variables() {
            // Every assignment remains: the member of each rank is plain.
            for rank in (0..self.count - 1).step_by(stride as usize) {
                take(sample, rank + u32::from(rank >= target));
            }
            return bits_taken;
        }
        let (mut rank, mut next) = (0, 0);
        for (word, &bits) in self.models[..self.space.words()].iter().enumerate() {
            let mut bits = bits;
            if target as usize / 64 == word {
                bits &= !(1 << (target % 64));
            }
            if stride == 1 {
                while bits != 0 {
                    take(sample, (word * 64) as u32 + bits.trailing_zeros());
                    bits &= bits - 1;
                }
                continue;
            }
            let ones = bits.count_ones();
            // Walk up the word's members to each wanted rank in turn.
            let mut at = rank;
            while next < rank + ones {
                while at < next {
                    bits &= bits - 1;
                    at += 1;
                }
                take(sample, (word * 64) as u32 + bits.trailing_zeros());
                next += stride;
            }
            rank += ones;
        }
        bits_taken
    }

    /// Puts the assignments that fail just one formula on `sample`, round-robin over the
    /// formulas so that each is represented if not all fit, and marks their bits in
    /// `exclusive`; returns whether all fit.
    fn push_exclusive(&self, sample: &mut Sample, exclusive: &mut [u64; MAX_FORMULAS]) -> bool {
        let room = 64 - sample.len() as usize;
        // Up to `room + 1` of each formula's, enough to tell that they do not fit.
        let mut lists = [[0u32; 64]; MAX_FORMULAS];
        let mut lengths = [0usize; MAX_FORMULAS];
        for ((list, length), except) in lists.iter_mut().zip(&mut lengths).zip(&self.except) {
            let words = except.iter().zip(&self.models).take(self.space.words());
            'words: for (word, (&except, &models)) in words.enumerate() {
                let mut bits = except & !models;
                while bits != 0 {
                    if *length > room {
                        break 'words;
                    }
                    list[(*length).min(63)] = (word * 64) as u32 + bits.trailing_zeros();
                    *length += 1;
                    bits &= bits - 1;
                }
            }
        }
        for round in 0..=room {
            for slot in 0..self.chosen.len() {
                if round < lengths[slot] {
                    match sample.push(lists[slot][round.min(63)]) {
                        Some(bit) => exclusive[slot] |= 1 << bit,
                        None => return false,
                    }
                }
            }
        }
        true
    }

    /// Remaining models a formula with `values` on the sample keeps: exact while all are
    /// on the sample, else estimated from the spread.
    fn estimated_cut(&self, values: u64) -> u32 {
        let kept = (values & self.screen.remaining).count_ones();
        if self.screen.stride == 1 {
            return kept;
        }
        let sampled = self.screen.remaining.count_ones();
        (u64::from(kept) * u64::from(self.count) / u64::from(sampled)) as u32
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
            let formula = taken.draft.formula();
            let table = self.table(&formula);
            self.chosen.push(Chosen { formula, table });
            let before = self.count;
            self.update_models();
            // It excludes a remaining model on the sample, so it cuts.
            debug_assert!(self.count < before);
            if self.screen.stride == 1 {
                // The sample holds every remaining model: drop the excluded ones.
                self.screen.remaining &= taken.values;
            } else {
                self.rescreen(false);
            }
            // Candidates that no longer cut any sampled model leave the pool.
            let sample = &self.screen.sample;
            let remaining = self.screen.remaining;
            pool.retain_mut(|candidate| {
                candidate.values = candidate.draft.values(sample);
                candidate.values & remaining != remaining
            });
        }
    }

    /// The repair of a full set that still has several models.
    fn repair(&mut self, draws: &mut Draws) {
        if self.count == 1 {
            return;
        }
        let words = self.space.words();
        self.refresh_except();
        self.rescreen(true);
        for _ in 0..REPAIR_DRAWS {
            let values = self.draw(draws);
            // Models kept by a swap at each slot, counted on the sample: exact when it
            // holds every assignment failing at most one formula, a lower bound when it
            // holds every remaining model, else no bound.
            let screen = &self.screen;
            let (sampled, sampled_slot) = (screen.exclusive.iter().zip(0..self.chosen.len()))
                .map(|(exclusive, slot)| {
                    let kept = values & (screen.remaining | exclusive);
                    (kept.count_ones(), slot)
                })
                .min()
                .expect("the set is full");
            if screen.stride == 1 && sampled >= self.count {
                continue;
            }
            let formula = self.draft.formula();
            let table = self.table(&formula);
            let (count, slot) = if self.screen.covers_exclusive {
                (sampled, sampled_slot)
            } else {
                (self.except.iter().zip(0..self.chosen.len()))
                    .map(|(except, slot)| (count_common(except, &table, words), slot))
                    .min()
                    .expect("the set is full")
            };
            if count < self.count {
                self.chosen[slot] = Chosen { formula, table };
                self.update_models();
                if self.count == 1 {
                    return;
                }
                self.refresh_except();
                self.rescreen(true);
            }
        }
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
    let mut draws = Draws::new(rng);
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
                sample: Sample::new(space.variables()),
                remaining: 0,
                stride: 1,
                exclusive: [0; MAX_FORMULAS],
                covers_exclusive: false,
            },
            draft: Draft::new(),
            except: [[0; MAX_WORDS]; MAX_FORMULAS],
            space: &mut *space,
        };
        attempt.rescreen(false);
        attempt.fill(&mut draws, planned);
        attempt.repair(&mut draws);
        if attempt.count == 1 && attempt.chosen.len() >= MIN_FORMULAS {
            let implied = attempt.implied();
            return Construction {
                target,
                chosen: attempt.chosen,
                implied,
            };
        }
    }
}

/// `log2(x)` in 1/256 units, by integer arithmetic only (the same on every platform).
/// `x` is at most 2^12 here; 0 maps to 0.
fn log2_fixed(x: u32) -> i64 {
    if x == 0 {
        return 0;
    }
    let whole = 31 - x.leading_zeros();
    // `y` in [1, 2) as a 1.30 fixed-point number.
    let mut y = (u64::from(x) << 30) >> whole;
    let mut fraction = 0i64;
    for bit in (0..8).rev() {
        y = (y * y) >> 30;
        if y >= 2 << 30 {
            y >>= 1;
            fraction |= 1 << bit;
        }
    }
    i64::from(whole) * 256 + fraction
}

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
    fn constructions_have_their_target_as_only_model() {
        for (variables, depth) in [(4, 1), (6, 2), (8, 3), (10, 4), (12, 5)] {
            let mut space = Space::new(variables);
            for seed in 0..40 {
                let mut rng = TaskRng::from_seed(seed);
                let construction = construct(&mut rng, &mut space, depth);
                let mut models = *space.all();
                for chosen in &construction.chosen {
                    let mut table = [0; MAX_WORDS];
                    space.evaluate(&chosen.formula, &mut table);
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
