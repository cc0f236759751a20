//! Moving blobs between a local file and an object store: multipart uploads that hash what
//! they send, and ranged, resumable, parallel downloads verified before they are installed.
//!
//! Uploads read the local file once: every chunk goes both to the hasher and to the upload,
//! and a multipart upload is only completed (made visible) when the bytes sent hash to the
//! blob's name; otherwise it is aborted. (On S3 each part also carries its SHA-256, which the
//! server checks: see `location::s3_checksum`.) Downloads go to `tmp/fetch-<hex>` in the local
//! store with a journal of finished ranges beside it, so an interrupted download continues
//! where it stopped; the file is hashed before it is moved to its content address.
//!
//! Counters of requests and bytes ([`TransferStats`]) are kept for progress bars and for the
//! tests that assert what was (not) downloaded.

use std::fs;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use serde::Serialize;

use crate::digest::BlobDigest;
use crate::error::{Error, Result};
use crate::hashing::hash_file;

/// Blobs larger than this go up as multipart uploads and come down in ranges.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The size of one uploaded part.
pub const PART_SIZE: usize = 16 << 20;
/// Parts (or ranges) in flight for one blob.
pub const PART_CONCURRENCY: usize = 8;
/// Parts of one upload in flight (awscli's default is 10 requests).
pub const UPLOAD_CONCURRENCY: usize = 10;
/// The smallest downloaded range.
const MIN_RANGE: u64 = 8 << 20;
/// Most ranges one download is cut into (fewer, larger ranges cost servers that read a whole
/// object per request less, and still keep eight connections busy).
const MAX_RANGES: u64 = 16;

/// Counters of what crossed the wire (monotonic for a store's life).
#[derive(Debug, Default)]
pub struct TransferStats {
    pub(crate) requests: AtomicU64,
    pub(crate) bytes_downloaded: AtomicU64,
    pub(crate) bytes_uploaded: AtomicU64,
    pub(crate) blobs_downloaded: AtomicU64,
    pub(crate) blobs_uploaded: AtomicU64,
    pub(crate) records_fetched: AtomicU64,
    pub(crate) records_pushed: AtomicU64,
    pub(crate) bytes_present: AtomicU64,
}

/// A snapshot of [`TransferStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TransferSnapshot {
    /// Requests to the remote (reads, writes, existence checks, lists).
    pub requests: u64,
    /// Blob bytes received from the remote (tree encodings included).
    pub bytes_downloaded: u64,
    /// Blob bytes sent to the remote.
    pub bytes_uploaded: u64,
    /// Blobs downloaded and verified (tree encodings included).
    pub blobs_downloaded: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Action records copied from the remote.
    pub records_fetched: u64,
    /// Action records written to the remote.
    pub records_pushed: u64,
    /// Bytes of blobs a push or pull found already on the other side (not transferred).
    pub bytes_present: u64,
}

impl TransferSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TransferSnapshot) -> TransferSnapshot {
        TransferSnapshot {
            requests: self.requests - earlier.requests,
            bytes_downloaded: self.bytes_downloaded - earlier.bytes_downloaded,
            bytes_uploaded: self.bytes_uploaded - earlier.bytes_uploaded,
            blobs_downloaded: self.blobs_downloaded - earlier.blobs_downloaded,
            blobs_uploaded: self.blobs_uploaded - earlier.blobs_uploaded,
            records_fetched: self.records_fetched - earlier.records_fetched,
            records_pushed: self.records_pushed - earlier.records_pushed,
            bytes_present: self.bytes_present - earlier.bytes_present,
        }
    }
}

impl TransferStats {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> TransferSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TransferSnapshot {
            requests: get(&self.requests),
            bytes_downloaded: get(&self.bytes_downloaded),
            bytes_uploaded: get(&self.bytes_uploaded),
            blobs_downloaded: get(&self.blobs_downloaded),
            blobs_uploaded: get(&self.blobs_uploaded),
            records_fetched: get(&self.records_fetched),
            records_pushed: get(&self.records_pushed),
            bytes_present: get(&self.bytes_present),
        }
    }
}

fn backend(location: &ObjectPath, error: object_store::Error) -> Error {
    Error::backend(location.as_ref(), error)
}

