//! Blobs: content-addressed bytes under `cas/`, verified against their digest when read.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::PutMode;

use super::{blob_location, install_file, now_ms, set_mode, write_synced, Store, VerifiedBlobs};
use crate::digest::BlobDigest;
use crate::error::{Error, Result};
use crate::hashing::{hash_file, FileStamp};

impl Store {
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
        let verified = self.inner.verified_stamps();
        // Copy first, hash the copy: the source may still be open for writing, and the bytes
        // we name must be the bytes we keep. The copy keeps a sparse file's holes.
        let (digest, size, installed) =
            tokio::task::spawn_blocking(move || -> Result<(BlobDigest, u64, bool)> {
                copy_sparse(&source, &temp)?;
                let file = fs::File::open(&temp).map_err(|error| Error::io(&temp, error))?;
                file.sync_all().map_err(|error| Error::io(&temp, error))?;
                let (digest, size) = hash_file(&temp)?;
                let installed = install_or_drop(&root, &temp, digest, &verified)?;
                Ok((digest, size, installed))
            })
            .await
            .expect("blob copy task does not panic")?;
        if installed {
            self.mark_verified(digest);
        }
        Ok((digest, size))
    }

    /// Stores a file of a folder that is the caller's and that nothing writes any more (a
    /// node's output folder once the node has finished; `owned_root` is that folder,
    /// canonical). On a local store on the same file system the file is hashed in place and
    /// hard-linked into `cas/`, never copied: publishing takes no second copy's worth of
    /// disk, and a sparse file keeps its holes. A file reached through a symbolic link out
    /// of `owned_root`, one with other hard links, or one on another file system is copied
    /// as by [`Store::put_file`] (docs/architecture.md §4).
    pub async fn put_owned_file(
        &self,
        path: &Path,
        owned_root: &Path,
    ) -> Result<(BlobDigest, u64)> {
        let Some(root) = self.local_root().map(Path::to_path_buf) else {
            return self.put_file(path).await;
        };
        let temp = self.temp_path(&root);
        let source = path.to_path_buf();
        let owned_root = owned_root.to_path_buf();
        let verified = self.inner.verified_stamps();
        let linked = tokio::task::spawn_blocking(move || -> Result<Option<(BlobDigest, u64)>> {
            let Some((digest, size)) = link_and_hash(&source, &owned_root, &temp)? else {
                return Ok(None);
            };
            install_or_drop(&root, &temp, digest, &verified)?;
            Ok(Some((digest, size)))
        })
        .await
        .expect("blob link task does not panic")?;
        // Not marked verified: the blob shares its inode with the output file, so the first
        // read in this process hashes it again and catches a writer that outlived its node.
        match linked {
            Some(found) => Ok(found),
            None => self.put_file(path).await,
        }
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
        self.remember_verified(digest, None);
        Ok(bytes)
    }

    /// Writes a blob to `dest`, verified. Local stores hard-link read-only blob files.
    pub async fn get_to_file(
        &self,
        digest: BlobDigest,
        dest: &Path,
        executable: bool,
    ) -> Result<()> {
        self.get_to_file_stamped(digest, dest, executable)
            .await
            .map(|_| ())
    }

    /// [`Store::get_to_file`], returning the stamp `dest` was verified at and whether `dest`
    /// is a hard link to the store's own `cas/` file (else a private copy).
    ///
    /// A linked file's stamp is the stamp its `cas/` file had when its bytes were last hashed
    /// (now, or earlier in this process if the file has not changed since): a write through
    /// any link after that moves the stamp, which is what [`Store::check_input`] looks for.
    pub(crate) async fn get_to_file_stamped(
        &self,
        digest: BlobDigest,
        dest: &Path,
        executable: bool,
    ) -> Result<(FileStamp, bool)> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|error| Error::io(parent, error))?;
        }
        let stamp_of =
            |path: &Path| FileStamp::of_path(path).map_err(|error| Error::io(path, error));
        if let Some(root) = self.local_root() {
            let source = root.join(blob_location(&digest));
            if !source.exists() {
                if self.inner.remote.is_none() {
                    return Err(Error::MissingBlob(digest));
                }
                // Lazily, from the remote: verified before it is installed.
                self.fetch_blob(digest).await?;
            }
            let mut before = stamp_of(&source)?;
            if self.verified_stamp(&digest) != Some(before) {
                match self.verify_local_blob(digest, &source).await? {
                    Some(stable) => before = stable,
                    None => {
                        // Its metadata kept changing under other processes' links: give
                        // this reader a private copy, verified on its own.
                        return self
                            .private_verified_copy(digest, &source, dest, executable)
                            .await;
                    }
                }
            }
            if executable {
                // Hard links share permissions; executables get their own copy.
                fs::copy(&source, dest).map_err(|error| Error::io(dest, error))?;
                set_mode(dest, 0o555)?;
            } else if fs::hard_link(&source, dest).is_ok() {
                // The link must name the file verified above: one replaced in between (a
                // corrupt blob healed by a publish) gets this reader a private copy instead.
                if stamp_of(dest)?.same_file(&before) {
                    return Ok((before, true));
                }
                let _ = fs::remove_file(dest);
                return self
                    .private_verified_copy(digest, &source, dest, executable)
                    .await;
            } else {
                fs::copy(&source, dest).map_err(|error| Error::io(dest, error))?;
                set_mode(dest, 0o444)?;
            }
            return Ok((stamp_of(dest)?, false));
        }
        let bytes = self.get_bytes(digest).await?;
        fs::write(dest, &bytes).map_err(|error| Error::io(dest, error))?;
        set_mode(dest, if executable { 0o555 } else { 0o444 })?;
        Ok((stamp_of(dest)?, false))
    }

    /// Hashes the local blob file `source`. The stamp it was verified at, remembered, when
    /// its bytes hash to `digest` and its stamp held still across the hash; `None` when the
    /// bytes matched every time but the stamp kept moving. Another process linking the blob
    /// into a node's inputs, or removing a published output's name, changes only the file's
    /// change time: that is retried, never taken for tampering. Bytes that do not match are:
    /// `cas/` files never change, so the blob is quarantined.
    async fn verify_local_blob(
        &self,
        digest: BlobDigest,
        source: &Path,
    ) -> Result<Option<FileStamp>> {
        const ATTEMPTS: usize = 4;
        let stamp_of =
            |path: &Path| FileStamp::of_path(path).map_err(|error| Error::io(path, error));
        for _ in 0..ATTEMPTS {
            let before = stamp_of(source)?;
            let (actual, size) = hash_file(source)?;
            if actual != digest {
                return Err(self.quarantine(digest, actual, size).await);
            }
            if stamp_of(source)? == before {
                self.remember_verified(digest, Some(before));
                return Ok(Some(before));
            }
        }
        Ok(None)
    }

    /// Copies blob file `source` to `dest` and verifies the copy, which is the reader's alone.
    async fn private_verified_copy(
        &self,
        digest: BlobDigest,
        source: &Path,
        dest: &Path,
        executable: bool,
    ) -> Result<(FileStamp, bool)> {
        let _ = fs::remove_file(dest);
        copy_sparse(source, dest)?;
        let (actual, size) = hash_file(dest)?;
        if actual != digest {
            let _ = fs::remove_file(dest);
            return Err(self.quarantine(digest, actual, size).await);
        }
        set_mode(dest, if executable { 0o555 } else { 0o444 })?;
        let stamp = FileStamp::of_path(dest).map_err(|error| Error::io(dest, error))?;
        Ok((stamp, false))
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
}

