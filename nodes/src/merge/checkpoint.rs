//! Safetensors weights of a Hugging Face folder, memory-mapped, and the header of a
//! safetensors file written tensor by tensor.
//!
//! A folder holds `model.safetensors`, or shards listed by `model.safetensors.index.json`.
//! Opening one maps its files and reads their headers only: no tensor data is touched until
//! the merge asks for it, and [`Checkpoint::release`] drops the pages a merge is done with
//! from this process (the page cache keeps them), so the resident memory of a merge stays
//! at a window of each tensor however large the models are.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use safetensors::{Dtype, SafeTensors};

use super::MergeError;

pub use peirce_protocol::hf::{ShardIndex, INDEX, WEIGHTS};

/// Where one tensor is stored.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Index into [`Checkpoint::shards`].
    pub shard: usize,
    /// Byte range in the shard file.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
}

impl StoredTensor {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One mapped file of a checkpoint.
pub struct Shard {
    /// The file name within the folder.
    pub file: String,
    /// Its path.
    pub path: PathBuf,
    /// Tensor names in stored (offset) order.
    pub tensors: Vec<String>,
    map: Mmap,
}

/// A model folder's weights.
pub struct Checkpoint {
    /// The input name (for messages).
    pub input: String,
    /// The folder.
    pub dir: PathBuf,
    /// Whether the weights are sharded (with an index).
    pub sharded: bool,
    /// The files, by name.
    pub shards: Vec<Shard>,
    /// Every tensor, by name.
    pub tensors: BTreeMap<String, StoredTensor>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("input", &self.input)
            .field("dir", &self.dir)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Maps the weights of the folder `dir`, input `input`, and checks every header.
    pub fn open(input: &str, dir: &Path) -> Result<Self, MergeError> {
        let bad = |message: String| MergeError::input(input, message);
        let index_path = dir.join(INDEX);
        let (sharded, files): (bool, BTreeMap<String, Option<BTreeSet<String>>>) = if index_path
            .is_file()
        {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|source| MergeError::read(&index_path, source))?;
            let index: ShardIndex = serde_json::from_str(&text).map_err(|error| {
                bad(format!(
                    "`{}` is not a shard index: {error}",
                    index_path.display()
                ))
            })?;
            let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (name, file) in index.weight_map {
                if file.is_empty() || file.contains('/') || file.contains('\\') || file == ".." {
                    return Err(bad(format!(
                        "`{}` puts tensor `{name}` in `{file}`, which is not a file name",
                        index_path.display()
                    )));
                }
                files.entry(file).or_default().insert(name);
            }
            if files.is_empty() {
                return Err(bad(format!("`{}` lists no tensors", index_path.display())));
            }
            let files = files.into_iter().map(|(file, names)| (file, Some(names)));
            (true, files.collect())
        } else if dir.join(WEIGHTS).is_file() {
            (false, BTreeMap::from([(WEIGHTS.to_string(), None)]))
        } else {
            return Err(bad(format!(
                "`{}` holds no `{WEIGHTS}` and no `{INDEX}`",
                dir.display()
            )));
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = BTreeMap::new();
        for (number, (file, expected)) in files.into_iter().enumerate() {
            let path = dir.join(&file);
            let handle = File::open(&path).map_err(|source| MergeError::read(&path, source))?;
            let length = handle
                .metadata()
                .map_err(|source| MergeError::read(&path, source))?
                .len();
            if length < 8 {
                return Err(bad(format!(
                    "`{}` is not a safetensors file ({length} bytes)",
                    path.display()
                )));
            }
            // SAFETY: the map is read-only; a file changed underneath a merge would change
            // what is read (as with any reader), not memory safety of the process.
            let map =
                unsafe { Mmap::map(&handle) }.map_err(|source| MergeError::read(&path, source))?;
            let _ = map.advise(memmap2::Advice::Sequential);
            let (header, metadata) = SafeTensors::read_metadata(&map).map_err(|error| {
                bad(format!(
                    "`{}` is not a valid safetensors file: {error}",
                    path.display()
                ))
            })?;
            let data_start = 8 + header;
            let infos = metadata.tensors();
            let names = metadata.offset_keys();
            if let Some(expected) = &expected {
                if let Some(name) = expected.iter().find(|name| !infos.contains_key(*name)) {
                    return Err(bad(format!(
                        "`{INDEX}` puts tensor `{name}` in `{file}`, which does not hold it"
                    )));
                }
                if let Some(name) = names.iter().find(|name| !expected.contains(*name)) {
                    return Err(bad(format!(
                        "`{file}` holds tensor `{name}`, which `{INDEX}` does not list there"
                    )));
                }
            }
            for name in &names {
                let info = infos[name];
                let stored = StoredTensor {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    shard: number,
                    start: data_start + info.data_offsets.0,
                    end: data_start + info.data_offsets.1,
                };
                if tensors.insert(name.clone(), stored).is_some() {
                    return Err(bad(format!("tensor `{name}` is stored twice")));
                }
            }
            shards.push(Shard {
                file,
                path,
                tensors: names,
                map,
            });
        }
        Ok(Checkpoint {
            input: input.to_string(),
            dir: dir.to_path_buf(),
            sharded,
            shards,
            tensors,
        })
    }

