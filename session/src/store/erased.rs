//! The store as the layer holds it: any [`SessionStore`] behind one object-safe interface.
//!
//! `SessionStore`'s methods are `async fn`s, whose futures have a type of their own per store, so
//! the trait cannot be a trait object. The layer keeps its one request path free of the store's
//! type by calling the store through [`ErasedStore`], whose futures are [`StoreFuture`]s: the
//! store's own future, boxed once per call as an `async_trait` would. (This crate's
//! `MemoryStore`, whose calls never wait, is called directly for a request's load, create, apply
//! and delete — `config::Storage::Memory` — and through this interface for the rest: the owner
//! index's calls.)

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use pin_project_lite::pin_project;
use tokio::task::Unconstrained;
use tokio::time::Sleep;

use super::deadlines::Deadline;
use super::{Applied, Created, LockAttempt, LockToken, LockedApply, SessionStore, StoreError, StoreKey};
use crate::record::{Changes, Record};

/// A store call in progress.
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// [`SessionStore`] as a trait object; implemented for every store.
pub(crate) trait ErasedStore: Send + Sync + 'static {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Record>>;
    fn create<'a>(&'a self, key: &'a StoreKey, record: &'a Record) -> StoreFuture<'a, Created>;
    fn apply<'a>(&'a self, key: &'a StoreKey, changes: &'a Changes) -> StoreFuture<'a, Applied>;
    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()>;
    /// [`SessionStore::SHARED_LOCKS`].
    fn shares_locks(&self) -> bool;
    fn lock_and_load<'a>(
        &'a self,
        key: &'a StoreKey,
        token: &'a LockToken,
        lease: Duration,
    ) -> StoreFuture<'a, LockAttempt>;
    fn apply_locked<'a>(
        &'a self,
        key: &'a StoreKey,
        token: &'a LockToken,
        changes: &'a Changes,
    ) -> StoreFuture<'a, LockedApply>;
    fn renew_lock<'a>(&'a self, key: &'a StoreKey, token: &'a LockToken, lease: Duration) -> StoreFuture<'a, bool>;
    fn unlock<'a>(&'a self, key: &'a StoreKey, token: &'a LockToken) -> StoreFuture<'a, ()>;
    fn owner_sessions<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<(StoreKey, Record)>>;
    fn end_owner_sessions<'a>(&'a self, owner: &'a str, except: Option<&'a StoreKey>) -> StoreFuture<'a, u64>;
}

impl<S: SessionStore> ErasedStore for S {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Record>> {
        Box::pin(SessionStore::load(self, key))
    }

    fn create<'a>(&'a self, key: &'a StoreKey, record: &'a Record) -> StoreFuture<'a, Created> {
        Box::pin(SessionStore::create(self, key, record))
    }

    fn apply<'a>(&'a self, key: &'a StoreKey, changes: &'a Changes) -> StoreFuture<'a, Applied> {
        Box::pin(SessionStore::apply(self, key, changes))
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
        Box::pin(SessionStore::delete(self, key))
    }

    fn shares_locks(&self) -> bool {
        S::SHARED_LOCKS
    }

    fn lock_and_load<'a>(
        &'a self,
        key: &'a StoreKey,
        token: &'a LockToken,
        lease: Duration,
    ) -> StoreFuture<'a, LockAttempt> {
        Box::pin(SessionStore::lock_and_load(self, key, token, lease))
    }

    fn apply_locked<'a>(
        &'a self,
        key: &'a StoreKey,
        token: &'a LockToken,
        changes: &'a Changes,
    ) -> StoreFuture<'a, LockedApply> {
        Box::pin(SessionStore::apply_locked(self, key, token, changes))
    }

    fn renew_lock<'a>(&'a self, key: &'a StoreKey, token: &'a LockToken, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(SessionStore::renew_lock(self, key, token, lease))
    }

    fn unlock<'a>(&'a self, key: &'a StoreKey, token: &'a LockToken) -> StoreFuture<'a, ()> {
        Box::pin(SessionStore::unlock(self, key, token))
    }

    fn owner_sessions<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Vec<(StoreKey, Record)>> {
        Box::pin(SessionStore::owner_sessions(self, owner))
    }

    fn end_owner_sessions<'a>(&'a self, owner: &'a str, except: Option<&'a StoreKey>) -> StoreFuture<'a, u64> {
        Box::pin(SessionStore::end_owner_sessions(self, owner, except))
    }
}

