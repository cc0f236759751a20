//! The store: blobs, trees, action records, documents and leases over one `ObjectStore`.
//!
//! [`Store`] is one type whose methods are spread over files by what they handle, each adding
//! an `impl Store` block: `raw.rs` (bytes at a layout location), `blobs.rs` (content-addressed
//! and verified), `trees.rs`, `actions.rs` (the action cache), `documents.rs` and `gc.rs`.
//! Leases are in `lease.rs` and the remote tier in `tier.rs`, one level up. This file holds
//! the type, its constructors and the helpers the others share.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::digest::{ActionKey, BlobDigest};
use crate::encoding::SCHEMA;
use crate::error::{Error, Result};
use crate::hashing::FileStamp;
use crate::record::KeyComponents;
use crate::signing::SigningKey;
use crate::transfer::{TransferSnapshot, TransferStats};

mod actions;
mod blobs;
mod documents;
mod gc;
mod inputs;
mod raw;
mod trees;

pub use actions::Lookup;
pub use gc::GcReport;
pub use inputs::{ChangedInput, MaterializedInput};

/// Checks an action record's key components against the key it is stored under
/// (docs/architecture.md §3, §15); the error says why they do not match. The derivation
/// belongs to the engine (`peirce_dag::key::check_components`); the store only holds it, so
/// that every record read, here or from a remote, is bound to its key.
pub type KeyCheck = fn(ActionKey, &KeyComponents) -> std::result::Result<(), String>;

/// A store's team key: every record written is signed with it; when `verify` is set (a remote
/// tier), every record read must carry its valid signature.
#[derive(Debug, Clone)]
pub(crate) struct Signing {
    pub(crate) key: SigningKey,
    pub(crate) verify: bool,
}

/// How many blob operations run at once when publishing or checking a tree.
pub(crate) const CONCURRENCY: usize = 16;

/// Blobs verified during this process's life, with the `cas/` file stamp they were hashed at.
pub(crate) type VerifiedBlobs = std::collections::HashMap<BlobDigest, Option<FileStamp>>;

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
    /// Blobs verified by a full read during this process's life. For a local store, the stamp
    /// of the `cas/` file whose bytes were hashed: the file is trusted without hashing again
    /// only while its stamp is unchanged (docs/architecture.md §5). `None`: verified bytes,
    /// file stamp unknown (read whole, or an object store).
    verified: Arc<Mutex<VerifiedBlobs>>,
    /// Checks each action record read against the key it is stored under (§15).
    pub(crate) key_check: OnceLock<KeyCheck>,
    /// The team key records are signed with, and whether records read here are verified
    /// (a remote tier) or trusted (the local store). See `signing.rs`.
    pub(crate) signing: OnceLock<Signing>,
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

impl Inner {
    /// The verified set, for a blocking task to consult.
    pub(crate) fn verified_stamps(&self) -> Arc<Mutex<VerifiedBlobs>> {
        self.verified.clone()
    }
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
        check_schema(&root)?;
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

