//! A session as one request sees and changes it: the record it loaded and this request's
//! changes on top, before they are planned into store writes (by the `save` step).

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::expiry::Expiry;
use crate::id::{SessionId, StoreKey};
use crate::lock::HeldLock;
use crate::record::{Patch, Record, Revision};
use crate::value_map::ValueMap;

static EMPTY: ValueMap = ValueMap::new();

#[cold]
#[inline(never)]
fn warn_destroyed(what: &str) {
    tracing::warn!("{what} on a destroyed session is ignored");
}

/// What a request did with flash, besides reading what arrived.
#[derive(Debug, Default)]
struct FlashChanges {
    /// For the next request.
    outgoing: ValueMap,
    /// For this request only (`flash_now`).
    now: ValueMap,
    /// Incoming flash to carry over (`keep_flash`).
    kept: BTreeSet<String>,
}

/// A session as one request sees and changes it.
#[derive(Debug)]
pub(crate) struct State {
    /// The stored session this request loaded, if any.
    pub(crate) loaded_id: Option<SessionId>,
    /// Its store key, hashed once per request.
    pub(crate) loaded_key: Option<StoreKey>,
    /// The cookie was signed by a retired key: send a freshly signed one.
    pub(crate) resign_cookie: bool,
    /// The request's cookie names no live session (it was ended elsewhere, or expired): unless
    /// this request stores a session, the response removes the cookie.
    pub(crate) stale_cookie: bool,
    /// The record as loaded (values and incoming flash; its buffers shared with the store that
    /// produced it); `None` for a session not stored yet, and once the save is planned or the
    /// session destroyed.
    pub(crate) stored: Option<Record>,
    /// This request's changes to values.
    pub(crate) pending: Patch,
    /// Flash this request set, showed or kept; `None` until it does (most requests never do).
    flash: Option<Box<FlashChanges>>,
    pub(crate) reflash: bool,
    /// `clear` dropped the incoming flash: hidden from this request, removed from the store on save.
    pub(crate) flash_cleared: bool,
    pub(crate) created_at: SystemTime,
    /// Expiry time of the loaded record.
    pub(crate) stored_expires_at: Option<SystemTime>,
    pub(crate) stored_expiry: Option<Expiry>,
    pub(crate) pending_expiry: Option<Option<Expiry>>,
    /// This request's change to the owner the store indexes the session under (the owner key's
    /// JSON, `Some(None)` once removed); `None` while the owner key is untouched.
    pub(crate) pending_owner: Option<Option<String>>,
    /// The id the session moves to on save (`regenerate_id`).
    pub(crate) new_id: Option<SessionId>,
    pub(crate) delete_id: Option<SessionId>,
    pub(crate) destroyed: bool,
    /// The request's time, read once, when it loaded the session: the load judges expiry by
    /// it and the save renews from it, as if the request took no time. (A clock read costs
    /// more than most of a request's session work.)
    pub(crate) now: SystemTime,
    /// The session's lock, when a `LockedSession` took it: moved into the save's plan, or
    /// released when there is nothing to save.
    pub(crate) held_lock: Option<Box<HeldLock>>,
}

impl State {
    /// A new visitor's session: nothing stored yet.
    pub(crate) fn fresh(now: SystemTime) -> Self {
        State {
            loaded_id: None,
            loaded_key: None,
            resign_cookie: false,
            stale_cookie: false,
            stored: None,
            pending: Patch::new(),
            flash: None,
            reflash: false,
            flash_cleared: false,
            created_at: now,
            stored_expires_at: None,
            stored_expiry: None,
            pending_expiry: None,
            pending_owner: None,
            new_id: None,
            delete_id: None,
            destroyed: false,
            now,
            held_lock: None,
        }
    }

