//! Typed blake3 digests.
//!
//! A blob digest, a tree digest and an action key are all 32-byte blake3 hashes, but they
//! name different things, so they are different types: mixing them up is a compile error.
//! They share one textual form, `blake3:<64 hex digits>`, used in records, on the command
//! line and in messages.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a digest names. Sealed to the three kinds below.
pub trait DigestKind:
    Copy + Clone + Eq + Ord + Hash + Send + Sync + 'static + private::Sealed
{
    /// A short name used in error messages (`blob`, `tree`, `action key`).
    const NAME: &'static str;
}

mod private {
    pub trait Sealed {}
}

macro_rules! digest_kind {
    ($marker:ident, $name:literal, $alias:ident, $doc:literal) => {
        #[doc = concat!("Marker for ", $name, " digests.")]
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $marker {}
        impl private::Sealed for $marker {}
        impl DigestKind for $marker {
            const NAME: &'static str = $name;
        }
        #[doc = $doc]
        pub type $alias = Digest<$marker>;
    };
}

digest_kind!(
    BlobKind,
    "blob",
    BlobDigest,
    "The digest of a blob's bytes."
);
digest_kind!(
    TreeKind,
    "tree",
    TreeDigest,
    "The digest of a tree's canonical encoding."
);
digest_kind!(
    ActionKind,
    "action key",
    ActionKey,
    "The cache key of one node execution."
);

/// A blake3 digest of a given kind.
pub struct Digest<K: DigestKind> {
    bytes: [u8; 32],
    kind: PhantomData<K>,
}

impl<K: DigestKind> Digest<K> {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes,
            kind: PhantomData,
        }
    }

    /// Hashes `data` in one go.
    pub fn of(data: &[u8]) -> Self {
        Self::from_bytes(*blake3::hash(data).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The 64 lowercase hex digits, without the `blake3:` prefix.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.bytes).to_hex().to_string()
    }

    /// The first 12 hex digits, for compact display.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Reinterprets the digest as another kind. Only for places where the same bytes
    /// legitimately name two things (a tree is stored as a blob of its encoding).
    pub fn cast<L: DigestKind>(self) -> Digest<L> {
        Digest::from_bytes(self.bytes)
    }
}

impl<K: DigestKind> Clone for Digest<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: DigestKind> Copy for Digest<K> {}
impl<K: DigestKind> PartialEq for Digest<K> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<K: DigestKind> Eq for Digest<K> {}
impl<K: DigestKind> PartialOrd for Digest<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: DigestKind> Ord for Digest<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl<K: DigestKind> Hash for Digest<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl<K: DigestKind> fmt::Display for Digest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl<K: DigestKind> fmt::Debug for Digest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(blake3:{})", K::NAME, self.short())
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {kind} digest: expected `blake3:` and 64 hex digits")]
pub struct ParseDigestError {
    /// The text that failed to parse (truncated to 80 characters).
    pub text: String,
    /// The kind of digest that was expected.
    pub kind: &'static str,
}

impl<K: DigestKind> FromStr for Digest<K> {
    type Err = ParseDigestError;

    /// Accepts `blake3:<hex>` or the bare 64 hex digits.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseDigestError {
            text: text.chars().take(80).collect(),
            kind: K::NAME,
        };
        let hex = text.strip_prefix("blake3:").unwrap_or(text);
        if hex.len() != 64 {
            return Err(error());
        }
        let hash = blake3::Hash::from_hex(hex).map_err(|_| error())?;
        Ok(Self::from_bytes(*hash.as_bytes()))
    }
}

impl<K: DigestKind> Serialize for Digest<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, K: DigestKind> Deserialize<'de> for Digest<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let digest = BlobDigest::of(b"hello");
        let text = digest.to_string();
        assert!(text.starts_with("blake3:"));
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text.parse::<BlobDigest>().unwrap(), digest);
        assert_eq!(digest.hex().parse::<BlobDigest>().unwrap(), digest);
    }

    #[test]
    fn known_value() {
        // blake3("") from the reference implementation's test vectors.
        assert_eq!(
            BlobDigest::of(b"").hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "blake3:",
            "blake3:zz",
            "sha256:00",
            &"a".repeat(63),
            &"g".repeat(64),
        ] {
            let error = text.parse::<TreeDigest>().unwrap_err();
            assert!(error.to_string().contains("tree digest"), "{error}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let key = ActionKey::of(b"k");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{key}\""));
        let back: ActionKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, key);
    }
}
