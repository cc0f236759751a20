//! Garbage collection: what no live action record reaches goes, after a grace period.
//!
//! gc fails closed. Every live root is read before anything is deleted, and a live record
//! that exists but cannot be read (or whose tree cannot be read) stops gc with an error
//! naming it: what such a record reaches is unknown, so nothing may be called unreachable. A
//! live key whose record is absent is skipped: it reaches nothing that could be kept.

use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::{blob_location, Store};
use crate::digest::{ActionKey, BlobDigest};
use crate::error::{Error, Result};
use crate::record::ActionRecord;

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

impl Store {
    /// Deletes every action record not in `live` and every blob no live record reaches,
    /// sparing anything younger than `grace` (a concurrent run's fresh results).
    pub async fn gc(&self, live: &[ActionKey], grace: Duration, dry_run: bool) -> Result<GcReport> {
        self.gc_keeping(live, &[], grace, dry_run).await
    }

    /// [`Store::gc`] that also keeps the blobs `kept`, which no record names (the logs of
    /// failed nodes, named by run records only).
    pub async fn gc_keeping(
        &self,
        live: &[ActionKey],
        kept: &[BlobDigest],
        grace: Duration,
        dry_run: bool,
    ) -> Result<GcReport> {
        let mut report = GcReport::default();
        let mut live_blobs: std::collections::HashSet<BlobDigest> = kept.iter().copied().collect();
        let live_keys: std::collections::HashSet<ActionKey> = live.iter().copied().collect();
        for key in live {
            let unreadable = |reason: String| Error::UnreadableLiveRecord {
                key: *key,
                location: self.describe_location(&format!("ac/{}", key.hex())),
                reason,
            };
            let record = match self.get_action(*key).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(error) => return Err(unreadable(error.to_string())),
            };
            report.live_actions += 1;
            self.add_reachable(&record, &mut live_blobs)
                .await
                .map_err(|error| unreadable(format!("its output tree cannot be read: {error}")))?;
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
                // A dead record cannot be a hit while unreadable: sparing it is enough.
                if let Ok(Some(record)) = self.get_action(key).await {
                    let _ = self.add_reachable(&record, &mut young_blobs).await;
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
    /// A missing tree reaches nothing; a tree that is present but cannot be read is an error.
    async fn add_reachable(
        &self,
        record: &ActionRecord,
        blobs: &mut std::collections::HashSet<BlobDigest>,
    ) -> Result<()> {
        blobs.insert(record.output.cast());
        if let Some(log) = record.log {
            blobs.insert(log);
        }
        match self.get_tree(record.output).await {
            Ok(tree) => blobs.extend(tree.iter().map(|(_, entry)| entry.digest)),
            Err(Error::MissingTree(_)) => {}
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Removes abandoned temporary files of local stores (killed writers) older than `grace`:
    /// everything in `tmp/` and `quarantine/`, and the staging files object_store's local
    /// backend writes beside a name while putting it (`<name>#<n>`, never a store name: keys,
    /// digests and ref names have no `#`) in the folders written through it.
    fn sweep_temporaries(&self, grace: Duration) -> Result<()> {
        let Some(root) = self.local_root() else {
            return Ok(());
        };
        let old = |item: &fs::DirEntry| {
            item.metadata()
                .and_then(|m| m.modified())
                .map(|modified| modified.elapsed().unwrap_or_default() >= grace)
                .unwrap_or(false)
        };
        for dir in ["tmp", "quarantine", "ac", "out", "refs", "runs", "leases"] {
            let whole = matches!(dir, "tmp" | "quarantine");
            let Ok(reader) = fs::read_dir(root.join(dir)) else {
                continue;
            };
            for item in reader.flatten() {
                let staging = item.file_name().to_string_lossy().contains('#');
                if (whole || staging) && old(&item) {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        Ok(())
    }
}
