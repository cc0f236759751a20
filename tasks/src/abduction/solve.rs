//! The verifier: reads a puzzle back from its text and decides each goal from scratch,
//! sharing nothing with the generator but the level table.
//!
//! Entailment is decided exactly by enumerating assignments, 64 to a machine word, over the
//! atoms that can matter for the goal ([`entailed`]); NOT-free programs are also solved by
//! forward chaining to the least model, and the two must agree.

use super::parse::{parse_answer, parse_puzzle, Expr, Program, Rule};
use super::{Layout, LevelSpec};
use crate::{Instance, VerifyError};

/// Most atoms the enumeration leaves free (2^24 assignments, 2^18 words).
const MAX_FREE: usize = 24;

/// Two-valued truth.
fn holds(expr: &Expr, truth: &[bool]) -> bool {
    match expr {
        Expr::Atom(atom) => truth[*atom],
        Expr::Not(inner) => !holds(inner, truth),
        Expr::And(operands) => operands.iter().all(|operand| holds(operand, truth)),
        Expr::Or(operands) => operands.iter().any(|operand| holds(operand, truth)),
    }
}

/// Kleene's three-valued truth (`None`: unknown); atoms are true if in `truth`, else unknown.
fn kleene(expr: &Expr, truth: &[bool]) -> Option<bool> {
    match expr {
        Expr::Atom(atom) => truth[*atom].then_some(true),
        Expr::Not(inner) => kleene(inner, truth).map(|value| !value),
        Expr::And(operands) => operands
            .iter()
            .try_fold(Some(true), |value, operand| match kleene(operand, truth) {
                Some(false) => Err(()),
                Some(true) => Ok(value),
                None => Ok(None),
            })
            .unwrap_or(Some(false)),
        Expr::Or(operands) => operands
            .iter()
            .try_fold(Some(false), |value, operand| match kleene(operand, truth) {
                Some(true) => Err(()),
                Some(false) => Ok(value),
                None => Ok(None),
            })
            .unwrap_or(Some(true)),
    }
}

fn is_definite(expr: &Expr) -> bool {
    match expr {
        Expr::Atom(_) => true,
        Expr::Not(_) => false,
        Expr::And(operands) | Expr::Or(operands) => operands.iter().all(is_definite),
    }
}

/// Forward chaining from `known`, a body firing when three-valued true: the round at which
/// each atom is derived (`None` if never). Sound for entailment, with or without NOT; for
/// NOT-free programs it is the least model, hence exact.
fn chain_forward(rules: &[Rule], known: &[bool]) -> Vec<Option<u32>> {
    let mut truth = known.to_vec();
    let mut round: Vec<Option<u32>> = known.iter().map(|&known| known.then_some(0)).collect();
    let mut new = Vec::new();
    for current in 1.. {
        new.clear();
        new.extend(
            rules
                .iter()
                .filter(|rule| !truth[rule.head] && kleene(&rule.body, &truth) == Some(true))
                .map(|rule| rule.head),
        );
        if new.is_empty() {
            break;
        }
        for &head in &new {
            truth[head] = true;
            round[head].get_or_insert(current);
        }
    }
    round
}

/// One step of the word program that evaluates bodies 64 assignments at a time.
#[derive(Debug, Clone, Copy)]
enum Code {
    Free(usize),
    Fixed(bool),
    Not,
    And(usize),
    Or(usize),
}

fn compile(expr: &Expr, slot: &[Slot], code: &mut Vec<Code>) {
    match expr {
        Expr::Atom(atom) => code.push(match slot[*atom] {
            Slot::Free(index) => Code::Free(index),
            Slot::Fixed(value) => Code::Fixed(value),
        }),
        Expr::Not(inner) => {
            compile(inner, slot, code);
            code.push(Code::Not);
        }
        Expr::And(operands) | Expr::Or(operands) => {
            for operand in operands {
                compile(operand, slot, code);
            }
            code.push(if matches!(expr, Expr::And(_)) {
                Code::And(operands.len())
            } else {
                Code::Or(operands.len())
            });
        }
    }
}