/// Uploads the local file `path` as `location`, checking on the way that its bytes hash to
/// `digest`. A mismatch aborts the upload (nothing becomes visible) and returns
/// [`Error::Corrupt`]; so does any failure (the multipart upload is aborted).
pub(crate) async fn upload_file(
    object: &dyn ObjectStore,
    location: &ObjectPath,
    path: &Path,
    digest: BlobDigest,
    stats: &TransferStats,
) -> Result<u64> {
    let size = fs::metadata(path)
        .map_err(|error| Error::io(path, error))?
        .len();
    if size <= MULTIPART_THRESHOLD {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|error| Error::io(path, error))?;
        let actual = BlobDigest::of(&bytes);
        if actual != digest {
            return Err(Error::Corrupt {
                digest,
                actual,
                size: bytes.len() as u64,
            });
        }
        let length = bytes.len() as u64;
        TransferStats::add(&stats.requests, 1);
        object
            .put(location, PutPayload::from(bytes))
            .await
            .map_err(|error| backend(location, error))?;
        TransferStats::add(&stats.bytes_uploaded, length);
        return Ok(length);
    }
    TransferStats::add(&stats.requests, 1);
    let upload = object
        .put_multipart(location)
        .await
        .map_err(|error| backend(location, error))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let result = async {
        // Reading and hashing run on the blocking pool, a part at a time, so the runtime's
        // threads stay free to drive the part uploads in flight; parts go out as `Bytes`
        // without another copy.
        let mut file = Some(fs::File::open(path).map_err(|error| Error::io(path, error))?);
        let mut hasher = Some(blake3::Hasher::new());
        let mut sent = 0u64;
        loop {
            let (mut reader, mut state) =
                (file.take().expect("file"), hasher.take().expect("hasher"));
            let owned_path = path.to_path_buf();
            let (part, reader, state) = tokio::task::spawn_blocking(move || {
                let mut buffer = vec![0u8; PART_SIZE];
                let read = read_full(&mut reader, &mut buffer)
                    .map_err(|error| Error::io(&owned_path, error))?;
                buffer.truncate(read);
                state.update(&buffer);
                Ok::<_, Error>((Bytes::from(buffer), reader, state))
            })
            .await
            .expect("part reader does not panic")?;
            file = Some(reader);
            hasher = Some(state);
            if part.is_empty() {
                break;
            }
            writer
                .wait_for_capacity(UPLOAD_CONCURRENCY)
                .await
                .map_err(|error| backend(location, error))?;
            let read = part.len() as u64;
            writer.put(part);
            TransferStats::add(&stats.requests, 1);
            TransferStats::add(&stats.bytes_uploaded, read);
            sent += read;
        }
        let actual = BlobDigest::from_bytes(*hasher.take().expect("hasher").finalize().as_bytes());
        if actual != digest {
            return Err(Error::Corrupt {
                digest,
                actual,
                size: sent,
            });
        }
        Ok(sent)
    }
    .await;
    match result {
        Ok(sent) => {
            TransferStats::add(&stats.requests, 1);
            writer
                .finish()
                .await
                .map_err(|error| backend(location, error))?;
            Ok(sent)
        }
        Err(error) => {
            let _ = writer.abort().await;
            Err(error)
        }
    }
}

