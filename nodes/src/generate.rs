//! `generate`: a dataset of task instances, by level, seeded; or an imported dataset.
//!
//! Instance `i` of level `l` is drawn from its own random stream (seed, task, level, i), so
//! the output depends only on the parameters, never on thread count or scheduling.
//! Duplicates (same puzzle) are skipped and replaced by the next index. The last
//! `round(count * split)` instances of each level form the test split.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use async_trait::async_trait;
use peirce_dag::kind::{NodeContext, NodeError, NodeEvent, NodeKind};
use peirce_dag::params::{ParamSpec, ParamType};
use peirce_dag::spec::NodeSpec;
use peirce_dag::value::Value;
use serde::Serialize;

use peirce_tasks::dataset::{level_stats, write_jsonl, Record};
use peirce_tasks::import::{import, ImportOptions};
use peirce_tasks::release;
use peirce_tasks::reward::RewardMode;
use peirce_tasks::verl::{write_parquet, write_verl_files};
use peirce_tasks::{family, AnswerKind, Family, Instance, Options, TaskRng, FAMILIES};

/// The instruction used for imported math problems.
pub const MATH_INSTRUCTION: &str =
    "Solve the problem step by step and give the final answer inside <answer> </answer> as \\boxed{...}.";

/// The `generate` kind.
pub struct Generate;

impl Generate {
    /// Bump when generated datasets change meaning.
    pub const VERSION: u32 = 5;
}

/// Generation settings read from a node's params.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Family name or `import`.
    pub task: String,
    /// Levels to generate.
    pub levels: Vec<u32>,
    /// Instances per level.
    pub count: u64,
    /// Seed.
    pub seed: u64,
    /// Test fraction.
    pub split: f64,
    /// Family options.
    pub options: Options,
}

fn int(params: &BTreeMap<String, Value>, name: &str) -> i64 {
    params.get(name).and_then(Value::as_i64).unwrap_or_default()
}

fn text<'a>(params: &'a BTreeMap<String, Value>, name: &str) -> &'a str {
    params.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Reads and checks the settings.
pub fn settings(params: &BTreeMap<String, Value>) -> Result<Settings, String> {
    let task = text(params, "task").to_string();
    let layout = text(params, "layout").to_string();
    if !["shortcut-free", "paper"].contains(&layout.as_str()) {
        return Err(format!(
            "`layout` must be \"shortcut-free\" or \"paper\", got {layout:?}"
        ));
    }
    let count = int(params, "count");
    if count < 1 {
        return Err(format!("`count` must be at least 1, got {count}"));
    }
    let split = params.get("split").and_then(Value::as_f64).unwrap_or(0.2);
    if !(0.0..=1.0).contains(&split) {
        return Err(format!(
            "`split` (the test fraction) must be within 0..=1, got {split}"
        ));
    }
    let mut levels = Vec::new();
    for level in params
        .get("levels")
        .and_then(Value::as_list)
        .unwrap_or_default()
    {
        let level = level.as_i64().unwrap_or_default();
        if level < 1 {
            return Err(format!("levels start at 1, got {level}"));
        }
        levels.push(level as u32);
    }
    if task != "import" {
        let Some(found) = family(&task) else {
            return Err(format!(
                "unknown task `{task}` (known: {}, import)",
                FAMILIES.join(", ")
            ));
        };
        if let Some(bad) = levels.iter().find(|&&l| l > found.max_level()) {
            return Err(format!(
                "task `{task}` has levels 1..={}, got {bad}",
                found.max_level()
            ));
        }
        if levels.is_empty() {
            return Err("`levels` is empty".into());
        }
    }
    let levels: Vec<u32> = levels
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Settings {
        task,
        levels,
        count: count as u64,
        seed: int(params, "seed") as u64,
        split,
        options: Options {
            layout: Some(layout),
            with_solution: params
                .get("solutions")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        },
    })
}

