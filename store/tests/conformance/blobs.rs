//! Checks on blobs, files and trees: round trips, idempotent writes, content-only digests,
//! and what happens to a blob corrupted behind the store's back.

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

pub async fn corrupt_blob_is_reported_quarantined_and_healed(store: &Store, backdoor: &Backdoor) {
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