fn run(code: &[Code], values: &[u64], stack: &mut Vec<u64>) -> u64 {
    stack.clear();
    for step in code {
        match *step {
            Code::Free(index) => stack.push(values[index]),
            Code::Fixed(value) => stack.push(if value { !0 } else { 0 }),
            Code::Not => {
                let top = stack.last_mut().expect("compiled code is balanced");
                *top = !*top;
            }
            Code::And(count) | Code::Or(count) => {
                let start = stack.len() - count;
                let combined = if matches!(step, Code::And(_)) {
                    stack[start..].iter().fold(!0, |all, value| all & value)
                } else {
                    stack[start..].iter().fold(0, |any, value| any | value)
                };
                stack.truncate(start);
                stack.push(combined);
            }
        }
    }
    stack.pop().expect("compiled code leaves one value")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Free(usize),
    Fixed(bool),
}

/// Records, per atom, whether it occurs positively and negatively in `expr`.
fn polarity(expr: &Expr, negated: bool, positive: &mut [bool], negative: &mut [bool]) {
    match expr {
        Expr::Atom(atom) if negated => negative[*atom] = true,
        Expr::Atom(atom) => positive[*atom] = true,
        Expr::Not(inner) => polarity(inner, !negated, positive, negative),
        Expr::And(operands) | Expr::Or(operands) => operands
            .iter()
            .for_each(|operand| polarity(operand, negated, positive, negative)),
    }
}

fn atoms(expr: &Expr, out: &mut Vec<usize>) {
    match expr {
        Expr::Atom(atom) => out.push(*atom),
        Expr::Not(inner) => atoms(inner, out),
        Expr::And(operands) | Expr::Or(operands) => {
            operands.iter().for_each(|operand| atoms(operand, out))
        }
    }
}

