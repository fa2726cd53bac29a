//! Sessions of an owner ("your devices"): the sessions a store indexes under the value of a
//! schema's `#[session(owner)]` key, listed and ended from a handler ([`Session`]'s
//! `owner_sessions`, `end_other_sessions`, `end_session`) or from admin code ([`OwnerIndex`]).
//!
//! A listed session is named by a [`SessionHandle`]: derived from its store key by a one-way
//! hash, so a handle shown in a page or a log is neither a cookie nor a store address, and
//! ending a session by its handle finds it among its owner's sessions only.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::extract::SessionRejection;
use crate::id::{from_hex, to_hex, StoreKey};
use crate::key::{owner_index_form, FlashSchema, Key, OwnedSchema, SessionSchema};
use crate::record::Record;
use crate::session::Session;
use crate::store::StoreError;

/// Names one listed session, to end it later ([`Session::end_session`], [`OwnerIndex::end`]):
/// 128 bits, written as 32 hex digits (for a form field or a URL).
///
/// It is a one-way hash of the session's store key (itself a hash of its id): it cannot be used
/// as a cookie, and it only ends a session of the owner it is asked for.
///
/// ```
/// use typed_sessions::SessionHandle;
///
/// let handle: SessionHandle = "00112233445566778899aabbccddeeff".parse().unwrap();
/// assert_eq!(handle.to_string(), "00112233445566778899aabbccddeeff");
/// assert!("not a handle".parse::<SessionHandle>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHandle([u8; 16]);

impl SessionHandle {
    fn of(key: &StoreKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"typed-sessions session handle\0")
            .chain_update(key.as_bytes())
            .finalize();
        let mut handle = [0u8; 16];
        handle.copy_from_slice(&digest[..16]);
        SessionHandle(handle)
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({self})")
    }
}

/// The text was not a [`SessionHandle`] (32 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a session handle is 32 hex digits")]
pub struct NotAHandle;

impl FromStr for SessionHandle {
    type Err = NotAHandle;

    fn from_str(text: &str) -> Result<Self, NotAHandle> {
        from_hex(&text.to_ascii_lowercase())
            .map(SessionHandle)
            .ok_or(NotAHandle)
    }
}

/// One live session of an owner, as listed by [`Session::owner_sessions`] or
/// [`OwnerIndex::list`]: when it started, when it was last active, when it expires, and typed
/// reads of its values (the browser it was started from, say).
pub struct ListedSession<V> {
    handle: SessionHandle,
    current: bool,
    record: Record,
    last_active: SystemTime,
    schema: PhantomData<fn() -> V>,
}

impl<V: SessionSchema> ListedSession<V> {
    /// Whether this is the session of the request that listed it ("this device"). Always
    /// `false` in [`OwnerIndex::list`].
    pub fn is_current(&self) -> bool {
        self.current
    }

    /// When the session started (its first save; kept by `regenerate_id`).
    pub fn created_at(&self) -> SystemTime {
        self.record.created_at
    }

    /// About when a request last renewed the session: every request that changes it does, and
    /// one that only reads it once the layer's `with_touch_after` share of its idle window has
    /// passed (half, by default) — so this lags by up to that much behind its last read.
    ///
    /// It is worked out from the session's expiry (its end, less its idle window), not stored:
    /// for a session whose end is set by the layer's `with_max_lifetime` cap rather than by its
    /// idle window, it shows a time earlier than its last request (at least its start).
    pub fn last_active(&self) -> SystemTime {
        self.last_active
    }

    /// When the session ends unless a request renews it.
    pub fn expires_at(&self) -> SystemTime {
        self.record.expires_at
    }

    /// The session's value under `key`, as [`Session::get`] would read it.
    pub fn get<T: DeserializeOwned>(&self, key: Key<V, T>) -> Option<T> {
        let json = self.record.values.get(key.name())?;
        match serde_json::from_str(json) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(key = key.name(), %error, "a listed session's value does not decode; treating it as absent");
                None
            }
        }
    }

    /// Names this session, to end it: [`Session::end_session`] or [`OwnerIndex::end`].
    pub fn handle(&self) -> SessionHandle {
        self.handle
    }
}

