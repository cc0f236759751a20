//! `peirce merge`: the `merge` kind's code run directly on model folders, outside any
//! workflow and store (for users with folders at hand, and for the merge bench).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use peirce_nodes::merge::{self, recipe, MergeError, MergeOptions, Method, Recipe};

use super::EXIT_INVALID;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The models, as NAME=FOLDER (Hugging Face folders); NAME `base` is task arithmetic's base.
    /// Models are summed in name order, as a `merge` node does.
    #[arg(value_name = "NAME=FOLDER", required = true)]
    models: Vec<String>,
    /// linear (sum(w x) / sum(w)), sum (sum(w x)) or task_arithmetic (base + sum(w (x - base)))
    #[arg(long, default_value = "linear")]
    method: String,
    /// A model's weight, NAME=WEIGHT; one for every model but `base` (repeatable)
    #[arg(long = "weight", short = 'w', value_name = "NAME=WEIGHT")]
    weights: Vec<String>,
    /// The output's element type: float32, bfloat16, float16 or float64 (default: the inputs')
    #[arg(long)]
    dtype: Option<String>,
    /// The output folder: created, or empty
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// Threads (default: all cores)
    #[arg(long, short = 'j')]
    threads: Option<usize>,
}

/// `NAME=VALUE`, with a message naming the flag on failure.
fn split_pair<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => Err(format!("`{text}` is not {what}")),
    }
}

/// The recipe the flags describe, or the message saying what is wrong with them.
fn recipe_of(args: &MergeArgs) -> Result<Recipe, String> {
    let mut inputs = BTreeMap::new();
    for text in &args.models {
        let (name, folder) = split_pair(text, "NAME=FOLDER, e.g. deduction=models/deduction")?;
        if inputs
            .insert(name.to_string(), PathBuf::from(folder))
            .is_some()
        {
            return Err(format!("Model `{name}` is given twice"));
        }
    }
    let mut weights = BTreeMap::new();
    for text in &args.weights {
        let (name, value) = split_pair(text, "NAME=WEIGHT, e.g. --weight deduction=1.0")?;
        let weight: f64 = value
            .parse()
            .map_err(|_| format!("`--weight {text}`: `{value}` is not a number"))?;
        if weights.insert(name.to_string(), weight).is_some() {
            return Err(format!("`--weight` gives `{name}` twice"));
        }
    }
    if let Some(name) = inputs
        .keys()
        .find(|name| name.as_str() != merge::BASE && !weights.contains_key(*name))
    {
        return Err(format!(
            "Model `{name}` has no weight: add `--weight {name}=1.0` (say)"
        ));
    }
    let method = Method::parse(&args.method).map_err(|e| e.to_string())?;
    let dtype = args
        .dtype
        .as_deref()
        .map(recipe::parse_dtype)
        .transpose()
        .map_err(|e| e.to_string())?;
    Recipe::new(method, &inputs, &weights, dtype).map_err(|error| match error {
        MergeError::Recipe(message) => message.replace("`weights`", "`--weight`"),
        other => other.to_string(),
    })
}

pub fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let recipe = match recipe_of(&args) {
        Ok(recipe) => recipe,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    if args.threads == Some(0) {
        eprintln!("error: `--threads` must be at least 1");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let existed = args.out.exists();
    if existed {
        let mut entries = std::fs::read_dir(&args.out)
            .with_context(|| format!("`{}` is not a folder", args.out.display()))?;
        if entries.next().is_some() {
            eprintln!(
                "error: the output folder `{}` is not empty",
                args.out.display()
            );
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    }
    let mut options = MergeOptions::default();
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    match merge::merge(&recipe, &args.out, &options) {
        Ok(summary) => {
            println!(
                "merged {} models ({}) into {}: {} tensors, {} bytes; config and tokenizer from `{}`",
                recipe.models.len(),
                recipe.method.name(),
                args.out.display(),
                summary.tensors,
                summary.bytes,
                summary.template
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            // Never leave half a model behind: the folder was absent or empty before.
            if existed {
                if let Ok(entries) = std::fs::read_dir(&args.out) {
                    for entry in entries.flatten() {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(&args.out);
            }
            eprintln!("error: {error}");
            Ok(ExitCode::from(1))
        }
    }
}