    /// The bytes of a tensor of this checkpoint.
    pub fn bytes(&self, tensor: &StoredTensor) -> &[u8] {
        &self.shards[tensor.shard].map[tensor.start..tensor.end]
    }

    /// Drops the pages of `range` (relative to the tensor's bytes), and [`RELEASE_MARGIN`]
    /// on either side, from this process's memory; a later read faults them in again from
    /// the page cache or the file. The margin matters: a page fault maps the neighbouring
    /// cached pages too ("fault-around", 64 KiB by default on Linux), so each window would
    /// otherwise leave a few pages of its neighbours mapped, and a whole model's worth of
    /// those adds up.
    pub fn release(&self, tensor: &StoredTensor, range: std::ops::Range<usize>) {
        let map = &self.shards[tensor.shard].map;
        let start = (tensor.start + range.start).saturating_sub(RELEASE_MARGIN);
        let end = (tensor.start + range.end + RELEASE_MARGIN).min(map.len());
        if end <= start {
            return;
        }
        // SAFETY: the map is a read-only shared file mapping, so MADV_DONTNEED discards
        // nothing: later reads see the file's bytes again. No slice into the released range
        // outlives this call (callers release what they have finished reading, and the
        // margin only drops pages that will be faulted in again when read).
        let _ =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
    }
}

/// Bytes released around each window, beyond Linux's fault-around (64 KiB by default).
const RELEASE_MARGIN: usize = 1 << 20;

/// One tensor of a file to write.
#[derive(Debug, Clone)]
pub struct OutputTensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

impl OutputTensor {
    /// Data bytes.
    pub fn size(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// The start of a safetensors file holding `tensors` in this order, data following
/// contiguously: the 8-byte little-endian header length and the JSON header with
/// `{"format": "pt"}` metadata, padded with spaces to a multiple of 8 bytes so the data
/// starts aligned. Fixed key order, so the same tensors give the same bytes.
pub fn header(tensors: &[OutputTensor]) -> Vec<u8> {
    let mut json = String::from(r#"{"__metadata__":{"format":"pt"}"#);
    let mut offset = 0usize;
    for tensor in tensors {
        let size = tensor.size();
        let shape: Vec<String> = tensor.shape.iter().map(usize::to_string).collect();
        json.push(',');
        json.push_str(&serde_json::Value::String(tensor.name.clone()).to_string());
        json.push_str(&format!(
            r#":{{"dtype":"{}","shape":[{}],"data_offsets":[{offset},{}]}}"#,
            tensor.dtype,
            shape.join(","),
            offset + size
        ));
        offset += size;
    }
    json.push('}');
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_back_with_the_safetensors_crate() {
        let tensors = vec![
            OutputTensor {
                name: "b.weight".into(),
                dtype: Dtype::BF16,
                shape: vec![2, 3],
            },
            OutputTensor {
                name: "a \"quoted\" name".into(),
                dtype: Dtype::F32,
                shape: vec![3],
            },
        ];
        let mut file = header(&tensors);
        assert_eq!(file.len() % 8, 0);
        let data_start = file.len();
        file.extend((0..12 + 12).map(|i| i as u8));
        let parsed = SafeTensors::deserialize(&file).expect("a valid file");
        let b = parsed.tensor("b.weight").unwrap();
        assert_eq!((b.dtype(), b.shape()), (Dtype::BF16, &[2usize, 3][..]));
        assert_eq!(b.data(), &file[data_start..data_start + 12]);
        let a = parsed.tensor("a \"quoted\" name").unwrap();
        assert_eq!(a.data(), &file[data_start + 12..]);
        let (_, metadata) = SafeTensors::read_metadata(&file).unwrap();
        assert_eq!(
            metadata.metadata().as_ref().unwrap()["format"],
            "pt".to_string()
        );
        assert_eq!(header(&tensors), header(&tensors.clone()));
    }
}
