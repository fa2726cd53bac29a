//! The session handle a handler works with, and the per-request state behind it.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{Config, Expiry};
use crate::id::{SessionId, StoreKey};
use crate::key::{Key, SessionSchema};
use crate::layer::{RequestSession, StateGuard};
use crate::record::{Changes, Patch, Record};
use crate::value_map::{ValueMap, MAX_LEN};

static EMPTY: ValueMap = ValueMap::new();

/// The session of the current request, typed by the schema of its values `V` and of its flash `F`.
///
/// Take it as an axum extractor (the [`SessionLayer`](crate::SessionLayer) must be installed).
/// Keys come from `#[derive(SessionSchema)]`, so a misspelt key, a value of the wrong type, or a
/// flash key used as a value key is a compile error.
///
/// ```
/// use typed_sessions::{Session, SessionSchema};
///
/// #[derive(SessionSchema)]
/// struct Values {
///     user_id: u64,
///     visits: u32,
/// }
///
/// #[derive(SessionSchema)]
/// struct Flash {
///     notice: String,
/// }
///
/// async fn handler(mut session: Session<Values, Flash>) -> String {
///     session.update(Values::VISITS, |visits| *visits += 1);
///     if session.get(Values::USER_ID).is_none() {
///         session.flash(Flash::NOTICE, "Please log in".to_owned());
///     }
///     format!("visit number {}", session.get(Values::VISITS).unwrap_or(0))
/// }
/// ```
///
/// Clones share one session; several schemas (`Session<AuthValues>` and `Session<CartValues>`)
/// extracted in one request share it too. Reads take `&self`, writes `&mut self`. Nothing is
/// written until the handler has returned: then the layer stores only what changed, key by key.
pub struct Session<V: SessionSchema, F: SessionSchema = ()> {
    request: Arc<RequestSession>,
    schema: PhantomData<fn() -> (V, F)>,
}

impl<V: SessionSchema, F: SessionSchema> Clone for Session<V, F> {
    fn clone(&self) -> Self {
        Session {
            request: Arc::clone(&self.request),
            schema: PhantomData,
        }
    }
}

impl<V: SessionSchema, F: SessionSchema> fmt::Debug for Session<V, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("id", &state.current_id())
            .field("len", &state.len())
            .field("dirty", &state.is_dirty())
            .field("destroyed", &state.destroyed)
            .finish()
    }
}

impl<V: SessionSchema, F: SessionSchema> Session<V, F> {
    /// `request` must be loaded: the extractor loads it before it builds a `Session`.
    pub(crate) fn from_loaded(request: Arc<RequestSession>) -> Self {
        debug_assert!(request.is_loaded());
        Session {
            request,
            schema: PhantomData,
        }
    }

