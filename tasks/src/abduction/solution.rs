//! The worked solution: a backward-chaining trace per goal, in short sentences a small model
//! can imitate, ending with the answer.
//!
//! For an atom that holds, the trace follows the premise that first derives it and the
//! conditions that premise needs; for one that does not, it visits every premise concluding
//! it and names a condition that fails (an atom that cannot be established, recursively, or
//! a NOT whose atom holds). Atoms already settled are referred back to, and an atom met again
//! while it is being traced is a cycle, which supports nothing.

use std::fmt::Write as _;

use super::generate::Built;
use super::premise::{Lit, Op, Operand, Premise};

/// Renders the trace (the text inside `<think>`, without the tags).
pub(super) fn trace(built: &Built) -> String {
    let mut tracer = Tracer {
        built,
        out: String::with_capacity(1024),
        shown_holds: 0,
        shown_fails: 0,
        tracing: 0,
    };
    for (position, goal) in built.goals.iter().enumerate() {
        let name = built.name(goal.atom);
        tracer.line(
            0,
            &format!(
                "Goal ({}) {name}: assume {name} is true and trace back.",
                position + 1
            ),
        );
        if goal.reachable {
            tracer.holds(goal.atom, 1);
            tracer.line(0, &format!("{name} is reachable."));
        } else {
            tracer.fails(goal.atom, 1);
            tracer.line(0, &format!("{name} is unreachable."));
        }
    }
    let summary: Vec<String> = built
        .goals
        .iter()
        .enumerate()
        .map(|(position, goal)| {
            format!(
                "({}) {} is {}",
                position + 1,
                built.name(goal.atom),
                if goal.reachable {
                    "reachable"
                } else {
                    "unreachable"
                }
            )
        })
        .collect();
    let _ = write!(tracer.out, "So the answer is: {}.", summary.join(", "));
    tracer.out
}

struct Tracer<'b> {
    built: &'b Built,
    out: String,
    shown_holds: u128,
    shown_fails: u128,
    tracing: u128,
}

impl Tracer<'_> {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Explains why `atom` (derived) holds.
    fn holds(&mut self, atom: u8, indent: usize) {
        let name = self.built.name(atom);
        if self.built.is_known(atom) {
            self.line(indent, &format!("{name} is known."));
            return;
        }
        if self.shown_holds & (1 << atom) != 0 {
            self.line(indent, &format!("{name} holds (shown above)."));
            return;
        }
        let index = self.built.via[atom as usize] as usize;
        let premise = self.built.premises[index];
        self.line(
            indent,
            &format!(
                "{name} follows from premise {}: {}.",
                index + 1,
                self.built.premise_text(index)
            ),
        );
        // The conditions that made the premise fire, at the round it fired.
        let before = self.built.derived_before(self.built.round[atom as usize]);
        let true_lit = |lit: Lit| !lit.negated && before & (1 << lit.atom) != 0;
        let mut needed = Vec::with_capacity(4);
        let mut take = |op: Op, lits: &[Lit]| match op {
            Op::And => needed.extend(lits.iter().map(|lit| lit.atom)),
            Op::Or => needed.extend(lits.iter().find(|&&lit| true_lit(lit)).map(|lit| lit.atom)),
        };
        match premise.op {
            Op::And => {
                for operand in premise.operands() {
                    match *operand {
                        Operand::Lit(lit) => take(Op::And, &[lit]),
                        Operand::Group(left, right) => take(Op::Or, &[left, right]),
                    }
                }
            }
            Op::Or => {
                let chosen = premise.operands().iter().find(|operand| match **operand {
                    Operand::Lit(lit) => true_lit(lit),
                    Operand::Group(left, right) => true_lit(left) && true_lit(right),
                });
                match chosen {
                    Some(Operand::Lit(lit)) => take(Op::And, &[*lit]),
                    Some(Operand::Group(left, right)) => take(Op::And, &[*left, *right]),
                    None => {}
                }
            }
        }
        for needed_atom in needed {
            self.holds(needed_atom, indent + 1);
        }
        self.line(indent, &format!("So {name} holds."));
        self.shown_holds |= 1 << atom;
    }

    /// Explains why `atom` (not derived) cannot be established.
    fn fails(&mut self, atom: u8, indent: usize) {
        let name = self.built.name(atom);
        if self.shown_fails & (1 << atom) != 0 {
            self.line(
                indent,
                &format!("{name} cannot be established (shown above)."),
            );
            return;
        }
        if self.tracing & (1 << atom) != 0 {
            self.line(
                indent,
                &format!("{name} is already being traced: a cycle establishes nothing."),
            );
            return;
        }
        let concluding: Vec<usize> = (0..self.built.premises.len())
            .filter(|&index| self.built.premises[index].head == atom)
            .collect();
        if concluding.is_empty() {
            self.line(
                indent,
                &format!("{name} is not known and no premise concludes it."),
            );
            self.shown_fails |= 1 << atom;
            return;
        }
        self.tracing |= 1 << atom;
        for index in concluding {
            self.line(
                indent,
                &format!(
                    "{name} could follow from premise {}: {}.",
                    index + 1,
                    self.built.premise_text(index)
                ),
            );
            self.body_fails(&self.built.premises[index], indent + 1);
        }
        self.tracing &= !(1 << atom);
        self.line(indent, &format!("So {name} cannot be established."));
        self.shown_fails |= 1 << atom;
    }

    /// Names a failing condition of a body that is false in the closed world (every
    /// underived atom false): one failing conjunct, or every disjunct.
    fn body_fails(&mut self, premise: &Premise, indent: usize) {
        let derived = self.built.derived;
        let true_lit = |lit: Lit| (derived & (1 << lit.atom) != 0) != lit.negated;
        let operand_true = |operand: &Operand| match *operand {
            Operand::Lit(lit) => true_lit(lit),
            Operand::Group(left, right) => {
                premise.op.other().combine(true_lit(left), true_lit(right))
            }
        };
        let failing: Vec<Operand> = match premise.op {
            Op::And => premise
                .operands()
                .iter()
                .find(|operand| !operand_true(operand))
                .copied()
                .into_iter()
                .collect(),
            Op::Or => premise.operands().to_vec(),
        };
        for operand in failing {
            match operand {
                Operand::Lit(lit) => self.lit_fails(lit, indent),
                Operand::Group(left, right) => match premise.op.other() {
                    Op::And => {
                        let lit = if true_lit(left) { right } else { left };
                        self.lit_fails(lit, indent);
                    }
                    Op::Or => {
                        self.lit_fails(left, indent);
                        self.lit_fails(right, indent);
                    }
                },
            }
        }
    }

    fn lit_fails(&mut self, lit: Lit, indent: usize) {
        if !lit.negated {
            self.fails(lit.atom, indent);
            return;
        }
        let name = self.built.name(lit.atom);
        if self.built.is_known(lit.atom) {
            self.line(indent, &format!("NOT {name} fails: {name} is known."));
        } else {
            self.line(indent, &format!("NOT {name} fails because {name} holds:"));
            self.holds(lit.atom, indent + 1);
        }
    }
}
