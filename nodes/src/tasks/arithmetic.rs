//! arithmetic: PLACEHOLDER, being written.

use super::{AnswerKind, Family, Instance, Options, TaskRng, VerifyError};

/// The arithmetic family.
pub struct Arithmetic;

impl Family for Arithmetic {
    fn name(&self) -> &'static str {
        "arithmetic"
    }
    fn max_level(&self) -> u32 {
        5
    }
    fn instruction(&self) -> &'static str {
        ""
    }
    fn answer_kind(&self) -> AnswerKind {
        AnswerKind::Boxed
    }
    fn generate(&self, level: u32, _rng: &mut TaskRng, _options: &Options) -> Instance {
        Instance {
            task: "arithmetic".into(),
            level,
            puzzle: String::new(),
            answer: String::new(),
            params: Default::default(),
            solution: None,
        }
    }
    fn verify(&self, _instance: &Instance) -> Result<(), VerifyError> {
        Err(VerifyError::Invalid("not written yet".into()))
    }
    fn answer_balance(&self, _answer: &str) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
