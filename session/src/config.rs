//! What the layer applies to every request: where sessions are kept, the cookie, expiry, the clock; and
//! reading a record by the layer's rules.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, CoarseClock};
#[cfg(feature = "client-side")]
use crate::cookie::EncryptionKey;
use crate::cookie::{CookieSettings, SigningKey};
use crate::expiry::ExpiryRules;
use crate::id::StoreKey;
use crate::id::StoreKeyCache;
use crate::lock::LockTable;
use crate::record::Record;
use crate::store::erased::{ErasedStore, StoreFuture, Timed};
use crate::store::{Applied, Changes, Created, MemoryStore, SessionStore, StoreError};

/// Where the layer keeps sessions.
#[derive(Clone)]
pub(crate) enum Storage {
    /// This crate's [`MemoryStore`], called directly: its calls never wait (see
    /// [`Config::answers_at_once`]).
    Memory(Arc<MemoryStore>),
    /// Any other store, behind the interface whose calls the request path awaits; the cookie
    /// carries the session id.
    Store(Arc<dyn ErasedStore>),
    /// In the cookie itself, sealed with the first of these keys (client-side sessions).
    #[cfg(feature = "client-side")]
    Cookie(Arc<[EncryptionKey]>),
}

impl Storage {
    /// `store` as the layer keeps it. This crate's [`MemoryStore`] (or an `Arc` of one) is known
    /// by its type: a store of yours, even one that never waits, is awaited like a network store.
    fn of<S: SessionStore>(store: S) -> Self {
        let store = match downcast::<S, MemoryStore>(store) {
            Ok(memory) => return Storage::Memory(Arc::new(memory)),
            Err(store) => store,
        };
        match downcast::<S, Arc<MemoryStore>>(store) {
            Ok(memory) => Storage::Memory(memory),
            Err(store) => Storage::Store(Arc::new(store)),
        }
    }

    /// The store of server-side sessions, for the calls the request path makes rarely. For
    /// client-side sessions, whose load and save never reach a store, one that refuses every call.
    pub(crate) fn store(&self) -> &dyn ErasedStore {
        match self {
            Storage::Memory(store) => &**store,
            Storage::Store(store) => &**store,
            #[cfg(feature = "client-side")]
            Storage::Cookie(_) => &NoStore,
        }
    }

    /// Whether sessions are kept where an owner index can list them (a store, not the cookie).
    pub(crate) fn indexes_owners(&self) -> bool {
        match self {
            Storage::Memory(_) | Storage::Store(_) => true,
            #[cfg(feature = "client-side")]
            Storage::Cookie(_) => false,
        }
    }

    /// The store, if it keeps session locks shared by every app instance
    /// (`SessionStore::SHARED_LOCKS`); `None`: the layer's in-process locks serve.
    pub(crate) fn shared_locks(&self) -> Option<&Arc<dyn ErasedStore>> {
        match self {
            Storage::Store(store) if store.shares_locks() => Some(store),
            _ => None,
        }
    }
}

/// `value` as a `T`, if `T` is its type.
fn downcast<S: 'static, T: 'static>(value: S) -> Result<T, S> {
    let mut value = Some(value);
    match (&mut value as &mut dyn std::any::Any).downcast_mut::<Option<T>>() {
        Some(as_t) => Ok(as_t.take().expect("just put there")),
        None => Err(value.expect("just put there")),
    }
}

/// The store a client-side layer answers [`Storage::store`] with. Its load and save seal and
/// open cookies instead and never call it; were that to change, a request would fail with this
/// error rather than lose a session silently.
#[cfg(feature = "client-side")]
struct NoStore;

#[cfg(feature = "client-side")]
impl NoStore {
    fn refuse<T>() -> Result<T, StoreError> {
        Err(StoreError::backend(
            "client-side sessions are kept in the cookie, not in a store",
        ))
    }
}

