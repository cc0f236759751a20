//! `peirce tasks sample`: instances of a task family, for a person to read.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use peirce_tasks::dataset::Record;
use peirce_tasks::{family, Options, TaskRng, FAMILIES};

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    command: TasksCommand,
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
    /// Print generated instances with their answers
    Sample(SampleArgs),
}

#[derive(Debug, Args)]
struct SampleArgs {
    /// deduction, induction, abduction or arithmetic
    task: String,
    /// The level
    #[arg(short, long, default_value_t = 1)]
    level: u32,
    /// How many instances
    #[arg(short, long, default_value_t = 1)]
    count: u64,
    /// Random seed (the same seed gives the same instances as a `generate` node)
    #[arg(short, long, default_value_t = 0)]
    seed: u64,
    /// Abduction layout: shortcut-free or paper
    #[arg(long, default_value = "shortcut-free")]
    layout: String,
    /// One JSON record per line (the dataset's JSONL records)
    #[arg(long)]
    json: bool,
}

pub fn tasks(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let TasksCommand::Sample(args) = args.command;
    let found = family(&args.task).ok_or_else(|| {
        anyhow!(
            "Unknown task `{}` (known: {})",
            args.task,
            FAMILIES.join(", ")
        )
    })?;
    if args.level < 1 || args.level > found.max_level() {
        bail!(
            "Task `{}` has levels 1..={}, got {}",
            args.task,
            found.max_level(),
            args.level
        );
    }
    if !["shortcut-free", "paper"].contains(&args.layout.as_str()) {
        bail!(
            "`--layout` must be shortcut-free or paper, got `{}`",
            args.layout
        );
    }
    let options = Options {
        layout: Some(args.layout.clone()),
        with_solution: true,
    };
    for index in 0..args.count {
        let mut rng = TaskRng::for_instance(args.seed, found.name(), args.level, index);
        let instance = found.generate(args.level, &mut rng, &options);
        let record = Record::from_instance(instance, found, "sample");
        if args.json {
            println!("{}", serde_json::to_string(&record)?);
            continue;
        }
        println!(
            "=== {} level {} #{index} ({}) ===",
            record.task, record.level, record.id
        );
        println!("{}\n", record.puzzle);
        if let Some(solution) = &record.solution {
            println!("--- worked solution ---\n{solution}\n");
        }
        println!("--- answer ---\n{}\n", record.answer);
    }
    Ok(ExitCode::SUCCESS)
}
