//! The remote tier: a second store (usually `s3://...`) behind a local one.
//!
//! - Read-through: [`Store::lookup`] falls through to the remote on a local miss; a complete
//!   remote record is copied here with its tree, and its files are downloaded only when
//!   something reads them ([`Store::get_bytes`], [`Store::materialize`], ...), each one
//!   verified before it is installed. A blob found corrupt on the remote is moved to the
//!   remote's quarantine, so the record it belongs to is a miss for everyone until a push
//!   heals it.
//! - Write-through: [`Store::push_action`] sends a record's blobs (those the remote lacks),
//!   then its tree, then the record, last: a push that stops anywhere leaves no record on the
//!   remote whose bytes are not all there, and the next push completes it.
//! - Leases live on the remote, so runners on different machines share them.
//!
//! A record here whose files are only on the remote counts as complete while the remote
//! still has them (checked by size, once per process); when a read finds one gone, the
//! record turns into a miss and the engine recomputes it.

use std::path::Path;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::PutMode;
use serde::Serialize;

use crate::digest::{ActionKey, BlobDigest, TreeDigest};
use crate::error::{Error, Result};
use crate::record::ActionRecord;
use crate::store::{blob_location, install_file, Lookup, Store};
use crate::transfer::{self, TransferStats, MULTIPART_THRESHOLD};

/// Blobs moved at once by one push or pull of an action.
const BLOB_CONCURRENCY: usize = 4;

/// What [`Store::push_action`] or [`Store::pull_action`] did for one record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Blobs the record reaches (tree, files, log).
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs that had to be sent or fetched (the others were there already).
    pub transferred_blobs: u64,
    /// Bytes sent or fetched.
    pub transferred_bytes: u64,
    /// Whether the record itself was written (false: it was there already).
    pub record_written: bool,
}

impl Store {
    /// This store with `remote` as its second tier. Records, trees and blobs are written here
    /// first; `remote` gets them through [`Store::push_action`].
    pub fn with_remote(&self, remote: Store) -> Store {
        let store = Store::from_tiers(
            self.inner().object.clone(),
            self.local_root().map(Path::to_path_buf),
            self.url().to_string(),
            Some(remote),
        );
        if let Some(check) = self.inner().key_check.get() {
            store.set_key_check(*check);
        }
        if let Some(signing) = self.inner().signing.get() {
            store.set_signing(signing.clone());
        }
        store
    }

    /// The second tier, if any.
    pub fn remote(&self) -> Option<&Store> {
        self.inner().remote.as_ref()
    }

    fn require_remote(&self) -> Result<&Store> {
        self.remote().ok_or_else(|| Error::Url {
            url: self.url().to_string(),
            reason: "this store has no remote".into(),
        })
    }

    fn remote_stats(&self) -> &TransferStats {
        match self.remote() {
            Some(remote) => &remote.inner().stats,
            None => &self.inner().stats,
        }
    }

    /// The size of a blob here, else on the remote (remembered for this process).
    pub(crate) async fn available_size(&self, digest: BlobDigest) -> Result<Option<u64>> {
        if let Some(size) = self.blob_size(digest).await? {
            return Ok(Some(size));
        }
        let Some(remote) = self.remote() else {
            return Ok(None);
        };
        if let Some(size) = self.remembered_remote_size(&digest) {
            return Ok(Some(size));
        }
        let size = remote.blob_size(digest).await?;
        if let Some(size) = size {
            self.remember_remote_size(digest, Some(size));
        }
        Ok(size)
    }

    fn remembered_remote_size(&self, digest: &BlobDigest) -> Option<u64> {
        self.inner()
            .remote_sizes
            .lock()
            .expect("remote sizes lock")
            .get(digest)
            .copied()
    }

    fn remember_remote_size(&self, digest: BlobDigest, size: Option<u64>) {
        let mut sizes = self.inner().remote_sizes.lock().expect("remote sizes lock");
        match size {
            Some(size) => sizes.insert(digest, size),
            None => sizes.remove(&digest),
        };
    }