    /// A stored session.
    pub(crate) fn loaded(
        id: SessionId,
        key: StoreKey,
        record: Record,
        resign_cookie: bool,
        held_lock: Option<Box<HeldLock>>,
        now: SystemTime,
    ) -> Self {
        // Every field spelled out, as in `fresh`, rather than `..State::fresh(now)`, which is
        // built whole and then copied from. (Filling in a `fresh` state, or one constructor for
        // both, measured 130–150 instructions more per request that reads and writes a key.)
        State {
            loaded_id: Some(id),
            loaded_key: Some(key),
            resign_cookie,
            stale_cookie: false,
            stored_expires_at: Some(record.expires_at),
            stored_expiry: record.expiry,
            created_at: record.created_at,
            stored: Some(record),
            pending: Patch::new(),
            flash: None,
            reflash: false,
            flash_cleared: false,
            pending_expiry: None,
            pending_owner: None,
            new_id: None,
            delete_id: None,
            destroyed: false,
            now,
            held_lock,
        }
    }

    /// Values as loaded.
    fn base(&self) -> &ValueMap {
        self.stored.as_ref().map_or(&EMPTY, |record| &record.values)
    }

    /// The flash that arrived with this request.
    pub(crate) fn incoming_flash(&self) -> &ValueMap {
        match self.stored.as_ref() {
            Some(record) if !self.flash_cleared => &record.flash,
            _ => &EMPTY,
        }
    }

    fn flash_mut(&mut self) -> &mut FlashChanges {
        self.flash.get_or_insert_with(Box::default)
    }

    /// Flash set for the next request.
    pub(crate) fn flash_outgoing(&self) -> &ValueMap {
        self.flash.as_deref().map_or(&EMPTY, |flash| &flash.outgoing)
    }

    /// Flash shown to this request only.
    pub(crate) fn flash_now(&self) -> &ValueMap {
        self.flash.as_deref().map_or(&EMPTY, |flash| &flash.now)
    }

    fn flash_kept(&self, name: &str) -> bool {
        self.flash.as_deref().is_some_and(|flash| flash.kept.contains(name))
    }

    pub(crate) fn current_id(&self) -> Option<&SessionId> {
        self.new_id.as_ref().or(self.loaded_id.as_ref())
    }

    /// The JSON under `name` as this request sees it, as bytes (for decoding).
    pub(crate) fn value_bytes(&self, name: &str) -> Option<&[u8]> {
        // Most reads come before any write: no change to look through. Checked here, not in
        // `Patch::get`, where it measured slower by the clock (BENCHMARKS.md).
        let change = if self.pending.is_empty() {
            None
        } else {
            self.pending.get(name)
        };
        match change {
            Some(change) => change.as_deref().map(str::as_bytes),
            None => self.base().get_bytes(name),
        }
    }

    /// [`value_bytes`](Self::value_bytes) as text.
    pub(crate) fn value_json(&self, name: &str) -> Option<&str> {
        let json = self.value_bytes(name)?;
        // Only whole `str`s are ever stored, as `ValueMap::get` also relies on.
        Some(std::str::from_utf8(json).expect("a session value is UTF-8"))
    }

    pub(crate) fn writable(&self, what: &str) -> bool {
        if self.destroyed {
            warn_destroyed(what);
        }
        !self.destroyed
    }

    /// `owner`: `name` is the owner key, whose value the store indexes the session under.
    pub(crate) fn set_value(&mut self, name: &'static str, json: String, owner: bool) {
        if !self.writable("set") {
            return;
        }
        if owner {
            self.note_owner(Some(&json));
        }
        if self.base().holds(name, &json) {
            // Back to the stored value: nothing to write for this key.
            self.pending.remove(name);
        } else {
            self.pending.insert(name, Some(json));
        }
    }

    pub(crate) fn unset_value(&mut self, name: &'static str, owner: bool) {
        if !self.writable("unset") {
            return;
        }
        if owner {
            self.note_owner(None);
        }
        if self.base().contains_key(name) {
            self.pending.insert(name, None);
        } else {
            self.pending.remove(name);
        }
    }

    pub(crate) fn flash(&mut self, name: &str, json: String) {
        if self.writable("flash") {
            self.flash_mut().outgoing.insert(name, json);
        }
    }

