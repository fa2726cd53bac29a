//! The store conformance suite: one call checks that a [`SessionStore`] keeps the contract the
//! session layer relies on. Every store in this crate passes it; run it on yours.
//!
//! Why this file is long: every check spells out its steps and its failure messages, which are
//! what a store author reads. The owner-index checks are in `owners`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use typed_sessions::store::conformance;
//! use typed_sessions::MemoryStore;
//!
//! conformance::run(&MemoryStore::new()).await;
//! # }
//! ```
//!
//! Each check uses fresh random keys, so a store that already holds data (a shared test
//! database) can be checked. A failed check panics with a message that names the rule broken,
//! which is what a test wants. The checks are also public one by one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use super::{Applied, Created, LockAttempt, LockToken, LockedApply, SessionStore, StoreError, StoreKey};
use crate::expiry::Expiry;
use crate::expiry::{from_unix_millis, to_unix_millis};
use crate::id::SessionId;
use crate::record::{Changes, Record};
use crate::value_map::ValueMap;

mod owners;
pub use owners::{ending_an_owners_sessions_spares_one, owner_index_follows_the_owner};

/// Runs every check, in order.
pub async fn run<S: SessionStore + ?Sized>(store: &S) {
    round_trip(store).await;
    load_of_unknown_key_is_none(store).await;
    apply_merges_key_by_key(store).await;
    concurrent_changes_to_different_keys_all_survive(store).await;
    apply_over_a_loaded_base_keeps_later_writes(store).await;
    concurrent_loads_each_get_their_own_session(store).await;
    apply_never_resurrects(store).await;
    create_reports_collision(store).await;
    expired_records_are_gone(store).await;
    delete_removes_and_is_idempotent(store).await;
    flash_is_separate_from_values(store).await;
    apply_updates_expiry(store).await;
    every_kind_of_change_applies_as_the_model(store).await;
    odd_values_survive(store).await;
    loaded_records_are_snapshots(store).await;
    locked_increments_are_never_lost(store).await;
    locks_are_exclusive_and_fenced(store).await;
    owner_index_follows_the_owner(store).await;
    ending_an_owners_sessions_spares_one(store).await;
    abandoned_calls_leave_the_store_working(store).await;
}

/// A random store key, as a new session would have: for a store's own tests.
pub fn fresh_key() -> StoreKey {
    SessionId::random().store_key()
}

/// Now plus `offset_ms` (negative: in the past), in whole milliseconds, the precision stores
/// keep times in: for a store's own tests.
pub fn millis_from_now(offset_ms: i64) -> SystemTime {
    from_unix_millis(to_unix_millis(SystemTime::now()) + offset_ms)
}

