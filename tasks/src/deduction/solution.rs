//! Worked solutions: a short deduction narrative a small model can imitate.
//!
//! The narrative is derived, not recited: each step is a fact that follows from one formula
//! and the values already known ("since C is True, (3) can only hold if D is False"), found
//! with the generator's truth tables restricted to the assignments consistent with what is
//! known. When no single formula forces anything, it supposes the wrong value of a variable
//! and follows single-formula steps until some formula can no longer hold, if need be
//! splitting once more on both values of a second variable. Only if that fails too does it
//! fall back on an exhaustive case check, which it says it is.

use std::fmt::Write;

use super::construct::Chosen;
use super::formula::{variable_name, MAX_VARIABLES};
use super::tables::{and_into, count_common, Space, Table};

/// Values known so far and the assignments consistent with them.
#[derive(Clone)]
struct Knowledge {
    values: [Option<bool>; MAX_VARIABLES],
    consistent: Table,
}

/// A step: formula `formula` forces `forced` (variable, value) given `given`, known values
/// of some of its variables.
struct Step {
    formula: usize,
    given: Vec<(usize, bool)>,
    forced: Vec<(usize, bool)>,
}

/// What one round of single-formula reasoning finds.
enum Finding {
    Step(Step),
    /// Formula `k` can no longer hold.
    Contradiction(usize),
    Nothing,
}

struct Explainer<'a> {
    space: &'a Space,
    chosen: &'a [Chosen],
    /// The variables of each formula, one bit each.
    occurs: Vec<u16>,
}

impl Explainer<'_> {
    fn restrict(&self, knowledge: &mut Knowledge, variable: usize, value: bool) {
        knowledge.values[variable] = Some(value);
        let flip = if value { 0 } else { u64::MAX };
        knowledge
            .consistent
            .iter_mut()
            .zip(self.space.column(variable))
            .for_each(|(c, v)| *c &= v ^ flip);
    }

    fn apply(&self, knowledge: &mut Knowledge, step: &Step) {
        for &(variable, value) in &step.forced {
            self.restrict(knowledge, variable, value);
        }
    }

    /// The first formula that forces some unknown variable, or cannot hold at all.
    fn find(&self, knowledge: &Knowledge) -> Finding {
        let words = self.space.words();
        for (index, formula) in self.chosen.iter().enumerate() {
            let mut left = knowledge.consistent;
            left[..words]
                .iter_mut()
                .zip(&formula.table[..words])
                .for_each(|(l, t)| *l &= t);
            if count_common(&left, self.space.all(), words) == 0 {
                return Finding::Contradiction(index);
            }
            let mut forced = Vec::new();
            for variable in 0..self.space.variables() {
                if knowledge.values[variable].is_some() {
                    continue;
                }
                let column = self.space.column(variable);
                let some_true = left.iter().zip(column).any(|(l, c)| l & c != 0);
                let some_false = left.iter().zip(column).any(|(l, c)| l & !c != 0);
                if some_true != some_false {
                    forced.push((variable, some_true));
                }
            }
            if !forced.is_empty() {
                // The known values it uses: those of its own variables, dropping each that
                // the conclusion does not need.
                let mut given: Vec<(usize, bool)> = (0..self.space.variables())
                    .filter(|&v| self.occurs[index] >> v & 1 == 1)
                    .filter_map(|v| knowledge.values[v].map(|value| (v, value)))
                    .collect();
                let mut position = 0;
                while position < given.len() {
                    let mut fewer = given.clone();
                    fewer.remove(position);
                    if self.forces(index, &fewer, &forced) {
                        given = fewer;
                    } else {
                        position += 1;
                    }
                }
                return Finding::Step(Step {
                    formula: index,
                    given,
                    forced,
                });
            }
        }
        Finding::Nothing
    }

    /// Whether formula `index` with the values `given` forces the values `forced`.
    fn forces(&self, index: usize, given: &[(usize, bool)], forced: &[(usize, bool)]) -> bool {
        let words = self.space.words();
        let mut left = self.chosen[index].table;
        and_into(&mut left, self.space.all(), words);
        for &(variable, value) in given {
            let flip = if value { 0 } else { u64::MAX };
            left.iter_mut()
                .zip(self.space.column(variable))
                .for_each(|(l, c)| *l &= c ^ flip);
        }
        let possible = left[..words].iter().any(|&l| l != 0);
        possible
            && forced.iter().all(|&(variable, value)| {
                let flip = if value { u64::MAX } else { 0 };
                // No assignment left with the other value.
                left.iter()
                    .zip(self.space.column(variable))
                    .all(|(l, c)| l & (c ^ flip) == 0)
            })
    }

    /// Follows single-formula steps from `knowledge` (updating it) until none is left;
    /// returns them, and the formula that can no longer hold if one comes up.
    fn propagate(&self, knowledge: &mut Knowledge) -> (Vec<Step>, Option<usize>) {
        let mut steps = Vec::new();
        loop {
            match self.find(knowledge) {
                Finding::Contradiction(formula) => return (steps, Some(formula)),
                Finding::Step(step) => {
                    self.apply(knowledge, &step);
                    steps.push(step);
                }
                Finding::Nothing => return (steps, None),
            }
        }
    }

    /// Supposes `variable` has `value` and follows single-formula steps to a formula that
    /// fails; with `split`, may also try both values of one more variable.
    fn refute(
        &self,
        knowledge: &Knowledge,
        variable: usize,
        value: bool,
        split: bool,
    ) -> Option<Refutation> {
        let mut supposed = knowledge.clone();
        self.restrict(&mut supposed, variable, value);
        let (steps, failing) = self.propagate(&mut supposed);
        if let Some(failing) = failing {
            return Some(Refutation {
                variable,
                value,
                steps,
                failing,
                cases: None,
            });
        }
        if !split {
            return None;
        }
        (0..self.space.variables())
            .filter(|&other| supposed.values[other].is_none())
            .filter_map(|other| {
                let [when_true, when_false] = [true, false].map(|case| {
                    let mut branch = supposed.clone();
                    self.restrict(&mut branch, other, case);
                    let (steps, failing) = self.propagate(&mut branch);
                    failing.map(|failing| (steps, failing))
                });
                Some((other, when_true?, when_false?))
            })
            .min_by_key(|(_, (true_steps, _), (false_steps, _))| {
                true_steps.len() + false_steps.len()
            })
            .map(|(other, when_true, when_false)| Refutation {
                variable,
                value,
                steps,
                failing: usize::MAX,
                cases: Some((other, [when_true, when_false])),
            })
    }
}