pin_project! {
    /// A store call that may take at most `limit` (`None`: as long as it takes); one that outlasts
    /// it is [`StoreError::Unavailable`].
    ///
    /// The deadline is registered only once the call has had to wait, so a store that answers at
    /// once costs none; it goes in the process's table of deadlines (`store::deadlines`), not in
    /// a tokio timer of its own (whose lock and wheel the runtime's workers share; see the
    /// module `deadlines`).
    pub(crate) struct Timed<'a, T> {
        #[pin]
        call: StoreFuture<'a, T>,
        limit: Option<Duration>,
        deadline: Option<Waiting>,
        // The request's time, which this crate's stores judge expiry by (see `request_time`).
        now: SystemTime,
    }
}

impl<'a, T> Timed<'a, T> {
    /// `call`, made for a request whose time is `now`, bounded by `limit`.
    pub(crate) fn new(call: StoreFuture<'a, T>, limit: Option<Duration>, now: SystemTime) -> Self {
        Timed {
            call,
            limit,
            deadline: None,
            now,
        }
    }
}

impl<T> Future for Timed<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = {
            let _time = RequestTime::enter(*this.now);
            this.call.poll(cx)
        };
        if let Poll::Ready(result) = answered {
            return Poll::Ready(result);
        }
        let Some(limit) = *this.limit else {
            return Poll::Pending;
        };
        let deadline = this.deadline.get_or_insert_with(|| {
            // A limit too far off for the clock (`Duration::MAX`) is no limit.
            let Some(at) = Instant::now().checked_add(limit) else {
                return Waiting::Never;
            };
            match Deadline::start(at, cx.waker()) {
                Some(deadline) => Waiting::Watched(deadline),
                None => Waiting::Timer(Box::pin(tokio::task::unconstrained(tokio::time::sleep(limit)))),
            }
        });
        match deadline {
            Waiting::Never => return Poll::Pending,
            Waiting::Watched(deadline) => {
                // The waker first: a watcher that looks after this sees it, and one that looked
                // before saw a time past the deadline only if `passed` now says so.
                deadline.wake(cx.waker());
                if !deadline.passed() {
                    return Poll::Pending;
                }
            }
            // Outside tokio's cooperative budget, as `tokio::time::timeout` polls its timer: a
            // call that spends the task's budget on every poll must still time out.
            Waiting::Timer(timer) => ready!(timer.as_mut().poll(cx)),
        }
        Poll::Ready(Err(StoreError::unavailable(format!("no answer within {limit:?}"))))
    }
}

/// How a call that waits is bounded: by the process's table of deadlines, or, if no thread could
/// be started to watch it, by a tokio timer of its own; or not at all, for a limit past what the
/// clock can count.
enum Waiting {
    Never,
    Watched(Deadline),
    Timer(Pin<Box<Unconstrained<Sleep>>>),
}

std::thread_local! {
    static REQUEST_TIME: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// The time of the request a store call is being made for, when the layer is polling it; the
/// system clock otherwise (a store used directly, as the conformance suite does).
///
/// This crate's in-memory store judges expiry by it when it is called through this interface
/// (the owner index; a store of yours that wraps it): it then agrees with the layer's clock, a
/// test clock ([`ManualClock`](crate::clock::ManualClock)) included, as it does when the layer
/// calls it directly with the request's time. Not public: other stores read their own clock, or
/// the database's. Work a store hands to another task or thread reads the system clock, and a
/// `MemoryStore` polled inside another store's call (a user's tiered store) takes that call's
/// request time.
pub(crate) fn request_time() -> SystemTime {
    REQUEST_TIME.with(Cell::get).unwrap_or_else(SystemTime::now)
}

/// Sets [`request_time`] for as long as it lives (a store call's poll), and puts back what was
/// there before, should calls nest.
struct RequestTime(Option<SystemTime>);

impl RequestTime {
    fn enter(now: SystemTime) -> Self {
        RequestTime(REQUEST_TIME.with(|time| time.replace(Some(now))))
    }
}

impl Drop for RequestTime {
    fn drop(&mut self) {
        REQUEST_TIME.with(|time| time.set(self.0));
    }
}
