//! The weights of a merge: checking that the inputs' tensors agree, then computing and
//! writing them window by window.
//!
//! [`Plan::new`] reads headers only (and the bytes of the rare non-float tensors, which
//! must be equal): every disagreement is found before the first byte is written. The
//! output files follow the template input's layout: its file names, the same tensors in
//! each file, in its stored order.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use super::checkpoint::{header, Checkpoint, OutputTensor, ShardIndex, StoredTensor, INDEX};
use super::kernel::{FloatType, Kernel};
use super::recipe::Recipe;
use super::{MergeError, MergeOptions};

/// Elements computed and written at a time, per tensor: the window of each input a merge
/// holds in memory (4 MiB of bf16, per input).
const WINDOW: usize = 1 << 21;
/// Elements per parallel task within a window.
const PIECE: usize = 1 << 16;

/// One tensor to write.
struct PlannedTensor {
    output: OutputTensor,
    /// The inputs' element type, or `None` for a non-float tensor copied as is.
    input: Option<FloatType>,
}

/// One output file.
struct PlannedFile {
    file: String,
    tensors: Vec<PlannedTensor>,
}

/// What a merge writes.
pub struct Plan {
    files: Vec<PlannedFile>,
    sharded: bool,
    combine: super::kernel::Combine,
    weights: Vec<f64>,
}

/// A shape as `[64, 128]`.
fn shape_text(shape: &[usize]) -> String {
    format!("{shape:?}")
}

impl Plan {
    /// Checks that every checkpoint holds the template's (the first's) tensors with the same
    /// shapes and dtypes, and no others, and lays out the output.
    pub fn new(recipe: &Recipe, checkpoints: &[Checkpoint]) -> Result<Self, MergeError> {
        let template = &checkpoints[0];
        for other in &checkpoints[1..] {
            let bad = |message: String| Err(MergeError::input(&other.input, message));
            for (name, theirs) in &template.tensors {
                let Some(mine) = other.tensors.get(name) else {
                    return bad(format!(
                        "no tensor `{name}`, which `{}` has",
                        template.input
                    ));
                };
                if mine.shape != theirs.shape {
                    return bad(format!(
                        "tensor `{name}` has shape {}, `{}` has {}",
                        shape_text(&mine.shape),
                        template.input,
                        shape_text(&theirs.shape)
                    ));
                }
                if mine.dtype != theirs.dtype {
                    return bad(format!(
                        "tensor `{name}` is {}, `{}` has {}",
                        mine.dtype, template.input, theirs.dtype
                    ));
                }
            }
            if let Some(name) = other
                .tensors
                .keys()
                .find(|name| !template.tensors.contains_key(*name))
            {
                return bad(format!(
                    "extra tensor `{name}`, which `{}` has not",
                    template.input
                ));
            }
        }
        let mut files = Vec::with_capacity(template.shards.len());
        for shard in &template.shards {
            let mut tensors = Vec::with_capacity(shard.tensors.len());
            for name in &shard.tensors {
                let stored = &template.tensors[name];
                let input = FloatType::from_dtype(stored.dtype);
                if input.is_none() {
                    check_equal(name, stored, checkpoints)?;
                }
                let dtype = match (input, recipe.dtype) {
                    (Some(_), Some(output)) => output.dtype(),
                    _ => stored.dtype,
                };
                tensors.push(PlannedTensor {
                    output: OutputTensor {
                        name: name.clone(),
                        dtype,
                        shape: stored.shape.clone(),
                    },
                    input,
                });
            }
            files.push(PlannedFile {
                file: shard.file.clone(),
                tensors,
            });
        }
        Ok(Plan {
            files,
            sharded: template.sharded,
            combine: recipe.method.combine(),
            weights: recipe.weights(),
        })
    }

    /// Tensors written.
    pub fn tensor_count(&self) -> usize {
        self.files.iter().map(|file| file.tensors.len()).sum()
    }

    /// Bytes of tensor data written.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|file| &file.tensors)
            .map(|tensor| tensor.output.size() as u64)
            .sum()
    }
}