/// `count` distinct instances of one level, in index order; `threads` only changes speed.
pub fn generate_level(
    family: &dyn Family,
    level: u32,
    settings: &Settings,
    threads: usize,
) -> Vec<Instance> {
    let mut kept = Vec::with_capacity(settings.count as usize);
    let mut seen = BTreeSet::new();
    let mut next = 0u64;
    while (kept.len() as u64) < settings.count {
        let missing = settings.count - kept.len() as u64;
        let batch = missing + missing / 16 + 1;
        let start = next;
        next += batch;
        let threads = threads.clamp(1, batch as usize);
        let chunk = batch.div_ceil(threads as u64);
        let generated: Vec<Instance> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let (from, to) = (
                        start + t * chunk,
                        (start + (t + 1) * chunk).min(start + batch),
                    );
                    scope.spawn(move || {
                        (from..to)
                            .map(|index| {
                                let mut rng = TaskRng::for_instance(
                                    settings.seed,
                                    family.name(),
                                    level,
                                    index,
                                );
                                family.generate(level, &mut rng, &settings.options)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("generator threads do not panic"))
                .collect()
        });
        for instance in generated {
            if (kept.len() as u64) < settings.count && seen.insert(instance.puzzle.clone()) {
                kept.push(instance);
            }
        }
    }
    kept
}

/// How many of `count` go to the test split.
pub fn test_count(count: usize, split: f64) -> usize {
    ((count as f64 * split).round() as usize).min(count)
}

/// Splits per level: the last `test_count` of each level are test.
fn split_records(
    by_level: Vec<(u32, Vec<Instance>)>,
    split: f64,
    make: impl Fn(Instance, &str) -> Record,
) -> (Vec<Record>, Vec<Record>) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (_, instances) in by_level {
        let tests = test_count(instances.len(), split);
        let boundary = instances.len() - tests;
        for (index, instance) in instances.into_iter().enumerate() {
            if index < boundary {
                train.push(make(instance, "train"));
            } else {
                test.push(make(instance, "test"));
            }
        }
    }
    (train, test)
}

#[derive(Serialize)]
struct GenerateStats {
    task: String,
    seed: u64,
    layout: Option<String>,
    count_per_level: u64,
    split: f64,
    train: usize,
    test: usize,
    levels: BTreeMap<String, peirce_tasks::dataset::LevelStats>,
}

/// Writes the dataset files of a split pair and its statistics, with verl's chat template
/// and the reward module grading under `mode` beside the parquet files.
pub fn write_dataset(
    dir: &Path,
    train: &[Record],
    test: &[Record],
    stats: &impl Serialize,
    stats_name: &str,
    mode: RewardMode,
) -> Result<(), NodeError> {
    let internal = |e: peirce_tasks::dataset::DatasetError| NodeError::Internal(e.to_string());
    write_jsonl(&dir.join("train.jsonl"), train).map_err(internal)?;
    write_jsonl(&dir.join("test.jsonl"), test).map_err(internal)?;
    write_parquet(&dir.join("train.parquet"), train).map_err(internal)?;
    write_parquet(&dir.join("test.parquet"), test).map_err(internal)?;
    write_verl_files(dir, mode).map_err(internal)?;
    let bytes = serde_json::to_vec_pretty(stats).expect("stats serialize");
    std::fs::write(dir.join(stats_name), bytes).map_err(|e| NodeError::Internal(e.to_string()))
}