    /// Downloads a blob from the remote into this tier, verified before it is installed.
    /// Large blobs come in parallel ranges into `tmp/fetch-<hex>`, which survives an
    /// interruption: the next fetch continues it. A blob that does not hash to its name is
    /// moved to the remote's quarantine and reported as [`Error::Corrupt`].
    pub(crate) async fn fetch_blob(&self, digest: BlobDigest) -> Result<()> {
        let remote = self.require_remote()?;
        let stats = &remote.inner().stats;
        let location = blob_location(&digest);
        let Some(root) = self.local_root().map(Path::to_path_buf) else {
            // A tier without a folder (memory): whole blobs, verified by the remote's read.
            let bytes = Box::pin(remote.get_bytes(digest)).await?;
            TransferStats::add(&stats.bytes_downloaded, bytes.len() as u64);
            TransferStats::add(&stats.blobs_downloaded, 1);
            self.put_bytes(bytes).await?;
            return Ok(());
        };
        let Some(size) = remote.blob_size(digest).await? else {
            self.remember_remote_size(digest, None);
            return Err(Error::MissingBlob(digest));
        };
        let object_path = ObjectPath::from(location.as_str());
        if size <= MULTIPART_THRESHOLD {
            let Some(bytes) = transfer::get_small(remote.object(), &object_path, stats).await?
            else {
                self.remember_remote_size(digest, None);
                return Err(Error::MissingBlob(digest));
            };
            let actual = BlobDigest::of(&bytes);
            if actual != digest {
                self.remember_remote_size(digest, None);
                return Err(remote.quarantine(digest, actual, bytes.len() as u64).await);
            }
            let temp = self.temp_path(&root);
            crate::store::write_synced(&temp, &bytes)?;
            self.install_local(&root, &temp, digest)?;
        } else {
            let (partial, journal) = transfer::partial_paths(&root.join("tmp"), &digest);
            let lock = lock_file(&journal.with_extension("lock")).await?;
            let destination = root.join(&location);
            if destination.exists() {
                // Another process fetched it while we waited for the lock.
                drop(lock);
                return Ok(());
            }
            let mut attempts = 0;
            loop {
                attempts += 1;
                let fetched = transfer::download_to_partial(
                    remote.object(),
                    &object_path,
                    size,
                    &partial,
                    &journal,
                    stats,
                )
                .await?;
                let (actual, actual_size) = transfer::hash_partial(&partial).await?;
                if actual == digest {
                    install_file(&partial, &destination)?;
                    let _ = std::fs::remove_file(&journal);
                    break;
                }
                let _ = std::fs::remove_file(&partial);
                let _ = std::fs::remove_file(&journal);
                // Part of it came from an earlier attempt (perhaps of different bytes):
                // fetch it whole once more before blaming the remote.
                if fetched < size && attempts == 1 {
                    tracing::warn!(%digest, "resumed download does not verify; fetching it whole");
                    continue;
                }
                self.remember_remote_size(digest, None);
                return Err(remote.quarantine(digest, actual, actual_size).await);
            }
            drop(lock);
        }
        TransferStats::add(&stats.blobs_downloaded, 1);
        self.mark_verified(digest);
        Ok(())
    }

