//! Content hashing of external files and folders, with a stat cache.
//!
//! External inputs (a base checkpoint, a benchmark file) enter cache keys by content, not by
//! path. Hashing a 15 GB checkpoint on every plan would be slow, so each file's digest is
//! remembered together with its size, modification time, change time, inode and device; the
//! file is re-hashed only when one of them differs. This is the same trade-off git's index and
//! DVC make: a tool that rewrites a file and restores every one of those stamps defeats it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{BlobDigest, TreeDigest};
use crate::encoding;
use crate::error::{Error, Result};
use crate::tree::{Tree, TreeEntry};

/// Files at least this large are hashed with memory mapping and several threads.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// Hashes a file by streaming it through blake3.
pub fn hash_file(path: &Path) -> Result<(BlobDigest, u64)> {
    let metadata = fs::metadata(path).map_err(|error| Error::io(path, error))?;
    let mut hasher = blake3::Hasher::new();
    if metadata.len() >= MMAP_THRESHOLD {
        hasher
            .update_mmap_rayon(path)
            .map_err(|error| Error::io(path, error))?;
    } else {
        let mut file = fs::File::open(path).map_err(|error| Error::io(path, error))?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file
                .read(&mut buffer)
                .map_err(|error| Error::io(path, error))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    let size = hasher.count();
    Ok((BlobDigest::from_bytes(*hasher.finalize().as_bytes()), size))
}

/// A file's stat stamp: which file it is (device, inode) and the marks any change to it
/// leaves (size, modification time, change time). The change time cannot be set back by an
/// unprivileged program, and `chmod`, `write` and `truncate` all move it, so an unchanged
/// stamp means unchanged bytes, up to the clock's granularity (see
/// [`FileStamp::latest_change_ns`] and `docs/architecture.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// Whether both stamps are of the same file (device and inode), changed or not.
    pub fn same_file(&self, other: &FileStamp) -> bool {
        self.inode == other.inode && self.device == other.device
    }

    /// The later of the modification and change times, in nanoseconds since the epoch.
    pub fn latest_change_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
    }

    /// Whether the file system keeps only whole seconds (both times have no fraction), so
    /// that a write within the same second may leave the stamp unchanged.
    pub fn whole_seconds(&self) -> bool {
        self.mtime_ns % 1_000_000_000 == 0 && self.ctime_ns % 1_000_000_000 == 0
    }

    /// The stamp of `path` itself (a symbolic link is not followed).
    pub fn of_path(path: &Path) -> std::io::Result<Self> {
        fs::symlink_metadata(path).map(|metadata| Self::of(&metadata))
    }

    /// The stamp of a file's metadata.
    pub fn of(metadata: &fs::Metadata) -> Self {
        FileStamp {
            size: metadata.len(),
            mtime_ns: metadata.mtime() as i128 * 1_000_000_000 + metadata.mtime_nsec() as i128,
            ctime_ns: metadata.ctime() as i128 * 1_000_000_000 + metadata.ctime_nsec() as i128,
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: FileStamp,
    digest: BlobDigest,
}

/// One cached file as stored: the path as raw bytes (any Unix path, UTF-8 or not).
#[derive(Serialize, Deserialize)]
struct CachedWire {
    path: Vec<u8>,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    device: u64,
    digest: [u8; 32],
}

fn encode_entries(entries: &BTreeMap<PathBuf, Cached>) -> Vec<u8> {
    let wire: Vec<CachedWire> = entries
        .iter()
        .map(|(path, cached)| CachedWire {
            path: path.as_os_str().as_bytes().to_vec(),
            size: cached.stamp.size,
            mtime_ns: cached.stamp.mtime_ns,
            ctime_ns: cached.stamp.ctime_ns,
            inode: cached.stamp.inode,
            device: cached.stamp.device,
            digest: *cached.digest.as_bytes(),
        })
        .collect();
    encoding::encode_stat_cache(&wire)
}

fn decode_entries(bytes: &[u8]) -> Result<BTreeMap<PathBuf, Cached>, String> {
    let wire: Vec<CachedWire> = encoding::decode_stat_cache(bytes)?;
    Ok(wire
        .into_iter()
        .map(|entry| {
            let cached = Cached {
                stamp: FileStamp {
                    size: entry.size,
                    mtime_ns: entry.mtime_ns,
                    ctime_ns: entry.ctime_ns,
                    inode: entry.inode,
                    device: entry.device,
                },
                digest: BlobDigest::from_bytes(entry.digest),
            };
            (PathBuf::from(OsString::from_vec(entry.path)), cached)
        })
        .collect())
}

/// Remembers file digests by stat stamp. Persisted as a binary store document (see
/// `encoding.rs`); a damaged cache file, or one of another schema, is ignored.
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: BTreeMap<PathBuf, Cached>,
    dirty: bool,
    hashed: u64,
}

