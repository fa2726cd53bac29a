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
//! an `.await`. A store whose calls finish without waiting (one that keeps records in this
//! process's memory) costs a request no allocation for its calls.

use std::future::Future;
use std::sync::Arc;

pub use crate::id::StoreKey;
pub use crate::record::{Changes, Patch, PatchIter, Record};
pub use crate::value_map::{ValueMap, ValueMapIter};

#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
pub(crate) mod codec;
pub(crate) mod erased;

mod memory;
pub use memory::MemoryStore;

mod sweeper;
pub use sweeper::{spawn_sweeper, Sweeper};

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

#[cfg(feature = "file")]
mod file;
#[cfg(feature = "file")]
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
///   [`Applied::Missing`] (a slow request never brings back a destroyed session).
/// - `delete` is idempotent.
/// - `delete_expired` removes expired records and says how many (stores that expire records
///   themselves, like Redis, return 0).
///
/// Implement the methods as `async fn`s (see the [module docs](self)); the futures they return
/// must be `Send`.
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
}
