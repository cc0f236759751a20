//! Puzzle construction: goal chains, broken chains, cycles and distractors, over atoms held
//! in bit masks so the hot path allocates a handful of vectors per instance.
//!
//! Every atom ends up in one of two classes, and the construction keeps them apart:
//! derived (`D`: the known atoms and what forward chaining reaches from them without ever
//! taking `NOT X` as established) and dead (everything else). Each premise added either
//! does not fire and is false in the closed world "exactly `D` true", or concludes an atom
//! of `D` without shortening any derivation, or derives a fresh atom nothing else mentions;
//! a known atom minted along the way joins `D` at once, before the next premise is judged.
//! So the closed world stays a model, and reachability equals membership in `D` (module
//! docs of [`super`]). A final pass recomputes `D` from scratch and rejects the instance
//! if any guarantee fails; the builder then starts over from the same stream.

use std::fmt::Write as _;

use super::premise::{
    atoms_of, bit, neg, pos, push_name, single, Lit, Mask, Op, Operand, Premise, MAX_ATOMS,
    NAME_COUNT, NOT_DERIVED,
};
use super::{Layout, LevelSpec};
use crate::TaskRng;

/// Most atoms a goal's backward cone may leave free for the verifier's enumeration (it
/// accepts up to 24; this bound is conservative, see [`cone_cost`]).
const CONE_LIMIT: u32 = 20;
/// Candidate distractors tried before falling back to an always-safe one.
const DISTRACTOR_TRIES: u32 = 6;

/// A goal and its status.
#[derive(Debug, Clone, Copy)]
pub(super) struct Goal {
    pub atom: u8,
    pub reachable: bool,
}

/// A finished puzzle, with what the forward pass found (for the worked solution).
pub(super) struct Built {
    /// Name id of each atom.
    pub names: Vec<u8>,
    /// In display order.
    pub premises: Vec<Premise>,
    /// As displayed (in the paper layout, including the reachable goal).
    pub known: Mask,
    pub goals: Vec<Goal>,
    /// The forward pass over the known atoms (without the paper layout's listed goal).
    pub derived: Mask,
    /// Round at which each atom is derived ([`NOT_DERIVED`] if never).
    pub round: [u8; MAX_ATOMS],
    /// The premise (display index) that derives each derived, non-known atom first.
    pub via: [u8; MAX_ATOMS],
    pub depth_used: u32,
    pub distractors: u32,
    pub cycles: u32,
}

impl Built {
    /// Atoms that appear in the text.
    pub(super) fn atom_count(&self) -> u32 {
        let mut seen = self.known;
        for premise in &self.premises {
            seen |= bit(premise.head) | premise.atom_masks().0;
        }
        for goal in &self.goals {
            seen |= bit(goal.atom);
        }
        seen.count_ones()
    }

    pub(super) fn is_known(&self, atom: u8) -> bool {
        self.known & bit(atom) != 0
    }

    /// Atoms derived strictly before `round`.
    pub(super) fn derived_before(&self, round: u8) -> Mask {
        atoms_of(self.derived)
            .filter(|&atom| self.round[atom as usize] < round)
            .fold(0, |mask, atom| mask | bit(atom))
    }

    pub(super) fn name(&self, atom: u8) -> String {
        let mut out = String::with_capacity(2);
        push_name(&mut out, self.names[atom as usize]);
        out
    }

    pub(super) fn premise_text(&self, index: usize) -> String {
        let mut out = String::new();
        let premise = &self.premises[index];
        premise.write(&mut out, &self.names);
        let _ = write!(out, " => {}", self.name(premise.head));
        out
    }
}

/// Generates a puzzle of `spec` under `layout`, retrying until every guarantee holds (by
/// construction the first attempt does; the retry is a safety net).
pub(super) fn build(spec: &LevelSpec, layout: Layout, rng: &mut TaskRng) -> Built {
    loop {
        if let Some(built) = try_build(spec, layout, rng) {
            return built;
        }
    }
}

/// One attempt: `None` if a guarantee fails (or the atoms run out).
pub(super) fn try_build(spec: &LevelSpec, layout: Layout, rng: &mut TaskRng) -> Option<Built> {
    Builder::new(rng, layout).build(spec)
}