#[cfg(feature = "client-side")]
impl SessionStore for NoStore {
    async fn load(&self, _key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Self::refuse()
    }
    async fn create(&self, _key: &StoreKey, _record: &Record) -> Result<Created, StoreError> {
        Self::refuse()
    }
    async fn apply(&self, _key: &StoreKey, _changes: &Changes) -> Result<Applied, StoreError> {
        Self::refuse()
    }
    async fn delete(&self, _key: &StoreKey) -> Result<(), StoreError> {
        Self::refuse()
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn owner_sessions(&self, _owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        Err(StoreError::Unsupported(
            "client-side sessions are kept in browsers' cookies, where no server can list or end them; \
             use a server-side store to list a user's sessions"
                .into(),
        ))
    }
}

/// Everything the layer knows, shared by all requests.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) storage: Storage,
    pub(crate) cookie: CookieSettings,
    pub(crate) signing_keys: Vec<SigningKey>,
    pub(crate) expiry: ExpiryRules,
    pub(crate) store_timeout: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key_cache: Arc<StoreKeyCache>,
    /// The in-process session locks of `LockedSession`.
    pub(crate) locks: Arc<LockTable>,
    pub(crate) lock_wait: Duration,
    pub(crate) lock_lease: Duration,
    /// The most bytes of values and flash a session may hold.
    pub(crate) max_session_size: usize,
}

impl Config {
    pub(crate) fn new(store: impl SessionStore) -> Self {
        Config::with_storage(Storage::of(store))
    }

    pub(crate) fn with_storage(storage: Storage) -> Self {
        Config {
            storage,
            cookie: CookieSettings::default(),
            signing_keys: Vec::new(),
            expiry: ExpiryRules::default(),
            store_timeout: Some(Duration::from_secs(5)),
            clock: Arc::new(CoarseClock),
            key_cache: Arc::new(StoreKeyCache::new()),
            locks: Arc::new(LockTable::default()),
            lock_wait: Duration::from_secs(5),
            lock_lease: Duration::from_secs(10),
            max_session_size: 64 * 1024,
        }
    }

    /// Whether `storage`'s loads and saves are done the first time they are polled: this
    /// crate's [`MemoryStore`], whose calls never wait, and client-side sessions, which call no
    /// store. They are then polled where they are made, once, and never kept (see
    /// `extract::loaded_session` and `layer::ResponseFuture`); any other store's are boxed and
    /// awaited.
    pub(crate) fn answers_at_once(&self) -> bool {
        !matches!(self.storage, Storage::Store(_))
    }

    /// A store call made for a request whose time is `now`, bounded by the store timeout.
    pub(crate) fn timed<'a, T>(&self, call: StoreFuture<'a, T>, now: SystemTime) -> Timed<'a, T> {
        Timed::new(call, self.store_timeout, now)
    }

    /// The record under `key`, as the store has it now (`now` is the request's time). An
    /// undecodable record counts as none, so that one corrupt record does not answer 503 to its
    /// owner forever (the next write starts a new session).
    pub(crate) async fn load_record(&self, key: &StoreKey, now: SystemTime) -> Result<Option<Record>, StoreError> {
        let read = match &self.storage {
            Storage::Memory(store) => return Ok(store.load_at(key, now)),
            storage => self.timed(storage.store().load(key), now).await,
        };
        undecodable_is_none(read)
    }

    /// Stores a new session's first `record` under `key`, at the request's time `now`.
    pub(crate) async fn create(&self, key: &StoreKey, record: &Record, now: SystemTime) -> Result<Created, StoreError> {
        match &self.storage {
            Storage::Memory(store) => Ok(store.create_at(key, record, now)),
            storage => self.timed(storage.store().create(key, record), now).await,
        }
    }

    /// Merges `changes` into the session under `key`, at the request's time `now`.
    pub(crate) async fn apply(
        &self,
        key: &StoreKey,
        changes: &Changes,
        now: SystemTime,
    ) -> Result<Applied, StoreError> {
        match &self.storage {
            Storage::Memory(store) => Ok(store.apply_at(key, changes, now)),
            storage => self.timed(storage.store().apply(key, changes), now).await,
        }
    }

    /// Deletes the session under `key`.
    pub(crate) async fn delete(&self, key: &StoreKey, now: SystemTime) -> Result<(), StoreError> {
        match &self.storage {
            Storage::Memory(store) => {
                store.delete_now(key);
                Ok(())
            }
            storage => self.timed(storage.store().delete(key), now).await,
        }
    }
}

/// A store read in which an undecodable record counts as none: one corrupt record must not
/// answer 503 to its owner forever (the next write starts a new session).
// Inlined: a call would move the whole read (a record) in and out on every load.
#[inline]
pub(crate) fn undecodable_is_none<T>(read: Result<Option<T>, StoreError>) -> Result<Option<T>, StoreError> {
    match read {
        Err(StoreError::Corrupt(reason)) => {
            warn_undecodable(&reason);
            Ok(None)
        }
        other => other,
    }
}

#[cold]
#[inline(never)]
fn warn_undecodable(reason: &str) {
    tracing::warn!(%reason, "the stored session does not decode; starting a new one");
}
