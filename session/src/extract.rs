//! `Session<V, F>` as an axum extractor, and what it answers when it cannot be extracted.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::request::Parts;
use http::StatusCode;

use crate::cookie::vary_on_cookie;
use crate::key::{FlashSchema, SessionSchema};
use crate::request::{LoadError, RequestSession};
use crate::session::Session;
use crate::store::StoreError;

/// Why a [`Session`] could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The handler's route is not behind a [`SessionLayer`](crate::SessionLayer). Answered with 500.
    #[error(
        "a handler takes a `Session` but no `SessionLayer` is installed: add \
         `.layer(SessionLayer::new(store))` to the Router, after the routes that use sessions"
    )]
    MissingLayer,
    /// The store did not answer. Answered with 503: the request can be retried.
    #[error("the session store is unavailable: {0}")]
    StoreUnavailable(#[source] StoreError),
    /// Another request of the session held its lock for all of `with_lock_wait`: answered
    /// `409 Conflict` with `Retry-After`.
    #[error("another request of this session held its lock for all of {waited:?}")]
    LockBusy {
        /// How long this request waited.
        waited: Duration,
    },
    /// A `LockedSession` was extracted after a plain `Session` of the same request (a
    /// middleware's, say) had already changed the session: locking and reading it again would
    /// undo those changes. Answered 500.
    #[error(
        "a `LockedSession` was extracted after a plain `Session` had changed the session: take \
         the `LockedSession` before changing the session (a middleware that writes to the session \
         must take `LockedSession` itself)"
    )]
    LockedTooLate,
    /// The store cannot list or end an owner's sessions (it keeps no owner index, or sessions are
    /// client-side): a programming error, answered 500.
    #[error("the sessions of an owner cannot be listed: {0}")]
    Unsupported(#[source] StoreError),
}

impl From<StoreError> for SessionRejection {
    /// [`StoreError::Unsupported`] is [`SessionRejection::Unsupported`]; every other failure is
    /// [`SessionRejection::StoreUnavailable`].
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unsupported(_) => SessionRejection::Unsupported(error),
            error => SessionRejection::StoreUnavailable(error),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match &self {
            SessionRejection::MissingLayer => {
                tracing::error!("{self}");
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            SessionRejection::LockBusy { waited } => {
                tracing::warn!(?waited, "the session's lock stayed busy; answering 409");
                // Another try once a holder has had time to finish: at least a second.
                let retry_after = waited.as_secs().max(1).to_string();
                let mut response = (
                    StatusCode::CONFLICT,
                    [(RETRY_AFTER, retry_after)],
                    "Another request of this session is in progress; please try again.",
                )
                    .into_response();
                // Which session the cookie names decides this answer, as it decides a loaded
                // session's: no shared cache may give it to another client.
                vary_on_cookie(response.headers_mut());
                response
            }
            SessionRejection::LockedTooLate | SessionRejection::Unsupported(_) => {
                tracing::error!("{self}");
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            SessionRejection::StoreUnavailable(error) => {
                tracing::error!(%error, "session store unavailable; answering 503");
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Session store unavailable; please try again shortly.",
                )
                    .into_response();
                // A request without a session cookie reads no store, and gets its page.
                vary_on_cookie(response.headers_mut());
                response
            }
        }
    }
}

/// The request's session, loaded: the first extractor of a request loads it (see
/// [`RequestSession::load`]), later ones share it.
///
/// One path for every store; only how its future is driven differs. A storage whose loads are
/// done the first time they are polled (`Config::answers_at_once`: the memory store, client-side
/// sessions) is loaded here, polled once on the stack, and comes back loaded (or failed): the
/// extractor's future keeps no load, and the handler's future, which axum boxes and moves, stays
/// small. Any other store's load (and every locking load, which may wait for the lock) comes back
/// boxed, to be awaited.
fn loaded_session(parts: &Parts, locking: bool) -> Loading<'_> {
    let Some(session) = parts.extensions.get::<Arc<RequestSession>>() else {
        return Loading::Failed(SessionRejection::MissingLayer);
    };
    if !locking && session.config().answers_at_once() {
        let load = std::pin::pin!(session.load(&parts.headers, false));
        if let Poll::Ready(loaded) = load.poll(&mut Context::from_waker(Waker::noop())) {
            return match loaded {
                Ok(()) => Loading::Loaded(Arc::clone(session)),
                Err(error) => Loading::Failed(rejection(error)),
            };
        }
        // Not reached for such a storage. A load only reads, so dropping it and starting
        // again, awaited, is safe.
        tracing::debug!("a session load expected to finish at once had to wait; awaiting it");
    }
    Loading::Waiting(Box::pin(load_and_share(session, &parts.headers, locking)))
}