/// Forward chaining that never takes `NOT X` as established: the derived atoms, the round
/// at which each is derived, and the first premise deriving each non-known one.
fn forward(premises: &[Premise], known: Mask) -> (Mask, [u8; MAX_ATOMS], [u8; MAX_ATOMS]) {
    let mut round = [NOT_DERIVED; MAX_ATOMS];
    let mut via = [0u8; MAX_ATOMS];
    for atom in atoms_of(known) {
        round[atom as usize] = 0;
    }
    let mut derived = known;
    for current in 1..NOT_DERIVED {
        let mut new = 0;
        for (index, premise) in premises.iter().enumerate() {
            let head = bit(premise.head);
            if (derived | new) & head == 0 && premise.fires(derived) {
                new |= head;
                round[premise.head as usize] = current;
                via[premise.head as usize] = index as u8;
            }
        }
        if new == 0 {
            break;
        }
        derived |= new;
    }
    (derived, round, via)
}

/// An upper bound on the atoms the verifier's enumeration leaves free for `goal`: the
/// non-known atoms of the goal's backward cone that conclude a premise or occur negated
/// (the verifier fixes the others).
fn cone_cost(premises: &[Premise], known: Mask, goal: u8) -> u32 {
    let mut cone = bit(goal);
    let (mut heads, mut negated) = (0, 0);
    loop {
        let before = cone;
        for premise in premises {
            if cone & bit(premise.head) != 0 {
                let (atoms, negated_atoms) = premise.atom_masks();
                cone |= atoms;
                heads |= bit(premise.head);
                negated |= negated_atoms;
            }
        }
        if cone == before {
            break;
        }
    }
    ((heads | negated) & cone & !known).count_ones()
}

struct Builder<'r> {
    rng: &'r mut TaskRng,
    names: Vec<u8>,
    taken: [u64; 4],
    premises: Vec<Premise>,
    known: Mask,
    /// Filler atoms nothing may ever establish.
    dead: Mask,
    /// While distractors are added: what forward chaining derives, and when (kept current
    /// as premises and known atoms are added).
    derived: Mask,
    round: [u8; MAX_ATOMS],
    /// Per goal, its chain `Y_0` (known) to `Y_d` (the goal).
    chains: [[u8; 8]; 3],
    /// Per goal, its chain's length `d` (premises on it; 0: the goal alone, paper layout).
    lengths: [usize; 3],
    layout: Layout,
    overflow: bool,
}

impl<'r> Builder<'r> {
    fn new(rng: &'r mut TaskRng, layout: Layout) -> Self {
        Builder {
            rng,
            names: Vec::with_capacity(48),
            taken: [0; 4],
            premises: Vec::with_capacity(48),
            known: 0,
            dead: 0,
            derived: 0,
            round: [NOT_DERIVED; MAX_ATOMS],
            chains: [[0; 8]; 3],
            lengths: [0; 3],
            layout,
            overflow: false,
        }
    }

    fn fresh(&mut self) -> u8 {
        if self.names.len() >= MAX_ATOMS {
            self.overflow = true;
            return 0;
        }
        let name = loop {
            let name = self.rng.below(NAME_COUNT) as usize;
            if self.taken[name / 64] & (1 << (name % 64)) == 0 {
                self.taken[name / 64] |= 1 << (name % 64);
                break name as u8;
            }
        };
        self.names.push(name);
        (self.names.len() - 1) as u8
    }

    fn pick(&mut self, mask: Mask) -> u8 {
        let skip = self.rng.below(u64::from(mask.count_ones())) as usize;
        atoms_of(mask)
            .nth(skip)
            .expect("skip is below the mask's population")
    }

    /// A known atom other than `exclude`: an existing one half the time, else a new one
    /// (derived at round 0 from the start: distractors are admitted against it).
    fn known_atom(&mut self, exclude: u8) -> u8 {
        let others = self.known & !bit(exclude);
        if others != 0 && self.rng.chance(1, 2) {
            return self.pick(others);
        }
        let atom = self.fresh();
        self.known |= bit(atom);
        self.derived |= bit(atom);
        self.round[atom as usize] = 0;
        atom
    }

    /// A dead filler atom: an existing one a third of the time, else a new one.
    fn dead_atom(&mut self, exclude: u8) -> u8 {
        let others = self.dead & !bit(exclude);
        if others != 0 && self.rng.chance(1, 3) {
            return self.pick(others);
        }
        let atom = self.fresh();
        self.dead |= bit(atom);
        atom
    }

