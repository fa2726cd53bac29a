//! `MemoryStore` against the conformance suite, and under writers on several threads.

use std::sync::Arc;

use typed_sessions::store::{conformance, Applied, SessionStore};
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
