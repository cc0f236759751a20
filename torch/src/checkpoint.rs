//! Hugging Face safetensors checkpoints: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`, in fp32, bf16 or fp16.
//!
//! Loading copies each stored tensor into the var store's variable of the same name,
//! converting dtype and device on the way, and refuses a checkpoint that lacks a tensor the
//! model needs, has one it does not know, or stores one with another shape, naming the
//! tensor and file. Two names are tolerated and skipped: `lm_head.weight` when the model
//! ties it to the embeddings, and old `rotary_emb.inv_freq` buffers (recomputed here).
//!
//! Saving writes tensors sorted by name with `{"format": "pt"}` metadata, as
//! `transformers`' `save_pretrained` does, optionally in shards of a maximum size.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use peirce_protocol::hf;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{nn, Kind, Tensor};

use crate::error::{io, read_json, write_json, Result, TorchError};

pub use peirce_protocol::hf::{ShardIndex, INDEX, WEIGHTS};

/// The safetensors dtype of a tch kind.
pub fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        _ => return None,
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        _ => return None,
    })
}

/// Whether a stored tensor the model has no variable for may be skipped.
fn ignorable(name: &str, variables: &HashMap<String, Tensor>) -> bool {
    name.ends_with("rotary_emb.inv_freq")
        || (name == "lm_head.weight" && !variables.contains_key(name))
}

/// The files holding a checkpoint's weights: `(file, tensors it should hold)`, where
/// `None` means "whatever it holds" (a single-file checkpoint).
fn checkpoint_files(dir: &Path) -> Result<Vec<(PathBuf, Option<Vec<String>>)>> {
    let index = dir.join(INDEX);
    if index.exists() {
        let index: ShardIndex = read_json(&index)?;
        let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, file) in index.weight_map {
            if file.contains('/') || file.contains("..") {
                return Err(TorchError::Safetensors {
                    path: dir.join(INDEX),
                    message: format!("shard name `{file}` of `{name}` is not a plain file name"),
                });
            }
            by_file.entry(file).or_default().push(name);
        }
        return Ok(by_file
            .into_iter()
            .map(|(file, names)| (dir.join(file), Some(names)))
            .collect());
    }
    let single = dir.join(WEIGHTS);
    if single.exists() {
        return Ok(vec![(single, None)]);
    }
    Err(TorchError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no `{WEIGHTS}` and no `{INDEX}`"),
        ),
    })
}

/// Loads a Hugging Face checkpoint folder into `vs`'s variables (converting dtype and
/// device to each variable's).
pub fn load(vs: &nn::VarStore, dir: &Path) -> Result<()> {
    let variables = vs.variables();
    let mut loaded: BTreeMap<String, bool> =
        variables.keys().map(|name| (name.clone(), false)).collect();
    for (file, expected) in checkpoint_files(dir)? {
        let handle = std::fs::File::open(&file).map_err(io(&file))?;
        // SAFETY: the map is read-only and dropped before this function returns; a file
        // truncated underneath us would fault, as any mmap reader would.
        let bytes = unsafe { memmap2::Mmap::map(&handle) }.map_err(io(&file))?;
        let tensors =
            SafeTensors::deserialize(&bytes).map_err(|error| TorchError::Safetensors {
                path: file.clone(),
                message: error.to_string(),
            })?;
        if let Some(expected) = &expected {
            if let Some(name) = expected.iter().find(|name| tensors.tensor(name).is_err()) {
                return Err(TorchError::MissingTensor {
                    path: file.clone(),
                    name: name.clone(),
                });
            }
        }
        let mut names = tensors.names();
        names.sort_unstable();
        for name in names {
            let Some(variable) = variables.get(name) else {
                if ignorable(name, &variables) {
                    continue;
                }
                return Err(TorchError::UnexpectedTensor {
                    path: file.clone(),
                    name: name.to_string(),
                });
            };
            let view = tensors
                .tensor(name)
                .map_err(|error| TorchError::Safetensors {
                    path: file.clone(),
                    message: error.to_string(),
                })?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != variable.size() {
                return Err(TorchError::ShapeMismatch {
                    path: file.clone(),
                    name: name.to_string(),
                    expected: variable.size(),
                    found: shape,
                });
            }
            let kind = kind_of(view.dtype()).ok_or_else(|| TorchError::UnsupportedDtype {
                path: file.clone(),
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            })?;
            let stored = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            tch::no_grad(|| variable.shallow_clone().f_copy_(&stored))?;
            loaded.insert(name.to_string(), true);
        }
    }
    if let Some((name, _)) = loaded.iter().find(|(_, done)| !**done) {
        return Err(TorchError::MissingTensor {
            path: dir.to_path_buf(),
            name: name.clone(),
        });
    }
    Ok(())
}

