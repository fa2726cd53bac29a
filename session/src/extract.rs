//! `Session<V, F>` as an axum extractor, and what it answers when it cannot be extracted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::key::SessionSchema;
use crate::layer::RequestSession;
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
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match &self {
            SessionRejection::MissingLayer => {
                tracing::error!("{self}");
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            SessionRejection::StoreUnavailable(error) => {
                tracing::error!(%error, "session store unavailable; answering 503");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Session store unavailable; please try again shortly.",
                )
                    .into_response()
            }
        }
    }
}

/// The request's session, loaded: at once when the store answers at once, else through a
/// boxed future. Extractors return it instead of being `async fn`s, whose state machines every
/// request would run (and move around with the handler's future) even when nothing is awaited.
fn request_session<'a, T: Send + 'a>(
    parts: &'a Parts,
    done: impl FnOnce(Arc<RequestSession>) -> T + Send + 'a,
) -> Extraction<'a, Result<T, SessionRejection>> {
    let Some(session) = parts.extensions.get::<Arc<RequestSession>>() else {
        return Extraction::Done(Some(Err(SessionRejection::MissingLayer)));
    };
    if session.load_at_once(&parts.headers) {
        return Extraction::Done(Some(Ok(done(Arc::clone(session)))));
    }
    Extraction::Waiting(Box::pin(async move {
        session
            .load(&parts.headers)
            .await
            .map_err(SessionRejection::StoreUnavailable)?;
        Ok(done(Arc::clone(session)))
    }))
}

/// The future a session extractor returns: ready, or a store to await.
enum Extraction<'a, T> {
    /// Taken when polled.
    Done(Option<T>),
    Waiting(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

// The value is moved out, never pinned; the boxed future pins itself.
impl<T> Unpin for Extraction<'_, T> {}

impl<T> Future for Extraction<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Extraction::Done(done) => {
                Poll::Ready(done.take().expect("an extraction is polled until it is ready, once"))
            }
            Extraction::Waiting(waiting) => waiting.as_mut().poll(cx),
        }
    }
}

impl<S, V, F> FromRequestParts<S> for Session<V, F>
where
    S: Send + Sync,
    V: SessionSchema,
    F: SessionSchema,
{
    type Rejection = SessionRejection;

    fn from_request_parts(parts: &mut Parts, _state: &S) -> impl Future<Output = Result<Self, Self::Rejection>> + Send {
        request_session(parts, Session::from_loaded)
    }
}

/// `Option<Session<V, F>>` is `None` when the request has no stored session (a new visitor, or
/// a cookie the store does not know): for handlers that only look. The store failing is still a
/// 503, and a missing layer still a 500.
impl<S, V, F> OptionalFromRequestParts<S> for Session<V, F>
where
    S: Send + Sync,
    V: SessionSchema,
    F: SessionSchema,
{
    type Rejection = SessionRejection;

    fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> impl Future<Output = Result<Option<Self>, Self::Rejection>> + Send {
        request_session(parts, |request| {
            let stored = request.state().loaded_id.is_some();
            stored.then(|| Session::from_loaded(request))
        })
    }
}
