//! Where sessions live: the [`SessionStore`] trait and the stores that implement it.
//!
//! A store never sees a session id, only its [`StoreKey`] (a SHA-256 hash of the id), so a
//! leaked store does not hold usable cookies. Each request of an existing session reaches the
//! store as one [`Changes`] patch, which the store applies atomically and merges with what it
//! holds.
//!
//! # Writing a store
//!
//! Implement the five `async fn`s and run the `conformance` suite (feature `conformance`) against
//! the store in a test. That is all: the session layer drives every store through the same path.
//!
//! ```
//! use typed_sessions::store::{Applied, Changes, Created, Record, SessionStore, StoreError, StoreKey};
//!
//! /// Forgets everything: a store that is always empty.
//! struct NullStore;
//!
//! impl SessionStore for NullStore {
//!     async fn load(&self, _key: &StoreKey) -> Result<Option<Record>, StoreError> {
//!         Ok(None)
//!     }
//!     async fn create(&self, _key: &StoreKey, _record: &Record) -> Result<Created, StoreError> {
//!         Ok(Created::Created)
//!     }
//!     async fn apply(&self, _key: &StoreKey, _changes: &Changes) -> Result<Applied, StoreError> {
//!         Ok(Applied::Missing)
//!     }
//!     async fn delete(&self, _key: &StoreKey) -> Result<(), StoreError> {
//!         Ok(())
//!     }
//!     async fn delete_expired(&self) -> Result<u64, StoreError> {
//!         Ok(0)
//!     }
//! }
//! ```
//!
//! The stores of this crate are made alike: `open(path)` or `connect(url)` gives a ready store
//! (its table created if missing); `from_pool(pool)`, `from_pool_with_table(pool, table)` and
//! `RedisStore::from_manager(manager)` build one on a client the app already has.
//!
//! The futures must be `Send`: hold no `!Send` value (a `std::sync::MutexGuard`, an `Rc`) across
//! an `.await`. The layer boxes each call's future once, as `async_trait` would; this crate's
//! [`MemoryStore`] alone is called directly on a request's path, with no future kept and no
//! allocation for its calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use crate::id::StoreKey;
pub use crate::record::{Changes, Patch, PatchIter, Record, Revision};
pub use crate::value_map::{ValueMap, ValueMapIter};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod batched_loads;
#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
pub(crate) mod codec;
mod deadlines;
pub(crate) mod erased;
mod shared_locks;
pub use shared_locks::{LockAttempt, LockToken, LockedApply};

mod memory;
pub use memory::MemoryStore;

mod sweeper;
pub use sweeper::{spawn_sweeper, Sweeper};

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

// Unix only: its locks rely on removing a locked file and on inode identity (see `FileStore`).
#[cfg(all(feature = "file", unix))]
mod file;
#[cfg(all(feature = "file", unix))]
pub use file::FileStore;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;

#[cfg(feature = "conformance")]
pub mod conformance;

/// What [`SessionStore::create`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The record was stored.
    Created,
    /// A live record already has this key; nothing was written. The layer retries with a new id.
    Collision,
}

/// What [`SessionStore::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The changes were merged into the stored record.
    Applied,
    /// No live record has this key (deleted, or expired); nothing was written.
    Missing,
}

