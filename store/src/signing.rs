//! Signed action records: a team key, and the MAC every record written with it carries.
//!
//! Content addressing makes blobs and trees unforgeable, and key components bind a record to
//! its key, but nothing in an unsigned record proves who computed its output: anyone who can
//! write `ac/` in a shared bucket can put a record with a key's true components and another
//! output tree. With a team key, every record a peirce writes carries a MAC, a keyed blake3
//! over the record's encoded bytes (header and body, everything but the signature itself),
//! and the key's id, so a reader can tell "signed with another key" from "forged". Records
//! read from a remote tier are verified (docs/architecture.md §15); the local store is
//! trusted, as it is written only by this user's runs.
//!
//! This module holds the key and the arithmetic. Where the key comes from (an environment
//! variable) is the binary's business; where signatures sit in a record is `encoding`'s.
//! It does not rotate keys, nor hold more than one.

use std::fmt;

/// The length of a key id: the first bytes of the blake3 of the key.
pub const KEY_ID_LEN: usize = 8;

/// The id of a signing key: the first 8 bytes of the blake3 of the key. It names a key in
/// messages and lets a reader say "signed with another key"; it reveals nothing usable.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// The id from its stored bytes.
    pub const fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        KeyId(bytes)
    }

    /// The stored bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "KeyId({self})")
    }
}

/// A team's 32-byte signing key. Its `Debug` shows only its id: the key itself is never
/// printed, logged or stored.
#[derive(Clone)]
pub struct SigningKey {
    key: [u8; 32],
    id: KeyId,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "SigningKey(id {})", self.id)
    }
}

/// The signature an action record carries: the signing key's id and the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSignature {
    /// Which key signed it.
    pub key_id: KeyId,
    /// blake3 keyed with the key, over the record's encoding without the signature.
    pub mac: [u8; 32],
}

/// Why a record was refused: what [`SigningKey::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The record carries no signature.
    Unsigned,
    /// It is signed with another key, named by its id.
    OtherKey(KeyId),
    /// It names this key, but the MAC does not match its bytes: altered or forged.
    BadMac,
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unsigned => write!(formatter, "it is unsigned"),
            Refusal::OtherKey(other) => write!(formatter, "it is signed with key `{other}`"),
            Refusal::BadMac => write!(
                formatter,
                "its signature does not match its contents (altered or forged)"
            ),
        }
    }
}

impl SigningKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let hash = blake3::hash(&key);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&hash.as_bytes()[..KEY_ID_LEN]);
        SigningKey { key, id: KeyId(id) }
    }

    /// The key from 64 hex digits (surrounding whitespace ignored, either case). `None`
    /// for anything else; the caller's message names where the text came from, never the
    /// text itself.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut key = [0; 32];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
        }
        Some(Self::from_bytes(key))
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The signature of `document`: the bytes of a record without its signature.
    pub fn sign(&self, document: &[u8]) -> RecordSignature {
        RecordSignature {
            key_id: self.id,
            mac: *blake3::keyed_hash(&self.key, document).as_bytes(),
        }
    }

    /// Checks that `signature` is this key's MAC of `document` (in constant time).
    pub fn verify(
        &self,
        document: &[u8],
        signature: Option<&RecordSignature>,
    ) -> Result<(), Refusal> {
        let Some(signature) = signature else {
            return Err(Refusal::Unsigned);
        };
        if signature.key_id != self.id {
            return Err(Refusal::OtherKey(signature.key_id));
        }
        // `blake3::Hash`'s equality is constant-time.
        if blake3::keyed_hash(&self.key, document) != blake3::Hash::from(signature.mac) {
            return Err(Refusal::BadMac);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let key = SigningKey::from_hex(HEX).unwrap();
        let signature = key.sign(b"a record");
        assert_eq!(key.verify(b"a record", Some(&signature)), Ok(()));
        assert_eq!(
            key.verify(b"a record!", Some(&signature)),
            Err(Refusal::BadMac)
        );
        assert_eq!(key.verify(b"a record", None), Err(Refusal::Unsigned));
        let other = SigningKey::from_bytes([7; 32]);
        assert_eq!(
            other.verify(b"a record", Some(&signature)),
            Err(Refusal::OtherKey(key.id()))
        );
        // Another key claiming this key's id still fails on the MAC.
        let mut claimed = other.sign(b"a record");
        claimed.key_id = key.id();
        assert_eq!(
            key.verify(b"a record", Some(&claimed)),
            Err(Refusal::BadMac)
        );
    }

    #[test]
    fn the_mac_is_keyed_blake3_and_the_id_names_the_key() {
        let key = SigningKey::from_bytes([1; 32]);
        assert_eq!(
            key.sign(b"x").mac,
            *blake3::keyed_hash(&[1; 32], b"x").as_bytes()
        );
        assert_eq!(
            key.id().as_bytes()[..],
            blake3::hash(&[1; 32]).as_bytes()[..KEY_ID_LEN]
        );
        assert_eq!(key.id().to_string().len(), 2 * KEY_ID_LEN);
    }

    #[test]
    fn keys_are_64_hex_digits_and_never_shown() {
        let key = SigningKey::from_hex(&format!(" {}\n", HEX.to_uppercase())).unwrap();
        assert_eq!(key.id(), SigningKey::from_hex(HEX).unwrap().id());
        for bad in [
            "",
            "00",
            &HEX[1..],
            &format!("{HEX}0"),
            &HEX.replace('0', "g"),
        ] {
            assert!(SigningKey::from_hex(bad).is_none(), "{bad:?}");
        }
        assert!(SigningKey::from_hex(&format!("{}é", &HEX[..62])).is_none());
        let shown = format!("{key:?}");
        assert!(!shown.contains("0102030405"), "{shown}");
        assert!(shown.contains(&key.id().to_string()), "{shown}");
    }
}
