//! One request's session: the slot the layer puts in the request's extensions, and the load
//! that fills it when a handler first takes the session — cookie, id, store key, store read.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use parking_lot::lock_api::{MappedMutexGuard, MutexGuard};
use tokio::time::Instant;

#[cfg(feature = "client-side")]
use crate::config::Storage;
use crate::config::{undecodable_is_none, Config};
use crate::cookie::{CookieId, MAX_CANDIDATES};
#[cfg(feature = "client-side")]
use crate::cookie::{EncryptionKey, Opened};
use crate::id::StoreKey;
use crate::lock::{later, lock_in_store, HeldLock, NotLocked};
use crate::record::Record;
use crate::save::Plan;
use crate::state::State;
use crate::store::StoreError;

/// Why a request's session could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// The store failed or did not answer in time.
    Store(StoreError),
    /// Another request held the session's lock for all of this wait.
    Busy(std::time::Duration),
    /// A `LockedSession` asked for after a plain `Session` had loaded and changed the session.
    LockedTooLate,
}

impl From<StoreError> for LoadError {
    fn from(error: StoreError) -> Self {
        LoadError::Store(error)
    }
}

/// Not reached: a slot is emptied only when nothing else holds it.
#[cold]
#[inline(never)]
fn finished() -> ! {
    unreachable!("a request's session slot was used after its request finished")
}

/// Whether a browser says the request is not a page load (`Sec-Fetch-Mode` other than
/// `navigate`: a `fetch` or an XHR). Such a request may have left before a login in another tab
/// set a newer cookie, which removing its stale cookie would then remove: only navigations (and
/// clients that send no `Sec-Fetch-Mode`) get a stale cookie removed.
fn is_background_fetch(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-mode")
        .is_some_and(|mode| mode.as_bytes() != b"navigate")
}

/// Puts a request's loaded session in place: `$state` is built in the slot of `$request` (a
/// `&RequestSession`), not moved there, for it is the largest part of a request's session (passed
/// in a closure or an argument, it was copied on its way in). A macro for that reason.
///
/// Extractors run one after another, so a second load in one request is not expected; should
/// two race, the first to finish wins and both see its session (`$state` is then not built).
macro_rules! install {
    ($request:expr, $state:expr) => {{
        let request: &RequestSession = $request;
        let mut slot = request.state.lock();
        if slot.is_none() {
            *slot = Some($state);
        }
        drop(slot);
        request.loaded.store(true, Ordering::Release);
    }};
}

/// The session of one request, before and after it is loaded. Lives in the request's extensions.
pub(crate) struct RequestSession {
    /// The layer's settings; `None` only while the slot waits, as a thread's spare, for its
    /// next request (see [`start`](Self::start)), so that a spare keeps no layer (and no store)
    /// alive.
    config: Option<Arc<Config>>,
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

std::thread_local! {
    /// A finished request's slot, kept by the thread for its next request (see
    /// [`RequestSession::start`]).
    static SPARE: Cell<Option<Arc<RequestSession>>> = const { Cell::new(None) };
}

impl RequestSession {
    /// The slot of a new request under the layer with `config`.
    ///
    /// A request's slot is shared by the layer and the handler's `Session`s, so it lives in an
    /// `Arc`. Allocating and freeing it was one of the larger costs of a request that never
    /// takes its session: each thread keeps the slot of its last finished request (see
    /// [`finish`](Self::finish)) and starts the next one in it.
    pub(crate) fn start(config: &Arc<Config>) -> Arc<Self> {
        if let Ok(Some(mut spare)) = SPARE.try_with(Cell::take) {
            if let Some(slot) = Arc::get_mut(&mut spare) {
                slot.config = Some(Arc::clone(config));
                return spare;
            }
        }
        Arc::new(RequestSession {
            config: Some(Arc::clone(config)),
            loaded: AtomicBool::new(false),
            state: StateLock::new(None),
        })
    }

    /// Ends the request of `slot`: if nothing else holds the slot (no `Session` of the request
    /// outlived it), it is emptied — its state dropped, its layer's settings let go — and kept as
    /// the thread's spare for the next request.
    pub(crate) fn finish(mut slot: Arc<Self>) {
        let Some(emptied) = Arc::get_mut(&mut slot) else {
            return;
        };
        emptied.config = None;
        *emptied.loaded.get_mut() = false;
        *emptied.state.get_mut() = None;
        // Not kept if the thread is ending: the slot is then simply dropped.
        let _ = SPARE.try_with(|spare| spare.set(Some(slot)));
    }