impl<V> fmt::Debug for ListedSession<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListedSession")
            .field("handle", &self.handle)
            .field("current", &self.current)
            .field("created_at", &self.record.created_at)
            .field("last_active", &self.last_active)
            .field("expires_at", &self.record.expires_at)
            .finish_non_exhaustive()
    }
}

/// The sessions of an owner, from code that has no request: an admin page, a password-reset
/// job, an account deletion. Get one from the layer the app runs with,
/// [`SessionLayer::owner_index`](crate::SessionLayer::owner_index), so that it judges expiry by
/// the same rules and clock.
///
/// ```
/// use typed_sessions::{MemoryStore, OwnerIndex, SessionLayer, SessionSchema};
///
/// #[derive(SessionSchema)]
/// struct Values {
///     #[session(owner)]
///     user_id: u64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), typed_sessions::store::StoreError> {
/// let layer = SessionLayer::new(MemoryStore::new());
/// let index: OwnerIndex<Values> = layer.owner_index();
/// // The user changed their password: end every session they have.
/// let ended = index.end_all(&42).await?;
/// assert_eq!(ended, 0);
/// # Ok(()) }
/// ```
pub struct OwnerIndex<V> {
    config: Arc<Config>,
    schema: PhantomData<fn() -> V>,
}

impl<V> Clone for OwnerIndex<V> {
    fn clone(&self) -> Self {
        OwnerIndex {
            config: Arc::clone(&self.config),
            schema: PhantomData,
        }
    }
}

impl<V> fmt::Debug for OwnerIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerIndex").finish_non_exhaustive()
    }
}

impl<V: OwnedSchema> OwnerIndex<V>
where
    V::Owner: Serialize,
{
    pub(crate) fn new(config: Arc<Config>) -> Self {
        OwnerIndex {
            config,
            schema: PhantomData,
        }
    }

    /// The owner's live sessions, most recently active first.
    pub async fn list(&self, owner: &V::Owner) -> Result<Vec<ListedSession<V>>, StoreError> {
        let Some(owner) = owner_index_form(owner) else {
            return Ok(Vec::new());
        };
        list(&self.config, &owner, None).await
    }

    /// Ends the owner's session named by `handle`; `false` if the owner has no such live session.
    pub async fn end(&self, owner: &V::Owner, handle: &SessionHandle) -> Result<bool, StoreError> {
        let Some(owner) = owner_index_form(owner) else {
            return Ok(false);
        };
        end_one(&self.config, &owner, handle, Caller::default()).await
    }

    /// Ends every session of the owner; returns how many it ended.
    pub async fn end_all(&self, owner: &V::Owner) -> Result<u64, StoreError> {
        let Some(owner) = owner_index_form(owner) else {
            return Ok(0);
        };
        end_all_but(&self.config, &owner, Caller::default()).await
    }
}

/// The live sessions of `owner`, most recently active first; `current` marks the request's own.
async fn list<V>(
    config: &Config,
    owner: &str,
    current: Option<&StoreKey>,
) -> Result<Vec<ListedSession<V>>, StoreError> {
    let now = config.clock.now();
    let found = config.timed(config.storage.store().owner_sessions(owner), now).await?;
    let mut listed: Vec<ListedSession<V>> = found
        .into_iter()
        // The store's view of expiry is its own clock's; the layer's cap on a session's
        // lifetime is known here only.
        .filter(|(_, record)| {
            record.owner.as_deref() == Some(owner) && config.expiry.is_live(record.created_at, record.expires_at, now)
        })
        .map(|(key, record)| {
            let expiry = config.expiry.effective(record.expiry);
            ListedSession {
                handle: SessionHandle::of(&key),
                current: Some(&key) == current,
                last_active: config
                    .expiry
                    .last_renewed(expiry, record.created_at, record.expires_at, now),
                record,
                schema: PhantomData,
            }
        })
        .collect();
    listed.sort_by(|a, b| b.current.cmp(&a.current).then(b.last_active.cmp(&a.last_active)));
    Ok(listed)
}

