//! peirce-store: content-addressed blobs, trees and action records over `object_store`.
//!
//! This crate is the only place that knows the on-store layout:
//!
//! ```text
//! <root>/schema              `peirce-store 2`: the store schema (local stores)
//! <root>/cas/<aa>/<hex>      blobs (file contents, tree encodings, logs), named by blake3
//! <root>/ac/<hex>            action records: an action key -> the output tree and how it was made
//! <root>/out/<hex>           reverse index: an output tree -> the action key that produced it
//! <root>/runs/<id>           run records (opaque JSON written by the engine)
//! <root>/refs/<name>         small mutable pointers (opaque JSON written by the engine)
//! <root>/leases/<hex>        leases on action keys (conditional create, with expiry)
//! <root>/statcache.bin       digests of external input files by stat stamp (local stores)
//! ```
//!
//! Tree encodings, action records, leases and the stat cache are binary documents with a
//! header naming their kind and schema ([`encoding`]); run records and refs stay JSON, for
//! people and scripts. A local store of another schema is refused, untouched.
//!
//! A store is a local folder or an object store URL ([`location`]); a local store may have a
//! second tier, a remote ([`Store::with_remote`]): read-through, write-through, leases on it.
//!
//! Invariants it keeps: every blob read is verified against its digest (a mismatch is an
//! error and the bad object is moved out of `cas/`); an action record is written only after
//! its tree and every blob in it are present, so a visible record never points at missing
//! bytes; writes are idempotent, so any number of runners may share one store.
//!
//! With a team signing key ([`Store::set_signing_key`]), every action record written carries
//! a MAC, and records read from the remote tier must carry a valid one ([`signing`]).
//!
//! It knows nothing of workflows, nodes or machine learning.

pub mod digest;
pub mod encoding;
pub mod error;
pub mod hashing;
mod lease;
pub mod location;
pub mod record;
pub mod signing;
pub mod store;
mod tier;
pub mod transfer;
pub mod tree;

pub use digest::{ActionKey, BlobDigest, Digest, DigestKind, ParseDigestError, TreeDigest};
pub use error::{Error, Result};
pub use hashing::{FileStamp, StatCache};
pub use location::{open as open_store, redact_url, validate as validate_store_location};
pub use record::{ActionRecord, KeyComponents};
pub use signing::{KeyId, SigningKey};
pub use store::{ChangedInput, GcReport, KeyCheck, Lease, Lookup, MaterializedInput, Store};
pub use tier::SyncReport;
pub use transfer::TransferSnapshot;
pub use tree::{Tree, TreeEntry};
