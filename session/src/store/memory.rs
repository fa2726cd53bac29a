use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::erased::request_time;
use super::{Applied, Created, SessionStore, StoreError, StoreKey};
use crate::id::RandomKeyMap;
use crate::record::{Changes, Record, Revision};
use crate::shard_lock::ShardLock;

const SHARDS: usize = 16;

/// The bound of [`MemoryStore::new`]: a million sessions, a few hundred megabytes for small ones.
const DEFAULT_MAX_SESSIONS: usize = 1_000_000;

// A record's values are shared with the requests that loaded them (cloning a `Record` copies no
// buffer) and copied on write only while such a request still holds them.
type Shard = ShardLock<RandomKeyMap<StoreKey, Record>>;

/// Sessions in this process's memory, lost on restart. The default store for tests and for a
/// single server that can afford to log everyone out when it restarts.
///
/// Records are spread over 16 shards, each under its own (synchronous, never held across an
/// `.await`) lock, so requests of different sessions rarely wait for each other.
///
/// ```
/// use typed_sessions::{MemoryStore, SessionLayer};
///
/// let layer = SessionLayer::new(MemoryStore::new());
/// ```
///
/// # Bounded
///
/// The store holds at most [`with_max_sessions`](Self::with_max_sessions) records (a million by
/// default), so that visitors who write a session and never come back — or a client sending
/// cookieless requests to a page that writes one — cannot grow it without limit. A store that is
/// full makes room before it stores a new session: it drops the expired records, and if that
/// is not enough, the tenth of its records closest to expiry (the sessions idle the longest).
/// Expired records are also dropped when they are looked up, so no sweeper is needed.
pub struct MemoryStore {
    shards: [Shard; SHARDS],
    /// The most records one shard holds.
    shard_capacity: usize,
    /// The keys of the records of each owner ([`Record::owner`]), kept exact under the lock of
    /// the records' shard: a shard's lock is taken before this one, never after.
    owners: Mutex<HashMap<String, HashSet<StoreKey>>>,
}

/// Moves `key` in the owner index from `old` to `new` owner.
fn reindex(owners: &Mutex<HashMap<String, HashSet<StoreKey>>>, key: &StoreKey, old: Option<&str>, new: Option<&str>) {
    if old == new {
        return;
    }
    let mut owners = owners.lock();
    if let Some(old) = old {
        if let Some(keys) = owners.get_mut(old) {
            keys.remove(key);
            if keys.is_empty() {
                owners.remove(old);
            }
        }
    }
    if let Some(new) = new {
        owners.entry(new.to_owned()).or_default().insert(*key);
    }
}

impl MemoryStore {
    /// An empty store, bounded to a million sessions.
    pub fn new() -> Self {
        Self::with_max_sessions(DEFAULT_MAX_SESSIONS)
    }

