//! The arithmetic generator: random expression trees, or word-problem templates, with
//! exact integer values computed on the tree.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use super::templates::{Template, TEMPLATES};
use super::{level_spec, LevelSpec, COMPUTE, SUFFIX};
use crate::{Instance, Options, TaskRng};

/// A binary operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Add,
    Subtract,
    Multiply,
    Divide,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Add,
        Operation::Subtract,
        Operation::Multiply,
        Operation::Divide,
    ];

    fn precedence(self) -> u8 {
        match self {
            Operation::Add | Operation::Subtract => 1,
            Operation::Multiply | Operation::Divide => 2,
        }
    }

    /// The symbol in puzzles and solutions.
    fn symbol(self) -> &'static str {
        match self {
            Operation::Add => "+",
            Operation::Subtract => "-",
            Operation::Multiply => "×",
            Operation::Divide => "÷",
        }
    }

    /// The symbol in `params["expression"]`.
    fn ascii(self) -> char {
        match self {
            Operation::Add => '+',
            Operation::Subtract => '-',
            Operation::Multiply => '*',
            Operation::Divide => '/',
        }
    }

    /// The exact result, or `None` on overflow or an inexact division.
    fn apply(self, left: i64, right: i64) -> Option<i64> {
        match self {
            Operation::Add => left.checked_add(right),
            Operation::Subtract => left.checked_sub(right),
            Operation::Multiply => left.checked_mul(right),
            Operation::Divide => {
                (right != 0 && left.checked_rem(right)? == 0).then(|| left / right)
            }
        }
    }
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Number(i64),
    Binary(Operation, Box<Node>, Box<Node>),
}

impl Node {
    pub(super) fn binary(operation: Operation, left: Node, right: Node) -> Node {
        Node::Binary(operation, Box::new(left), Box::new(right))
    }

    /// The value, or `None` on overflow, inexact division, or (with `natural`) a value
    /// below zero anywhere.
    fn evaluate(&self, natural: bool) -> Option<i64> {
        let value = match self {
            Node::Number(value) => *value,
            Node::Binary(operation, left, right) => {
                operation.apply(left.evaluate(natural)?, right.evaluate(natural)?)?
            }
        };
        (!natural || value >= 0).then_some(value)
    }

    fn steps(&self) -> usize {
        match self {
            Node::Number(_) => 0,
            Node::Binary(_, left, right) => 1 + left.steps() + right.steps(),
        }
    }

    fn max_operand(&self) -> i64 {
        match self {
            Node::Number(value) => *value,
            Node::Binary(_, left, right) => left.max_operand().max(right.max_operand()),
        }
    }

    /// The text with the fewest parentheses that keep the tree's grouping, except that a
    /// right operand of equal precedence is bracketed unless both are `+` or both `×`.
    pub(super) fn render(&self, ascii: bool) -> String {
        let mut text = String::new();
        self.render_into(&mut text, ascii);
        text
    }

    fn render_into(&self, text: &mut String, ascii: bool) {
        let Node::Binary(operation, left, right) = self else {
            if let Node::Number(value) = self {
                let _ = write!(text, "{value}");
            }
            return;
        };
        let bracket = |child: &Node, is_right: bool| match child {
            Node::Number(_) => false,
            Node::Binary(inner, _, _) => {
                inner.precedence() < operation.precedence()
                    || (is_right
                        && inner.precedence() == operation.precedence()
                        && !(inner == operation
                            && matches!(operation, Operation::Add | Operation::Multiply)))
            }
        };
        for (child, is_right) in [(left, false), (right, true)] {
            if is_right {
                if ascii {
                    text.push(operation.ascii());
                } else {
                    let _ = write!(text, " {} ", operation.symbol());
                }
            }
            if bracket(child, is_right) {
                text.push('(');
                child.render_into(text, ascii);
                text.push(')');
            } else {
                child.render_into(text, ascii);
            }
        }
    }

    /// One line per operation, innermost first; returns the value.
    fn explain(&self, lines: &mut String) -> i64 {
        match self {
            Node::Number(value) => *value,
            Node::Binary(operation, left, right) => {
                let (left, right) = (left.explain(lines), right.explain(lines));
                let value = operation
                    .apply(left, right)
                    .expect("explained trees were evaluated");
                // A negative right operand is bracketed: `170 - (-36)`.
                let _ = if right < 0 {
                    writeln!(lines, "{left} {} ({right}) = {value}", operation.symbol())
                } else {
                    writeln!(lines, "{left} {} {right} = {value}", operation.symbol())
                };
                value
            }
        }
    }
}

