//! The store's one error type.

use std::path::PathBuf;

use crate::digest::{ActionKey, BlobDigest, TreeDigest};

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store. Variants name the object involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A blob's bytes do not hash to its name. The object was moved out of `cas/`.
    #[error(
        "Blob `{digest}` is corrupt: its {size} bytes hash to `{actual}`; moved to quarantine"
    )]
    Corrupt {
        /// The name the blob was stored under.
        digest: BlobDigest,
        /// What the bytes actually hash to.
        actual: BlobDigest,
        /// How many bytes were read.
        size: u64,
    },
    /// A blob that should be present is not.
    #[error("Blob `{0}` is missing from the store")]
    MissingBlob(BlobDigest),
    /// A tree that should be present is not.
    #[error("Tree `{0}` is missing from the store")]
    MissingTree(TreeDigest),
    /// A tree's encoding does not decode (damaged, truncated, or of another schema).
    #[error("Tree `{digest}` at `{location}` is malformed: {reason}")]
    MalformedTree {
        /// The tree.
        digest: TreeDigest,
        /// Where its encoding is stored.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An action record does not decode (damaged, truncated, or of another schema).
    #[error("Action record `{key}` at `{location}` is malformed: {reason}")]
    MalformedRecord {
        /// The key the record is stored under.
        key: ActionKey,
        /// Where it is stored.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An action record read from a remote is not validly signed with the team's key.
    #[error(
        "Action record `{key}` from `{location}` is not signed with this team's key \
         `{team_key}`: {refusal}"
    )]
    UnsignedRecord {
        /// The key the record is stored under.
        key: ActionKey,
        /// Where it is stored.
        location: String,
        /// The id of this team's key.
        team_key: crate::signing::KeyId,
        /// What is wrong: unsigned, another key, or a MAC that does not match.
        refusal: crate::signing::Refusal,
    },
    /// Refusing to publish an action record whose outputs are not all stored.
    #[error(
        "Refusing to record action `{key}`: its output tree `{tree}` is incomplete ({reason})"
    )]
    Incomplete {
        /// The action.
        key: ActionKey,
        /// Its output tree.
        tree: TreeDigest,
        /// What is missing.
        reason: String,
    },
    /// gc found a live action record that exists but cannot be read, and deleted nothing.
    #[error(
        "Garbage collection stopped before deleting anything: the live action record `{key}` \
         at `{location}` cannot be read ({reason}); restore or remove that file, or unpin the \
         run that holds it, then run gc again"
    )]
    UnreadableLiveRecord {
        /// The live key.
        key: ActionKey,
        /// Where its record is stored.
        location: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// A local store of another schema: written by an older or a newer peirce.
    #[error("{}", schema_mismatch(root, *found))]
    SchemaMismatch {
        /// The store's folder.
        root: PathBuf,
        /// The schema it has.
        found: u16,
    },
    /// A local store's schema file does not name a schema.
    #[error("The store schema file `{}` is not understood: it holds `{text}`", path.display())]
    UnknownSchema {
        /// The schema file.
        path: PathBuf,
        /// The start of what it holds.
        text: String,
    },
    /// An action record that should be present is not.
    #[error("No action record `{0}` in the store")]
    MissingRecord(ActionKey),
    /// A name inside a tree is not a normalized relative path.
    #[error("Invalid name `{name}` in a tree: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Something in a folder being stored cannot become a tree entry as it is (a dangling
    /// symbolic link, a name that is not UTF-8). It is the folder's content that is wrong,
    /// not the store: the message says what to change.
    #[error("Cannot store `{}`: {problem}", path.display())]
    Unstorable {
        /// The offending file, link or folder.
        path: PathBuf,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// A local file or folder could not be read or written.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The object store backend failed. object_store's messages quote request URLs, with
    /// whatever user info or query the endpoint has: they are shown redacted (`redact_url`;
    /// the source itself, reached through `Error::source`, is not, so whoever prints a
    /// whole chain redacts it too).
    #[error("Store backend error at `{location}`: {}", crate::location::redact_url(&source.to_string()))]
    Backend {
        /// The object path involved.
        location: String,
        /// The underlying error.
        source: object_store::Error,
    },
    /// A store URL could not be understood. Both fields are redacted (`redact_url`).
    #[error("Unsupported store URL `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A document in the store (JSON, or a binary lease) does not decode.
    #[error("Malformed document `{location}`: {reason}")]
    MalformedDocument {
        /// Where it is stored.
        location: String,
        /// The parser's message.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn backend(location: impl ToString, source: object_store::Error) -> Self {
        Error::Backend {
            location: location.to_string(),
            source,
        }
    }

    /// Whether retrying the same operation may succeed (network hiccups, throttling).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { source, .. } => matches!(
                source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

fn schema_mismatch(root: &std::path::Path, found: u16) -> String {
    let expected = crate::encoding::SCHEMA;
    let root = root.display();
    if found < expected {
        format!(
            "The store `{root}` was written by an older peirce (store schema {found}); this \
             peirce uses store schema {expected} and has left it untouched. Its results cannot \
             be reused (keys and tree digests changed): move the folder away, or delete it, and \
             run again to start a new store there; an older peirce still reads the moved folder"
        )
    } else {
        format!(
            "The store `{root}` was written by a newer peirce (store schema {found}); this \
             peirce uses store schema {expected} and has left it untouched: use a newer peirce, \
             or another store folder"
        )
    }
}