    pub(crate) fn regenerate_id(&mut self, delete_old: bool) {
        if !self.writable("regenerate_id") {
            return;
        }
        // A session that is not stored yet gets a fresh id when it is first saved anyway.
        if let Some(loaded) = &self.loaded_id {
            self.new_id = Some(SessionId::random());
            if delete_old {
                self.delete_id = Some(loaded.clone());
            }
        }
    }

    pub(crate) fn destroy(&mut self) {
        self.destroyed = true;
        // After `invalidate` the stored record to delete is already in `delete_id`.
        self.delete_id = self.loaded_id.clone().or(self.delete_id.take());
        self.new_id = None;
        self.stored = None;
        self.pending.clear();
        // Nothing outlives a destroy but what this response shows (`flash_now`).
        self.flash = self
            .flash
            .take()
            .map(|flash| flash.now)
            .filter(|now| !now.is_empty())
            .map(|now| {
                Box::new(FlashChanges {
                    now,
                    ..FlashChanges::default()
                })
            });
    }

    pub(crate) fn invalidate(&mut self) {
        if !self.writable("invalidate") {
            return;
        }
        let old = self.loaded_id.take();
        *self = State {
            delete_id: old.or(self.delete_id.take()),
            // Still this request's: the old record is deleted under it.
            held_lock: self.held_lock.take(),
            ..State::fresh(self.now)
        };
    }

    pub(crate) fn clear(&mut self) {
        if !self.writable("clear") {
            return;
        }
        self.pending = self.base().keys().map(|name| (name.to_owned(), None)).collect();
        // Whichever schema cleared it, the owner key went with the rest.
        self.note_owner(None);
        self.flash = None;
        self.reflash = false;
        // The stored flash must be removed on save, not just hidden from this request.
        self.flash_cleared = true;
    }

    pub(crate) fn set_expiry(&mut self, expiry: Option<Expiry>) {
        if !self.writable("set_expiry") {
            return;
        }
        self.pending_expiry = (expiry != self.stored_expiry).then_some(expiry);
    }

    pub(crate) fn expiry_override(&self) -> Option<Expiry> {
        self.pending_expiry.unwrap_or(self.stored_expiry)
    }

    pub(crate) fn len(&self) -> usize {
        let removed = self
            .pending
            .iter()
            .filter(|(name, change)| change.is_none() && self.base().contains_key(name))
            .count();
        let added = self
            .pending
            .iter()
            .filter(|(name, change)| change.is_some() && !self.base().contains_key(name))
            .count();
        self.base().len() + added - removed
    }

