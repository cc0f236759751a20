//! Checks on action records and documents: the one door into the action cache refuses
//! incomplete outputs, and a record whose outputs went missing or bad is broken, never a hit.

use super::*;

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

    // A lost log (say, quarantined as corrupt) breaks the record as a lost file does.
    backdoor.remove(&blob_location(log)).await;
    expect_broken(store.lookup(complete.key).await.unwrap(), &log.to_string());
    store.put_bytes(Bytes::from_static(b"log")).await.unwrap();
    expect_hit(store.lookup(complete.key).await.unwrap(), &complete);
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
    let (tree_digest, _) = publish(store, scratch.path(), "out", &files(&[("a.txt", b"a")])).await;
    let filed_elsewhere =
        encoding::encode_record(&record(ActionKey::of(b"another key"), tree_digest, None));
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

/// A record cut short anywhere (a full disk, a torn copy) is a clear error naming the key and
/// the file, and a broken lookup; never a panic.
pub async fn truncated_record_is_a_clear_error(store: &Store, backdoor: &Backdoor) {
    let scratch = tempfile::tempdir().unwrap();
    let (tree_digest, _) = publish(store, scratch.path(), "out", &files(&[("a.txt", b"a")])).await;
    let good = record(ActionKey::of(b"truncated"), tree_digest, None);
    store.put_action(&good).await.unwrap();
    let bytes = encoding::encode_record(&good);
    let location = action_location(good.key);
    for end in 0..bytes.len() {
        backdoor.overwrite(&location, &bytes[..end]).await;
        let error = store.get_action(good.key).await.unwrap_err();
        let message = error.to_string();
        match error {
            Error::MalformedRecord { key, .. } => assert_eq!(key, good.key),
            other => panic!("expected MalformedRecord, got {other:?}"),
        }
        assert!(message.contains(&good.key.to_string()), "{message}");
        assert!(message.contains(&location), "{message}");
        expect_broken(store.lookup(good.key).await.unwrap(), &location);
    }
    backdoor.overwrite(&location, &bytes).await;
    expect_hit(store.lookup(good.key).await.unwrap(), &good);
    // What an older peirce wrote there is named as such.
    let old_json = serde_json::to_vec_pretty(&good).unwrap();
    backdoor.overwrite(&location, &old_json).await;
    let message = store.get_action(good.key).await.unwrap_err().to_string();
    assert!(
        message.contains("older peirce (store schema 1)"),
        "{message}"
    );
}

/// A tree encoding cut short (stored under the digest of the short bytes, so it verifies as a
/// blob) is a clear error naming the tree and its file.
pub async fn truncated_tree_encoding_is_a_clear_error(store: &Store) {
    let mut tree = Tree::new();
    for name in ["a.txt", "sub/b.txt"] {
        let digest = store
            .put_bytes(Bytes::from(name.as_bytes().to_vec()))
            .await
            .unwrap();
        let entry = TreeEntry {
            digest,
            size: name.len() as u64,
            executable: false,
        };
        tree.insert(name, entry).unwrap();
    }
    let bytes = tree.encode();
    for end in [0, 3, 6, 7, bytes.len() / 2, bytes.len() - 1] {
        let digest: TreeDigest = store
            .put_bytes(Bytes::from(bytes[..end].to_vec()))
            .await
            .unwrap()
            .cast();
        let location = blob_location(digest.cast());
        let error = store.get_tree(digest).await.unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, Error::MalformedTree { digest: named, .. } if named == digest),
            "{message}"
        );
        assert!(message.contains(&location), "{message}");
        let reason = store.check_tree(digest).await.unwrap().unwrap_err();
        assert!(reason.contains(&location), "{reason}");
        let pointing = record(ActionKey::of(&bytes[..end]), digest, None);
        expect_incomplete(store, &pointing, &digest.to_string()).await;
    }
}
