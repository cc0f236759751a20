//! The binary encoding of the store's own documents: tree encodings, action records, leases
//! and the stat cache.
//!
//! Each document is a six-byte header, four bytes of magic naming the kind of document and
//! the store schema as a little-endian `u16`, followed by the document in bincode 2 (standard
//! configuration: variable-length integers, little endian). Decoding is bounded: a length
//! prefix larger than the kind's limit is an error, never an allocation, and bytes left over
//! after the document are an error too. The header makes a foreign file, a document of
//! another kind and a document of another schema (such as the JSON an older peirce wrote)
//! fail with a message that says which, instead of a parser's complaint.
//!
//! What gets encoded are the `*Wire` structs here, not the public types: the public types keep
//! their serde form for JSON (`--json` output, `peirce show`), where digests are text, while
//! the wire form holds digests as raw 32 bytes. Changing a wire struct changes the schema:
//! bump [`SCHEMA`] with it (tree digests, and so action keys, change with the tree's bytes).
//! An action record may end with a signature trailer (`PCSG`, the key id, a keyed blake3 of
//! the bytes before it; see [`encode_signed_record`] and `signing.rs`): an unsigned record is
//! the same document without it.
//! Run records and refs stay JSON documents (see `store/documents.rs`): people and scripts
//! read them. The layout is described in `docs/architecture.md`.

use std::collections::BTreeMap;

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::{ActionKey, BlobDigest, Digest, DigestKind, TreeDigest};
use crate::record::{ActionRecord, KeyComponents};
use crate::signing::{KeyId, RecordSignature, SigningKey, KEY_ID_LEN};
use crate::tree::TreeEntry;

/// The store schema this build reads and writes. Schema 1 was JSON throughout, without a
/// header; schema 2 is the binary encoding of this module.
pub const SCHEMA: u16 = 2;

/// The length of the header: magic, then the schema.
pub const HEADER_LEN: usize = 6;

/// The kinds of binary document, each with its magic and its decoding limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A tree's canonical encoding (its blake3 is the tree digest).
    Tree,
    /// An action record under `ac/`.
    ActionRecord,
    /// A lease under `leases/`.
    Lease,
    /// The stat cache of external inputs.
    StatCache,
}

impl DocumentKind {
    /// The four bytes every document of this kind starts with.
    pub const fn magic(self) -> [u8; 4] {
        match self {
            DocumentKind::Tree => *b"PCTR",
            DocumentKind::ActionRecord => *b"PCAR",
            DocumentKind::Lease => *b"PCLS",
            DocumentKind::StatCache => *b"PCSC",
        }
    }

    /// The name used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            DocumentKind::Tree => "tree encoding",
            DocumentKind::ActionRecord => "action record",
            DocumentKind::Lease => "lease",
            DocumentKind::StatCache => "stat cache",
        }
    }

    fn a_name(self) -> String {
        let article = if self.name().starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {}", self.name())
    }

    fn from_magic(magic: &[u8]) -> Option<Self> {
        [
            DocumentKind::Tree,
            DocumentKind::ActionRecord,
            DocumentKind::Lease,
            DocumentKind::StatCache,
        ]
        .into_iter()
        .find(|kind| kind.magic() == magic)
    }
}

/// Trees of a million files fit; a length prefix past this is damage, not data.
const TREE_LIMIT: usize = 256 << 20;
/// Records hold a node's parameters, which may be long lists, but not megabytes.
const RECORD_LIMIT: usize = 16 << 20;
const LEASE_LIMIT: usize = 64 << 10;
const STAT_CACHE_LIMIT: usize = 1 << 30;

fn config<const LIMIT: usize>() -> Configuration<LittleEndian, Varint, Limit<LIMIT>> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Header and body of a document.
fn encode<T: Serialize>(kind: DocumentKind, value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.extend_from_slice(&kind.magic());
    bytes.extend_from_slice(&SCHEMA.to_le_bytes());
    // The limit applies to decoding only; encoding our own structs cannot fail.
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("store documents always encode");
    bytes.extend_from_slice(&body);
    bytes
}

