//! Checks of the owner index ([`SessionStore::owner_sessions`]): which records an owner's
//! listing holds as owners are set, changed and removed, and records deleted or expired.

use std::collections::BTreeSet;

use std::time::Duration;

use super::{
    fresh_key, live_record, millis_from_now, must_apply, must_apply_locked, must_create, must_load, take_lock,
};
use crate::record::{Changes, Record};
use crate::store::{Applied, LockToken, SessionStore, StoreError, StoreKey};

/// A new owner's JSON, so that checks never see each other's sessions in a shared store.
fn fresh_owner() -> String {
    format!("\"owner-{}\"", fresh_key().to_hex())
}

fn owned_record(owner: &str) -> Record {
    let mut record = live_record();
    record.owner = Some(owner.to_owned());
    record
}

fn owner_change(owner: Option<&str>) -> Changes {
    Changes {
        owner: Some(owner.map(str::to_owned)),
        ..Changes::default()
    }
}

/// The keys listed under `owner`, each checked to carry it; `None` if the store has no owner
/// index ([`StoreError::Unsupported`]).
async fn listed<S: SessionStore + ?Sized>(store: &S, owner: &str, check: &str) -> Option<BTreeSet<StoreKey>> {
    match store.owner_sessions(owner).await {
        Ok(listed) => Some(
            listed
                .into_iter()
                .map(|(key, record)| {
                    assert_eq!(
                        record.owner.as_deref(),
                        Some(owner),
                        "{check}: a record listed under an owner has another owner"
                    );
                    key
                })
                .collect(),
        ),
        Err(StoreError::Unsupported(_)) => None,
        Err(error) => panic!("{check}: owner_sessions failed: {error}"),
    }
}

async fn must_list<S: SessionStore + ?Sized>(store: &S, owner: &str, check: &str) -> BTreeSet<StoreKey> {
    listed(store, owner, check)
        .await
        .unwrap_or_else(|| panic!("{check}: owner_sessions stopped being supported"))
}

fn keys<const N: usize>(keys: [&StoreKey; N]) -> BTreeSet<StoreKey> {
    keys.into_iter().copied().collect()
}

/// A record is listed under its owner whether `create` or `apply` gave it; moves with a changed
/// owner; is listed under none once its owner is removed, it is deleted, or it has expired; and
/// loads with its owner. Returns at once for a store without an owner index (one whose
/// `owner_sessions` says [`StoreError::Unsupported`]).
pub async fn owner_index_follows_the_owner<S: SessionStore + ?Sized>(store: &S) {
    let check = "owner index follows the owner";
    let (owner, other) = (fresh_owner(), fresh_owner());
    if listed(store, &owner, check).await.is_none() {
        return;
    }
    let [a, b, c, d, e] = [fresh_key(), fresh_key(), fresh_key(), fresh_key(), fresh_key()];
    must_create(store, &a, &owned_record(&owner), check).await;
    must_create(store, &b, &owned_record(&owner), check).await;
    must_create(store, &c, &live_record(), check).await;
    must_create(store, &d, &owned_record(&other), check).await;
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([&a, &b]),
        "{check}: listed after create"
    );
    assert_eq!(
        must_load(store, &d, check).await.owner.as_deref(),
        Some(other.as_str()),
        "{check}: a record loads with its owner"
    );

    must_apply(store, &c, &owner_change(Some(&owner)), check).await;
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([&a, &b, &c]),
        "{check}: apply that sets the owner lists the record"
    );

    must_apply(store, &a, &owner_change(Some(&other)), check).await;
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([&b, &c]),
        "{check}: a changed owner unlists"
    );
    assert_eq!(
        must_list(store, &other, check).await,
        keys([&a, &d]),
        "{check}: a changed owner lists"
    );

    must_apply(store, &b, &owner_change(None), check).await;
    assert_eq!(
        must_load(store, &b, check).await.owner,
        None,
        "{check}: a removed owner stays removed"
    );
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([&c]),
        "{check}: a removed owner unlists"
    );

    store
        .delete(&c)
        .await
        .unwrap_or_else(|error| panic!("{check}: delete failed: {error}"));
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([]),
        "{check}: a deleted record is unlisted"
    );

    must_create(store, &e, &owned_record(&other), check).await;
    let expire = Changes {
        expires_at: Some(millis_from_now(-1_000)),
        ..Changes::default()
    };
    must_apply(store, &e, &expire, check).await;
    assert_eq!(
        must_list(store, &other, check).await,
        keys([&a, &d]),
        "{check}: an expired record is unlisted"
    );

    // Other writes leave the owner alone.
    must_apply(store, &d, &super::set_value("theme", "\"dark\""), check).await;
    assert_eq!(
        must_list(store, &other, check).await,
        keys([&a, &d]),
        "{check}: other writes keep the owner"
    );

    // A store that keeps the session locks writes a locked session's owner too.
    if S::SHARED_LOCKS {
        let token = LockToken::random();
        take_lock(store, &b, &token, Duration::from_secs(10), check).await;
        must_apply_locked(store, &b, &token, &owner_change(Some(&other)), check).await;
        assert_eq!(
            must_list(store, &other, check).await,
            keys([&a, &b, &d]),
            "{check}: apply_locked that sets the owner lists the record"
        );
    }
    for key in [a, b, d] {
        let _ = store.delete(&key).await;
    }
}

/// `end_owner_sessions` deletes every live record of the owner but the one spared, says how
/// many, and the ended ones are gone for good: not loaded, not listed, not brought back by a
/// late `apply`. Returns at once for a store without an owner index.
pub async fn ending_an_owners_sessions_spares_one<S: SessionStore + ?Sized>(store: &S) {
    let check = "ending an owner's sessions spares one";
    let owner = fresh_owner();
    if listed(store, &owner, check).await.is_none() {
        return;
    }
    let sessions = [fresh_key(), fresh_key(), fresh_key()];
    for key in &sessions {
        must_create(store, key, &owned_record(&owner), check).await;
    }
    let bystander = fresh_key();
    must_create(store, &bystander, &owned_record(&fresh_owner()), check).await;

    let ended = store
        .end_owner_sessions(&owner, Some(&sessions[0]))
        .await
        .unwrap_or_else(|error| panic!("{check}: end_owner_sessions failed: {error}"));
    assert_eq!(ended, 2, "{check}: two sessions were to end");
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([&sessions[0]]),
        "{check}: the spared one stays"
    );
    for key in &sessions[1..] {
        let loaded = store
            .load(key)
            .await
            .unwrap_or_else(|error| panic!("{check}: load failed: {error}"));
        assert!(loaded.is_none(), "{check}: an ended session still loads");
        assert_eq!(
            must_apply(store, key, &super::set_value("late", "1"), check).await,
            Applied::Missing,
            "{check}: a late write brought an ended session back"
        );
    }
    must_load(store, &bystander, check).await;

    let ended = store
        .end_owner_sessions(&owner, None)
        .await
        .unwrap_or_else(|error| panic!("{check}: end_owner_sessions failed: {error}"));
    assert_eq!(ended, 1, "{check}: with none spared, the last one ends");
    assert_eq!(
        must_list(store, &owner, check).await,
        keys([]),
        "{check}: nothing is left"
    );
    let _ = store.delete(&bystander).await;
}