/// A store could not do what was asked. The request that needed it is answered with 503.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or did not answer in time.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store answered with data it could not decode.
    #[error("session store holds a record it cannot decode: {0}")]
    Corrupt(String),
    /// Any other failure of the backend.
    #[error("session store failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store cannot do what was asked at all (such as listing an owner's sessions in a store
    /// without an owner index, or of client-side sessions); asking again will not help.
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Backend`].
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Backend(error.into())
    }

    /// [`StoreError::Unavailable`] if `unavailable` (a connection or timeout failure, worth a
    /// retry later), else [`StoreError::Backend`].
    pub fn classify(error: impl Into<Box<dyn std::error::Error + Send + Sync>>, unavailable: bool) -> Self {
        if unavailable {
            StoreError::Unavailable(error.into())
        } else {
            StoreError::Backend(error.into())
        }
    }

    /// Wraps a connection or timeout error as [`StoreError::Unavailable`].
    pub fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable(error.into())
    }
}

/// A place that keeps session records.
///
/// Contract (checked by the `conformance` suite):
/// - `load` never returns an expired record.
/// - `create` stores the record only if no live record has the key, else says [`Created::Collision`].
/// - `apply` merges the patch into the live record atomically, key by key, with
///   [`Record::apply`]'s rules; if there is no live record it writes nothing and says
///   [`Applied::Missing`] (a slow request never brings back a destroyed session). A store
///   that notes a [`Revision`] on the records it loads may instead write [`Changes::base`]
///   with the changes applied, only while what it holds is still that revision and `base` is
///   live.
/// - `delete` is idempotent.
/// - `delete_expired` removes expired records and says how many (stores that expire records
///   themselves, like Redis, return 0).
///
/// Implement the methods as `async fn`s (see the [module docs](self)); the futures they return
/// must be `Send`.
///
/// # Shared session locks
///
/// A [`LockedSession`](crate::LockedSession) takes its session's lock before the load and
/// releases it after the save. By default the layer keeps these locks in its own process: exact
/// when one process uses the store (`MemoryStore`, or one app on a SQLite file or directory),
/// not shared by two. A store that many app instances share keeps the locks itself by setting
/// [`SHARED_LOCKS`](Self::SHARED_LOCKS) and implementing the four lock methods so that, for one
/// key (checked by the conformance suite's `locks_are_exclusive_and_fenced`):
///
/// - at most one [`LockToken`] holds the lock at a time; a lock whose lease ran out may be taken
///   by another token;
/// - [`lock_and_load`](Self::lock_and_load) takes the lock only for a live record, and returns
///   the record as read once the lock was taken;
/// - [`apply_locked`](Self::apply_locked) writes only while the token holds the lock (the
///   *fence*: a holder whose lease ran out cannot overwrite the next holder's writes), and
///   releases it in the same step;
/// - [`renew_lock`](Self::renew_lock) answers whether the token still holds the lock, or the
///   record is gone (nothing is left to protect), and restarts its lease;
/// - [`unlock`](Self::unlock) releases the lock only if the token holds it;
/// - the plain methods ignore the locks: a plain `Session` never waits for one.
///
/// # Sessions of an owner
///
/// A session whose schema has an owner key (`#[session(owner)]`, see
/// [`OwnedSchema`](crate::OwnedSchema)) carries its value in [`Record::owner`], and changes to it
/// in [`Changes::owner`]. A store that indexes sessions by owner implements
/// [`owner_sessions`](Self::owner_sessions) (and, where the backend can do it in one step,
/// [`end_owner_sessions`](Self::end_owner_sessions)) so that (checked by the conformance suite's
/// `owner_index_follows_the_owner`):
///
/// - a live record whose owner is `owner` is listed under it, whether `create` stored it with
///   that owner or `apply` set it later;
/// - a record whose owner changed is listed under the new owner only, one whose owner was removed
///   (`Some(None)`) under none;
/// - a deleted or expired record is never listed;
/// - listing costs time in proportion to the owner's sessions, not to the whole store's.
///
/// Without them, listing fails with [`StoreError::Unsupported`].
pub trait SessionStore: Send + Sync + 'static {
    /// The live record under `key`, if any.
    fn load(&self, key: &StoreKey) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;
    /// Stores a new record unless a live one has the key.
    fn create(&self, key: &StoreKey, record: &Record) -> impl Future<Output = Result<Created, StoreError>> + Send;
    /// Merges `changes` into the live record under `key`.
    fn apply(&self, key: &StoreKey, changes: &Changes) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// Removes the record under `key`, if any.
    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes every expired record; returns how many it removed.
    fn delete_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Whether this store keeps [`LockedSession`](crate::LockedSession)'s session locks itself,
    /// shared by every app instance using it, through the four lock methods below (see
    /// [Shared session locks](#shared-session-locks)). `false` (the default): the layer locks
    /// sessions in its own process and never calls them.
    const SHARED_LOCKS: bool = false;

    /// Takes the lock of the live record under `key` for `token`, for `lease`, unless another
    /// token holds it, and reads the record under the lock — in one step where the backend can.
    /// Called only if [`SHARED_LOCKS`](Self::SHARED_LOCKS).
    fn lock_and_load(
        &self,
        key: &StoreKey,
        token: &LockToken,
        lease: Duration,
    ) -> impl Future<Output = Result<LockAttempt, StoreError>> + Send {
        let _ = (key, token, lease);
        async { Err(no_shared_locks()) }
    }

    /// [`apply`](Self::apply), only if `token` still holds the lock of `key`; then releases it.
    /// Called only if [`SHARED_LOCKS`](Self::SHARED_LOCKS).
    fn apply_locked(
        &self,
        key: &StoreKey,
        token: &LockToken,
        changes: &Changes,
    ) -> impl Future<Output = Result<LockedApply, StoreError>> + Send {
        let _ = (key, token, changes);
        async { Err(no_shared_locks()) }
    }

    /// Whether `token` still holds the lock of `key` — or no record has the key any more,
    /// which leaves nothing to protect; if it holds it, its lease starts again. Before a write
    /// other than `apply_locked`. Called only if [`SHARED_LOCKS`](Self::SHARED_LOCKS).
    fn renew_lock(
        &self,
        key: &StoreKey,
        token: &LockToken,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (key, token, lease);
        async { Err(no_shared_locks()) }
    }

    /// Releases the lock of `key` if `token` holds it. Called only if
    /// [`SHARED_LOCKS`](Self::SHARED_LOCKS).
    fn unlock(&self, key: &StoreKey, token: &LockToken) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (key, token);
        async { Err(no_shared_locks()) }
    }

    /// The live records whose [`owner`](Record::owner) is `owner` (the JSON form of an owner
    /// key's value), with their keys, in any order (see [Sessions of an
    /// owner](#sessions-of-an-owner)). By default: [`StoreError::Unsupported`].
    fn owner_sessions(&self, owner: &str) -> impl Future<Output = Result<Vec<(StoreKey, Record)>, StoreError>> + Send {
        let _ = owner;
        async {
            Err(StoreError::Unsupported(
                "this store keeps no index of sessions by owner (`SessionStore::owner_sessions`)".into(),
            ))
        }
    }

    /// Deletes every live record of `owner` but the one under `except`; returns how many it
    /// deleted. By default, [`owner_sessions`](Self::owner_sessions) then
    /// [`delete`](Self::delete) for each.
    fn end_owner_sessions(
        &self,
        owner: &str,
        except: Option<&StoreKey>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut ended = 0;
            for (key, _) in self.owner_sessions(owner).await? {
                if Some(&key) != except {
                    self.delete(&key).await?;
                    ended += 1;
                }
            }
            Ok(ended)
        }
    }
}

