//! `Session<V, F>` as an axum extractor, and what it answers when it cannot be extracted.

use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::key::SessionSchema;
use crate::request::RequestSession;
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

/// The request's session, loaded. One path for every store: a store that answers at once is
/// never waited for, so this future is ready when first polled.
async fn loaded_session(parts: &Parts) -> Result<Arc<RequestSession>, SessionRejection> {
    let session = parts
        .extensions
        .get::<Arc<RequestSession>>()
        .ok_or(SessionRejection::MissingLayer)?;
    session
        .load(&parts.headers)
        .await
        .map_err(SessionRejection::StoreUnavailable)?;
    Ok(Arc::clone(session))
}

impl<S, V, F> FromRequestParts<S> for Session<V, F>
where
    S: Send + Sync,
    V: SessionSchema,
    F: SessionSchema,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        loaded_session(parts).await.map(Session::from_loaded)
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

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        let request = loaded_session(parts).await?;
        let stored = request.state().loaded_id.is_some();
        Ok(stored.then(|| Session::from_loaded(request)))
    }
}
