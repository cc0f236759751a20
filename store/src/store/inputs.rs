//! Inputs a node cannot change behind the store's back (docs/architecture.md §5).
//!
//! A consumer's input folder holds hard links to the store's `cas/` files: free for a model
//! folder of many gigabytes, but the link is the blob. Read-only mode does not stop root, nor
//! a program that runs `chmod` first, so a node can write into the store through its input.
//! Copies (or reflinks, where the file system has them) would close that door at the price of
//! a copy per input per node; instead each input file's stat stamp is kept when it is
//! materialized, and [`Store::check_input`] compares it after the node ends. Only a file
//! whose stamp moved is hashed again, so the check costs a `stat` per input file, not a read.
//! A blob whose bytes no longer match its name is quarantined, which makes every record that
//! names it a miss (§5): its producer reruns.
//!
//! The stamp holds the change time, which every write, truncate and `chmod` moves and which
//! no unprivileged program can set back. What it cannot see is a write within the clock tick
//! of the stamp's own change time; [`Store::materialize_input`] therefore returns only after
//! that tick has passed, so a node started afterwards cannot write inside it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};

use super::{blob_location, set_mode, Store, CONCURRENCY};
use crate::digest::{BlobDigest, TreeDigest};
use crate::error::{Error, Result};
use crate::hashing::{hash_file, FileStamp};
use crate::tree::Tree;

/// How long after its last change a stamp is trusted to show the next one on a file system
/// with sub-second times: above the kernel's coarse clock tick (at most 10 ms).
const SETTLE: Duration = Duration::from_millis(25);
/// The same on a file system that keeps whole seconds (FAT keeps two).
const SETTLE_WHOLE_SECONDS: Duration = Duration::from_millis(2100);

/// A tree materialized as a node's input, with each file's stamp as verified.
#[derive(Debug, Clone)]
pub struct MaterializedInput {
    /// The tree.
    pub tree: Tree,
    /// The folder it was written to.
    pub dest: PathBuf,
    files: Vec<InputFile>,
}

#[derive(Debug, Clone)]
struct InputFile {
    /// The entry's name in the tree.
    name: String,
    digest: BlobDigest,
    /// The stamp its bytes were verified at.
    stamp: FileStamp,
    /// A hard link to the store's `cas/` file (else a private copy).
    linked: bool,
}

/// An input file found changed after a node ran.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedInput {
    /// The file's name in the input tree.
    pub name: String,
    /// Where the node was given it.
    pub path: PathBuf,
    /// The blob it was.
    pub digest: BlobDigest,
    /// Whether the store's own copy changed (and was quarantined), as opposed to only the
    /// node's private copy or link.
    pub store_changed: bool,
    /// What was found, for messages.
    pub detail: String,
}

impl MaterializedInput {
    /// The latest change among the files' stamps, and whether any file system involved keeps
    /// whole seconds.
    fn latest_change(&self) -> Option<(i128, bool)> {
        self.files
            .iter()
            .map(|file| (file.stamp.latest_change_ns(), file.stamp.whole_seconds()))
            .reduce(|(a, whole_a), (b, whole_b)| (a.max(b), whole_a || whole_b))
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as i128)
        .unwrap_or(0)
}

