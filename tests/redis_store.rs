//! `RedisStore` against a real `redis-server`: the conformance suite, the hash layout, native
//! expiry, big sessions, and what it says when Redis cannot be reached.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use typed_sessions::store::{conformance, Applied, Created, SessionStore, StoreError};
use typed_sessions::store::{Changes, LockAttempt, LockToken, LockedApply, Record, Revision, StoreKey};
use typed_sessions::{Expiry, RedisStore, SessionId};
use typed_sessions_tests::to_unix_millis;
use typed_sessions_tests::{free_port, init_tracing, millis_from_now, RedisCluster, RedisServer};

/// A plain connection for looking at what the store wrote.
async fn plain(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The conformance suite under the default prefix and others.
async fn run_conformance(store: RedisStore) {
    conformance::run(&store).await;
    conformance::run(&store.clone().with_prefix("other-app:")).await;
    // A clone with another prefix reads its own keys, also while both load at once.
    let other = store.clone().with_prefix("other-app:");
    typed_sessions_tests::clones_apart_load_their_own_sessions(&store, &other).await;
    // A prefix with a hash tag of its own: the lock's key must share the session's slot.
    conformance::locks_are_exclusive_and_fenced(&store.with_prefix("{app}:")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    run_conformance(RedisStore::connect(&redis.url()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_on_a_cluster() {
    init_tracing();
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    run_conformance(RedisStore::connect_cluster(cluster.urls()).await.unwrap()).await;
}

/// The merge script decodes and re-encodes the stored values with Lua's `cjson`: values are kept
/// as JSON text inside it, so a number Lua's doubles cannot hold, and text that looks like JSON,
/// come back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_exactly_through_the_merge() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let key = SessionId::random().store_key();
    let mut record = Record::new(millis_from_now(0), millis_from_now(60_000));
    record.values.insert("before", u128::MAX.to_string());
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);
    let exact = [
        ("big", u128::MAX.to_string()),
        ("float", "0.1000000000000000055511151231257827".to_owned()),
        ("text", r#""{\"not\": \"an object\"} / é""#.to_owned()),
        (
            "nested",
            r#"{"a":[1,2,{"b":null}],"c":-12345678901234567890}"#.to_owned(),
        ),
    ];
    let mut changes = Changes::default();
    for (name, json) in &exact {
        changes.values.insert(*name, Some(json.clone()));
    }
    assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
    let loaded = store.load(&key).await.unwrap().unwrap();
    for (name, json) in &exact {
        assert_eq!(loaded.values.get(name), Some(json.as_str()), "{name}");
    }
    assert_eq!(loaded.values.get("before"), Some(u128::MAX.to_string().as_str()));
}

/// The text of the record in the session hash under `redis_key`.
async fn record_text(plain: &mut redis::aio::MultiplexedConnection, redis_key: &str) -> String {
    plain.hget(redis_key, "record").await.unwrap()
}

/// The revision in the session hash under `redis_key`, as its `rev` field holds it.
async fn stored_rev(plain: &mut redis::aio::MultiplexedConnection, redis_key: &str) -> String {
    plain.hget(redis_key, "rev").await.unwrap()
}

/// A store on `redis`, a plain connection to look at what it writes, and a fresh session's store
/// key with its Redis key.
async fn fresh_session_key(redis: &RedisServer) -> (RedisStore, redis::aio::MultiplexedConnection, StoreKey, String) {
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let key = SessionId::random().store_key();
    let redis_key = store.redis_key(&key);
    (store, plain(redis).await, key, redis_key)
}

/// [`fresh_session_key`], with a session created under it that holds `path`, a value whose JSON
/// has a `/` (which Lua's `cjson` writes as `\/`).
async fn session_with_a_path(redis: &RedisServer) -> (RedisStore, redis::aio::MultiplexedConnection, StoreKey, String) {
    let (store, plain, key, redis_key) = fresh_session_key(redis).await;
    let mut record = Record::new(millis_from_now(0), millis_from_now(60_000));
    record.values.insert("path", r#""/a/b""#);
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);
    (store, plain, key, redis_key)
}

/// The record the two writes of the tests below (`n` then `m`) leave, on the session created with
/// `path`: both writes and the value before them kept.
fn assert_both_writes_kept(record: &Record) {
    assert_eq!(record.values.get("n"), Some("1"));
    assert_eq!(record.values.get("m"), Some("2"));
    assert_eq!(record.values.get("path"), Some(r#""/a/b""#));
}

/// A change that carries the record as loaded (`Changes::base`, which the layer sends because
/// the store notes each loaded record's `rev` as its revision) is stored as the app merged it
/// while that revision is still the stored one, and merged by the script when another write
/// came first; either way the revision moves on by one. The two are told apart by the text:
/// Lua's `cjson` writes `/` as `\/`, serde_json as `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_the_loaded_record_is_merged_by_the_app_unless_overtaken() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (store, mut plain, key, redis_key) = session_with_a_path(&redis).await;

    let loaded = store.load(&key).await.unwrap().unwrap();
    let created_rev: u64 = stored_rev(&mut plain, &redis_key).await.parse().unwrap();
    assert_eq!(
        loaded.revision.as_bytes(),
        Some(created_rev.to_string().as_bytes()),
        "a loaded record notes the stored revision"
    );
    let mut current = conformance::set_value("n", "1");
    let renewed = millis_from_now(120_000);
    current.expires_at = Some(renewed);
    current.base = Some(Box::new(loaded.clone()));
    assert_eq!(store.apply(&key, &current).await.unwrap(), Applied::Applied);
    let text = record_text(&mut plain, &redis_key).await;
    assert!(
        !text.contains(r"\/"),
        "a write over the stored revision went through the merge: {text}"
    );
    assert_eq!(stored_rev(&mut plain, &redis_key).await, (created_rev + 1).to_string());
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&redis_key)
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(
        expire_time,
        to_unix_millis(renewed),
        "Redis' expiry did not follow the renewal"
    );

    // `loaded` is no longer what is stored.
    let mut overtaken = conformance::set_value("m", "2");
    overtaken.base = Some(Box::new(loaded));
    assert_eq!(store.apply(&key, &overtaken).await.unwrap(), Applied::Applied);
    let text = record_text(&mut plain, &redis_key).await;
    assert!(
        text.contains(r"\/"),
        "a write over an overtaken revision did not go through the merge: {text}"
    );
    let merged = store.load(&key).await.unwrap().unwrap();
    let rev = (created_rev + 2).to_string();
    assert_eq!(
        stored_rev(&mut plain, &redis_key).await,
        rev,
        "the merge did not move the revision on"
    );
    assert_eq!(
        merged.revision.as_bytes(),
        Some(rev.as_bytes()),
        "the merged record's revision is not the field's"
    );
    assert_both_writes_kept(&merged);
}

/// The same under the session's lock: the record the lock script read is written over by the
/// app's merge, and the lock is released in the same step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_write_over_the_loaded_record_is_merged_by_the_app() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (store, mut plain, key, redis_key) = session_with_a_path(&redis).await;

    let token = LockToken::random();
    let LockAttempt::Taken(loaded) = store
        .lock_and_load(&key, &token, Duration::from_secs(10))
        .await
        .unwrap()
    else {
        panic!("the lock of a live session was not taken");
    };
    assert_eq!(
        loaded.revision.as_bytes(),
        Some(stored_rev(&mut plain, &redis_key).await.as_bytes()),
        "the record read under the lock notes the stored revision"
    );
    let mut changes = conformance::set_value("n", "1");
    changes.base = Some(Box::new(loaded));
    assert_eq!(
        store.apply_locked(&key, &token, &changes).await.unwrap(),
        LockedApply::Applied
    );
    let text = record_text(&mut plain, &redis_key).await;
    assert!(
        !text.contains(r"\/"),
        "a locked write over the stored text went through the merge: {text}"
    );
    let other = LockToken::random();
    let LockAttempt::Taken(relocked) = store
        .lock_and_load(&key, &other, Duration::from_secs(10))
        .await
        .unwrap()
    else {
        panic!("the lock was not released by the write");
    };

    // A plain `Session` ignores the lock: its write comes between, and the locked write is then
    // merged into it.
    assert_eq!(
        store.apply(&key, &conformance::set_value("m", "2")).await.unwrap(),
        Applied::Applied
    );
    let mut late = conformance::set_value("n", "3");
    late.base = Some(Box::new(relocked));
    assert_eq!(
        store.apply_locked(&key, &other, &late).await.unwrap(),
        LockedApply::Applied
    );
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        stored.values.get("m"),
        Some("2"),
        "the plain write was lost to the locked one"
    );
    assert_eq!(stored.values.get("n"), Some("3"));
    assert_eq!(stored.values.get("path"), Some(r#""/a/b""#));
}

/// A session stored before revisions were kept (its `record` the JSON alone, no `rev` field)
/// reads as any other; its first write is merged by the script and gives it revision 1, and the
/// write after that is the app's own over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stored_without_a_revision_gets_one_on_its_first_write() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (store, mut plain, key, redis_key) = fresh_session_key(&redis).await;
    let json = format!(
        r#"{{"created_at":"{}","expires_at":"{}","values":{{"path":"\"/a/b\""}}}}"#,
        to_unix_millis(millis_from_now(0)),
        to_unix_millis(millis_from_now(60_000))
    );
    let _: () = plain.hset(&redis_key, "record", &json).await.unwrap();

    let loaded = store.load(&key).await.unwrap().unwrap();
    assert!(loaded.revision.is_empty(), "a record without a revision noted one");
    assert_eq!(loaded.values.get("path"), Some(r#""/a/b""#));
    let mut first = conformance::set_value("n", "1");
    first.base = Some(Box::new(loaded));
    assert_eq!(store.apply(&key, &first).await.unwrap(), Applied::Applied);
    assert_eq!(stored_rev(&mut plain, &redis_key).await, "1");
    assert!(record_text(&mut plain, &redis_key).await.starts_with("1:{"));

    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.revision.as_bytes(), Some(&b"1"[..]));
    let mut second = conformance::set_value("m", "2");
    second.base = Some(Box::new(loaded));
    assert_eq!(store.apply(&key, &second).await.unwrap(), Applied::Applied);
    let text = record_text(&mut plain, &redis_key).await;
    assert!(
        text.starts_with("2:{") && !text.contains(r"\/"),
        "the second write was not the app's over revision 1: {text}"
    );
    assert_both_writes_kept(&store.load(&key).await.unwrap().unwrap());
}

/// A loaded record that has expired by the app's clock is never written back over, though its
/// text is still stored (Redis, on its own clock, has not evicted it): the change says
/// `Missing` and the stored text is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_an_expired_loaded_record_writes_nothing() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (store, mut plain, key, redis_key) = fresh_session_key(&redis).await;
    let mut record = Record::new(millis_from_now(-60_000), millis_from_now(60_000));
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);
    // Its stored record replaced by one that expired a second ago, at the stored revision, with
    // no Redis expiry: what an app whose clock runs ahead of Redis' sees.
    let rev = stored_rev(&mut plain, &redis_key).await;
    record.expires_at = millis_from_now(-1_000);
    let text = format!(
        r#"{rev}:{{"created_at":"{}","expires_at":"{}"}}"#,
        to_unix_millis(record.created_at),
        to_unix_millis(record.expires_at)
    );
    let _: () = plain.hset(&redis_key, "record", &text).await.unwrap();
    let _: bool = plain.persist(&redis_key).await.unwrap();
    record.revision = Revision::new(rev.as_bytes());

    let mut renewal = conformance::set_value("n", "1");
    renewal.expires_at = Some(millis_from_now(60_000));
    renewal.base = Some(Box::new(record));
    assert_eq!(store.apply(&key, &renewal).await.unwrap(), Applied::Missing);
    assert_eq!(
        record_text(&mut plain, &redis_key).await,
        text,
        "an expired record was written over"
    );
}

/// The record's JSON in the session hash under `redis_key`, after the revision that comes before
/// it, which the hash's one other field, `rev`, holds too.
async fn stored_record(plain: &mut redis::aio::MultiplexedConnection, redis_key: &str) -> serde_json::Value {
    let fields: HashMap<String, String> = plain.hgetall(redis_key).await.unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["record", "rev"]);
    let (rev, json) = fields["record"].split_once(':').unwrap();
    assert_eq!(rev, fields["rev"], "the record's revision is not the field's");
    assert!(rev.bytes().all(|b| b.is_ascii_digit()), "a revision is digits: {rev}");
    serde_json::from_str(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hash_per_session_expired_by_redis() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap().with_prefix("test:");
    assert_eq!(store.prefix(), "test:");
    let mut plain = plain(&redis).await;

    let key = SessionId::random().store_key();
    let mut record = Record::new(millis_from_now(0), millis_from_now(60_000));
    record.values.insert("user_id", "42");
    record.values.insert("notice", r#""a value""#);
    record.flash.insert("notice", r#""a flash""#);
    record.expiry = Some(Expiry::BrowserSession);
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);

    // One key per session: the prefix and the store key (never the id) in hex.
    let keys: Vec<String> = plain.keys("*").await.unwrap();
    assert_eq!(keys, vec![format!("test:{}", key.to_hex())]);
    assert_eq!(store.redis_key(&key), keys[0]);
    let kind: String = redis::cmd("TYPE").arg(&keys[0]).query_async(&mut plain).await.unwrap();
    assert_eq!(kind, "hash");

    // The field `record` (and `rev`, its revision): a JSON object whose leaves are all strings. Values and flash are
    // objects of name → the value's JSON, as a string; the times are Unix milliseconds; the
    // expiry override is its JSON.
    assert_eq!(
        stored_record(&mut plain, &keys[0]).await,
        serde_json::json!({
            "values": {"notice": "\"a value\"", "user_id": "42"},
            "flash": {"notice": "\"a flash\""},
            "created_at": to_unix_millis(record.created_at).to_string(),
            "expires_at": to_unix_millis(record.expires_at).to_string(),
            "expiry": "\"browser_session\"",
        })
    );

    // Redis expires the key itself, at expires_at to the millisecond.
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&keys[0])
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(expire_time, to_unix_millis(record.expires_at));

    // apply: set, delete, move the expiry, drop the override; one hash still.
    let later = millis_from_now(120_000);
    let mut changes = Changes {
        expires_at: Some(later),
        expiry: Some(None),
        ..Changes::default()
    };
    changes.values.insert("theme", Some(r#""dark""#.into()));
    changes.values.insert("notice", None);
    changes.flash.insert("notice", None);
    assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
    // The last flash went, and the override, so their parts did; the values merged name by
    // name (compared as JSON: Lua's `cjson` writes the names in no fixed order).
    assert_eq!(
        stored_record(&mut plain, &keys[0]).await,
        serde_json::json!({
            "values": {"theme": "\"dark\"", "user_id": "42"},
            "created_at": to_unix_millis(record.created_at).to_string(),
            "expires_at": to_unix_millis(later).to_string(),
        })
    );
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&keys[0])
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(
        expire_time,
        to_unix_millis(later),
        "apply did not move the Redis expiry"
    );

    // An expiry in the past (a session cut by its lifetime cap): Redis forgets the key at once.
    let cut = Changes {
        expires_at: Some(millis_from_now(-1_000)),
        ..Changes::default()
    };
    assert_eq!(store.apply(&key, &cut).await.unwrap(), Applied::Applied);
    let exists: bool = plain.exists(&keys[0]).await.unwrap();
    assert!(!exists, "a session whose expiry passed is still in Redis");
    assert!(store.load(&key).await.unwrap().is_none());

    // A short expiry: Redis drops the key without anyone sweeping.
    let short = SessionId::random().store_key();
    let record = Record::new(millis_from_now(0), millis_from_now(300));
    store.create(&short, &record).await.unwrap();
    assert!(store.load(&short).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exists: bool = plain.exists(store.redis_key(&short)).await.unwrap();
    assert!(!exists, "Redis kept a session past its expires_at");
    assert_eq!(
        store.delete_expired().await.unwrap(),
        0,
        "Redis expires keys itself: nothing to sweep"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_sessions_fit_in_one_script_call() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();

    // More fields than Lua's `unpack` takes at once: the scripts chunk them.
    let key = SessionId::random().store_key();
    let mut record = Record::new(millis_from_now(0), millis_from_now(60_000));
    for i in 0..10_000 {
        record.values.insert(format!("key{i}"), i.to_string());
        record.flash.insert(format!("key{i}"), format!("\"{i}\""));
    }
    store.create(&key, &record).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.values, record.values);
    assert_eq!(loaded.flash, record.flash);

    let mut changes = Changes::default();
    for i in 0..10_000 {
        let change = (i % 2 == 0).then(|| format!("{}", i * 10));
        changes.values.insert(format!("key{i}"), change);
        changes.flash.insert(format!("key{i}"), None);
    }
    assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.values.len(), 5_000);
    assert_eq!(&loaded.values["key42"], "420");
    assert!(loaded.flash.is_empty());
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_and_a_bad_url_is_not() {
    init_tracing();
    // No server needed: nothing listens on a fresh free port.
    let started = std::time::Instant::now();
    let error = RedisStore::connect(&format!("redis://127.0.0.1:{}", free_port()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "connecting to nothing took {:?}",
        started.elapsed()
    );

    let error = RedisStore::connect("not a url").await.unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_value_under_the_key_is_an_error_not_a_panic() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let mut plain = plain(&redis).await;

    let key = SessionId::random().store_key();
    let _: () = plain.set(store.redis_key(&key), "not a hash").await.unwrap();
    assert!(matches!(store.load(&key).await, Err(StoreError::Backend(_))));

    // A hash of an older layout (a field per part, or per value), without `record`: no session
    // (the layer starts a new one), and creating one under its key replaces it whole.
    let key = SessionId::random().store_key();
    let older = [
        ("created_at", to_unix_millis(millis_from_now(0)).to_string()),
        ("expires_at", to_unix_millis(millis_from_now(60_000)).to_string()),
        ("values", r#"{"user_id":"1"}"#.to_owned()),
        ("v:x", "1".to_owned()),
    ];
    let _: () = plain.hset_multiple(store.redis_key(&key), &older).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    assert_eq!(store.apply(&key, &Changes::default()).await.unwrap(), Applied::Missing);
    let record = Record::new(millis_from_now(0), millis_from_now(60_000));
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Created);
    stored_record(&mut plain, &store.redis_key(&key)).await;

    // A live session whose record does not decode, or whose values are not an object of
    // strings: corrupt (the layer starts a new session), never a session read without its
    // values.
    let times = format!(
        r#""created_at":"{}","expires_at":"{}""#,
        to_unix_millis(millis_from_now(0)),
        to_unix_millis(millis_from_now(60_000))
    );
    for text in [
        "not json".to_owned(),
        format!(r#"{{{times},"values":{{"x": 1}}}}"#),
        format!(r#"{{{times},"flash":[]}}"#),
        r#"{"values":{}}"#.to_owned(),
    ] {
        let key = SessionId::random().store_key();
        let _: () = plain.hset(store.redis_key(&key), "record", &text).await.unwrap();
        let loaded = store.load(&key).await;
        assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "{text}: {loaded:?}");
    }
}