fn read_full(file: &mut fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Where a download of `digest` collects its bytes, and its journal of finished ranges.
pub(crate) fn partial_paths(tmp: &Path, digest: &BlobDigest) -> (PathBuf, PathBuf) {
    let hex = digest.hex();
    (
        tmp.join(format!("fetch-{hex}")),
        tmp.join(format!("fetch-{hex}.ranges")),
    )
}

/// The ranges a download of `size` bytes is cut into.
fn ranges(size: u64) -> Vec<Range<u64>> {
    if size == 0 {
        return Vec::new();
    }
    let count = size.div_ceil(MIN_RANGE).clamp(1, MAX_RANGES);
    let length = size.div_ceil(count).div_ceil(1 << 20) << 20;
    (0..count)
        .map(|index| index * length..((index + 1) * length).min(size))
        .filter(|range| !range.is_empty())
        .collect()
}

/// Downloads `location` (`size` bytes, as the remote says) into `partial`, continuing a
/// previous attempt recorded in `journal`. Returns how many bytes this call fetched. The
/// caller verifies the file's hash before using it.
pub(crate) async fn download_to_partial(
    object: &dyn ObjectStore,
    location: &ObjectPath,
    size: u64,
    partial: &Path,
    journal: &Path,
    stats: &TransferStats,
) -> Result<u64> {
    let plan = ranges(size);
    let header = format!("peirce-ranges v1 {size} {}", plan.len());
    let done: Vec<usize> = match fs::read_to_string(journal) {
        Ok(text) if text.lines().next() == Some(header.as_str()) && partial.exists() => text
            .lines()
            .skip(1)
            .filter_map(|line| line.trim().parse().ok())
            .collect(),
        _ => {
            let _ = fs::remove_file(partial);
            fs::write(journal, format!("{header}\n")).map_err(|error| Error::io(journal, error))?;
            Vec::new()
        }
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(partial)
        .map_err(|error| Error::io(partial, error))?;
    file.set_len(size)
        .map_err(|error| Error::io(partial, error))?;
    let journal_file = std::sync::Mutex::new(
        fs::OpenOptions::new()
            .append(true)
            .open(journal)
            .map_err(|error| Error::io(journal, error))?,
    );
    let todo: Vec<(usize, Range<u64>)> = plan
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !done.contains(index))
        .collect();
    let fetched = AtomicU64::new(0);
    futures::stream::iter(todo)
        .map(|(index, range)| {
            let (file, journal_file, fetched) = (&file, &journal_file, &fetched);
            async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(range.clone())),
                    ..Default::default()
                };
                TransferStats::add(&stats.requests, 1);
                let result = object
                    .get_opts(location, options)
                    .await
                    .map_err(|error| backend(location, error))?;
                let mut stream = result.into_stream();
                let mut offset = range.start;
                while let Some(chunk) = stream
                    .try_next()
                    .await
                    .map_err(|error| backend(location, error))?
                {
                    let end = offset + chunk.len() as u64;
                    if end > range.end {
                        return Err(Error::Corrupt {
                            digest: BlobDigest::of(b""),
                            actual: BlobDigest::of(&chunk),
                            size: end,
                        });
                    }
                    file.write_all_at(&chunk, offset)
                        .map_err(|error| Error::io(partial, error))?;
                    offset = end;
                    fetched.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    TransferStats::add(&stats.bytes_downloaded, chunk.len() as u64);
                }
                if offset != range.end {
                    return Err(Error::backend(
                        location.as_ref(),
                        object_store::Error::Generic {
                            store: "peirce",
                            source: format!(
                                "range {}..{} ended early at {offset}",
                                range.start, range.end
                            )
                            .into(),
                        },
                    ));
                }
                let mut journal_file = journal_file.lock().expect("journal lock");
                writeln!(journal_file, "{index}").map_err(|error| Error::io(journal, error))?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(PART_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    file.sync_all().map_err(|error| Error::io(partial, error))?;
    Ok(fetched.into_inner())
}

/// Hashes a finished download (memory-mapped, in parallel).
pub(crate) async fn hash_partial(partial: &Path) -> Result<(BlobDigest, u64)> {
    let partial = partial.to_path_buf();
    tokio::task::spawn_blocking(move || hash_file(&partial))
        .await
        .expect("hashing does not panic")
}

/// A whole small object, counted.
pub(crate) async fn get_small(
    object: &dyn ObjectStore,
    location: &ObjectPath,
    stats: &TransferStats,
) -> Result<Option<Bytes>> {
    TransferStats::add(&stats.requests, 1);
    match object.get(location).await {
        Ok(result) => match result.bytes().await {
            Ok(bytes) => {
                TransferStats::add(&stats.bytes_downloaded, bytes.len() as u64);
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(backend(location, error)),
        },
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(backend(location, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_blob_once() {
        for size in [
            1,
            MIN_RANGE - 1,
            MIN_RANGE,
            100 << 20,
            (1 << 30) + 7,
            5 << 30,
        ] {
            let cut = ranges(size);
            assert!(
                !cut.is_empty() && cut.len() as u64 <= MAX_RANGES,
                "{size}: {cut:?}"
            );
            assert_eq!(cut[0].start, 0);
            assert_eq!(cut.last().unwrap().end, size);
            for pair in cut.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
        }
        assert!(ranges(0).is_empty());
    }
}
