//! Helpers shared by the checks: sample folders, records, and assertions on lookups.

use super::*;

pub fn blob_location(digest: BlobDigest) -> String {
    let hex = digest.hex();
    format!("cas/{}/{}", &hex[..2], hex)
}

pub fn action_location(key: ActionKey) -> String {
    format!("ac/{}", key.hex())
}

/// `len` deterministic, incompressible-looking bytes; `seed` makes different contents.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// A folder's files: name -> (bytes, executable).
pub type Files = BTreeMap<String, (Vec<u8>, bool)>;

/// A small model-shaped folder: nested files, an empty file, an executable and one file large
/// enough (1.5 MiB) to take the memory-mapped hashing path.
pub fn sample_files() -> Files {
    [
        ("config.json", b"{\"hidden_size\": 8}\n".to_vec(), false),
        ("empty.txt", Vec::new(), false),
        ("bin/run.sh", b"#!/bin/sh\necho ok\n".to_vec(), true),
        ("weights/model.safetensors", pattern(3 << 19, 1), false),
        ("weights/deep/nested/notes.md", b"# notes\n".to_vec(), false),
    ]
    .into_iter()
    .map(|(name, bytes, executable)| (name.to_string(), (bytes, executable)))
    .collect()
}

pub fn files(list: &[(&str, &[u8])]) -> Files {
    list.iter()
        .map(|(name, bytes)| (name.to_string(), (bytes.to_vec(), false)))
        .collect()
}

/// Writes `files` under `dir`, plus an empty folder (which a tree does not record).
pub fn write_folder(dir: &Path, files: &Files) {
    for (name, (bytes, executable)) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        let mode = if *executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir_all(dir.join("empty-folder")).unwrap();
}

/// Makes every file under `dir` look `age` old.
pub fn age_folder(dir: &Path, age: Duration) {
    for (_, path) in walk_files(dir).unwrap() {
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }
}

/// Asserts that `dir` holds exactly `expected`, with the same bytes and executable bits, and
/// that no file is writable (a node must not be able to write through into the store).
pub fn assert_folder(dir: &Path, expected: &Files) {
    let found = walk_files(dir).unwrap();
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    let expected_names: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(names, expected_names, "files under {}", dir.display());
    for (name, path) in &found {
        let (bytes, executable) = &expected[name];
        let actual = fs::read(path).unwrap();
        assert!(
            actual == *bytes,
            "`{name}` has {} bytes that differ from the {} expected",
            actual.len(),
            bytes.len()
        );
        let mode = fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111 != 0, *executable, "`{name}` has mode {mode:o}");
        assert_eq!(mode & 0o222, 0, "`{name}` is writable (mode {mode:o})");
    }
}

/// Asserts that `tree` names exactly `expected`, with the right digests, sizes and bits.
pub fn assert_tree(tree: &Tree, expected: &Files) {
    let names: Vec<&str> = tree.iter().map(|(name, _)| name).collect();
    let expected_names: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(names, expected_names);
    for (name, entry) in tree.iter() {
        let (bytes, executable) = &expected[name];
        let wanted = TreeEntry {
            digest: BlobDigest::of(bytes),
            size: bytes.len() as u64,
            executable: *executable,
        };
        assert_eq!(*entry, wanted, "entry `{name}`");
    }
}

pub fn record(key: ActionKey, output: TreeDigest, log: Option<BlobDigest>) -> ActionRecord {
    ActionRecord {
        key,
        output,
        components: KeyComponents {
            schema: 1,
            kind: "conformance".into(),
            kind_version: 1,
            params: serde_json::json!({ "key": key.short() }),
            inputs: BTreeMap::new(),
            salt: String::new(),
        },
        node: "node".into(),
        workflow: "conformance".into(),
        log,
        started_at: 1_700_000_000.5,
        duration_s: 0.25,
        host: "test-host".into(),
        engine_version: "0.0.0-test".into(),
        input_sources: BTreeMap::from([("data".into(), "path:data.jsonl".into())]),
    }
}

/// Publishes `files` from a new folder under `scratch` and returns the tree.
pub async fn publish(
    store: &Store,
    scratch: &Path,
    name: &str,
    files: &Files,
) -> (TreeDigest, Tree) {
    let dir = scratch.join(name);
    write_folder(&dir, files);
    store.publish_dir(&dir).await.unwrap()
}

pub fn expect_hit(lookup: Lookup, expected: &ActionRecord) {
    match lookup {
        Lookup::Hit(found) => assert_eq!(*found, *expected),
        other => panic!("expected a hit on `{}`, got {other:?}", expected.key),
    }
}

/// Asserts a broken lookup whose reason mentions `needle`.
pub fn expect_broken(lookup: Lookup, needle: &str) {
    match lookup {
        Lookup::Broken { reason } => assert!(
            reason.contains(needle),
            "reason {reason:?} does not mention {needle}"
        ),
        other => panic!("expected a broken record (mentioning {needle}), got {other:?}"),
    }
}

pub fn expect_miss(lookup: Lookup) {
    assert!(
        matches!(lookup, Lookup::Miss),
        "expected a miss, got {lookup:?}"
    );
}

pub async fn expect_incomplete(store: &Store, record: &ActionRecord, needle: &str) {
    match store.put_action(record).await {
        Err(Error::Incomplete { key, tree, reason }) => {
            assert_eq!(key, record.key);
            assert_eq!(tree, record.output);
            assert!(
                reason.contains(needle),
                "reason {reason:?} does not mention {needle}"
            );
        }
        other => panic!("expected Incomplete (mentioning {needle}), got {other:?}"),
    }
}

pub async fn present(store: &Store, digests: &[BlobDigest]) -> Vec<bool> {
    let mut out = Vec::new();
    for digest in digests {
        out.push(store.has_blob(*digest).await.unwrap());
    }
    out
}
