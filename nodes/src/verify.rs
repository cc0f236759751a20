//! `verify`: re-solves every instance of a dataset with a solver independent of its
//! generator, and keeps only what is right, unambiguous and unique.
//!
//! For each record: the family's independent solver must agree with the ground truth, and a
//! response made of that ground truth must score full marks through the reward function
//! (so the verifier and the reward can never disagree about a kept instance). Duplicates
//! within a split are dropped, and any train instance that also appears in test is dropped
//! from train. `report.json` gives counts, drops by reason (with examples) and per-level
//! statistics of what was kept. `reward = "paper"` checks the ground truths against the
//! paper's released reward rules instead of the strict default (see
//! [`peirce_tasks::reward::RewardMode`]).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use peirce_dag::value::Value;
use serde::Serialize;

use crate::generate::write_dataset;
use peirce_tasks::dataset::{level_stats, read_jsonl, LevelStats, Record};
use peirce_tasks::reward::{self, RewardMode};
use peirce_tasks::{family, release};

/// The `verify` kind.
pub struct Verify;

impl Verify {
    /// Bump when verification rules change.
    pub const VERSION: u32 = 4;
}

/// Why `verify` drops a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason, a key of `report.json`'s `dropped` (`invalid`, `reward_mismatch`, or a
    /// family's verification failure such as `ambiguous`).
    pub reason: &'static str,
    /// What exactly is wrong with this record.
    pub detail: String,
}

