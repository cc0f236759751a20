//! Documents: small JSON files the engine reads and writes (run records, refs), and listing.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::PutMode;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, Result};

impl Store {
    /// Writes a small JSON document at `location` (under `runs/` or `refs/`).
    pub async fn put_document<T: Serialize>(&self, location: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("documents serialize");
        self.put_raw(location, Bytes::from(bytes), PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// Removes the document at `location` (nothing when absent).
    pub async fn delete_document(&self, location: &str) -> Result<()> {
        self.delete_raw(location).await
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
}
