//! One request's session: the slot the layer puts in the request's extensions, and the load
//! that fills it when a handler first takes the session — cookie, id, store key, store read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use parking_lot::lock_api::{MappedMutexGuard, MutexGuard};

use crate::config::Config;
use crate::cookie::{CookieId, MAX_CANDIDATES};
use crate::id::StoreKey;
use crate::record::Record;
use crate::state::State;
use crate::store::erased::with_timeout;
use crate::store::StoreError;

/// The session of one request, before and after it is loaded. Lives in the request's extensions.
pub(crate) struct RequestSession {
    pub(crate) config: Arc<Config>,
    /// Set once `state` holds the session: most routes never take it, and their response
    /// asks this instead of taking the lock.
    loaded: AtomicBool,
    /// `None` until a handler extracts the session.
    state: StateLock,
}

/// The lock on a request's session state: a spin lock, whose unlock is a plain store where a
/// parking lock's is an atomic read-modify-write, and a request takes it several times. It is
/// never held across an `.await` nor for longer than a few map operations, and only the clones
/// of one request's `Session` can contend for it.
type StateLock = spin::lock_api::Mutex<Option<State>>;

/// The locked state of a loaded session.
pub(crate) type StateGuard<'a> = MappedMutexGuard<'a, spin::Mutex<()>, State>;

impl RequestSession {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        RequestSession {
            config,
            loaded: AtomicBool::new(false),
            state: StateLock::new(None),
        }
    }

    /// Whether a handler has loaded the session.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The loaded session's state.
    ///
    /// # Panics
    ///
    /// If it is not loaded: `Session` values exist only after [`load`](Self::load) succeeded.
    pub(crate) fn state(&self) -> StateGuard<'_> {
        self.loaded_state()
            .expect("a Session exists only for a loaded request session")
    }

    /// The session's state, if a handler loaded it.
    pub(crate) fn loaded_state(&self) -> Option<StateGuard<'_>> {
        if !self.is_loaded() {
            return None;
        }
        MutexGuard::try_map(self.state.lock(), Option::as_mut).ok()
    }

    /// Loads the session, once per request: the first live session that the request's session
    /// cookies name, else a new one. `headers` are the request's.
    ///
    /// The cookie is read here rather than when the request arrives: a request whose handler
    /// takes no session never reads it. A store that answers at once is not waited for (see
    /// [`with_timeout`]), so for an in-memory store this future is ready when first polled.
    pub(crate) async fn load(&self, headers: &HeaderMap) -> Result<(), StoreError> {
        if self.is_loaded() {
            return Ok(());
        }
        let config = &*self.config;
        let now = config.clock.now();
        for candidate in config
            .cookie
            .session_ids(headers, &config.signing_keys)
            .take(MAX_CANDIDATES)
        {
            let (key, cached) = config.key_cache.key(&candidate.id);
            let record = load_record(config, &key).await?;
            if let Some(state) = adopt(config, candidate, key, cached, record, now) {
                self.install(state);
                return Ok(());
            }
        }
        self.install(State::fresh(now));
        Ok(())
    }

    fn install(&self, state: State) {
        // Extractors run one after another, so a second load in one request is not expected;
        // should two race, the first to finish wins and both see its session.
        self.state.lock().get_or_insert(state);
        self.loaded.store(true, Ordering::Release);
    }
}

/// The record under `key`, as the store has it now. An undecodable record counts as none, so
/// that one corrupt record does not answer 503 to its owner forever (the next write starts a
/// new session).
pub(crate) async fn load_record(config: &Config, key: &StoreKey) -> Result<Option<Record>, StoreError> {
    match with_timeout(config.store_timeout, config.store.load(key)).await {
        Err(StoreError::Corrupt(reason)) => {
            tracing::warn!(%reason, "the stored session does not decode; starting a new one");
            Ok(None)
        }
        other => other,
    }
}

/// The session state for `record`, loaded for `candidate`, if it is live at `now`. An id the
/// store does not know (or that has expired) is never adopted.
fn adopt(
    config: &Config,
    candidate: CookieId,
    key: StoreKey,
    cached: bool,
    record: Option<Record>,
    now: std::time::SystemTime,
) -> Option<State> {
    let record = record.filter(|r| config.expiry.is_live(r.created_at, r.expires_at, now))?;
    if !cached {
        config.key_cache.remember(&candidate.id, key);
    }
    Some(State::loaded(
        candidate.id,
        key,
        record,
        candidate.signed_by_old_key,
        now,
    ))
}
