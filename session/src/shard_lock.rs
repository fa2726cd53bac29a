//! [`ShardLock`]: the lock of one shard of a map that every request reads (the store keys of
//! ids, the memory store's records).
//!
//! A request takes such a lock once or twice and holds it for a lookup or an insert. Releasing
//! a parking lock (`parking_lot`, `std`) is an atomic read-modify-write, which must see its
//! waiters; releasing a spin lock is a plain store. On this path the difference was measurable
//! (BENCHMARKS.md, twenty-first session): an atomic read-modify-write also waits for the
//! request's earlier writes to reach the cache.
//!
//! A thread that finds the lock taken spins, and yields its time slice between bursts of spins.
//! During a long hold (a sweep of expired sessions, a full store making room) its waiters keep
//! yielding rather than sleep: they take the processor only when nothing else wants it, but
//! more of it than a parking lock's waiters would.

use std::cell::Cell;

/// A spin lock that yields to the scheduler when it waits long.
pub(crate) type ShardLock<T> = spin::mutex::SpinMutex<T, SpinThenYield>;

/// How many spins a waiting thread makes between two yields.
const SPINS_PER_YIELD: u32 = 64;

std::thread_local! {
    /// Spins made by this thread while waiting for shard locks, to yield every
    /// `SPINS_PER_YIELD`-th one.
    static SPINS: Cell<u32> = const { Cell::new(0) };
}

/// Spins, and every [`SPINS_PER_YIELD`] spins yields the thread.
pub(crate) struct SpinThenYield;

impl spin::RelaxStrategy for SpinThenYield {
    fn relax() {
        let spins = SPINS.try_with(|spins| {
            let count = spins.get().wrapping_add(1);
            spins.set(count);
            count
        });
        match spins {
            Ok(count) if count % SPINS_PER_YIELD != 0 => std::hint::spin_loop(),
            _ => std::thread::yield_now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Threads contending for one lock, one of them holding it for a long time, all get it, and
    /// each one's increments are kept.
    #[test]
    fn contended_holders_all_get_the_lock_in_turn() {
        let lock = Arc::new(ShardLock::new(0u64));
        let long_hold = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                let mut count = lock.lock();
                std::thread::sleep(Duration::from_millis(50));
                *count += 1;
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        let started = Instant::now();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        long_hold.join().unwrap();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(*lock.lock(), 4_001);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the waiters took {:?}",
            started.elapsed()
        );
    }
}
