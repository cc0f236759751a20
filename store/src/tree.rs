//! Trees: the output of a node, a sorted map from relative file names to blobs.
//!
//! A tree's digest is the blake3 of its canonical encoding: a versioned binary document (see
//! `encoding.rs`) whose entries are sorted by name. The encoding holds no floats, no
//! timestamps and no host-specific data, so the same files give the same digest on any
//! machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{BlobDigest, TreeDigest};
use crate::encoding;
use crate::error::{Error, Result};

/// The encoding version written into every tree: the store schema, in the tree's header.
pub const TREE_FORMAT: u16 = encoding::SCHEMA;

/// One file in a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The blob holding the file's bytes.
    pub digest: BlobDigest,
    /// The file's size in bytes.
    pub size: u64,
    /// Whether the file is executable.
    #[serde(default)]
    pub executable: bool,
}

/// A sorted map of normalized relative names to blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, TreeEntry>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an entry, after checking that the name is normalized.
    pub fn insert(&mut self, name: &str, entry: TreeEntry) -> Result<()> {
        check_name(name)?;
        self.entries.insert(name.to_string(), entry);
        Ok(())
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&TreeEntry> {
        self.entries.get(name)
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TreeEntry)> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree has no files.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.entries.values().map(|entry| entry.size).sum()
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode_tree(&self.entries)
    }

    /// The tree's digest: blake3 of [`Tree::encode`].
    pub fn digest(&self) -> TreeDigest {
        TreeDigest::of(&self.encode())
    }

    /// Parses a canonical encoding, checking every name and that it re-encodes identically.
    pub fn decode(digest: TreeDigest, bytes: &[u8]) -> Result<Self> {
        let malformed = |reason: String| Error::MalformedTree {
            digest,
            location: crate::store::blob_location(&digest.cast()),
            reason,
        };
        let mut entries = BTreeMap::new();
        for (name, entry) in encoding::decode_tree(bytes).map_err(malformed)? {
            check_name(&name).map_err(|error| malformed(error.to_string()))?;
            entries.insert(name, entry);
        }
        // Out-of-order or repeated names, or integers not in their shortest form.
        let tree = Tree { entries };
        if tree.encode() != bytes {
            return Err(malformed("encoding is not canonical".into()));
        }
        Ok(tree)
    }
}

/// Checks that `name` is a normalized relative path with `/` separators.
pub fn check_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty name");
    }
    if name.starts_with('/') {
        return invalid("absolute path");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return invalid("control character or backslash");
    }
    for component in name.split('/') {
        match component {
            "" => return invalid("empty path component"),
            "." | ".." => return invalid("`.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data: &[u8]) -> TreeEntry {
        TreeEntry {
            digest: BlobDigest::of(data),
            size: data.len() as u64,
            executable: false,
        }
    }

    #[test]
    fn digest_ignores_insertion_order() {
        let mut one = Tree::new();
        one.insert("b.txt", entry(b"b")).unwrap();
        one.insert("a/x.txt", entry(b"a")).unwrap();
        let mut two = Tree::new();
        two.insert("a/x.txt", entry(b"a")).unwrap();
        two.insert("b.txt", entry(b"b")).unwrap();
        assert_eq!(one.digest(), two.digest());
        let decoded = Tree::decode(one.digest(), &one.encode()).unwrap();
        assert_eq!(decoded, one);
    }

    #[test]
    fn golden_digest() {
        let mut tree = Tree::new();
        tree.insert("out.txt", entry(b"hello\n")).unwrap();
        // Pinned: changing the tree encoding invalidates every cache; do it on purpose only.
        assert_eq!(
            tree.digest().to_string(),
            "blake3:fdebd5f77bb286d29743480cf9948fc41cfb4435ecd1ba30e37df431ea769125"
        );
    }

    #[test]
    fn rejects_bad_names() {
        for name in ["", "/abs", "a/../b", "./a", "a//b", "a\nb", "a\\b", ".."] {
            assert!(Tree::new().insert(name, entry(b"x")).is_err(), "{name:?}");
        }
    }

    /// A tree encoding by hand: the header, then `entries` in the order given, each name
    /// as bincode writes a string (a one-byte length for short names).
    fn hand_encoded(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut bytes = encoding::DocumentKind::Tree.magic().to_vec();
        bytes.extend_from_slice(&encoding::SCHEMA.to_le_bytes());
        bytes.push(entries.len() as u8);
        for (name, data) in entries {
            bytes.push(name.len() as u8);
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(BlobDigest::of(data).as_bytes());
            bytes.push(data.len() as u8);
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn decode_rejects_non_canonical_and_garbage() {
        let digest = TreeDigest::of(b"x");
        assert!(Tree::decode(digest, b"not json").is_err());
        let in_order = hand_encoded(&[("a", b"a"), ("b", b"b")]);
        let mut tree = Tree::new();
        tree.insert("a", entry(b"a")).unwrap();
        tree.insert("b", entry(b"b")).unwrap();
        assert_eq!(in_order, tree.encode(), "the hand encoding is the real one");
        let swapped = hand_encoded(&[("b", b"b"), ("a", b"a")]);
        assert!(Tree::decode(digest, &swapped).is_err());
        let evil = hand_encoded(&[("../x", b"x")]);
        assert!(Tree::decode(digest, &evil).is_err());
    }

    #[test]
    fn decode_rejects_old_json_and_truncation_with_the_location() {
        let mut tree = Tree::new();
        tree.insert("out.txt", entry(b"hello\n")).unwrap();
        let bytes = tree.encode();
        let digest = TreeDigest::of(&bytes);
        for end in 0..bytes.len() {
            let error = Tree::decode(digest, &bytes[..end]).unwrap_err().to_string();
            assert!(error.contains(&digest.hex()), "{error}");
            assert!(error.contains("cas/"), "{error}");
        }
        let old = br#"{"peirce_tree":1,"entries":{}}"#;
        let error = Tree::decode(digest, old).unwrap_err().to_string();
        assert!(error.contains("older peirce (store schema 1)"), "{error}");
        let mut record = bytes.clone();
        record[..4].copy_from_slice(&encoding::DocumentKind::ActionRecord.magic());
        let error = Tree::decode(digest, &record).unwrap_err().to_string();
        assert!(
            error.contains("is an action record, not a tree encoding"),
            "{error}"
        );
    }
}
