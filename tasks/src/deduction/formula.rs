//! The generator's formulas as syntax: connectives, a fixed-size arena of nodes, their
//! shape and their text.
//!
//! How formulas are drawn and evaluated on a few assignments is [`super::draw`]'s business,
//! their full truth tables [`super::tables`]'. Nothing here reads text back: verification
//! parses the rendered puzzle with its own parser and evaluator (`solve`), so a bug here
//! cannot hide itself.

/// The most variables of any level.
pub(super) const MAX_VARIABLES: usize = 12;
/// The deepest formula of any level.
pub(super) const MAX_DEPTH: u32 = 5;
/// Nodes of a full binary formula of [`MAX_DEPTH`].
const MAX_NODES: usize = (1 << (MAX_DEPTH + 1)) - 1;
/// Literals of a full binary formula of [`MAX_DEPTH`].
pub(super) const MAX_LITERALS: usize = 1 << MAX_DEPTH;

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
    /// The symbol between spaces, as formulas show it.
    fn spaced_symbol(self) -> &'static str {
        match self {
            Op::Implies => " → ",
            Op::And => " ∧ ",
            Op::Or => " ∨ ",
            Op::Iff => " ↔ ",
            Op::Xor => " ⊕ ",
        }
    }
}

/// A node of a formula; children are indices into the same arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Node {
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

    /// Appends `node`, whose children are already in; returns its index.
    pub(super) fn push(&mut self, node: Node) -> u8 {
        let index = self.len;
        self.nodes[usize::from(index) % MAX_NODES] = node;
        self.len += 1;
        index
    }

    pub(super) fn nodes(&self) -> &[Node] {
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
                out.push_str(op.spaced_symbol());
                self.render_node(right as usize, out);
                out.push(')');
            }
        }
    }

    /// Its value under assignment `x`, node by node: slow, for checking the fast ways.
    #[cfg(test)]
    pub(super) fn value_at(&self, x: u32) -> bool {
        fn value(formula: &Formula, index: usize, x: u32) -> bool {
            match formula.nodes[index] {
                Node::Leaf { variable, negated } => ((x >> variable) & 1 == 1) != negated,
                Node::Not(child) => !value(formula, child as usize, x),
                Node::Binary(op, left, right) => {
                    let left = value(formula, left as usize, x);
                    let right = value(formula, right as usize, x);
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
        value(self, self.root(), x)
    }
}

/// The name of variable `index`: `A`, `B`, ...
pub(super) fn variable_name(index: usize) -> char {
    char::from(b'A' + index as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_negations_once_and_every_binary_in_parentheses() {
        let mut formula = Formula::empty();
        let a = formula.push(Node::Leaf {
            variable: 0,
            negated: false,
        });
        let b = formula.push(Node::Leaf {
            variable: 1,
            negated: true,
        });
        let both = formula.push(Node::Binary(Op::And, a, b));
        let not_both = formula.push(Node::Not(both));
        let c = formula.push(Node::Leaf {
            variable: 2,
            negated: false,
        });
        let not_c = formula.push(Node::Not(c));
        formula.push(Node::Binary(Op::Iff, not_both, not_c));
        let mut text = String::new();
        formula.render(&mut text);
        assert_eq!(text, "(¬(A ∧ ¬B) ↔ ¬(C))");
        let shape = formula.shape();
        assert_eq!(
            (shape.depth, shape.leaves, shape.negated_literals),
            (3, 3, 1)
        );
        assert_eq!((shape.nots, shape.ops), (2, [0, 1, 0, 1, 0]));
        assert_eq!(formula.variables(), 0b111);
        // A ∧ ¬B is false at x = 0b011 (A, B true), so its negation is true; ¬C is true.
        assert!(formula.value_at(0b011));
        assert!(!formula.value_at(0b001));
    }
}