fn no_shared_locks() -> StoreError {
    StoreError::backend("this store keeps no session locks (`SessionStore::SHARED_LOCKS` is false)")
}

impl<S: SessionStore> SessionStore for Arc<S> {
    fn load(&self, key: &StoreKey) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send {
        (**self).load(key)
    }
    fn create(&self, key: &StoreKey, record: &Record) -> impl Future<Output = Result<Created, StoreError>> + Send {
        (**self).create(key, record)
    }
    fn apply(&self, key: &StoreKey, changes: &Changes) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        (**self).apply(key, changes)
    }
    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete(key)
    }
    fn delete_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).delete_expired()
    }
    const SHARED_LOCKS: bool = S::SHARED_LOCKS;
    fn lock_and_load(
        &self,
        key: &StoreKey,
        token: &LockToken,
        lease: Duration,
    ) -> impl Future<Output = Result<LockAttempt, StoreError>> + Send {
        (**self).lock_and_load(key, token, lease)
    }
    fn apply_locked(
        &self,
        key: &StoreKey,
        token: &LockToken,
        changes: &Changes,
    ) -> impl Future<Output = Result<LockedApply, StoreError>> + Send {
        (**self).apply_locked(key, token, changes)
    }
    fn renew_lock(
        &self,
        key: &StoreKey,
        token: &LockToken,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).renew_lock(key, token, lease)
    }
    fn unlock(&self, key: &StoreKey, token: &LockToken) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).unlock(key, token)
    }
    fn owner_sessions(&self, owner: &str) -> impl Future<Output = Result<Vec<(StoreKey, Record)>, StoreError>> + Send {
        (**self).owner_sessions(owner)
    }
    fn end_owner_sessions(
        &self,
        owner: &str,
        except: Option<&StoreKey>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).end_owner_sessions(owner, except)
    }
}