/// The session asking to end others, if a request asks: its key (`None` if not stored yet) and
/// when it started. A session moving to a new id keeps its start, so a session of the owner with
/// the caller's start is the caller's own, reached by a concurrent `regenerate_id`, and is spared.
/// The start is all that links a session to its new id, so a session of the same owner that
/// started in the same instant as the caller's — the same millisecond on the SQL and Redis
/// stores, which keep milliseconds — is spared too (see `Session::end_other_sessions`).
#[derive(Clone, Copy, Default)]
struct Caller {
    key: Option<StoreKey>,
    started: Option<SystemTime>,
}

impl Caller {
    /// Whether the session under `key`, started at `started`, is the caller's own.
    fn owns(&self, key: &StoreKey, started: SystemTime) -> bool {
        self.key.as_ref() == Some(key) || self.started == Some(started)
    }
}

/// Ends the session of `owner` named `handle`, unless it is the caller's.
async fn end_one(config: &Config, owner: &str, handle: &SessionHandle, caller: Caller) -> Result<bool, StoreError> {
    let now = config.clock.now();
    let store = config.storage.store();
    let found = config.timed(store.owner_sessions(owner), now).await?;
    let Some((key, record)) = found
        .iter()
        .find(|(key, record)| SessionHandle::of(key) == *handle && record.owner.as_deref() == Some(owner))
    else {
        return Ok(false);
    };
    if caller.owns(key, record.created_at) {
        return Ok(false);
    }
    config.timed(store.delete(key), now).await?;
    end_moved(config, owner, &found, &[record.created_at], caller).await?;
    Ok(true)
}

/// Ends every session of `owner` but the caller's; returns how many.
async fn end_all_but(config: &Config, owner: &str, caller: Caller) -> Result<u64, StoreError> {
    let now = config.clock.now();
    let store = config.storage.store();
    let found = config.timed(store.owner_sessions(owner), now).await?;
    let ending: Vec<&(StoreKey, Record)> = found
        .iter()
        .filter(|(key, record)| !caller.owns(key, record.created_at))
        .collect();
    let callers_other_keys = found
        .iter()
        .filter(|(key, record)| caller.owns(key, record.created_at) && caller.key.as_ref() != Some(key))
        .count();
    let mut ended = if callers_other_keys == 0 {
        // Nothing of the caller's but its own key: the store ends them all in one step.
        config
            .timed(store.end_owner_sessions(owner, caller.key.as_ref()), now)
            .await?
    } else {
        // The caller's session has also reached a new id: end the others one by one.
        for (key, _) in &ending {
            config.timed(store.delete(key), now).await?;
        }
        ending.len() as u64
    };
    let started: Vec<SystemTime> = ending.iter().map(|(_, record)| record.created_at).collect();
    ended += end_moved(config, owner, &found, &started, caller).await?;
    Ok(ended)
}

/// After ending sessions found in `found`: a session that was moving to a new id
/// (`regenerate_id`) as it was ended may have reached the new id, which `found` does not hold —
/// its move had read the old record before the end, and found it still live just before. A
/// second look ends the sessions not in `found` that started when an ended one did (a move keeps
/// the start); a session that logged in meanwhile started at another time and stays.
async fn end_moved(
    config: &Config,
    owner: &str,
    found: &[(StoreKey, Record)],
    started: &[SystemTime],
    caller: Caller,
) -> Result<u64, StoreError> {
    let now = config.clock.now();
    let store = config.storage.store();
    let mut ended = 0;
    for (key, record) in config.timed(store.owner_sessions(owner), now).await? {
        let moved = started.contains(&record.created_at) && !found.iter().any(|(seen, _)| *seen == key);
        if moved && !caller.owns(&key, record.created_at) {
            config.timed(store.delete(&key), now).await?;
            ended += 1;
        }
    }
    Ok(ended)
}