    pub(crate) fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
            || !self.flash_outgoing().is_empty()
            || self.pending_expiry.is_some()
            || self.new_id.is_some()
            || self.delete_id.is_some()
            || self.destroyed
    }

    /// Values after this request's changes.
    pub(crate) fn current_values(&self) -> ValueMap {
        let mut values = self.base().clone();
        for (name, change) in &self.pending {
            match change {
                Some(json) => values.insert(name, json),
                None => values.remove(name),
            };
        }
        values
    }

    pub(crate) fn flash_patch(&self) -> Patch {
        // Incoming flash ages out unless kept; after `clear` all of it goes.
        let stored_flash = self.stored.as_ref().map_or(&EMPTY, |record| &record.flash);
        if stored_flash.is_empty() && self.flash_outgoing().is_empty() {
            return Patch::new();
        }
        self.aged_flash_patch(stored_flash)
    }

    #[cold]
    #[inline(never)]
    fn aged_flash_patch(&self, stored_flash: &ValueMap) -> Patch {
        let mut patch: Patch = stored_flash
            .keys()
            .filter(|name| self.flash_cleared || (!self.reflash && !self.flash_kept(name)))
            .map(|name| (name.to_owned(), None))
            .collect();
        patch.extend(
            self.flash_outgoing()
                .iter()
                .map(|(name, json)| (name.to_owned(), Some(json.to_owned()))),
        );
        patch
    }

    pub(crate) fn snapshot(&self) -> Record {
        Record {
            values: self.current_values(),
            flash: self.incoming_flash().clone(),
            created_at: self.created_at,
            expires_at: self.stored_expires_at.unwrap_or(self.created_at),
            expiry: self.expiry_override(),
            owner: self.owner(),
            revision: Revision::default(),
        }
    }

    /// The owner the loaded record is indexed under.
    fn stored_owner(&self) -> Option<&str> {
        self.stored.as_ref().and_then(|record| record.owner.as_deref())
    }

    /// Notes the owner key's JSON after this request's change to it (`None`: removed): a change
    /// for the index only if it differs from the stored one, so that setting the same user again
    /// writes nothing. `null` (an `Option` owner set to `None`) is no owner: otherwise every
    /// such session would share the owner `null`.
    fn note_owner(&mut self, owner: Option<&str>) {
        let owner = owner.filter(|json| crate::key::is_owner_json(json));
        self.pending_owner = (owner != self.stored_owner()).then(|| owner.map(str::to_owned));
    }

    /// A session stored before its schema marked the owner key (or by a schema that does not)
    /// has the owner's value but is not indexed under it: index it on this request's save.
    /// `index_json` is the schema's `__owner_index_json`.
    pub(crate) fn index_unindexed_owner(&mut self, name: &str, index_json: fn(&str) -> Option<String>) {
        if self.pending_owner.is_some() || self.destroyed || self.stored.is_none() || self.stored_owner().is_some() {
            return;
        }
        if let Some(owner) = self.value_json(name).and_then(index_json) {
            self.pending_owner = Some(Some(owner));
        }
    }

    /// The owner the session is indexed under after this request's changes.
    pub(crate) fn owner(&self) -> Option<String> {
        match &self.pending_owner {
            Some(owner) => owner.clone(),
            None => self.stored.as_ref().and_then(|record| record.owner.clone()),
        }
    }

    /// Shows `json` under `name` to this request only.
    /// Allowed after `destroy` too: it is never stored, so it cannot bring the session back,
    /// and "Logged out" is what a logout's own page wants to say.
    pub(crate) fn flash_now_insert(&mut self, name: &str, json: String) {
        self.flash_mut().now.insert(name, json);
    }

    /// Carries the incoming flash under `name` over to the next request.
    pub(crate) fn keep_flash(&mut self, name: &str) {
        self.flash_mut().kept.insert(name.to_owned());
    }

    /// Carries all incoming flash over to the next request.
    pub(crate) fn reflash(&mut self) {
        self.reflash = true;
    }

    /// The flash set for the next request, taken out of the state.
    pub(crate) fn take_outgoing_flash(&mut self) -> ValueMap {
        self.flash.take().map(|flash| flash.outgoing).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn owned_by_five() -> State {
        let now = SystemTime::now();
        let mut record = Record::new(now, now + Duration::from_secs(3600));
        record.values.insert("user_id", "5");
        record.owner = Some("5".to_owned());
        let id = SessionId::random();
        let key = id.store_key();
        State::loaded(id, key, record, false, None, now)
    }

    /// The index is written only when the owner changes: the same user set again is no change,
    /// and `null` (an `Option` owner set to `None`) is no owner rather than an owner "null".
    #[test]
    fn the_owner_is_a_change_only_when_it_changes() {
        let mut state = owned_by_five();
        state.set_value("user_id", "5".to_owned(), true);
        assert_eq!(state.pending_owner, None);
        state.set_value("user_id", "6".to_owned(), true);
        assert_eq!(state.pending_owner, Some(Some("6".to_owned())));
        state.set_value("user_id", "5".to_owned(), true);
        assert_eq!(state.pending_owner, None, "back to the stored owner");
        state.set_value("user_id", "null".to_owned(), true);
        assert_eq!(state.pending_owner, Some(None));
        let mut state = owned_by_five();
        state.clear();
        assert_eq!(state.pending_owner, Some(None));
        let mut state = owned_by_five();
        state.set_value("theme", "\"dark\"".to_owned(), false);
        assert_eq!(state.pending_owner, None, "other keys leave the owner alone");
    }
}