/// Steps that end with a formula failing: the steps, and the formula.
type Chain = (Vec<Step>, usize);

/// Why `variable` cannot have `value`: after `steps`, formula `failing` fails, or, with
/// `cases`, each value of one more variable (true, then false) leads to a failing formula.
struct Refutation {
    variable: usize,
    value: bool,
    steps: Vec<Step>,
    failing: usize,
    cases: Option<(usize, [Chain; 2])>,
}

impl Refutation {
    fn length(&self) -> usize {
        self.steps.len()
            + self
                .cases
                .as_ref()
                .map_or(0, |(_, cases)| cases[0].0.len() + cases[1].0.len() + 2)
    }

    fn write(&self, text: &mut String) {
        let name = variable_name(self.variable);
        let _ = write!(text, "Suppose {name} were {}.", truth(self.value));
        for step in &self.steps {
            let _ = write!(text, " Then {}.", describe(step));
        }
        match &self.cases {
            None => {
                let _ = write!(text, " Then ({}) can no longer hold.", self.failing + 1);
            }
            Some((other, cases)) => {
                let other = variable_name(*other);
                for ((steps, failing), case) in cases.iter().zip([true, false]) {
                    let _ = write!(text, " If also {other} is {}", truth(case));
                    for step in steps {
                        let _ = write!(text, ", then {}", describe(step));
                    }
                    let _ = write!(text, ", and ({}) can no longer hold.", failing + 1);
                }
                let _ = write!(text, " Either way a formula fails.");
            }
        }
        let _ = writeln!(text, " So {name} is {}.", truth(!self.value));
    }
}

fn truth(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

fn list(pairs: &[(usize, bool)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|&(variable, value)| format!("{} is {}", variable_name(variable), truth(value)))
        .collect();
    match parts.len() {
        0 => String::new(),
        1 => parts[0].clone(),
        n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}

fn describe(step: &Step) -> String {
    let number = step.formula + 1;
    if step.given.is_empty() {
        format!("({number}) can only hold if {}", list(&step.forced))
    } else {
        format!(
            "since {}, ({number}) can only hold if {}",
            list(&step.given),
            list(&step.forced)
        )
    }
}

fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The worked solution of a construction whose unique model is `target`.
pub(super) fn worked_solution(space: &Space, chosen: &[Chosen], target: u32) -> String {
    let explainer = Explainer {
        space,
        chosen,
        occurs: chosen.iter().map(|c| c.formula.variables()).collect(),
    };
    let n = space.variables();
    let answer = |variable: usize| (target >> variable) & 1 == 1;
    let mut knowledge = Knowledge {
        values: [None; MAX_VARIABLES],
        consistent: *space.all(),
    };
    let mut text = format!(
        "I need the one assignment that makes all {} formulas true. \
         I look for values that a single formula forces.\n",
        chosen.len()
    );
    while let Some(variable) = (0..n).find(|&v| knowledge.values[v].is_none()) {
        if let Finding::Step(step) = explainer.find(&knowledge) {
            let _ = writeln!(text, "{}.", sentence(&describe(&step)));
            explainer.apply(&mut knowledge, &step);
            continue;
        }
        // No formula forces anything alone: refute a wrong value by following it, taking
        // the shortest refutation, and one that splits on a second variable only if no
        // direct one exists.
        let unknown: Vec<usize> = (0..n).filter(|&v| knowledge.values[v].is_none()).collect();
        let refutation = [false, true].into_iter().find_map(|split| {
            unknown
                .iter()
                .filter_map(|&v| explainer.refute(&knowledge, v, !answer(v), split))
                .min_by_key(Refutation::length)
        });
        match refutation {
            Some(refutation) => {
                refutation.write(&mut text);
                let v = refutation.variable;
                explainer.restrict(&mut knowledge, v, answer(v));
            }
            None => {
                let name = variable_name(variable);
                let _ = writeln!(
                    text,
                    "Checking the cases with {name} {} one by one, none satisfies every \
                     formula. So {name} is {}.",
                    truth(!answer(variable)),
                    truth(answer(variable))
                );
                explainer.restrict(&mut knowledge, variable, answer(variable));
            }
        }
    }
    let all: Vec<(usize, bool)> = (0..n).map(|v| (v, answer(v))).collect();
    let _ = write!(
        text,
        "So {}. With these values all {} formulas are true.",
        list(&all),
        chosen.len()
    );
    text
}