/// Loads `session` from the request's `headers`; a handle on it once loaded.
async fn load_and_share(
    session: &Arc<RequestSession>,
    headers: &http::HeaderMap,
    locking: bool,
) -> Result<Arc<RequestSession>, SessionRejection> {
    session.load(headers, locking).await.map_err(rejection)?;
    Ok(Arc::clone(session))
}

/// What an extractor answers when the load failed.
fn rejection(error: LoadError) -> SessionRejection {
    match error {
        LoadError::Store(error) => SessionRejection::StoreUnavailable(error),
        LoadError::Busy(waited) => SessionRejection::LockBusy { waited },
        LoadError::LockedTooLate => SessionRejection::LockedTooLate,
    }
}

/// A session being loaded: loaded already, failed already, or a load to await.
enum Loading<'a> {
    Loaded(Arc<RequestSession>),
    Failed(SessionRejection),
    Waiting(LoadFuture<'a>),
}

/// A load that must be awaited, boxed.
type LoadFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<RequestSession>, SessionRejection>> + Send + 'a>>;

impl Loading<'_> {
    /// The loaded session, once the load is done.
    async fn done(self) -> Result<Arc<RequestSession>, SessionRejection> {
        match self {
            Loading::Loaded(session) => Ok(session),
            Loading::Failed(rejection) => Err(rejection),
            Loading::Waiting(load) => load.await,
        }
    }
}

impl<S, V, F> FromRequestParts<S> for Session<V, F>
where
    S: Send + Sync,
    V: SessionSchema,
    F: FlashSchema,
{
    type Rejection = SessionRejection;

    fn from_request_parts(parts: &mut Parts, _state: &S) -> impl Future<Output = Result<Self, Self::Rejection>> + Send {
        Extracting::<Session<V, F>>::new(parts)
    }
}

/// The extractors' future: the load, started when first polled, made a `Session` when done.
///
/// Written out rather than an `async` block or a combinator, which keep state of their own and
/// move it when the load is done; and the load starts in `poll` rather than when the future is
/// made, so that a load that is done at once is matched where it is returned, not stored in the
/// future and read back (in wider moves than it was written in, which made the processor wait:
/// BENCHMARKS.md, twenty-first session).
struct Extracting<'a, T> {
    parts: &'a Parts,
    /// A load that had to wait.
    waiting: Option<LoadFuture<'a>>,
    schema: PhantomData<fn() -> T>,
}

impl<'a, T> Extracting<'a, T> {
    fn new(parts: &'a Parts) -> Self {
        Extracting {
            parts,
            waiting: None,
            schema: PhantomData,
        }
    }

    /// The request's session, once loaded.
    fn poll_loaded(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<RequestSession>, SessionRejection>> {
        let load = match &mut self.waiting {
            Some(load) => load,
            None => match loaded_session(self.parts, false) {
                Loading::Loaded(session) => return Poll::Ready(Ok(session)),
                Loading::Failed(rejection) => return Poll::Ready(Err(rejection)),
                Loading::Waiting(load) => self.waiting.insert(load),
            },
        };
        load.as_mut().poll(cx)
    }
}

impl<V: SessionSchema, F: FlashSchema> Future for Extracting<'_, Session<V, F>> {
    type Output = Result<Session<V, F>, SessionRejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_loaded(cx).map_ok(Session::from_loaded)
    }
}

impl<V: SessionSchema, F: FlashSchema> Future for Extracting<'_, Option<Session<V, F>>> {
    type Output = Result<Option<Session<V, F>>, SessionRejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_loaded(cx).map_ok(|request| {
            let stored = request.state().loaded_id.is_some();
            stored.then(|| Session::from_loaded(request))
        })
    }
}

