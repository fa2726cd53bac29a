//! Per-session locks for [`LockedSession`](crate::LockedSession): taken before the session is
//! loaded, released once its save has finished (or the request is dropped), bounded by a wait
//! and a lease, and fenced — a holder whose lease ran out can no longer write.
//!
//! Two kinds: the in-process [`LockTable`] (one per layer, sharded by store key, no global
//! mutex, an entry per session only while it is held or waited for), which serves the requests
//! of one process; and a store's own locks (`SessionStore::SHARED_LOCKS`, Redis and
//! PostgreSQL), shared by every app instance using the store, which [`lock_in_store`] polls for.
//! Either way the holder is a [`HeldLock`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::id::{RandomKeyMap, StoreKey};
use crate::record::Record;
use crate::store::erased::{ErasedStore, Timed};
use crate::store::{LockAttempt, LockToken, StoreError};

/// Shards of the table: enough that requests of different sessions rarely meet on one mutex.
const SHARDS: usize = 16;

/// The in-process locks of one layer.
#[derive(Debug)]
pub(crate) struct LockTable {
    shards: Box<[Mutex<SlotMap>]>,
    next_token: AtomicU64,
}

/// Store keys are SHA-256 hashes, which no client can aim: eight of their bytes are the hash.
type SlotMap = RandomKeyMap<StoreKey, Slot>;

/// One session's lock while anyone holds or waits for it.
#[derive(Debug, Default)]
struct Slot {
    holder: Option<Lease>,
    waiters: usize,
    /// Wakes the waiters when the lock is released; made by the first waiter (most locks are
    /// never waited for).
    changed: Option<Arc<Notify>>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    token: u64,
    lease_ends: Instant,
}

/// The lock could not be had by the time given.
#[derive(Debug)]
pub(crate) struct Busy;

impl Default for LockTable {
    fn default() -> Self {
        LockTable {
            shards: (0..SHARDS).map(|_| Mutex::new(SlotMap::default())).collect(),
            next_token: AtomicU64::new(1),
        }
    }
}

/// `from + by`, or a century from now where that overflows (`Duration::MAX` means "forever").
pub(crate) fn later(from: Instant, by: Duration) -> Instant {
    from.checked_add(by)
        .unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl LockTable {
    fn shard(&self, key: &StoreKey) -> &Mutex<SlotMap> {
        &self.shards[usize::from(key.as_bytes()[0]) % SHARDS]
    }

    /// Takes the lock of the session under `key` for `lease`, waiting until `give_up` at the
    /// latest for its holder to release it or for the holder's lease to end.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: StoreKey,
        lease: Duration,
        give_up: Instant,
    ) -> Result<HeldLock, Busy> {
        loop {
            let (changed, wake_at, waiting) = {
                let mut shard = self.shard(&key).lock();
                let now = Instant::now();
                let slot = shard.entry(key).or_default();
                if slot.holder.is_none_or(|holder| holder.lease_ends <= now) {
                    let token = self.next_token.fetch_add(1, Ordering::Relaxed);
                    slot.holder = Some(Lease {
                        token,
                        lease_ends: later(now, lease),
                    });
                    return Ok(HeldLock::new(
                        key,
                        lease,
                        Place::InProcess {
                            table: Arc::clone(self),
                            token,
                        },
                    ));
                }
                if now >= give_up {
                    return Err(Busy);
                }
                let lease_ends = slot.holder.map_or(give_up, |holder| holder.lease_ends);
                let wake_at = lease_ends.min(give_up);
                // Registered while the shard is locked, so that no release can slip in between.
                let changed = slot.changed.get_or_insert_with(Default::default);
                let mut changed = Box::pin(Arc::clone(changed).notified_owned());
                changed.as_mut().enable();
                slot.waiters += 1;
                (changed, wake_at, Waiting { table: self, key: &key })
            };
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
            // Also when this future is dropped while it waits (the client went away).
            drop(waiting);
        }
    }

    /// Whether `token` still holds the lock under `key` (no one took it over, though its lease
    /// may have ended); if so, its lease starts again, for the write about to be made.
    fn begin_write(&self, key: &StoreKey, token: u64, lease: Duration) -> bool {
        let mut shard = self.shard(key).lock();
        let Some(holder) = shard.get_mut(key).and_then(|slot| slot.holder.as_mut()) else {
            return false;
        };
        if holder.token != token {
            return false;
        }
        holder.lease_ends = later(Instant::now(), lease);
        true
    }

    fn release(&self, key: &StoreKey, token: u64) {
        let mut shard = self.shard(key).lock();
        let Some(slot) = shard.get_mut(key) else { return };
        if slot.holder.is_some_and(|holder| holder.token == token) {
            slot.holder = None;
            if slot.waiters == 0 {
                shard.remove(key);
            } else if let Some(changed) = &slot.changed {
                changed.notify_waiters();
            }
        }
    }

    /// How many sessions have an entry: held, or waited for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }
}

