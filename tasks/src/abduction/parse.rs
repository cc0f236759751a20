//! Reading a puzzle and an answer back from their text, for the verifier.
//!
//! The grammar is the generator's output and no more: `Premises:`, numbered premises
//! `(body) => HEAD` (bodies fully parenthesized; one operator per parenthesis; `NOT` applies
//! to one operand), `Known atoms: ...`, `Goals: ...`, then free text. Anything else is an
//! error, never a panic: nesting, premise and goal counts are bounded.

use std::collections::BTreeMap;
/// Parser limits: nothing a puzzle of ours comes near.
const MAX_NESTING: usize = 16;
const MAX_PREMISES: usize = 1024;
const MAX_GOALS: usize = 64;

/// A body formula.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Atom(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rule {
    pub(super) body: Expr,
    pub(super) head: usize,
}

/// A puzzle as read from its text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Program {
    pub(super) names: Vec<String>,
    pub(super) rules: Vec<Rule>,
    pub(super) known: Vec<bool>,
    pub(super) goals: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token<'a> {
    Open,
    Close,
    Arrow,
    Word(&'a str),
}

fn tokenize(line: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let bytes = line.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'\t' => at += 1,
            b'(' => {
                tokens.push(Token::Open);
                at += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                at += 1;
            }
            b'=' if bytes.get(at + 1) == Some(&b'>') => {
                tokens.push(Token::Arrow);
                at += 2;
            }
            byte if byte.is_ascii_alphanumeric() || byte == b'_' => {
                let start = at;
                while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                    at += 1;
                }
                tokens.push(Token::Word(&line[start..at]));
            }
            _ => return Err(format!("Unexpected character in premise `{line}`")),
        }
    }
    Ok(tokens)
}

fn is_keyword(word: &str) -> bool {
    matches!(word, "AND" | "OR" | "NOT")
}

fn is_name(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !is_keyword(word)
}

/// Interns atom names in order of appearance.
#[derive(Default)]
struct Names {
    index: BTreeMap<String, usize>,
    names: Vec<String>,
}

impl Names {
    fn intern(&mut self, name: &str) -> Result<usize, String> {
        if !is_name(name) {
            return Err(format!("`{name}` is not an atom name"));
        }
        if let Some(&index) = self.index.get(name) {
            return Ok(index);
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        Ok(self.names.len() - 1)
    }
}

/// A recursive-descent reader of one premise's tokens.
struct Reader<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
}

impl<'a> Reader<'_, 'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.at).copied();
        self.at += 1;
        token
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.at).copied()
    }

    /// After an opening parenthesis: `NOT operand )`, or operands joined by one operator.
    fn group(&mut self, names: &mut Names, nesting: usize) -> Result<Expr, String> {
        if nesting > MAX_NESTING {
            return Err("Premise nested too deeply".into());
        }
        if self.peek() == Some(Token::Word("NOT")) {
            self.at += 1;
            let operand = self.operand(names, nesting)?;
            return match self.next() {
                Some(Token::Close) => Ok(Expr::Not(Box::new(operand))),
                _ => Err("Expected `)` after a NOT operand".into()),
            };
        }
        let mut operands = vec![self.operand(names, nesting)?];
        let mut operator = None;
        loop {
            match self.next() {
                Some(Token::Close) => break,
                Some(Token::Word(word @ ("AND" | "OR"))) => {
                    if operator.is_some_and(|previous| previous != word) {
                        return Err("AND and OR mixed without parentheses".into());
                    }
                    operator = Some(word);
                    operands.push(self.operand(names, nesting)?);
                }
                _ => return Err("Expected AND, OR or `)`".into()),
            }
        }
        Ok(match operator {
            None => operands.pop().expect("one operand was read"),
            Some("AND") => Expr::And(operands),
            Some(_) => Expr::Or(operands),
        })
    }

    fn operand(&mut self, names: &mut Names, nesting: usize) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Open) => self.group(names, nesting + 1),
            Some(Token::Word(word)) => Ok(Expr::Atom(names.intern(word)?)),
            _ => Err("Expected an atom or `(`".into()),
        }
    }
}

