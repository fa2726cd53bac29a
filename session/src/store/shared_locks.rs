//! The values of the store's lock methods (see "Shared session locks" on
//! [`SessionStore`](super::SessionStore)).

use std::fmt;
use std::time::Duration;

use super::Record;

/// The token of one holder of a session's lock: 128 random bits, so that the holders of every
/// app instance are told apart without coordination.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken([u8; 16]);

impl LockToken {
    /// A new random token.
    pub fn random() -> Self {
        let mut bytes = [0; 16];
        getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
        LockToken(bytes)
    }

    /// The token's bytes, for a store that keeps it as binary.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The token in lowercase hex (32 characters), for a store that keeps it as text.
    pub fn to_hex(&self) -> String {
        crate::id::to_hex(&self.0)
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token is no secret, but its holder is better named by a prefix in logs.
        write!(f, "LockToken({}…)", &self.to_hex()[..8])
    }
}

/// What [`SessionStore::lock_and_load`](super::SessionStore::lock_and_load) did.
#[derive(Debug)]
pub enum LockAttempt {
    /// The lock is this token's, and this is the record as stored once it was taken.
    Taken(Record),
    /// No live record has the key: nothing to lock, and nothing was locked.
    Missing,
    /// Another token holds the lock, for about this long still (at most its lease).
    Busy {
        /// How long the current holder's lease still runs.
        remaining: Duration,
    },
}

/// What [`SessionStore::apply_locked`](super::SessionStore::apply_locked) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockedApply {
    /// The changes were merged, and the lock released.
    Applied,
    /// No live record has the key; nothing was written.
    Missing,
    /// The token no longer holds the lock (its lease ran out and another may have taken it);
    /// nothing was written.
    LockLost,
}
