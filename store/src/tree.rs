//! Trees: the output of a node, a sorted map from relative file names to blobs.
//!
//! A tree's digest is the blake3 of its canonical encoding: compact JSON of a versioned
//! object whose entries are a sorted map. The encoding holds no floats, no timestamps and no
//! host-specific data, so the same files give the same digest on any machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{BlobDigest, TreeDigest};
use crate::error::{Error, Result};

/// The encoding version written into every tree.
pub const TREE_FORMAT: u32 = 1;

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

#[derive(Serialize, Deserialize)]
struct Encoded {
    peirce_tree: u32,
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
        let encoded = Encoded {
            peirce_tree: TREE_FORMAT,
            entries: self.entries.clone(),
        };
        serde_json::to_vec(&encoded).expect("a tree always serializes")
    }

    /// The tree's digest: blake3 of [`Tree::encode`].
    pub fn digest(&self) -> TreeDigest {
        TreeDigest::of(&self.encode())
    }

    /// Parses a canonical encoding, checking every name and that it re-encodes identically.
    pub fn decode(digest: TreeDigest, bytes: &[u8]) -> Result<Self> {
        let malformed = |reason: String| Error::MalformedTree { digest, reason };
        let encoded: Encoded =
            serde_json::from_slice(bytes).map_err(|error| malformed(error.to_string()))?;
        if encoded.peirce_tree != TREE_FORMAT {
            return Err(malformed(format!(
                "unknown tree format {}",
                encoded.peirce_tree
            )));
        }
        for name in encoded.entries.keys() {
            check_name(name).map_err(|error| malformed(error.to_string()))?;
        }
        let tree = Tree {
            entries: encoded.entries,
        };
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
            "blake3:c4a6911556d45c78aa51f48e65c6163362f6b827dbfb220aab3c22bb04de61b2"
        );
    }

    #[test]
    fn rejects_bad_names() {
        for name in ["", "/abs", "a/../b", "./a", "a//b", "a\nb", "a\\b", ".."] {
            assert!(Tree::new().insert(name, entry(b"x")).is_err(), "{name:?}");
        }
    }

    #[test]
    fn decode_rejects_non_canonical_and_garbage() {
        let digest = TreeDigest::of(b"x");
        assert!(Tree::decode(digest, b"not json").is_err());
        let spaced = br#"{ "peirce_tree": 1, "entries": {} }"#;
        assert!(Tree::decode(digest, spaced).is_err());
        let evil = format!(
            r#"{{"peirce_tree":1,"entries":{{"../x":{{"digest":"{}","size":1,"executable":false}}}}}}"#,
            BlobDigest::of(b"x")
        );
        assert!(Tree::decode(digest, evil.as_bytes()).is_err());
    }
}