/// Checks the header, then decodes the body within `LIMIT` bytes of allocations, using all of
/// it. The error is a reason, for the caller to wrap with the document's name.
fn decode<T: DeserializeOwned, const LIMIT: usize>(
    kind: DocumentKind,
    bytes: &[u8],
) -> Result<T, String> {
    let (value, rest) = decode_prefix::<T, LIMIT>(kind, bytes)?;
    if !rest.is_empty() {
        return Err(left_over(kind, rest.len()));
    }
    Ok(value)
}

/// [`decode`], returning the bytes after the document instead of refusing them.
fn decode_prefix<T: DeserializeOwned, const LIMIT: usize>(
    kind: DocumentKind,
    bytes: &[u8],
) -> Result<(T, &[u8]), String> {
    check_header(kind, bytes)?;
    let body = &bytes[HEADER_LEN..];
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(body, config::<LIMIT>())
        .map_err(|error| format!("cannot decode the {}: {error}", kind.name()))?;
    Ok((value, &body[read..]))
}

fn left_over(kind: DocumentKind, count: usize) -> String {
    format!("{count} bytes left over after the {}", kind.name())
}

fn check_header(kind: DocumentKind, bytes: &[u8]) -> Result<(), String> {
    if bytes.first().is_some_and(|first| *first == b'{') {
        return Err(format!(
            "it is JSON, as written by an older peirce (store schema 1); this peirce reads \
             store schema {SCHEMA}"
        ));
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is too short for {} (truncated?)",
            bytes.len(),
            kind.a_name()
        ));
    }
    let magic = &bytes[..4];
    if magic != kind.magic() {
        return Err(match DocumentKind::from_magic(magic) {
            Some(other) => format!("it is {}, not {}", other.a_name(), kind.a_name()),
            None => format!("it is not a peirce {} (unknown magic)", kind.name()),
        });
    }
    let schema = u16::from_le_bytes([bytes[4], bytes[5]]);
    if schema != SCHEMA {
        let age = if schema > SCHEMA {
            "a newer"
        } else {
            "an older"
        };
        return Err(format!(
            "it was written by {age} peirce (store schema {schema}); this peirce reads store \
             schema {SCHEMA}"
        ));
    }
    Ok(())
}

fn raw<K: DigestKind>(digest: &Digest<K>) -> [u8; 32] {
    *digest.as_bytes()
}

// ---------------------------------------------------------------- trees

#[derive(Serialize, Deserialize)]
struct TreeEntryWire {
    digest: [u8; 32],
    size: u64,
    executable: bool,
}

/// The canonical encoding of a tree's entries (sorted by name: a `BTreeMap`).
pub(crate) fn encode_tree(entries: &BTreeMap<String, TreeEntry>) -> Vec<u8> {
    let wire: Vec<(&str, TreeEntryWire)> = entries
        .iter()
        .map(|(name, entry)| {
            (
                name.as_str(),
                TreeEntryWire {
                    digest: raw(&entry.digest),
                    size: entry.size,
                    executable: entry.executable,
                },
            )
        })
        .collect();
    encode(DocumentKind::Tree, &wire)
}

/// A tree's entries in encoded order. The caller checks names and canonical order (by
/// re-encoding).
pub(crate) fn decode_tree(bytes: &[u8]) -> Result<Vec<(String, TreeEntry)>, String> {
    let wire: Vec<(String, TreeEntryWire)> = decode::<_, TREE_LIMIT>(DocumentKind::Tree, bytes)?;
    Ok(wire
        .into_iter()
        .map(|(name, entry)| {
            (
                name,
                TreeEntry {
                    digest: BlobDigest::from_bytes(entry.digest),
                    size: entry.size,
                    executable: entry.executable,
                },
            )
        })
        .collect())
}

