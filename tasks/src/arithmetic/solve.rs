//! The arithmetic verifier: reads the problem back from the puzzle text and evaluates it
//! with its own tokenizer and recursive-descent parser (not the generator's tree).

use super::templates::{fill, TEMPLATES};
use super::{level_spec, COMPUTE, SUFFIX};
use crate::{Instance, VerifyError};

/// Deeper nesting than this is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// An evaluated expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Evaluation {
    /// The exact value.
    pub value: i64,
    /// Binary operations in it.
    pub operations: usize,
    /// The largest number written in it.
    pub max_operand: i64,
    /// Its tokens without spaces, `×`/`÷` written `*`/`/`.
    pub normalized: String,
}

/// Why an expression cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EvaluateError {
    /// Not an expression of integers, `+ - * / × ÷` and parentheses.
    Syntax(String),
    /// Well formed, but no exact integer value (inexact division, overflow).
    Value(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Number(i64),
    Plus,
    Minus,
    Times,
    Over,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, EvaluateError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let token = match c {
            ' ' | '\t' | '\n' => continue,
            '0'..='9' => {
                let mut end = start + 1;
                while let Some(&(index, digit)) = chars.peek() {
                    if !digit.is_ascii_digit() {
                        break;
                    }
                    end = index + 1;
                    chars.next();
                }
                let value = text[start..end].parse().map_err(|_| {
                    EvaluateError::Value(format!("Number `{}` is too large", &text[start..end]))
                })?;
                Token::Number(value)
            }
            '+' => Token::Plus,
            '-' | '−' => Token::Minus,
            '*' | '×' => Token::Times,
            '/' | '÷' => Token::Over,
            '(' => Token::Open,
            ')' => Token::Close,
            other => return Err(EvaluateError::Syntax(format!("Unexpected `{other}`"))),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    operations: usize,
    max_operand: i64,
}

impl Parser {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.position).copied()
    }

    /// expression := term (("+" | "-") term)*
    fn expression(&mut self, depth: usize) -> Result<i64, EvaluateError> {
        let mut value = self.term(depth)?;
        while let Some(token @ (Token::Plus | Token::Minus)) = self.peek() {
            self.position += 1;
            let right = self.term(depth)?;
            self.operations += 1;
            value = if token == Token::Plus {
                value.checked_add(right)
            } else {
                value.checked_sub(right)
            }
            .ok_or_else(|| EvaluateError::Value("Overflow".to_string()))?;
        }
        Ok(value)
    }

    /// term := factor (("*" | "/") factor)*
    fn term(&mut self, depth: usize) -> Result<i64, EvaluateError> {
        let mut value = self.factor(depth)?;
        while let Some(token @ (Token::Times | Token::Over)) = self.peek() {
            self.position += 1;
            let right = self.factor(depth)?;
            self.operations += 1;
            value = if token == Token::Times {
                value
                    .checked_mul(right)
                    .ok_or_else(|| EvaluateError::Value("Overflow".to_string()))?
            } else if right != 0 && value.checked_rem(right) == Some(0) {
                value / right
            } else {
                return Err(EvaluateError::Value(format!(
                    "{value} ÷ {right} is not an exact integer"
                )));
            };
        }
        Ok(value)
    }

    /// factor := number | "(" expression ")" | "-" factor
    fn factor(&mut self, depth: usize) -> Result<i64, EvaluateError> {
        if depth > MAX_DEPTH {
            return Err(EvaluateError::Syntax("Nesting is too deep".to_string()));
        }
        let token = self.peek();
        self.position += 1;
        match token {
            Some(Token::Number(value)) => {
                self.max_operand = self.max_operand.max(value);
                Ok(value)
            }
            Some(Token::Open) => {
                let value = self.expression(depth + 1)?;
                if self.peek() != Some(Token::Close) {
                    return Err(EvaluateError::Syntax("Missing `)`".to_string()));
                }
                self.position += 1;
                Ok(value)
            }
            Some(Token::Minus) => self
                .factor(depth + 1)?
                .checked_neg()
                .ok_or_else(|| EvaluateError::Value("Overflow".to_string())),
            Some(other) => Err(EvaluateError::Syntax(format!("Unexpected {other:?}"))),
            None => Err(EvaluateError::Syntax("Unexpected end".to_string())),
        }
    }
}