/// One waiter of a session's lock, counted in its slot so that the slot is kept while anyone
/// waits; uncounted when dropped, however the wait ends.
struct Waiting<'a> {
    table: &'a LockTable,
    key: &'a StoreKey,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut shard = self.table.shard(self.key).lock();
        if let Some(slot) = shard.get_mut(self.key) {
            slot.waiters -= 1;
            if slot.waiters == 0 && slot.holder.is_none() {
                shard.remove(self.key);
            }
        }
    }
}

/// How long [`lock_in_store`] first waits before asking the store again; each wait doubles, up
/// to [`MAX_POLL_PAUSE`], with a random spread so that waiters do not ask in step.
const FIRST_POLL_PAUSE: Duration = Duration::from_millis(1);
const MAX_POLL_PAUSE: Duration = Duration::from_millis(32);

/// Why [`lock_in_store`] did not lock.
#[derive(Debug)]
pub(crate) enum NotLocked {
    /// Another holder kept the lock until `give_up`.
    Busy,
    /// The store failed or did not answer in time.
    Store(StoreError),
}

/// Takes the lock of the session under `key` in `store`, which keeps locks shared by every app
/// instance, and reads the session under it: asks again, after growing pauses, while another
/// holder has it, until `give_up`. `None` if there is no live session to lock. Each store call
/// may take `call_limit`; `now` is the request's time.
pub(crate) async fn lock_in_store(
    store: &Arc<dyn ErasedStore>,
    key: StoreKey,
    lease: Duration,
    give_up: Instant,
    call_limit: Option<Duration>,
    now: SystemTime,
) -> Result<Option<(HeldLock, Record)>, NotLocked> {
    let token = LockToken::random();
    let mut pause = FIRST_POLL_PAUSE;
    loop {
        // The store may take the lock and this request still never learn it: the answer does
        // not decode, the call times out, or the request is dropped while it waits for the
        // answer. The token is this request's alone, so unlocking it then is always safe; it is
        // best effort (an unlock that overtakes the attempt on another connection finds
        // nothing, and the lease ends the lock).
        let in_doubt = InDoubt {
            store,
            key,
            token,
            call_limit,
        };
        let attempt = Timed::new(store.lock_and_load(&key, &token, lease), call_limit, now)
            .await
            .map_err(NotLocked::Store)?;
        std::mem::forget(in_doubt);
        let remaining = match attempt {
            LockAttempt::Taken(record) => {
                let place = Place::Store {
                    store: Arc::clone(store),
                    token,
                    call_limit,
                };
                return Ok(Some((HeldLock::new(key, lease, place), record)));
            }
            LockAttempt::Missing => return Ok(None),
            LockAttempt::Busy { remaining } => remaining,
        };
        let now = Instant::now();
        if now >= give_up {
            return Err(NotLocked::Busy);
        }
        // Never sooner than the first pause: a lease about to end is not worth a busy loop.
        let pause_now = spread(pause).min(remaining.max(FIRST_POLL_PAUSE));
        tokio::time::sleep_until(later(now, pause_now).min(give_up)).await;
        pause = (pause * 2).min(MAX_POLL_PAUSE);
    }
}