    /// The layer's settings.
    pub(crate) fn config(&self) -> &Config {
        match &self.config {
            Some(config) => config,
            None => finished(),
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
    /// takes no session never reads it. This crate's `MemoryStore` is read directly
    /// (`Config::load_record` on `config::Storage::Memory`), so on it, and for client-side
    /// sessions, a load without `locking` is ready when first polled (which
    /// `extract::loaded_session` relies on).
    ///
    /// With `locking` (a [`LockedSession`](crate::LockedSession)), each stored session is locked
    /// before it is read, and the lock of the one adopted is kept until the save is done.
    pub(crate) async fn load(&self, headers: &HeaderMap, locking: bool) -> Result<(), LoadError> {
        let config = self.config();
        #[cfg(feature = "client-side")]
        if let Storage::Cookie(keys) = &config.storage {
            // Nothing to lock: each response carries its own copy of the session.
            if !self.is_loaded() {
                self.open_sealed(keys, headers, config.clock.now());
            }
            return Ok(());
        }
        if self.is_loaded() {
            // Boxed: only a `LockedSession` after a plain `Session` pays for this future.
            return if locking {
                Box::pin(self.lock_loaded()).await
            } else {
                Ok(())
            };
        }
        let now = config.clock.now();
        // One deadline for the whole load, however many cookies are tried.
        let give_up = locking.then(|| later(Instant::now(), config.lock_wait));
        let mut stale_cookie = false;
        for CookieId { id, signed_by_old_key } in config
            .cookie
            .session_ids(headers, &config.signing_keys)
            .take(MAX_CANDIDATES)
        {
            let (key, cached) = config.key_cache.key(&id);
            // The record is matched where the store call leaves it rather than passed through a
            // tuple or `Option::filter`, each of which would copy it.
            let mut held_lock = None;
            let mut now = now;
            let loaded = match give_up {
                // Boxed: only a locking request pays for the lock's future.
                Some(give_up) => {
                    let (loaded, held, locked_at) = Box::pin(self.lock_and_load(key, give_up)).await?;
                    (held_lock, now) = (held, locked_at);
                    loaded
                }
                None => config.load_record(&key, now).await?,
            };
            // An id the store does not know (or whose session has expired) is never adopted;
            // its lock, if taken, goes with it.
            let record = match loaded {
                Some(record) if config.expiry.is_live(record.created_at, record.expires_at, now) => record,
                _ => {
                    stale_cookie = !is_background_fetch(headers);
                    continue;
                }
            };
            if !cached {
                config.key_cache.remember(&id, key);
            }
            install!(self, State::loaded(id, key, record, signed_by_old_key, held_lock, now));
            return Ok(());
        }
        install!(self, {
            let mut state = State::fresh(now);
            state.stale_cookie = stale_cookie;
            state
        });
        Ok(())
    }

    /// The load of a client-side session: the first sealed cookie that opens and is live by the
    /// layer's rules (its expiry travels inside it, so a cookie replayed past it is no session).
    #[cfg(feature = "client-side")]
    fn open_sealed(&self, keys: &[EncryptionKey], headers: &HeaderMap, now: SystemTime) {
        let config = self.config();
        let live = config
            .cookie
            .sealed_sessions(headers, keys)
            .take(MAX_CANDIDATES)
            .find(|opened| {
                config
                    .expiry
                    .is_live(opened.record.created_at, opened.record.expires_at, now)
            });
        match live {
            Some(Opened { id, record, by_old_key }) => {
                let key = id.store_key();
                install!(self, State::loaded(id, key, record, by_old_key, None, now));
            }
            None => install!(self, State::fresh(now)),
        }
    }

    /// Takes the lock of the session under `key`, waiting until `give_up` at the latest, and
    /// reads the session under it; with the request's time from then on: the session may have
    /// expired, or been renewed, while the request waited. No lock is kept when no live record
    /// has the key.
    async fn lock_and_load(
        &self,
        key: StoreKey,
        give_up: Instant,
    ) -> Result<(Option<Record>, Option<Box<HeldLock>>, SystemTime), LoadError> {
        let config = self.config();
        let busy = || LoadError::Busy(config.lock_wait);
        if let Some(store) = config.storage.shared_locks() {
            let locked = lock_in_store(
                store,
                key,
                config.lock_lease,
                give_up,
                config.store_timeout,
                config.clock.now(),
            );
            let locked = match locked.await {
                Ok(locked) => Ok(locked),
                Err(NotLocked::Busy) => return Err(busy()),
                Err(NotLocked::Store(error)) => Err(error),
            };
            let locked = undecodable_is_none(locked)?;
            let (record, held) = locked.map(|(held, record)| (record, Box::new(held))).unzip();
            return Ok((record, held, config.clock.now()));
        }
        let held = config
            .locks
            .acquire(key, config.lock_lease, give_up)
            .await
            .map_err(|_| busy())?;
        let now = config.clock.now();
        let record = config.load_record(&key, now).await?;
        Ok((record, Some(Box::new(held)), now))
    }

    /// A `LockedSession` after a plain `Session` (a middleware's, say) loaded the session without
    /// the lock: takes the lock now and reads the session again under it — unless this request
    /// already changed it, which a second read would undo.
    async fn lock_loaded(&self) -> Result<(), LoadError> {
        let config = self.config();
        let (id, key, resign_cookie) = {
            let state = self.state();
            let (Some(id), Some(key)) = (&state.loaded_id, state.loaded_key) else {
                // A new visitor: nothing stored, nothing to lock.
                return Ok(());
            };
            if state.held_lock.is_some() {
                return Ok(());
            }
            if state.is_dirty() {
                return Err(LoadError::LockedTooLate);
            }
            (id.clone(), key, state.resign_cookie)
        };
        let (record, held, now) = self.lock_and_load(key, later(Instant::now(), config.lock_wait)).await?;
        let record = record.filter(|r| config.expiry.is_live(r.created_at, r.expires_at, now));
        let state = match record {
            Some(record) => State::loaded(id, key, record, resign_cookie, held, now),
            // Ended meanwhile (a logout in another request): a new session, as a load would find.
            None => State::fresh(now),
        };
        *self.state.lock() = Some(state);
        Ok(())
    }

    /// Plans the save of the loaded session (see [`save::plan`](crate::save::plan)), once, after
    /// the handler. The plan is returned as it is, one that does nothing when there is nothing to
    /// save: it is one of the largest values a request makes, and each wrapper around it on its
    /// way would be one more copy.
    ///
    /// # Panics
    ///
    /// If no handler loaded the session: the layer asks only when one did.
    pub(crate) fn plan_save(&self) -> Plan {
        let mut state = self.state();
        let config = self.config();
        // A sealed cookie carries the whole session, so its save needs the loaded record too.
        #[cfg(feature = "client-side")]
        if let Storage::Cookie(_) = config.storage {
            return crate::save::plan_rewrite(&mut state, &config.expiry, config.max_session_size, &*config.clock);
        }
        crate::save::plan(&mut state, &config.expiry, config.max_session_size, &*config.clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    /// A finished request's slot starts the thread's next request, empty, under that request's
    /// layer, and while it waits it keeps no layer (so no store) alive.
    #[test]
    fn a_finished_slot_is_reused_empty_and_keeps_no_layer_alive() {
        let first_layer = Arc::new(Config::new(MemoryStore::new()));
        let first_layer_gone = Arc::downgrade(&first_layer);
        let slot = RequestSession::start(&first_layer);
        let address = Arc::as_ptr(&slot);
        install!(&slot, State::fresh(SystemTime::now()));
        assert!(slot.is_loaded());
        RequestSession::finish(slot);
        drop(first_layer);
        assert!(
            first_layer_gone.upgrade().is_none(),
            "the thread's spare slot kept a dropped layer's settings alive"
        );

        let second_layer = Arc::new(Config::new(MemoryStore::new()));
        let next = RequestSession::start(&second_layer);
        assert_eq!(Arc::as_ptr(&next), address, "the spare slot was not reused");
        assert!(!next.is_loaded());
        assert!(next.loaded_state().is_none());
        assert!(next.state.lock().is_none(), "the previous request's state was kept");
        assert!(std::ptr::eq(next.config(), &*second_layer));
    }

    /// A slot that something still holds when its request ends (a `Session` moved into a spawned
    /// task, say) is left to it, untouched, and the next request gets a slot of its own.
    #[test]
    fn a_slot_still_held_is_left_alone() {
        let layer = Arc::new(Config::new(MemoryStore::new()));
        let slot = RequestSession::start(&layer);
        install!(&slot, State::fresh(SystemTime::now()));
        let outliving_session = Arc::clone(&slot);
        RequestSession::finish(slot);
        let next = RequestSession::start(&layer);
        assert!(!Arc::ptr_eq(&next, &outliving_session));
        assert!(!next.is_loaded());
        assert!(outliving_session.is_loaded(), "a held slot was emptied");
        assert!(std::ptr::eq(outliving_session.config(), &*layer));
    }
}