// ---------------------------------------------------------------- action records

#[derive(Serialize, Deserialize)]
struct ActionRecordWire {
    key: [u8; 32],
    output: [u8; 32],
    schema: u32,
    kind: String,
    kind_version: u32,
    /// The parameters as compact JSON text: they are a JSON value, which bincode (a format
    /// without self-description) cannot hold as such.
    params: String,
    inputs: Vec<(String, [u8; 32])>,
    salt: String,
    node: String,
    workflow: String,
    log: Option<[u8; 32]>,
    started_at: f64,
    duration_s: f64,
    host: String,
    engine_version: String,
    input_sources: Vec<(String, String)>,
}

/// The stored form of an action record.
pub fn encode_record(record: &ActionRecord) -> Vec<u8> {
    let components = &record.components;
    let wire = ActionRecordWire {
        key: raw(&record.key),
        output: raw(&record.output),
        schema: components.schema,
        kind: components.kind.clone(),
        kind_version: components.kind_version,
        params: components.params.to_string(),
        inputs: components
            .inputs
            .iter()
            .map(|(name, digest)| (name.clone(), raw(digest)))
            .collect(),
        salt: components.salt.clone(),
        node: record.node.clone(),
        workflow: record.workflow.clone(),
        log: record.log.as_ref().map(raw),
        started_at: record.started_at,
        duration_s: record.duration_s,
        host: record.host.clone(),
        engine_version: record.engine_version.clone(),
        input_sources: record
            .input_sources
            .iter()
            .map(|(name, source)| (name.clone(), source.clone()))
            .collect(),
    };
    encode(DocumentKind::ActionRecord, &wire)
}

/// The magic that starts a record's signature trailer.
const SIGNATURE_MAGIC: [u8; 4] = *b"PCSG";

/// The length of a signature trailer: magic, key id, MAC.
pub const SIGNATURE_LEN: usize = 4 + KEY_ID_LEN + 32;

/// The stored form of an action record signed with `key`: [`encode_record`]'s bytes, then a
/// trailer of [`SIGNATURE_LEN`] bytes (`PCSG`, the key's id, the keyed blake3 of everything
/// before the trailer). An unsigned record is the same bytes without the trailer, so signing
/// adds to the schema-2 record without changing it, and the signed bytes are exactly what
/// an unsigned reader decodes.
pub fn encode_signed_record(record: &ActionRecord, key: &SigningKey) -> Vec<u8> {
    let mut bytes = encode_record(record);
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&SIGNATURE_MAGIC);
    bytes.extend_from_slice(signature.key_id.as_bytes());
    bytes.extend_from_slice(&signature.mac);
    bytes
}

/// A decoded action record with its signature, if it carries one.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The record.
    pub record: ActionRecord,
    /// Its signature trailer, if any.
    pub signature: Option<RecordSignature>,
    /// How many leading bytes of the stored form the signature covers (all but the trailer).
    pub signed_len: usize,
}

/// Decodes a stored action record (the caller checks it names the key it is stored under),
/// ignoring its signature.
pub fn decode_record(bytes: &[u8]) -> Result<ActionRecord, String> {
    decode_stored_record(bytes).map(|stored| stored.record)
}

/// Decodes a stored action record and its signature trailer, if any (unverified: see
/// [`SigningKey::verify`]). The record's own encoding says where it ends, so a trailer is
/// never mistaken for part of the record; anything after the record that is not one whole
/// trailer is an error.
pub fn decode_stored_record(bytes: &[u8]) -> Result<StoredRecord, String> {
    let kind = DocumentKind::ActionRecord;
    let (wire, rest): (ActionRecordWire, _) = decode_prefix::<_, RECORD_LIMIT>(kind, bytes)?;
    let signed_len = bytes.len() - rest.len();
    let signature = match rest {
        [] => None,
        _ if rest.len() == SIGNATURE_LEN && rest[..4] == SIGNATURE_MAGIC => {
            let mut key_id = [0; KEY_ID_LEN];
            key_id.copy_from_slice(&rest[4..4 + KEY_ID_LEN]);
            let mut mac = [0; 32];
            mac.copy_from_slice(&rest[4 + KEY_ID_LEN..]);
            Some(RecordSignature {
                key_id: KeyId::from_bytes(key_id),
                mac,
            })
        }
        _ => return Err(left_over(kind, rest.len())),
    };
    Ok(StoredRecord {
        record: record_from_wire(wire)?,
        signature,
        signed_len,
    })
}