/// A tensor's bytes in memory, ready for serialization.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Owned {
    fn view(&self) -> TensorView<'_> {
        TensorView::new(self.dtype, self.shape.clone(), &self.data)
            .expect("the bytes of a tensor of this shape and dtype")
    }

    fn new(name: &str, tensor: &Tensor, dtype: Kind) -> Result<Self> {
        let stored = dtype_of(dtype)
            .ok_or_else(|| TorchError::Invalid(format!("cannot save `{name}` as {dtype:?}")))?;
        let tensor = tensor
            .f_to_device(tch::Device::Cpu)?
            .f_to_kind(dtype)?
            .f_contiguous()?;
        let numel = tensor.numel();
        let mut data = vec![0u8; numel * dtype.elt_size_in_bytes()];
        tensor.f_copy_data_u8(&mut data, numel)?;
        Ok(Self {
            dtype: stored,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            data,
        })
    }
}

fn write_file(path: &Path, tensors: &[(String, Owned)]) -> Result<()> {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors
            .iter()
            .map(|(name, owned)| (name.as_str(), owned.view())),
        Some(metadata),
        path,
    )
    .map_err(|error| TorchError::Safetensors {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// Removes weights a previous save left in `dir`, so a folder never mixes two checkpoints.
fn remove_previous(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if hf::is_weights_file(&name) {
            std::fs::remove_file(entry.path()).map_err(io(entry.path()))?;
        }
    }
    Ok(())
}

/// Saves `vs`'s variables into `dir` as `dtype` (`Float`, `BFloat16`, `Half`): one
/// `model.safetensors`, or shards of at most `max_shard_bytes` (a tensor larger than that
/// gets a shard of its own) with an index. Returns the file names written.
pub fn save(
    vs: &nn::VarStore,
    dir: &Path,
    dtype: Kind,
    max_shard_bytes: Option<u64>,
) -> Result<Vec<String>> {
    save_tensors(
        &vs.variables().into_iter().collect(),
        dir,
        dtype,
        max_shard_bytes,
    )
}

/// [`save`] for named tensors (Hugging Face names), such as an optimizer's fp32 masters.
pub fn save_tensors(
    variables: &BTreeMap<String, Tensor>,
    dir: &Path,
    dtype: Kind,
    max_shard_bytes: Option<u64>,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    remove_previous(dir)?;
    let mut shards: Vec<Vec<(String, Owned)>> = vec![Vec::new()];
    let mut shard_bytes = 0u64;
    let mut total = 0u64;
    for (name, tensor) in variables {
        let owned = Owned::new(name, tensor, dtype)?;
        let bytes = owned.data.len() as u64;
        if let Some(limit) = max_shard_bytes {
            let current = shards.last().map_or(0, Vec::len);
            if current > 0 && shard_bytes + bytes > limit {
                shards.push(Vec::new());
                shard_bytes = 0;
            }
        }
        shard_bytes += bytes;
        total += bytes;
        if let Some(shard) = shards.last_mut() {
            shard.push((name.clone(), owned));
        }
    }
    if max_shard_bytes.is_none() || shards.len() == 1 {
        write_file(&dir.join(WEIGHTS), &shards[0])?;
        return Ok(vec![WEIGHTS.to_string()]);
    }
    let count = shards.len();
    let mut index = ShardIndex {
        metadata: BTreeMap::from([("total_size".to_string(), serde_json::json!(total))]),
        weight_map: BTreeMap::new(),
    };
    let mut files = Vec::with_capacity(count + 1);
    for (number, shard) in shards.iter().enumerate() {
        let file = hf::shard_file(number + 1, count);
        write_file(&dir.join(&file), shard)?;
        for (name, _) in shard {
            index.weight_map.insert(name.clone(), file.clone());
        }
        files.push(file);
    }
    write_json(&dir.join(INDEX), &index)?;
    files.push(INDEX.to_string());
    Ok(files)
}
