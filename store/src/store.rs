//! The store: blobs, trees, action records, documents and leases over one `ObjectStore`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::digest::{ActionKey, BlobDigest, TreeDigest};
use crate::error::{Error, Result};
use crate::hashing::{file_is_executable, hash_file, walk_files};
use crate::record::ActionRecord;
use crate::transfer::{TransferSnapshot, TransferStats};
use crate::tree::{Tree, TreeEntry};

/// How many blob operations run at once when publishing or checking a tree.
pub(crate) const CONCURRENCY: usize = 16;

/// A content-addressed store rooted at a local folder or an object store prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) object: Arc<dyn ObjectStore>,
    /// Set for local stores: blob files are written and linked directly (fsync, hardlinks).
    local_root: Option<PathBuf>,
    url: String,
    /// Blobs verified by a full read during this process's life (never re-hashed).
    verified: Mutex<std::collections::HashSet<BlobDigest>>,
    temp_counter: AtomicU64,
    /// The second tier (see `tier.rs`): lookups and reads fall through to it, leases live on it.
    pub(crate) remote: Option<Store>,
    /// Sizes of blobs seen on the remote during this process's life (dropped when a read
    /// finds one gone).
    pub(crate) remote_sizes: Mutex<std::collections::HashMap<BlobDigest, u64>>,
    /// What crossed the wire, for stores that are not local folders.
    pub(crate) stats: TransferStats,
}

/// A lease held on an action key, so other runners wait instead of duplicating the work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The key leased.
    pub key: ActionKey,
    /// Who holds it (host, process and a random tag).
    pub owner: String,
    /// When it expires, in milliseconds since the Unix epoch, unless renewed.
    pub expires_at_ms: u64,
}

/// What `gc` found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs kept because a live action reaches them.
    pub live_blobs: u64,
    /// Action records kept.
    pub live_actions: u64,
    /// Blobs removed (or that would be, in a dry run).
    pub removed_blobs: u64,
    /// Bytes of the removed blobs.
    pub removed_bytes: u64,
    /// Action records removed.
    pub removed_actions: u64,
    /// Unreachable objects spared because they are younger than the grace period, or
    /// reached by a dead action record that is.
    pub spared_young: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn blob_location(digest: &BlobDigest) -> String {
    let hex = digest.hex();
    format!("cas/{}/{}", &hex[..2], hex)
}

fn is_not_found(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
}

