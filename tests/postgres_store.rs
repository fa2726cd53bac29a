//! `PostgresStore` against a real PostgreSQL cluster: the conformance suite, table names, the
//! row layout, the sweep, and what it says when the database cannot be reached.

use std::time::{Duration, Instant};

use typed_sessions::store::{conformance, Applied, Created, SessionStore, StoreError};
use typed_sessions::store::{Changes, Record};
use typed_sessions::{PostgresStore, SessionId};
use typed_sessions_tests::to_unix_millis;
use typed_sessions_tests::{free_port, init_tracing, millis_from_now, PostgresServer};

/// The conformance suite, plus a stricter expiry check of this store's own: a `create` over an
/// expired row that no sweep has removed yet replaces it.
async fn run_conformance(store: &PostgresStore) {
    conformance::run(store).await;
    expired_rows_never_block_or_load(store).await;
}

fn same_json(a: &typed_sessions::store::ValueMap, b: &typed_sessions::store::ValueMap) -> bool {
    let parse = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
    a.len() == b.len()
        && a.iter()
            .all(|(name, json)| b.get(name).is_some_and(|other| parse(json) == parse(other)))
}

/// Expired rows are never loaded or patched, a `create` over one (swept or not) replaces it, and
/// `delete_expired` leaves live rows alone.
async fn expired_rows_never_block_or_load(store: &PostgresStore) {
    let live = || {
        let mut record = Record::new(millis_from_now(0), millis_from_now(3_600_000));
        record.values.insert("user_id", "42");
        record.values.insert("cart", r#"["apple","pear"]"#);
        record.flash.insert("notice", r#""Welcome back""#);
        record
    };
    let mut expired = live();
    expired.values.insert("stale", "true");
    expired.created_at = millis_from_now(-7_200_000);
    expired.expires_at = millis_from_now(-1_000);

    for sweep_first in [false, true] {
        let key = SessionId::random().store_key();
        assert_eq!(store.create(&key, &expired).await.unwrap(), Created::Created);
        assert!(
            store.load(&key).await.unwrap().is_none(),
            "load returned an expired row"
        );
        let mut changes = Changes::default();
        changes.values.insert("user_id", Some("1".into()));
        assert_eq!(
            store.apply(&key, &changes).await.unwrap(),
            Applied::Missing,
            "apply patched an expired row"
        );

        let live_key = SessionId::random().store_key();
        store.create(&live_key, &live()).await.unwrap();
        if sweep_first {
            assert!(store.delete_expired().await.unwrap() >= 1);
            assert!(
                store.load(&live_key).await.unwrap().is_some(),
                "the sweep removed a live row"
            );
        }

        let fresh = live();
        assert_eq!(
            store.create(&key, &fresh).await.unwrap(),
            Created::Created,
            "an expired row blocked create"
        );
        let loaded = store.load(&key).await.unwrap().expect("the re-created row is missing");
        assert!(
            same_json(&loaded.values, &fresh.values),
            "create over an expired row kept old values: {:?}",
            loaded.values
        );
        assert!(same_json(&loaded.flash, &fresh.flash));
        assert_eq!(
            (loaded.created_at, loaded.expires_at, loaded.expiry),
            (fresh.created_at, fresh.expires_at, fresh.expiry)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_under_any_table_name() {
    init_tracing();
    let Some(postgres) = PostgresServer::start().await else {
        return;
    };
    let store = PostgresStore::connect(&postgres.url()).await.unwrap();
    assert_eq!(store.table_name(), "typed_sessions");
    run_conformance(&store).await;

    // Another table, in another schema, created by `migrate`.
    sqlx::query("CREATE SCHEMA auth").execute(store.pool()).await.unwrap();
    let custom = PostgresStore::new(store.pool().clone())
        .with_table_name("auth.WebSessions")
        .unwrap();
    custom.migrate().await.unwrap();
    run_conformance(&custom).await;
    // A clone renamed to another table reads its own table, also while both load at once.
    let renamed = store.clone().with_table_name("auth.WebSessions").unwrap();
    typed_sessions_tests::clones_apart_load_their_own_sessions(&store, &renamed).await;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_schema IN ('public', 'auth') ORDER BY 1, 2",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            ("auth".to_owned(), "WebSessions".to_owned()),
            ("public".to_owned(), "typed_sessions".to_owned())
        ]
    );

    // Many servers starting at once all create-if-missing the same table: no error.
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let pool = store.pool().clone();
        starts.spawn(async move { PostgresStore::new(pool).with_table_name("raced")?.migrate().await });
    }
    while let Some(started) = starts.join_next().await {
        started.unwrap().unwrap();
    }

    // The name is put into SQL text: anything but an identifier is refused.
    let too_long = "t".repeat(49);
    for bad in [
        "",
        "1st",
        "a-b",
        "a b",
        "x;DROP TABLE y",
        "\"quoted\"",
        "a.b.c",
        ".a",
        "a.",
        "é",
        too_long.as_str(),
    ] {
        let refused = PostgresStore::new(store.pool().clone()).with_table_name(bad);
        assert!(matches!(refused, Err(StoreError::Backend(_))), "{bad:?} was accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_hold_json_objects_under_the_hashed_key_and_expired_rows_are_swept() {
    init_tracing();
    let Some(postgres) = PostgresServer::start().await else {
        return;
    };
    let store = PostgresStore::connect(&postgres.url()).await.unwrap();

    let id = SessionId::random();
    let key = id.store_key();
    let mut record = Record::new(millis_from_now(0), millis_from_now(60_000));
    record.values.insert("user_id", "42");
    record.values.insert("cart", r#"["apple"]"#);
    record.flash.insert("notice", r#""hi""#);
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);

    // The row is filed under the SHA-256 of the id, never the id; values are JSON objects whose
    // members are the values themselves.
    let (user_id, cart_len, notice, expires_at): (i64, i32, String, i64) = sqlx::query_as(
        "SELECT (values_json::jsonb->>'user_id')::bigint, jsonb_array_length(values_json::jsonb->'cart'), \
         flash_json::jsonb->>'notice', expires_at FROM typed_sessions WHERE key = $1",
    )
    .bind(key.as_bytes().as_slice())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((user_id, cart_len, notice.as_str()), (42, 1, "hi"));
    assert_eq!(expires_at, to_unix_millis(record.expires_at));
    let by_id: i64 = sqlx::query_scalar("SELECT count(*) FROM typed_sessions WHERE key = $1")
        .bind(id.as_str().as_bytes())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(by_id, 0);

    // Numbers keep every digit (merged as jsonb, which is numeric), values written by serde_json
    // read back.
    let mut changes = Changes::default();
    changes.values.insert("big", Some(u128::MAX.to_string()));
    store.apply(&key, &changes).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<u128>(&loaded.values["big"]).unwrap(), u128::MAX);

    // The sweep removes exactly the expired rows.
    for _ in 0..3 {
        let expired = Record::new(millis_from_now(-10_000), millis_from_now(-1_000));
        store.create(&SessionId::random().store_key(), &expired).await.unwrap();
    }
    assert_eq!(store.delete_expired().await.unwrap(), 3);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(
        store.load(&key).await.unwrap().is_some(),
        "the sweep removed a live session"
    );
}

/// A change that leaves the expiry time alone rewrites no index, although `expires_at` is
/// indexed: PostgreSQL counts it as a heap-only (HOT) update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_that_keep_the_expiry_are_hot_updates() {
    init_tracing();
    let Some(postgres) = PostgresServer::start().await else {
        return;
    };
    let store = PostgresStore::connect(&postgres.url()).await.unwrap();
    // Pages keep room for new row versions: with every page full, updates could not stay HOT.
    let options: Option<Vec<String>> =
        sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE relname = 'typed_sessions'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(options, Some(vec!["fillfactor=70".to_owned()]));
    let key = SessionId::random().store_key();
    let record = Record::new(millis_from_now(0), millis_from_now(60_000));
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);
    const APPLIES: i64 = 50;
    for n in 0..APPLIES {
        let mut changes = Changes::default();
        changes.values.insert("counter", Some(n.to_string()));
        assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
    }
    // Statistics reach the view within a second or so of the transactions.
    let started = Instant::now();
    loop {
        let (updates, hot): (i64, i64) =
            sqlx::query_as("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'typed_sessions'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        if updates >= APPLIES {
            // An update that finds no room in its page is not HOT; nearly all of these must be.
            assert!(hot * 10 >= updates * 8, "{hot} of {updates} updates were HOT");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{updates} updates counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_quickly() {
    init_tracing();
    // No server needed: nothing listens on a fresh free port.
    let started = Instant::now();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", free_port());
    let error = PostgresStore::connect(&url).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "connecting to nothing took {:?}",
        started.elapsed()
    );
}

/// A session table made before `LockedSession` (no lock columns, no owner column, the objects
/// as `JSONB` columns `data_values` and `flash`) gains the columns and has its objects renamed
/// and turned to text when the store opens it; its sessions load as before, and its locks and
/// owner index then keep their contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_made_before_locks_gains_its_lock_columns() {
    init_tracing();
    let Some(postgres) = PostgresServer::start().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    sqlx::query(
        "CREATE TABLE before_locks (key BYTEA PRIMARY KEY, \
         data_values JSONB NOT NULL DEFAULT '{}'::jsonb, flash JSONB NOT NULL DEFAULT '{}'::jsonb, \
         created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, expiry JSONB)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let key = SessionId::random().store_key();
    sqlx::query(
        "INSERT INTO before_locks (key, data_values, flash, created_at, expires_at) \
         VALUES ($1, '{\"user_id\": 7, \"cart\": [\"apple\"]}', '{\"notice\": \"hi\"}', $2, $3)",
    )
    .bind(key.as_bytes().as_slice())
    .bind(to_unix_millis(millis_from_now(0)))
    .bind(to_unix_millis(millis_from_now(60_000)))
    .execute(&pool)
    .await
    .unwrap();
    let store = PostgresStore::from_pool_with_table(pool, "before_locks").await.unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'before_locks'::regclass AND attnum > 0 AND NOT attisdropped \
         AND attname IN ('data_values', 'flash', 'values_json', 'flash_json') ORDER BY attnum",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let text = |name: &str| (name.to_owned(), "text".to_owned());
    assert_eq!(columns, [text("values_json"), text("flash_json")]);
    let loaded = store.load(&key).await.unwrap().expect("the session made before");
    assert_eq!(loaded.values.get("user_id"), Some("7"));
    assert_eq!(loaded.values.get("cart"), Some(r#"["apple"]"#));
    assert_eq!(loaded.flash.get("notice"), Some(r#""hi""#));
    let mut changes = Changes::default();
    changes.values.insert("user_id", Some("8".to_owned()));
    assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().values.get("cart"),
        Some(r#"["apple"]"#)
    );
    // The converted columns keep their default: a row written without them is a session with
    // no values.
    let bare = SessionId::random().store_key();
    sqlx::query("INSERT INTO before_locks (key, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(bare.as_bytes().as_slice())
        .bind(to_unix_millis(millis_from_now(0)))
        .bind(to_unix_millis(millis_from_now(60_000)))
        .execute(store.pool())
        .await
        .unwrap();
    assert!(store.load(&bare).await.unwrap().unwrap().values.is_empty());

    // The way back `migrate`'s documentation gives restores the earlier layout, and migrating
    // again brings the sessions back.
    let mut undo = store.pool().begin().await.unwrap();
    for step in [
        "ALTER TABLE before_locks \
         ALTER COLUMN values_json DROP DEFAULT, \
         ALTER COLUMN values_json TYPE JSONB USING values_json::jsonb, \
         ALTER COLUMN values_json SET DEFAULT '{}', \
         ALTER COLUMN flash_json DROP DEFAULT, \
         ALTER COLUMN flash_json TYPE JSONB USING flash_json::jsonb, \
         ALTER COLUMN flash_json SET DEFAULT '{}'",
        "ALTER TABLE before_locks RENAME COLUMN values_json TO data_values",
        "ALTER TABLE before_locks RENAME COLUMN flash_json TO flash",
    ] {
        sqlx::query(step).execute(&mut *undo).await.unwrap();
    }
    undo.commit().await.unwrap();
    let user_id: i64 = sqlx::query_scalar("SELECT (data_values->>'user_id')::bigint FROM before_locks WHERE key = $1")
        .bind(key.as_bytes().as_slice())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(user_id, 8);
    store.migrate().await.unwrap();
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().values.get("user_id"),
        Some("8")
    );

    // Half-way by hand (one column renamed back, the other not): finished by `migrate`; both
    // forms of one column at once: an error that names the columns.
    sqlx::query("ALTER TABLE before_locks RENAME COLUMN values_json TO data_values")
        .execute(store.pool())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().values.get("user_id"),
        Some("8")
    );
    sqlx::query("ALTER TABLE before_locks ADD COLUMN data_values JSONB")
        .execute(store.pool())
        .await
        .unwrap();
    let error = store.migrate().await.unwrap_err();
    assert!(matches!(&error, StoreError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("values_json"), "{error}");
    sqlx::query("ALTER TABLE before_locks DROP COLUMN data_values")
        .execute(store.pool())
        .await
        .unwrap();
    conformance::locks_are_exclusive_and_fenced(&store).await;
    conformance::locked_increments_are_never_lost(&store).await;
    conformance::owner_index_follows_the_owner(&store).await;
    conformance::ending_an_owners_sessions_spares_one(&store).await;
}
