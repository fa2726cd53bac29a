//! `MemoryStore` against the conformance suite, under writers on several threads, and full.

use std::sync::Arc;

use std::time::{Duration, SystemTime};

use typed_sessions::store::{conformance, Applied, Created, SessionStore, StoreKey};
use typed_sessions::store::{Changes, Record};
use typed_sessions::{MemoryStore, SessionId};

#[tokio::test]
async fn passes_the_conformance_suite() {
    conformance::run(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_several_threads_never_lose_each_others_keys() {
    let store = Arc::new(MemoryStore::new());
    let key = SessionId::random().store_key();
    let now = std::time::SystemTime::now();
    store
        .create(&key, &Record::new(now, now + std::time::Duration::from_secs(60)))
        .await
        .unwrap();

    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for round in 0..200 {
                    let mut changes = Changes::default();
                    changes.values.insert(format!("w{writer}"), Some(round.to_string()));
                    assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let record = store.load(&key).await.unwrap().unwrap();
    for writer in 0..8 {
        assert_eq!(record.values.get(&format!("w{writer}")), Some("199"));
    }
}

/// A record created now that expires `in_secs` from now (in the past when negative).
fn record_expiring(in_secs: i64) -> Record {
    let now = SystemTime::now();
    let expires_at = if in_secs >= 0 {
        now + Duration::from_secs(in_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(in_secs.unsigned_abs())
    };
    Record::new(now, expires_at)
}

async fn create_all(store: &MemoryStore, count: usize, expiring_in_secs: i64) -> Vec<StoreKey> {
    let mut keys = Vec::new();
    for _ in 0..count {
        let key = SessionId::random().store_key();
        let created = store.create(&key, &record_expiring(expiring_in_secs)).await.unwrap();
        assert_eq!(created, Created::Created);
        if expiring_in_secs > 0 {
            assert!(
                store.load(&key).await.unwrap().is_some(),
                "the session being written was evicted"
            );
        }
        keys.push(key);
    }
    keys
}

async fn live(store: &MemoryStore, keys: &[StoreKey]) -> usize {
    let mut live = 0;
    for key in keys {
        live += usize::from(store.load(key).await.unwrap().is_some());
    }
    live
}

#[tokio::test]
async fn a_full_store_never_holds_more_than_its_bound() {
    let store = MemoryStore::with_max_sessions(160);
    assert_eq!(store.max_sessions(), 160);
    create_all(&store, 5_000, 3_600).await;
    assert!(store.len() <= 160, "{} records in a store bounded to 160", store.len());
    assert!(store.len() >= 100, "a full store kept only {} of 160", store.len());
    assert_eq!(
        MemoryStore::with_max_sessions(0).max_sessions(),
        16,
        "at least one per shard"
    );
    assert_eq!(MemoryStore::new().max_sessions(), 1_000_000, "the documented default");
}

#[tokio::test]
async fn a_full_store_drops_expired_records_first_then_those_closest_to_expiry() {
    let store = MemoryStore::with_max_sessions(16_000);
    let expired = create_all(&store, 16_000, -1).await;
    let soon = create_all(&store, 8_000, 600).await;
    assert_eq!(
        live(&store, &soon).await,
        8_000,
        "room was made from expired records only"
    );
    assert!(
        store.len() <= 16_000 && store.len() >= 8_000,
        "{} records: the expired ones were not dropped",
        store.len()
    );
    drop(expired);

    // Each shard holds a sixteenth of the bound (1,000): about 500 sessions expiring soon and
    // 500 expiring later each (± 22), so about half the shards overflow, but no shard comes near
    // more later ones than fit.
    let later = create_all(&store, 8_000, 7_200).await;
    assert_eq!(
        live(&store, &later).await,
        8_000,
        "a session expiring later was evicted while sessions closer to expiry were kept"
    );
    assert!(live(&store, &soon).await < 8_000, "nothing was evicted");
    assert!(store.len() <= 16_000);
}
