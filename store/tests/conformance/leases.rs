//! Checks on leases: exclusive while live, taken over once expired, one winner in a race.

use super::*;

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
    // (That it is exclusive while live is checked above with a long ttl: 50ms is too short
    // to assert anything before it runs out on a busy machine.)
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

/// Taking over an expired lease goes through a takeover marker named after the expired
/// lease, created with a conditional create: exactly one racer wins, and it keeps the lease.
pub async fn racing_for_an_expired_lease_leaves_one_holder(store: &Store) {
    let key = ActionKey::of(b"expired race");
    store
        .try_lease(key, "gone", Duration::from_millis(20))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let winners = race(store, key, 16).await;
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer takes over: {winners:?}"
    );
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