    /// A premise with its operands (and group members) in random order.
    fn premise(&mut self, op: Op, operands: &[Operand], head: u8) -> Premise {
        // A lone group is its two literals under the group's operator: `(A1 AND B2)`,
        // not `((A1 AND B2))`.
        if let [Operand::Group(left, right)] = *operands {
            return self.premise(op.other(), &[single(left), single(right)], head);
        }
        let mut slots = [single(pos(0)); 3];
        slots[..operands.len()].copy_from_slice(operands);
        for slot in &mut slots[..operands.len()] {
            if let Operand::Group(left, right) = *slot {
                if self.rng.chance(1, 2) {
                    *slot = Operand::Group(right, left);
                }
            }
        }
        self.rng.shuffle(&mut slots[..operands.len()]);
        Premise {
            op,
            operands: slots,
            len: operands.len() as u8,
            head,
        }
    }

    fn add(&mut self, op: Op, operands: &[Operand], head: u8) {
        let premise = self.premise(op, operands, head);
        self.premises.push(premise);
    }

    /// An intact chain step: `link` (the previous chain atom) suffices, with decoration
    /// that neither helps nor hinders.
    fn step(&mut self, link: u8, head: u8) {
        let link_lit = pos(link);
        match self.rng.below(6) {
            0 => self.add(Op::And, &[single(link_lit)], head),
            1 => {
                let known = self.known_atom(link);
                self.add(Op::And, &[single(link_lit), single(pos(known))], head);
            }
            2 => {
                let dead = self.dead_atom(link);
                self.add(Op::Or, &[single(link_lit), single(pos(dead))], head);
            }
            3 => {
                let known = self.known_atom(link);
                self.add(Op::Or, &[single(link_lit), single(neg(known))], head);
            }
            4 => {
                let known = self.known_atom(link);
                let dead = self.dead_atom(link);
                self.add(
                    Op::And,
                    &[single(link_lit), Operand::Group(pos(known), pos(dead))],
                    head,
                );
            }
            _ => {
                let known = self.known_atom(link);
                let dead = self.dead_atom(link);
                self.add(
                    Op::Or,
                    &[Operand::Group(link_lit, pos(known)), single(pos(dead))],
                    head,
                );
            }
        }
    }

    /// The step where an unreachable goal's chain breaks. `below` holds the chain atoms
    /// under `link` (all derived).
    fn broken_step(&mut self, link: u8, head: u8, below: Mask) {
        let link_lit = pos(link);
        match self.rng.below(3) {
            // A conjunct that nothing establishes.
            0 => {
                let dead = self.dead_atom(link);
                if self.rng.chance(1, 2) {
                    self.add(Op::And, &[single(link_lit), single(pos(dead))], head);
                } else {
                    let known = self.known_atom(link);
                    self.add(
                        Op::And,
                        &[single(link_lit), single(pos(known)), single(pos(dead))],
                        head,
                    );
                }
            }
            // A NOT that fails: its atom is known, or derived lower in the chain.
            1 => {
                let holding = if below != 0 && self.rng.chance(1, 3) {
                    self.pick(below)
                } else {
                    self.known_atom(link)
                };
                self.add(Op::And, &[single(link_lit), single(neg(holding))], head);
            }
            // A missing link: the step needs an atom that nothing (or only a dead end) gives.
            _ => {
                let missing = self.fresh();
                self.dead |= bit(missing);
                if self.rng.chance(1, 2) {
                    self.add(Op::And, &[single(pos(missing))], head);
                } else {
                    let other = self.dead_atom(missing);
                    self.add(Op::Or, &[single(pos(missing)), single(pos(other))], head);
                }
                // The paper layout keeps the release's premise count: the link alone.
                if self.layout == Layout::ShortcutFree && self.rng.chance(1, 2) {
                    let deeper = self.dead_atom(missing);
                    let known = self.known_atom(deeper);
                    self.add(Op::And, &[single(pos(deeper)), single(pos(known))], missing);
                }
            }
        }
    }

    /// Builds the chain of goal `index`: `depth` premises from a known atom to `goal`,
    /// broken at a random step when the goal is to be unreachable. A chain of length 0 is
    /// the goal alone, concluding no premise.
    fn chain(&mut self, index: usize, goal: u8, reachable: bool, depth: usize) {
        self.lengths[index] = depth;
        if depth == 0 {
            self.chains[index][0] = goal;
            return;
        }
        let base = self.known_atom(goal);
        self.chains[index][0] = base;
        let break_at = (!reachable).then(|| self.rng.range(1, depth as i64) as usize);
        let mut below: Mask = 0;
        for step in 1..=depth {
            let link = self.chains[index][step - 1];
            let head = if step == depth { goal } else { self.fresh() };
            self.chains[index][step] = head;
            if break_at == Some(step) {
                self.broken_step(link, head, below & !bit(link));
            } else {
                self.step(link, head);
            }
            if break_at.is_none_or(|at| step < at) {
                below |= bit(head);
            }
        }
    }