/// Installs a synced, hashed temp file as blob `digest`, or drops it when the store already
/// has that blob as this process verified it. Returns whether it installed.
fn install_or_drop(
    root: &Path,
    temp: &Path,
    digest: BlobDigest,
    verified: &Mutex<VerifiedBlobs>,
) -> Result<bool> {
    let known = verified
        .lock()
        .expect("verified set lock")
        .get(&digest)
        .copied()
        .flatten();
    let store_path = root.join(blob_location(&digest));
    // An existing blob is kept if this process hashed it and it has not changed since, or
    // if it hashes to its name now (its stamp moves whenever a node's input links it, or
    // an input check sets its mode back). Only a corrupt or missing one is replaced by the
    // verified file (a same-size blob may still be corrupt, docs/architecture.md §5):
    // replacing a sound one would take it from under the nodes that hold it linked as
    // their input, whose check then finds their file gone from the store.
    let current = FileStamp::of_path(&store_path).ok();
    if current.is_some() && current == known {
        let _ = fs::remove_file(temp);
        return Ok(false);
    }
    if let Some(before) = current {
        if let Ok((actual, _)) = hash_file(&store_path) {
            let after = FileStamp::of_path(&store_path).ok();
            if actual == digest && after == Some(before) {
                let _ = fs::remove_file(temp);
                verified
                    .lock()
                    .expect("verified set lock")
                    .insert(digest, Some(before));
                return Ok(false);
            }
        }
    }
    install_file(temp, &store_path)?;
    Ok(true)
}

