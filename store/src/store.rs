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
use crate::tree::{Tree, TreeEntry};

/// How many blob operations run at once when publishing or checking a tree.
const CONCURRENCY: usize = 16;

/// A content-addressed store rooted at a local folder or an object store prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    object: Arc<dyn ObjectStore>,
    /// Set for local stores: blob files are written and linked directly (fsync, hardlinks).
    local_root: Option<PathBuf>,
    url: String,
    /// Blobs verified by a full read during this process's life (never re-hashed).
    verified: Mutex<std::collections::HashSet<BlobDigest>>,
    temp_counter: AtomicU64,
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn blob_location(digest: &BlobDigest) -> String {
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
        Store {
            inner: Arc::new(Inner {
                object,
                local_root,
                url,
                verified: Mutex::new(Default::default()),
                temp_counter: AtomicU64::new(0),
            }),
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

    fn object(&self) -> &dyn ObjectStore {
        self.inner.object.as_ref()
    }

    fn temp_path(&self, root: &Path) -> PathBuf {
        let count = self.inner.temp_counter.fetch_add(1, Ordering::Relaxed);
        root.join("tmp").join(format!(
            "{}-{}-{}",
            std::process::id(),
            count,
            rand::random::<u32>()
        ))
    }

    fn mark_verified(&self, digest: BlobDigest) {
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

    async fn get_raw(&self, location: &str) -> Result<Option<Bytes>> {
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

    async fn put_raw(&self, location: &str, bytes: Bytes, mode: PutMode) -> Result<bool> {
        let path = ObjectPath::from(location);
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
        match self.object().head(&ObjectPath::from(location)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(Error::backend(location, error)),
        }
    }

    async fn delete_raw(&self, location: &str) -> Result<()> {
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
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|error| Error::io(path, error))?;
            let size = bytes.len() as u64;
            return Ok((self.put_bytes(Bytes::from(bytes)).await?, size));
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

    fn install_local(&self, root: &Path, temp: &Path, digest: BlobDigest) -> Result<()> {
        install_file(temp, &root.join(blob_location(&digest)))
    }

    /// Reads a whole blob, verifying it. A corrupt blob is quarantined and reported.
    pub async fn get_bytes(&self, digest: BlobDigest) -> Result<Bytes> {
        let location = blob_location(&digest);
        let bytes = self
            .get_raw(&location)
            .await?
            .ok_or(Error::MissingBlob(digest))?;
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
                return Err(Error::MissingBlob(digest));
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

    async fn quarantine(&self, digest: BlobDigest, actual: BlobDigest, size: u64) -> Error {
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
                let size = self.blob_size(entry.digest).await?;
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
            if !self.has_blob(log).await? {
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
    /// A malformed record or an incomplete tree is a miss, with the reason.
    pub async fn lookup(&self, key: ActionKey) -> Result<Lookup> {
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

    // ---------------------------------------------------------------- leases

    /// Tries to take the lease on `key` for `ttl`. An expired lease is taken over.
    pub async fn try_lease(
        &self,
        key: ActionKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let location = format!("leases/{}", key.hex());
        let lease = Lease {
            key,
            owner: owner.to_string(),
            expires_at_ms: now_ms() + ttl.as_millis() as u64,
        };
        let bytes = Bytes::from(serde_json::to_vec(&lease).expect("leases serialize"));
        if self
            .put_raw(&location, bytes.clone(), PutMode::Create)
            .await?
        {
            return Ok(Some(lease));
        }
        let current: Option<Lease> = match self.get_document(&location).await {
            Ok(current) => current,
            // Garbage in a lease file: whoever wrote it is not a runner we can wait for.
            Err(Error::MalformedDocument { .. }) => None,
            // A failed read says nothing about the holder: never break a lease on it.
            Err(error) => return Err(error),
        };
        let Some(current) = current else {
            // Released between our create and our read, or unreadable: race for a create.
            self.delete_raw(&location).await?;
            let taken = self.put_raw(&location, bytes, PutMode::Create).await?;
            return Ok(taken.then_some(lease));
        };
        if current.owner == owner {
            self.put_raw(&location, bytes, PutMode::Overwrite).await?;
            return Ok(Some(lease));
        }
        if current.expires_at_ms > now_ms() {
            return Ok(None);
        }
        // Expired. Exactly one runner may take over this particular expired lease: the one
        // that creates its takeover marker (named after the lease it replaces).
        let marker = format!(
            "leases/{}.takeover-{}",
            key.hex(),
            BlobDigest::of(format!("{}:{}", current.owner, current.expires_at_ms).as_bytes())
                .short()
        );
        if !self
            .put_raw(&marker, Bytes::from(owner.to_string()), PutMode::Create)
            .await?
        {
            return Ok(None);
        }
        self.put_raw(&location, bytes, PutMode::Overwrite).await?;
        Ok(Some(lease))
    }

    /// Extends a lease we hold. Returns false when someone else holds it now.
    pub async fn renew_lease(&self, lease: &mut Lease, ttl: Duration) -> Result<bool> {
        let location = format!("leases/{}", lease.key.hex());
        let current: Option<Lease> = self.get_document(&location).await.unwrap_or(None);
        if current
            .as_ref()
            .map(|c| c.owner != lease.owner)
            .unwrap_or(true)
        {
            return Ok(false);
        }
        lease.expires_at_ms = now_ms() + ttl.as_millis() as u64;
        self.put_document(&location, lease).await?;
        Ok(true)
    }

    /// Releases a lease we hold (no-op when it is not ours any more).
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let location = format!("leases/{}", lease.key.hex());
        let current: Option<Lease> = self.get_document(&location).await.unwrap_or(None);
        if current.map(|c| c.owner == lease.owner).unwrap_or(false) {
            self.delete_raw(&location).await?;
        }
        Ok(())
    }

    /// Removes the lease on `key` if `owner` still holds it: for a holder known to be dead
    /// (a killed process on this host) whose lease has not expired yet.
    pub async fn break_lease(&self, key: ActionKey, owner: &str) -> Result<()> {
        let location = format!("leases/{}", key.hex());
        let current: Option<Lease> = self.get_document(&location).await.unwrap_or(None);
        if current.map(|c| c.owner == owner).unwrap_or(false) {
            self.delete_raw(&location).await?;
        }
        Ok(())
    }

    /// The current holder of the lease on `key`, if any and not expired.
    pub async fn lease_holder(&self, key: ActionKey) -> Result<Option<Lease>> {
        let current: Option<Lease> = self
            .get_document(&format!("leases/{}", key.hex()))
            .await
            .unwrap_or(None);
        Ok(current.filter(|lease| lease.expires_at_ms > now_ms()))
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

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|error| Error::io(path, error))?;
    file.write_all(bytes)
        .map_err(|error| Error::io(path, error))?;
    file.sync_all().map_err(|error| Error::io(path, error))
}

/// Moves a synced temp file to its content address, read-only, and syncs its folder.
fn install_file(temp: &Path, dest: &Path) -> Result<()> {
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