fn run_generate(context: &NodeContext) -> Result<(), NodeError> {
    let settings = settings(&context.params).map_err(NodeError::BadInput)?;
    let threads = context.cpus.max(1) as usize;
    let (train, test, family) = if settings.task == "import" {
        let source = context.inputs.get("source").ok_or_else(|| {
            NodeError::BadInput("`task = \"import\"` needs an input named `source`".into())
        })?;
        let name = match text(&context.params, "name") {
            "" => source
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "imported".into()),
            name => name.to_string(),
        };
        let options = ImportOptions {
            name,
            problem_field: text(&context.params, "problem_field").to_string(),
            answer_field: text(&context.params, "answer_field").to_string(),
            level_field: text(&context.params, "level_field").to_string(),
        };
        let instances = import(source, &options).map_err(|e| NodeError::BadInput(e.to_string()))?;
        let mut by_level: BTreeMap<u32, Vec<Instance>> = BTreeMap::new();
        for instance in instances {
            by_level.entry(instance.level).or_default().push(instance);
        }
        let (train, test) = split_records(
            by_level.into_iter().collect(),
            settings.split,
            |instance, split| match family(&instance.task) {
                // Rows of the paper's release map to their task family.
                Some(family) if instance.params.contains_key(release::SOURCE_LAYOUT) => {
                    Record::from_instance(instance, family, split)
                }
                _ => Record::build(instance, MATH_INSTRUCTION, AnswerKind::Boxed, split),
            },
        );
        (train, test, None)
    } else {
        let family = family(&settings.task).expect("checked by settings");
        let mut by_level = Vec::new();
        for (done, &level) in settings.levels.iter().enumerate() {
            context.emit(NodeEvent::Progress {
                done: done as u64,
                total: settings.levels.len() as u64,
                message: format!("{} level {level}", settings.task),
            });
            by_level.push((level, generate_level(family, level, &settings, threads)));
        }
        let (train, test) = split_records(by_level, settings.split, |instance, split| {
            Record::from_instance(instance, family, split)
        });
        (train, test, Some(family))
    };
    let all: Vec<Record> = train.iter().chain(&test).cloned().collect();
    let stats = GenerateStats {
        task: settings.task.clone(),
        seed: settings.seed,
        layout: (settings.task == "abduction")
            .then(|| settings.options.layout.clone())
            .flatten(),
        count_per_level: settings.count,
        split: settings.split,
        train: train.len(),
        test: test.len(),
        levels: level_stats(&all, family),
    };
    write_dataset(
        &context.output_dir,
        &train,
        &test,
        &stats,
        "stats.json",
        RewardMode::Strict,
    )
}

#[async_trait]
impl NodeKind for Generate {
    fn name(&self) -> &'static str {
        "generate"
    }

    fn version(&self) -> u32 {
        Self::VERSION
    }

    fn params(&self) -> Vec<ParamSpec> {
        let string = |s: &str| Some(Value::String(s.into()));
        vec![
            ParamSpec::required(
                "task",
                ParamType::String,
                "deduction, induction, abduction, arithmetic, or import",
            ),
            ParamSpec::optional(
                "levels",
                ParamType::list(ParamType::Int),
                Some(Value::List((1..=5).map(Value::Int).collect())),
                "Levels to generate",
            ),
            ParamSpec::optional(
                "count",
                ParamType::Int,
                Some(Value::Int(100)),
                "Instances per level",
            ),
            ParamSpec::optional("seed", ParamType::Int, Some(Value::Int(0)), "Random seed"),
            ParamSpec::optional(
                "split",
                ParamType::Float,
                Some(Value::Float(0.2)),
                "Fraction of each level for the test split",
            ),
            ParamSpec::optional(
                "layout",
                ParamType::String,
                string("shortcut-free"),
                "Abduction layout: shortcut-free or paper",
            ),
            ParamSpec::optional(
                "solutions",
                ParamType::Bool,
                Some(Value::Bool(true)),
                "Emit worked solutions for warm-up",
            ),
            ParamSpec::optional(
                "name",
                ParamType::String,
                string(""),
                "Import: the task name (default: the file stem)",
            ),
            ParamSpec::optional(
                "problem_field",
                ParamType::String,
                string("problem"),
                "Import: the problem column",
            ),
            ParamSpec::optional(
                "answer_field",
                ParamType::String,
                string("answer"),
                "Import: the answer column",
            ),
            ParamSpec::optional(
                "level_field",
                ParamType::String,
                string("level"),
                "Import: the level column",
            ),
        ]
    }

    fn validate(&self, node: &NodeSpec) -> Result<(), String> {
        let settings = settings(&node.params)?;
        if settings.task == "import" && !node.inputs.contains_key("source") {
            return Err(
                "`task = \"import\"` needs an input named `source` (a .jsonl or .parquet file)"
                    .into(),
            );
        }
        Ok(())
    }

    async fn run(&self, context: NodeContext) -> Result<(), NodeError> {
        tokio::task::spawn_blocking(move || run_generate(&context))
            .await
            .map_err(|e| NodeError::Internal(format!("generator task: {e}")))?
    }
}
