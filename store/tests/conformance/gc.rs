//! Checks on gc: what no live action reaches goes, what one does (or what is young) stays.

use super::*;

/// Two actions sharing a file: `live` (listed as live in gc) and `dead` (not), plus a blob
/// no record reaches. Source files are made two hours old first, so a backend that carried
/// a source file's time over to its blob (a hard link would) loses fresh blobs to the grace
/// period.
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
    // Reached by nothing, and (unlike the files above) not protected by a young record.
    let orphan_path = scratch.path().join("orphan.txt");
    fs::write(&orphan_path, b"reached by nothing").unwrap();
    age_folder(scratch.path(), Duration::from_secs(7200));
    let (orphan, _) = store.put_file(&orphan_path).await.unwrap();
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

/// `gc_keeping` keeps blobs no record names (the logs of failed nodes, named by run records).
pub async fn gc_keeps_the_blobs_it_is_given(store: &Store) {
    let scene = gc_scene(store).await;
    let orphan = *scene.dead_blobs.last().expect("the orphan comes last");
    let report = store
        .gc_keeping(&[scene.live.key], &[orphan], Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!((report.live_blobs, report.removed_blobs), (5, 4));
    assert_eq!(present(store, &[orphan]).await, [true]);
    assert_eq!(present(store, &scene.live_blobs).await, [true; 4]);
    store
        .gc(&[scene.live.key], Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(present(store, &[orphan]).await, [false]);
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
    // The young record must still be younger than this when gc lists it: keep a margin for
    // a busy machine.
    let grace = Duration::from_millis(1500);
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

/// A live record that exists but cannot be read reaches blobs nobody can name: gc must stop,
/// name it, and delete nothing, not even what is plainly dead (the record may be damage that
/// the next run, or a restored backup, repairs).
pub async fn gc_stops_on_an_unreadable_live_record(store: &Store, backdoor: &Backdoor) {
    let scene = gc_scene(store).await;
    let location = action_location(scene.live.key);
    let garbage: &[u8] = b"\x00\x01 not a record";
    backdoor.overwrite(&location, garbage).await;
    let error = store
        .gc(&[scene.live.key], Duration::ZERO, false)
        .await
        .expect_err("gc stops on an unreadable live record");
    match &error {
        Error::UnreadableLiveRecord { key, .. } => assert_eq!(*key, scene.live.key),
        other => panic!("expected UnreadableLiveRecord, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&scene.live.key.to_string()), "{message}");
    assert!(message.contains(&location), "{message}");
    assert_eq!(present(store, &scene.live_blobs).await, [true; 4]);
    assert_eq!(present(store, &scene.dead_blobs).await, [true; 5]);
    assert!(backdoor.exists(&location).await, "the damaged record stays");
    expect_hit(store.lookup(scene.dead.key).await.unwrap(), &scene.dead);
    assert_eq!(
        store.producer_of(scene.dead.output).await.unwrap(),
        Some(scene.dead.key)
    );

    // Once the record is good again, gc goes ahead.
    store.put_action(&scene.live).await.unwrap();
    let report = store
        .gc(&[scene.live.key], Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!((report.removed_blobs, report.removed_actions), (5, 1));
}

/// The same for a live record whose output tree is present but does not verify.
pub async fn gc_stops_on_an_unreadable_live_tree(store: &Store, backdoor: &Backdoor) {
    let scene = gc_scene(store).await;
    let tree_location = blob_location(scene.live.output.cast());
    backdoor.overwrite(&tree_location, b"bit rot").await;
    let error = store
        .gc(&[scene.live.key], Duration::ZERO, false)
        .await
        .expect_err("gc stops on an unreadable live tree");
    let message = error.to_string();
    assert!(
        matches!(error, Error::UnreadableLiveRecord { key, .. } if key == scene.live.key),
        "{message}"
    );
    assert!(
        message.contains(&scene.live.output.to_string()),
        "{message}"
    );
    // Everything but the corrupt tree (quarantined on read) is still there.
    assert_eq!(present(store, &scene.live_blobs[1..]).await, [true; 3]);
    assert_eq!(present(store, &scene.dead_blobs).await, [true; 5]);
}

/// A live key without a record reaches nothing: gc goes ahead without it.
pub async fn gc_skips_a_missing_live_record(store: &Store) {
    let scene = gc_scene(store).await;
    let never_recorded = ActionKey::of(b"live but never recorded");
    let report = store
        .gc(&[scene.live.key, never_recorded], Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(
        (
            report.live_actions,
            report.removed_blobs,
            report.removed_actions
        ),
        (1, 5, 1)
    );
    assert_eq!(present(store, &scene.live_blobs).await, [true; 4]);
}