fn record_from_wire(wire: ActionRecordWire) -> Result<ActionRecord, String> {
    let params = serde_json::from_str(&wire.params)
        .map_err(|error| format!("its parameters are not JSON: {error}"))?;
    Ok(ActionRecord {
        key: ActionKey::from_bytes(wire.key),
        output: TreeDigest::from_bytes(wire.output),
        components: KeyComponents {
            schema: wire.schema,
            kind: wire.kind,
            kind_version: wire.kind_version,
            params,
            inputs: wire
                .inputs
                .into_iter()
                .map(|(name, digest)| (name, TreeDigest::from_bytes(digest)))
                .collect(),
            salt: wire.salt,
        },
        node: wire.node,
        workflow: wire.workflow,
        log: wire.log.map(BlobDigest::from_bytes),
        started_at: wire.started_at,
        duration_s: wire.duration_s,
        host: wire.host,
        engine_version: wire.engine_version,
        input_sources: wire.input_sources.into_iter().collect(),
    })
}

// ---------------------------------------------------------------- leases

#[derive(Serialize, Deserialize)]
struct LeaseWire {
    key: [u8; 32],
    owner: String,
    expires_at_ms: u64,
}

pub(crate) fn encode_lease(lease: &crate::store::Lease) -> Vec<u8> {
    let wire = LeaseWire {
        key: raw(&lease.key),
        owner: lease.owner.clone(),
        expires_at_ms: lease.expires_at_ms,
    };
    encode(DocumentKind::Lease, &wire)
}

pub(crate) fn decode_lease(bytes: &[u8]) -> Result<crate::store::Lease, String> {
    let wire: LeaseWire = decode::<_, LEASE_LIMIT>(DocumentKind::Lease, bytes)?;
    Ok(crate::store::Lease {
        key: ActionKey::from_bytes(wire.key),
        owner: wire.owner,
        expires_at_ms: wire.expires_at_ms,
    })
}

// ---------------------------------------------------------------- the stat cache

/// Encodes any serde value as a stat cache document (its types are private to `hashing`).
pub(crate) fn encode_stat_cache<T: Serialize>(value: &T) -> Vec<u8> {
    encode(DocumentKind::StatCache, value)
}