/// Exact classical entailment of `goal` by the rules with the known atoms true.
///
/// Only the goal's backward cone matters: given a countermodel of the rules whose heads lie
/// in the cone, setting every atom outside it true satisfies the other rules. Within the
/// cone, an atom that heads no rule and occurs with one polarity only is fixed to the value
/// that makes bodies false (false if it occurs positively, true if only under NOT): bodies
/// are monotone in it, so some countermodel exists iff one exists with that value. The
/// remaining free atoms are enumerated.
fn entailed(program: &Program, by_head: &[Vec<usize>], goal: usize) -> Result<bool, String> {
    if program.known[goal] {
        return Ok(true);
    }
    if by_head[goal].is_empty() {
        return Ok(false);
    }
    let count = program.names.len();
    let mut in_cone = vec![false; count];
    in_cone[goal] = true;
    let mut pending = vec![goal];
    let mut cone_rules = Vec::new();
    let mut body_atoms = Vec::new();
    while let Some(atom) = pending.pop() {
        for &index in &by_head[atom] {
            cone_rules.push(index);
            body_atoms.clear();
            atoms(&program.rules[index].body, &mut body_atoms);
            for &body_atom in &body_atoms {
                if !in_cone[body_atom] {
                    in_cone[body_atom] = true;
                    pending.push(body_atom);
                }
            }
        }
    }
    let (mut positive, mut negative) = (vec![false; count], vec![false; count]);
    for &index in &cone_rules {
        polarity(
            &program.rules[index].body,
            false,
            &mut positive,
            &mut negative,
        );
    }
    let mut slot = vec![Slot::Fixed(true); count];
    let mut free = 0;
    for atom in (0..count).filter(|&atom| in_cone[atom] && !program.known[atom]) {
        slot[atom] = if !by_head[atom].is_empty() || (positive[atom] && negative[atom]) {
            free += 1;
            Slot::Free(free - 1)
        } else {
            Slot::Fixed(!positive[atom])
        };
    }
    if free > MAX_FREE {
        return Err(format!(
            "Goal `{}` leaves {free} atoms free, more than {MAX_FREE} to enumerate",
            program.names[goal]
        ));
    }
    // Rules with a fixed-true head hold in every assignment.
    let compiled: Vec<(Vec<Code>, usize)> = cone_rules
        .iter()
        .filter_map(|&index| {
            let rule = &program.rules[index];
            let Slot::Free(head) = slot[rule.head] else {
                return None;
            };
            let mut code = Vec::new();
            compile(&rule.body, &slot, &mut code);
            Some((code, head))
        })
        .collect();
    let Slot::Free(goal_slot) = slot[goal] else {
        return Err("The goal heads a rule, so it is free".into());
    };
    // Within a word, the low six free atoms run through all 64 combinations.
    const PATTERNS: [u64; 6] = [
        0xAAAA_AAAA_AAAA_AAAA,
        0xCCCC_CCCC_CCCC_CCCC,
        0xF0F0_F0F0_F0F0_F0F0,
        0xFF00_FF00_FF00_FF00,
        0xFFFF_0000_FFFF_0000,
        0xFFFF_FFFF_0000_0000,
    ];
    let mut values = vec![0u64; free];
    let mut stack = Vec::new();
    for word in 0u64..1 << free.saturating_sub(6) {
        for (index, value) in values.iter_mut().enumerate() {
            *value = match PATTERNS.get(index) {
                Some(&pattern) => pattern,
                None => 0u64.wrapping_sub((word >> (index - 6)) & 1),
            };
        }
        let mut models = !0u64;
        for (code, head) in &compiled {
            models &= !run(code, &values, &mut stack) | values[*head];
            if models == 0 {
                break;
            }
        }
        if models & !values[goal_slot] != 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn invalid(message: String) -> VerifyError {
    VerifyError::Invalid(message)
}

fn render(program: &Program, statuses: &[bool]) -> String {
    let lines: Vec<String> = program
        .goals
        .iter()
        .zip(statuses)
        .enumerate()
        .map(|(position, (&goal, &reachable))| {
            format!(
                "({}) {} is {}",
                position + 1,
                program.names[goal],
                if reachable {
                    "reachable"
                } else {
                    "unreachable"
                }
            )
        })
        .collect();
    lines.join("; ")
}

/// [`super::Abduction`]'s `verify`.
pub(super) fn verify(instance: &Instance) -> Result<(), VerifyError> {
    let spec = LevelSpec::of(instance.level)
        .ok_or_else(|| invalid(format!("Level {} is outside 1..=5", instance.level)))?;
    let layout_name = instance
        .params
        .get("layout")
        .map(|value| {
            value
                .as_str()
                .ok_or_else(|| invalid("`layout` is not a string".into()))
        })
        .transpose()?;
    let layout = Layout::parse(layout_name).ok_or_else(|| {
        invalid(format!(
            "Unknown layout `{}`",
            layout_name.unwrap_or_default()
        ))
    })?;
    let program = parse_puzzle(&instance.puzzle).map_err(VerifyError::Unparseable)?;
    let claimed = parse_answer(&instance.answer, &program).map_err(VerifyError::Unparseable)?;

    let mut by_head = vec![Vec::new(); program.names.len()];
    for (index, rule) in program.rules.iter().enumerate() {
        by_head[rule.head].push(index);
    }
    let statuses: Vec<bool> = program
        .goals
        .iter()
        .map(|&goal| entailed(&program, &by_head, goal))
        .collect::<Result<_, _>>()
        .map_err(invalid)?;
    let rounds = chain_forward(&program.rules, &program.known);
    if program.rules.iter().all(|rule| is_definite(&rule.body)) {
        // NOT-free: forward chaining reaches the least model, which decides entailment.
        for (&goal, &status) in program.goals.iter().zip(&statuses) {
            if rounds[goal].is_some() != status {
                return Err(invalid(format!(
                    "Enumeration and forward chaining disagree on `{}`",
                    program.names[goal]
                )));
            }
        }
    }
    if claimed != statuses {
        return Err(VerifyError::WrongAnswer {
            expected: render(&program, &claimed),
            found: render(&program, &statuses),
        });
    }

    // The readings of NOT agree: chaining that never establishes a NOT finds every
    // entailed goal, and the closed world over what it derives is a model.
    for (&goal, &status) in program.goals.iter().zip(&statuses) {
        if rounds[goal].is_some() != status {
            return Err(invalid(format!(
                "Goal `{}` follows only by case analysis",
                program.names[goal]
            )));
        }
    }
    let derived: Vec<bool> = rounds.iter().map(Option::is_some).collect();
    if let Some(rule) = program
        .rules
        .iter()
        .find(|rule| !derived[rule.head] && holds(&rule.body, &derived))
    {
        return Err(invalid(format!(
            "Reading NOT as \"not derived\" would also establish `{}`",
            program.names[rule.head]
        )));
    }

    // The level.
    let goals = program.goals.len();
    if goals != spec.goal_count(layout) {
        return Err(invalid(format!(
            "{goals} goals; level {} under the {} layout has {}",
            instance.level,
            layout.name(),
            spec.goal_count(layout)
        )));
    }
    let premises = program.rules.len();
    if premises < spec.min_premises(layout) || premises > spec.max_premises(layout) {
        return Err(invalid(format!(
            "{premises} premises, outside {}..={} for level {}",
            spec.min_premises(layout),
            spec.max_premises(layout),
            instance.level
        )));
    }
    for (&goal, _) in program
        .goals
        .iter()
        .zip(&statuses)
        .filter(|(_, &status)| status)
    {
        // Derivation depth without the goal's own listing (the paper layout lists it).
        let depth = if program.known[goal] {
            let mut known = program.known.clone();
            known[goal] = false;
            chain_forward(&program.rules, &known)[goal]
        } else {
            rounds[goal]
        };
        if !depth.is_some_and(|depth| (spec.depth.0..=spec.depth.1).contains(&depth)) {
            return Err(invalid(format!(
                "Reachable goal `{}` has derivation depth {depth:?}, outside {}..={}",
                program.names[goal], spec.depth.0, spec.depth.1
            )));
        }
    }

    // The layout.
    let reachable: Vec<usize> = program
        .goals
        .iter()
        .zip(&statuses)
        .filter(|(_, &status)| status)
        .map(|(&goal, _)| goal)
        .collect();
    match layout {
        Layout::ShortcutFree => {
            if let Some(&goal) = reachable.iter().find(|&&goal| program.known[goal]) {
                return Err(invalid(format!(
                    "Reachable goal `{}` is listed as known",
                    program.names[goal]
                )));
            }
            if let Some(&goal) = program.goals.iter().find(|&&goal| by_head[goal].is_empty()) {
                return Err(invalid(format!(
                    "Goal `{}` concludes no premise",
                    program.names[goal]
                )));
            }
        }
        Layout::Paper => {
            if reachable.len() != 1 {
                return Err(invalid(format!(
                    "{} reachable goals; the paper layout has exactly 1",
                    reachable.len()
                )));
            }
            if !program.known[reachable[0]] {
                return Err(invalid(format!(
                    "Reachable goal `{}` is not listed as known",
                    program.names[reachable[0]]
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Family, TaskRng};

    fn program(text: &str) -> (Program, Vec<Vec<usize>>) {
        let program = parse_puzzle(text).expect("hand-made puzzle parses");
        let mut by_head = vec![Vec::new(); program.names.len()];
        for (index, rule) in program.rules.iter().enumerate() {
            by_head[rule.head].push(index);
        }
        (program, by_head)
    }

    fn statuses(program: &Program, by_head: &[Vec<usize>]) -> Vec<bool> {
        program
            .goals
            .iter()
            .map(|&goal| entailed(program, by_head, goal).expect("small"))
            .collect()
    }

    /// Entailment over every assignment of every atom, without the cone reductions.
    fn brute_force(program: &Program, goal: usize) -> bool {
        let count = program.names.len();
        (0u32..1 << count).all(|assignment| {
            let truth: Vec<bool> = (0..count).map(|atom| assignment >> atom & 1 == 1).collect();
            let model = (0..count).all(|atom| !program.known[atom] || truth[atom])
                && program
                    .rules
                    .iter()
                    .all(|rule| !holds(&rule.body, &truth) || truth[rule.head]);
            !model || truth[goal]
        })
    }

    #[test]
    fn forward_chaining_and_entailment_agree_on_a_definite_puzzle() {
        // B1 and F1 follow; C1 and D1 only support each other, which establishes nothing.
        let (program, by_head) = program(
            "Premises:\n1. (A1) => B1\n2. (B1 AND C1) => D1\n3. (D1) => C1\n4. (C1) => D1\n\
             5. (B1 OR E1) => F1\n6. ((E1 AND A1) OR (D1 AND B1)) => G1\n7. (F1) => H1\n\
             Known atoms: A1\nGoals: D1, F1, C1, H1, G1, A1\n\ntext",
        );
        assert!(program.rules.iter().all(|rule| is_definite(&rule.body)));
        let entailed = statuses(&program, &by_head);
        let rounds = chain_forward(&program.rules, &program.known);
        let chained: Vec<bool> = program
            .goals
            .iter()
            .map(|&goal| rounds[goal].is_some())
            .collect();
        assert_eq!(entailed, vec![false, true, false, true, false, true]);
        assert_eq!(chained, entailed);
        let brute: Vec<bool> = program
            .goals
            .iter()
            .map(|&goal| brute_force(&program, goal))
            .collect();
        assert_eq!(brute, entailed);
        assert_eq!(rounds[program.goals[3]], Some(3));
    }

    #[test]
    fn negation_follows_classical_entailment() {
        // `(NOT A1) => G1` with `(A1) => G1`: G1 by case analysis, which chaining misses.
        let (program, by_head) =
            program("Premises:\n1. (NOT A1) => G1\n2. (A1) => G1\n3. (NOT K1) => H1\n4. (B1 OR (NOT B1)) => J1\nKnown atoms: K1\nGoals: G1, H1, J1");
        assert_eq!(statuses(&program, &by_head), vec![true, false, true]);
        let rounds = chain_forward(&program.rules, &program.known);
        assert!(program.goals.iter().all(|&goal| rounds[goal].is_none()));
    }

    #[test]
    fn enumeration_matches_brute_force_on_random_programs() {
        let mut rng = TaskRng::from_seed(9);
        for _ in 0..400 {
            let atoms = 3 + rng.below(8) as usize;
            let mut text = String::from("Premises:\n");
            let lit = |rng: &mut TaskRng| {
                let name = format!("A{}", rng.below(atoms as u64));
                if rng.chance(1, 3) {
                    format!("(NOT {name})")
                } else {
                    name
                }
            };
            for number in 1..=1 + rng.below(10) {
                let op = if rng.chance(1, 2) { " AND " } else { " OR " };
                let mut parts: Vec<String> = (0..1 + rng.below(3)).map(|_| lit(&mut rng)).collect();
                if rng.chance(1, 3) {
                    let inner = if op == " AND " { " OR " } else { " AND " };
                    parts.push(format!("({}{inner}{})", lit(&mut rng), lit(&mut rng)));
                }
                let body = if parts.len() == 1 && !parts[0].starts_with('(') {
                    format!("({})", parts[0])
                } else if parts.len() == 1 {
                    parts[0].clone()
                } else {
                    format!("({})", parts.join(op))
                };
                text.push_str(&format!(
                    "{number}. {body} => A{}\n",
                    rng.below(atoms as u64)
                ));
            }
            let known: Vec<String> = (0..rng.below(3))
                .map(|_| format!("A{}", rng.below(atoms as u64)))
                .collect();
            text.push_str(&format!(
                "Known atoms: {}\nGoals: A0, A1, A2\n",
                known.join(", ")
            ));
            let (program, by_head) = program(&text);
            for &goal in &program.goals {
                assert_eq!(
                    entailed(&program, &by_head, goal).expect("small"),
                    brute_force(&program, goal),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn verify_flags_reading_dependent_puzzles() {
        let instance = |puzzle: &str, answer: &str| Instance {
            task: "abduction".into(),
            level: 1,
            puzzle: puzzle.into(),
            answer: answer.into(),
            params: Default::default(),
            solution: None,
        };
        let split = instance(
            "Premises:\n1. (NOT A1) => G1\n2. (A1) => G1\nKnown atoms: K1\nGoals: G1",
            "(1) G1 is reachable",
        );
        let verdict = super::super::Abduction.verify(&split);
        assert!(
            matches!(&verdict, Err(VerifyError::Invalid(message)) if message.contains("case analysis")),
            "{verdict:?}"
        );
        let closed = instance(
            "Premises:\n1. (NOT A1) => G1\nKnown atoms: K1\nGoals: G1",
            "(1) G1 is unreachable",
        );
        let verdict = super::super::Abduction.verify(&closed);
        assert!(
            matches!(&verdict, Err(VerifyError::Invalid(message)) if message.contains("not derived")),
            "{verdict:?}"
        );
        let wrong = instance(
            "Premises:\n1. (NOT A1) => G1\nKnown atoms: K1\nGoals: G1",
            "(1) G1 is reachable",
        );
        assert!(matches!(
            super::super::Abduction.verify(&wrong),
            Err(VerifyError::WrongAnswer { .. })
        ));
        let unparseable = instance(
            "Premises:\n1. (NOT A1) => G1\nKnown atoms: K1\nGoals: G1",
            "(1) G1 is maybe",
        );
        assert!(matches!(
            super::super::Abduction.verify(&unparseable),
            Err(VerifyError::Unparseable(_))
        ));
    }
}
