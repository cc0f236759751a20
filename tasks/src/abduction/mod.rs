//! Abduction: reverse rule-graph search (arXiv 2505.10554, task 3).
//!
//! A puzzle lists premises `(body) => HEAD`, whose bodies combine atoms with AND, OR and NOT,
//! a set of known atoms, and goals; the answer says, goal by goal, whether the goal is
//! reachable. This module generates such puzzles level by level, renders them, and verifies
//! them by reading the text back. It does not grade model responses (that is
//! [`super::reward`]).
//!
//! # Semantics
//!
//! As in the paper, a goal is *reachable* when it is classically entailed: it is true in
//! every model of the premises (read as implications `body -> head`) in which the known
//! atoms are true. Two consequences shape the family:
//!
//! - Setting every atom true satisfies every premise, so no atom is ever forced false, and
//!   a `NOT X` condition can never be *established*. It can only fail (when `X` holds).
//! - With NOT, entailment can differ from what a reader who chains forward would conclude:
//!   `(NOT A) => G` together with `(A) => G` entails `G` by case analysis, and
//!   `(NOT A) => G` alone entails nothing, though a closed-world reader (`A` is not derived,
//!   so `NOT A` holds) would derive `G`.
//!
//! The generator emits only puzzles on which these readings cannot differ. Let `D` be what
//! forward chaining derives when `NOT X` is never taken as established (three-valued,
//! Kleene); `D` is always entailed. The generator also requires that the closed world
//! "exactly `D` is true" be itself a model, which makes it a countermodel for every atom
//! outside `D`. So on every emitted puzzle, classical entailment, this forward chaining, and
//! negation-as-failure forward chaining all give the same answer: a model that reasons in
//! any of these ways is graded on its tracing, not on our reading of NOT.
//!
//! # Verification
//!
//! [`Family::verify`] parses the puzzle text back (it never sees the generator's
//! structures) and decides every goal by exact entailment: it enumerates, 64 assignments to
//! a machine word, the models of the premises that can matter for that goal (those whose
//! heads lie in the goal's backward cone; atoms that conclude nothing and occur with one
//! polarity only are fixed to their worst case, which keeps entailment exact), refusing a
//! goal that leaves more than 24 atoms free. When the premises are NOT-free it also computes
//! the least model by forward chaining, and both must agree. It then checks the
//! guarantees above (three-valued chaining equals entailment; the closed world is a model),
//! the level (goal count, derivation depth of each reachable goal, premise count) and the
//! layout.
//!
//! # Layouts
//!
//! - `shortcut-free` (the default): the level's number of goals, each reachable with
//!   probability 1/2, so answers balance; a reachable goal is never itself a known atom and
//!   every goal concludes some premise, so neither listing gives the answer away.
//! - `paper`: the released data's layout: exactly 3 goals, exactly 1 reachable, and that one
//!   is itself listed among the known atoms (the released data's shortcut, reproduced on
//!   purpose). Its chain is built all the same, so it is also derivable. The premise counts
//!   follow the release's generator (arXiv 2505.10554): an unreachable goal's chain is the
//!   level's depth less 1 or 2 premises (possibly none: the goal then concludes nothing),
//!   cycles add no premise and a broken link no premise behind it, so a puzzle has
//!   `d + 2 (d - r) + distractors` premises, mean 8.5 at level 1 and 13.5 at level 2 (the
//!   release's generator: 8.35 and 13.38, standard deviation 1.9, after its validity filter).

mod generate;
mod parse;
mod premise;
mod solution;
mod solve;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{AnswerKind, Family, Instance, Options, TaskRng, VerifyError};
use generate::Built;
use premise::push_name;

/// The abduction family.
pub struct Abduction;

/// The settings of one level (arXiv 2505.10554, the levels table).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelSpec {
    /// Chain depth range: premises on the path from known atoms to a goal.
    depth: (u32, u32),
    /// Goals per puzzle (shortcut-free layout; the paper layout always has 3).
    goals: usize,
    /// Distractor premises range.
    distractors: (u32, u32),
    /// Probability, as numerator and denominator, that a goal's chain gets a cycle.
    cycle: (u64, u64),
}

const LEVELS: [LevelSpec; 5] = [
    LevelSpec {
        depth: (2, 3),
        goals: 1,
        distractors: (3, 5),
        cycle: (1, 10),
    },
    LevelSpec {
        depth: (3, 4),
        goals: 2,
        distractors: (5, 7),
        cycle: (3, 20),
    },
    LevelSpec {
        depth: (4, 5),
        goals: 2,
        distractors: (7, 9),
        cycle: (1, 5),
    },
    LevelSpec {
        depth: (5, 6),
        goals: 3,
        distractors: (8, 10),
        cycle: (1, 4),
    },
    LevelSpec {
        depth: (6, 7),
        goals: 3,
        distractors: (10, 12),
        cycle: (3, 10),
    },
];

/// Goals in the paper layout.
const PAPER_GOALS: usize = 3;

impl LevelSpec {
    fn of(level: u32) -> Option<LevelSpec> {
        LEVELS.get((level as usize).checked_sub(1)?).copied()
    }

    /// Goals under `layout`.
    fn goal_count(&self, layout: Layout) -> usize {
        match layout {
            Layout::ShortcutFree => self.goals,
            Layout::Paper => PAPER_GOALS,
        }
    }

    /// The most premises a puzzle of this level can have under `layout`: per goal its
    /// chain, one cycle premise and one premise behind a broken link; then the distractors.
    fn max_premises(&self, layout: Layout) -> usize {
        self.goal_count(layout) * (self.depth.1 as usize + 2) + self.distractors.1 as usize
    }