    /// An empty store that holds at most about `max` sessions: the bound is spread evenly over
    /// the store's 16 shards, so it is `max` rounded up to a multiple of 16 (and at least 16).
    /// When full, the store makes room for a new session by dropping expired sessions and then
    /// those closest to expiry (see [Bounded](Self#bounded)).
    ///
    /// ```
    /// use typed_sessions::MemoryStore;
    ///
    /// let store = MemoryStore::with_max_sessions(100_000);
    /// ```
    pub fn with_max_sessions(max: usize) -> Self {
        MemoryStore {
            shards: std::array::from_fn(|_| ShardLock::new(RandomKeyMap::default())),
            shard_capacity: max.div_ceil(SHARDS).max(1),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The most sessions the store holds.
    pub fn max_sessions(&self) -> usize {
        self.shard_capacity.saturating_mul(SHARDS)
    }

    fn shard(&self, key: &StoreKey) -> &Shard {
        // The key is a SHA-256 hash: its first byte is already uniformly spread.
        &self.shards[usize::from(key.as_bytes()[0]) % SHARDS]
    }

    /// How many records the store holds, expired ones included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Whether the store holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MemoryStore {
    /// Keeps the records of `shard` (whose lock the caller holds) for which `keep` is true, and
    /// takes the others out of the owner index.
    fn retain(&self, shard: &mut RandomKeyMap<StoreKey, Record>, mut keep: impl FnMut(&Record) -> bool) {
        shard.retain(|key, record| {
            let kept = keep(record);
            if !kept {
                reindex(&self.owners, key, record.owner.as_deref(), None);
            }
            kept
        });
    }

    /// Removes the record under `key` from `shard` (whose lock the caller holds) and from the
    /// owner index.
    fn remove(&self, shard: &mut RandomKeyMap<StoreKey, Record>, key: &StoreKey) {
        if let Some(record) = shard.remove(key) {
            reindex(&self.owners, key, record.owner.as_deref(), None);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("records", &self.len()).finish()
    }
}

/// Brings a full shard under its `capacity`: drops the expired records, then, if the shard is
/// still full, the tenth of them closest to expiry. One pass over the shard frees room for many
/// sessions, so a stream of new sessions into a full store costs a few comparisons each.
#[cold]
#[inline(never)]
fn make_room(store: &MemoryStore, shard: &mut RandomKeyMap<StoreKey, Record>, now: SystemTime) {
    let capacity = store.shard_capacity;
    let before = shard.len();
    store.retain(shard, |record| !record.is_expired_at(now));
    if shard.len() >= capacity {
        // `keep` is below `capacity`, which the shard has reached: at least one goes.
        let keep = (capacity - capacity / 10).saturating_sub(1);
        let evict = shard.len() - keep;
        let mut expiries: Vec<SystemTime> = shard.values().map(|record| record.expires_at).collect();
        let threshold = *expiries.select_nth_unstable(evict - 1).1;
        let mut evicted = 0;
        store.retain(shard, |record| {
            let drop = evicted < evict && record.expires_at <= threshold;
            evicted += usize::from(drop);
            !drop
        });
    }
    tracing::debug!(
        removed = before - shard.len(),
        "the memory store was full; dropped expired sessions and those closest to expiry"
    );
}

/// The calls of the request path, at the request's time `now`. The layer makes them directly
/// (`config::Storage::Memory`): they never wait, so they need no future, no timer and no
/// indirect call; the `SessionStore` methods below are the same calls at [`request_time`].
///
/// The load and the apply are inlined into the layer's one call of each, so that the record is
/// read into the request's frame rather than returned through the stack and copied again
/// (BENCHMARKS.md, twenty-first session).
impl MemoryStore {
    #[inline]
    pub(crate) fn load_at(&self, key: &StoreKey, now: SystemTime) -> Option<Record> {
        let mut shard = self.shard(key).lock();
        match shard.get(key) {
            Some(record) if record.is_expired_at(now) => {
                self.remove(&mut shard, key);
                None
            }
            found => found.cloned(),
        }
    }

    pub(crate) fn create_at(&self, key: &StoreKey, record: &Record, now: SystemTime) -> Created {
        let mut shard = self.shard(key).lock();
        if shard.get(key).is_some_and(|live| !live.is_expired_at(now)) {
            return Created::Collision;
        }
        if shard.len() >= self.shard_capacity && !shard.contains_key(key) {
            make_room(self, &mut shard, now);
        }
        let mut stored = record.clone();
        // Another store's note: this one's records have none (and the layer then keeps no
        // loaded record for the write).
        stored.revision = Revision::default();
        let replaced = shard.insert(*key, stored);
        let old_owner = replaced.as_ref().and_then(|old| old.owner.as_deref());
        reindex(&self.owners, key, old_owner, record.owner.as_deref());
        Created::Created
    }

    #[inline]
    pub(crate) fn apply_at(&self, key: &StoreKey, changes: &Changes, now: SystemTime) -> Applied {
        let mut shard = self.shard(key).lock();
        match shard.get_mut(key) {
            Some(record) if !record.is_expired_at(now) => {
                // A value of the same length is rewritten in place unless a request still holds
                // the values it loaded: that request keeps its snapshot and the store gets a copy.
                if let Some(owner) = &changes.owner {
                    reindex(&self.owners, key, record.owner.as_deref(), owner.as_deref());
                }
                record.apply(changes);
                Applied::Applied
            }
            _ => Applied::Missing,
        }
    }

    pub(crate) fn delete_now(&self, key: &StoreKey) {
        self.remove(&mut self.shard(key).lock(), key);
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.load_at(key, request_time()))
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        Ok(self.create_at(key, record, request_time()))
    }

    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        Ok(self.apply_at(key, changes, request_time()))
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.delete_now(key);
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = request_time();
        let mut removed = 0u64;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let before = shard.len();
            self.retain(&mut shard, |record| !record.is_expired_at(now));
            removed += (before - shard.len()) as u64;
        }
        Ok(removed)
    }

    async fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let now = request_time();
        let keys: Vec<StoreKey> = match self.owners.lock().get(owner) {
            Some(keys) => keys.iter().copied().collect(),
            None => return Ok(Vec::new()),
        };
        Ok(keys
            .into_iter()
            .filter_map(|key| {
                let shard = self.shard(&key).lock();
                let record = shard.get(&key)?;
                let listed = !record.is_expired_at(now) && record.owner.as_deref() == Some(owner);
                listed.then(|| (key, record.clone()))
            })
            .collect())
    }
}
