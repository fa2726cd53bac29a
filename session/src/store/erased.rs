//! The store as the layer holds it: any [`SessionStore`] behind one object-safe interface.
//!
//! `SessionStore`'s methods are `async fn`s, whose futures have a type of their own per store, so
//! the trait cannot be a trait object. The layer keeps its one request path free of the store's
//! type by calling the store through [`ErasedStore`], whose futures are [`StoreFuture`]s: the
//! store's own future, stored inline when it is small (a store in this process's memory, whose
//! calls finish without waiting, so a request pays no allocation for them) and boxed otherwise
//! (a network store's future, boxed once per call as an `async_trait` would).

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use stackfuture::StackFuture;

use super::{Applied, Created, SessionStore, StoreError, StoreKey};
use crate::record::{Changes, Record};

/// Bytes a store call's future may take before it is boxed: room for an in-memory store's
/// futures and a wrapper or two around them (tests' counting and yielding stores).
const INLINE_FUTURE: usize = 128;

/// A store call in progress.
pub(crate) type StoreFuture<'a, T> = StackFuture<'a, Result<T, StoreError>, INLINE_FUTURE>;

/// [`SessionStore`] as a trait object; implemented for every store.
pub(crate) trait ErasedStore: Send + Sync + 'static {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Record>>;
    fn create<'a>(&'a self, key: &'a StoreKey, record: &'a Record) -> StoreFuture<'a, Created>;
    fn apply<'a>(&'a self, key: &'a StoreKey, changes: &'a Changes) -> StoreFuture<'a, Applied>;
    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()>;
}

impl<S: SessionStore> ErasedStore for S {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Record>> {
        StackFuture::from_or_box(SessionStore::load(self, key))
    }

    fn create<'a>(&'a self, key: &'a StoreKey, record: &'a Record) -> StoreFuture<'a, Created> {
        StackFuture::from_or_box(SessionStore::create(self, key, record))
    }

    fn apply<'a>(&'a self, key: &'a StoreKey, changes: &'a Changes) -> StoreFuture<'a, Applied> {
        StackFuture::from_or_box(SessionStore::apply(self, key, changes))
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
        StackFuture::from_or_box(SessionStore::delete(self, key))
    }
}

/// Awaits a store call for at most `limit` (`None`: as long as it takes); a call that outlasts
/// it is [`StoreError::Unavailable`].
///
/// The call is polled once before any timer is armed: a store that answers at once (in memory)
/// costs no timer, and one that must be waited for arms a single one.
pub(crate) async fn with_timeout<T>(limit: Option<Duration>, call: StoreFuture<'_, T>) -> Result<T, StoreError> {
    let mut call = std::pin::pin!(call);
    if let Poll::Ready(result) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        return result;
    }
    let Some(limit) = limit else {
        return call.await;
    };
    // Boxed: a timer is the largest part of a store call's state, and only waited-for calls
    // need one (their stores allocate more than this per call anyway).
    let mut timer = Box::pin(tokio::time::sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = call.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        timer
            .as_mut()
            .poll(cx)
            .map(|()| Err(StoreError::unavailable(format!("no answer within {limit:?}"))))
    })
    .await
}
