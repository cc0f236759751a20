//! Trees: a node's output folder, stored as the blob of its canonical encoding.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{Store, CONCURRENCY};
use crate::digest::TreeDigest;
use crate::error::{Error, Result};
use crate::hashing::{file_is_executable, single_file_name, walk_files};
use crate::tree::{Tree, TreeEntry};

impl Store {
    /// Stores a tree's encoding (as a blob). The caller stores its files first.
    pub async fn put_tree(&self, tree: &Tree) -> Result<TreeDigest> {
        let digest = self.put_bytes(Bytes::from(tree.encode())).await?;
        Ok(digest.cast())
    }

    /// Reads and verifies a tree.
    pub async fn get_tree(&self, digest: TreeDigest) -> Result<Tree> {
        let bytes = match self.get_bytes(digest.cast()).await {
            Ok(bytes) => bytes,
            Err(Error::MissingBlob(_)) => return Err(Error::MissingTree(digest)),
            Err(error) => return Err(error),
        };
        Tree::decode(digest, &bytes).map_err(|error| match error {
            Error::MalformedTree {
                digest,
                location,
                reason,
            } => Error::MalformedTree {
                digest,
                location: self.describe_location(&location),
                reason,
            },
            other => other,
        })
    }

    /// Stores every file under `dir` (copied: the folder stays the caller's to change) and
    /// then the tree naming them.
    pub async fn publish_dir(&self, dir: &Path) -> Result<(TreeDigest, Tree)> {
        self.publish(dir, None).await
    }

    /// Stores an input as [`crate::StatCache::hash_path`] names it: a folder's files (as
    /// [`Store::publish_dir`]), or a single file as a one-entry tree named after the file.
    /// Returns the tree and, for a single file, its name in the tree.
    pub async fn publish_path(&self, path: &Path) -> Result<(TreeDigest, Option<String>)> {
        let metadata = fs::metadata(path).map_err(|error| Error::io(path, error))?;
        if metadata.is_dir() {
            return Ok((self.publish_dir(path).await?.0, None));
        }
        let name = single_file_name(path)?;
        let (digest, size) = self.put_file(path).await?;
        let mut tree = Tree::new();
        tree.insert(
            name,
            TreeEntry {
                digest,
                size,
                executable: file_is_executable(path)?,
            },
        )?;
        Ok((self.put_tree(&tree).await?, Some(name.to_owned())))
    }

    /// Stores every file under `dir`, a folder the caller owns and nothing writes any more
    /// (a node's output folder), and then the tree naming them. Local files are hard-linked
    /// into the store where they can be ([`Store::put_owned_file`]), so they share their
    /// blobs' inodes afterwards: the caller removes or leaves the folder, never edits it.
    pub async fn publish_owned_dir(&self, dir: &Path) -> Result<(TreeDigest, Tree)> {
        let owned = fs::canonicalize(dir).map_err(|error| Error::io(dir, error))?;
        self.publish(dir, Some(&owned)).await
    }

    async fn publish(&self, dir: &Path, owned: Option<&Path>) -> Result<(TreeDigest, Tree)> {
        let files = walk_files(dir)?;
        let results: Vec<(String, TreeEntry)> = futures::stream::iter(files)
            .map(|(name, path)| async move {
                let executable = file_is_executable(&path)?;
                let (digest, size) = match owned {
                    Some(owned) => self.put_owned_file(&path, owned).await?,
                    None => self.put_file(&path).await?,
                };
                Ok::<_, Error>((
                    name,
                    TreeEntry {
                        digest,
                        size,
                        executable,
                    },
                ))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut tree = Tree::new();
        for (name, entry) in results {
            tree.insert(&name, entry)?;
        }
        let digest = self.put_tree(&tree).await?;
        Ok((digest, tree))
    }

    /// Tree `digest` and its entries, with `dest` created to receive its files.
    pub(super) async fn tree_for(
        &self,
        digest: TreeDigest,
        dest: &Path,
    ) -> Result<(Tree, Vec<(String, TreeEntry)>)> {
        let tree = self.get_tree(digest).await?;
        fs::create_dir_all(dest).map_err(|error| Error::io(dest, error))?;
        let entries = tree
            .iter()
            .map(|(name, entry)| (name.to_string(), *entry))
            .collect();
        Ok((tree, entries))
    }

    /// Writes a tree's files under `dest` (verified). Existing files are replaced.
    pub async fn materialize(&self, digest: TreeDigest, dest: &Path) -> Result<Tree> {
        let (tree, entries) = self.tree_for(digest, dest).await?;
        futures::stream::iter(entries)
            .map(|(name, entry)| async move {
                let path = dest.join(&name);
                let _ = fs::remove_file(&path);
                self.get_to_file(entry.digest, &path, entry.executable)
                    .await
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(tree)
    }

    /// Whether the tree and every blob it names are present with the right sizes.
    /// Returns the reason when not (a corrupt tree encoding is quarantined and reported).
    pub async fn check_tree(&self, digest: TreeDigest) -> Result<Result<Tree, String>> {
        let tree = match self.get_tree(digest).await {
            Ok(tree) => tree,
            Err(Error::MissingTree(_)) => return Ok(Err(format!("tree `{digest}` is missing"))),
            Err(error @ Error::Corrupt { .. }) => return Ok(Err(error.to_string())),
            Err(error @ Error::MalformedTree { .. }) => return Ok(Err(error.to_string())),
            Err(error) => return Err(error),
        };
        let entries: Vec<(String, TreeEntry)> = tree
            .iter()
            .map(|(name, entry)| (name.to_string(), *entry))
            .collect();
        let problems: Vec<String> = futures::stream::iter(entries)
            .map(|(name, entry)| async move {
                let size = self.available_size(entry.digest).await?;
                Ok::<_, Error>(match size {
                    Some(size) if size == entry.size => None,
                    Some(size) => Some(format!(
                        "`{name}`: blob `{}` has {size} bytes, expected {}",
                        entry.digest, entry.size
                    )),
                    None => Some(format!("`{name}`: blob `{}` is missing", entry.digest)),
                })
            })
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|problem| async move { Ok(problem) })
            .try_collect()
            .await?;
        match problems.into_iter().next() {
            Some(problem) => Ok(Err(problem)),
            None => Ok(Ok(tree)),
        }
    }
}