    fn state(&self) -> StateGuard<'_> {
        self.request.state()
    }

    /// The value under `key`, or `None` if it is absent — or stored in a form that no longer
    /// decodes as `T` (after a type change, say): that is logged as a warning, never an error.
    pub fn get<T: DeserializeOwned>(&self, key: Key<V, T>) -> Option<T> {
        let state = self.state();
        decode(key.name(), "value", state.value_json(key.name())?)
    }

    /// Whether a value is stored under `key`.
    pub fn has<T>(&self, key: Key<V, T>) -> bool {
        self.state().value_json(key.name()).is_some()
    }

    /// Stores `value` under `key`.
    ///
    /// A value that `serde_json` cannot encode (a map with non-string keys, a `Serialize` impl
    /// that fails) is not stored; that is logged as an error.
    pub fn set<T: Serialize>(&mut self, key: Key<V, T>, value: T) {
        let Some(json) = encode(key.name(), &value) else { return };
        self.state().set_value(key.name(), json);
    }

    /// Removes the value under `key`.
    pub fn unset<T>(&mut self, key: Key<V, T>) {
        self.state().unset_value(key.name());
    }

    /// Removes the value under `key` and returns it (Laravel's `pull`).
    pub fn take<T: DeserializeOwned>(&mut self, key: Key<V, T>) -> Option<T> {
        let mut state = self.state();
        let value = state
            .value_json(key.name())
            .and_then(|json| decode(key.name(), "value", json));
        state.unset_value(key.name());
        value
    }

    /// Reads the value under `key` (or `T::default()`), lets `change` modify it, stores the
    /// result: `session.update(Values::VISITS, |n| *n += 1)`.
    pub fn update<T, R>(&mut self, key: Key<V, T>, change: impl FnOnce(&mut T) -> R) -> R
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let mut value = self.get(key).unwrap_or_default();
        let result = change(&mut value);
        self.set(key, value);
        result
    }

    /// Shows `value` under `key` to the next request that loads this session, and then no more.
    pub fn flash<T: Serialize>(&mut self, key: Key<F, T>, value: T) {
        let Some(json) = encode(key.name(), &value) else { return };
        self.state().flash(key.name(), json);
    }

    /// Shows `value` under `key` to this request only ([`get_flash`](Self::get_flash)); never stored.
    pub fn flash_now<T: Serialize>(&mut self, key: Key<F, T>, value: T) {
        let Some(json) = encode(key.name(), &value) else { return };
        let mut state = self.state();
        if state.writable("flash_now") {
            state.flash_mut().now.insert(key.name(), json);
        }
    }

    /// The flash under `key` that arrived with this request, or that
    /// [`flash_now`](Self::flash_now) set. Reading does not consume it: it is gone for the next
    /// request anyway, unless [kept](Self::keep_flash).
    pub fn get_flash<T: DeserializeOwned>(&self, key: Key<F, T>) -> Option<T> {
        let state = self.state();
        let json = state
            .flash_now()
            .get(key.name())
            .or_else(|| state.incoming_flash().get(key.name()))?;
        decode(key.name(), "flash", json)
    }

    /// Carries the flash under `key` that arrived with this request over to the next one.
    pub fn keep_flash<T>(&mut self, key: Key<F, T>) {
        self.state().flash_mut().kept.insert(key.name().to_owned());
    }

    /// Carries all flash that arrived with this request over to the next one.
    pub fn reflash(&mut self) {
        self.state().reflash = true;
    }

    /// Gives the session a new id, keeping its data: call it when privileges change (log in) so
    /// an id planted by an attacker before login is worthless after it. With `delete_old` the
    /// record under the old id is deleted when the session is saved.
    ///
    /// On save the stored record is read again, this request's changes are applied to it and
    /// the result is stored under the new id, so what concurrent requests wrote is kept; if the
    /// session was destroyed meanwhile, nothing is stored and no cookie is sent.
    pub fn regenerate_id(&mut self, delete_old: bool) {
        self.state().regenerate_id(delete_old);
    }

    /// Ends the session: the record is deleted and the cookie expired when the response leaves.
    /// Writes after this are ignored (and logged).
    pub fn destroy(&mut self) {
        self.state().destroy();
    }

    /// Drops all data and flash and starts over under a new id; the old record is deleted.
    pub fn invalidate(&mut self) {
        self.state().invalidate();
    }

    /// Removes all values and flash; the session (and its id) stays.
    pub fn clear(&mut self) {
        self.state().clear();
    }

    /// The session's id: `None` for a new visitor whose session has not been stored yet.
    /// After [`regenerate_id`](Self::regenerate_id), the new id.
    pub fn id(&self) -> Option<SessionId> {
        self.state().current_id().cloned()
    }

    /// The id whose record will be deleted when the session is saved (after
    /// `regenerate_id(true)`, `invalidate` or `destroy`).
    pub fn delete_id(&self) -> Option<SessionId> {
        self.state().delete_id.clone()
    }

    /// How many values the session holds (flash not counted).
    pub fn len(&self) -> usize {
        self.state().len()
    }

    /// Whether the session holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this request changed the session (values, flash, id, expiry, or ended it).
    pub fn is_dirty(&self) -> bool {
        self.state().is_dirty()
    }

    /// Whether [`destroy`](Self::destroy) was called.
    pub fn is_destroyed(&self) -> bool {
        self.state().destroyed
    }

    /// The session as it would be stored now (values as JSON text, the flash that arrived with
    /// this request): for debugging and admin pages, not for normal reads.
    pub fn data(&self) -> Record {
        self.state().snapshot()
    }

    /// Overrides the layer's expiry for this session and keeps the override with it: "remember
    /// me" is `session.set_expiry(Expiry::Idle(thirty_days))`. `None` goes back to the layer's.
    pub fn set_expiry(&mut self, expiry: impl Into<Option<Expiry>>) {
        self.state().set_expiry(expiry.into());
    }

    /// The expiry that applies to this session: its override, or the layer's.
    pub fn expiry(&self) -> Expiry {
        self.state().expiry_override().unwrap_or(self.request.config.expiry)
    }
}