/// A lock attempt whose outcome this request may not learn; unlocks its token when dropped
/// (forgotten once the store has answered).
struct InDoubt<'a> {
    store: &'a Arc<dyn ErasedStore>,
    key: StoreKey,
    token: LockToken,
    call_limit: Option<Duration>,
}

impl Drop for InDoubt<'_> {
    fn drop(&mut self) {
        spawn_unlock(self.store, self.key, self.token, self.call_limit);
    }
}

/// Releases `token`'s lock of `key` in `store` on a task of its own: the request does not wait
/// for the round trip. Outside a runtime (a request future dropped by one shutting down), the
/// lease ends the lock.
fn spawn_unlock(store: &Arc<dyn ErasedStore>, key: StoreKey, token: LockToken, call_limit: Option<Duration>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let store = Arc::clone(store);
    runtime.spawn(async move {
        let unlock = Timed::new(store.unlock(&key, &token), call_limit, SystemTime::now());
        if let Err(error) = unlock.await {
            tracing::warn!(%error, "the session's lock could not be released; it ends with its lease");
        }
    });
}

/// `pause` times a random factor between ½ and 1½.
fn spread(pause: Duration) -> Duration {
    let mut byte = [0];
    // Without randomness the waiters merely ask in step.
    let _ = getrandom::getrandom(&mut byte);
    pause / 2 + pause * u32::from(byte[0]) / 255
}

/// A held session lock. Dropped before a write began, it releases the lock; once a write
/// began, only [`release`](Self::release) does (after the write is done), and otherwise the
/// lease: a write cut short may still land, and the next holder must not read before it.
pub(crate) struct HeldLock {
    key: StoreKey,
    lease: Duration,
    place: Place,
    write_begun: AtomicBool,
    released: AtomicBool,
}

/// Where a lock is held.
enum Place {
    /// In this layer's [`LockTable`].
    InProcess { table: Arc<LockTable>, token: u64 },
    /// In the store, shared by every app instance.
    Store {
        store: Arc<dyn ErasedStore>,
        token: LockToken,
        call_limit: Option<Duration>,
    },
}

impl HeldLock {
    fn new(key: StoreKey, lease: Duration, place: Place) -> Self {
        HeldLock {
            key,
            lease,
            place,
            write_begun: AtomicBool::new(false),
            released: AtomicBool::new(false),
        }
    }

    /// Before a write: whether this is still the session's holder (no one took the lock over
    /// after its lease ended; in a store, also: its lease has not ended). If so, the lease starts
    /// again for the write. `None` for a lock held in the store: ask it with
    /// [`renew_in_store`](Self::renew_in_store).
    pub(crate) fn begin_write(&self) -> Option<bool> {
        self.write_begun.store(true, Ordering::Relaxed);
        match &self.place {
            Place::InProcess { table, token } => Some(table.begin_write(&self.key, *token, self.lease)),
            Place::Store { .. } => None,
        }
    }

    /// [`begin_write`](Self::begin_write) for a lock held in the store: one call to it.
    pub(crate) async fn renew_in_store(&self) -> Result<bool, StoreError> {
        self.write_begun.store(true, Ordering::Relaxed);
        match &self.place {
            Place::InProcess { .. } => Ok(self.begin_write().unwrap_or(false)),
            Place::Store {
                store,
                token,
                call_limit,
            } => {
                let renew = store.renew_lock(&self.key, token, self.lease);
                Timed::new(renew, *call_limit, SystemTime::now()).await
            }
        }
    }