    /// The fewest premises under `layout`: the chains and the distractors. In the paper
    /// layout only the reachable goal's chain is whole (an unreachable goal's may be empty).
    fn min_premises(&self, layout: Layout) -> usize {
        let whole_chains = match layout {
            Layout::ShortcutFree => self.goals,
            Layout::Paper => 1,
        };
        whole_chains * self.depth.0 as usize + self.distractors.0 as usize
    }
}

/// Where the goals stand relative to the known atoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The level's goal count, any mix; reachable goals are never known atoms.
    ShortcutFree,
    /// 3 goals, 1 reachable, and that one listed among the known atoms.
    Paper,
}

impl Layout {
    fn parse(name: Option<&str>) -> Option<Layout> {
        match name {
            None | Some("shortcut-free") => Some(Layout::ShortcutFree),
            Some("paper") => Some(Layout::Paper),
            Some(_) => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::ShortcutFree => "shortcut-free",
            Layout::Paper => "paper",
        }
    }
}

/// The paper's guidance, and what "reachable" means, after the lists.
const GUIDANCE: &str = "For each goal, assume it is true, find which premises lead to it, \
trace back what must be established, and check whether the known atoms get there. \
A premise (condition) => X means that X is true whenever the condition is true. \
The known atoms are true; any other atom may be true or false unless the premises force it \
to be true. A goal is reachable if it is true in every case where the known atoms are true \
and all premises hold; otherwise it is unreachable.";

const INSTRUCTION: &str = "For each goal, say inside the answer tags whether it is reachable, \
one per line in goal order, like (1) X is reachable or (2) Y is unreachable.";

impl Family for Abduction {
    fn name(&self) -> &'static str {
        "abduction"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn instruction(&self) -> &'static str {
        INSTRUCTION
    }

    fn answer_kind(&self) -> AnswerKind {
        AnswerKind::Reachability
    }

    fn generate(&self, level: u32, rng: &mut TaskRng, options: &Options) -> Instance {
        let level = level.clamp(1, self.max_level());
        let spec = LevelSpec::of(level).expect("level clamped into the table");
        // The generate node validates layouts; an unknown one falls back to the default.
        let layout = Layout::parse(options.layout.as_deref()).unwrap_or(Layout::ShortcutFree);
        let built = generate::build(&spec, layout, rng);
        let solution = options.with_solution.then(|| solution::trace(&built));
        Instance {
            task: "abduction".into(),
            level,
            puzzle: render_puzzle(&built),
            answer: render_answer(&built),
            params: params(&built, layout),
            solution,
        }
    }

    fn verify(&self, instance: &Instance) -> Result<(), VerifyError> {
        solve::verify(instance)
    }

    fn answer_balance(&self, answer: &str) -> Vec<(&'static str, u64)> {
        let (mut reachable, mut unreachable) = (0, 0);
        for line in answer.lines().map(str::trim) {
            if line.ends_with(" is unreachable") {
                unreachable += 1;
            } else if line.ends_with(" is reachable") {
                reachable += 1;
            }
        }
        vec![("reachable", reachable), ("unreachable", unreachable)]
    }
}

/// Writes one premise, `(body) => HEAD`, fully parenthesized.
fn push_premise(out: &mut String, built: &Built, index: usize) {
    let premise = &built.premises[index];
    premise.write(out, &built.names);
    out.push_str(" => ");
    push_name(out, built.names[premise.head as usize]);
}

fn render_puzzle(built: &Built) -> String {
    let mut out = String::with_capacity(128 + 32 * built.premises.len());
    out.push_str("Premises:\n");
    for index in 0..built.premises.len() {
        let _ = write!(out, "{}. ", index + 1);
        push_premise(&mut out, built, index);
        out.push('\n');
    }
    out.push_str("Known atoms: ");
    // Listed by name, so the order says nothing about roles.
    let mut known: Vec<u8> = premise::atoms_of(built.known)
        .map(|atom| built.names[atom as usize])
        .collect();
    known.sort_unstable();
    for (position, &name) in known.iter().enumerate() {
        if position > 0 {
            out.push_str(", ");
        }
        push_name(&mut out, name);
    }
    out.push_str("\nGoals: ");
    for (position, goal) in built.goals.iter().enumerate() {
        if position > 0 {
            out.push_str(", ");
        }
        push_name(&mut out, built.names[goal.atom as usize]);
    }
    out.push_str("\n\n");
    out.push_str(GUIDANCE);
    out
}

fn render_answer(built: &Built) -> String {
    let mut out = String::with_capacity(24 * built.goals.len());
    for (position, goal) in built.goals.iter().enumerate() {
        if position > 0 {
            out.push('\n');
        }
        let _ = write!(out, "({}) ", position + 1);
        push_name(&mut out, built.names[goal.atom as usize]);
        out.push_str(if goal.reachable {
            " is reachable"
        } else {
            " is unreachable"
        });
    }
    out
}

fn params(built: &Built, layout: Layout) -> BTreeMap<String, Value> {
    let reachable = built.goals.iter().filter(|goal| goal.reachable).count();
    let entries: [(&str, Value); 9] = [
        ("depth", built.depth_used.into()),
        ("goals", built.goals.len().into()),
        ("premises", built.premises.len().into()),
        ("distractors", built.distractors.into()),
        ("known", built.known.count_ones().into()),
        ("atoms", built.atom_count().into()),
        ("cycles", built.cycles.into()),
        ("layout", layout.name().into()),
        ("reachable", reachable.into()),
    ];
    entries
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}