#[cold]
#[inline(never)]
fn warn_destroyed(what: &str) {
    tracing::warn!("{what} on a destroyed session is ignored");
}

// The logging of the error paths is out of line: `decode` and `encode` are inlined into every
// `get` and `set`, and should stay small there.

fn decode<T: DeserializeOwned>(name: &str, kind: &str, json: &str) -> Option<T> {
    serde_json::from_str(json)
        .map_err(|error| warn_undecodable(name, kind, &error))
        .ok()
}

#[cold]
#[inline(never)]
fn warn_undecodable(name: &str, kind: &str, error: &serde_json::Error) {
    tracing::warn!(key = name, %error, "stored session {kind} does not decode as the type its key declares; treating it as absent");
}

fn encode<T: Serialize>(name: &str, value: &T) -> Option<String> {
    match serde_json::to_string(value) {
        Ok(json) if json.len() <= MAX_LEN => Some(json),
        Ok(json) => {
            error_too_long(name, json.len());
            None
        }
        Err(error) => {
            error_unencodable(name, &error);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn error_too_long(name: &str, len: usize) {
    tracing::error!(
        key = name,
        len,
        "session value is 4 GiB or longer as JSON; it was not stored"
    );
}

#[cold]
#[inline(never)]
fn error_unencodable(name: &str, error: &serde_json::Error) {
    tracing::error!(key = name, %error, "session value cannot be encoded as JSON; it was not stored");
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
    loaded_key: Option<StoreKey>,
    /// The cookie was signed by a retired key: send a freshly signed one.
    resign_cookie: bool,
    /// The record as loaded (values and incoming flash), shared with the store that produced
    /// it; `None` for a session not stored yet, and once destroyed.
    stored: Option<Arc<Record>>,
    /// This request's changes to values.
    pending: Patch,
    /// Flash this request set, showed or kept; `None` until it does (most requests never do).
    flash: Option<Box<FlashChanges>>,
    reflash: bool,
    /// `clear` dropped the incoming flash: hidden from this request, removed from the store on save.
    flash_cleared: bool,
    created_at: SystemTime,
    /// Expiry time of the loaded record.
    stored_expires_at: Option<SystemTime>,
    stored_expiry: Option<Expiry>,
    pending_expiry: Option<Option<Expiry>>,
    /// The id the session moves to on save (`regenerate_id`).
    new_id: Option<SessionId>,
    delete_id: Option<SessionId>,
    destroyed: bool,
    /// The request's time, read once, when it loaded the session: the load judges expiry by
    /// it and the save renews from it, as if the request took no time. (A clock read costs
    /// more than most of a request's session work.)
    pub(crate) now: SystemTime,
}

impl State {
    /// A new visitor's session: nothing stored yet.
    pub(crate) fn fresh(now: SystemTime) -> Self {
        State {
            loaded_id: None,
            loaded_key: None,
            resign_cookie: false,
            stored: None,
            pending: Patch::new(),
            flash: None,
            reflash: false,
            flash_cleared: false,
            created_at: now,
            stored_expires_at: None,
            stored_expiry: None,
            pending_expiry: None,
            new_id: None,
            delete_id: None,
            destroyed: false,
            now,
        }
    }

    /// A stored session.
    pub(crate) fn loaded(
        id: SessionId,
        key: StoreKey,
        record: Arc<Record>,
        resign_cookie: bool,
        now: SystemTime,
    ) -> Self {
        State {
            resign_cookie,
            loaded_id: Some(id),
            loaded_key: Some(key),
            stored_expires_at: Some(record.expires_at),
            stored_expiry: record.expiry,
            created_at: record.created_at,
            stored: Some(record),
            ..State::fresh(now)
        }
    }

    /// Values as loaded.
    fn base(&self) -> &ValueMap {
        self.stored.as_deref().map_or(&EMPTY, |record| &record.values)
    }

    /// The flash that arrived with this request.
    fn incoming_flash(&self) -> &ValueMap {
        match self.stored.as_deref() {
            Some(record) if !self.flash_cleared => &record.flash,
            _ => &EMPTY,
        }
    }

    fn flash_mut(&mut self) -> &mut FlashChanges {
        self.flash.get_or_insert_with(Box::default)
    }

    /// Flash set for the next request.
    fn flash_outgoing(&self) -> &ValueMap {
        self.flash.as_deref().map_or(&EMPTY, |flash| &flash.outgoing)
    }

    /// Flash shown to this request only.
    fn flash_now(&self) -> &ValueMap {
        self.flash.as_deref().map_or(&EMPTY, |flash| &flash.now)
    }

    fn flash_kept(&self, name: &str) -> bool {
        self.flash.as_deref().is_some_and(|flash| flash.kept.contains(name))
    }

    fn current_id(&self) -> Option<&SessionId> {
        self.new_id.as_ref().or(self.loaded_id.as_ref())
    }

    fn value_json(&self, name: &str) -> Option<&str> {
        match self.pending.get(name) {
            Some(change) => change.as_deref(),
            None => self.base().get(name),
        }
    }

    fn writable(&self, what: &str) -> bool {
        if self.destroyed {
            warn_destroyed(what);
        }
        !self.destroyed
    }

    fn set_value(&mut self, name: &'static str, json: String) {
        if !self.writable("set") {
            return;
        }
        if self.base().holds(name, &json) {
            // Back to the stored value: nothing to write for this key.
            self.pending.remove(name);
        } else {
            self.pending.insert(name, Some(json));
        }
    }

    fn unset_value(&mut self, name: &'static str) {
        if !self.writable("unset") {
            return;
        }
        if self.base().contains_key(name) {
            self.pending.insert(name, None);
        } else {
            self.pending.remove(name);
        }
    }

    fn flash(&mut self, name: &str, json: String) {
        if self.writable("flash") {
            self.flash_mut().outgoing.insert(name, json);
        }
    }

    fn regenerate_id(&mut self, delete_old: bool) {
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

    fn destroy(&mut self) {
        self.destroyed = true;
        // After `invalidate` the stored record to delete is already in `delete_id`.
        self.delete_id = self.loaded_id.clone().or(self.delete_id.take());
        self.new_id = None;
        self.stored = None;
        self.pending.clear();
        self.flash = None;
    }

    fn invalidate(&mut self) {
        if !self.writable("invalidate") {
            return;
        }
        let old = self.loaded_id.take();
        *self = State {
            delete_id: old.or(self.delete_id.take()),
            ..State::fresh(self.now)
        };
    }

    fn clear(&mut self) {
        if !self.writable("clear") {
            return;
        }
        self.pending = self.base().keys().map(|name| (name.to_owned(), None)).collect();
        self.flash = None;
        self.reflash = false;
        // The stored flash must be removed on save, not just hidden from this request.
        self.flash_cleared = true;
    }

    fn set_expiry(&mut self, expiry: Option<Expiry>) {
        if !self.writable("set_expiry") {
            return;
        }
        self.pending_expiry = (expiry != self.stored_expiry).then_some(expiry);
    }

    fn expiry_override(&self) -> Option<Expiry> {
        self.pending_expiry.unwrap_or(self.stored_expiry)
    }

    fn len(&self) -> usize {
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

    fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
            || !self.flash_outgoing().is_empty()
            || self.pending_expiry.is_some()
            || self.new_id.is_some()
            || self.delete_id.is_some()
            || self.destroyed
    }

    /// Values after this request's changes.
    fn current_values(&self) -> ValueMap {
        let mut values = self.base().clone();
        for (name, change) in &self.pending {
            match change {
                Some(json) => values.insert(name, json),
                None => values.remove(name),
            };
        }
        values
    }

    fn flash_patch(&self) -> Patch {
        // Incoming flash ages out unless kept; after `clear` all of it goes.
        let stored_flash = self.stored.as_deref().map_or(&EMPTY, |record| &record.flash);
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

    fn snapshot(&self) -> Record {
        Record {
            values: self.current_values(),
            flash: self.incoming_flash().clone(),
            created_at: self.created_at,
            expires_at: self.stored_expires_at.unwrap_or(self.created_at),
            expiry: self.expiry_override(),
        }
    }

    /// Lets go of the loaded record once the save is planned, so that a store holding it in
    /// memory merges the changes in place instead of copying it.
    pub(crate) fn release_record(&mut self) {
        self.stored = None;
    }

    /// The common save, done where the changes are: a stored session whose save merges its
    /// changed values (and maybe a renewed expiry) and nothing else (no flash, no new id,
    /// nothing to delete). `merge` gets the store key, the changes, the cookie to send and the
    /// session's id, and answers `None` when the store must be awaited: the changes come back
    /// as a plan then. Not called when there is nothing to merge. `None` when the save needs
    /// more than a merge: [`plan`](Self::plan) makes it.
    ///
    /// Nothing is built or moved on the way to the store: the plan, the largest value a request
    /// makes, is made only for stores that must be awaited, and for the rare saves.
    pub(crate) fn merge_in_place<R>(
        &mut self,
        config: &Config,
        merge: impl FnOnce(&StoreKey, &Changes, CookiePlan, &SessionId) -> Option<R>,
    ) -> Option<InPlace<R>> {
        if self.destroyed
            || self.new_id.is_some()
            || self.delete_id.is_some()
            || self.flash.is_some()
            || self.flash_cleared
            || self.stored.as_deref().is_none_or(|record| !record.flash.is_empty())
        {
            return None;
        }
        let (Some(id), Some(key)) = (&self.loaded_id, self.loaded_key) else {
            return None;
        };
        // The same change set as `plan` builds for a stored session, with no flash: built here
        // on its own, because every request runs this and a shared helper measured about 40
        // instructions more (the change set moved through its return value).
        let (expires_at, cookie) = self.renewal(config);
        // Let go of the loaded record first, so that a store holding it in memory merges the
        // changes in place instead of copying it.
        self.stored = None;
        if self.pending.is_empty() && expires_at.is_none() && self.pending_expiry.is_none() {
            // Read, not changed, not due for a touch: most requests.
            return Some(InPlace::Unchanged);
        }
        let changes = Changes {
            values: std::mem::take(&mut self.pending),
            flash: Patch::new(),
            expires_at,
            expiry: self.pending_expiry,
        };
        Some(match merge(&key, &changes, cookie, id) {
            Some(merged) => InPlace::Merged(merged),
            None => InPlace::MustWait(Box::new(Plan {
                write: Some(Write::Apply {
                    key,
                    changes,
                    id: id.clone(),
                }),
                delete: None,
                cookie,
            })),
        })
    }

    /// What saving this request's session takes: the store writes and the cookie to send.
    /// Called once, after the handler: moves this request's changes out of the state.
    pub(crate) fn plan(&mut self, config: &Config) -> Plan {
        let delete = self.delete_id.take();
        if self.destroyed {
            return Plan::ending(delete);
        }
        match (&self.loaded_id, &self.new_id) {
            (None, _) => {
                let (expires_at, cookie_max_age) = self.renewed(config);
                self.create_plan(expires_at, cookie_max_age, delete)
            }
            (Some(_), Some(_)) => {
                let (expires_at, cookie_max_age) = self.renewed(config);
                self.move_plan(expires_at, cookie_max_age, delete)
            }
            (Some(loaded), None) => {
                let id = loaded.clone();
                let key = self.loaded_key.expect("a loaded session has a store key");
                let (expires_at, cookie) = self.renewal(config);
                let changes = Changes {
                    values: std::mem::take(&mut self.pending),
                    flash: self.flash_patch(),
                    expires_at,
                    expiry: self.pending_expiry,
                };
                if changes.is_empty() {
                    return Plan {
                        write: None,
                        delete,
                        cookie: CookiePlan::Keep,
                    };
                }
                Plan {
                    write: Some(Write::Apply { key, changes, id }),
                    delete,
                    cookie,
                }
            }
        }
    }

    /// The expiry time a session saved at the request's time gets, and the cookie's `Max-Age`
    /// (`None` for a browser-session cookie).
    fn renewed(&self, config: &Config) -> (SystemTime, Option<Duration>) {
        let now = self.now;
        let expiry = self.expiry_override().unwrap_or(config.expiry);
        let expires_at = config.expires_at(expiry, self.created_at, now);
        let cookie_max_age = match expiry {
            Expiry::Idle(_) => Some(expires_at.duration_since(now).unwrap_or(Duration::ZERO)),
            Expiry::BrowserSession => None,
        };
        (expires_at, cookie_max_age)
    }

    /// For a stored session saved at the request's time: its new expiry time, if it is to be
    /// rewritten, and the cookie to send.
    ///
    /// The expiry (and the cookie's Max-Age with it) is renewed only once enough of the idle
    /// window has passed, on writes as on reads: a busy session is not rewritten, nor sent a new
    /// cookie, on every request. A changed expiry, or a cookie signed by a retired key, renews
    /// at once.
    fn renewal(&self, config: &Config) -> (Option<SystemTime>, CookiePlan) {
        let now = self.now;
        let forced = self.pending_expiry.is_some() || self.resign_cookie;
        let margin = config.touch_margin(self.expiry_override().unwrap_or(config.expiry));
        let due = |stored: SystemTime| now.checked_add(margin).is_none_or(|soon| stored <= soon);
        if !forced && !self.stored_expires_at.is_none_or(due) {
            return (None, CookiePlan::Keep);
        }
        let (expires_at, max_age) = self.renewed(config);
        // Under a lifetime cap the expiry can stop moving: nothing to renew then.
        if !forced && self.stored_expires_at == Some(expires_at) {
            return (None, CookiePlan::Keep);
        }
        let cookie = match max_age {
            Some(max_age) => CookiePlan::Set { max_age: Some(max_age) },
            // A browser-session cookie replaces a persistent one ("forget me"), and a cookie
            // signed by a retired key is re-signed.
            None if forced => CookiePlan::Set { max_age: None },
            None => CookiePlan::Keep,
        };
        (Some(expires_at), cookie)
    }

    // The rarer plans are kept out of line: the common one (a loaded session merging its
    // changes) then runs through less code, which is most of what a request costs.

    /// Not stored yet (a new visitor, or after `invalidate`): nothing came in, so the record is
    /// this request's values and flash. Stored only if it holds something.
    #[cold]
    #[inline(never)]
    fn create_plan(&mut self, expires_at: SystemTime, max_age: Option<Duration>, delete: Option<SessionId>) -> Plan {
        let record = Record {
            values: self.current_values(),
            flash: self.flash.take().map(|flash| flash.outgoing).unwrap_or_default(),
            created_at: self.created_at,
            expires_at,
            expiry: self.expiry_override(),
        };
        if record.values.is_empty() && record.flash.is_empty() {
            return Plan::ending(delete);
        }
        Plan {
            write: Some(Write::Create { record }),
            delete,
            cookie: CookiePlan::Set { max_age },
        }
    }

    /// `regenerate_id`: the record moves to the new id with this request's changes applied on
    /// top of what is stored then, so a concurrent write is kept and a concurrent logout is not
    /// undone.
    #[cold]
    #[inline(never)]
    fn move_plan(&mut self, expires_at: SystemTime, max_age: Option<Duration>, delete: Option<SessionId>) -> Plan {
        Plan {
            write: Some(Write::Move {
                from: self.loaded_key.expect("a loaded session has a store key"),
                to: self.new_id.clone().expect("a move has a new id"),
                changes: Changes {
                    values: std::mem::take(&mut self.pending),
                    flash: self.flash_patch(),
                    expires_at: Some(expires_at),
                    expiry: self.pending_expiry,
                },
            }),
            delete,
            cookie: CookiePlan::Set { max_age },
        }
    }
}

/// What [`State::merge_in_place`] did.
pub(crate) enum InPlace<R> {
    /// Nothing to write, no cookie to send.
    Unchanged,
    /// `merge` merged the changes and answered this.
    Merged(R),
    /// `merge` answered that the store must be awaited: the changes, as a plan (boxed: it is
    /// large, and rare).
    MustWait(Box<Plan>),
}

/// The store writes and cookie that end a request.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) write: Option<Write>,
    /// Deleted after the write succeeded.
    pub(crate) delete: Option<SessionId>,
    pub(crate) cookie: CookiePlan,
}

impl Plan {
    /// A session that ends without a successor: its record is deleted if it had one, and then
    /// its cookie goes too (a session that was never stored has no cookie of ours to remove).
    fn ending(delete: Option<SessionId>) -> Self {
        let cookie = if delete.is_some() {
            CookiePlan::Remove
        } else {
            CookiePlan::Keep
        };
        Plan {
            write: None,
            delete,
            cookie,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Write {
    /// A new session's first record, under a random id.
    Create { record: Record },
    /// A stored session's changes, merged into its record under `key`; `id` names it in the cookie.
    Apply {
        key: StoreKey,
        changes: Changes,
        id: SessionId,
    },
    /// `regenerate_id`: the stored record, if it still exists, with `changes` applied, under `to`.
    Move {
        from: StoreKey,
        to: SessionId,
        changes: Changes,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CookiePlan {
    Keep,
    Set { max_age: Option<Duration> },
    Remove,
}
