//! Crash safety of the embedded stores: a child process writes sessions as fast as it can and is
//! killed with SIGKILL at a random moment; then every record it left must load whole, and the
//! store must keep working.
//!
//! The child is the `crash-writer` binary of this package (`crash_writer.rs`), given the store
//! to open as its argument.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use typed_sessions::store::{Applied, Created, SessionStore, StoreKey};
use typed_sessions::{FileStore, SqliteStore};
use typed_sessions_tests::crash::{pair, record_with, READY};
use typed_sessions_tests::fresh_key;

const ROUNDS: usize = 4;

fn random_below(bound: u64) -> u64 {
    RandomState::new().build_hasher().finish() % bound
}

/// Starts the child on `spec`, waits until it writes, lets it run 100–600 ms, kills it.
fn run_and_kill_child(spec: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            if line.is_ok_and(|line| line.contains(READY)) {
                let _ = ready.send(());
            }
        }
    });
    if started.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("the crash child did not start writing within 30 s: {:?}", child.wait());
    }
    std::thread::sleep(Duration::from_millis(100 + random_below(501)));
    if let Some(status) = child.try_wait().unwrap() {
        panic!("the crash child stopped by itself ({status}): a write failed, see its output above");
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush, no unlock runs
    child.wait().unwrap();
}

/// Every record loads whole; returns how many there are.
async fn check_records(store: &impl SessionStore, keys: &[StoreKey]) -> usize {
    for key in keys {
        let record = match store.load(key).await {
            Ok(Some(record)) => record,
            other => panic!("record {key:?} after the crash: {other:?}"),
        };
        let (a, b) = (record.values.get("a"), record.values.get("b"));
        assert!(a.is_some() && a == b, "a torn record: a = {a:?}, b = {b:?}");
        assert!(record.values.contains_key("bulk"), "a record lost its bulk");
    }
    keys.len()
}

/// The store still takes new sessions and changes after the crash.
/// The value stored under `name` in the record under `key`, which must exist.
async fn stored_value(store: &impl SessionStore, key: &StoreKey, name: &str) -> Option<String> {
    let record = store.load(key).await.unwrap().expect("the record exists");
    record.values.get(name).map(str::to_owned)
}

async fn check_still_works(store: &impl SessionStore, keys: &[StoreKey]) {
    let key = fresh_key();
    assert_eq!(store.create(&key, &record_with(7)).await.unwrap(), Created::Created);
    assert_eq!(store.apply(&key, &pair(8)).await.unwrap(), Applied::Applied);
    assert_eq!(stored_value(store, &key, "a").await.as_deref(), Some("8"));
    if let Some(old) = keys.first() {
        assert_eq!(store.apply(old, &pair(9)).await.unwrap(), Applied::Applied);
        assert_eq!(stored_value(store, old, "b").await.as_deref(), Some("9"));
    }
    store.delete_expired().await.unwrap();
    store.delete(&key).await.unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let runtime = runtime();
    let mut seen = 0;
    for _ in 0..ROUNDS {
        run_and_kill_child(&format!("sqlite:{}", path.display()));
        seen += runtime.block_on(async {
            let store = SqliteStore::open(&path).await.unwrap();
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(check, "ok");
            let keys: Vec<StoreKey> = sqlx::query_scalar::<_, String>("SELECT key FROM typed_sessions")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|hex| StoreKey::from_hex(hex).expect("a key column that is not a store key"))
                .collect();
            let seen = check_records(&store, &keys).await;
            eprintln!("sqlite: {seen} records whole after SIGKILL");
            check_still_works(&store, &keys).await;
            store.pool().close().await;
            seen
        });
    }
    assert!(seen > 0, "the child never wrote a record");
}

fn record_keys(dir: &Path) -> Vec<StoreKey> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            StoreKey::from_hex(name.strip_suffix(".json")?)
        })
        .collect()
}

#[test]
fn file_store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let mut seen = 0;
    for _ in 0..ROUNDS {
        run_and_kill_child(&format!("file:{}", dir.path().display()));
        seen += runtime.block_on(async {
            let store = FileStore::open(dir.path()).unwrap();
            let keys = record_keys(dir.path());
            let temps = std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
                .count();
            let seen = check_records(&store, &keys).await;
            eprintln!("file: {seen} records whole after SIGKILL ({temps} temporary files left by the kill)");
            check_still_works(&store, &keys).await;
            // The sweep removed whatever temporary file the kill left behind.
            let leftovers: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.ends_with(".tmp"))
                .collect();
            assert!(
                leftovers.is_empty(),
                "temporary files survived delete_expired: {leftovers:?}"
            );
            seen
        });
    }
    assert!(seen > 0, "the child never wrote a record");
}