    /// Wraps any object store (already scoped to the store's prefix); `url` is what messages
    /// and run records show of it, and is kept redacted ([`crate::redact_url`]).
    pub fn from_object_store(object: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self::from_parts(object, None, crate::redact_url(&url.into()))
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
                verified: Arc::new(Mutex::new(Default::default())),
                key_check: OnceLock::new(),
                signing: OnceLock::new(),
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

    /// Where the object at a layout `location` lives, for messages: a path for a local store,
    /// the store's URL and the location otherwise.
    pub fn describe_location(&self, location: &str) -> String {
        match self.local_root() {
            Some(root) => root.join(location).display().to_string(),
            None if self.url().ends_with('/') => format!("{}{location}", self.url()),
            None => format!("{}/{location}", self.url()),
        }
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

    /// Checks every action record read from now on (here and on the remote) against the key
    /// it is stored under with `check`. Set once; later calls are ignored.
    pub fn set_key_check(&self, check: KeyCheck) {
        let _ = self.inner.key_check.set(check);
        if let Some(remote) = &self.inner.remote {
            remote.set_key_check(check);
        }
    }

    /// Signs every action record written from now on with the team key `key`, here and on
    /// the remote, and refuses records read from the remote unless they carry this key's
    /// valid signature (docs/architecture.md §15). Records read from this store itself are
    /// trusted: it is the local store, written by this user's own runs. Set once; later
    /// calls are ignored.
    pub fn set_signing_key(&self, key: SigningKey) {
        self.set_signing(Signing { key, verify: false });
    }

    /// Signs and verifies with `key` on this store itself: for a store that is read as a
    /// remote (which [`Store::with_remote`] and [`Store::set_signing_key`] arrange).
    pub fn set_verifying_key(&self, key: SigningKey) {
        self.set_signing(Signing { key, verify: true });
    }

    pub(crate) fn set_signing(&self, signing: Signing) {
        if let Some(remote) = &self.inner.remote {
            remote.set_verifying_key(signing.key.clone());
        }
        let _ = self.inner.signing.set(signing);
    }

    /// The id of the key records are signed with, if any.
    pub fn signing_key_id(&self) -> Option<crate::signing::KeyId> {
        self.inner.signing.get().map(|signing| signing.key.id())
    }

    /// Remembers that `digest` was verified: for a local store, with the stamp its `cas/` file
    /// has now. Only for a file this process just installed, which no node holds yet.
    pub(crate) fn mark_verified(&self, digest: BlobDigest) {
        let stamp = self
            .local_root()
            .and_then(|root| FileStamp::of_path(&root.join(blob_location(&digest))).ok());
        self.remember_verified(digest, stamp);
    }

    /// Remembers that `digest` was verified with the file stamp `stamp` (or bytes read whole).
    pub(crate) fn remember_verified(&self, digest: BlobDigest, stamp: Option<FileStamp>) {
        let mut verified = self.inner.verified.lock().expect("verified set lock");
        match (verified.get(&digest), stamp) {
            // Bytes read whole say nothing about a file stamp already known.
            (Some(Some(_)), None) => {}
            _ => {
                verified.insert(digest, stamp);
            }
        }
    }

    /// Forgets a blob's verification, so its next read hashes it again.
    pub(crate) fn forget_verified(&self, digest: &BlobDigest) {
        self.inner
            .verified
            .lock()
            .expect("verified set lock")
            .remove(digest);
    }

    /// The stamp the local `cas/` file of `digest` had when this process last hashed it.
    fn verified_stamp(&self, digest: &BlobDigest) -> Option<FileStamp> {
        self.inner
            .verified
            .lock()
            .expect("verified set lock")
            .get(digest)
            .copied()
            .flatten()
    }
}

/// The file naming a local store's schema, at its root.
pub const SCHEMA_FILE: &str = "schema";

/// What [`SCHEMA_FILE`] holds for this build's schema.
fn schema_text(schema: u16) -> String {
    format!("peirce-store {schema}\n")
}

/// Checks that the local store at `root` has this build's schema, writing the schema file
/// into a store that has no data yet. A store with data and no schema file was written by
/// peirce before the file existed (schema 1, JSON). A store of another schema is refused and
/// left untouched: nothing here rewrites or deletes what an older or newer peirce wrote.
fn check_schema(root: &Path) -> Result<()> {
    check_schema_racing(root, || {})
}

/// [`check_schema`], running `meanwhile` right after a first look that found no schema file
/// (where another opener may create the store; tests use it to be that opener).
fn check_schema_racing(root: &Path, meanwhile: impl FnOnce()) -> Result<()> {
    let path = root.join(SCHEMA_FILE);
    let parse = |text: String| {
        text.trim()
            .strip_prefix("peirce-store ")
            .and_then(|number| number.parse::<u16>().ok())
            .ok_or_else(|| Error::UnknownSchema {
                path: path.clone(),
                text: text.chars().take(80).collect(),
            })
    };
    let found = match fs::read_to_string(&path) {
        Ok(text) => parse(text)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            meanwhile();
            if holds_data(root)? {
                // Another peirce opening this new store at the same time writes the schema
                // file before any data: data with no schema file on the first look may be
                // its, so look again. Only a store that never had the file is schema 1.
                match fs::read_to_string(&path) {
                    Ok(text) => parse(text)?,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => 1,
                    Err(error) => return Err(Error::io(path, error)),
                }
            } else {
                let temp = root.join("tmp").join(format!(
                    "schema-{}-{}",
                    std::process::id(),
                    rand::random::<u32>()
                ));
                write_synced(&temp, schema_text(SCHEMA).as_bytes())?;
                fs::rename(&temp, &path).map_err(|error| Error::io(&path, error))?;
                return Ok(());
            }
        }
        Err(error) => return Err(Error::io(path, error)),
    };
    if found != SCHEMA {
        return Err(Error::SchemaMismatch {
            root: root.to_path_buf(),
            found,
        });
    }
    Ok(())
}

/// Whether anything was ever stored under `root` (an empty layout from `open_local` is not).
fn holds_data(root: &Path) -> Result<bool> {
    for sub in ["cas", "ac", "out", "runs", "refs"] {
        let dir = root.join(sub);
        let mut reader = fs::read_dir(&dir).map_err(|error| Error::io(&dir, error))?;
        if reader.next().is_some() {
            return Ok(true);
        }
    }
    Ok(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by tests/faults.rs (3 runners on a fresh store): an opener that looked for the
    /// schema file before another opener wrote it, and for data after that one wrote some,
    /// took the new store for one of schema 1 and refused it.
    #[test]
    fn a_store_created_by_another_opener_meanwhile_is_not_taken_for_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["cas", "ac", "out", "runs", "refs", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        check_schema_racing(root, || {
            // The other opener: its schema file, then its first data.
            fs::write(root.join(SCHEMA_FILE), schema_text(SCHEMA)).unwrap();
            fs::write(root.join("runs").join("run-1"), b"{}").unwrap();
        })
        .expect("the store the other opener made is this schema's");

        // A store with data that never had the file is still schema 1, refused.
        let old = tempfile::tempdir().unwrap();
        for sub in ["cas", "ac", "out", "runs", "refs", "tmp"] {
            fs::create_dir_all(old.path().join(sub)).unwrap();
        }
        fs::write(old.path().join("runs").join("run-1"), b"{}").unwrap();
        assert!(matches!(
            check_schema(old.path()),
            Err(Error::SchemaMismatch { found: 1, .. })
        ));
    }
}
