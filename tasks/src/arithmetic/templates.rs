//! Word-problem templates. `{k}` in a text is the `k`-th number; the same `{k}` may occur
//! twice. `expression` is the problem in `params["expression"]` form, read by the
//! verifier; `build` is the same problem as a tree, used by the generator. A test keeps
//! the two in step.

use super::generate::{Node, Operation};

/// One word-problem shape.
pub(super) struct Template {
    /// The story and question, with `{k}` slots.
    pub text: &'static str,
    /// The expression with `{k}` slots, exactly as the generator renders the tree.
    pub expression: &'static str,
    /// The operations in `expression`.
    pub steps: usize,
    /// The range of each number.
    pub ranges: &'static [(i64, i64)],
    /// The tree of the problem.
    pub build: fn(&[i64]) -> Node,
}

impl Template {
    /// The text with the numbers filled in.
    pub fn fill(&self, numbers: &[i64]) -> String {
        fill(self.text, numbers)
    }
}

/// Replaces each `{k}` with `numbers[k]`.
pub(super) fn fill(text: &str, numbers: &[i64]) -> String {
    let mut filled = text.to_string();
    for (slot, number) in numbers.iter().enumerate() {
        filled = filled.replace(&format!("{{{slot}}}"), &number.to_string());
    }
    filled
}

fn n(value: i64) -> Node {
    Node::Number(value)
}

fn add(left: Node, right: Node) -> Node {
    Node::binary(Operation::Add, left, right)
}

fn sub(left: Node, right: Node) -> Node {
    Node::binary(Operation::Subtract, left, right)
}

fn mul(left: Node, right: Node) -> Node {
    Node::binary(Operation::Multiply, left, right)
}

fn div(left: Node, right: Node) -> Node {
    Node::binary(Operation::Divide, left, right)
}

