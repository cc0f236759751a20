//! The store conformance suite: one set of checks that every backend must pass.
//!
//! Each check is an async function in [`suite`]. Most take only the `&Store` under test; the
//! ones that damage the store on purpose (corrupt or delete a blob, plant a malformed record)
//! also take a [`Backdoor`]: a second way to reach the same objects without going through the
//! store, as a disk fault, a careless user or another process would. The `conformance!` macro
//! turns the whole suite into `#[tokio::test]`s for one backend, so adding a backend is one line
//! at the bottom of this file, for example once S3 is supported:
//!
//! ```text
//! conformance!(s3 => match s3_fixture_from_env() { Some(fixture) => fixture, None => return });
//! ```
//!
//! where the fixture is `Fixture::object_store(Arc::new(amazon_s3), "s3://bucket/prefix")`.
//! A fixture expression may `return` to skip a backend that is not configured here.
//!
//! What only one backend has (temporary files, hard links, file modes of stored blobs) is tested
//! in `local_only` at the end, not here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use peirce_store::hashing::walk_files;
use peirce_store::{
    ActionKey, ActionRecord, BlobDigest, Error, GcReport, KeyComponents, Lease, Lookup, StatCache,
    Store, Tree, TreeDigest, TreeEntry,
};
use tempfile::TempDir;

// ---------------------------------------------------------------- backends

/// A store under test together with a backdoor to its objects and whatever keeps both alive.
struct Fixture {
    store: Store,
    backdoor: Backdoor,
    _dir: Option<TempDir>,
}

impl Fixture {
    /// A local store in a fresh temporary folder.
    fn local() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open_local(&dir.path().join("store")).expect("a local store opens");
        let root = store
            .local_root()
            .expect("a local store has a folder")
            .to_path_buf();
        Fixture {
            store,
            backdoor: Backdoor::Local(root),
            _dir: Some(dir),
        }
    }

    /// A store over any object store, which the backdoor reaches through the same client.
    fn object_store(object: Arc<dyn ObjectStore>, url: &str) -> Self {
        let store = Store::from_object_store(object.clone(), url);
        Fixture {
            store,
            backdoor: Backdoor::Object {
                object,
                url: url.to_string(),
            },
            _dir: None,
        }
    }

    /// An in-memory store. It is what `Store::in_memory()` builds, but keeps a handle to the
    /// `InMemory` so that the backdoor can reach it.
    fn memory() -> Self {
        Self::object_store(Arc::new(InMemory::new()), "memory://")
    }
}

/// Reaches a store's objects behind its back, by their layout location (`cas/<aa>/<hex>`).
enum Backdoor {
    /// A local store's folder: objects are files, changed in place.
    Local(PathBuf),
    /// Any object store, reached through the client the store itself uses.
    Object {
        object: Arc<dyn ObjectStore>,
        url: String,
    },
}

impl Backdoor {
    /// Replaces (or creates) the object at `location`.
    async fn overwrite(&self, location: &str, bytes: &[u8]) {
        match self {
            Backdoor::Local(root) => {
                let path = root.join(location);
                if path.exists() {
                    // Stored blobs are read-only; a careless user gets past that with chmod.
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
                } else {
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                }
                fs::write(&path, bytes).unwrap();
            }
            Backdoor::Object { object, .. } => {
                let payload = PutPayload::from(bytes.to_vec());
                object
                    .put(&ObjectPath::from(location), payload)
                    .await
                    .unwrap();
            }
        }
    }

    /// Deletes the object at `location`, which must exist.
    async fn remove(&self, location: &str) {
        match self {
            Backdoor::Local(root) => fs::remove_file(root.join(location)).unwrap(),
            Backdoor::Object { object, .. } => {
                object.delete(&ObjectPath::from(location)).await.unwrap()
            }
        }
    }

    /// Whether an object exists at `location`.
    async fn exists(&self, location: &str) -> bool {
        match self {
            Backdoor::Local(root) => root.join(location).exists(),
            Backdoor::Object { object, .. } => match object.head(&ObjectPath::from(location)).await
            {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(error) => panic!("head `{location}`: {error}"),
            },
        }
    }

    /// Another runner on the same objects: a fresh `Store` sharing none of the first one's
    /// in-process state (such as the set of blobs it has already verified).
    fn second_runner(&self) -> Store {
        match self {
            Backdoor::Local(root) => Store::open_local(root).unwrap(),
            Backdoor::Object { object, url } => {
                Store::from_object_store(object.clone(), url.as_str())
            }
        }
    }
}

/// What a generated test holds: the store under test and whatever keeps it alive.
trait Subject {
    fn store(&self) -> &Store;
}

impl Subject for Fixture {
    fn store(&self) -> &Store {
        &self.store
    }
}

impl Subject for Store {
    fn store(&self) -> &Store {
        self
    }
}