pub(crate) fn decode_stat_cache<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode::<_, STAT_CACHE_LIMIT>(DocumentKind::StatCache, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lease;

    fn sample_record() -> ActionRecord {
        ActionRecord {
            key: ActionKey::of(b"key"),
            output: TreeDigest::of(b"tree"),
            components: KeyComponents {
                schema: 2,
                kind: "exec".into(),
                kind_version: 3,
                params: serde_json::json!({
                    "command": "echo {inputs.a} > out/x",
                    "env": { "LC_ALL": "C" },
                    "lr": 0.1,
                    "levels": [1, 2, 3],
                    "nothing": null
                }),
                inputs: BTreeMap::from([("a".into(), TreeDigest::of(b"input"))]),
                salt: "v2".into(),
            },
            node: "train".into(),
            workflow: "meta-align".into(),
            log: Some(BlobDigest::of(b"log")),
            started_at: 1_780_000_000.123_456,
            duration_s: 0.1 + 0.2,
            host: "box".into(),
            engine_version: "0.1.0".into(),
            input_sources: BTreeMap::from([("a".into(), "node:gen".into())]),
        }
    }

    #[test]
    fn records_round_trip_and_their_json_is_unchanged() {
        let record = sample_record();
        let bytes = encode_record(&record);
        assert_eq!(&bytes[..4], b"PCAR");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), SCHEMA);
        let back = decode_record(&bytes).unwrap();
        assert_eq!(back, record);
        assert_eq!(
            serde_json::to_string_pretty(&back).unwrap(),
            serde_json::to_string_pretty(&record).unwrap(),
            "what `--json` shows is what was stored"
        );
        assert!(
            bytes.len() < serde_json::to_vec_pretty(&record).unwrap().len() / 2,
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn a_signed_record_carries_its_signature_after_the_unsigned_bytes() {
        let record = sample_record();
        let key = SigningKey::from_bytes([3; 32]);
        let unsigned = encode_record(&record);
        let signed = encode_signed_record(&record, &key);
        assert_eq!(signed.len(), unsigned.len() + SIGNATURE_LEN);
        assert_eq!(&signed[..unsigned.len()], &unsigned[..]);
        let stored = decode_stored_record(&signed).unwrap();
        assert_eq!(stored.record, record);
        assert_eq!(stored.signed_len, unsigned.len());
        let signature = stored.signature.expect("a signature");
        assert_eq!(
            key.verify(&signed[..stored.signed_len], Some(&signature)),
            Ok(())
        );
        assert_eq!(decode_record(&signed).unwrap(), record);

        let plain = decode_stored_record(&unsigned).unwrap();
        assert_eq!(plain.signature, None);
        assert_eq!(plain.signed_len, unsigned.len());

        // Another output under the same signature: the MAC no longer matches.
        let mut forged = record.clone();
        forged.output = TreeDigest::of(b"another tree");
        let mut bytes = encode_record(&forged);
        bytes.extend_from_slice(&signed[unsigned.len()..]);
        let stored = decode_stored_record(&bytes).unwrap();
        assert_eq!(
            key.verify(&bytes[..stored.signed_len], stored.signature.as_ref()),
            Err(crate::signing::Refusal::BadMac)
        );
        // A damaged trailer is malformed, never a signature.
        for end in unsigned.len() + 1..signed.len() {
            let error = decode_stored_record(&signed[..end]).unwrap_err();
            assert!(error.contains("bytes left over"), "cut at {end}: {error}");
        }
        let mut wrong_magic = signed.clone();
        wrong_magic[unsigned.len()] = b'X';
        assert!(decode_stored_record(&wrong_magic).is_err());
    }

    #[test]
    fn leases_round_trip() {
        let lease = Lease {
            key: ActionKey::of(b"k"),
            owner: "host:1:abc".into(),
            expires_at_ms: 1_780_000_000_000,
        };
        assert_eq!(decode_lease(&encode_lease(&lease)).unwrap(), lease);
    }

    #[test]
    fn damage_is_an_error_never_a_panic_or_a_huge_allocation() {
        let bytes = encode_record(&sample_record());
        for end in 0..bytes.len() {
            assert!(decode_record(&bytes[..end]).is_err(), "cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let error = decode_record(&longer).unwrap_err();
        assert!(error.contains("1 bytes left over"), "{error}");
        // A string length of 2^60: refused by the limit before anything is allocated.
        let mut huge = bytes[..HEADER_LEN + 64 + 1].to_vec();
        huge.push(0xfd);
        huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let error = decode_record(&huge).unwrap_err();
        assert!(error.contains("cannot decode the action record"), "{error}");
        let mut flipped = bytes.clone();
        flipped[0] = b'X';
        let error = decode_record(&flipped).unwrap_err();
        assert!(error.contains("unknown magic"), "{error}");
        let mut newer = bytes;
        newer[4..6].copy_from_slice(&(SCHEMA + 1).to_le_bytes());
        let error = decode_record(&newer).unwrap_err();
        assert!(error.contains("newer peirce"), "{error}");
    }
}