    /// Looks `key` up on the remote; a complete record is copied here with its tree.
    pub(crate) async fn lookup_remote(&self, key: ActionKey) -> Result<Lookup> {
        let remote = self.require_remote()?;
        let record = match remote.get_action(key).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(Lookup::Miss),
            Err(error @ (Error::MalformedRecord { .. } | Error::UnsignedRecord { .. })) => {
                tracing::warn!("{error}");
                return Ok(Lookup::Broken {
                    reason: error.to_string(),
                });
            }
            Err(error) => return Err(error),
        };
        // `check_tree` fetches the tree (verified) and checks every blob here or there.
        match self.check_tree(record.output).await? {
            Ok(_) => {}
            Err(reason) => return Ok(Lookup::Broken { reason }),
        }
        if let Some(log) = record.log {
            if self.available_size(log).await?.is_none() {
                return Ok(Lookup::Broken {
                    reason: format!("log blob `{log}` is missing"),
                });
            }
        }
        self.put_action(&record).await?;
        TransferStats::add(&remote.inner().stats.records_fetched, 1);
        Ok(Lookup::Hit(Box::new(record)))
    }

    /// Every blob `record` reaches, with its size: the tree encoding, the files, the log.
    async fn reachable_blobs(&self, record: &ActionRecord) -> Result<Vec<(BlobDigest, u64)>> {
        self.tree_blobs(record.output, record.log).await
    }

    /// The tree encoding of `output`, its files, and `log`, with their sizes (in that order).
    async fn tree_blobs(
        &self,
        output: TreeDigest,
        log: Option<BlobDigest>,
    ) -> Result<Vec<(BlobDigest, u64)>> {
        let tree = self.get_tree(output).await?;
        let mut blobs: Vec<(BlobDigest, u64)> = Vec::new();
        let encoding = tree.encode();
        blobs.push((output.cast(), encoding.len() as u64));
        let mut seen = std::collections::HashSet::new();
        for (_, entry) in tree.iter() {
            if seen.insert(entry.digest) {
                blobs.push((entry.digest, entry.size));
            }
        }
        if let Some(log) = log {
            let size = self
                .available_size(log)
                .await?
                .ok_or(Error::MissingBlob(log))?;
            blobs.push((log, size));
        }
        Ok(blobs)
    }

    /// Total bytes `key`'s record reaches (for progress bars); `None` without a record here.
    pub async fn action_size(&self, key: ActionKey) -> Result<Option<u64>> {
        let Some(record) = self.get_action(key).await? else {
            return Ok(None);
        };
        let blobs = self.reachable_blobs(&record).await?;
        Ok(Some(blobs.iter().map(|(_, size)| size).sum()))
    }

    /// Sends the record under `key` (which must be here) to the remote: the blobs it lacks
    /// first (multipart for large ones, each verified as it is read), and the record last.
    pub async fn push_action(&self, key: ActionKey) -> Result<SyncReport> {
        let remote = self.require_remote()?;
        let record = self
            .get_action(key)
            .await?
            .ok_or(Error::MissingRecord(key))?;
        let stats = &remote.inner().stats;
        if let Some(existing) = remote.get_action(key).await.ok().flatten() {
            if existing.output == record.output && remote.check_tree(record.output).await?.is_ok() {
                let blobs = self.reachable_blobs(&record).await?;
                let bytes = blobs.iter().map(|(_, size)| size).sum();
                TransferStats::add(&stats.bytes_present, bytes);
                return Ok(SyncReport {
                    blobs: blobs.len() as u64,
                    bytes,
                    ..Default::default()
                });
            }
        }
        let blobs = self.reachable_blobs(&record).await?;
        let mut report = self.push_blobs(remote, &blobs).await?;
        // The record after everything.
        remote.put_action(&record).await?;
        TransferStats::add(&stats.records_pushed, 1);
        report.record_written = true;
        Ok(report)
    }

    /// Sends tree `output` (which must be here), its files and `log` to the remote, the blobs
    /// it lacks, the tree encoding after the files it names: a node's result without its
    /// record, which the runner that holds the node's lease writes (a Slurm job working from
    /// the remote, docs/architecture.md §21).
    pub async fn push_tree(
        &self,
        output: TreeDigest,
        log: Option<BlobDigest>,
    ) -> Result<SyncReport> {
        let remote = self.require_remote()?;
        let blobs = self.tree_blobs(output, log).await?;
        self.push_blobs(remote, &blobs).await
    }

    /// Sends `blobs` (a tree encoding first, then what it names) that the remote lacks: the
    /// tree encoding last.
    async fn push_blobs(&self, remote: &Store, blobs: &[(BlobDigest, u64)]) -> Result<SyncReport> {
        let mut report = SyncReport {
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|(_, size)| size).sum(),
            ..Default::default()
        };
        let (tree_blob, files) = blobs.split_first().expect("a tree is always reachable");
        let sent: Vec<Option<u64>> = futures::stream::iter(files.iter().copied())
            .map(|(digest, size)| self.push_blob(remote, digest, size))
            .buffer_unordered(BLOB_CONCURRENCY)
            .try_collect()
            .await?;
        let tree_sent = self.push_blob(remote, tree_blob.0, tree_blob.1).await?;
        for sent in sent.into_iter().chain([tree_sent]).flatten() {
            report.transferred_blobs += 1;
            report.transferred_bytes += sent;
        }
        Ok(report)
    }

    /// Uploads one blob unless the remote has it; returns the bytes sent.
    async fn push_blob(
        &self,
        remote: &Store,
        digest: BlobDigest,
        size: u64,
    ) -> Result<Option<u64>> {
        let stats = &remote.inner().stats;
        if remote.blob_size(digest).await? == Some(size) {
            TransferStats::add(&stats.bytes_present, size);
            return Ok(None);
        }
        let location = ObjectPath::from(blob_location(&digest).as_str());
        let sent = match self.local_root() {
            Some(root) => {
                let path = root.join(blob_location(&digest));
                if !path.exists() {
                    return Err(Error::MissingBlob(digest));
                }
                match transfer::upload_file(remote.object(), &location, &path, digest, stats).await
                {
                    Ok(sent) => sent,
                    Err(Error::Corrupt { actual, size, .. }) => {
                        return Err(self.quarantine(digest, actual, size).await)
                    }
                    Err(error) => return Err(error),
                }
            }
            None => {
                let bytes = self.get_bytes(digest).await?;
                let length = bytes.len() as u64;
                remote
                    .put_raw(location.as_ref(), bytes, PutMode::Overwrite)
                    .await?;
                TransferStats::add(&stats.bytes_uploaded, length);
                length
            }
        };
        TransferStats::add(&stats.blobs_uploaded, 1);
        self.remember_remote_size(digest, Some(size));
        Ok(Some(sent))
    }

    /// Makes the record under `key` and every blob it reaches present here, from the
    /// remote where needed (verified). `None` when neither tier has a complete record.
    pub async fn pull_action(&self, key: ActionKey) -> Result<Option<SyncReport>> {
        let record = match self.lookup(key).await? {
            Lookup::Hit(record) => record,
            Lookup::Miss => return Ok(None),
            Lookup::Broken { reason } => {
                let record = self.get_action(key).await.ok().flatten();
                return Err(Error::Incomplete {
                    key,
                    tree: record.map(|record| record.output).unwrap_or(key.cast()),
                    reason,
                });
            }
        };
        let blobs = self.reachable_blobs(&record).await?;
        let mut report = SyncReport {
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|(_, size)| size).sum(),
            ..Default::default()
        };
        let stats = self.remote_stats();
        let fetched: Vec<Option<u64>> = futures::stream::iter(blobs)
            .map(|(digest, size)| async move {
                if self.blob_size(digest).await?.is_some() {
                    TransferStats::add(&stats.bytes_present, size);
                    return Ok::<_, Error>(None);
                }
                self.fetch_blob(digest).await?;
                Ok(Some(size))
            })
            .buffer_unordered(BLOB_CONCURRENCY)
            .try_collect()
            .await?;
        for size in fetched.into_iter().flatten() {
            report.transferred_blobs += 1;
            report.transferred_bytes += size;
        }
        Ok(Some(report))
    }

    /// Copies a small document (a run record) to the remote.
    pub async fn push_document(&self, location: &str) -> Result<bool> {
        let remote = self.require_remote()?;
        let Some(bytes) = self.get_raw(location).await? else {
            return Ok(false);
        };
        remote.put_raw(location, bytes, PutMode::Overwrite).await?;
        Ok(true)
    }

    /// Copies a small document (a run record) from the remote; false when it has none.
    pub async fn pull_document(&self, location: &str) -> Result<bool> {
        let remote = self.require_remote()?;
        let Some(bytes) = remote.get_raw(location).await? else {
            return Ok(false);
        };
        self.put_raw(location, Bytes::from(bytes.to_vec()), PutMode::Overwrite)
            .await?;
        Ok(true)
    }
}