/// Evaluates an integer expression exactly.
pub(super) fn evaluate(text: &str) -> Result<Evaluation, EvaluateError> {
    let tokens = tokenize(text)?;
    let normalized = tokens
        .iter()
        .map(|token| match token {
            Token::Number(value) => value.to_string(),
            Token::Plus => "+".to_string(),
            Token::Minus => "-".to_string(),
            Token::Times => "*".to_string(),
            Token::Over => "/".to_string(),
            Token::Open => "(".to_string(),
            Token::Close => ")".to_string(),
        })
        .collect();
    let mut parser = Parser {
        tokens,
        position: 0,
        operations: 0,
        max_operand: 0,
    };
    let value = parser.expression(0)?;
    if parser.position != parser.tokens.len() {
        return Err(EvaluateError::Syntax("Trailing tokens".to_string()));
    }
    Ok(Evaluation {
        value,
        operations: parser.operations,
        max_operand: parser.max_operand,
        normalized,
    })
}

/// Matches `text` against a template text; the numbers by slot, or `None`.
fn match_template(template: &str, text: &str) -> Option<Vec<i64>> {
    let mut numbers: Vec<Option<i64>> = Vec::new();
    let mut rest = text;
    let mut pattern = template;
    loop {
        let Some(open) = pattern.find('{') else {
            if rest != pattern {
                return None;
            }
            break;
        };
        rest = rest.strip_prefix(&pattern[..open])?;
        let close = open + pattern[open..].find('}')?;
        let slot: usize = pattern[open + 1..close].parse().ok()?;
        pattern = &pattern[close + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let value: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        if numbers.len() <= slot {
            numbers.resize(slot + 1, None);
        }
        match numbers[slot] {
            Some(seen) if seen != value => return None,
            _ => numbers[slot] = Some(value),
        }
    }
    if numbers.iter().any(Option::is_none) {
        return None;
    }
    Some(numbers.into_iter().flatten().collect())
}

/// The expression a word problem states, from the template whose text it matches.
fn read_word_problem(body: &str) -> Option<String> {
    TEMPLATES.iter().find_map(|template| {
        let numbers = match_template(template.text, body)?;
        Some(fill(template.expression, &numbers))
    })
}

/// Checks an arithmetic instance by re-reading and re-evaluating it.
pub(super) fn verify(instance: &Instance) -> Result<(), VerifyError> {
    let answer: i64 = instance.answer.trim().parse().map_err(|_| {
        VerifyError::Unparseable(format!("Answer `{}` is not an integer", instance.answer))
    })?;
    let body = instance.puzzle.strip_suffix(SUFFIX).ok_or_else(|| {
        VerifyError::Unparseable("Arithmetic puzzle lacks its `\\boxed{}` request".to_string())
    })?;
    let (stated, word) = match body.strip_prefix(COMPUTE) {
        Some(expression) => (expression.to_string(), false),
        None => (
            read_word_problem(body).ok_or_else(|| {
                VerifyError::Unparseable(
                    "Arithmetic puzzle is neither an expression nor a known word problem"
                        .to_string(),
                )
            })?,
            true,
        ),
    };
    let from_text = evaluate(&stated).map_err(|error| match error {
        EvaluateError::Syntax(why) => {
            VerifyError::Unparseable(format!("Expression `{stated}`: {why}"))
        }
        EvaluateError::Value(why) => VerifyError::Invalid(format!("Expression `{stated}`: {why}")),
    })?;
    let recorded = instance
        .params
        .get("expression")
        .and_then(|value| value.as_str())
        .ok_or_else(|| VerifyError::Invalid("Missing `expression` param".to_string()))?;
    let from_params = evaluate(recorded).map_err(|error| {
        VerifyError::Invalid(format!("`expression` param `{recorded}`: {error:?}"))
    })?;
    if from_params.normalized != from_text.normalized || from_params.value != from_text.value {
        return Err(VerifyError::Invalid(format!(
            "`expression` param `{recorded}` differs from the puzzle's `{}`",
            from_text.normalized
        )));
    }
    let level = instance.level;
    let spec = level_spec(level)
        .ok_or_else(|| VerifyError::Invalid(format!("Level {level} is not in 1..=5")))?;
    if from_text.operations != spec.steps {
        return Err(VerifyError::Invalid(format!(
            "{} operations, level {level} has {}",
            from_text.operations, spec.steps
        )));
    }
    let param = |name: &str| instance.params.get(name);
    if param("steps").and_then(|v| v.as_u64()) != Some(from_text.operations as u64)
        || param("max_operand").and_then(|v| v.as_i64()) != Some(from_text.max_operand)
        || param("word_problem").and_then(|v| v.as_bool()) != Some(word)
    {
        return Err(VerifyError::Invalid(
            "`steps`, `max_operand` or `word_problem` param disagrees with the puzzle".to_string(),
        ));
    }
    if from_text.value != answer {
        return Err(VerifyError::WrongAnswer {
            expected: answer.to_string(),
            found: from_text.value.to_string(),
        });
    }
    Ok(())
}
