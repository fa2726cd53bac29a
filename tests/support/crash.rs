//! The writer of the crash-safety tests, shared by the test (which checks what it left) and the
//! `crash-writer` binary (which the test starts and kills).

use std::sync::Arc;

use typed_sessions::store::{Applied, Created, SessionStore};
use typed_sessions::store::{Changes, Record};
use typed_sessions::{FileStore, SqliteStore};

use crate::{fresh_key, millis_from_now};

/// What the writer prints once its store is open and it starts writing.
pub const READY: &str = "crash writer: store open, writing";

/// A record whose `a` and `b` are both `n`, plus some bulk so that writes take a moment.
pub fn record_with(n: u64) -> Record {
    let mut record = Record::new(millis_from_now(0), millis_from_now(3_600_000));
    record.values.insert("a", n.to_string());
    record.values.insert("b", n.to_string());
    record.values.insert("bulk", format!("\"{}\"", "x".repeat(8 * 1024)));
    record.flash.insert("notice", format!("\"{n}\""));
    record
}

/// Sets `a` and `b` to `n` in one patch: a record with `a != b` was torn.
pub fn pair(n: u64) -> Changes {
    let mut changes = Changes::default();
    changes.values.insert("a", Some(n.to_string()));
    changes.values.insert("b", Some(n.to_string()));
    changes
}

/// Writes sessions to the store `spec` names (`sqlite:<file>` or `file:<dir>`) until killed:
/// new records, patches that set `a` and `b` together, concurrent patches of one hot session,
/// deletes.
pub async fn write_until_killed(spec: &str) {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        write_to(Arc::new(SqliteStore::open(path).await.unwrap())).await
    } else if let Some(dir) = spec.strip_prefix("file:") {
        write_to(Arc::new(FileStore::open(dir).unwrap())).await
    } else {
        panic!("store {spec:?}: expected sqlite:<file> or file:<dir>")
    }
}

async fn write_to<S: SessionStore>(store: Arc<S>) {
    let hot = fresh_key();
    assert_eq!(store.create(&hot, &record_with(0)).await.unwrap(), Created::Created);
    println!("{READY}");
    let writers: Vec<_> = (0..4u64)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut n = task * 1_000_000_000;
                loop {
                    n += 1;
                    let key = fresh_key();
                    assert_eq!(store.create(&key, &record_with(n)).await.unwrap(), Created::Created);
                    for i in 0..5 {
                        n += 1;
                        let mut changes = pair(n);
                        changes.values.insert(format!("i{i}"), Some(i.to_string()));
                        assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
                        // Several writers patch one session at once.
                        let mut changes = pair(n);
                        changes.values.insert(format!("task{task}"), Some(n.to_string()));
                        changes.expires_at = Some(millis_from_now(3_600_000));
                        assert_eq!(store.apply(&hot, &changes).await.unwrap(), Applied::Applied);
                    }
                    if n % 3 == 0 {
                        store.delete(&key).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}
