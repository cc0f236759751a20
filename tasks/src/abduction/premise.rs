//! The generator's premises: small `Copy` values over atom indices, evaluated against atom
//! masks (two-valued, or three-valued with NOT never established) and written as text.
//!
//! A body is one operator over up to three operands, each a literal or a pair of literals
//! under the other operator: enough for every shape the generator draws, and no heap.
/// Most atoms one puzzle may use (masks are `u128`).
pub(super) const MAX_ATOMS: usize = 128;
/// Name letters: no I or O, which read like digits.
const LETTERS: &[u8; 24] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Letter-digit names: `A1` to `Z9`.
pub(super) const NAME_COUNT: u64 = 24 * 9;
/// Marks an atom no derivation reaches.
pub(super) const NOT_DERIVED: u8 = u8::MAX;

/// A set of atoms, one bit per atom index.
pub(super) type Mask = u128;

pub(super) fn bit(atom: u8) -> Mask {
    1 << atom
}

/// The atoms of a mask, in index order.
pub(super) fn atoms_of(mut mask: Mask) -> impl Iterator<Item = u8> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let atom = mask.trailing_zeros() as u8;
            mask &= mask - 1;
            atom
        })
    })
}

/// Writes an atom's name (`K7`) from its name id.
pub(super) fn push_name(out: &mut String, name: u8) {
    out.push(LETTERS[(name / 9) as usize] as char);
    out.push((b'1' + name % 9) as char);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    And,
    Or,
}

impl Op {
    pub(super) fn other(self) -> Op {
        match self {
            Op::And => Op::Or,
            Op::Or => Op::And,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Op::And => " AND ",
            Op::Or => " OR ",
        }
    }

    pub(super) fn combine(self, left: bool, right: bool) -> bool {
        match self {
            Op::And => left && right,
            Op::Or => left || right,
        }
    }
}

/// An atom or its negation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lit {
    pub atom: u8,
    pub negated: bool,
}

/// One operand of a body: a literal, or two literals joined by the other operator.
#[derive(Debug, Clone, Copy)]
pub(super) enum Operand {
    Lit(Lit),
    Group(Lit, Lit),
}

/// A premise: `operands` joined by `op`, concluding `head`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Premise {
    pub op: Op,
    pub(super) operands: [Operand; 3],
    pub(super) len: u8,
    pub head: u8,
}

pub(super) fn pos(atom: u8) -> Lit {
    Lit {
        atom,
        negated: false,
    }
}

pub(super) fn neg(atom: u8) -> Lit {
    Lit {
        atom,
        negated: true,
    }
}

pub(super) fn single(lit: Lit) -> Operand {
    Operand::Lit(lit)
}

impl Premise {
    pub(super) fn operands(&self) -> &[Operand] {
        &self.operands[..self.len as usize]
    }

    /// Evaluates the body, `value` giving each literal's truth; groups use the other operator.
    pub(super) fn eval(&self, value: impl Fn(Lit) -> bool + Copy) -> bool {
        let inner = self.op.other();
        let operand = |operand: &Operand| match *operand {
            Operand::Lit(lit) => value(lit),
            Operand::Group(left, right) => inner.combine(value(left), value(right)),
        };
        match self.op {
            Op::And => self.operands().iter().all(operand),
            Op::Or => self.operands().iter().any(operand),
        }
    }

    /// Two-valued truth of the body when exactly the atoms of `truth` are true.
    pub(super) fn holds(&self, truth: Mask) -> bool {
        self.eval(|lit| (truth & bit(lit.atom) != 0) != lit.negated)
    }

    /// Three-valued truth: is the body established when the atoms of `derived` are true and
    /// every other atom is unknown? A negated literal is then never true.
    pub(super) fn fires(&self, derived: Mask) -> bool {
        self.eval(|lit| !lit.negated && derived & bit(lit.atom) != 0)
    }

    /// The earliest round at which the body is established, given derivation rounds.
    pub(super) fn fire_round(&self, round: &[u8; MAX_ATOMS]) -> Option<u8> {
        let lit_round = |lit: Lit| {
            (!lit.negated && round[lit.atom as usize] != NOT_DERIVED)
                .then(|| round[lit.atom as usize])
        };
        let join = |op: Op, left: Option<u8>, right: Option<u8>| match op {
            Op::And => Some(left?.max(right?)),
            Op::Or => match (left, right) {
                (Some(left), Some(right)) => Some(left.min(right)),
                (left, right) => left.or(right),
            },
        };
        let inner = self.op.other();
        let mut result: Option<Option<u8>> = None;
        for operand in self.operands() {
            let value = match *operand {
                Operand::Lit(lit) => lit_round(lit),
                Operand::Group(left, right) => join(inner, lit_round(left), lit_round(right)),
            };
            result = Some(match result {
                None => value,
                Some(previous) => join(self.op, previous, value),
            });
        }
        result.flatten()
    }

    /// Every literal of the body.
    pub(super) fn lits(&self) -> impl Iterator<Item = Lit> + '_ {
        self.operands()
            .iter()
            .flat_map(|operand| match *operand {
                Operand::Lit(lit) => [Some(lit), None],
                Operand::Group(left, right) => [Some(left), Some(right)],
            })
            .flatten()
    }

    /// The atoms of the body, and those of them that occur negated.
    pub(super) fn atom_masks(&self) -> (Mask, Mask) {
        self.lits().fold((0, 0), |(all, negated), lit| {
            (
                all | bit(lit.atom),
                if lit.negated {
                    negated | bit(lit.atom)
                } else {
                    negated
                },
            )
        })
    }

    /// Writes the body, fully parenthesized: `(A1 AND (B2 OR (NOT C3)))`.
    pub(super) fn write(&self, out: &mut String, names: &[u8]) {
        let write_lit = |out: &mut String, lit: Lit| {
            if lit.negated {
                out.push_str("(NOT ");
                push_name(out, names[lit.atom as usize]);
                out.push(')');
            } else {
                push_name(out, names[lit.atom as usize]);
            }
        };
        if let [Operand::Lit(lit)] = self.operands() {
            // A negated single literal is already parenthesized.
            if lit.negated {
                write_lit(out, *lit);
            } else {
                out.push('(');
                write_lit(out, *lit);
                out.push(')');
            }
            return;
        }
        out.push('(');
        for (position, operand) in self.operands().iter().enumerate() {
            if position > 0 {
                out.push_str(self.op.word());
            }
            match *operand {
                Operand::Lit(lit) => write_lit(out, lit),
                Operand::Group(left, right) => {
                    out.push('(');
                    write_lit(out, left);
                    out.push_str(self.op.other().word());
                    write_lit(out, right);
                    out.push(')');
                }
            }
        }
        out.push(')');
    }
}