/// Generates one instance of `level` (clamped to 1..=5).
pub(super) fn generate(level: u32, rng: &mut TaskRng, options: &Options) -> Instance {
    let level = level.clamp(1, 5);
    let spec = level_spec(level).expect("levels 1..=5 have a spec");
    let word = level >= 2 && rng.chance(1, 3);
    let (tree, value, body) = if word {
        let templates: Vec<&Template> = TEMPLATES
            .iter()
            .filter(|template| template.steps == spec.steps)
            .collect();
        let template = *rng.pick(&templates);
        loop {
            let numbers: Vec<i64> = template
                .ranges
                .iter()
                .map(|&(low, high)| rng.range(low, high))
                .collect();
            let tree = (template.build)(&numbers);
            match tree.evaluate(true) {
                Some(value) if value > 0 => break (tree, value, template.fill(&numbers)),
                _ => continue,
            }
        }
    } else {
        loop {
            if let Some((tree, value)) = expression(spec, spec.steps, rng) {
                let body = format!("{COMPUTE}{}", tree.render(false));
                break (tree, value, body);
            }
        }
    };
    debug_assert_eq!(tree.steps(), spec.steps);
    let mut params = BTreeMap::new();
    params.insert("steps".to_string(), json!(tree.steps()));
    params.insert("expression".to_string(), json!(tree.render(true)));
    params.insert("max_operand".to_string(), json!(tree.max_operand()));
    params.insert("word_problem".to_string(), json!(word));
    let solution = options.with_solution.then(|| {
        let mut text = String::new();
        if word {
            let _ = writeln!(text, "As an expression: {}", tree.render(false));
        }
        tree.explain(&mut text);
        let _ = write!(text, "So the final answer is {value}.");
        text
    });
    Instance {
        task: "arithmetic".to_string(),
        level,
        puzzle: format!("{body}{SUFFIX}"),
        answer: value.to_string(),
        params,
        solution,
    }
}

/// A random tree with `steps` operations and its value; `None` when a value leaves the
/// level's bound (the caller redraws).
fn expression(spec: LevelSpec, steps: usize, rng: &mut TaskRng) -> Option<(Node, i64)> {
    if steps == 0 {
        let value = rng.range(1, spec.max_operand);
        return Some((Node::Number(value), value));
    }
    let mut operation = *rng.pick(&Operation::ALL);
    if operation == Operation::Divide {
        // The divisor is always a number; the dividend is a multiple of it.
        if steps == 1 {
            let divisor = rng.range(2, spec.max_divisor);
            let dividend = divisor * rng.range(2, (spec.max_operand / 2).max(2));
            let node = Node::binary(operation, Node::Number(dividend), Node::Number(divisor));
            return Some((node, dividend / divisor));
        }
        let (left, left_value) = expression(spec, steps - 1, rng)?;
        let divisors: Vec<i64> = (2..=spec.max_divisor)
            .filter(|&d| left_value % d == 0 && left_value.abs() != d)
            .collect();
        if !divisors.is_empty() && left_value != 0 {
            let divisor = *rng.pick(&divisors);
            let value = left_value / divisor;
            return Some((Node::binary(operation, left, Node::Number(divisor)), value));
        }
        // No divisor fits: subtract a number instead.
        operation = Operation::Subtract;
        let right = rng.range(1, spec.max_operand);
        let value = left_value - right;
        return bounded(
            spec,
            Node::binary(operation, left, Node::Number(right)),
            value,
        );
    }
    let left_steps = rng.below(steps as u64) as usize;
    let (left, left_value) = expression(spec, left_steps, rng)?;
    let (right, right_value) = expression(spec, steps - 1 - left_steps, rng)?;
    let mut value = operation.apply(left_value, right_value)?;
    if operation == Operation::Multiply && value.abs() > spec.max_value {
        operation = Operation::Add;
        value = left_value + right_value;
    }
    bounded(spec, Node::binary(operation, left, right), value)
}

fn bounded(spec: LevelSpec, node: Node, value: i64) -> Option<(Node, i64)> {
    (value.abs() <= spec.max_value).then_some((node, value))
}
