//! `SqliteStore`: the conformance suite, plus what is particular to SQLite (the stored form,
//! table names, several pools on one file, corrupt rows).

use std::sync::Arc;

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use typed_sessions::store::{conformance, Created, SessionStore, StoreError};
use typed_sessions::{Expiry, SessionId, SqliteStore};
use typed_sessions_tests::to_unix_millis;
use typed_sessions_tests::{fresh_key, live_record, millis_from_now, race_until_both_sides, set_value};

#[tokio::test]
async fn conformance_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
    conformance::run(&store).await;
    assert!(dir.path().join("sessions.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_multi_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
    conformance::run(&store).await;
}

/// A session table made before sessions had owners (no `owner` column) gains it when the store
/// opens it, keeps its rows, and then passes the whole suite.
#[tokio::test]
async fn a_table_made_before_owners_gains_its_owner_column() {
    let dir = tempfile::tempdir().unwrap();
    let pool = SqlitePool::connect_with(SqliteStore::connect_options(dir.path().join("old.db")))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE typed_sessions (key TEXT PRIMARY KEY NOT NULL, data_values TEXT NOT NULL, \
         flash TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, expiry TEXT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let old = fresh_key();
    sqlx::query("INSERT INTO typed_sessions VALUES (?1, '{\"user_id\":7}', '{}', 0, ?2, NULL)")
        .bind(old.to_hex())
        .bind(to_unix_millis(millis_from_now(3_600_000)))
        .execute(&pool)
        .await
        .unwrap();
    let store = SqliteStore::from_pool(pool).await.unwrap();
    let record = store.load(&old).await.unwrap().expect("the old row is still there");
    assert_eq!(record.values.get("user_id"), Some("7"));
    assert_eq!(record.owner, None);
    conformance::run(&store).await;
    // Opening it again finds the column there and changes nothing.
    SqliteStore::from_pool(store.pool().clone()).await.unwrap();
}

#[tokio::test]
async fn conformance_on_an_existing_pool_with_a_custom_table() {
    let dir = tempfile::tempdir().unwrap();
    let pool = SqlitePool::connect_with(SqliteStore::connect_options(dir.path().join("app.db")))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let store = SqliteStore::from_pool_with_table(pool.clone(), "app_sessions")
        .await
        .unwrap();
    assert_eq!(store.table_name(), "app_sessions");
    conformance::run(&store).await;

    // Opening again on an existing table is fine, and the app's own tables are untouched.
    let again = SqliteStore::from_pool_with_table(pool.clone(), "app_sessions")
        .await
        .unwrap();
    conformance::round_trip(&again).await;
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(tables, ["app_sessions", "users"]);
}

#[tokio::test]
async fn conformance_in_memory_with_one_connection() {
    // As `SqliteStore::from_pool` advises for an in-memory database: one connection, never
    // closed (the suite drops calls while their connection may be being tested).
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let store = SqliteStore::from_pool(pool).await.unwrap();
    assert_eq!(store.table_name(), "typed_sessions");
    conformance::run(&store).await;
}

#[tokio::test]
async fn table_names_must_be_identifiers() {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    for bad in [
        "",
        "1abc",
        "sessions; DROP TABLE users",
        "a\"b",
        "my-sessions",
        "sqlite_sessions",
        "sé",
    ] {
        match SqliteStore::from_pool_with_table(pool.clone(), bad).await {
            Err(StoreError::Backend(error)) => {
                assert!(
                    error.to_string().contains("not a valid session table name"),
                    "{bad:?}: {error}"
                )
            }
            other => panic!("{bad:?} was accepted as a table name: {other:?}"),
        }
    }
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 0, "a refused name must not touch the database");
    SqliteStore::from_pool_with_table(pool, "Sessions_2").await.unwrap();
}

#[tokio::test]
async fn open_uses_wal_and_reports_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");

    let error = SqliteStore::open(dir.path().join("no/such/dir/s.db"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

/// Rows hold the hashed key, values as JSON (not JSON in strings), and times in milliseconds.
#[tokio::test]
async fn stored_form() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let id = SessionId::random();
    let key = id.store_key();
    let mut record = live_record();
    record.values.insert("cart", r#"["apple"]"#);
    record.flash.insert("notice", r#""hi""#);
    record.expiry = Some(Expiry::BrowserSession);
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);

    let row = sqlx::query(
        "SELECT key, json_type(data_values, '$.user_id') AS t, json_extract(data_values, '$.cart[0]') AS first, \
         json_extract(flash, '$.notice') AS notice, created_at, expires_at, expiry FROM typed_sessions",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("key"), key.to_hex());
    assert_ne!(row.get::<String, _>("key"), id.as_str());
    assert_eq!(row.get::<String, _>("t"), "integer");
    assert_eq!(row.get::<String, _>("first"), "apple");
    assert_eq!(row.get::<String, _>("notice"), "hi");
    assert_eq!(row.get::<i64, _>("created_at"), to_unix_millis(record.created_at));
    assert_eq!(row.get::<i64, _>("expires_at"), to_unix_millis(record.expires_at));
    assert_eq!(
        row.get::<Option<String>, _>("expiry").as_deref(),
        Some(r#""browser_session""#)
    );

    let index: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'typed_sessions' AND sql LIKE '%expires_at%'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(index, 1, "expires_at must be indexed for delete_expired");
}

#[tokio::test]
async fn delete_expired_counts_and_keeps_live_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let mut expired = live_record();
    expired.expires_at = millis_from_now(-1);
    for _ in 0..5 {
        store.create(&fresh_key(), &expired).await.unwrap();
    }
    let live = fresh_key();
    store.create(&live, &live_record()).await.unwrap();
    assert_eq!(store.delete_expired().await.unwrap(), 5);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(store.load(&live).await.unwrap().is_some());
}

#[tokio::test]
async fn a_row_that_does_not_decode_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let key = fresh_key();
    store.create(&key, &live_record()).await.unwrap();
    sqlx::query("UPDATE typed_sessions SET data_values = 'not json' WHERE key = ?")
        .bind(key.to_hex())
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(store.load(&key).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.apply(&key, &set_value("a", "1")).await,
        Err(StoreError::Corrupt(_))
    ));
    // Logging out of a broken session still works.
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn a_closed_pool_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    store.pool().close().await;
    let error = store.load(&fresh_key()).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

/// Many tasks on a multi-thread runtime, through two separate pools on one file (as two
/// processes would), apply changes to one session: every key survives, and a value written
/// together with another in one patch never comes apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_from_two_pools_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let one = Arc::new(SqliteStore::open(&path).await.unwrap());
    let two = Arc::new(SqliteStore::open(&path).await.unwrap());
    typed_sessions_tests::concurrent_applies_from_two_instances_all_survive(one, two, 20).await;
}

/// A delete racing with applies: once the delete is done, no apply brings the row back. The
/// appliers and the delete start together; rounds go on until in one of them applies landed on
/// both sides of the delete, which shows the race was run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applies_racing_a_delete_never_resurrect() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("s.db")).await.unwrap());
    let store = &store;
    race_until_both_sides(|| async move {
        let key = fresh_key();
        store.create(&key, &live_record()).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(5));
        let appliers: Vec<_> = (0..4)
            .map(|i| {
                let (store, start) = (Arc::clone(store), Arc::clone(&start));
                tokio::spawn(async move {
                    let mut changes = set_value(&format!("k{i}"), "1");
                    changes.expires_at = Some(millis_from_now(7_200_000));
                    start.wait().await;
                    store.apply(&key, &changes).await.unwrap()
                })
            })
            .collect();
        start.wait().await;
        store.delete(&key).await.unwrap();
        let mut outcomes = Vec::new();
        for applier in appliers {
            outcomes.push(applier.await.unwrap());
        }
        assert!(
            store.load(&key).await.unwrap().is_none(),
            "an apply brought a deleted row back"
        );
        outcomes
    })
    .await;
}