impl Store {
    /// Writes a tree's files under `dest` (verified), like [`Store::materialize`], and keeps
    /// each file's stamp for [`Store::check_input`]. Returns once every stamp is settled: a
    /// write from now on moves it.
    pub async fn materialize_input(
        &self,
        digest: TreeDigest,
        dest: &Path,
    ) -> Result<MaterializedInput> {
        let (tree, entries) = self.tree_for(digest, dest).await?;
        let files: Vec<InputFile> = futures::stream::iter(entries)
            .map(|(name, entry)| async move {
                let path = dest.join(&name);
                let _ = fs::remove_file(&path);
                let (stamp, linked) = self
                    .get_to_file_stamped(entry.digest, &path, entry.executable)
                    .await?;
                Ok::<_, Error>(InputFile {
                    name,
                    digest: entry.digest,
                    stamp,
                    linked,
                })
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let input = MaterializedInput {
            tree,
            dest: dest.to_path_buf(),
            files,
        };
        if let Some((latest, whole_seconds)) = input.latest_change() {
            let settle = if whole_seconds {
                SETTLE_WHOLE_SECONDS
            } else {
                SETTLE
            };
            let wait = latest + settle.as_nanos() as i128 - now_ns();
            if wait > 0 {
                tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
            }
        }
        Ok(input)
    }

    /// Checks a materialized input after its node ended: every file must still have the
    /// stamp it was verified at, or else still hash to its name. Returns what changed; a
    /// store blob found changed is quarantined (so every record naming it becomes a miss).
    /// A file the node removed is no change; what it linked to is then checked in `cas/`.
    pub async fn check_input(&self, input: &MaterializedInput) -> Result<Vec<ChangedInput>> {
        let mut changed = Vec::new();
        for file in &input.files {
            let path = input.dest.join(&file.name);
            if let Some(change) = self.check_input_file(file, &path).await? {
                changed.push(change);
            }
        }
        Ok(changed)
    }

    async fn check_input_file(
        &self,
        file: &InputFile,
        path: &Path,
    ) -> Result<Option<ChangedInput>> {
        let change = |store_changed: bool, detail: String| {
            Some(ChangedInput {
                name: file.name.clone(),
                path: path.to_path_buf(),
                digest: file.digest,
                store_changed,
                detail,
            })
        };
        let current = match FileStamp::of_path(path) {
            Ok(stamp) => Some(stamp),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(Error::io(path, error)),
        };
        match current {
            Some(current) if current == file.stamp => return Ok(None),
            // The node's path still names the very file it was given: check it there.
            Some(current) if current.same_file(&file.stamp) => {
                return Ok(match self.rehash_changed(file, path).await? {
                    None => None,
                    Some((actual, store_changed)) => {
                        change(store_changed, format!("its bytes now hash to `{actual}`"))
                    }
                });
            }
            // The node replaced its copy or link with another file: the store is untouched
            // by that, but the node ran on other bytes than its key says unless they match.
            Some(_) => {
                let metadata =
                    fs::symlink_metadata(path).map_err(|error| Error::io(path, error))?;
                if !metadata.is_file() {
                    return Ok(change(
                        false,
                        "it was replaced by something other than a file".into(),
                    ));
                }
                let (actual, _) = hash_file(path)?;
                if actual != file.digest {
                    return Ok(change(
                        false,
                        format!("it was replaced by a file whose bytes hash to `{actual}`"),
                    ));
                }
            }
            None => {}
        }
        // Replaced or removed: what the node was linked to is the store's file, which it may
        // have written before letting go of it. Check it in `cas/`.
        if !file.linked {
            return Ok(None);
        }
        let root = self.local_root().expect("only local stores link inputs");
        let cas = root.join(blob_location(&file.digest));
        match FileStamp::of_path(&cas) {
            Ok(stamp) if stamp == file.stamp => Ok(None),
            Ok(stamp) if stamp.same_file(&file.stamp) => {
                Ok(match self.rehash_changed(file, &cas).await? {
                    None => None,
                    Some((actual, store_changed)) => change(
                        store_changed,
                        format!("the store's copy now hashes to `{actual}`"),
                    ),
                })
            }
            // Quarantined or replaced while the node ran: the file it was given is out of
            // reach, so what it read cannot be vouched for.
            _ => Ok(change(
                false,
                "the file it was given left the store while it ran, so its bytes cannot be \
                 checked"
                    .into(),
            )),
        }
    }

    /// Hashes a changed file that is (or was linked as) `file`'s blob. `None` when the bytes
    /// still match (a `chmod` or `touch`: the mode is set back to read-only and the blob is
    /// hashed again when next materialized). Otherwise the bytes' digest, and whether the
    /// store's `cas/` file was that file, in which case it is quarantined.
    async fn rehash_changed(
        &self,
        file: &InputFile,
        path: &Path,
    ) -> Result<Option<(BlobDigest, bool)>> {
        let (actual, size) = hash_file(path)?;
        if file.linked {
            self.forget_verified(&file.digest);
        }
        if actual == file.digest {
            if file.linked {
                set_mode(path, 0o444)?;
            }
            return Ok(None);
        }
        let in_store = file.linked
            && self.local_root().is_some_and(|root| {
                FileStamp::of_path(&root.join(blob_location(&file.digest)))
                    .is_ok_and(|stamp| stamp.same_file(&file.stamp))
            });
        if in_store {
            let _ = self.quarantine(file.digest, actual, size).await;
        }
        Ok(Some((actual, in_store)))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use bytes::Bytes;

    use crate::tree::TreeEntry;

    use super::*;

    async fn store_with_input(dir: &Path) -> (Store, MaterializedInput, BlobDigest) {
        let store = Store::open_local(&dir.join("store")).unwrap();
        let digest = store
            .put_bytes(Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        let mut tree = Tree::new();
        tree.insert(
            "data.txt",
            TreeEntry {
                digest,
                size: 11,
                executable: false,
            },
        )
        .unwrap();
        let tree_digest = store.put_tree(&tree).await.unwrap();
        let input = store
            .materialize_input(tree_digest, &dir.join("input"))
            .await
            .unwrap();
        (store, input, digest)
    }

    fn make_writable(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    #[tokio::test]
    async fn an_untouched_input_is_unchanged_and_is_not_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, input, _) = store_with_input(dir.path()).await;
        assert!(store.check_input(&input).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_write_through_the_link_is_caught_and_the_blob_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let (store, input, digest) = store_with_input(dir.path()).await;
        let path = dir.path().join("input/data.txt");
        make_writable(&path);
        // Same length: only the bytes tell.
        fs::write(&path, b"HELLO world").unwrap();
        let changed = store.check_input(&input).await.unwrap();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].store_changed);
        assert_eq!(changed[0].name, "data.txt");
        assert!(
            !store.has_blob(digest).await.unwrap(),
            "the corrupt blob stayed in cas/"
        );
    }

    #[tokio::test]
    async fn a_chmod_alone_is_no_change_and_the_mode_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, input, digest) = store_with_input(dir.path()).await;
        let path = dir.path().join("input/data.txt");
        make_writable(&path);
        assert!(store.check_input(&input).await.unwrap().is_empty());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        assert_eq!(store.get_bytes(digest).await.unwrap(), &b"hello world"[..]);
    }