    /// With the level's probability, a premise back from a chain atom to an earlier one:
    /// a cycle that never shortens a derivation nor revives a dead atom.
    fn cycle(&mut self, index: usize, depth: usize, chance: (u64, u64)) -> bool {
        if !self.rng.chance(chance.0, chance.1) {
            return false;
        }
        let lower = self.rng.range(1, depth as i64 - 1) as usize;
        let upper = self
            .rng
            .range(lower as i64 + 1, depth.min(lower + 2) as i64) as usize;
        let (from, to) = (self.chains[index][upper], self.chains[index][lower]);
        if self.rng.chance(3, 4) {
            self.add(Op::And, &[single(pos(from))], to);
        } else {
            let known = self.known_atom(from);
            self.add(Op::And, &[single(pos(from)), single(pos(known))], to);
        }
        true
    }

    /// A random body atom for distractors aimed at chain `index`: known, dead, or from
    /// that chain (keeping goals' cones apart).
    fn body_atom(&mut self, index: usize) -> u8 {
        match self.rng.below(3) {
            0 if self.known != 0 => self.pick(self.known),
            1 if self.dead != 0 => self.pick(self.dead),
            _ => self.chains[index][self.rng.range(0, self.lengths[index] as i64) as usize],
        }
    }

    /// One candidate distractor, and whether its head is a fresh atom.
    fn candidate(&mut self, goals: usize) -> (Premise, bool) {
        let index = self.rng.below(goals as u64) as usize;
        let kind = self.rng.below(5);
        // A dead alternative for a chain atom: its body is false in the closed world. (A
        // chain of length 0 offers its goal.)
        if kind < 2 {
            let length = self.lengths[index];
            let head =
                self.chains[index][self.rng.range(length.min(1) as i64, length as i64) as usize];
            let other = self.body_atom(index);
            let premise = match self.rng.below(4) {
                0 => {
                    let dead = self.dead_atom(other);
                    self.premise(Op::And, &[single(pos(other)), single(pos(dead))], head)
                }
                1 => {
                    let known = self.known_atom(other);
                    self.premise(Op::And, &[single(pos(other)), single(neg(known))], head)
                }
                2 => {
                    let dead = self.dead_atom(head);
                    let known = self.known_atom(dead);
                    self.premise(
                        Op::And,
                        &[single(pos(other)), Operand::Group(pos(dead), neg(known))],
                        head,
                    )
                }
                _ => {
                    let dead = self.dead_atom(head);
                    let also = self.dead_atom(dead);
                    self.premise(Op::Or, &[single(pos(dead)), single(pos(also))], head)
                }
            };
            return (premise, false);
        }
        // A derivable atom that leads nowhere.
        if kind == 2 {
            let head = self.fresh();
            let base = self.pick(self.known);
            let premise = match self.rng.below(3) {
                0 => self.premise(Op::And, &[single(pos(base))], head),
                1 => {
                    let known = self.known_atom(base);
                    self.premise(Op::And, &[single(pos(base)), single(pos(known))], head)
                }
                _ => {
                    let other = self.body_atom(index);
                    self.premise(Op::Or, &[single(pos(base)), single(pos(other))], head)
                }
            };
            return (premise, true);
        }
        // Anything over the chain's neighbourhood; the admission test decides.
        let fresh = self.rng.chance(1, 3);
        let head = if fresh {
            self.fresh()
        } else {
            self.body_atom(index)
        };
        let op = if self.rng.chance(1, 2) {
            Op::And
        } else {
            Op::Or
        };
        let count = self.rng.range(1, 3) as usize;
        let mut operands = [single(pos(0)); 3];
        for operand in &mut operands[..count] {
            let first = self.random_lit(index);
            *operand = if self.rng.chance(1, 4) {
                Operand::Group(first, self.random_lit(index))
            } else {
                single(first)
            };
        }
        (self.premise(op, &operands[..count], head), fresh)
    }

    fn random_lit(&mut self, index: usize) -> Lit {
        let atom = self.body_atom(index);
        Lit {
            atom,
            negated: self.rng.chance(1, 4),
        }
    }

    /// Whether adding `premise` keeps the invariants (module docs), updating `derived` and
    /// `round` when it derives its fresh head.
    fn admit(
        premise: &Premise,
        fresh: bool,
        derived: &mut Mask,
        round: &mut [u8; MAX_ATOMS],
    ) -> bool {
        let head = bit(premise.head);
        if !premise.holds(*derived) {
            return true;
        }
        match premise.fire_round(round) {
            Some(fired) if *derived & head != 0 => round[premise.head as usize] <= fired + 1,
            Some(fired) if fresh => {
                *derived |= head;
                round[premise.head as usize] = fired + 1;
                true
            }
            Some(_) => false,
            // True only through a NOT of an underived atom: harmless for a derived head.
            None => *derived & head != 0,
        }
    }