impl StatCache {
    /// A cache that lives only in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads the cache at `path` (missing, unreadable or of another schema: start empty,
    /// which only costs re-hashing).
    pub fn load(path: &Path) -> Self {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| match decode_entries(&bytes) {
                Ok(entries) => Some(entries),
                Err(reason) => {
                    tracing::debug!(path = %path.display(), %reason, "ignoring the stat cache");
                    None
                }
            })
            .unwrap_or_default();
        StatCache {
            path: Some(path.to_path_buf()),
            entries,
            dirty: false,
            hashed: 0,
        }
    }

    /// Writes the cache back if it changed (atomically: temp file, then rename).
    pub fn save(&mut self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let bytes = encode_entries(&self.entries);
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&temp, bytes).map_err(|error| Error::io(&temp, error))?;
        fs::rename(&temp, path).map_err(|error| Error::io(path, error))?;
        self.dirty = false;
        Ok(())
    }

    /// How many files were actually read (not answered from the cache) by this instance.
    pub fn files_hashed(&self) -> u64 {
        self.hashed
    }

    /// The digest of one file, from the cache when its stamp is unchanged.
    pub fn hash_file(&mut self, path: &Path) -> Result<(BlobDigest, u64)> {
        let metadata = fs::metadata(path).map_err(|error| Error::io(path, error))?;
        let stamp = FileStamp::of(&metadata);
        if let Some(cached) = self.entries.get(path) {
            if cached.stamp == stamp {
                return Ok((cached.digest, stamp.size));
            }
        }
        let (digest, size) = hash_file(path)?;
        self.hashed += 1;
        // A file that changed while we read it must not be cached under the old stamp.
        let after = fs::metadata(path).map_err(|error| Error::io(path, error))?;
        if FileStamp::of(&after) == stamp && size == stamp.size {
            self.entries
                .insert(path.to_path_buf(), Cached { stamp, digest });
            self.dirty = true;
        }
        Ok((digest, size))
    }

    /// The tree of an external input: a folder's files (recursively, symlinks followed), or
    /// a single file as a one-entry tree named after the file.
    pub fn hash_path(&mut self, path: &Path) -> Result<(Tree, TreeDigest)> {
        let metadata = fs::metadata(path).map_err(|error| Error::io(path, error))?;
        let mut tree = Tree::new();
        if metadata.is_dir() {
            for (name, file) in walk_files(path)? {
                let executable = file_is_executable(&file)?;
                let (digest, size) = self.hash_file(&file)?;
                tree.insert(
                    &name,
                    TreeEntry {
                        digest,
                        size,
                        executable,
                    },
                )?;
            }
        } else {
            let name = single_file_name(path)?;
            let (digest, size) = self.hash_file(path)?;
            let executable = metadata.permissions().mode() & 0o111 != 0;
            tree.insert(
                name,
                TreeEntry {
                    digest,
                    size,
                    executable,
                },
            )?;
        }
        let digest = tree.digest();
        Ok((tree, digest))
    }
}

/// The name a single file's one-entry tree gives it: the file's own name.
pub(crate) fn single_file_name(path: &Path) -> Result<&str> {
    path.file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| Error::InvalidName {
            name: path.display().to_string(),
            reason: "not UTF-8",
        })
}

pub(crate) fn file_is_executable(path: &Path) -> Result<bool> {
    let metadata = fs::metadata(path).map_err(|error| Error::io(path, error))?;
    Ok(metadata.permissions().mode() & 0o111 != 0)
}

