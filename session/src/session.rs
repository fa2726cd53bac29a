//! The session handle a handler works with: typed reads and writes on the request's `State`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::expiry::Expiry;
use crate::id::SessionId;
use crate::key::{FlashSchema, Key, SessionSchema};
use crate::record::Record;
use crate::request::{RequestSession, StateGuard};
use crate::value_map::MAX_LEN;

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
///
/// A `Session` belongs to its request. One kept past the response (moved into a spawned task,
/// say) still names its session ([`id`](Self::id)), but the layer has handed its values and
/// changes to the save by then: its reads find nothing, and what it writes is never saved. Read
/// what a task needs before the handler returns, and give the task the values.
pub struct Session<V: SessionSchema, F: FlashSchema = ()> {
    request: Arc<RequestSession>,
    schema: PhantomData<fn() -> (V, F)>,
}

impl<V: SessionSchema, F: FlashSchema> Clone for Session<V, F> {
    fn clone(&self) -> Self {
        Session {
            request: Arc::clone(&self.request),
            schema: PhantomData,
        }
    }
}

impl<V: SessionSchema, F: FlashSchema> fmt::Debug for Session<V, F> {
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

impl<V: SessionSchema, F: FlashSchema> Session<V, F> {
    /// `request` must be loaded: the extractor loads it before it builds a `Session`.
    pub(crate) fn from_loaded(request: Arc<RequestSession>) -> Self {
        debug_assert!(request.is_loaded());
        if let Some(owner) = V::OWNER {
            if request.config().storage.indexes_owners() {
                request.state().index_unindexed_owner(owner, V::__owner_index_json);
            }
        }
        Session {
            request,
            schema: PhantomData,
        }
    }

    fn state(&self) -> StateGuard<'_> {
        self.request.state()
    }

    pub(crate) fn request(&self) -> &RequestSession {
        &self.request
    }

    /// The value under `key`, or `None` if it is absent — or stored in a form that no longer
    /// decodes as `T` (after a type change, say): that is logged as a warning, never an error.
    pub fn get<T: DeserializeOwned>(&self, key: Key<V, T>) -> Option<T> {
        let state = self.state();
        decode(key.name(), "value", state.value_bytes(key.name())?)
    }

    /// Whether a value is stored under `key`.
    pub fn has<T>(&self, key: Key<V, T>) -> bool {
        self.state().value_bytes(key.name()).is_some()
    }

    /// Stores `value` under `key`.
    ///
    /// A value that `serde_json` cannot encode (a map with non-string keys, a `Serialize` impl
    /// that fails) is not stored; that is logged as an error.
    pub fn set<T: Serialize>(&mut self, key: Key<V, T>, value: T) {
        let Some(json) = encode(key.name(), &value) else { return };
        self.state().set_value(key.name(), json, is_owner(key));
    }

    /// Removes the value under `key`.
    pub fn unset<T>(&mut self, key: Key<V, T>) {
        self.state().unset_value(key.name(), is_owner(key));
    }

    /// Removes the value under `key` and returns it (Laravel's `pull`).
    pub fn take<T: DeserializeOwned>(&mut self, key: Key<V, T>) -> Option<T> {
        let mut state = self.state();
        let value = state
            .value_bytes(key.name())
            .and_then(|json| decode(key.name(), "value", json));
        state.unset_value(key.name(), is_owner(key));
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
    /// Also after [`destroy`](Self::destroy): the page that answers a logout can say so.
    pub fn flash_now<T: Serialize>(&mut self, key: Key<F, T>, value: T) {
        let Some(json) = encode(key.name(), &value) else { return };
        self.state().flash_now_insert(key.name(), json);
    }

    /// The flash under `key` that arrived with this request, or that
    /// [`flash_now`](Self::flash_now) set. Reading does not consume it: it is gone for the next
    /// request anyway, unless [kept](Self::keep_flash).
    pub fn get_flash<T: DeserializeOwned>(&self, key: Key<F, T>) -> Option<T> {
        let state = self.state();
        let json = state
            .flash_now()
            .get_bytes(key.name())
            .or_else(|| state.incoming_flash().get_bytes(key.name()))?;
        decode(key.name(), "flash", json)
    }

    /// Carries the flash under `key` that arrived with this request over to the next one.
    pub fn keep_flash<T>(&mut self, key: Key<F, T>) {
        self.state().keep_flash(key.name());
    }

    /// Carries all flash that arrived with this request over to the next one.
    pub fn reflash(&mut self) {
        self.state().reflash();
    }

    /// Gives the session a new id, keeping its data: call it when privileges change (log in) so
    /// an id planted by an attacker before login is worthless after it. With `delete_old` the
    /// record under the old id is deleted when the session is saved.
    ///
    /// On save the stored record is read again, this request's changes are applied to it and
    /// the result is stored under the new id, so what concurrent requests wrote is kept; if the
    /// session was destroyed meanwhile, nothing is stored and no cookie is sent. With
    /// client-side sessions (`SessionLayer::client_side`) the new id goes into the new
    /// cookie, but nothing can revoke a copy of the old cookie before its own expiry.
    pub fn regenerate_id(&mut self, delete_old: bool) {
        self.state().regenerate_id(delete_old);
    }

    /// Ends the session: the record is deleted and the cookie expired when the response leaves.
    /// Writes after this are ignored (and logged), `flash` included: a destroyed session carries
    /// nothing to the next request. [`flash_now`](Self::flash_now), before or after it, still
    /// shows a notice on this response (a redirect after a logout can carry its notice in the URL, as the `login`
    /// example does). With
    /// client-side sessions (`SessionLayer::client_side`) there is no record: the cookie is
    /// expired, and a copy of it stays valid until its own expiry.
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
        let session_override = self.state().expiry_override();
        self.request.config().expiry.effective(session_override)
    }
}

// The logging of the error paths is out of line: `decode` and `encode` are inlined into every
// `get` and `set`, and should stay small there.

/// Whether `key` is its schema's owner key (`#[session(owner)]`), whose value the store indexes
/// the session under.
fn is_owner<V: SessionSchema, T>(key: Key<V, T>) -> bool {
    V::OWNER.is_some_and(|owner| owner == key.name())
}

fn decode<T: DeserializeOwned>(name: &str, kind: &str, json: &[u8]) -> Option<T> {
    serde_json::from_slice(json)
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