    fn build(mut self, spec: &LevelSpec) -> Option<Built> {
        let layout = self.layout;
        let depth = self
            .rng
            .range(i64::from(spec.depth.0), i64::from(spec.depth.1)) as usize;
        let goal_count = spec.goal_count(layout);
        let mut goals = [Goal {
            atom: 0,
            reachable: false,
        }; 3];
        let paper_reachable = self.rng.below(goal_count as u64) as usize;
        for (index, goal) in goals[..goal_count].iter_mut().enumerate() {
            goal.reachable = match layout {
                Layout::ShortcutFree => self.rng.chance(1, 2),
                Layout::Paper => index == paper_reachable,
            };
        }
        for goal in &mut goals[..goal_count] {
            goal.atom = self.fresh();
        }
        for (index, goal) in goals[..goal_count].iter().enumerate() {
            // The release's generator (arXiv 2505.10554) keeps an unreachable goal's chain
            // minus its last 1 or 2 premises; the paper layout does the same.
            let length = match layout {
                Layout::Paper if !goal.reachable => {
                    depth.saturating_sub(self.rng.range(1, 2) as usize)
                }
                _ => depth,
            };
            self.chain(index, goal.atom, goal.reachable, length);
        }
        // The release's cycles reuse chain atoms and add no premise: none in its layout.
        let mut cycles = 0;
        if layout == Layout::ShortcutFree {
            for index in 0..goal_count {
                cycles += u32::from(self.cycle(index, depth, spec.cycle));
            }
        }

        (self.derived, self.round, _) = forward(&self.premises, self.known);
        let distractors = self
            .rng
            .range(i64::from(spec.distractors.0), i64::from(spec.distractors.1))
            as u32;
        for _ in 0..distractors {
            let mut accepted = None;
            for _ in 0..DISTRACTOR_TRIES {
                let (premise, fresh) = self.candidate(goal_count);
                // Judged after the candidate is drawn: drawing may add known atoms.
                let (mut next_derived, mut next_round) = (self.derived, self.round);
                if !Self::admit(&premise, fresh, &mut next_derived, &mut next_round) {
                    continue;
                }
                self.premises.push(premise);
                let fits = goals[..goal_count]
                    .iter()
                    .all(|goal| cone_cost(&self.premises, self.known, goal.atom) <= CONE_LIMIT);
                self.premises.pop();
                if fits {
                    accepted = Some(premise);
                    (self.derived, self.round) = (next_derived, next_round);
                    break;
                }
            }
            // Fallback, always admissible: a fresh atom behind a dead one, in no goal's cone.
            let premise = match accepted {
                Some(premise) => premise,
                None => {
                    let head = self.fresh();
                    let dead = self.dead_atom(head);
                    self.premise(Op::And, &[single(pos(dead))], head)
                }
            };
            self.premises.push(premise);
        }

        let mut premises = std::mem::take(&mut self.premises);
        self.rng.shuffle(&mut premises);
        if self.overflow || premises.len() > usize::from(u8::MAX) {
            return None;
        }
        // The guarantees, from scratch.
        let (derived, round, via) = forward(&premises, self.known);
        let closed_world_is_model = premises
            .iter()
            .all(|premise| derived & bit(premise.head) != 0 || !premise.holds(derived));
        let goals_hold = goals[..goal_count].iter().all(|goal| {
            let reached = derived & bit(goal.atom) != 0;
            reached == goal.reachable
                && (!reached || usize::from(round[goal.atom as usize]) == depth)
        });
        let cones_fit = goals[..goal_count]
            .iter()
            .all(|goal| cone_cost(&premises, self.known, goal.atom) <= CONE_LIMIT);
        if !(closed_world_is_model && goals_hold && cones_fit) {
            return None;
        }
        let mut known = self.known;
        if layout == Layout::Paper {
            for goal in goals[..goal_count].iter().filter(|goal| goal.reachable) {
                known |= bit(goal.atom);
            }
        }
        Some(Built {
            names: self.names,
            premises,
            known,
            goals: goals[..goal_count].to_vec(),
            derived,
            round,
            via,
            depth_used: depth as u32,
            distractors,
            cycles,
        })
    }
}