/// An exclusive `flock` on `path` (created if needed), taken on a blocking thread: two
/// processes fetching the same blob take turns, and the second finds it installed.
async fn lock_file(path: &Path) -> Result<std::fs::File> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| Error::io(&path, error))?;
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call.
        let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if status != 0 {
            return Err(Error::io(&path, std::io::Error::last_os_error()));
        }
        Ok(file)
    })
    .await
    .expect("locking does not panic")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    use super::*;
    use crate::digest::TreeDigest;
    use crate::encoding;
    use crate::record::KeyComponents;
    use crate::signing::SigningKey;
    use crate::tree::{Tree, TreeEntry};

    const KEY: &str = "action";

    fn record(output: TreeDigest) -> ActionRecord {
        ActionRecord {
            key: ActionKey::of(KEY.as_bytes()),
            output,
            components: KeyComponents {
                schema: 1,
                kind: "exec".into(),
                kind_version: 1,
                params: serde_json::json!({ "command": "echo" }),
                inputs: BTreeMap::new(),
                salt: String::new(),
            },
            node: "node".into(),
            workflow: "signing".into(),
            log: None,
            started_at: 1_700_000_000.0,
            duration_s: 0.5,
            host: "host".into(),
            engine_version: "0.0.0-test".into(),
            input_sources: BTreeMap::new(),
        }
    }

    /// A workspace: a local memory store over the shared bucket, with `key` if any.
    fn workspace(bucket: &Arc<InMemory>, key: Option<&SigningKey>) -> Store {
        let remote = Store::from_object_store(bucket.clone(), "memory://team");
        let store = Store::in_memory().with_remote(remote);
        if let Some(key) = key {
            store.set_signing_key(key.clone());
        }
        store
    }

    /// Stores a one-file tree holding `text` here and records it under the test key.
    async fn record_output(store: &Store, text: &'static str) -> ActionRecord {
        let digest = store
            .put_bytes(Bytes::from_static(text.as_bytes()))
            .await
            .unwrap();
        let mut tree = Tree::new();
        let entry = TreeEntry {
            digest,
            size: text.len() as u64,
            executable: false,
        };
        tree.insert("out.txt", entry).unwrap();
        let record = record(store.put_tree(&tree).await.unwrap());
        store.put_action(&record).await.unwrap();
        record
    }

    async fn lookup(store: &Store) -> Lookup {
        store.lookup(ActionKey::of(KEY.as_bytes())).await.unwrap()
    }

    fn reason(lookup: Lookup) -> String {
        match lookup {
            Lookup::Broken { reason } => reason,
            other => panic!("expected a refused record, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn remote_records_must_carry_the_team_signature() {
        let team = SigningKey::from_bytes([1; 32]);
        let bucket = Arc::new(InMemory::new());

        // A colleague with the team key computes and pushes: a hit for a teammate.
        let colleague = workspace(&bucket, Some(&team));
        let genuine = record_output(&colleague, "genuine\n").await;
        colleague.push_action(genuine.key).await.unwrap();
        match lookup(&workspace(&bucket, Some(&team))).await {
            Lookup::Hit(found) => assert_eq!(*found, genuine),
            other => panic!("a signed record was refused: {other:?}"),
        }

        // A writer without the key replaces it: true components, another complete tree.
        let forger = workspace(&bucket, None);
        let forged = record_output(&forger, "forged\n").await;
        forger.push_action(forged.key).await.unwrap();
        let refused = reason(lookup(&workspace(&bucket, Some(&team))).await);
        assert!(
            refused.contains("is not signed with this team's key"),
            "{refused}"
        );
        assert!(refused.contains(&team.id().to_string()), "{refused}");
        assert!(refused.contains("it is unsigned"), "{refused}");
        assert!(refused.contains("memory://team/ac/"), "{refused}");
        // Without a key nothing is verified: the forged record is served, as before.
        match lookup(&workspace(&bucket, None)).await {
            Lookup::Hit(found) => assert_eq!(found.output, forged.output),
            other => panic!("without a key nothing changes, got {other:?}"),
        }

        // Signed with another team's key.
        let other = SigningKey::from_bytes([2; 32]);
        let outsider = workspace(&bucket, Some(&other));
        record_output(&outsider, "outsider\n").await;
        outsider.push_action(forged.key).await.unwrap();
        let refused = reason(lookup(&workspace(&bucket, Some(&team))).await);
        assert!(
            refused.contains(&format!("it is signed with key `{}`", other.id())),
            "{refused}"
        );

        // The genuine signature moved onto the forged record: the MAC does not match.
        let location = ObjectPath::from(format!("ac/{}", genuine.key.hex()));
        let signed = encoding::encode_signed_record(&genuine, &team);
        let mut bytes = encoding::encode_record(&forged);
        bytes.extend_from_slice(&signed[signed.len() - encoding::SIGNATURE_LEN..]);
        bucket.put(&location, bytes.into()).await.unwrap();
        let refused = reason(lookup(&workspace(&bucket, Some(&team))).await);
        assert!(refused.contains("does not match its contents"), "{refused}");

        // The colleague pushes again: the remote's record is refused, so it is rewritten.
        colleague.push_action(genuine.key).await.unwrap();
        let teammate = workspace(&bucket, Some(&team));
        match lookup(&teammate).await {
            Lookup::Hit(found) => assert_eq!(*found, genuine),
            other => panic!("the healed record was refused: {other:?}"),
        }
        // Records copied here are signed too, and the local store is trusted.
        let here = teammate.get_raw(&format!("ac/{}", genuine.key.hex())).await;
        let stored = encoding::decode_stored_record(&here.unwrap().unwrap()).unwrap();
        assert_eq!(stored.signature.map(|s| s.key_id), Some(team.id()));
    }
}
