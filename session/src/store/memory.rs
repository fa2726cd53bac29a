use parking_lot::Mutex;

use super::erased::request_time;
use super::{Applied, Created, SessionStore, StoreError, StoreKey};
use crate::id::RandomKeyMap;
use crate::record::{Changes, Record};

const SHARDS: usize = 16;

// A record's values are shared with the requests that loaded them (cloning a `Record` copies no
// buffer) and copied on write only while such a request still holds them.
type Shard = Mutex<RandomKeyMap<StoreKey, Record>>;

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
pub struct MemoryStore {
    shards: [Shard; SHARDS],
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            shards: std::array::from_fn(|_| Mutex::new(RandomKeyMap::default())),
        }
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

impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let now = request_time();
        let mut shard = self.shard(key).lock();
        Ok(match shard.get(key) {
            Some(record) if record.is_expired_at(now) => {
                shard.remove(key);
                None
            }
            found => found.cloned(),
        })
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        let now = request_time();
        let mut shard = self.shard(key).lock();
        if shard.get(key).is_some_and(|live| !live.is_expired_at(now)) {
            return Ok(Created::Collision);
        }
        shard.insert(*key, record.clone());
        Ok(Created::Created)
    }

    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        let now = request_time();
        let mut shard = self.shard(key).lock();
        Ok(match shard.get_mut(key) {
            Some(record) if !record.is_expired_at(now) => {
                // A value of the same length is rewritten in place unless a request still holds
                // the values it loaded: that request keeps its snapshot and the store gets a copy.
                record.apply(changes);
                Applied::Applied
            }
            _ => Applied::Missing,
        })
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.shard(key).lock().remove(key);
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = request_time();
        let mut removed = 0u64;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|_, record| !record.is_expired_at(now));
            removed += (before - shard.len()) as u64;
        }
        Ok(removed)
    }
}