/// `Option<Session<V, F>>` is `None` when the request has no stored session (a new visitor, or
/// a cookie the store does not know): for handlers that only look. The store failing is still a
/// 503, and a missing layer still a 500.
impl<S, V, F> OptionalFromRequestParts<S> for Session<V, F>
where
    S: Send + Sync,
    V: SessionSchema,
    F: FlashSchema,
{
    type Rejection = SessionRejection;

    fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> impl Future<Output = Result<Option<Self>, Self::Rejection>> + Send {
        Extracting::<Option<Session<V, F>>>::new(parts)
    }
}

/// A [`Session`] whose requests take turns: extracting it takes the session's lock before the
/// session is loaded, and the layer releases it once this request's save is done (or the
/// request ends any other way). Use it for a read-modify-write of one key that must not lose
/// updates — a counter, a cart's quantity, a one-time token; writes to *different* keys
/// already merge without it.
///
/// ```
/// use typed_sessions::{LockedSession, SessionSchema};
///
/// #[derive(SessionSchema)]
/// struct Values {
///     cart_count: u32,
/// }
///
/// async fn add_to_cart(mut session: LockedSession<Values>) -> String {
///     let count = session.update(Values::CART_COUNT, |n| {
///         *n += 1;
///         *n
///     });
///     format!("{count} items")
/// }
/// # let _: axum::Router = axum::Router::new().route("/add", axum::routing::post(add_to_cart));
/// ```
///
/// Handlers that take a plain `Session` never take the lock and never wait for it. A request
/// that cannot get the lock within [`with_lock_wait`](crate::SessionLayer::with_lock_wait)
/// (default 5 s) is answered `409 Conflict` with `Retry-After`
/// ([`SessionRejection::LockBusy`]). A holder keeps the lock at most
/// [`with_lock_lease`](crate::SessionLayer::with_lock_lease) (default 10 s) before its save
/// begins: past it, the next request may take the lock over, and then the late holder's save
/// fails (409) rather than overwrite what the next one wrote (if no one took over, the save
/// goes ahead). A save that begins gets a fresh lease for its writes. A new visitor, with no
/// session yet, needs no lock.
///
/// The lock is released when the save is done, when there is nothing to save, or when the
/// request is dropped before its save began (a handler that panicked, a client that went away —
/// once the last clone of the session is dropped). A save that fails or is cut short leaves the
/// lock to its lease, since its write may still land.
///
/// Where the lock lives depends on the store. `RedisStore` and `PostgresStore`
/// keep it themselves, shared by every app instance that uses them (a Redis key
/// next to the session's, a lease on its PostgreSQL row; see "Shared session locks" on
/// [`SessionStore`](crate::store::SessionStore)); on Redis a locked write costs the same two
/// round trips as a plain one. With Redis, a holder past its lease always loses the lock (its
/// key expires), even if no one took it over. Other stores (`MemoryStore`, `SqliteStore`,
/// `FileStore`, yours unless it sets `SHARED_LOCKS`) are locked in the layer, in the app's
/// process: that serializes the requests one `SessionLayer` serves, but two processes on one
/// SQLite file or directory do not share it. With client-side sessions there is nothing to lock
/// (each response carries its own copy of the session): a `LockedSession` there is a plain
/// `Session`.
///
/// Use it only where a read-modify-write of one key must not lose an update; everything else
/// merges key by key without a lock, and a locked handler makes the session's other locked
/// requests wait.
///
/// A `LockedSession` after a plain `Session` of the same request (a middleware's) takes the lock
/// then and reads the session again under it; if the request had already changed the session,
/// it is refused ([`SessionRejection::LockedTooLate`]).
pub struct LockedSession<V: SessionSchema, F: FlashSchema = ()> {
    session: Session<V, F>,
}

impl<V: SessionSchema, F: FlashSchema> Deref for LockedSession<V, F> {
    type Target = Session<V, F>;

    fn deref(&self) -> &Session<V, F> {
        &self.session
    }
}

impl<V: SessionSchema, F: FlashSchema> DerefMut for LockedSession<V, F> {
    fn deref_mut(&mut self) -> &mut Session<V, F> {
        &mut self.session
    }
}

impl<V: SessionSchema, F: FlashSchema> std::fmt::Debug for LockedSession<V, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LockedSession").field(&self.session).finish()
    }
}

impl<S, V, F> FromRequestParts<S> for LockedSession<V, F>
where
    S: Send + Sync,
    V: SessionSchema,
    F: FlashSchema,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = loaded_session(parts, true).done().await.map(Session::from_loaded)?;
        Ok(LockedSession { session })
    }
}