/// Every template, by number of operations.
pub(super) const TEMPLATES: &[Template] = &[
    Template {
        text: "A shop has {0} boxes with {1} apples in each box. It sells {2} apples. How many apples are left?",
        expression: "{0}*{1}-{2}",
        steps: 2,
        ranges: &[(2, 20), (2, 12), (1, 100)],
        build: |v| sub(mul(n(v[0]), n(v[1])), n(v[2])),
    },
    Template {
        text: "Maya reads {0} pages every day for {1} days, and then {2} more pages on the weekend. How many pages does she read in all?",
        expression: "{0}*{1}+{2}",
        steps: 2,
        ranges: &[(5, 30), (2, 14), (2, 50)],
        build: |v| add(mul(n(v[0]), n(v[1])), n(v[2])),
    },
    Template {
        text: "{0} stickers are shared equally among {1} children. Then each child buys {2} more stickers. How many stickers does each child have now?",
        expression: "{0}/{1}+{2}",
        steps: 2,
        ranges: &[(12, 120), (2, 12), (2, 20)],
        build: |v| add(div(n(v[0]), n(v[1])), n(v[2])),
    },
    Template {
        text: "A bus leaves the station with {0} passengers. At the first stop {1} people get off and {2} people get on. How many passengers are on the bus now?",
        expression: "{0}-{1}+{2}",
        steps: 2,
        ranges: &[(10, 60), (2, 30), (2, 30)],
        build: |v| add(sub(n(v[0]), n(v[1])), n(v[2])),
    },
    Template {
        text: "A bakery bakes {0} trays of {1} muffins. It sells {2} muffins in the morning and {3} muffins in the afternoon. How many muffins are left?",
        expression: "{0}*{1}-{2}-{3}",
        steps: 3,
        ranges: &[(3, 12), (6, 24), (2, 60), (2, 60)],
        build: |v| sub(sub(mul(n(v[0]), n(v[1])), n(v[2])), n(v[3])),
    },
    Template {
        text: "A farmer plants {0} rows of {1} carrots and {2} rows of {3} onions. How many plants are there in all?",
        expression: "{0}*{1}+{2}*{3}",
        steps: 3,
        ranges: &[(2, 15), (5, 25), (2, 15), (5, 25)],
        build: |v| add(mul(n(v[0]), n(v[1])), mul(n(v[2]), n(v[3]))),
    },
    Template {
        text: "A class collects {0} cans on Monday and {1} cans on Tuesday. The cans are packed equally into {2} bags, and then {3} more cans are added to each bag. How many cans are in each bag?",
        expression: "({0}+{1})/{2}+{3}",
        steps: 3,
        ranges: &[(10, 90), (10, 90), (2, 10), (2, 9)],
        build: |v| add(div(add(n(v[0]), n(v[1])), n(v[2])), n(v[3])),
    },
    Template {
        text: "Each of {0} friends brings {1} marbles. They lose {2} marbles and share the rest equally among the {0} friends. How many marbles does each friend get?",
        expression: "({0}*{1}-{2})/{0}",
        steps: 3,
        ranges: &[(2, 8), (5, 20), (2, 40)],
        build: |v| div(sub(mul(n(v[0]), n(v[1])), n(v[2])), n(v[0])),
    },
    Template {
        text: "A library has {0} shelves with {1} books on each. It buys {2} boxes of {3} new books and gives away {4} old books. How many books does the library have now?",
        expression: "{0}*{1}+{2}*{3}-{4}",
        steps: 4,
        ranges: &[(3, 20), (10, 40), (2, 10), (5, 20), (2, 100)],
        build: |v| sub(add(mul(n(v[0]), n(v[1])), mul(n(v[2]), n(v[3]))), n(v[4])),
    },
    Template {
        text: "Tom earns {0} dollars a week for {1} weeks. He spends {2} dollars on a bike and shares the rest equally among {3} savings jars, then adds {4} dollars to each jar. How many dollars are in each jar?",
        expression: "({0}*{1}-{2})/{3}+{4}",
        steps: 4,
        ranges: &[(10, 50), (2, 12), (5, 100), (2, 6), (2, 20)],
        build: |v| add(div(sub(mul(n(v[0]), n(v[1])), n(v[2])), n(v[3])), n(v[4])),
    },
    Template {
        text: "A theater has {0} rows of {1} seats. For one show, {2} rows are closed and {3} other seats are broken. Every usable seat is sold for {4} dollars. How many dollars does the theater collect?",
        expression: "(({0}-{2})*{1}-{3})*{4}",
        steps: 4,
        ranges: &[(10, 30), (8, 20), (2, 9), (2, 15), (5, 20)],
        build: |v| mul(sub(mul(sub(n(v[0]), n(v[2])), n(v[1])), n(v[3])), n(v[4])),
    },
    Template {
        text: "A van carries {0} crates of {1} bottles on each of {2} trips. {3} bottles break, and the rest are shared equally among {4} shops. How many bottles does each shop get?",
        expression: "({0}*{1}*{2}-{3})/{4}",
        steps: 4,
        ranges: &[(2, 8), (6, 24), (2, 5), (2, 30), (2, 6)],
        build: |v| div(sub(mul(mul(n(v[0]), n(v[1])), n(v[2])), n(v[3])), n(v[4])),
    },
    Template {
        text: "A school orders {0} boxes of {1} pencils and {2} boxes of {3} pens. It hands out {4} of the items and shares the rest equally among {5} classrooms. How many items does each classroom get?",
        expression: "({0}*{1}+{2}*{3}-{4})/{5}",
        steps: 5,
        ranges: &[(2, 12), (10, 30), (2, 12), (10, 30), (2, 60), (2, 8)],
        build: |v| {
            div(
                sub(add(mul(n(v[0]), n(v[1])), mul(n(v[2]), n(v[3]))), n(v[4])),
                n(v[5]),
            )
        },
    },
    Template {
        text: "A club sells {0} tickets at {1} dollars each and {2} snacks at {3} dollars each. It pays {4} dollars for the hall and {5} dollars for music. How many dollars does the club have left?",
        expression: "{0}*{1}+{2}*{3}-{4}-{5}",
        steps: 5,
        ranges: &[(20, 80), (5, 15), (10, 60), (2, 6), (50, 300), (20, 150)],
        build: |v| {
            sub(
                sub(add(mul(n(v[0]), n(v[1])), mul(n(v[2]), n(v[3]))), n(v[4])),
                n(v[5]),
            )
        },
    },
    Template {
        text: "Each of {0} teams has {1} players, and each player drinks {2} bottles of water per game. The teams play {3} games, and {4} bottles are already in storage. The rest come in packs of {5}. How many packs must be bought?",
        expression: "({0}*{1}*{2}*{3}-{4})/{5}",
        steps: 5,
        ranges: &[(2, 6), (5, 12), (2, 3), (2, 5), (2, 50), (2, 12)],
        build: |v| {
            div(
                sub(mul(mul(mul(n(v[0]), n(v[1])), n(v[2])), n(v[3])), n(v[4])),
                n(v[5]),
            )
        },
    },
    Template {
        text: "A garden has {0} beds with {1} tulips each. The gardener plants {2} more beds of {3} tulips, picks {4} tulips, and ties the rest into bunches of {5}. How many bunches are there?",
        expression: "({0}*{1}+{2}*{3}-{4})/{5}",
        steps: 5,
        ranges: &[(2, 10), (6, 20), (2, 8), (6, 20), (2, 40), (3, 10)],
        build: |v| {
            div(
                sub(add(mul(n(v[0]), n(v[1])), mul(n(v[2]), n(v[3]))), n(v[4])),
                n(v[5]),
            )
        },
    },
];
