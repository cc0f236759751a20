//! Task datasets for the trainers: the `train.jsonl` / `test.jsonl` records a `generate`
//! (or `verify`) node writes, tokenized into RL examples and supervised pairs.

use std::path::Path;

use peirce_tasks::dataset::{read_jsonl, Record};
use peirce_tasks::reward::{perfect_response, RewardMode};

use crate::error::{Result, TorchError};
use crate::tokenizer::{Tokenizer, IM_END};
use crate::train::Example;

/// The records of `split` (`train` or `test`) in a dataset folder, keeping `levels` only
/// (all when `None`).
pub fn read_split(dir: &Path, split: &str, levels: Option<&[u32]>) -> Result<Vec<Record>> {
    let path = dir.join(format!("{split}.jsonl"));
    let records = read_jsonl(&path).map_err(|error| TorchError::Invalid(error.to_string()))?;
    Ok(records
        .into_iter()
        .filter(|r| levels.is_none_or(|levels| levels.contains(&r.level)))
        .collect())
}

/// RL examples: tokenized prompts with their ground truth.
pub fn examples(
    records: &[Record],
    tokenizer: &Tokenizer,
    reward: RewardMode,
) -> Result<Vec<Example>> {
    records
        .iter()
        .map(|record| {
            Ok(Example {
                id: record.id.clone(),
                prompt: tokenizer.encode(&record.prompt)?,
                answer: record.answer.clone(),
                kind: record.answer_kind,
                reward,
                level: record.level,
            })
        })
        .collect()
}

/// Supervised pairs: the prompt, and the worked solution in the paper's format as the
/// target (the reward's own perfect response, then `<|im_end|>`). Records without a
/// solution are skipped.
pub fn sft_pairs(records: &[Record], tokenizer: &Tokenizer) -> Result<Vec<(Vec<i64>, Vec<i64>)>> {
    records
        .iter()
        .filter(|r| r.solution.is_some())
        .map(|record| {
            let mut target = perfect_response(
                record.answer_kind,
                &record.answer,
                record.solution.as_deref(),
            );
            target.push_str(IM_END);
            Ok((
                tokenizer.encode(&record.prompt)?,
                tokenizer.encode(&target)?,
            ))
        })
        .collect()
}
