//! Where sessions live: the [`SessionStore`] trait and the stores that implement it.
//!
//! A store never sees a session id, only its [`StoreKey`] (a SHA-256 hash of the id), so a
//! leaked store does not hold usable cookies. Each request of an existing session reaches the
//! store as one [`Changes`] patch, which the store applies atomically and merges with what it
//! holds.
//!
//! # Writing a store
//!
//! Implement the five methods with `#[async_trait]` and run the
//! `conformance` suite (feature `conformance`) against it in a test. A store that keeps records
//! in this process's memory and never waits can also implement
//! [`load_now`](SessionStore::load_now) and [`apply_now`](SessionStore::apply_now), which spare
//! each request a boxed future and a copy of the record:
//!
//! ```
//! use typed_sessions::store::{Applied, Created, SessionStore, StoreError, StoreKey};
//! use typed_sessions::{Changes, Record};
//!
//! /// Forgets everything: a store that is always empty.
//! struct NullStore;
//!
//! #[typed_sessions::async_trait]
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

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

pub use crate::id::StoreKey;
use crate::record::{Changes, Record};

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
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The live record under `key`, if any.
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError>;
    /// Stores a new record unless a live one has the key.
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError>;
    /// Merges `changes` into the live record under `key`.
    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError>;
    /// Removes the record under `key`, if any.
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;
    /// Removes every expired record; returns how many it removed.
    async fn delete_expired(&self) -> Result<u64, StoreError>;

    /// [`load`](Self::load) answered at once, with the record shared instead of copied: for
    /// stores that keep records in this process's memory and never wait. The layer calls it
    /// first and awaits `load` only when it returns `None`, the default.
    ///
    /// `now` is the current time by the layer's clock. A store that checks expiry itself judges
    /// by it instead of reading the system clock again: a clock read costs a request about as
    /// much as a small allocation, and a store that agrees with the layer's clock also agrees
    /// with a test clock.
    ///
    /// This is what lets an in-memory session cost a request no allocation and no boxed future
    /// for the read. An implementation must answer exactly as `load` would at `now`; the
    /// conformance suite compares the two on every load it makes.
    fn load_now(&self, _key: &StoreKey, _now: SystemTime) -> Option<Result<Option<Arc<Record>>, StoreError>> {
        None
    }

    /// [`apply`](Self::apply) done at once, at `now` (as in [`load_now`](Self::load_now)), for
    /// stores that never wait; `None` (the default) sends the layer to `apply`. Same contract as
    /// `apply`, checked by the conformance suite.
    fn apply_now(&self, _key: &StoreKey, _changes: &Changes, _now: SystemTime) -> Option<Result<Applied, StoreError>> {
        None
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        (**self).load(key).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        (**self).create(key, record).await
    }
    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        (**self).apply(key, changes).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        (**self).delete_expired().await
    }
    fn load_now(&self, key: &StoreKey, now: SystemTime) -> Option<Result<Option<Arc<Record>>, StoreError>> {
        (**self).load_now(key, now)
    }
    fn apply_now(&self, key: &StoreKey, changes: &Changes, now: SystemTime) -> Option<Result<Applied, StoreError>> {
        (**self).apply_now(key, changes, now)
    }
}