/// What tells that a file changed: its identity, size, modification and change times.
fn stamp(metadata: &fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    (
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ctime(),
        metadata.ctime_nsec(),
    )
}

/// Hard-links the owned file `source` to `temp` (read-only, synced) and hashes it there.
/// `None`, with nothing left at `temp`, when the file must be copied instead: it lies
/// outside `owned_root` (through a symbolic link), has other names, is on another file
/// system, or changed while it was hashed.
fn link_and_hash(
    source: &Path,
    owned_root: &Path,
    temp: &Path,
) -> Result<Option<(BlobDigest, u64)>> {
    let Ok(real) = fs::canonicalize(source) else {
        return Ok(None);
    };
    let Ok(metadata) = fs::symlink_metadata(&real) else {
        return Ok(None);
    };
    if !real.starts_with(owned_root) || !metadata.is_file() || metadata.nlink() != 1 {
        return Ok(None);
    }
    let file = fs::File::open(&real).map_err(|error| Error::io(&real, error))?;
    // gc judges a blob's age by its modification time, and the node may have written the
    // file long ago: make it young before it enters `tmp/` or `cas/`, so neither sweep
    // takes it before its action record exists (docs/architecture.md §8).
    if file.set_modified(std::time::SystemTime::now()).is_err()
        || fs::hard_link(&real, temp).is_err()
    {
        return Ok(None);
    }
    let hashed = (|| -> Result<Option<(BlobDigest, u64)>> {
        set_mode(temp, 0o444)?;
        let before = fs::metadata(temp).map_err(|error| Error::io(temp, error))?;
        file.sync_all().map_err(|error| Error::io(&real, error))?;
        let (digest, size) = hash_file(temp)?;
        let after = fs::metadata(temp).map_err(|error| Error::io(temp, error))?;
        Ok((stamp(&before) == stamp(&after) && size == after.len()).then_some((digest, size)))
    })();
    if !matches!(hashed, Ok(Some(_))) {
        let _ = fs::remove_file(temp);
    }
    hashed
}

/// Copies `source` to `dest` keeping holes: only the ranges `SEEK_DATA` finds are copied
/// (through `copy_file_range` where the kernel has it), the rest stays unallocated. A file
/// system without `SEEK_DATA` gets a plain copy.
fn copy_sparse(source: &Path, dest: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::io::AsRawFd;

    let input = fs::File::open(source).map_err(|error| Error::io(source, error))?;
    let length = input
        .metadata()
        .map_err(|error| Error::io(source, error))?
        .len();
    let mut output = fs::File::create(dest).map_err(|error| Error::io(dest, error))?;
    output
        .set_len(length)
        .map_err(|error| Error::io(dest, error))?;
    let descriptor = input.as_raw_fd();
    let mut offset: u64 = 0;
    while offset < length {
        // SAFETY: `lseek` on a descriptor this function owns for the call's duration.
        let data = unsafe { libc::lseek(descriptor, offset as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole from `offset` to the end
            }
            if offset == 0 {
                drop(output);
                fs::copy(source, dest).map_err(|error| Error::io(source, error))?;
                return Ok(());
            }
            return Err(Error::io(source, error));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(descriptor, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(Error::io(source, std::io::Error::last_os_error()));
        }
        let (data, hole) = (data as u64, (hole as u64).max(data as u64));
        let mut reader = &input;
        reader
            .seek(SeekFrom::Start(data))
            .map_err(|error| Error::io(source, error))?;
        output
            .seek(SeekFrom::Start(data))
            .map_err(|error| Error::io(dest, error))?;
        let copied = std::io::copy(&mut reader.take(hole - data), &mut output)
            .map_err(|error| Error::io(dest, error))?;
        if copied < hole - data {
            break; // the file shrank while it was copied; what was read is what is kept
        }
        offset = hole;
    }
    Ok(())
}
