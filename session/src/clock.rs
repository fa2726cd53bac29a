//! Where the session layer gets the time from: the system clock, or a clock tests move by hand.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// A source of the current time for expiry decisions.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock, read to the nanosecond ([`SystemTime::now`]).
///
/// The layer's default is [`CoarseClock`]: expiry is decided in milliseconds at the finest, and
/// the precise clock costs a request more than the rest of its load from [`MemoryStore`](crate::MemoryStore).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The operating system's clock as of its last tick; the layer's default.
///
/// On Linux and Android this reads `CLOCK_REALTIME_COARSE`, which the kernel moves on once per
/// tick (every 1 to 4 ms, by its `CONFIG_HZ`): a few nanoseconds, where [`SystemClock`] asks
/// the hardware's counter. It is never ahead of [`SystemClock`] and at most one tick behind it,
/// so a session may be taken as live for up to that long past its expiry, and its new expiry
/// may be set that much earlier — far below the second that cookies count `Max-Age` in. Where
/// there is no such clock it is [`SystemClock`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use typed_sessions::clock::{Clock, CoarseClock};
///
/// let behind = SystemTime::now().duration_since(CoarseClock.now()).unwrap_or_default();
/// assert!(behind < Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseClock;

impl Clock for CoarseClock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn now(&self) -> SystemTime {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        // A clock set before 1970 is read the precise way, which can say so.
        match (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
            (Ok(secs), Ok(nanos)) => SystemTime::UNIX_EPOCH + Duration::new(secs, nanos),
            _ => SystemTime::now(),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move: for testing expiry without sleeping.
///
/// Clones share one time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use typed_sessions::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(90));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse clock is the system's, read as of its last tick: never ahead of a precise read
    /// taken after it, and behind it by a tick (a few milliseconds), not by a unit's mistake.
    #[test]
    fn the_coarse_clock_trails_the_precise_one_by_at_most_a_tick() {
        for _ in 0..1_000 {
            let coarse = CoarseClock.now();
            let precise = SystemClock.now();
            let behind = precise
                .duration_since(coarse)
                .expect("the coarse clock read ahead of a later precise read");
            assert!(
                behind < Duration::from_millis(100),
                "the coarse clock is {behind:?} behind"
            );
        }
    }
}