    /// The token of a lock held in the store, for a write the store fences itself
    /// (`apply_locked`, which also releases the lock); `None` for an in-process lock. A lock
    /// asked this has begun its write.
    pub(crate) fn fence_in_store(&self) -> Option<&LockToken> {
        match &self.place {
            Place::InProcess { .. } => None,
            Place::Store { token, .. } => {
                self.write_begun.store(true, Ordering::Relaxed);
                Some(token)
            }
        }
    }

    /// Records that the store released the lock (with the write it fenced).
    pub(crate) fn released_by_store(&self) {
        self.released.store(true, Ordering::Relaxed);
    }

    /// Releases the lock now, though other references to it remain; once only (later releases
    /// and the drop do nothing). A lock held in the store is released by a task of its own
    /// ([`spawn_unlock`]): a waiter asks again until it lands.
    pub(crate) fn release(&self) {
        if self.released.swap(true, Ordering::Relaxed) {
            return;
        }
        match &self.place {
            Place::InProcess { table, token } => table.release(&self.key, *token),
            Place::Store {
                store,
                token,
                call_limit,
            } => spawn_unlock(store, self.key, *token, *call_limit),
        }
    }
}

impl fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("HeldLock");
        match &self.place {
            Place::InProcess { token, .. } => debug.field("token", token),
            Place::Store { token, .. } => debug.field("token", token),
        };
        debug.finish_non_exhaustive()
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // A request dropped while it held the lock (its client went away, its handler
        // panicked) frees it; once its write began, only the lease does.
        if !self.write_begun.load(Ordering::Relaxed) {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;

    const LEASE: Duration = Duration::from_secs(10);

    fn table() -> Arc<LockTable> {
        Arc::new(LockTable::default())
    }

    fn in_secs(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_and_the_entry_goes_with_the_last() {
        let table = table();
        let key = SessionId::random().store_key();
        let first = table.acquire(key, LEASE, Instant::now()).await.unwrap();
        assert!(table.acquire(key, LEASE, in_secs(1)).await.is_err());
        let waiter = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.acquire(key, LEASE, in_secs(5)).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(table.len(), 0, "no entry is kept for a free lock");
        let other = table.acquire(SessionId::random().store_key(), LEASE, Instant::now());
        assert!(other.await.is_ok(), "sessions do not share a lock");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_ran_out_is_taken_over_and_its_holder_can_no_longer_write() {
        let table = table();
        let key = SessionId::random().store_key();
        let old = table.acquire(key, LEASE, Instant::now()).await.unwrap();
        let started = Instant::now();
        let new = table.acquire(key, LEASE, in_secs(60)).await.unwrap();
        assert_eq!(started.elapsed(), LEASE, "taken over when the lease ended");
        assert_eq!(old.begin_write(), Some(false), "fenced");
        drop(old);
        assert!(
            new.begin_write() == Some(true),
            "the old holder's drop does not free the new one's lock"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_past_its_lease_still_writes_if_no_one_took_over_and_a_write_renews_the_lease() {
        let table = table();
        let key = SessionId::random().store_key();
        let slow = table.acquire(key, LEASE, Instant::now()).await.unwrap();
        tokio::time::sleep(LEASE * 2).await;
        assert_eq!(slow.begin_write(), Some(true));
        assert!(
            table.acquire(key, LEASE, Instant::now()).await.is_err(),
            "the write's fresh lease holds"
        );
        drop(slow);
        assert_eq!(
            table.len(),
            1,
            "a holder dropped after its write began leaves the lock to its lease"
        );
        let next = table.acquire(key, LEASE, in_secs(60)).await.unwrap();
        next.release();
        assert_eq!(table.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn durations_too_large_to_add_mean_forever() {
        let table = table();
        let key = SessionId::random().store_key();
        let held = table.acquire(key, Duration::MAX, Instant::now()).await.unwrap();
        let waiting = table.acquire(key, LEASE, later(Instant::now(), Duration::MAX));
        assert!(tokio::time::timeout(Duration::from_secs(3600), waiting).await.is_err());
        held.release();
        assert_eq!(table.len(), 0, "the timed-out waiter left nothing behind");
    }
}