    #[tokio::test]
    async fn a_replaced_link_leaves_the_store_intact_but_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (store, input, digest) = store_with_input(dir.path()).await;
        let path = dir.path().join("input/data.txt");
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"other bytes").unwrap();
        let changed = store.check_input(&input).await.unwrap();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(!changed[0].store_changed);
        assert_eq!(store.get_bytes(digest).await.unwrap(), &b"hello world"[..]);
    }

    #[tokio::test]
    async fn a_write_then_removal_is_caught_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, input, digest) = store_with_input(dir.path()).await;
        let path = dir.path().join("input/data.txt");
        make_writable(&path);
        fs::write(&path, b"HELLO world").unwrap();
        fs::remove_file(&path).unwrap();
        let changed = store.check_input(&input).await.unwrap();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].store_changed);
        assert!(!store.has_blob(digest).await.unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_cas_file_is_hashed_again_before_it_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, input, digest) = store_with_input(dir.path()).await;
        assert!(store.check_input(&input).await.unwrap().is_empty());
        // Written behind the store's back, not through a checked input.
        let cas = dir.path().join("store").join(blob_location(&digest));
        make_writable(&cas);
        fs::write(&cas, b"HELLO world").unwrap();
        let again = store
            .get_to_file(digest, &dir.path().join("again.txt"), false)
            .await;
        assert!(matches!(again, Err(Error::Corrupt { .. })), "{again:?}");
    }
}