/// `(body) => HEAD`.
fn parse_rule(line: &str, names: &mut Names) -> Result<Rule, String> {
    let tokens = tokenize(line)?;
    let mut reader = Reader {
        tokens: &tokens,
        at: 0,
    };
    if reader.next() != Some(Token::Open) {
        return Err(format!("Premise `{line}` does not start with `(`"));
    }
    let body = reader.group(names, 1)?;
    let head = match (reader.next(), reader.next(), reader.next()) {
        (Some(Token::Arrow), Some(Token::Word(head)), None) => names.intern(head)?,
        _ => return Err(format!("Premise `{line}` does not end in `=> ATOM`")),
    };
    Ok(Rule { body, head })
}

fn parse_list(list: &str, names: &mut Names) -> Result<Vec<usize>, String> {
    let list = list.trim();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| names.intern(name.trim()))
        .collect()
}

/// Reads a puzzle: `Premises:`, numbered premises, `Known atoms: ...`, `Goals: ...`, then
/// free text.
pub(super) fn parse_puzzle(text: &str) -> Result<Program, String> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("Premises:") {
        return Err("The puzzle does not start with `Premises:`".into());
    }
    let mut names = Names::default();
    let mut rules = Vec::new();
    let known_line = loop {
        let line = lines
            .next()
            .ok_or("The puzzle has no `Known atoms:` line")?;
        if let Some(rest) = line.strip_prefix("Known atoms:") {
            break rest;
        }
        let (number, premise) = line
            .split_once(". ")
            .ok_or_else(|| format!("Unnumbered premise `{line}`"))?;
        if number.parse::<usize>().ok() != Some(rules.len() + 1) {
            return Err(format!("Premise `{line}` is out of sequence"));
        }
        if rules.len() == MAX_PREMISES {
            return Err("Too many premises".into());
        }
        rules.push(parse_rule(premise, &mut names)?);
    };
    let known_atoms = parse_list(known_line, &mut names)?;
    let goals_line = lines
        .next()
        .and_then(|line| line.strip_prefix("Goals:"))
        .ok_or("No `Goals:` line after the known atoms")?;
    let goals = parse_list(goals_line, &mut names)?;
    if goals.is_empty() || goals.len() > MAX_GOALS {
        return Err(format!("{} goals", goals.len()));
    }
    for (position, goal) in goals.iter().enumerate() {
        if goals[..position].contains(goal) {
            return Err(format!("Goal `{}` is listed twice", names.names[*goal]));
        }
    }
    let mut known = vec![false; names.names.len()];
    for atom in known_atoms {
        known[atom] = true;
    }
    Ok(Program {
        names: names.names,
        rules,
        known,
        goals,
    })
}

/// Reads an answer: one `(k) GOAL is reachable|unreachable` line per goal, in goal order.
pub(super) fn parse_answer(text: &str, program: &Program) -> Result<Vec<bool>, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if lines.len() != program.goals.len() {
        return Err(format!(
            "{} answer lines for {} goals",
            lines.len(),
            program.goals.len()
        ));
    }
    let mut statuses = Vec::with_capacity(lines.len());
    for (position, (line, &goal)) in lines.iter().zip(&program.goals).enumerate() {
        let unexpected = || {
            format!(
                "Answer line `{line}` is not `({}) {} is reachable|unreachable`",
                position + 1,
                program.names[goal]
            )
        };
        let rest = line
            .strip_prefix(&format!("({}) {} is ", position + 1, program.names[goal]))
            .ok_or_else(unexpected)?;
        statuses.push(match rest {
            "reachable" => true,
            "unreachable" => false,
            _ => return Err(unexpected()),
        });
    }
    Ok(statuses)
}