/// A non-float tensor (an index buffer, a mask) cannot be interpolated: it must be the same
/// in every input, and is copied.
fn check_equal(
    name: &str,
    template: &StoredTensor,
    checkpoints: &[Checkpoint],
) -> Result<(), MergeError> {
    let expected = checkpoints[0].bytes(template);
    for other in &checkpoints[1..] {
        let stored = &other.tensors[name];
        if other.bytes(stored) != expected {
            return Err(MergeError::input(
                &other.input,
                format!(
                    "tensor `{name}` ({}) differs from `{}`'s; only floating-point tensors are merged, others must be equal",
                    template.dtype, checkpoints[0].input
                ),
            ));
        }
    }
    Ok(())
}

/// Writes the weights planned by `plan` into `output_dir`; returns the file names written.
pub fn write_weights(
    plan: &Plan,
    checkpoints: &[Checkpoint],
    output_dir: &Path,
    options: &MergeOptions<'_>,
) -> Result<Vec<String>, MergeError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads.max(1))
        .thread_name(|index| format!("merge-{index}"))
        .build()
        .map_err(|e| MergeError::Internal(format!("cannot start merge threads: {e}")))?;
    let total = plan.total_bytes();
    let mut done = 0u64;
    let mut buffer = Vec::new();
    let mut written = Vec::with_capacity(plan.files.len() + 1);
    let mut index = ShardIndex {
        metadata: [("total_size".to_string(), serde_json::json!(total))].into(),
        weight_map: Default::default(),
    };
    for planned in &plan.files {
        let path = output_dir.join(&planned.file);
        let write_error = |source| MergeError::write(&path, source);
        let mut file = File::create(&path).map_err(write_error)?;
        let outputs: Vec<OutputTensor> = planned.tensors.iter().map(|t| t.output.clone()).collect();
        file.write_all(&header(&outputs)).map_err(write_error)?;
        for tensor in &planned.tensors {
            let name = &tensor.output.name;
            let stored: Vec<&StoredTensor> = checkpoints.iter().map(|c| &c.tensors[name]).collect();
            let elements = stored[0].elements();
            let kernel = tensor.input.map(|input| {
                let output = FloatType::from_dtype(tensor.output.dtype).unwrap_or(input);
                Kernel::new(plan.combine, &plan.weights, input, output)
            });
            let (in_size, out_size) = match &kernel {
                Some(kernel) => (kernel.input().size(), kernel.output().size()),
                None => {
                    let size = stored[0].dtype.bitsize() / 8;
                    (size, size)
                }
            };
            for start in (0..elements).step_by(WINDOW) {
                if (options.cancelled)() {
                    return Err(MergeError::Cancelled);
                }
                let count = WINDOW.min(elements - start);
                let range = start * in_size..(start + count) * in_size;
                buffer.clear();
                match &kernel {
                    Some(kernel) => {
                        buffer.resize(count * out_size, 0);
                        let inputs: Vec<&[u8]> = checkpoints
                            .iter()
                            .zip(&stored)
                            .map(|(checkpoint, stored)| &checkpoint.bytes(stored)[range.clone()])
                            .collect();
                        pool.install(|| {
                            buffer
                                .par_chunks_mut(PIECE * out_size)
                                .enumerate()
                                .for_each(|(number, out)| {
                                    let from = number * PIECE * in_size;
                                    let to = from + out.len() / out_size * in_size;
                                    let pieces: Vec<&[u8]> =
                                        inputs.iter().map(|input| &input[from..to]).collect();
                                    kernel.apply(&pieces, out);
                                })
                        });
                    }
                    None => {
                        buffer.extend_from_slice(&checkpoints[0].bytes(stored[0])[range.clone()])
                    }
                }
                file.write_all(&buffer).map_err(write_error)?;
                for (checkpoint, stored) in checkpoints.iter().zip(&stored) {
                    checkpoint.release(stored, range.clone());
                }
                done += buffer.len() as u64;
                (options.progress)(done, total);
            }
            index.weight_map.insert(name.clone(), planned.file.clone());
        }
        file.flush().map_err(write_error)?;
        written.push(planned.file.clone());
    }
    if plan.sharded {
        let path = output_dir.join(INDEX);
        let text = serde_json::to_string_pretty(&index)
            .map_err(|e| MergeError::Internal(format!("shard index: {e}")))?;
        std::fs::write(&path, text + "\n").map_err(|source| MergeError::write(&path, source))?;
        written.push(INDEX.to_string());
    }
    Ok(written)
}
