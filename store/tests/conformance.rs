//! The store conformance suite: one set of checks that every backend must pass.
//!
//! Each check is an async function (in `conformance/{blobs,actions,leases,gc}.rs`, gathered
//! in `suite`). Most take only the `&Store` under test; the ones that damage the store on
//! purpose (corrupt or delete a blob, plant a malformed record) also take a [`Backdoor`]: a
//! second way to reach the same objects without going through the store, as a disk fault, a
//! careless user or another process would. The `conformance!` macro turns the whole suite into
//! `#[tokio::test]`s for one backend, so adding a backend is one line next to the others, for
//! example once `Store::from_object_store` is given an `AmazonS3`:
//!
//! ```text
//! conformance!(s3 => match s3_backend::fixture() { Some(fixture) => fixture, None => return });
//! ```
//!
//! A fixture expression may `return` to skip a backend that is not configured on this machine:
//! the S3 backend runs against the server named by `PEIRCE_TEST_S3_ENDPOINT` (scripts/test
//! starts a moto server and sets it), each test in a bucket of its own.
//!
//! What only one backend has (temporary files, the quarantine folder, file modes of stored
//! blobs) is tested in `local_only` at the end, not in the suite.

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
use peirce_store::encoding;
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

    /// A store opened from `url`, whose objects the backdoor reaches through `object`, a
    /// second client of the same bucket and prefix.
    fn opened(url: &str, object: Arc<dyn ObjectStore>) -> Self {
        Fixture {
            store: peirce_store::open_store(url).expect("the store URL opens"),
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
            gc_skips_a_missing_live_record
            gc_keeps_the_blobs_it_is_given
            truncated_tree_encoding_is_a_clear_error
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
            gc_stops_on_an_unreadable_live_record
            gc_stops_on_an_unreadable_live_tree
            truncated_record_is_a_clear_error
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
conformance!(s3 => match s3_backend::fixture() { Some(fixture) => fixture, None => return });

#[path = "conformance/s3.rs"]
mod s3_backend;

// ---------------------------------------------------------------- the suite

#[path = "conformance/support.rs"]
mod support;
use support::*;

#[path = "conformance/actions.rs"]
mod actions;
#[path = "conformance/blobs.rs"]
mod blobs;
#[path = "conformance/gc.rs"]
mod gc;
#[path = "conformance/leases.rs"]
mod leases;

/// Every check, by the name the `conformance!` macro calls it.
mod suite {
    pub use super::actions::*;
    pub use super::blobs::*;
    pub use super::gc::*;
    pub use super::leases::*;
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

    /// A writer killed in the middle of an object_store put leaves its staging file
    /// (`<name>#<n>`) beside the name it was writing (found in `ac/` by tests/faults.rs).
    /// Nothing reads it as a record; gc removes it once it is older than the grace period.
    #[tokio::test]
    async fn gc_sweeps_old_staging_files_of_killed_writers() {
        let fixture = Fixture::local();
        let ac = root(&fixture).join("ac");
        let refs = root(&fixture).join("refs");
        let old_staging = ac.join(format!("{}#1", "ab".repeat(32)));
        fs::write(&old_staging, b"").unwrap();
        fs::File::options()
            .write(true)
            .open(&old_staging)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        fs::write(refs.join("workflow-x#3"), b"").unwrap();
        fs::File::options()
            .write(true)
            .open(refs.join("workflow-x#3"))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        let young_staging = ac.join(format!("{}#2", "cd".repeat(32)));
        fs::write(&young_staging, b"").unwrap();

        let grace = Duration::from_secs(3600);
        fixture.store.gc(&[], grace, true).await.unwrap();
        assert!(old_staging.exists(), "a dry run removes nothing");
        fixture.store.gc(&[], grace, false).await.unwrap();
        assert!(!old_staging.exists());
        assert!(!refs.join("workflow-x#3").exists());
        assert!(young_staging.exists(), "a writer may still be at work");
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

    /// A sparse file of `length` bytes: zeros but for `head` at its start and `tail` at its
    /// end. Returns its digest.
    fn write_sparse(path: &Path, length: u64) -> BlobDigest {
        use std::os::unix::fs::FileExt;
        let file = fs::File::create(path).unwrap();
        file.set_len(length).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        file.write_all_at(b"tail", length - 4).unwrap();
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"head");
        let zeros = vec![0u8; 1 << 20];
        let mut left = length - 8;
        while left > 0 {
            let step = left.min(zeros.len() as u64) as usize;
            hasher.update(&zeros[..step]);
            left -= step as u64;
        }
        hasher.update(b"tail");
        BlobDigest::from_bytes(*hasher.finalize().as_bytes())
    }

    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().blocks() * 512
    }

    /// Other processes linking a blob into their nodes' inputs, or removing a published
    /// output's name, change only the blob file's change time. A reader hashing the blob
    /// meanwhile must not take that for tampering: the blob is never quarantined, every
    /// reader gets the right bytes.
    #[tokio::test]
    async fn links_made_and_removed_while_a_blob_is_read_are_not_tampering() {
        let fixture = Fixture::local();
        let bytes = Bytes::from(vec![7u8; 8 << 20]);
        let digest = fixture.store.put_bytes(bytes.clone()).await.unwrap();
        let blob = root(&fixture).join(blob_location(digest));
        let churn_dir = tempfile::tempdir().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (blob, stop) = (blob.clone(), stop.clone());
            let link = churn_dir.path().join("link");
            std::thread::spawn(move || {
                let mut changes = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    fs::hard_link(&blob, &link).unwrap();
                    fs::remove_file(&link).unwrap();
                    changes += 1;
                }
                changes
            })
        };
        let dest = tempfile::tempdir().unwrap();
        for reader in 0..20 {
            // A fresh process's view: nothing remembered as verified.
            let store = Store::open_local(&root(&fixture)).unwrap();
            let path = dest.path().join(format!("copy-{reader}"));
            store.get_to_file(digest, &path, false).await.unwrap();
            assert_eq!(fs::read(&path).unwrap(), bytes);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(churn.join().unwrap() > 0);
        assert!(blob.exists(), "the blob was quarantined");
        assert!(names_in(&root(&fixture).join("quarantine")).is_empty());
    }

    /// Publishing bytes the store already holds keeps its file even when this process no
    /// longer vouches for the file's stamp (other nodes' links and input checks move its
    /// change time): the file is hashed and kept, not replaced, so a node that holds it as
    /// its input and replaced its own name for it still finds it in the store when its
    /// input is checked. Found by the meta-alignment test: two verify nodes shared an input
    /// file, one published the same bytes while the other ran, and the other's check said
    /// its input had left the store.
    #[tokio::test]
    async fn publishing_bytes_the_store_holds_keeps_the_file_nodes_hold() {
        use std::os::unix::fs::MetadataExt;
        let fixture = Fixture::local();
        let scratch = tempfile::tempdir().unwrap();
        let source = scratch.path().join("source");
        fs::create_dir(&source).unwrap();
        fs::write(source.join("reward.py"), b"def reward(): return 1\n").unwrap();
        let (tree, listing) = fixture.store.publish_dir(&source).await.unwrap();
        let digest = listing.get("reward.py").unwrap().digest;
        let blob = root(&fixture).join(blob_location(digest));
        let inode = fs::metadata(&blob).unwrap().ino();

        let node = scratch.path().join("node");
        let input = fixture.store.materialize_input(tree, &node).await.unwrap();
        // The node replaces its link by a copy of the same bytes (allowed: the store is
        // untouched), and the blob's change time moves as another node's link moves it.
        let linked = node.join("reward.py");
        let bytes = fs::read(&linked).unwrap();
        fs::remove_file(&linked).unwrap();
        fs::write(&linked, &bytes).unwrap();
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o444)).unwrap();

        // Another node publishes the same bytes.
        let output = scratch.path().join("output");
        fs::create_dir(&output).unwrap();
        fs::write(output.join("copy.py"), &bytes).unwrap();
        fixture.store.publish_dir(&output).await.unwrap();
        assert_eq!(
            fs::metadata(&blob).unwrap().ino(),
            inode,
            "the blob was replaced"
        );
        assert_eq!(fixture.store.check_input(&input).await.unwrap(), vec![]);

        // A blob whose bytes no longer match its name is still replaced by a sound copy.
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&blob, b"def reward(): return 0\n").unwrap();
        fixture.store.publish_dir(&output).await.unwrap();
        assert_ne!(fs::metadata(&blob).unwrap().ino(), inode);
        assert_eq!(fs::read(&blob).unwrap(), bytes);
    }

    /// A node's output folder is published without copying: a 1 GiB sparse file becomes the
    /// blob itself (one inode), holes and all, so publishing takes no extra disk. A file with
    /// another name outside the folder is copied, and the copy keeps its holes too.
    #[tokio::test]
    async fn owned_outputs_are_linked_not_copied_and_sparse_files_stay_sparse() {
        use std::os::unix::fs::MetadataExt;
        const LENGTH: u64 = 1 << 30;
        let fixture = Fixture::local();
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        fs::create_dir(&out).unwrap();
        let sparse = out.join("sparse.bin");
        let sparse_digest = write_sparse(&sparse, LENGTH);
        let sparse_inode = fs::metadata(&sparse).unwrap().ino();
        let shared = out.join("shared.bin");
        let shared_digest = write_sparse(&shared, LENGTH / 16);
        fs::hard_link(&shared, scratch.path().join("elsewhere.bin")).unwrap();
        if allocated(&sparse) >= 1 << 20 {
            eprintln!("skipped: this file system does not keep holes");
            return;
        }

        let (_, tree) = fixture.store.publish_owned_dir(&out).await.unwrap();
        let entry = tree.get("sparse.bin").unwrap();
        assert_eq!((entry.digest, entry.size), (sparse_digest, LENGTH));
        let blob = root(&fixture).join(blob_location(sparse_digest));
        let metadata = fs::metadata(&blob).unwrap();
        assert_eq!(metadata.len(), LENGTH);
        assert_eq!(metadata.ino(), sparse_inode, "the output was copied");
        assert!(
            allocated(&blob) < 1 << 20,
            "{} bytes on disk",
            allocated(&blob)
        );
        assert_eq!(metadata.permissions().mode() & 0o222, 0);

        let entry = tree.get("shared.bin").unwrap();
        assert_eq!(entry.digest, shared_digest);
        let blob = root(&fixture).join(blob_location(shared_digest));
        assert_ne!(
            fs::metadata(&blob).unwrap().ino(),
            fs::metadata(&shared).unwrap().ino(),
            "a file with another name was taken instead of copied"
        );
        assert!(
            allocated(&blob) < 1 << 20,
            "{} bytes on disk",
            allocated(&blob)
        );
        assert!(names_in(&root(&fixture).join("tmp")).is_empty());

        // A plain publish copies (the folder stays the caller's), sparsely as well.
        let other = scratch.path().join("other");
        fs::create_dir(&other).unwrap();
        let digest = write_sparse(&other.join("x.bin"), LENGTH / 8);
        fixture.store.publish_dir(&other).await.unwrap();
        let blob = root(&fixture).join(blob_location(digest));
        assert_ne!(
            fs::metadata(&blob).unwrap().ino(),
            fs::metadata(other.join("x.bin")).unwrap().ino()
        );
        assert!(
            allocated(&blob) < 1 << 20,
            "{} bytes on disk",
            allocated(&blob)
        );
        // Read back, verified: the linked blob hashes to its name.
        let dest = scratch.path().join("restored");
        fixture
            .store
            .get_to_file(sparse_digest, &dest, false)
            .await
            .unwrap();
        assert_eq!(fs::metadata(&dest).unwrap().len(), LENGTH);
    }

    /// Every regular file under `dir` with its bytes.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        walk_files(dir)
            .unwrap()
            .into_iter()
            .map(|(_, path)| {
                let bytes = fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect()
    }

    /// A store written before the schema file existed (schema 1: JSON records and trees) is
    /// refused with a message that says what to do, and left exactly as it was.
    #[test]
    fn a_store_of_an_older_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let tree = br#"{"peirce_tree":1,"entries":{}}"#;
        let tree_hex = BlobDigest::of(tree).hex();
        let key_hex = ActionKey::of(b"old").hex();
        for (location, bytes) in [
            (format!("cas/{}/{tree_hex}", &tree_hex[..2]), &tree[..]),
            (
                format!("ac/{key_hex}"),
                format!(r#"{{"key": "blake3:{key_hex}", "output": "blake3:{tree_hex}"}}"#)
                    .as_bytes(),
            ),
            ("runs/run-1".to_string(), br#"{"id": "run-1"}"#),
            ("statcache.json".to_string(), b"{}"),
        ] {
            let path = root.join(location);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        fs::create_dir_all(root.join("leases")).unwrap();
        let before = snapshot(&root);

        let error = Store::open_local(&root)
            .err()
            .expect("an old store is refused");
        let message = error.to_string();
        assert!(
            matches!(error, Error::SchemaMismatch { found: 1, .. }),
            "{message}"
        );
        let shown = root.canonicalize().unwrap().display().to_string();
        assert!(message.contains(&shown), "{message}");
        assert!(
            message.contains("older peirce (store schema 1)"),
            "{message}"
        );
        assert!(message.contains("move the folder away"), "{message}");
        assert_eq!(snapshot(&root), before, "the old store is left as it was");
        assert!(!root.join(peirce_store::store::SCHEMA_FILE).exists());
        // Asking again gives the same answer: nothing was half-migrated.
        assert!(matches!(
            Store::open_local(&root),
            Err(Error::SchemaMismatch { found: 1, .. })
        ));
    }

    #[test]
    fn a_new_store_records_its_schema_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Store::open_local(&root).unwrap();
        let schema_file = root.join(peirce_store::store::SCHEMA_FILE);
        let text = fs::read_to_string(&schema_file).unwrap();
        assert_eq!(text, format!("peirce-store {}\n", encoding::SCHEMA));
        Store::open_local(&root).expect("a store of this schema opens again");

        fs::write(&schema_file, "peirce-store 99\n").unwrap();
        let message = Store::open_local(&root).err().unwrap().to_string();
        assert!(
            message.contains("newer peirce (store schema 99)"),
            "{message}"
        );
        fs::write(&schema_file, "something else").unwrap();
        let message = Store::open_local(&root).err().unwrap().to_string();
        assert!(message.contains("something else"), "{message}");
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
