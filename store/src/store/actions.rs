//! Action records under `ac/`: the action cache, and the reverse index under `out/`.

use bytes::Bytes;
use object_store::PutMode;

use super::Store;
use crate::digest::{ActionKey, TreeDigest};
use crate::encoding;
use crate::error::{Error, Result};
use crate::record::ActionRecord;

impl Store {
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
        // With a team key, every record written is signed (docs/architecture.md §15).
        let bytes = match self.inner().signing.get() {
            Some(signing) => encoding::encode_signed_record(record, &signing.key),
            None => encoding::encode_record(record),
        };
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
        let malformed = |reason: String| Error::MalformedRecord {
            key,
            location: self.describe_location(&location),
            reason,
        };
        let stored = encoding::decode_stored_record(&bytes).map_err(malformed)?;
        let record = stored.record;
        if record.key != key {
            return Err(malformed(format!("it names key `{}`", record.key)));
        }
        // A record is bound to its key: its components must hash to the key it is stored
        // under, so a record copied from another action is refused (docs/architecture.md §15).
        if let Some(check) = self.inner().key_check.get() {
            check(key, &record.components).map_err(malformed)?;
        }
        // A remote tier's records must carry the team's signature: anyone who can write its
        // `ac/` could otherwise serve another output under a key's true components (§15).
        if let Some(signing) = self.inner().signing.get().filter(|signing| signing.verify) {
            let signed = &bytes[..stored.signed_len];
            if let Err(refusal) = signing.key.verify(signed, stored.signature.as_ref()) {
                return Err(Error::UnsignedRecord {
                    key,
                    location: self.describe_location(&location),
                    team_key: signing.key.id(),
                    refusal,
                });
            }
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
            Err(error @ (Error::MalformedRecord { .. } | Error::UnsignedRecord { .. })) => {
                return Ok(Lookup::Broken {
                    reason: error.to_string(),
                })
            }
            Err(error) => return Err(error),
        };
        if let Err(reason) = self.check_tree(record.output).await? {
            return Ok(Lookup::Broken { reason });
        }
        // The log too, as `put_action` requires and the remote lookup checks: a log
        // quarantined as corrupt would otherwise leave a hit naming a missing blob for good
        // (docs/architecture.md §4, §5; found by tests/faults.rs).
        if let Some(log) = record.log {
            if self.available_size(log).await?.is_none() {
                return Ok(Lookup::Broken {
                    reason: format!("log blob `{log}` is missing"),
                });
            }
        }
        Ok(Lookup::Hit(Box::new(record)))
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