/// `conformance!(name => fixture)` runs the whole suite against a `Fixture`;
/// `conformance!(name => store expression)` runs the checks that need no backdoor against a
/// bare `Store`. Each check becomes `name::check` in the test output.
macro_rules! conformance {
    ($backend:ident => store $store:expr) => {
        mod $backend {
            use super::*;
            conformance!(@store ($store) STORE_CHECKS);
        }
    };
    ($backend:ident => $fixture:expr) => {
        mod $backend {
            use super::*;
            conformance!(@store ($fixture) STORE_CHECKS);
            conformance!(@backdoor ($fixture) BACKDOOR_CHECKS);
        }
    };
    (@store ($make:expr) STORE_CHECKS) => {
        conformance!(@store ($make)
            blobs_round_trip
            puts_are_idempotent
            files_and_folders_round_trip
            tree_digest_depends_only_on_content
            put_action_requires_complete_outputs
            documents_round_trip
            leases_are_exclusive_while_live
            expired_leases_are_taken_over
            racing_for_a_lease_has_one_winner
            racing_for_an_expired_lease_leaves_one_holder
            gc_removes_what_no_live_action_reaches
            gc_spares_young_objects
            gc_dry_run_removes_nothing
            gc_keeps_what_young_records_reach
        );
    };
    (@backdoor ($make:expr) BACKDOOR_CHECKS) => {
        conformance!(@backdoor ($make)
            corrupt_blob_is_reported_quarantined_and_healed
            corrupt_blob_is_caught_by_materialize
            missing_outputs_break_a_record
            corrupt_outputs_break_a_record
            malformed_record_is_broken
            malformed_document_is_an_error
            runners_share_a_store
        );
    };
    (@store ($make:expr) $($check:ident)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let subject = $make;
            suite::$check(Subject::store(&subject)).await;
        }
    )*};
    (@backdoor ($make:expr) $($check:ident)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let fixture: Fixture = $make;
            suite::$check(&fixture.store, &fixture.backdoor).await;
        }
    )*};
}

conformance!(local => Fixture::local());
conformance!(memory => Fixture::memory());
conformance!(in_memory => store Store::in_memory());

// ---------------------------------------------------------------- helpers

fn blob_location(digest: BlobDigest) -> String {
    let hex = digest.hex();
    format!("cas/{}/{}", &hex[..2], hex)
}

fn action_location(key: ActionKey) -> String {
    format!("ac/{}", key.hex())
}

/// `len` deterministic, incompressible-looking bytes; `seed` makes different contents.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
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
type Files = BTreeMap<String, (Vec<u8>, bool)>;

