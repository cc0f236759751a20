//! Raw objects: bytes at a layout location, read, written, sized and deleted.
//!
//! Everything else in the store goes through these four; they know nothing of digests.

use std::fs;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{PutMode, PutOptions, PutPayload};

use super::{is_not_found, Store};
use crate::error::{Error, Result};

impl Store {
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

    pub(super) async fn size_raw(&self, location: &str) -> Result<Option<u64>> {
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
}