fn live_record() -> Record {
    let mut record = Record::new(millis_from_now(0), millis_from_now(3_600_000));
    record.values.insert("user_id", "42");
    record.values.insert("cart", r#"["apple","pear"]"#);
    record.flash.insert("notice", r#""Welcome back""#);
    record
}

async fn load<S: SessionStore + ?Sized>(store: &S, key: &StoreKey) -> Result<Option<Record>, StoreError> {
    store.load(key).await
}

async fn must_load<S: SessionStore + ?Sized>(store: &S, key: &StoreKey, check: &str) -> Record {
    match load(store, key).await {
        Ok(Some(record)) => record,
        Ok(None) => panic!("{check}: the record is missing after it was written"),
        Err(error) => panic!("{check}: load failed: {error}"),
    }
}

async fn must_create<S: SessionStore + ?Sized>(store: &S, key: &StoreKey, record: &Record, check: &str) {
    match store.create(key, record).await {
        Ok(Created::Created) => {}
        Ok(Created::Collision) => panic!("{check}: create of a fresh key reported a collision"),
        Err(error) => panic!("{check}: create failed: {error}"),
    }
}

async fn must_apply<S: SessionStore + ?Sized>(store: &S, key: &StoreKey, changes: &Changes, check: &str) -> Applied {
    store
        .apply(key, changes)
        .await
        .unwrap_or_else(|error| panic!("{check}: apply failed: {error}"))
}

/// A change set that sets one value: for a store's own tests.
pub fn set_value(name: &str, json: &str) -> Changes {
    let mut changes = Changes::default();
    changes.values.insert(name.to_owned(), Some(json.into()));
    changes
}

/// A created record loads back equal: values, flash, times (to the millisecond) and expiry override.
pub async fn round_trip<S: SessionStore + ?Sized>(store: &S) {
    let check = "round trip";
    let key = fresh_key();
    let mut record = live_record();
    record.expiry = Some(Expiry::Idle(Duration::from_secs(30 * 24 * 3600)));
    must_create(store, &key, &record, check).await;
    let loaded = must_load(store, &key, check).await;
    assert_same_record(&loaded, &record, check);
}

/// Stores may re-format JSON (PostgreSQL's `jsonb` does): values are compared as JSON.
fn same_json_map(a: &ValueMap, b: &ValueMap) -> bool {
    let parse = |json: &str| serde_json::from_str::<serde_json::Value>(json).ok();
    a.len() == b.len()
        && a.iter()
            .all(|(name, json)| b.get(name).is_some_and(|other| parse(json) == parse(other)))
}

fn assert_same_record(loaded: &Record, expected: &Record, check: &str) {
    assert!(
        same_json_map(&loaded.values, &expected.values),
        "{check}: values differ: loaded {:?}, expected {:?}",
        loaded.values,
        expected.values
    );
    assert!(
        same_json_map(&loaded.flash, &expected.flash),
        "{check}: flash differs: loaded {:?}, expected {:?}",
        loaded.flash,
        expected.flash
    );
    assert_eq!(loaded.created_at, expected.created_at, "{check}: created_at differs");
    assert_eq!(loaded.expires_at, expected.expires_at, "{check}: expires_at differs");
    assert_eq!(loaded.expiry, expected.expiry, "{check}: the expiry override differs");
    assert_eq!(loaded.owner, expected.owner, "{check}: the owner differs");
}

/// Loading a key that was never written gives `None`, not an error.
pub async fn load_of_unknown_key_is_none<S: SessionStore + ?Sized>(store: &S) {
    let loaded = load(store, &fresh_key()).await;
    assert!(
        matches!(loaded, Ok(None)),
        "load of an unknown key: expected Ok(None), got {loaded:?}"
    );
}

/// `apply` sets and removes only the keys it names and leaves the others alone.
pub async fn apply_merges_key_by_key<S: SessionStore + ?Sized>(store: &S) {
    let check = "apply merges key by key";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;

    let mut changes = set_value("theme", r#""dark""#);
    changes.values.insert("cart", None);
    assert_eq!(
        must_apply(store, &key, &changes, check).await,
        Applied::Applied,
        "{check}: apply on a live record must say Applied"
    );

    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("user_id"),
        Some("42"),
        "{check}: a key the change did not name was lost"
    );
    assert_eq!(
        loaded.values.get("theme"),
        Some(r#""dark""#),
        "{check}: the key the change set is missing"
    );
    assert!(
        !loaded.values.contains_key("cart"),
        "{check}: the key the change removed is still there"
    );
    assert_eq!(
        loaded.flash.get("notice"),
        Some(r#""Welcome back""#),
        "{check}: flash changed although the change did not name it"
    );
}

/// `apply` given the record as loaded ([`Changes::base`], which the layer sends to a store that
/// notes revisions): a base that is still what is stored is written with the changes; one that
/// another write has overtaken since it was loaded is merged like any change set, keeping that
/// write; one whose session was deleted since writes nothing.
pub async fn apply_over_a_loaded_base_keeps_later_writes<S: SessionStore + ?Sized>(store: &S) {
    let check = "apply over a loaded base";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;
    let with_base = |mut changes: Changes, base: Record| {
        changes.base = Some(Box::new(base));
        changes
    };

    let current = with_base(set_value("theme", r#""dark""#), must_load(store, &key, check).await);
    assert_eq!(
        must_apply(store, &key, &current, check).await,
        Applied::Applied,
        "{check}: apply on a live record must say Applied"
    );
    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("theme"),
        Some(r#""dark""#),
        "{check}: the change over a current base is missing"
    );
    assert_eq!(
        loaded.values.get("user_id"),
        Some("42"),
        "{check}: a key the change did not name was lost"
    );
    assert_eq!(
        loaded.flash.get("notice"),
        Some(r#""Welcome back""#),
        "{check}: the flash was lost"
    );

    // Two requests load the same session, then each writes its own key.
    let first = with_base(set_value("a", "1"), must_load(store, &key, check).await);
    let second = with_base(set_value("b", "2"), must_load(store, &key, check).await);
    for changes in [&first, &second] {
        assert_eq!(
            must_apply(store, &key, changes, check).await,
            Applied::Applied,
            "{check}: apply on a live record must say Applied"
        );
    }
    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("a"),
        Some("1"),
        "{check}: a write was lost to a later one whose base it had overtaken"
    );
    assert_eq!(
        loaded.values.get("b"),
        Some("2"),
        "{check}: the write over an overtaken base is missing"
    );
    assert_eq!(
        loaded.values.get("theme"),
        Some(r#""dark""#),
        "{check}: an earlier write was lost"
    );

    let ended = with_base(set_value("c", "3"), must_load(store, &key, check).await);
    store
        .delete(&key)
        .await
        .unwrap_or_else(|error| panic!("{check}: delete failed: {error}"));
    assert_eq!(
        must_apply(store, &key, &ended, check).await,
        Applied::Missing,
        "{check}: apply over the base of a deleted record must say Missing"
    );
    let reloaded = load(store, &key).await;
    assert!(
        matches!(reloaded, Ok(None)),
        "{check}: apply over a loaded base brought a deleted record back: {reloaded:?}"
    );
}

/// Many loads at once, of live, expired and unknown sessions, some of the same session, each get
/// their own answer (a store that reads concurrent loads in one query must hand each its row).
pub async fn concurrent_loads_each_get_their_own_session<S: SessionStore + ?Sized>(store: &S) {
    let check = "concurrent loads each get their own session";
    let mut keys = Vec::new();
    for index in 0..8 {
        let key = fresh_key();
        let mut record = live_record();
        record.values.insert("index", index.to_string());
        must_create(store, &key, &record, check).await;
        keys.push((key, Some(index)));
    }
    for _ in 0..2 {
        let key = fresh_key();
        let expired = Record::new(millis_from_now(-10_000), millis_from_now(-1_000));
        must_create(store, &key, &expired, check).await;
        keys.push((key, None));
    }
    keys.push((fresh_key(), None));
    let loads = (0..64).map(|turn| {
        let (key, expected) = &keys[turn * 7 % keys.len()];
        async move { (load(store, key).await, *expected) }
    });
    for (loaded, expected) in join_all(loads).await {
        let loaded = loaded.unwrap_or_else(|error| panic!("{check}: load failed: {error}"));
        let index = loaded.map(|record| {
            record
                .values
                .get("index")
                .unwrap_or_else(|| panic!("{check}: a loaded session lost its values"))
                .parse::<i32>()
                .unwrap_or_else(|error| panic!("{check}: a loaded value changed: {error}"))
        });
        assert_eq!(index, expected, "{check}: a load got another session's answer");
    }
}

/// Many change sets applied at once to one record, each on its own key, all survive.
pub async fn concurrent_changes_to_different_keys_all_survive<S: SessionStore + ?Sized>(store: &S) {
    let check = "concurrent changes to different keys";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;

    let writers = 16;
    let change_sets: Vec<Changes> = (0..writers)
        .map(|i| set_value(&format!("key{i}"), &i.to_string()))
        .collect();
    let results = join_all(change_sets.iter().map(|changes| store.apply(&key, changes))).await;
    for result in results {
        match result {
            Ok(Applied::Applied) => {}
            other => panic!("{check}: a concurrent apply on a live record returned {other:?}"),
        }
    }

    let loaded = must_load(store, &key, check).await;
    for i in 0..writers {
        assert_eq!(
            loaded.values.get(&format!("key{i}")),
            Some(i.to_string().as_str()),
            "{check}: the write of key{i} was lost: a concurrent change overwrote it"
        );
    }
    assert_eq!(
        loaded.values.get("user_id"),
        Some("42"),
        "{check}: a key no writer named was lost"
    );
}

/// A request whose client goes away is dropped wherever it is, and its store call with it: calls
/// dropped after one poll or two, at once or after a few yields (so that each is dropped at a
/// different point of its work), leave the store answering the next ones promptly. (A write
/// dropped half way that left its database transaction open would hold the database's write
/// lock, and every later write would wait for it and fail.)
pub async fn abandoned_calls_leave_the_store_working<S: SessionStore + ?Sized>(store: &S) {
    let check = "abandoned calls";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;
    let mut context = Context::from_waker(Waker::noop());
    // Each round polls its calls `polls` times, then lets `settle` yields pass without
    // polling them (work they handed to other threads goes on), then drops them.
    for round in 0..16 {
        let (polls, settle) = (1 + round % 2, round / 2);
        let changes = set_value("abandoned", &round.to_string());
        let (created, record, deleted) = (fresh_key(), live_record(), fresh_key());
        let mut calls: Vec<Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>>> = vec![
            Some(Box::pin(async { drop(store.apply(&key, &changes).await) })),
            Some(Box::pin(async { drop(store.create(&created, &record).await) })),
            Some(Box::pin(async { drop(store.load(&key).await) })),
            Some(Box::pin(async { drop(store.delete(&deleted).await) })),
        ];
        for poll in 0..polls {
            if poll > 0 {
                tokio::task::yield_now().await;
            }
            for slot in &mut calls {
                // A call that finished is not polled again.
                if slot
                    .as_mut()
                    .is_some_and(|call| call.as_mut().poll(&mut context).is_ready())
                {
                    *slot = None;
                }
            }
        }
        for _ in 0..settle {
            tokio::task::yield_now().await;
        }
        drop(calls);
    }
    // Well under the busy timeouts a stuck write lock would be waited for.
    let limit = Duration::from_secs(3);
    let changes = set_value("after", "1");
    match tokio::time::timeout(limit, store.apply(&key, &changes)).await {
        Ok(Ok(Applied::Applied)) => {}
        Ok(other) => panic!("{check}: an apply after abandoned calls returned {other:?}"),
        Err(_) => panic!(
            "{check}: an apply after abandoned calls took over {limit:?}: an abandoned call left the store stuck"
        ),
    }
    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("after"),
        Some("1"),
        "{check}: the apply after abandoned calls was lost"
    );
}

/// `apply` after `delete` writes nothing and says `Missing`: a slow request never undoes a logout.
pub async fn apply_never_resurrects<S: SessionStore + ?Sized>(store: &S) {
    let check = "apply never resurrects";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;
    store
        .delete(&key)
        .await
        .unwrap_or_else(|error| panic!("{check}: delete failed: {error}"));

    let mut changes = set_value("user_id", "7");
    changes.expires_at = Some(millis_from_now(3_600_000));
    assert_eq!(
        must_apply(store, &key, &changes, check).await,
        Applied::Missing,
        "{check}: apply on a deleted record must say Missing"
    );
    let loaded = load(store, &key).await;
    assert!(
        matches!(loaded, Ok(None)),
        "{check}: apply brought a deleted record back: {loaded:?}"
    );

    let never_created = fresh_key();
    assert_eq!(
        must_apply(store, &never_created, &changes, check).await,
        Applied::Missing,
        "{check}: apply on a key never created must say Missing"
    );
    assert!(
        matches!(load(store, &never_created).await, Ok(None)),
        "{check}: apply created a record"
    );
}

/// `create` on a key with a live record leaves it untouched and says `Collision`.
pub async fn create_reports_collision<S: SessionStore + ?Sized>(store: &S) {
    let check = "create reports collision";
    let key = fresh_key();
    let original = live_record();
    must_create(store, &key, &original, check).await;

    let mut intruder = live_record();
    intruder.values.insert("user_id", "666");
    let second = store.create(&key, &intruder).await;
    assert!(
        matches!(second, Ok(Created::Collision)),
        "{check}: second create of one key returned {second:?}"
    );
    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("user_id"),
        Some("42"),
        "{check}: a colliding create overwrote the live record"
    );
}

/// Expired records are never loaded, never patched, do not block `create`, and `delete_expired`
/// leaves live ones alone.
pub async fn expired_records_are_gone<S: SessionStore + ?Sized>(store: &S) {
    let check = "expired records are gone";
    let expired_key = fresh_key();
    let mut expired = live_record();
    expired.created_at = millis_from_now(-7_200_000);
    expired.expires_at = millis_from_now(-1_000);
    // A store may refuse to keep an already expired record (Redis deletes it at once): both fine.
    store
        .create(&expired_key, &expired)
        .await
        .unwrap_or_else(|error| panic!("{check}: create failed: {error}"));

    let loaded = load(store, &expired_key).await;
    assert!(
        matches!(loaded, Ok(None)),
        "{check}: load returned an expired record: {loaded:?}"
    );
    assert_eq!(
        must_apply(store, &expired_key, &set_value("user_id", "1"), check).await,
        Applied::Missing,
        "{check}: apply patched an expired record"
    );

    let live_key = fresh_key();
    must_create(store, &live_key, &live_record(), check).await;
    store
        .delete_expired()
        .await
        .unwrap_or_else(|error| panic!("{check}: delete_expired failed: {error}"));
    must_load(store, &live_key, check).await;
    assert!(
        matches!(load(store, &expired_key).await, Ok(None)),
        "{check}: expired record visible after delete_expired"
    );

    let fresh = live_record();
    let recreated = store.create(&expired_key, &fresh).await;
    assert!(
        matches!(recreated, Ok(Created::Created)),
        "{check}: an expired record blocked create: {recreated:?}"
    );
    assert_same_record(&must_load(store, &expired_key, check).await, &fresh, check);
}

/// `delete` removes the record; deleting again, or deleting an unknown key, is not an error.
pub async fn delete_removes_and_is_idempotent<S: SessionStore + ?Sized>(store: &S) {
    let check = "delete";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;
    for _ in 0..2 {
        store
            .delete(&key)
            .await
            .unwrap_or_else(|error| panic!("{check}: delete failed: {error}"));
        assert!(
            matches!(load(store, &key).await, Ok(None)),
            "{check}: record still there after delete"
        );
    }
    store
        .delete(&fresh_key())
        .await
        .unwrap_or_else(|error| panic!("{check}: delete of an unknown key failed: {error}"));
}

/// A flash and a value with the same name are different entries.
pub async fn flash_is_separate_from_values<S: SessionStore + ?Sized>(store: &S) {
    let check = "flash is separate from values";
    let key = fresh_key();
    let mut record = live_record();
    record.values.insert("notice", r#""a value""#);
    must_create(store, &key, &record, check).await;

    let mut changes = Changes::default();
    changes.flash.insert("notice", None);
    changes.flash.insert("alert", Some(r#""careful""#.into()));
    must_apply(store, &key, &changes, check).await;

    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("notice"),
        Some(r#""a value""#),
        "{check}: removing a flash removed the value of the same name"
    );
    assert!(
        !loaded.flash.contains_key("notice"),
        "{check}: the removed flash is still there"
    );
    assert_eq!(
        loaded.flash.get("alert"),
        Some(r#""careful""#),
        "{check}: the set flash is missing"
    );
    assert!(
        !loaded.values.contains_key("alert"),
        "{check}: a flash was stored as a value"
    );
}

/// `apply` with a new expiry time or override stores them, and the record stays live.
pub async fn apply_updates_expiry<S: SessionStore + ?Sized>(store: &S) {
    let check = "apply updates expiry";
    let key = fresh_key();
    let record = live_record();
    must_create(store, &key, &record, check).await;

    let later = millis_from_now(7_200_000);
    let remember_me = Expiry::Idle(Duration::from_secs(90 * 24 * 3600));
    let changes = Changes {
        expires_at: Some(later),
        expiry: Some(Some(remember_me)),
        ..Changes::default()
    };
    must_apply(store, &key, &changes, check).await;
    let loaded = must_load(store, &key, check).await;
    assert_eq!(loaded.expires_at, later, "{check}: the new expiry time was not stored");
    assert_eq!(
        loaded.expiry,
        Some(remember_me),
        "{check}: the expiry override was not stored"
    );
    assert_eq!(
        loaded.created_at, record.created_at,
        "{check}: apply changed created_at"
    );

    let touch_only = Changes {
        expires_at: Some(millis_from_now(10_800_000)),
        ..Changes::default()
    };
    must_apply(store, &key, &touch_only, check).await;
    let touched = must_load(store, &key, check).await;
    assert!(
        same_json_map(&touched.values, &record.values),
        "{check}: an expiry touch changed values"
    );

    let cleared = Changes {
        expiry: Some(None),
        ..Changes::default()
    };
    must_apply(store, &key, &cleared, check).await;
    assert_eq!(
        must_load(store, &key, check).await.expiry,
        None,
        "{check}: the expiry override was not removed"
    );
}

/// Every combination of the parts a change set may have (values set and removed, flash set and
/// removed, a new expiry time, expiry override and owner, each present or not) applies to a
/// stored record as [`Record::apply`] applies it in memory: a store that writes only the parts
/// present (as the SQL stores do) must bind and merge each combination right.
pub async fn every_kind_of_change_applies_as_the_model<S: SessionStore + ?Sized>(store: &S) {
    let check = "every kind of change applies as the model";
    let owner = format!("\"owner-{}\"", fresh_key().to_hex());
    for parts in 0u8..128 {
        let has = |part: u8| parts & (1 << part) != 0;
        let mut record = live_record();
        record.flash.insert("alert", r#""Saved""#);
        record.expiry = Some(Expiry::Idle(Duration::from_secs(600)));
        record.owner = Some(owner.clone());
        let key = fresh_key();
        must_create(store, &key, &record, check).await;

        let mut changes = Changes::default();
        if has(0) {
            changes.values.insert("cart", None);
        }
        if has(1) {
            changes.values.insert("theme", Some(format!(r#"{{"parts":{parts}}}"#)));
        }
        if has(2) {
            changes.flash.insert("notice", None);
        }
        if has(3) {
            changes.flash.insert("error", Some(r#""Try again""#.to_owned()));
        }
        if has(4) {
            changes.expires_at = Some(millis_from_now(7_200_000 + i64::from(parts)));
        }
        // The expiry override and the owner are set by some combinations, removed by others.
        if has(5) {
            changes.expiry = Some(has(0).then_some(Expiry::Idle(Duration::from_secs(60 + u64::from(parts)))));
        }
        if has(6) {
            changes.owner = Some(has(1).then(|| format!("\"owner-{}\"", fresh_key().to_hex())));
        }
        let combination = format!("{check} (parts {parts:#09b})");
        assert_eq!(
            must_apply(store, &key, &changes, &combination).await,
            Applied::Applied,
            "{combination}: apply on a live record must say Applied"
        );
        let mut expected = record;
        expected.apply(&changes);
        assert_same_record(&must_load(store, &key, &combination).await, &expected, &combination);
        store
            .delete(&key)
            .await
            .unwrap_or_else(|error| panic!("{combination}: delete failed: {error}"));
    }
}

/// Unicode, quotes, odd key names, empty containers and large values survive unchanged.
pub async fn odd_values_survive<S: SessionStore + ?Sized>(store: &S) {
    let check = "odd values survive";
    let key = fresh_key();
    let mut record = live_record();
    let odd: Vec<(String, String)> = vec![
        ("emoji 🍪".into(), r#""héllo \"wörld\" 🍪\n""#.into()),
        ("dotted.key/with'quote".into(), "null".into()),
        ("empty".into(), "{}".into()),
        ("big".into(), format!("\"{}\"", "x".repeat(64 * 1024))),
        ("number".into(), "-1.5e300".into()),
        ("nested".into(), r#"{"a":[1,{"b":null}],"c":"$1"}"#.into()),
    ];
    record.values.extend(odd.iter().cloned());
    must_create(store, &key, &record, check).await;
    let loaded = must_load(store, &key, check).await;
    for (name, json) in &odd {
        let got = loaded
            .values
            .get(name)
            .unwrap_or_else(|| panic!("{check}: key {name:?} is missing"));
        let same =
            serde_json::from_str::<serde_json::Value>(got).ok() == serde_json::from_str::<serde_json::Value>(json).ok();
        assert!(
            same,
            "{check}: value of {name:?} changed: stored {json:?}, loaded {got:?}"
        );
    }

    let mut changes = Changes::default();
    for (name, _) in &odd {
        changes.values.insert(name.clone(), None);
    }
    must_apply(store, &key, &changes, check).await;
    let loaded = must_load(store, &key, check).await;
    for (name, _) in &odd {
        assert!(
            !loaded.values.contains_key(name),
            "{check}: key {name:?} survived its removal"
        );
    }
}

/// A loaded record is a snapshot: writes to the session after the load (this request's own
/// save, another request's) change what the store holds, never the record already handed out.
/// Stores that share a record's buffers with the requests that loaded them (as `MemoryStore`
/// does) must copy on write.
pub async fn loaded_records_are_snapshots<S: SessionStore + ?Sized>(store: &S) {
    let check = "loaded records are snapshots";
    let key = fresh_key();
    let record = live_record();
    must_create(store, &key, &record, check).await;
    let snapshot = must_load(store, &key, check).await;

    let mut changes = set_value("user_id", "43");
    changes.values.insert("cart", None);
    changes.values.insert("theme", Some(r#""dark""#.into()));
    changes.flash.insert("notice", None);
    changes.expires_at = Some(millis_from_now(7_200_000));
    changes.expiry = Some(Some(Expiry::BrowserSession));
    assert_eq!(
        must_apply(store, &key, &changes, check).await,
        Applied::Applied,
        "{check}"
    );

    assert_same_record(&snapshot, &record, check);
    let mut expected = record.clone();
    expected.apply(&changes);
    assert_same_record(&must_load(store, &key, check).await, &expected, check);
    assert_same_record(&snapshot, &record, check);
}

/// Read-modify-writes of one value that take turns all count: 20 concurrent increments end at
/// 20, so a write is seen by the next holder's load. Through the store's own locks when it has
/// them ([`SessionStore::SHARED_LOCKS`]); otherwise, as the layer locks such a store, under a
/// lock in this process.
pub async fn locked_increments_are_never_lost<S: SessionStore + ?Sized>(store: &S) {
    let check = "locked increments";
    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;
    let in_process = tokio::sync::Mutex::new(());
    let increment = || async {
        let token = LockToken::random();
        let _turn = if S::SHARED_LOCKS {
            None
        } else {
            Some(in_process.lock().await)
        };
        let record = if S::SHARED_LOCKS {
            take_lock(store, &key, &token, Duration::from_secs(10), check).await
        } else {
            must_load(store, &key, check).await
        };
        let count: u32 = record.values.get("count").map_or(0, |count| count.parse().unwrap());
        let changes = set_value("count", &(count + 1).to_string());
        if S::SHARED_LOCKS {
            must_apply_locked(store, &key, &token, &changes, check).await
        } else {
            must_apply(store, &key, &changes, check).await;
        }
    };
    join_all((0..20).map(|_| increment())).await;
    let loaded = must_load(store, &key, check).await;
    assert_eq!(
        loaded.values.get("count"),
        Some("20"),
        "{check}: increments made one at a time were lost: a load did not see the previous write"
    );
}

/// The lock methods of a store that keeps shared locks follow their contract (see "Shared
/// session locks" on [`SessionStore`]): one holder at a time, a lease that ends, a fence on
/// writes, release by the holder only, no lock without a live record, plain calls unaffected.
/// A store without [`SHARED_LOCKS`](SessionStore::SHARED_LOCKS) is locked by the layer, in
/// process, and has no lock methods to check: for it this check returns at once.
pub async fn locks_are_exclusive_and_fenced<S: SessionStore + ?Sized>(store: &S) {
    if !S::SHARED_LOCKS {
        return;
    }
    let check = "shared locks";
    let lease = Duration::from_secs(10);
    let (holder, other) = (LockToken::random(), LockToken::random());
    let attempt = |key, token| async move {
        store
            .lock_and_load(key, token, lease)
            .await
            .unwrap_or_else(|error| panic!("{check}: lock_and_load failed: {error}"))
    };

    let unknown = fresh_key();
    let missing = attempt(&unknown, &holder).await;
    assert!(
        matches!(missing, LockAttempt::Missing),
        "{check}: a key with no record was locked: {missing:?}"
    );

    let key = fresh_key();
    must_create(store, &key, &live_record(), check).await;
    let taken = take_lock(store, &key, &holder, lease, check).await;
    assert_eq!(
        taken.values.get("user_id"),
        Some("42"),
        "{check}: lock_and_load read another record"
    );
    match attempt(&key, &other).await {
        LockAttempt::Busy { remaining } => assert!(
            remaining <= lease,
            "{check}: a busy lock's remaining lease ({remaining:?}) is longer than the lease given"
        ),
        other => panic!("{check}: a second token took a held lock: {other:?}"),
    }
    let plain = must_apply(store, &key, &set_value("plain", "1"), check).await;
    assert_eq!(
        plain,
        Applied::Applied,
        "{check}: a plain apply was refused on a locked record"
    );

    assert!(
        !renew(store, &key, &other, lease, check).await,
        "{check}: renew_lock said yes to a token that does not hold the lock"
    );
    assert!(
        renew(store, &key, &holder, lease, check).await,
        "{check}: renew_lock said no to the holder"
    );
    let fenced = apply_locked(store, &key, &other, &set_value("fenced", "1"), check).await;
    assert_eq!(
        fenced,
        LockedApply::LockLost,
        "{check}: apply_locked wrote for a token that does not hold the lock"
    );
    unlock(store, &key, &other, check).await;
    assert!(
        matches!(attempt(&key, &other).await, LockAttempt::Busy { .. }),
        "{check}: unlock by a token that does not hold the lock released it"
    );
    must_apply_locked(store, &key, &holder, &set_value("locked", "1"), check).await;
    let next = take_lock(store, &key, &other, lease, check).await;
    assert_eq!(
        next.values.get("locked"),
        Some("1"),
        "{check}: the next holder does not see the last holder's write"
    );
    assert!(
        next.values.get("fenced").is_none(),
        "{check}: the fenced write was kept"
    );
    assert_eq!(next.values.get("plain"), Some("1"), "{check}: the plain write was lost");
    unlock(store, &key, &other, check).await;
    take_lock(store, &key, &holder, lease, check).await;

    // A lease runs out; its holder can then no longer write once another has the lock.
    let short = Duration::from_millis(300);
    let expiring = fresh_key();
    must_create(store, &expiring, &live_record(), check).await;
    take_lock(store, &expiring, &holder, short, check).await;
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    take_lock(store, &expiring, &other, lease, check).await;
    assert!(
        !renew(store, &expiring, &holder, lease, check).await,
        "{check}: a holder whose lock was taken over still holds it"
    );
    let late = apply_locked(store, &expiring, &holder, &set_value("late", "1"), check).await;
    assert_eq!(
        late,
        LockedApply::LockLost,
        "{check}: a holder whose lock was taken over wrote"
    );

    // A deleted record leaves nothing to lock or protect.
    store
        .delete(&key)
        .await
        .unwrap_or_else(|error| panic!("{check}: delete failed: {error}"));
    assert!(
        renew(store, &key, &holder, lease, check).await,
        "{check}: renew_lock said no for a deleted record"
    );
    let gone = apply_locked(store, &key, &holder, &set_value("after", "1"), check).await;
    assert_eq!(gone, LockedApply::Missing, "{check}: apply_locked on a deleted record");
    assert!(
        matches!(attempt(&key, &other).await, LockAttempt::Missing),
        "{check}: a deleted record was locked"
    );
    assert!(
        load(store, &key).await.unwrap().is_none(),
        "{check}: apply_locked brought back a deleted record"
    );
}

/// Takes the lock of `key` for `token`, waiting (1 ms pauses) while another holds it.
async fn take_lock<S: SessionStore + ?Sized>(
    store: &S,
    key: &StoreKey,
    token: &LockToken,
    lease: Duration,
    check: &str,
) -> Record {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store.lock_and_load(key, token, lease).await {
            Ok(LockAttempt::Taken(record)) => return record,
            Ok(LockAttempt::Busy { .. }) if tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            other => panic!("{check}: lock_and_load of a live record: {other:?}"),
        }
    }
}

async fn apply_locked<S: SessionStore + ?Sized>(
    store: &S,
    key: &StoreKey,
    token: &LockToken,
    changes: &Changes,
    check: &str,
) -> LockedApply {
    store
        .apply_locked(key, token, changes)
        .await
        .unwrap_or_else(|error| panic!("{check}: apply_locked failed: {error}"))
}

async fn must_apply_locked<S: SessionStore + ?Sized>(
    store: &S,
    key: &StoreKey,
    token: &LockToken,
    changes: &Changes,
    check: &str,
) {
    let applied = apply_locked(store, key, token, changes, check).await;
    assert_eq!(
        applied,
        LockedApply::Applied,
        "{check}: apply_locked by the holder on a live record"
    );
}

async fn renew<S: SessionStore + ?Sized>(
    store: &S,
    key: &StoreKey,
    token: &LockToken,
    lease: Duration,
    check: &str,
) -> bool {
    store
        .renew_lock(key, token, lease)
        .await
        .unwrap_or_else(|error| panic!("{check}: renew_lock failed: {error}"))
}

async fn unlock<S: SessionStore + ?Sized>(store: &S, key: &StoreKey, token: &LockToken, check: &str) {
    store
        .unlock(key, token)
        .await
        .unwrap_or_else(|error| panic!("{check}: unlock failed: {error}"));
}