/// A small model-shaped folder: nested files, an empty file, an executable and one file large
/// enough (1.5 MiB) to take the memory-mapped hashing path.
fn sample_files() -> Files {
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

fn files(list: &[(&str, &[u8])]) -> Files {
    list.iter()
        .map(|(name, bytes)| (name.to_string(), (bytes.to_vec(), false)))
        .collect()
}

/// Writes `files` under `dir`, plus an empty folder (which a tree does not record).
fn write_folder(dir: &Path, files: &Files) {
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
fn age_folder(dir: &Path, age: Duration) {
    for (_, path) in walk_files(dir).unwrap() {
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }
}

/// Asserts that `dir` holds exactly `expected`, with the same bytes and executable bits, and
/// that no file is writable (a node must not be able to write through into the store).
fn assert_folder(dir: &Path, expected: &Files) {
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
fn assert_tree(tree: &Tree, expected: &Files) {
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

fn record(key: ActionKey, output: TreeDigest, log: Option<BlobDigest>) -> ActionRecord {
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
async fn publish(store: &Store, scratch: &Path, name: &str, files: &Files) -> (TreeDigest, Tree) {
    let dir = scratch.join(name);
    write_folder(&dir, files);
    store.publish_dir(&dir).await.unwrap()
}

fn expect_hit(lookup: Lookup, expected: &ActionRecord) {
    match lookup {
        Lookup::Hit(found) => assert_eq!(*found, *expected),
        other => panic!("expected a hit on `{}`, got {other:?}", expected.key),
    }
}

/// Asserts a broken lookup whose reason mentions `needle`.
fn expect_broken(lookup: Lookup, needle: &str) {
    match lookup {
        Lookup::Broken { reason } => assert!(
            reason.contains(needle),
            "reason {reason:?} does not mention {needle}"
        ),
        other => panic!("expected a broken record (mentioning {needle}), got {other:?}"),
    }
}

fn expect_miss(lookup: Lookup) {
    assert!(
        matches!(lookup, Lookup::Miss),
        "expected a miss, got {lookup:?}"
    );
}

async fn expect_incomplete(store: &Store, record: &ActionRecord, needle: &str) {
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

async fn present(store: &Store, digests: &[BlobDigest]) -> Vec<bool> {
    let mut out = Vec::new();
    for digest in digests {
        out.push(store.has_blob(*digest).await.unwrap());
    }
    out
}

/// Two actions sharing a file: `live` (listed as live in gc) and `dead` (not), plus a blob
/// no record reaches. Source files are made two hours old first, so a backend that carried
/// a source file's time over to its blob would lose fresh blobs to the grace period.
struct GcScene {
    live: ActionRecord,
    dead: ActionRecord,
    /// Everything the live record reaches: tree, files, log.
    live_blobs: Vec<BlobDigest>,
    /// Everything only the dead record (or nothing) reaches.
    dead_blobs: Vec<BlobDigest>,
    dead_bytes: u64,
    _scratch: TempDir,
}

async fn gc_scene(store: &Store) -> GcScene {
    let scratch = tempfile::tempdir().unwrap();
    let shared: &[u8] = b"shared by both outputs";
    let live_files = files(&[
        ("shared.txt", shared),
        ("live.txt", b"only the live output"),
    ]);
    let dead_files = files(&[
        ("shared.txt", shared),
        ("dead.txt", b"only the dead one"),
        ("sub/dead.bin", &pattern(5000, 2)),
    ]);
    for (name, files) in [("live", &live_files), ("dead", &dead_files)] {
        write_folder(&scratch.path().join(name), files);
        age_folder(&scratch.path().join(name), Duration::from_secs(7200));
    }
    let (live_tree, _) = store
        .publish_dir(&scratch.path().join("live"))
        .await
        .unwrap();
    let (dead_tree, _) = store
        .publish_dir(&scratch.path().join("dead"))
        .await
        .unwrap();
    let live_log = store
        .put_bytes(Bytes::from_static(b"live log"))
        .await
        .unwrap();
    let dead_log = store
        .put_bytes(Bytes::from_static(b"dead log"))
        .await
        .unwrap();
    let orphan = store
        .put_bytes(Bytes::from_static(b"reached by nothing"))
        .await
        .unwrap();
    let live = record(ActionKey::of(b"gc live"), live_tree, Some(live_log));
    let dead = record(ActionKey::of(b"gc dead"), dead_tree, Some(dead_log));
    store.put_action(&live).await.unwrap();
    store.put_action(&dead).await.unwrap();

    let digest_of = |files: &Files, name: &str| BlobDigest::of(&files[name].0);
    let live_blobs = vec![
        live_tree.cast(),
        digest_of(&live_files, "shared.txt"),
        digest_of(&live_files, "live.txt"),
        live_log,
    ];
    let dead_blobs = vec![
        dead_tree.cast(),
        digest_of(&dead_files, "dead.txt"),
        digest_of(&dead_files, "sub/dead.bin"),
        dead_log,
        orphan,
    ];
    let mut dead_bytes = 0;
    for digest in &dead_blobs {
        dead_bytes += store.blob_size(*digest).await.unwrap().unwrap();
    }
    GcScene {
        live,
        dead,
        live_blobs,
        dead_blobs,
        dead_bytes,
        _scratch: scratch,
    }
}

// ---------------------------------------------------------------- the suite

mod suite {
    use super::*;

    pub async fn blobs_round_trip(store: &Store) {
        for data in [
            Bytes::from_static(b"hello, store\n"),
            Bytes::new(),
            Bytes::from(pattern((3 << 20) + 17, 3)),
        ] {
            let digest = store.put_bytes(data.clone()).await.unwrap();
            assert_eq!(digest, BlobDigest::of(&data));
            assert!(
                store.get_bytes(digest).await.unwrap() == data,
                "{} bytes read back differ",
                data.len()
            );
            assert!(store.has_blob(digest).await.unwrap());
            assert_eq!(
                store.blob_size(digest).await.unwrap(),
                Some(data.len() as u64)
            );
        }

        let absent = BlobDigest::of(b"never stored");
        assert!(!store.has_blob(absent).await.unwrap());
        assert_eq!(store.blob_size(absent).await.unwrap(), None);
        match store.get_bytes(absent).await {
            Err(Error::MissingBlob(digest)) => assert_eq!(digest, absent),
            other => panic!("expected MissingBlob, got {other:?}"),
        }
        match store.get_tree(absent.cast()).await {
            Err(Error::MissingTree(digest)) => assert_eq!(digest, absent.cast()),
            other => panic!("expected MissingTree, got {other:?}"),
        }
    }

    pub async fn puts_are_idempotent(store: &Store) {
        let data = Bytes::from(pattern(1 << 20, 4));
        let first = store.put_bytes(data.clone()).await.unwrap();
        let second = store.put_bytes(data.clone()).await.unwrap();
        assert_eq!(first, second);
        assert!(store.get_bytes(first).await.unwrap() == data);

        // Eight writers of the same new bytes at once: all succeed with the same name.
        let fresh = Bytes::from(pattern(4 << 20, 5));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (store, fresh) = (store.clone(), fresh.clone());
                tokio::spawn(async move { store.put_bytes(fresh).await })
            })
            .collect();
        for writer in writers {
            assert_eq!(writer.await.unwrap().unwrap(), BlobDigest::of(&fresh));
        }
        assert_eq!(
            store.blob_size(BlobDigest::of(&fresh)).await.unwrap(),
            Some(fresh.len() as u64)
        );
        assert!(store.get_bytes(BlobDigest::of(&fresh)).await.unwrap() == fresh);

        // The same for whole folders, published by eight tasks at once.
        let scratch = tempfile::tempdir().unwrap();
        let expected = sample_files();
        write_folder(scratch.path(), &expected);
        let publishers: Vec<_> = (0..8)
            .map(|_| {
                let (store, dir) = (store.clone(), scratch.path().to_path_buf());
                tokio::spawn(async move { store.publish_dir(&dir).await })
            })
            .collect();
        let mut digests = BTreeSet::new();
        for publisher in publishers {
            let (digest, tree) = publisher.await.unwrap().unwrap();
            assert_tree(&tree, &expected);
            digests.insert(digest);
        }
        assert_eq!(digests.len(), 1, "one folder, one digest: {digests:?}");
        let digest = digests.into_iter().next().unwrap();
        let restored = scratch.path().join("restored");
        store.materialize(digest, &restored).await.unwrap();
        assert_folder(&restored, &expected);
    }

    pub async fn files_and_folders_round_trip(store: &Store) {
        let scratch = tempfile::tempdir().unwrap();

        let single = scratch.path().join("single.bin");
        fs::write(&single, b"one file").unwrap();
        let (digest, size) = store.put_file(&single).await.unwrap();
        assert_eq!((digest, size), (BlobDigest::of(b"one file"), 8));
        // The store keeps the bytes it named, not a link to the caller's file, and the
        // caller's file stays the caller's.
        fs::write(&single, b"changed afterwards").unwrap();
        assert_eq!(
            store.get_bytes(digest).await.unwrap(),
            Bytes::from_static(b"one file")
        );
        assert_eq!(fs::read(&single).unwrap(), b"changed afterwards");

        let expected = sample_files();
        let source = scratch.path().join("model");
        write_folder(&source, &expected);
        let (tree_digest, tree) = store.publish_dir(&source).await.unwrap();
        assert_eq!(tree.digest(), tree_digest);
        assert_tree(&tree, &expected);
        assert_eq!(store.get_tree(tree_digest).await.unwrap(), tree);
        for (name, entry) in tree.iter() {
            assert!(
                store.has_blob(entry.digest).await.unwrap(),
                "blob of `{name}`"
            );
        }
        // Publishing leaves the source folder as it was (executable bit included).
        assert_eq!(
            fs::metadata(source.join("bin/run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );

        let restored = scratch.path().join("restored");
        assert_eq!(
            store.materialize(tree_digest, &restored).await.unwrap(),
            tree
        );
        assert_folder(&restored, &expected);

        // Materializing over existing files (stale or already materialized) replaces them.
        let stale = scratch.path().join("stale");
        fs::create_dir_all(stale.join("bin")).unwrap();
        fs::write(stale.join("config.json"), b"stale").unwrap();
        fs::write(stale.join("bin/run.sh"), b"stale").unwrap();
        store.materialize(tree_digest, &stale).await.unwrap();
        assert_folder(&stale, &expected);
        store.materialize(tree_digest, &restored).await.unwrap();
        assert_folder(&restored, &expected);

        // A materialized folder publishes back to the same tree.
        assert_eq!(store.publish_dir(&restored).await.unwrap().0, tree_digest);
    }

    pub async fn tree_digest_depends_only_on_content(store: &Store) {
        let scratch = tempfile::tempdir().unwrap();
        let expected = sample_files();
        let (one, two) = (
            scratch.path().join("one"),
            scratch.path().join("deeper/two"),
        );
        write_folder(&one, &expected);
        write_folder(&two, &expected);
        age_folder(&two, Duration::from_secs(3600));

        let (digest_one, _) = store.publish_dir(&one).await.unwrap();
        let (digest_two, _) = store.publish_dir(&two).await.unwrap();
        assert_eq!(
            digest_one, digest_two,
            "same content, different folders and times"
        );
        // External inputs are hashed to the same digest the store gives the same folder.
        assert_eq!(
            StatCache::in_memory().hash_path(&two).unwrap().1,
            digest_one
        );

        let mut seen = BTreeSet::from([digest_one]);
        fs::set_permissions(two.join("bin/run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            seen.insert(store.publish_dir(&two).await.unwrap().0),
            "the executable bit counts"
        );
        fs::write(two.join("config.json"), b"{\"hidden_size\": 9}\n").unwrap();
        assert!(
            seen.insert(store.publish_dir(&two).await.unwrap().0),
            "a changed byte counts"
        );
        fs::rename(two.join("empty.txt"), two.join("empty2.txt")).unwrap();
        assert!(
            seen.insert(store.publish_dir(&two).await.unwrap().0),
            "a name counts"
        );
    }

    pub async fn put_action_requires_complete_outputs(store: &Store) {
        let stored = store
            .put_bytes(Bytes::from_static(b"stored"))
            .await
            .unwrap();
        let missing_bytes = Bytes::from_static(b"not stored yet");
        let missing = BlobDigest::of(&missing_bytes);
        let mut tree = Tree::new();
        tree.insert(
            "stored.txt",
            TreeEntry {
                digest: stored,
                size: 6,
                executable: false,
            },
        )
        .unwrap();
        tree.insert(
            "missing.txt",
            TreeEntry {
                digest: missing,
                size: missing_bytes.len() as u64,
                executable: false,
            },
        )
        .unwrap();
        let tree_digest_of_incomplete = tree.digest();
        let key = ActionKey::of(b"incomplete action");
        let assert_nothing_recorded = || async move {
            expect_miss(store.lookup(key).await.unwrap());
            assert!(store.get_action(key).await.unwrap().is_none());
            assert!(store.list_actions().await.unwrap().is_empty());
            assert_eq!(
                store.producer_of(tree_digest_of_incomplete).await.unwrap(),
                None
            );
        };

        // The tree itself is not stored.
        expect_incomplete(
            store,
            &record(key, tree.digest(), None),
            &tree.digest().to_string(),
        )
        .await;
        assert_nothing_recorded().await;

        // The tree is stored, one of its blobs is not.
        let tree_digest = store.put_tree(&tree).await.unwrap();
        assert_eq!(tree_digest, tree.digest());
        expect_incomplete(store, &record(key, tree_digest, None), &missing.to_string()).await;
        assert_nothing_recorded().await;

        // A blob is stored, but not with the size the tree says.
        let mut wrong_size = Tree::new();
        wrong_size
            .insert(
                "stored.txt",
                TreeEntry {
                    digest: stored,
                    size: 999,
                    executable: false,
                },
            )
            .unwrap();
        let wrong_digest = store.put_tree(&wrong_size).await.unwrap();
        expect_incomplete(store, &record(key, wrong_digest, None), &stored.to_string()).await;

        // Every blob is stored, the log is not.
        store.put_bytes(missing_bytes).await.unwrap();
        let log = BlobDigest::of(b"the log");
        expect_incomplete(
            store,
            &record(key, tree_digest, Some(log)),
            &log.to_string(),
        )
        .await;
        assert_nothing_recorded().await;

        // Complete: recorded, found, indexed by output. Recording again is harmless.
        store
            .put_bytes(Bytes::from_static(b"the log"))
            .await
            .unwrap();
        let complete = record(key, tree_digest, Some(log));
        store.put_action(&complete).await.unwrap();
        store.put_action(&complete).await.unwrap();
        expect_hit(store.lookup(key).await.unwrap(), &complete);
        assert_eq!(store.get_action(key).await.unwrap(), Some(complete.clone()));
        assert_eq!(store.producer_of(tree_digest).await.unwrap(), Some(key));
        assert_eq!(store.list_actions().await.unwrap(), vec![key]);
        expect_miss(
            store
                .lookup(ActionKey::of(b"another action"))
                .await
                .unwrap(),
        );
    }

    pub async fn documents_round_trip(store: &Store) {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Run {
            id: String,
            outputs: BTreeMap<String, TreeDigest>,
        }
        let run = Run {
            id: "run-1".into(),
            outputs: BTreeMap::from([("train".into(), TreeDigest::of(b"t"))]),
        };
        store.put_document("runs/run-1", &run).await.unwrap();
        assert_eq!(
            store.get_document::<Run>("runs/run-1").await.unwrap(),
            Some(run)
        );
        assert_eq!(store.get_document::<Run>("runs/run-2").await.unwrap(), None);

        store
            .put_document("refs/latest", &serde_json::json!({ "run": "run-1" }))
            .await
            .unwrap();
        store
            .put_document("refs/latest", &serde_json::json!({ "run": "run-2" }))
            .await
            .unwrap();
        let latest: Option<serde_json::Value> = store.get_document("refs/latest").await.unwrap();
        assert_eq!(latest, Some(serde_json::json!({ "run": "run-2" })));

        // Well-formed JSON of the wrong shape is malformed too.
        match store.get_document::<Run>("refs/latest").await {
            Err(Error::MalformedDocument { location, .. }) => assert_eq!(location, "refs/latest"),
            other => panic!("expected MalformedDocument, got {other:?}"),
        }
    }

    pub async fn leases_are_exclusive_while_live(store: &Store) {
        let key = ActionKey::of(b"leased");
        let ttl = Duration::from_secs(60);
        let mut held = store
            .try_lease(key, "runner-a", ttl)
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert_eq!((held.key, held.owner.as_str()), (key, "runner-a"));
        assert!(
            store
                .try_lease(key, "runner-b", ttl)
                .await
                .unwrap()
                .is_none(),
            "a live lease is exclusive"
        );
        assert_eq!(
            store
                .lease_holder(key)
                .await
                .unwrap()
                .map(|lease| lease.owner),
            Some("runner-a".into())
        );
        // Other keys are independent.
        assert!(store
            .try_lease(ActionKey::of(b"other"), "runner-b", ttl)
            .await
            .unwrap()
            .is_some());

        // Neither renewing nor releasing works for someone who does not hold it.
        let mut forged = Lease {
            key,
            owner: "runner-b".into(),
            expires_at_ms: held.expires_at_ms,
        };
        assert!(!store.renew_lease(&mut forged, ttl).await.unwrap());
        store.release_lease(&forged).await.unwrap();
        assert_eq!(
            store
                .lease_holder(key)
                .await
                .unwrap()
                .map(|lease| lease.owner),
            Some("runner-a".into())
        );

        let before = held.expires_at_ms;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(store
            .renew_lease(&mut held, Duration::from_secs(120))
            .await
            .unwrap());
        assert!(held.expires_at_ms > before);
        assert_eq!(store.lease_holder(key).await.unwrap(), Some(held.clone()));

        store.release_lease(&held).await.unwrap();
        assert_eq!(store.lease_holder(key).await.unwrap(), None);
        let taken = store
            .try_lease(key, "runner-b", ttl)
            .await
            .unwrap()
            .expect("a released lease is free");
        assert_eq!(taken.owner, "runner-b");
        assert!(
            !store.renew_lease(&mut held, ttl).await.unwrap(),
            "the old holder lost it"
        );
    }

    pub async fn expired_leases_are_taken_over(store: &Store) {
        let key = ActionKey::of(b"short lease");
        let mut short = store
            .try_lease(key, "runner-a", Duration::from_millis(50))
            .await
            .unwrap()
            .unwrap();
        assert!(store
            .try_lease(key, "runner-b", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            store.lease_holder(key).await.unwrap(),
            None,
            "an expired lease has no holder"
        );

        let taken = store
            .try_lease(key, "runner-b", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(taken.map(|lease| lease.owner), Some("runner-b".into()));
        assert!(!store
            .renew_lease(&mut short, Duration::from_secs(60))
            .await
            .unwrap());
        assert!(store
            .try_lease(key, "runner-a", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        store.release_lease(&short).await.unwrap();
        assert_eq!(
            store
                .lease_holder(key)
                .await
                .unwrap()
                .map(|lease| lease.owner),
            Some("runner-b".into())
        );
    }

    /// Races `racers` tasks for the lease on `key`; returns the owners that got it.
    async fn race(store: &Store, key: ActionKey, racers: usize) -> Vec<Lease> {
        let barrier = Arc::new(tokio::sync::Barrier::new(racers));
        let tasks: Vec<_> = (0..racers)
            .map(|index| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .try_lease(key, &format!("racer-{index}"), Duration::from_secs(60))
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap().unwrap());
        }
        winners
    }

    pub async fn racing_for_a_lease_has_one_winner(store: &Store) {
        for round in 0..4u8 {
            let key = ActionKey::of(&[b'r', round]);
            let winners = race(store, key, 16).await;
            let owners: Vec<&str> = winners.iter().map(|lease| lease.owner.as_str()).collect();
            assert_eq!(owners.len(), 1, "round {round}: winners {owners:?}");
            assert_eq!(
                store.lease_holder(key).await.unwrap().as_ref(),
                winners.first()
            );
        }
    }

    /// Taking over an expired lease is best effort: more than one racer may briefly believe it
    /// won (duplicate work is harmless). What must hold is that exactly one of them keeps it,
    /// and every other one finds out at its next renewal.
    pub async fn racing_for_an_expired_lease_leaves_one_holder(store: &Store) {
        let key = ActionKey::of(b"expired race");
        store
            .try_lease(key, "gone", Duration::from_millis(20))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let winners = race(store, key, 16).await;
        assert!(!winners.is_empty(), "nobody took over an expired lease");
        let holder = store
            .lease_holder(key)
            .await
            .unwrap()
            .expect("someone holds it");
        assert!(
            winners.contains(&holder),
            "holder {holder:?} is not among the winners {winners:?}"
        );
        for mut winner in winners {
            let kept = store
                .renew_lease(&mut winner, Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(
                kept,
                winner.owner == holder.owner,
                "renewal by {}",
                winner.owner
            );
        }
    }

    pub async fn gc_removes_what_no_live_action_reaches(store: &Store) {
        let scene = gc_scene(store).await;
        store
            .put_document("runs/run-1", &serde_json::json!({ "kept": true }))
            .await
            .unwrap();
        let report = store
            .gc(&[scene.live.key], Duration::ZERO, false)
            .await
            .unwrap();
        assert_eq!(
            report,
            GcReport {
                live_blobs: 4,
                live_actions: 1,
                removed_blobs: 5,
                removed_bytes: scene.dead_bytes,
                removed_actions: 1,
                spared_young: 0,
            }
        );
        assert_eq!(present(store, &scene.live_blobs).await, [true; 4]);
        assert_eq!(present(store, &scene.dead_blobs).await, [false; 5]);
        expect_hit(store.lookup(scene.live.key).await.unwrap(), &scene.live);
        expect_miss(store.lookup(scene.dead.key).await.unwrap());
        assert_eq!(store.list_actions().await.unwrap(), vec![scene.live.key]);
        assert_eq!(
            store.producer_of(scene.live.output).await.unwrap(),
            Some(scene.live.key)
        );
        assert_eq!(store.producer_of(scene.dead.output).await.unwrap(), None);
        let run: Option<serde_json::Value> = store.get_document("runs/run-1").await.unwrap();
        assert!(run.is_some(), "gc leaves documents alone");

        let again = store
            .gc(&[scene.live.key], Duration::ZERO, false)
            .await
            .unwrap();
        assert_eq!(
            (again.removed_blobs, again.removed_actions, again.live_blobs),
            (0, 0, 4)
        );
    }

    pub async fn gc_spares_young_objects(store: &Store) {
        let scene = gc_scene(store).await;
        let report = store
            .gc(&[scene.live.key], Duration::from_secs(3600), false)
            .await
            .unwrap();
        assert_eq!(
            report,
            GcReport {
                live_blobs: 4,
                live_actions: 1,
                removed_blobs: 0,
                removed_bytes: 0,
                removed_actions: 0,
                spared_young: 1 + 5,
            }
        );
        assert_eq!(present(store, &scene.live_blobs).await, [true; 4]);
        assert_eq!(present(store, &scene.dead_blobs).await, [true; 5]);
        expect_hit(store.lookup(scene.live.key).await.unwrap(), &scene.live);
        expect_hit(store.lookup(scene.dead.key).await.unwrap(), &scene.dead);
    }

    pub async fn gc_dry_run_removes_nothing(store: &Store) {
        let scene = gc_scene(store).await;
        let dry = store
            .gc(&[scene.live.key], Duration::ZERO, true)
            .await
            .unwrap();
        assert_eq!(
            (dry.removed_blobs, dry.removed_bytes, dry.removed_actions),
            (5, scene.dead_bytes, 1)
        );
        assert_eq!(present(store, &scene.dead_blobs).await, [true; 5]);
        expect_hit(store.lookup(scene.dead.key).await.unwrap(), &scene.dead);
        assert_eq!(
            store.producer_of(scene.dead.output).await.unwrap(),
            Some(scene.dead.key)
        );
        let real = store
            .gc(&[scene.live.key], Duration::ZERO, false)
            .await
            .unwrap();
        assert_eq!(real, dry, "a dry run reports what the real one does");
        assert_eq!(present(store, &scene.dead_blobs).await, [false; 5]);
    }

    /// A record younger than the grace period is spared (a concurrent run may just have written
    /// it), and so must be every blob it reaches, even an old one it shares with earlier
    /// outputs; otherwise gc turns a fresh hit into a broken record.
    pub async fn gc_keeps_what_young_records_reach(store: &Store) {
        let scratch = tempfile::tempdir().unwrap();
        let shared: &[u8] = b"a file two outputs share";
        let (old_tree, _) = publish(
            store,
            scratch.path(),
            "old",
            &files(&[("shared.txt", shared), ("a.txt", b"a")]),
        )
        .await;
        let old = record(ActionKey::of(b"old action"), old_tree, None);
        store.put_action(&old).await.unwrap();
        let grace = Duration::from_millis(1000);
        tokio::time::sleep(grace * 2).await;

        let (young_tree, _) = publish(
            store,
            scratch.path(),
            "young",
            &files(&[("shared.txt", shared), ("b.txt", b"b")]),
        )
        .await;
        let young = record(ActionKey::of(b"young action"), young_tree, None);
        store.put_action(&young).await.unwrap();
        let report = store.gc(&[], grace, false).await.unwrap();

        assert_eq!(report.removed_actions, 1, "{report:?}");
        expect_miss(store.lookup(old.key).await.unwrap());
        assert!(
            !store.has_blob(BlobDigest::of(b"a")).await.unwrap(),
            "{report:?}"
        );
        assert!(
            store.has_blob(BlobDigest::of(shared)).await.unwrap(),
            "{report:?}"
        );
        expect_hit(store.lookup(young.key).await.unwrap(), &young);
    }

    // ------------------------------------------------------------ with a backdoor

    pub async fn corrupt_blob_is_reported_quarantined_and_healed(
        store: &Store,
        backdoor: &Backdoor,
    ) {
        let data = Bytes::from_static(b"precious bytes");
        let digest = store.put_bytes(data.clone()).await.unwrap();
        let location = blob_location(digest);
        assert!(
            backdoor.exists(&location).await,
            "blobs live at cas/<aa>/<hex>"
        );

        for garbage in [&b"garbage of another length"[..], b"PRECIOUS BYTES"] {
            backdoor.overwrite(&location, garbage).await;
            match store.get_bytes(digest).await {
                Err(error @ Error::Corrupt { .. }) => {
                    assert!(error.to_string().contains(&digest.to_string()), "{error}");
                    let Error::Corrupt {
                        digest: named,
                        actual,
                        size,
                    } = error
                    else {
                        unreachable!()
                    };
                    assert_eq!(
                        (named, actual, size),
                        (digest, BlobDigest::of(garbage), garbage.len() as u64)
                    );
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert!(
                !backdoor.exists(&location).await,
                "a corrupt blob leaves cas/"
            );
            assert!(!store.has_blob(digest).await.unwrap());
            assert!(matches!(
                store.get_bytes(digest).await,
                Err(Error::MissingBlob(_))
            ));

            assert_eq!(store.put_bytes(data.clone()).await.unwrap(), digest);
            assert_eq!(
                store.get_bytes(digest).await.unwrap(),
                data,
                "putting the bytes again heals"
            );
        }
    }

    pub async fn corrupt_blob_is_caught_by_materialize(store: &Store, backdoor: &Backdoor) {
        let scratch = tempfile::tempdir().unwrap();
        let expected = sample_files();
        let source = scratch.path().join("model");
        write_folder(&source, &expected);
        let (tree_digest, tree) = store.publish_dir(&source).await.unwrap();
        let config = tree.get("config.json").unwrap().digest;
        // Same length, so only hashing can tell.
        backdoor
            .overwrite(&blob_location(config), b"{\"hidden_size\": 0}\n")
            .await;

        let second = backdoor.second_runner();
        match second
            .materialize(tree_digest, &scratch.path().join("bad"))
            .await
        {
            Err(Error::Corrupt { digest, .. }) => assert_eq!(digest, config),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!backdoor.exists(&blob_location(config)).await);

        store.publish_dir(&source).await.unwrap();
        let restored = scratch.path().join("restored");
        second.materialize(tree_digest, &restored).await.unwrap();
        assert_folder(&restored, &expected);
    }

    pub async fn missing_outputs_break_a_record(store: &Store, backdoor: &Backdoor) {
        let scratch = tempfile::tempdir().unwrap();
        let expected = sample_files();
        let (tree_digest, tree) = publish(store, scratch.path(), "model", &expected).await;
        let log = store.put_bytes(Bytes::from_static(b"log")).await.unwrap();
        let complete = record(ActionKey::of(b"will break"), tree_digest, Some(log));
        store.put_action(&complete).await.unwrap();
        expect_hit(store.lookup(complete.key).await.unwrap(), &complete);

        let config = tree.get("config.json").unwrap().digest;
        backdoor.remove(&blob_location(config)).await;
        expect_broken(
            store.lookup(complete.key).await.unwrap(),
            &config.to_string(),
        );
        expect_incomplete(store, &complete, &config.to_string()).await;
        store
            .put_bytes(Bytes::from(expected["config.json"].0.clone()))
            .await
            .unwrap();
        expect_hit(store.lookup(complete.key).await.unwrap(), &complete);

        backdoor.remove(&blob_location(tree_digest.cast())).await;
        expect_broken(
            store.lookup(complete.key).await.unwrap(),
            &tree_digest.to_string(),
        );
        store.put_tree(&tree).await.unwrap();
        expect_hit(store.lookup(complete.key).await.unwrap(), &complete);
        assert_eq!(
            store.producer_of(tree_digest).await.unwrap(),
            Some(complete.key)
        );
    }

    pub async fn corrupt_outputs_break_a_record(store: &Store, backdoor: &Backdoor) {
        let scratch = tempfile::tempdir().unwrap();
        let expected = sample_files();
        let (tree_digest, tree) = publish(store, scratch.path(), "model", &expected).await;
        let complete = record(ActionKey::of(b"will be corrupted"), tree_digest, None);
        store.put_action(&complete).await.unwrap();

        let notes = tree.get("weights/deep/nested/notes.md").unwrap().digest;
        backdoor
            .overwrite(&blob_location(notes), b"# notes, and then some\n")
            .await;
        expect_broken(
            store.lookup(complete.key).await.unwrap(),
            &notes.to_string(),
        );
        store
            .put_bytes(Bytes::from(
                expected["weights/deep/nested/notes.md"].0.clone(),
            ))
            .await
            .unwrap();
        expect_hit(store.lookup(complete.key).await.unwrap(), &complete);

        let tree_location = blob_location(tree_digest.cast());
        backdoor
            .overwrite(&tree_location, b"{\"peirce_tree\":1,\"entries\":{}}")
            .await;
        expect_broken(
            store.lookup(complete.key).await.unwrap(),
            &tree_digest.to_string(),
        );
        assert!(
            !backdoor.exists(&tree_location).await,
            "a corrupt tree leaves cas/"
        );
        store.put_tree(&tree).await.unwrap();
        expect_hit(store.lookup(complete.key).await.unwrap(), &complete);
    }

    pub async fn malformed_record_is_broken(store: &Store, backdoor: &Backdoor) {
        let key = ActionKey::of(b"malformed");
        let scratch = tempfile::tempdir().unwrap();
        let (tree_digest, _) =
            publish(store, scratch.path(), "out", &files(&[("a.txt", b"a")])).await;
        let filed_elsewhere =
            serde_json::to_vec(&record(ActionKey::of(b"another key"), tree_digest, None)).unwrap();
        for garbage in [
            &b"{\"key\": 42,"[..],
            &[0xff, 0x00, 0xfe][..],
            b"",
            filed_elsewhere.as_slice(),
        ] {
            backdoor.overwrite(&action_location(key), garbage).await;
            expect_broken(store.lookup(key).await.unwrap(), &key.to_string());
            match store.get_action(key).await {
                Err(Error::MalformedRecord { key: named, .. }) => assert_eq!(named, key),
                other => panic!("expected MalformedRecord, got {other:?}"),
            }
        }
        assert_eq!(store.list_actions().await.unwrap(), vec![key]);
        // A good record written over it is a hit again.
        let good = record(key, tree_digest, None);
        store.put_action(&good).await.unwrap();
        expect_hit(store.lookup(key).await.unwrap(), &good);
    }

    pub async fn malformed_document_is_an_error(store: &Store, backdoor: &Backdoor) {
        for garbage in [&b"{\"run\": "[..], &[0xff, 0xfe, 0x00][..]] {
            backdoor.overwrite("refs/garbage", garbage).await;
            match store
                .get_document::<serde_json::Value>("refs/garbage")
                .await
            {
                Err(error @ Error::MalformedDocument { .. }) => {
                    assert!(error.to_string().contains("refs/garbage"), "{error}");
                }
                other => panic!("expected MalformedDocument, got {other:?}"),
            }
        }
    }

    pub async fn runners_share_a_store(store: &Store, backdoor: &Backdoor) {
        let second = backdoor.second_runner();
        let scratch = tempfile::tempdir().unwrap();
        let expected = sample_files();
        let (tree_digest, _) = publish(store, scratch.path(), "model", &expected).await;
        let complete = record(ActionKey::of(b"shared"), tree_digest, None);
        store.put_action(&complete).await.unwrap();

        expect_hit(second.lookup(complete.key).await.unwrap(), &complete);
        let restored = scratch.path().join("restored");
        second.materialize(tree_digest, &restored).await.unwrap();
        assert_folder(&restored, &expected);
        assert_eq!(
            second
                .publish_dir(&scratch.path().join("model"))
                .await
                .unwrap()
                .0,
            tree_digest
        );

        let lease = store
            .try_lease(complete.key, "first", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(lease.is_some());
        assert!(second
            .try_lease(complete.key, "second", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        store.release_lease(&lease.unwrap()).await.unwrap();
        assert!(second
            .try_lease(complete.key, "second", Duration::from_secs(60))
            .await
            .unwrap()
            .is_some());
    }
}

// ---------------------------------------------------------------- local store only

mod local_only {
    use super::*;

    fn root(fixture: &Fixture) -> PathBuf {
        fixture.store.local_root().unwrap().to_path_buf()
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|item| item.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn gc_sweeps_old_temporaries() {
        let fixture = Fixture::local();
        let tmp = root(&fixture).join("tmp");
        fs::write(tmp.join("killed-writer"), b"half a blob").unwrap();
        let file = fs::File::options()
            .write(true)
            .open(tmp.join("killed-writer"))
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        fs::write(tmp.join("busy-writer"), b"a blob being written").unwrap();

        let grace = Duration::from_secs(3600);
        fixture.store.gc(&[], grace, true).await.unwrap();
        assert_eq!(
            names_in(&tmp),
            ["busy-writer", "killed-writer"],
            "a dry run removes nothing"
        );
        fixture.store.gc(&[], grace, false).await.unwrap();
        assert_eq!(names_in(&tmp), ["busy-writer"]);
    }

    #[tokio::test]
    async fn writes_leave_no_temporaries_and_blobs_are_read_only() {
        let fixture = Fixture::local();
        let scratch = tempfile::tempdir().unwrap();
        let (tree_digest, tree) =
            publish(&fixture.store, scratch.path(), "model", &sample_files()).await;
        fixture
            .store
            .publish_dir(&scratch.path().join("model"))
            .await
            .unwrap();
        fixture
            .store
            .put_bytes(Bytes::from_static(b"bytes"))
            .await
            .unwrap();
        fixture
            .store
            .put_bytes(Bytes::from_static(b"bytes"))
            .await
            .unwrap();
        assert!(names_in(&root(&fixture).join("tmp")).is_empty());

        let digests = tree
            .iter()
            .map(|(_, entry)| entry.digest)
            .chain([tree_digest.cast()]);
        for digest in digests {
            let path = root(&fixture).join(blob_location(digest));
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o222, 0, "{} has mode {mode:o}", path.display());
        }
    }

    #[tokio::test]
    async fn quarantine_keeps_the_corrupt_bytes() {
        let fixture = Fixture::local();
        let digest = fixture
            .store
            .put_bytes(Bytes::from_static(b"original"))
            .await
            .unwrap();
        fixture
            .backdoor
            .overwrite(&blob_location(digest), b"bit rot")
            .await;
        assert!(matches!(
            fixture.store.get_bytes(digest).await,
            Err(Error::Corrupt { .. })
        ));
        let quarantine = root(&fixture).join("quarantine");
        let names = names_in(&quarantine);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with(&digest.hex()), "{names:?}");
        assert_eq!(fs::read(quarantine.join(&names[0])).unwrap(), b"bit rot");
    }
}
