//! The verifier's side: reads a puzzle back from its text and counts its models.
//!
//! Deliberately shares no code with the generator (`generate`): its own tokenizer,
//! recursive-descent parser for the fully parenthesized syntax, connective semantics and
//! bit-parallel evaluator over the parsed syntax tree. Variable `i` of `n` is bit `n-1-i` of
//! an assignment's index here (the generator uses bit `i`), so the two cannot agree by
//! sharing a convention by accident. It is not on a hot path: it allocates freely.

use crate::VerifyError;

/// Deeper nesting than this is refused rather than recursed into (no puzzle comes near it).
const MAX_NESTING: usize = 64;

/// A binary connective, as the verifier reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connective {
    Conjunction,
    Disjunction,
    Implication,
    Equivalence,
    ExclusiveOr,
}

impl Connective {
    fn from_symbol(symbol: char) -> Option<Connective> {
        Some(match symbol {
            '∧' => Connective::Conjunction,
            '∨' => Connective::Disjunction,
            '→' => Connective::Implication,
            '↔' => Connective::Equivalence,
            '⊕' => Connective::ExclusiveOr,
            _ => return None,
        })
    }

    fn word(self, left: u64, right: u64) -> u64 {
        match self {
            Connective::Conjunction => left & right,
            Connective::Disjunction => left | right,
            Connective::Implication => !left | right,
            Connective::Equivalence => !(left ^ right),
            Connective::ExclusiveOr => left ^ right,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Negation,
    Binary(Connective),
    Variable(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Variable(usize),
    Negation(usize),
    Apply(Connective, usize, usize),
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expression {
    terms: Vec<Term>,
    root: usize,
    /// Nesting depth: literals (`A`, `¬A`) are 0, `¬(f)` and `(f op g)` add one.
    pub depth: u32,
}

/// A puzzle as read back from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Puzzle {
    /// Variable names, in the order the puzzle lists them.
    pub variables: Vec<char>,
    pub formulas: Vec<Expression>,
}

fn unparseable(message: impl Into<String>) -> VerifyError {
    VerifyError::Unparseable(message.into())
}

fn tokenize(text: &str, variables: &[char]) -> Result<Vec<Token>, VerifyError> {
    let mut tokens = Vec::new();
    for symbol in text.chars() {
        let token = match symbol {
            '(' => Token::Open,
            ')' => Token::Close,
            '¬' => Token::Negation,
            _ if symbol.is_whitespace() => continue,
            _ => {
                if let Some(connective) = Connective::from_symbol(symbol) {
                    Token::Binary(connective)
                } else if let Some(index) = variables.iter().position(|&v| v == symbol) {
                    Token::Variable(index)
                } else if symbol.is_ascii_uppercase() {
                    return Err(unparseable(format!(
                        "Unknown variable `{symbol}` in `{text}`"
                    )));
                } else {
                    return Err(unparseable(format!("Unexpected `{symbol}` in `{text}`")));
                }
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// Recursive descent over the grammar
/// `formula := VAR | ¬VAR | ¬(formula) | ¬(formula OP formula) | (formula OP formula)`.
struct Parser<'a> {
    tokens: &'a [Token],
    position: usize,
    terms: Vec<Term>,
    text: &'a str,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).copied();
        self.position += 1;
        token
    }

    fn error(&self, what: &str) -> VerifyError {
        unparseable(format!(
            "{what} at token {} of `{}`",
            self.position, self.text
        ))
    }

    fn push(&mut self, term: Term) -> usize {
        self.terms.push(term);
        self.terms.len() - 1
    }

    /// One formula; returns its term and depth.
    fn formula(&mut self, nesting: usize) -> Result<(usize, u32), VerifyError> {
        if nesting > MAX_NESTING {
            return Err(self.error("Nested too deeply"));
        }
        match self.next() {
            Some(Token::Variable(index)) => Ok((self.push(Term::Variable(index)), 0)),
            Some(Token::Negation) => match self.next() {
                Some(Token::Variable(index)) => {
                    let variable = self.push(Term::Variable(index));
                    Ok((self.push(Term::Negation(variable)), 0))
                }
                Some(Token::Open) => {
                    let (inner, depth) = self.group(nesting)?;
                    Ok((self.push(Term::Negation(inner)), depth + 1))
                }
                _ => Err(self.error("Expected a variable or `(` after `¬`")),
            },
            Some(Token::Open) => {
                let (left, left_depth) = self.formula(nesting + 1)?;
                let Some(Token::Binary(connective)) = self.next() else {
                    return Err(self.error("Expected a connective"));
                };
                self.binary(connective, left, left_depth, nesting)
            }
            Some(_) => Err(self.error("Expected a formula")),
            None => Err(self.error("Unexpected end")),
        }
    }

    /// After `¬(`: either one formula and `)`, or a binary formula whose parentheses the
    /// negation's own (`¬(A ∧ B)`).
    fn group(&mut self, nesting: usize) -> Result<(usize, u32), VerifyError> {
        let (left, left_depth) = self.formula(nesting + 1)?;
        match self.next() {
            Some(Token::Close) => Ok((left, left_depth)),
            Some(Token::Binary(connective)) => self.binary(connective, left, left_depth, nesting),
            _ => Err(self.error("Expected `)` or a connective")),
        }
    }

    /// The right operand and `)` of a binary formula.
    fn binary(
        &mut self,
        connective: Connective,
        left: usize,
        left_depth: u32,
        nesting: usize,
    ) -> Result<(usize, u32), VerifyError> {
        let (right, right_depth) = self.formula(nesting + 1)?;
        if self.next() != Some(Token::Close) {
            return Err(self.error("Expected `)`"));
        }
        let term = self.push(Term::Apply(connective, left, right));
        Ok((term, left_depth.max(right_depth) + 1))
    }
}

/// Parses one formula over `variables`.
pub(super) fn parse_formula(text: &str, variables: &[char]) -> Result<Expression, VerifyError> {
    let tokens = tokenize(text, variables)?;
    let mut parser = Parser {
        tokens: &tokens,
        position: 0,
        terms: Vec::new(),
        text,
    };
    let (root, depth) = parser.formula(0)?;
    if parser.position != tokens.len() {
        return Err(parser.error("Trailing input"));
    }
    Ok(Expression {
        terms: parser.terms,
        root,
        depth,
    })
}

/// Reads a puzzle: the variable list of its first line (`... over the N variables A, B,
/// C.`), then every line `(k) formula`, numbered from 1.
pub(super) fn read_puzzle(text: &str) -> Result<Puzzle, VerifyError> {
    let header = text.lines().next().unwrap_or_default();
    let list = header
        .split_once("variables ")
        .and_then(|(_, rest)| rest.split_once('.'))
        .map(|(list, _)| list)
        .ok_or_else(|| unparseable("No variable list in the first line"))?;
    let mut variables = Vec::new();
    for name in list.split(", ") {
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(letter), None) if letter.is_ascii_uppercase() => variables.push(letter),
            _ => return Err(unparseable(format!("Bad variable name `{name}`"))),
        }
    }
    let stated = header
        .strip_prefix("Below are ")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(number, _)| number.parse::<usize>().ok())
        .ok_or_else(|| unparseable("No formula count in the first line"))?;
    let mut formulas = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('(') else {
            continue;
        };
        let Some((number, formula)) = rest.split_once(") ") else {
            continue;
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if number.parse::<usize>().ok() != Some(formulas.len() + 1) {
            return Err(unparseable(format!("Formula `({number})` out of order")));
        }
        formulas.push(parse_formula(formula, &variables)?);
    }
    if formulas.len() != stated {
        return Err(unparseable(format!(
            "The puzzle announces {stated} formulas and lists {}",
            formulas.len()
        )));
    }
    Ok(Puzzle {
        variables,
        formulas,
    })
}

impl Expression {
    /// The truth table over `columns` (one per variable, `words` long), in one pass: the
    /// parser pushes every term after its operands.
    fn table(&self, columns: &[Vec<u64>], words: usize) -> Vec<u64> {
        let mut tables = vec![0u64; self.terms.len() * words];
        for (index, term) in self.terms.iter().enumerate() {
            let (done, rest) = tables.split_at_mut(index * words);
            let out = &mut rest[..words];
            let operand = |term: usize| &done[term * words..(term + 1) * words];
            match *term {
                Term::Variable(variable) => out.copy_from_slice(&columns[variable]),
                Term::Negation(inner) => {
                    for (o, &x) in out.iter_mut().zip(operand(inner)) {
                        *o = !x;
                    }
                }
                Term::Apply(connective, left, right) => {
                    for ((o, &l), &r) in out.iter_mut().zip(operand(left)).zip(operand(right)) {
                        *o = connective.word(l, r);
                    }
                }
            }
        }
        tables[self.root * words..(self.root + 1) * words].to_vec()
    }
}

impl Puzzle {
    /// All models, each as one truth value per variable in list order, by exhaustive
    /// bit-parallel evaluation. Stops collecting after `limit` models but counts them all.
    /// The caller bounds the number of variables.
    pub(super) fn models(&self, limit: usize) -> (u64, Vec<Vec<bool>>) {
        let n = self.variables.len();
        let size = 1usize << n;
        let words = size.div_ceil(64);
        // Variable `index` is bit `n - 1 - index` of an assignment `64 * word + offset`:
        // below bit 6 it repeats within every word, above it fills or clears whole words.
        let columns: Vec<Vec<u64>> = (0..n)
            .map(|index| {
                let bit = n - 1 - index;
                let within = (0..64)
                    .filter(|offset| (offset >> bit) & 1 == 1)
                    .fold(0u64, |acc, offset| acc | 1 << offset);
                (0..words)
                    .map(|word| match bit {
                        0..=5 => within,
                        _ if (word >> (bit - 6)) & 1 == 1 => u64::MAX,
                        _ => 0,
                    })
                    .collect()
            })
            .collect();
        let mut all: Vec<u64> = (0..words)
            .map(|word| match size - word * 64 {
                64.. => u64::MAX,
                existing => (1u64 << existing) - 1,
            })
            .collect();
        for formula in &self.formulas {
            let table = formula.table(&columns, words);
            all.iter_mut().zip(&table).for_each(|(a, t)| *a &= t);
        }
        let count = all.iter().map(|w| u64::from(w.count_ones())).sum();
        let mut found = Vec::new();
        for (word, &bits) in all.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 && found.len() < limit {
                let x = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                found.push((0..n).map(|i| (x >> (n - 1 - i)) & 1 == 1).collect());
            }
        }
        (count, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABCD: [char; 4] = ['A', 'B', 'C', 'D'];

    fn models_of(formulas: &[&str]) -> (u64, Vec<Vec<bool>>) {
        let puzzle = Puzzle {
            variables: ABCD.to_vec(),
            formulas: formulas
                .iter()
                .map(|f| parse_formula(f, &ABCD).unwrap())
                .collect(),
        };
        puzzle.models(16)
    }

    #[test]
    fn parses_the_generator_syntax_with_depths() {
        for (text, depth) in [
            ("A", 0),
            ("¬A", 0),
            ("¬(A)", 1),
            ("¬(¬A)", 1),
            ("(A ∧ ¬B)", 1),
            ("¬(A ∨ B)", 2),
            ("¬((A ∨ B))", 2),
            ("((A → B) ↔ ¬(C ⊕ ¬D))", 3),
            ("(¬(¬(A)) ∧ B)", 3),
        ] {
            let parsed = parse_formula(text, &ABCD).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.depth, depth, "{text}");
        }
    }

    #[test]
    fn connectives_mean_what_they_say() {
        // Model counts over 4 variables (16 assignments).
        assert_eq!(models_of(&["(A ∧ B)"]).0, 4);
        assert_eq!(models_of(&["(A ∨ B)"]).0, 12);
        assert_eq!(models_of(&["(A → B)"]).0, 12);
        assert_eq!(models_of(&["(A ↔ B)"]).0, 8);
        assert_eq!(models_of(&["(A ⊕ B)"]).0, 8);
        assert_eq!(models_of(&["¬(A ∧ B)"]).0, 12);
        let (count, models) = models_of(&["(A ∧ ¬B)", "(C → D)", "(¬D ∧ ¬(¬D))"]);
        assert_eq!(count, 0);
        assert!(models.is_empty());
        let (count, models) = models_of(&["(A ∧ ¬B)", "(C ∧ ¬D)", "(B → C)"]);
        assert_eq!(count, 1);
        assert_eq!(models, vec![vec![true, false, true, false]]);
        let (count, _) = models_of(&["(A → B)", "(B → A)"]);
        assert_eq!(count, 8);
    }

    #[test]
    fn rejects_malformed_text_without_panicking() {
        for text in [
            "",
            "(",
            ")",
            "A B",
            "(A ∧ B",
            "(A ∧ B))",
            "A ∧ B",
            "(A ∧)",
            "(∧ B)",
            "¬",
            "¬¬A",
            "(A ∧ E)",
            "(a ∧ B)",
            "(A & B)",
            "((A ∧ B)",
            "(A ∧ B ∨ C)",
            "¬(A",
            "¬(A ∧ B",
            "()",
        ] {
            match parse_formula(text, &ABCD) {
                Err(VerifyError::Unparseable(_)) => {}
                other => panic!("`{text}` gave {other:?}"),
            }
        }
        let deep = format!("{}A{}", "¬(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            parse_formula(&deep, &ABCD),
            Err(VerifyError::Unparseable(_))
        ));
        let error = parse_formula("(A ∧ Q)", &ABCD).unwrap_err();
        assert!(
            error.to_string().contains("Unknown variable `Q`"),
            "{error}"
        );
    }

    #[test]
    fn reads_a_puzzle_and_checks_its_numbering() {
        let text = "Below are 3 logical formulas over the 4 variables A, B, C, D. Find it.\n\n\
                    (1) (A ∧ ¬B)\n(2) (C ∧ ¬D)\n(3) (B → C)\n\nThe end.";
        let puzzle = read_puzzle(text).unwrap();
        assert_eq!(puzzle.variables, ABCD);
        assert_eq!(puzzle.formulas.len(), 3);
        let skipped = text.replace("(2) (C ∧ ¬D)\n", "");
        assert!(matches!(
            read_puzzle(&skipped),
            Err(VerifyError::Unparseable(_))
        ));
        let renumbered = text.replace("(3) (B", "(4) (B");
        assert!(matches!(
            read_puzzle(&renumbered),
            Err(VerifyError::Unparseable(_))
        ));
        for garbage in [
            "",
            "nonsense",
            "Below are x logical formulas over the variables",
        ] {
            assert!(matches!(
                read_puzzle(garbage),
                Err(VerifyError::Unparseable(_))
            ));
        }
    }
}