impl Store {
    /// Opens (creating if needed) a store in a local folder.
    pub fn open_local(root: &Path) -> Result<Self> {
        for sub in [
            "cas",
            "ac",
            "out",
            "runs",
            "refs",
            "leases",
            "tmp",
            "quarantine",
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|error| Error::io(&dir, error))?;
        }
        let root = root
            .canonicalize()
            .map_err(|error| Error::io(root, error))?;
        let object = LocalFileSystem::new_with_prefix(&root)
            .map_err(|error| Error::backend(root.display(), error))?;
        Ok(Self::from_parts(
            Arc::new(object),
            Some(root.clone()),
            root.display().to_string(),
        ))
    }

    /// A store held in memory (tests, and a scratch tier).
    pub fn in_memory() -> Self {
        Self::from_parts(Arc::new(InMemory::new()), None, "memory://".into())
    }

    /// Wraps any object store (already scoped to the store's prefix).
    pub fn from_object_store(object: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self::from_parts(object, None, url.into())
    }

    fn from_parts(object: Arc<dyn ObjectStore>, local_root: Option<PathBuf>, url: String) -> Self {
        Self::from_tiers(object, local_root, url, None)
    }

    pub(crate) fn from_tiers(
        object: Arc<dyn ObjectStore>,
        local_root: Option<PathBuf>,
        url: String,
        remote: Option<Store>,
    ) -> Self {
        Store {
            inner: Arc::new(Inner {
                object,
                local_root,
                url,
                verified: Mutex::new(Default::default()),
                temp_counter: AtomicU64::new(0),
                remote,
                remote_sizes: Mutex::new(Default::default()),
                stats: TransferStats::default(),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Counters of requests and bytes to the remote tier (or, for a store that is itself
    /// an object store, to it). Zero for a local folder without a remote.
    pub fn transfer_stats(&self) -> TransferSnapshot {
        match &self.inner.remote {
            Some(remote) => remote.inner.stats.snapshot(),
            None => self.inner.stats.snapshot(),
        }
    }

    /// Counts one request to the backend (object stores only: local folders are free).
    pub(crate) fn count_request(&self) {
        if self.inner.local_root.is_none() {
            TransferStats::add(&self.inner.stats.requests, 1);
        }
    }

    /// Where the store lives, for messages (never includes credentials).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The folder of a local store.
    pub fn local_root(&self) -> Option<&Path> {
        self.inner.local_root.as_deref()
    }

    pub(crate) fn object(&self) -> &dyn ObjectStore {
        self.inner.object.as_ref()
    }

    pub(crate) fn temp_path(&self, root: &Path) -> PathBuf {
        let count = self.inner.temp_counter.fetch_add(1, Ordering::Relaxed);
        root.join("tmp").join(format!(
            "{}-{}-{}",
            std::process::id(),
            count,
            rand::random::<u32>()
        ))
    }

    pub(crate) fn mark_verified(&self, digest: BlobDigest) {
        self.inner
            .verified
            .lock()
            .expect("verified set lock")
            .insert(digest);
    }

    fn is_verified(&self, digest: &BlobDigest) -> bool {
        self.inner
            .verified
            .lock()
            .expect("verified set lock")
            .contains(digest)
    }

    // ---------------------------------------------------------------- raw objects

    pub(crate) async fn get_raw(&self, location: &str) -> Result<Option<Bytes>> {
        if let Some(root) = self.local_root() {
            // Small local reads skip object_store's thread hand-off: a fully cached plan of
            // thousands of nodes is dominated by these.
            let path = root.join(location);
            return match fs::read(&path) {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(Error::io(path, error)),
            };
        }
        let path = ObjectPath::from(location);
        self.count_request();
        match self.object().get(&path).await {
            Ok(result) => match result.bytes().await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if is_not_found(&error) => Ok(None),
                Err(error) => Err(Error::backend(location, error)),
            },
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(Error::backend(location, error)),
        }
    }

    pub(crate) async fn put_raw(
        &self,
        location: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<bool> {
        let path = ObjectPath::from(location);
        self.count_request();
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .object()
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(Error::backend(location, error)),
        }
    }

    async fn size_raw(&self, location: &str) -> Result<Option<u64>> {
        self.count_request();
        match self.object().head(&ObjectPath::from(location)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(Error::backend(location, error)),
        }
    }

    pub(crate) async fn delete_raw(&self, location: &str) -> Result<()> {
        self.count_request();
        match self.object().delete(&ObjectPath::from(location)).await {
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(Error::backend(location, error)),
        }
    }

    // ---------------------------------------------------------------- blobs

    /// The stored size of a blob, or `None` when absent. Does not read the bytes.
    pub async fn blob_size(&self, digest: BlobDigest) -> Result<Option<u64>> {
        if let Some(root) = self.local_root() {
            return match fs::metadata(root.join(blob_location(&digest))) {
                Ok(metadata) => Ok(Some(metadata.len())),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(Error::io(root.join(blob_location(&digest)), error)),
            };
        }
        self.size_raw(&blob_location(&digest)).await
    }

    /// Whether a blob is present (by name; its bytes are verified when read).
    pub async fn has_blob(&self, digest: BlobDigest) -> Result<bool> {
        Ok(self.blob_size(digest).await?.is_some())
    }

    /// Stores bytes; idempotent. Returns their digest.
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<BlobDigest> {
        let digest = BlobDigest::of(&bytes);
        if self.blob_size(digest).await? == Some(bytes.len() as u64) {
            return Ok(digest);
        }
        if let Some(root) = self.local_root() {
            let temp = self.temp_path(root);
            write_synced(&temp, &bytes)?;
            self.install_local(root, &temp, digest)?;
        } else {
            self.put_raw(&blob_location(&digest), bytes, PutMode::Overwrite)
                .await?;
        }
        self.mark_verified(digest);
        Ok(digest)
    }

    /// Stores a file's contents (streamed; hard-linked or copied for local stores).
    pub async fn put_file(&self, path: &Path) -> Result<(BlobDigest, u64)> {
        let Some(root) = self.local_root().map(Path::to_path_buf) else {
            // An object store: hash first, then stream the file up (multipart when large),
            // checking on the way that the bytes sent are the bytes named.
            let source = path.to_path_buf();
            let (digest, size) = tokio::task::spawn_blocking(move || hash_file(&source))
                .await
                .expect("hashing does not panic")?;
            if self.blob_size(digest).await? != Some(size) {
                let location = ObjectPath::from(blob_location(&digest).as_str());
                crate::transfer::upload_file(
                    self.object(),
                    &location,
                    path,
                    digest,
                    &self.inner.stats,
                )
                .await?;
            }
            self.mark_verified(digest);
            return Ok((digest, size));
        };
        let temp = self.temp_path(&root);
        let source = path.to_path_buf();
        // Copy first, hash the copy: the node may still hold the source open, and the bytes
        // we name must be the bytes we keep.
        let (digest, size) = tokio::task::spawn_blocking(move || -> Result<(BlobDigest, u64)> {
            fs::copy(&source, &temp).map_err(|error| Error::io(&source, error))?;
            let file = fs::File::open(&temp).map_err(|error| Error::io(&temp, error))?;
            file.sync_all().map_err(|error| Error::io(&temp, error))?;
            let (digest, size) = hash_file(&temp)?;
            let store_path = root.join(blob_location(&digest));
            if fs::metadata(&store_path)
                .map(|m| m.len() == size)
                .unwrap_or(false)
            {
                let _ = fs::remove_file(&temp);
            } else {
                install_file(&temp, &store_path)?;
            }
            Ok((digest, size))
        })
        .await
        .expect("blob copy task does not panic")?;
        self.mark_verified(digest);
        Ok((digest, size))
    }

    pub(crate) fn install_local(&self, root: &Path, temp: &Path, digest: BlobDigest) -> Result<()> {
        install_file(temp, &root.join(blob_location(&digest)))
    }

    /// Reads a whole blob, verifying it. A corrupt blob is quarantined and reported.
    pub async fn get_bytes(&self, digest: BlobDigest) -> Result<Bytes> {
        let location = blob_location(&digest);
        let bytes = match self.get_raw(&location).await? {
            Some(bytes) => bytes,
            None if self.inner.remote.is_some() => {
                Box::pin(self.fetch_blob(digest)).await?;
                self.get_raw(&location)
                    .await?
                    .ok_or(Error::MissingBlob(digest))?
            }
            None => return Err(Error::MissingBlob(digest)),
        };
        let actual = BlobDigest::of(&bytes);
        if actual != digest {
            return Err(self.quarantine(digest, actual, bytes.len() as u64).await);
        }
        self.mark_verified(digest);
        Ok(bytes)
    }

    /// Writes a blob to `dest`, verified. Local stores hard-link read-only blob files.
    pub async fn get_to_file(
        &self,
        digest: BlobDigest,
        dest: &Path,
        executable: bool,
    ) -> Result<()> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|error| Error::io(parent, error))?;
        }
        if let Some(root) = self.local_root() {
            let source = root.join(blob_location(&digest));
            if !source.exists() {
                if self.inner.remote.is_none() {
                    return Err(Error::MissingBlob(digest));
                }
                // Lazily, from the remote: verified before it is installed.
                self.fetch_blob(digest).await?;
            }
            if !self.is_verified(&digest) {
                let (actual, size) = hash_file(&source)?;
                if actual != digest {
                    return Err(self.quarantine(digest, actual, size).await);
                }
                self.mark_verified(digest);
            }
            if executable {
                // Hard links share permissions; executables get their own copy.
                fs::copy(&source, dest).map_err(|error| Error::io(dest, error))?;
                set_mode(dest, 0o555)?;
            } else if fs::hard_link(&source, dest).is_err() {
                fs::copy(&source, dest).map_err(|error| Error::io(dest, error))?;
            }
            return Ok(());
        }
        let bytes = self.get_bytes(digest).await?;
        fs::write(dest, &bytes).map_err(|error| Error::io(dest, error))?;
        set_mode(dest, if executable { 0o555 } else { 0o444 })
    }

    pub(crate) async fn quarantine(
        &self,
        digest: BlobDigest,
        actual: BlobDigest,
        size: u64,
    ) -> Error {
        let location = blob_location(&digest);
        let target = format!("quarantine/{}-{}", digest.hex(), now_ms());
        tracing::warn!(%digest, %actual, "corrupt blob moved to quarantine");
        if let Some(root) = self.local_root() {
            let _ = fs::rename(root.join(&location), root.join(&target));
        } else if self
            .object()
            .rename(
                &ObjectPath::from(location.as_str()),
                &ObjectPath::from(target.as_str()),
            )
            .await
            .is_err()
        {
            let _ = self.delete_raw(&location).await;
        }
        Error::Corrupt {
            digest,
            actual,
            size,
        }
    }

    // ---------------------------------------------------------------- trees

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
        Tree::decode(digest, &bytes)
    }

    /// Stores every file under `dir` and then the tree naming them.
    pub async fn publish_dir(&self, dir: &Path) -> Result<(TreeDigest, Tree)> {
        let files = walk_files(dir)?;
        let results: Vec<(String, TreeEntry)> = futures::stream::iter(files)
            .map(|(name, path)| async move {
                let executable = file_is_executable(&path)?;
                let (digest, size) = self.put_file(&path).await?;
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

    /// Writes a tree's files under `dest` (verified). Existing files are replaced.
    pub async fn materialize(&self, digest: TreeDigest, dest: &Path) -> Result<Tree> {
        let tree = self.get_tree(digest).await?;
        fs::create_dir_all(dest).map_err(|error| Error::io(dest, error))?;
        let entries: Vec<(String, TreeEntry)> = tree
            .iter()
            .map(|(name, entry)| (name.to_string(), *entry))
            .collect();
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

    // ---------------------------------------------------------------- action records

    /// Records a completed action. Refuses unless its output tree is complete: this is
    /// the one door into the action cache, and it keeps the store's central invariant.
    pub async fn put_action(&self, record: &ActionRecord) -> Result<()> {
        if let Err(reason) = self.check_tree(record.output).await? {
            return Err(Error::Incomplete {
                key: record.key,
                tree: record.output,
                reason,
            });
        }
        if let Some(log) = record.log {
            if self.available_size(log).await?.is_none() {
                return Err(Error::Incomplete {
                    key: record.key,
                    tree: record.output,
                    reason: format!("log blob `{log}` is missing"),
                });
            }
        }
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        self.put_raw(
            &format!("ac/{}", record.key.hex()),
            Bytes::from(bytes),
            PutMode::Overwrite,
        )
        .await?;
        // The reverse index is a convenience for `why`; it is written after the record.
        let index = Bytes::from(record.key.to_string());
        self.put_raw(
            &format!("out/{}", record.output.hex()),
            index,
            PutMode::Overwrite,
        )
        .await?;
        Ok(())
    }

    /// The record stored under `key`, without checking its outputs.
    pub async fn get_action(&self, key: ActionKey) -> Result<Option<ActionRecord>> {
        let location = format!("ac/{}", key.hex());
        let Some(bytes) = self.get_raw(&location).await? else {
            return Ok(None);
        };
        let record: ActionRecord =
            serde_json::from_slice(&bytes).map_err(|error| Error::MalformedRecord {
                key,
                reason: error.to_string(),
            })?;
        if record.key != key {
            return Err(Error::MalformedRecord {
                key,
                reason: format!("it names key `{}`", record.key),
            });
        }
        Ok(Some(record))
    }

    /// A cache hit: the record under `key`, only if its output tree is complete.
    /// A malformed record or an incomplete tree is a miss, with the reason. With a remote,
    /// a local miss that the remote holds complete is a hit, and its record and tree are
    /// copied here (its files stay remote until something reads them).
    pub async fn lookup(&self, key: ActionKey) -> Result<Lookup> {
        let here = self.lookup_here(key).await?;
        if matches!(here, Lookup::Hit(_)) || self.inner.remote.is_none() {
            return Ok(here);
        }
        match self.lookup_remote(key).await? {
            Lookup::Miss => Ok(here),
            Lookup::Broken { reason } => Ok(Lookup::Broken {
                reason: match here {
                    Lookup::Broken { reason: local } => format!("{local}; on the remote: {reason}"),
                    _ => format!("on the remote: {reason}"),
                },
            }),
            hit => Ok(hit),
        }
    }

    /// [`Store::lookup`] in this tier only (blobs may still be counted present on the remote).
    pub(crate) async fn lookup_here(&self, key: ActionKey) -> Result<Lookup> {
        let record = match self.get_action(key).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(Lookup::Miss),
            Err(error @ Error::MalformedRecord { .. }) => {
                return Ok(Lookup::Broken {
                    reason: error.to_string(),
                })
            }
            Err(error) => return Err(error),
        };
        match self.check_tree(record.output).await? {
            Ok(_) => Ok(Lookup::Hit(Box::new(record))),
            Err(reason) => Ok(Lookup::Broken { reason }),
        }
    }

    /// The action key that produced `tree`, from the reverse index.
    pub async fn producer_of(&self, tree: TreeDigest) -> Result<Option<ActionKey>> {
        let Some(bytes) = self.get_raw(&format!("out/{}", tree.hex())).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(text.trim().parse().ok())
    }

    /// Every action key with a record.
    pub async fn list_actions(&self) -> Result<Vec<ActionKey>> {
        let metas = self.list_prefix("ac").await?;
        Ok(metas
            .into_iter()
            .filter_map(|(name, _, _)| name.parse().ok())
            .collect())
    }

    // ---------------------------------------------------------------- documents

    /// Writes a small JSON document at `location` (under `runs/` or `refs/`).
    pub async fn put_document<T: Serialize>(&self, location: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("documents serialize");
        self.put_raw(location, Bytes::from(bytes), PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// Reads a JSON document, `None` when absent.
    pub async fn get_document<T: for<'de> Deserialize<'de>>(
        &self,
        location: &str,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.get_raw(location).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| Error::MalformedDocument {
                location: location.to_string(),
                reason: error.to_string(),
            })
    }

    /// Names (last path component), sizes and ages of the objects under `prefix`.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, u64, Duration)>> {
        let prefix_path = ObjectPath::from(prefix);
        let now = SystemTime::now();
        self.count_request();
        let metas: Vec<object_store::ObjectMeta> = self
            .object()
            .list(Some(&prefix_path))
            .try_collect()
            .await
            .map_err(|error| Error::backend(prefix, error))?;
        let mut out: Vec<(String, u64, Duration)> = metas
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                let modified: SystemTime = meta.last_modified.into();
                let age = now.duration_since(modified).unwrap_or_default();
                Some((name, meta.size, age))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    // ---------------------------------------------------------------- gc

    /// Deletes every action record not in `live` and every blob no live record reaches,
    /// sparing anything younger than `grace` (a concurrent run's fresh results).
    pub async fn gc(&self, live: &[ActionKey], grace: Duration, dry_run: bool) -> Result<GcReport> {
        let mut report = GcReport::default();
        let mut live_blobs = std::collections::HashSet::new();
        let live_keys: std::collections::HashSet<ActionKey> = live.iter().copied().collect();
        for key in live {
            let Ok(Some(record)) = self.get_action(*key).await else {
                continue;
            };
            report.live_actions += 1;
            self.add_reachable(&record, &mut live_blobs).await;
        }
        report.live_blobs = live_blobs.len() as u64;
        // Blobs reached by dead records spared for their youth: such a record may be a
        // concurrent run's fresh result sharing old blobs with earlier outputs.
        let mut young_blobs = std::collections::HashSet::new();
        let mut removed_outputs = Vec::new();
        for (name, _, age) in self.list_prefix("ac").await? {
            let Ok(key) = name.parse::<ActionKey>() else {
                continue;
            };
            if live_keys.contains(&key) {
                continue;
            }
            if age < grace {
                report.spared_young += 1;
                if let Ok(Some(record)) = self.get_action(key).await {
                    self.add_reachable(&record, &mut young_blobs).await;
                }
                continue;
            }
            report.removed_actions += 1;
            if !dry_run {
                if let Ok(Some(record)) = self.get_action(key).await {
                    removed_outputs.push(record.output);
                }
                self.delete_raw(&format!("ac/{}", key.hex())).await?;
            }
        }
        for output in removed_outputs {
            if !live_blobs.contains(&output.cast()) && !young_blobs.contains(&output.cast()) {
                self.delete_raw(&format!("out/{}", output.hex())).await?;
            }
        }
        for (name, size, age) in self.list_prefix("cas").await? {
            let Ok(digest) = name.parse::<BlobDigest>() else {
                continue;
            };
            if live_blobs.contains(&digest) {
                continue;
            }
            if age < grace || young_blobs.contains(&digest) {
                report.spared_young += 1;
                continue;
            }
            report.removed_blobs += 1;
            report.removed_bytes += size;
            if !dry_run {
                self.delete_raw(&blob_location(&digest)).await?;
            }
        }
        if !dry_run {
            self.sweep_temporaries(grace)?;
            // Takeover markers outlive their lease; old ones only take space.
            for (name, _, age) in self.list_prefix("leases").await? {
                if name.contains(".takeover-") && age >= grace.max(Duration::from_secs(600)) {
                    self.delete_raw(&format!("leases/{name}")).await?;
                }
            }
        }
        Ok(report)
    }

    /// Adds every blob `record` reaches (its tree, the tree's files, its log) to `blobs`.
    async fn add_reachable(
        &self,
        record: &ActionRecord,
        blobs: &mut std::collections::HashSet<BlobDigest>,
    ) {
        blobs.insert(record.output.cast());
        if let Some(log) = record.log {
            blobs.insert(log);
        }
        if let Ok(tree) = self.get_tree(record.output).await {
            blobs.extend(tree.iter().map(|(_, entry)| entry.digest));
        }
    }

    /// Removes abandoned temporary files of local stores (killed writers) older than `grace`.
    fn sweep_temporaries(&self, grace: Duration) -> Result<()> {
        let Some(root) = self.local_root() else {
            return Ok(());
        };
        for dir in ["tmp", "quarantine"] {
            let Ok(reader) = fs::read_dir(root.join(dir)) else {
                continue;
            };
            for item in reader.flatten() {
                let old = item
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|modified| modified.elapsed().unwrap_or_default() >= grace)
                    .unwrap_or(false);
                if old {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        Ok(())
    }
}

/// The answer of [`Store::lookup`].
#[derive(Debug)]
pub enum Lookup {
    /// A complete record.
    Hit(Box<ActionRecord>),
    /// No record.
    Miss,
    /// A record exists but cannot be used (missing or corrupt outputs, malformed).
    Broken {
        /// Why it cannot be used.
        reason: String,
    },
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|error| Error::io(path, error))?;
    file.write_all(bytes)
        .map_err(|error| Error::io(path, error))?;
    file.sync_all().map_err(|error| Error::io(path, error))
}

/// Moves a synced temp file to its content address, read-only, and syncs its folder.
pub(crate) fn install_file(temp: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().expect("blob paths have a parent");
    fs::create_dir_all(parent).map_err(|error| Error::io(parent, error))?;
    set_mode(temp, 0o444)?;
    fs::rename(temp, dest).map_err(|error| Error::io(dest, error))?;
    if let Ok(dir) = fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| Error::io(path, error))
}

/// Sizes of blobs by digest, for reports.
pub type BlobSizes = BTreeMap<BlobDigest, u64>;
