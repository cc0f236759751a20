//! Leases on action keys: a runner takes one before executing a key, heartbeats it while it
//! works, and releases it after publishing; others wait for the result, or take over a lease
//! that expired (its holder died). Creation is a conditional create (`PutMode::Create`: an
//! exclusive file create locally, `If-None-Match: *` on S3), so exactly one racer wins. With a
//! remote tier, leases live on the remote, where runners on other machines see them.
//!
//! Leases only save work: without them results are still correct (writes are idempotent).

use std::time::Duration;

use bytes::Bytes;
use object_store::PutMode;

use crate::digest::{ActionKey, BlobDigest};
use crate::encoding;
use crate::error::{Error, Result};
use crate::store::{now_ms, Lease, Store};

impl Store {
    /// Tries to take the lease on `key` for `ttl`. An expired lease is taken over.
    pub async fn try_lease(
        &self,
        key: ActionKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        if let Some(remote) = self.remote() {
            // Leases coordinate runners on other machines: they live where results are shared.
            return Box::pin(remote.try_lease(key, owner, ttl)).await;
        }
        let location = format!("leases/{}", key.hex());
        let lease = Lease {
            key,
            owner: owner.to_string(),
            expires_at_ms: now_ms() + ttl.as_millis() as u64,
        };
        let bytes = Bytes::from(encoding::encode_lease(&lease));
        if self
            .put_raw(&location, bytes.clone(), PutMode::Create)
            .await?
        {
            return Ok(Some(lease));
        }
        let current: Option<Lease> = match self.read_lease(&location).await {
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
        if let Some(remote) = self.remote() {
            return Box::pin(remote.renew_lease(lease, ttl)).await;
        }
        let location = format!("leases/{}", lease.key.hex());
        let current: Option<Lease> = self.read_lease(&location).await.unwrap_or(None);
        if current
            .as_ref()
            .map(|c| c.owner != lease.owner)
            .unwrap_or(true)
        {
            return Ok(false);
        }
        lease.expires_at_ms = now_ms() + ttl.as_millis() as u64;
        let bytes = Bytes::from(encoding::encode_lease(lease));
        self.put_raw(&location, bytes, PutMode::Overwrite).await?;
        Ok(true)
    }

    /// Releases a lease we hold (no-op when it is not ours any more).
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        if let Some(remote) = self.remote() {
            return Box::pin(remote.release_lease(lease)).await;
        }
        let location = format!("leases/{}", lease.key.hex());
        let current: Option<Lease> = self.read_lease(&location).await.unwrap_or(None);
        if current.map(|c| c.owner == lease.owner).unwrap_or(false) {
            self.delete_raw(&location).await?;
        }
        Ok(())
    }

    /// Removes the lease on `key` if `owner` still holds it: for a holder known to be dead
    /// (a killed process on this host) whose lease has not expired yet.
    pub async fn break_lease(&self, key: ActionKey, owner: &str) -> Result<()> {
        if let Some(remote) = self.remote() {
            return Box::pin(remote.break_lease(key, owner)).await;
        }
        let location = format!("leases/{}", key.hex());
        let current: Option<Lease> = self.read_lease(&location).await.unwrap_or(None);
        if current.map(|c| c.owner == owner).unwrap_or(false) {
            self.delete_raw(&location).await?;
        }
        Ok(())
    }

    /// The current holder of the lease on `key`, if any and not expired.
    pub async fn lease_holder(&self, key: ActionKey) -> Result<Option<Lease>> {
        if let Some(remote) = self.remote() {
            return Box::pin(remote.lease_holder(key)).await;
        }
        let current: Option<Lease> = self
            .read_lease(&format!("leases/{}", key.hex()))
            .await
            .unwrap_or(None);
        Ok(current.filter(|lease| lease.expires_at_ms > now_ms()))
    }

    /// The lease stored at `location`, `None` when absent; one that does not decode is a
    /// [`Error::MalformedDocument`].
    async fn read_lease(&self, location: &str) -> Result<Option<Lease>> {
        let Some(bytes) = self.get_raw(location).await? else {
            return Ok(None);
        };
        encoding::decode_lease(&bytes)
            .map(Some)
            .map_err(|reason| Error::MalformedDocument {
                location: self.describe_location(location),
                reason,
            })
    }
}