/// Every regular file under `root`, as (relative `/`-separated name, path), sorted by name.
/// Symlinks are followed; a symlink cycle is an error, and so is a link that leads nowhere
/// or a name that is not UTF-8 ([`Error::Unstorable`], naming the path: the folder's
/// content is what must change).
pub fn walk_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf(), 0usize)];
    while let Some((prefix, dir, depth)) = stack.pop() {
        if depth > 64 {
            return Err(Error::InvalidName {
                name: dir.display().to_string(),
                reason: "folder nesting deeper than 64 (symlink cycle?)",
            });
        }
        let reader = fs::read_dir(&dir).map_err(|error| Error::io(&dir, error))?;
        for item in reader {
            let item = item.map_err(|error| Error::io(&dir, error))?;
            let path = item.path();
            let name = item
                .file_name()
                .into_string()
                .map_err(|name| Error::Unstorable {
                    path: path.clone(),
                    problem: format!(
                        "its name {name:?} is not UTF-8, and names in a tree are text; \
                         rename it with a UTF-8 name, or remove it"
                    ),
                })?;
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let metadata = fs::metadata(&path).map_err(|error| dangling(&path, error))?;
            if metadata.is_dir() {
                stack.push((relative, path, depth + 1));
            } else if metadata.is_file() {
                files.push((relative, path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The error for a path whose metadata cannot be read: a symbolic link that leads nowhere
/// is the folder's problem ([`Error::Unstorable`]); anything else is an I/O error.
fn dangling(path: &Path, error: std::io::Error) -> Error {
    let is_link = fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_symlink());
    if !is_link {
        return Error::io(path, error);
    }
    let target = fs::read_link(path)
        .map(|target| target.display().to_string())
        .unwrap_or_default();
    let problem = if error.kind() == std::io::ErrorKind::NotFound {
        format!("it is a symbolic link to `{target}`, which does not exist")
    } else {
        format!("it is a symbolic link to `{target}`, which cannot be followed ({error})")
    };
    Error::Unstorable {
        path: path.to_path_buf(),
        problem: format!("{problem}; remove the link, or make it point at a file or folder"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cache_skips_unchanged_files_and_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("a.txt"), "one").unwrap();
        fs::create_dir(data.join("sub")).unwrap();
        fs::write(data.join("sub/b.txt"), "two").unwrap();
        let cache_path = dir.path().join("stat.json");

        let mut cache = StatCache::load(&cache_path);
        let (tree, first) = cache.hash_path(&data).unwrap();
        assert_eq!(tree.len(), 2);
        assert!(tree.get("sub/b.txt").is_some());
        assert_eq!(cache.files_hashed(), 2);
        cache.save().unwrap();

        let mut cache = StatCache::load(&cache_path);
        let (_, second) = cache.hash_path(&data).unwrap();
        assert_eq!(second, first);
        assert_eq!(cache.files_hashed(), 0, "unchanged files are not re-read");

        fs::write(data.join("a.txt"), "uno").unwrap();
        let (_, third) = cache.hash_path(&data).unwrap();
        assert_ne!(third, first);
        assert_eq!(cache.files_hashed(), 1);
    }

    #[test]
    fn a_stat_cache_of_another_schema_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.txt");
        fs::write(&file, "data").unwrap();
        let cache_path = dir.path().join("statcache.bin");
        // What an older peirce wrote (JSON), and damage: both start an empty cache.
        for old in [&b"{}"[..], b"PCSC\x02\x00\xff"] {
            fs::write(&cache_path, old).unwrap();
            let mut cache = StatCache::load(&cache_path);
            cache.hash_file(&file).unwrap();
            assert_eq!(cache.files_hashed(), 1);
            cache.save().unwrap();
            let mut cache = StatCache::load(&cache_path);
            cache.hash_file(&file).unwrap();
            assert_eq!(cache.files_hashed(), 0, "the rewritten cache is used");
        }
    }

    #[test]
    fn single_file_is_a_one_entry_tree() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bench.jsonl");
        fs::write(&file, "{}\n").unwrap();
        let (tree, _) = StatCache::in_memory().hash_path(&file).unwrap();
        assert_eq!(
            tree.get("bench.jsonl").unwrap().digest,
            BlobDigest::of(b"{}\n")
        );
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        let bytes: Vec<u8> = (0..3 * MMAP_THRESHOLD).map(|i| (i % 251) as u8).collect();
        fs::write(&file, &bytes).unwrap();
        assert_eq!(hash_file(&file).unwrap().0, BlobDigest::of(&bytes));
    }

    #[test]
    fn dangling_links_and_non_utf8_names_are_unstorable_and_named() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink("missing.bin", dir.path().join("link")).unwrap();
        let error = walk_files(dir.path()).unwrap_err();
        assert!(matches!(error, Error::Unstorable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&dir.path().join("link").display().to_string()));
        assert!(
            message.contains("`missing.bin`, which does not exist"),
            "{message}"
        );
        assert!(message.contains("remove the link"), "{message}");

        fs::remove_file(dir.path().join("link")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        fs::write(dir.path().join(odd), "latin-1").unwrap();
        let error = walk_files(dir.path()).unwrap_err();
        assert!(matches!(error, Error::Unstorable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("caf\\xE9.txt"), "{message}");
        assert!(message.contains("not UTF-8"), "{message}");
        assert!(message.contains("rename it"), "{message}");
    }
}
