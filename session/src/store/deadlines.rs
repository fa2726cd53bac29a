//! The deadlines of store calls that wait, kept by one thread for the whole process instead of a
//! tokio timer per call.
//!
//! A tokio timer costs a waiting call more than its instructions: registering it and dropping it
//! each take the runtime's timer lock, shared by every worker thread, and a worker that wakes
//! from parking runs the timer wheel. On Redis, where every call waits, read-only requests went
//! 2–5% faster end to end with this table instead (see BENCHMARKS.md). Here a call that has to
//! wait puts its deadline and its task's waker in one table, and takes them out when it ends; a
//! thread of its own (started on first use) sleeps until the earliest deadline in the table and
//! wakes the tasks whose deadline has passed, which then find it has (see [`Deadline::passed`])
//! and fail their call. A call's deadline later than the thread's next look, the usual case
//! under one timeout, costs the thread nothing.
//!
//! Deadlines are on the system's monotonic clock, not tokio's: a runtime whose clock is paused
//! (`tokio::time::pause`, in tests) does not move them.

use std::sync::OnceLock;
use std::task::Waker;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slab::Slab;

/// The table of deadlines, and the thread that watches it.
struct Deadlines {
    calls: Mutex<Calls>,
    watcher: OnceLock<Option<Thread>>,
}

struct Calls {
    waiting: Slab<Waiting>,
    /// When the watcher looks at the table next; `None` while it sleeps until woken.
    next_look: Option<Instant>,
}

struct Waiting {
    deadline: Instant,
    waker: Waker,
}

static DEADLINES: Deadlines = Deadlines {
    calls: Mutex::new(Calls {
        waiting: Slab::new(),
        next_look: None,
    }),
    watcher: OnceLock::new(),
};

/// A store call's deadline, watched for as long as it lives.
pub(crate) struct Deadline {
    key: usize,
    at: Instant,
    waker: Waker,
}

impl Deadline {
    /// Watches for `at` on behalf of the task of `waker`; `None` if no thread can be started to
    /// watch (the caller then needs a timer of its own).
    pub(crate) fn start(at: Instant, waker: &Waker) -> Option<Self> {
        let watcher = DEADLINES.watcher.get_or_init(start_watcher).as_ref()?;
        let (key, look_sooner) = {
            let mut calls = DEADLINES.calls.lock();
            let key = calls.waiting.insert(Waiting {
                deadline: at,
                waker: waker.clone(),
            });
            let look_sooner = calls.next_look.is_none_or(|look| at < look);
            if look_sooner {
                calls.next_look = Some(at);
            }
            (key, look_sooner)
        };
        if look_sooner {
            watcher.unpark();
        }
        Some(Deadline {
            key,
            at,
            waker: waker.clone(),
        })
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Makes `waker` the one woken at the deadline (a call's task may be polled with another).
    pub(crate) fn wake(&mut self, waker: &Waker) {
        if !self.waker.will_wake(waker) {
            self.waker.clone_from(waker);
            let replaced = DEADLINES
                .calls
                .lock()
                .waiting
                .get_mut(self.key)
                .map(|waiting| std::mem::replace(&mut waiting.waker, waker.clone()));
            // Dropped outside the lock, as in `drop`.
            drop(replaced);
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let removed = DEADLINES.calls.lock().waiting.try_remove(self.key);
        // The waker is dropped outside the lock: dropping a task's last handle may free it.
        drop(removed);
    }
}

/// The watching thread, named so in a debugger or `top -H`; `None` if the system refuses one.
fn start_watcher() -> Option<Thread> {
    let started = thread::Builder::new()
        .name("typed-sessions-deadlines".to_owned())
        .stack_size(64 * 1024)
        .spawn(watch);
    match started {
        Ok(handle) => Some(handle.thread().clone()),
        Err(error) => {
            tracing::warn!(%error, "no thread for store-call deadlines; each call uses a timer of its own");
            None
        }
    }
}

/// Sleeps until the earliest deadline in the table (or until a call with an earlier one wakes
/// it), then wakes the tasks whose deadline has passed.
fn watch() {
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        let next_look = {
            let mut calls = DEADLINES.calls.lock();
            let mut earliest: Option<Instant> = None;
            for (_, waiting) in &calls.waiting {
                if waiting.deadline <= now {
                    due.push(waiting.waker.clone());
                } else if earliest.is_none_or(|at| waiting.deadline < at) {
                    earliest = Some(waiting.deadline);
                }
            }
            calls.next_look = earliest;
            earliest
        };
        // Woken outside the lock: waking a task may take its scheduler's locks. A waker that
        // panics must not end the thread, or no deadline would be watched again.
        for waker in due.drain(..) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
        match next_look {
            // Rounded up to the next millisecond, so that the thread does not wake just before.
            Some(at) => {
                thread::park_timeout(at.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
            }
            None => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex as StdMutex};
    use std::task::Wake;

    use super::*;

    /// A waker that reports each wake on a channel.
    struct Reporting(StdMutex<mpsc::Sender<Instant>>);

    impl Wake for Reporting {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(Instant::now());
        }
    }

    fn reporting_waker() -> (Waker, mpsc::Receiver<Instant>) {
        let (sender, woken) = mpsc::channel();
        (Waker::from(Arc::new(Reporting(StdMutex::new(sender)))), woken)
    }

    fn waiting_in_table(key: usize) -> bool {
        DEADLINES.calls.lock().waiting.contains(key)
    }

    #[test]
    fn a_task_is_woken_once_its_deadline_has_passed() {
        let (waker, woken) = reporting_waker();
        let at = Instant::now() + Duration::from_millis(50);
        let deadline = Deadline::start(at, &waker).expect("a watcher thread");
        assert!(!deadline.passed());
        let when = woken
            .recv_timeout(Duration::from_secs(5))
            .expect("woken at the deadline");
        assert!(when >= at, "woken {:?} early", at - when);
        assert!(deadline.passed());
        let key = deadline.key;
        drop(deadline);
        assert!(!waiting_in_table(key), "an ended call stays in the table");
    }

    #[test]
    fn an_earlier_deadline_wakes_the_watcher_sooner() {
        let (late_waker, _late) = reporting_waker();
        let _late = Deadline::start(Instant::now() + Duration::from_secs(60), &late_waker).unwrap();
        let (waker, woken) = reporting_waker();
        let started = Instant::now();
        let _soon = Deadline::start(started + Duration::from_millis(50), &waker).unwrap();
        let when = woken
            .recv_timeout(Duration::from_secs(5))
            .expect("woken at the earlier deadline");
        assert!(
            when - started < Duration::from_secs(2),
            "woken after {:?}",
            when - started
        );
    }

    #[test]
    fn a_call_that_ended_is_not_woken() {
        let (waker, woken) = reporting_waker();
        let deadline = Deadline::start(Instant::now() + Duration::from_millis(30), &waker).unwrap();
        drop(deadline);
        assert!(woken.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn the_waker_of_the_latest_poll_is_woken() {
        let (first, first_woken) = reporting_waker();
        let (second, second_woken) = reporting_waker();
        let mut deadline = Deadline::start(Instant::now() + Duration::from_millis(50), &first).unwrap();
        deadline.wake(&second);
        second_woken
            .recv_timeout(Duration::from_secs(5))
            .expect("the latest waker woken");
        assert!(first_woken.try_recv().is_err(), "a stale waker was woken");
    }
}
