//! Where the session layer gets the time from: the system clock, or a clock tests move by hand.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// A source of the current time for expiry decisions.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// When a session made by a request at `request_time` (a [`now`](Self::now)) starts: by
    /// default `request_time` itself. A session's start also tells one user's sessions apart,
    /// even after one moved to a new id (`Session::end_other_sessions` keeps the caller's by it),
    /// so a clock whose `now` is coarse returns the precise time here: two sessions made within
    /// one of its ticks must not start at the same time.
    fn session_start(&self, request_time: SystemTime) -> SystemTime {
        request_time
    }
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
/// tick (every 1 to 10 ms, by its `CONFIG_HZ`): a few nanoseconds, where [`SystemClock`] asks
/// the hardware's counter. It is never ahead of [`SystemClock`] and at most one tick behind it,
/// so a session may be taken as live for up to that long past its expiry, and its new expiry
/// may be set that much earlier — far below the second that cookies count `Max-Age` in. A new
/// session's start is read precisely ([`Clock::session_start`]). Where there is no such clock,
/// or the kernel refuses it, it is [`SystemClock`].
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
        use rustix::time::{clock_gettime_dynamic, ClockId, DynamicClockId};
        // The fallible call: a kernel without the coarse clock is read the precise way (the
        // infallible one would panic), as is a clock set before 1970, which only it can express.
        match clock_gettime_dynamic(DynamicClockId::Known(ClockId::RealtimeCoarse)) {
            Ok(now) => match (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
                (Ok(secs), Ok(nanos)) => SystemTime::UNIX_EPOCH + Duration::new(secs, nanos),
                _ => SystemTime::now(),
            },
            Err(_) => SystemTime::now(),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn session_start(&self, request_time: SystemTime) -> SystemTime {
        SystemTime::now().max(request_time)
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

    /// A session a request makes starts at the precise time, not its coarse request time: two
    /// made within one tick start apart.
    #[test]
    fn a_coarse_clock_starts_sessions_at_the_precise_time() {
        let request_time = CoarseClock.now();
        let first = CoarseClock.session_start(request_time);
        let second = CoarseClock.session_start(request_time);
        assert!(
            request_time <= first && first < second,
            "{request_time:?} {first:?} {second:?}"
        );
        let manual = ManualClock::new(SystemTime::UNIX_EPOCH);
        assert_eq!(manual.session_start(SystemTime::UNIX_EPOCH), SystemTime::UNIX_EPOCH);
    }
}