/// Listing and ending the sessions of this session's owner. Only on schemas with an owner key
/// (`#[session(owner)]`); on others these methods do not exist (a compile error).
impl<V: OwnedSchema, F: FlashSchema> Session<V, F> {
    /// This request's session: its owner's JSON form (`None` when the owner key is not set),
    /// and the session as a [`Caller`].
    fn owner_and_caller(&self) -> (Option<String>, Caller) {
        let state = self.request().state();
        // In the form the index holds it (a store may have re-formatted the stored value).
        let owner = state.value_json(V::OWNER_KEY.name()).and_then(V::__owner_index_json);
        let caller = Caller {
            key: state.loaded_key,
            // A session not stored yet has no start any other session could share.
            started: state.loaded_key.map(|_| state.created_at),
        };
        (owner, caller)
    }

    /// The live sessions of this session's owner (the value of its `#[session(owner)]` key),
    /// this one included and first, then the most recently active. Empty when the owner key is
    /// not set. A session is listed once it is saved with its owner: one that sets the owner
    /// key in this request is not listed until the response has been sent.
    ///
    /// ```
    /// use axum::response::Html;
    /// use typed_sessions::{Session, SessionRejection, SessionSchema};
    ///
    /// #[derive(SessionSchema)]
    /// struct Values {
    ///     #[session(owner)]
    ///     user_id: u64,
    ///     user_agent: String,
    /// }
    ///
    /// async fn devices(session: Session<Values>) -> Result<Html<String>, SessionRejection> {
    ///     let mut page = String::from("<ul>");
    ///     for listed in session.owner_sessions().await? {
    ///         let browser = listed.get(Values::USER_AGENT).unwrap_or_default();
    ///         let this = if listed.is_current() { " (this device)" } else { "" };
    ///         page.push_str(&format!("<li>{browser}{this}</li>"));
    ///     }
    ///     page.push_str("</ul>");
    ///     Ok(Html(page)) // (escape values in a real page)
    /// }
    /// ```
    pub async fn owner_sessions(&self) -> Result<Vec<ListedSession<V>>, SessionRejection> {
        let (Some(owner), caller) = self.owner_and_caller() else {
            return Ok(Vec::new());
        };
        Ok(list(self.request().config(), &owner, caller.key.as_ref()).await?)
    }

    /// Ends every other session of this session's owner ("log out other devices"); returns how
    /// many it ended. Each of them is gone on its next request, even one already in progress
    /// (its save finds no session and writes nothing). A session not stored yet ends all of the
    /// owner's sessions.
    ///
    /// This session is told from the others by its id and by when it started, which it keeps
    /// across [`regenerate_id`](Session::regenerate_id) (so that a concurrent request of this
    /// session that moved it to a new id is not ended). A session of the same owner that started
    /// in the same millisecond as this one (the precision of the SQL and Redis stores) is taken
    /// for this one and spared; [`end_session`](Self::end_session) refuses it likewise.
    pub async fn end_other_sessions(&self) -> Result<u64, SessionRejection> {
        let (Some(owner), caller) = self.owner_and_caller() else {
            return Ok(0);
        };
        Ok(end_all_but(self.request().config(), &owner, caller).await?)
    }

    /// Ends the session of this session's owner named by `handle` (from
    /// [`ListedSession::handle`]); `false` if the owner has no such live session, or if it is
    /// this one (end this one with [`destroy`](Session::destroy)) — which includes a session that
    /// started in the same millisecond as this one (see
    /// [`end_other_sessions`](Self::end_other_sessions)).
    pub async fn end_session(&self, handle: &SessionHandle) -> Result<bool, SessionRejection> {
        let (Some(owner), caller) = self.owner_and_caller() else {
            return Ok(false);
        };
        Ok(end_one(self.request().config(), &owner, handle, caller).await?)
    }
}