impl Rejection {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Checks one record, its ground truth graded under `mode`: `Err` says why it is dropped.
pub fn check(record: &Record, mode: RewardMode) -> Result<(), Rejection> {
    if record.puzzle.trim().is_empty() || record.answer.trim().is_empty() {
        return Err(Rejection::new("invalid", "empty puzzle or answer"));
    }
    if let Some(why) = record.params.get(release::UNREAD) {
        return Err(Rejection::new(
            "unparseable",
            format!(
                "imported from the paper's release: {}",
                why.as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(family) = family(&record.task) {
        if family.answer_kind() != record.answer_kind {
            return Err(Rejection::new(
                "invalid",
                format!(
                    "answer kind {:?} does not match the task",
                    record.answer_kind
                ),
            ));
        }
        if let Err(error) = family.verify(&record.instance()) {
            return Err(Rejection::new(error.reason(), error.to_string()));
        }
    }
    let response = reward::perfect_response(
        record.answer_kind,
        &record.answer,
        record.solution.as_deref(),
    );
    let score = reward::score_with(mode, record.answer_kind, &response, &record.answer);
    if !score.is_correct() {
        return Err(Rejection::new(
            "reward_mismatch",
            format!(
                "the ground truth itself scores {} (reward `{}`)",
                score.total,
                mode.name()
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
struct Report {
    reward: &'static str,
    input: BTreeMap<String, usize>,
    kept: BTreeMap<String, usize>,
    dropped: BTreeMap<String, usize>,
    examples: BTreeMap<String, Vec<String>>,
    levels: BTreeMap<String, BTreeMap<String, LevelStats>>,
}

fn check_all(records: &[Record], threads: usize, mode: RewardMode) -> Vec<Result<(), Rejection>> {
    let chunk = records.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|record| check(record, mode))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("verifier threads do not panic"))
            .collect()
    })
}

/// Verifies `train` and `test`; returns what is kept and the report.
fn verify(
    train: Vec<Record>,
    test: Vec<Record>,
    threads: usize,
    mode: RewardMode,
) -> (Vec<Record>, Vec<Record>, Report) {
    let mut report = Report {
        reward: mode.name(),
        ..Report::default()
    };
    let note_drop = |report: &mut Report, reason: &str, detail: String| {
        *report.dropped.entry(reason.to_string()).or_default() += 1;
        let examples = report.examples.entry(reason.to_string()).or_default();
        if examples.len() < 5 {
            examples.push(detail);
        }
    };
    let mut kept = BTreeMap::new();
    for (split, records) in [("test", test), ("train", train)] {
        report.input.insert(split.to_string(), records.len());
        let verdicts = check_all(&records, threads, mode);
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (record, verdict) in records.into_iter().zip(verdicts) {
            if let Err(Rejection { reason, detail }) = verdict {
                note_drop(&mut report, reason, format!("{}: {detail}", record.id));
                continue;
            }
            if !seen.insert(record.id.clone()) {
                note_drop(&mut report, "duplicate", record.id.clone());
                continue;
            }
            out.push(record);
        }
        kept.insert(split, (out, seen));
    }
    let (test, test_ids) = kept.remove("test").expect("test split");
    let (train, _) = kept.remove("train").expect("train split");
    let mut train_kept = Vec::new();
    for record in train {
        if test_ids.contains(&record.id) {
            note_drop(&mut report, "train_test_overlap", record.id.clone());
        } else {
            train_kept.push(record);
        }
    }
    report.kept.insert("train".into(), train_kept.len());
    report.kept.insert("test".into(), test.len());
    let family_of = |records: &[Record]| records.first().and_then(|r| family(&r.task));
    report.levels.insert(
        "train".into(),
        level_stats(&train_kept, family_of(&train_kept)),
    );
    report
        .levels
        .insert("test".into(), level_stats(&test, family_of(&test)));
    (train_kept, test, report)
}

/// The `reward` param.
fn reward_mode(params: &BTreeMap<String, Value>) -> Result<RewardMode, NodeError> {
    let name = params
        .get("reward")
        .and_then(Value::as_str)
        .unwrap_or("strict");
    RewardMode::parse(name).ok_or_else(|| {
        NodeError::BadInput(format!(
            "`reward` must be \"strict\" or \"paper\", got {name:?}"
        ))
    })
}

fn run_verify(context: &NodeContext) -> Result<(), NodeError> {
    let data = context
        .inputs
        .get("data")
        .ok_or_else(|| NodeError::BadInput("`verify` needs an input named `data`".into()))?;
    let read =
        |name: &str| read_jsonl(&data.join(name)).map_err(|e| NodeError::BadInput(e.to_string()));
    let (train, test) = (read("train.jsonl")?, read("test.jsonl")?);
    let total = train.len() + test.len();
    let mode = reward_mode(&context.params)?;
    let (train, test, report) = verify(train, test, context.cpus.max(1) as usize, mode);
    let dropped: usize = report.dropped.values().sum();
    let limit = context
        .params
        .get("max_drop_fraction")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    write_dataset(
        &context.output_dir,
        &train,
        &test,
        &report,
        "report.json",
        mode,
    )?;
    if total > 0 && dropped as f64 / total as f64 > limit {
        return Err(NodeError::BadInput(format!(
            "{dropped} of {total} instances failed verification (more than `max_drop_fraction` = {limit}): {:?}",
            report.dropped
        )));
    }
    Ok(())
}

#[async_trait]
impl NodeKind for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }

    fn version(&self) -> u32 {
        Self::VERSION
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "max_drop_fraction",
                ParamType::Float,
                Some(Value::Float(1.0)),
                "Fail the node when more than this fraction of instances is dropped",
            ),
            ParamSpec::optional(
                "reward",
                ParamType::String,
                Some(Value::String("strict".into())),
                "The reward rules the ground truths must score full marks under: strict or paper",
            ),
        ]
    }

    fn validate(&self, node: &peirce_dag::spec::NodeSpec) -> Result<(), String> {
        if !node.inputs.contains_key("data") {
            return Err("`verify` needs an input named `data` (a `generate` node)".into());
        }
        reward_mode(&node.params).map_err(|error| error.to_string())?;
        Ok(())
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        tokio::task::spawn_blocking(move || run_verify(&context))
            .await
            .map_err(|e| NodeError::Internal(format!("verifier task: {e}")))?
    }
}
