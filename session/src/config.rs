//! What the layer applies to every request: the store, the cookie, expiry, the clock; and
//! reading a record by the layer's rules.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, SystemClock};
use crate::cookie::{CookieSettings, SigningKey};
use crate::expiry::ExpiryRules;
use crate::id::StoreKey;
use crate::id::StoreKeyCache;
use crate::record::Record;
use crate::store::erased::{ErasedStore, StoreFuture, Timed};
use crate::store::{SessionStore, StoreError};

/// Everything the layer knows, shared by all requests.
#[derive(Clone)]
pub(crate) struct Config {
    /// The store, behind the interface whose calls the request path awaits.
    pub(crate) store: Arc<dyn ErasedStore>,
    pub(crate) cookie: CookieSettings,
    pub(crate) signing_keys: Vec<SigningKey>,
    pub(crate) expiry: ExpiryRules,
    pub(crate) store_timeout: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key_cache: Arc<StoreKeyCache>,
}

impl Config {
    pub(crate) fn new(store: impl SessionStore) -> Self {
        Config {
            store: Arc::new(store),
            cookie: CookieSettings::default(),
            signing_keys: Vec::new(),
            expiry: ExpiryRules::default(),
            store_timeout: Some(Duration::from_secs(5)),
            clock: Arc::new(SystemClock),
            key_cache: Arc::new(StoreKeyCache::new()),
        }
    }

    /// A store call made for a request whose time is `now`, bounded by the store timeout.
    pub(crate) fn timed<'a, T>(&self, call: StoreFuture<'a, T>, now: SystemTime) -> Timed<'a, T> {
        Timed::new(call, self.store_timeout, now)
    }

    /// The record under `key`, as the store has it now (`now` is the request's time). An
    /// undecodable record counts as none, so that one corrupt record does not answer 503 to its
    /// owner forever (the next write starts a new session).
    pub(crate) async fn load_record(&self, key: &StoreKey, now: SystemTime) -> Result<Option<Record>, StoreError> {
        match self.timed(self.store.load(key), now).await {
            Err(StoreError::Corrupt(reason)) => {
                tracing::warn!(%reason, "the stored session does not decode; starting a new one");
                Ok(None)
            }
            other => other,
        }
    }
}
