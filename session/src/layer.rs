//! The tower layer that gives handlers the request's session and saves it after the handler.
//!
//! Why this file is long: `SessionLayer`'s builders, one documented method per setting, are the
//! largest part; the service, its response future and the checks made when the layer is applied
//! follow.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use cookie::SameSite;
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Clock;
use crate::config::Config;
#[cfg(feature = "client-side")]
use crate::config::Storage;
use crate::cookie::{vary_on_cookie, SigningKey};
use crate::expiry::Expiry;
use crate::request::RequestSession;
use crate::save::{save, Plan, SaveError};
use crate::store::{SessionStore, StoreError};

/// Adds sessions to every request of the service it wraps.
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use typed_sessions::{Expiry, MemoryStore, SessionLayer, SigningKey};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(
///         SessionLayer::new(MemoryStore::new())
///             .with_signing_keys([SigningKey::generate()])
///             .with_expiry(Expiry::Idle(Duration::from_secs(30 * 60)))
///             .with_max_lifetime(Duration::from_secs(12 * 3600)),
///     );
/// ```
///
/// The layer is untyped: any number of [`Session<V, F>`](crate::Session) schemas can read the
/// one session it manages. The store is read only when a handler extracts a session, at most
/// once per request, and written after the handler, before the response leaves — only what the
/// request changed.
#[derive(Clone)]
pub struct SessionLayer {
    config: Arc<Config>,
    warned_unsigned: Arc<AtomicBool>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.config.cookie)
            .field("signing_keys", &self.config.signing_keys.len())
            .field("expiry", &self.config.expiry.expiry)
            .field("max_lifetime", &self.config.expiry.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer keeping sessions in `store` (a store by value, or an `Arc` of one).
    ///
    /// Defaults: cookie `id`, `HttpOnly`, `SameSite=Lax`, `Secure`, `Path=/`; unsigned ids (a
    /// warning is logged: add [`with_signing_keys`](Self::with_signing_keys)); two weeks of idle
    /// expiry; no lifetime cap; store calls time out after 5 seconds.
    pub fn new(store: impl SessionStore) -> Self {
        SessionLayer::with_config(Config::new(store))
    }

    /// A layer keeping each session in its cookie, encrypted: no store, nothing to run or clean
    /// up (cargo feature `client-side`). The first key encrypts; all of them decrypt, and a
    /// cookie sealed by an older key is re-encrypted with the first on its next response.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{routing::get, Router};
    /// use typed_sessions::{EncryptionKey, Expiry, SessionLayer};
    ///
    /// # let (secret, old_secret) = ([1u8; 32], [2u8; 32]);
    /// let layer = SessionLayer::client_side([
    ///     EncryptionKey::from_bytes(&secret)?,
    ///     EncryptionKey::from_bytes(&old_secret)?,
    /// ])
    /// .with_expiry(Expiry::Idle(Duration::from_secs(3600)))
    /// .with_max_lifetime(Duration::from_secs(12 * 3600));
    /// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(layer);
    /// # Ok::<(), typed_sessions::KeyTooShort>(())
    /// ```
    ///
    /// The same [`Session`](crate::Session) handle works, with two differences from a store,
    /// both because the browser holds the only copy of the session:
    ///
    /// - **Concurrent requests**: each response carries the whole session, so of two requests
    ///   that change it at the same time, the one answered last wins (a store merges them key by
    ///   key).
    /// - **Ending a session**: [`destroy`](crate::Session::destroy) and
    ///   [`regenerate_id`](crate::Session::regenerate_id) replace the browser's cookie, but a
    ///   copy of the old cookie stays valid until its own expiry. Keep lifetimes short
    ///   ([`with_expiry`](Self::with_expiry), [`with_max_lifetime`](Self::with_max_lifetime)),
    ///   and keep in a store what must end at once.
    ///
    /// A session whose `Set-Cookie` would pass 4,096 bytes
    /// ([`with_max_cookie_size`](Self::with_max_cookie_size)) is answered with a 500 and an
    /// error log naming the size, rather than a cookie the browser would drop. Cookies are not
    /// compressed: a compressed length would tell an observer about the content.
    ///
    /// When a browser sends several cookies of the layer's name (a stale one at a longer path,
    /// or one set by a sibling subdomain), the first that opens and is live is the session: a
    /// copy kept from before a `destroy` can come back that way. Name the cookie `__Host-…`
    /// ([`with_cookie_name`](Self::with_cookie_name)) so that no other path or subdomain can set
    /// one.
    ///
    /// # Panics
    ///
    /// When the layer is applied, if `keys` is empty, if signing keys were added
    /// ([`with_signing_keys`](Self::with_signing_keys) is for server-side sessions), or if the
    /// cookie size limit is below 256 bytes.
    #[cfg(feature = "client-side")]
    pub fn client_side(keys: impl IntoIterator<Item = crate::cookie::EncryptionKey>) -> Self {
        SessionLayer::with_config(Config::with_storage(Storage::Cookie(keys.into_iter().collect())))
    }

    fn with_config(config: Config) -> Self {
        SessionLayer {
            config: Arc::new(config),
            warned_unsigned: Arc::new(AtomicBool::new(false)),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The cookie's name (default `id`). Names starting with `__Host-` require `Secure`,
    /// `Path=/` and no `Domain`; `__Secure-` requires `Secure` — checked when the layer is applied.
    pub fn with_cookie_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config_mut().cookie.name = name.into();
        self
    }

    /// Whether the cookie is `Secure` (sent over HTTPS only). Default `true`; turn it off only
    /// for local development over plain HTTP.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.config_mut().cookie.secure = secure;
        self
    }

    /// Whether the cookie is `HttpOnly` (hidden from page scripts). Default `true`.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.config_mut().cookie.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` attribute. Default `Lax`. `SameSite::None` needs
    /// [`with_secure(true)`](Self::with_secure) (browsers drop such cookies otherwise): checked
    /// when the layer is applied.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.config_mut().cookie.same_site = same_site;
        self
    }

    /// The cookie's `Domain` attribute. Default: none (the cookie goes to this host only).
    pub fn with_domain(mut self, domain: impl Into<Cow<'static, str>>) -> Self {
        self.config_mut().cookie.domain = Some(domain.into());
        self
    }

    /// The cookie's `Path` attribute. Default `/`.
    pub fn with_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.config_mut().cookie.path = path.into();
        self
    }

    /// Keys that sign the cookie (HMAC-SHA256): the first signs, all verify — rotate by putting
    /// a new key first and keeping the old one until its cookies have expired.
    pub fn with_signing_keys(mut self, keys: impl IntoIterator<Item = SigningKey>) -> Self {
        self.config_mut().signing_keys = keys.into_iter().collect();
        self
    }

    /// How sessions expire (default: [`Expiry::Idle`] of two weeks). Sessions can override it
    /// with [`Session::set_expiry`](crate::Session::set_expiry).
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.config_mut().expiry.set_expiry(expiry);
        self
    }

    /// An absolute cap on a session's life, counted from its creation; activity never extends it.
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.config_mut().expiry.max_lifetime = Some(max_lifetime);
        self
    }

    /// Which fraction of the idle window must pass before a request that changed nothing
    /// rewrites the session's expiry (default `0.5`): `0.0` touches on every request, `1.0` never.
    pub fn with_touch_after(mut self, fraction: f64) -> Self {
        self.config_mut().expiry.set_touch_after(fraction);
        self
    }

    /// How long one store call may take before the request is answered with 503 (default 5 s);
    /// `None` waits as long as the store does (a `RedisStore` from `RedisStore::connect` then
    /// waits as long as a Redis that stops answering does). Timed by the system's monotonic
    /// clock, not tokio's: a paused test clock (`tokio::time::pause`) does not bring it
    /// forward.
    pub fn with_store_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config_mut().store_timeout = timeout.into();
        self
    }

    /// How long a [`LockedSession`](crate::LockedSession) waits for the session's lock before
    /// the request is answered `409 Conflict` with `Retry-After` (default 5 s).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.config_mut().lock_wait = wait;
        self
    }

    /// How long a [`LockedSession`](crate::LockedSession) may hold the session's lock (default
    /// 10 s): a holder that crashed or hangs frees it then, and its save, should it still come,
    /// fails with 409 rather than overwrite the next holder's changes.
    pub fn with_lock_lease(mut self, lease: Duration) -> Self {
        self.config_mut().lock_lease = lease;
        self
    }

    /// The largest `Set-Cookie` header a client-side session may send, in bytes (default 4,096,
    /// what every browser keeps). A session that would need more is answered with a 500 and an
    /// error log, and the browser keeps its previous cookie. Cookie values longer than this are
    /// not even decrypted.
    #[cfg(feature = "client-side")]
    pub fn with_max_cookie_size(mut self, bytes: usize) -> Self {
        self.config_mut().cookie.max_size = bytes;
        self
    }

    /// The most a session may hold, in bytes of stored values and flash (each name and JSON
    /// value, plus 8 bytes per entry; default 64 KiB). A request whose changes would grow the
    /// session past it is answered `413 Payload Too Large`, with a warning log, and nothing of
    /// it is written: a handler that stores what clients send cannot be made to grow a session,
    /// and the store, without bound. A session already over the limit (stored before it was
    /// lowered) can still be read, renewed and shrunk.
    pub fn with_max_session_size(mut self, bytes: usize) -> Self {
        self.config_mut().max_session_size = bytes;
        self
    }

    /// The sessions of an owner, listed and ended from code that has no request (see
    /// [`OwnerIndex`](crate::OwnerIndex)), by this layer's store, expiry rules and clock.
    /// `V` is a schema with an owner key (`#[session(owner)]`). Take it from the finished layer:
    /// settings given after it do not reach it.
    pub fn owner_index<V>(&self) -> crate::OwnerIndex<V>
    where
        V: crate::OwnedSchema,
        V::Owner: serde::Serialize,
    {
        crate::OwnerIndex::new(Arc::clone(&self.config))
    }

    /// Where the layer reads the time from (default: [`CoarseClock`](crate::clock::CoarseClock),
    /// the system clock as of its last tick). For tests: [`ManualClock`](crate::clock::ManualClock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.config_mut().clock = Arc::new(clock);
        self
    }

    fn check(&self) {
        self.config.cookie.check();
        assert!(
            !self.config.lock_lease.is_zero(),
            "SessionLayer::with_lock_lease: a lease of zero ends before any write; give the lock at least as long as a request takes"
        );
        #[cfg(feature = "client-side")]
        if let Storage::Cookie(keys) = &self.config.storage {
            assert!(
                !keys.is_empty(),
                "SessionLayer::client_side needs at least one EncryptionKey"
            );
            assert!(
                self.config.cookie.max_size >= MIN_COOKIE_SIZE,
                "SessionLayer::with_max_cookie_size: {} bytes cannot hold a sealed session; \
                 allow at least {MIN_COOKIE_SIZE}",
                self.config.cookie.max_size
            );
            assert!(
                self.config.signing_keys.is_empty(),
                "SessionLayer::client_side encrypts its cookies: remove `with_signing_keys`, \
                 which signs the session ids of server-side sessions"
            );
            return;
        }
        if self.config.signing_keys.is_empty() && !self.warned_unsigned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "SessionLayer has no signing keys: session cookies carry bare ids. \
                 Add `.with_signing_keys([SigningKey::from_bytes(secret)?])` in production"
            );
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    /// # Panics
    ///
    /// If the cookie settings are ones browsers reject: an invalid cookie name, a `__Host-` /
    /// `__Secure-` prefix that does not match the cookie's settings, `SameSite=None` without
    /// `Secure`; a lock lease of zero; for client-side sessions, also no encryption key, signing
    /// keys, or a cookie size limit below 256 bytes. A configuration mistake, caught when the app
    /// is built.
    fn layer(&self, inner: S) -> Self::Service {
        self.check();
        SessionService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`SessionLayer`] wraps around an app.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let session = RequestSession::start(&self.config);
        request.extensions_mut().insert(Arc::clone(&session));
        ResponseFuture {
            state: ResponseState::Handler {
                future: self.inner.call(request),
                session: Some(session),
            },
        }
    }
}

/// The smallest cookie size limit a client-side layer accepts: an empty session sealed, with
/// the cookie's attributes, takes about 200 bytes.
#[cfg(feature = "client-side")]
const MIN_COOKIE_SIZE: usize = 256;

/// A save that had to be awaited: the `Set-Cookie` to send, or why the save failed.
type SaveFuture = Pin<Box<dyn Future<Output = Result<Option<HeaderValue>, SaveError>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`]: the handler's, then the save.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: ResponseState<F, B>,
    }
}

pin_project! {
    #[project = ResponseStateProj]
    enum ResponseState<F, B> {
        Handler {
            #[pin]
            future: F,
            // Taken when the handler is done.
            session: Option<Arc<RequestSession>>,
        },
        Saving {
            #[pin]
            save: SaveFuture,
            // Taken when the save is done.
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                ResponseStateProj::Handler { future, session } => {
                    let mut response = ready!(future.poll(cx))?;
                    let session = session
                        .take()
                        .expect("a response future is not polled after it is done");
                    // A request that never extracted the session has nothing to save, and its
                    // response does not depend on the session.
                    if !session.is_loaded() {
                        RequestSession::finish(session);
                        return Poll::Ready(Ok(response));
                    }
                    let plan = session.plan_save();
                    if !plan.does_something() {
                        vary_on_cookie(response.headers_mut());
                        RequestSession::finish(session);
                        return Poll::Ready(Ok(response));
                    }
                    if session.config().answers_at_once() {
                        // This storage's saves are done when first polled: polled here, on the
                        // stack, neither the save's future nor the plan is kept or moved.
                        let saved = match std::pin::pin!(save(session.config(), &plan)).poll(cx) {
                            Poll::Ready(saved) => saved,
                            Poll::Pending => Err(save_had_to_wait()),
                        };
                        release_lock(&plan, &saved);
                        finish_response(saved, &mut response);
                        RequestSession::finish(session);
                        return Poll::Ready(Ok(response));
                    }
                    ResponseState::Saving {
                        save: Box::pin(save_and_release(session, plan)),
                        response: Some(response),
                    }
                }
                ResponseStateProj::Saving { save, response } => {
                    let saved = ready!(save.poll(cx));
                    let mut response = response
                        .take()
                        .expect("a response future is not polled after it is done");
                    finish_response(saved, &mut response);
                    return Poll::Ready(Ok(response));
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// A save on a storage whose saves never wait (`Config::answers_at_once`) that had to wait:
/// not reached, since those are this crate's memory store and client-side sessions. Answered as a
/// store failure rather than a panic; the save's future, pinned where it was polled, is dropped.
#[cold]
#[inline(never)]
fn save_had_to_wait() -> SaveError {
    SaveError::Store(StoreError::backend(
        "a save expected to finish at once had to wait; it was abandoned",
    ))
}

/// Carries out `plan`, made by `session`, when the store must be awaited.
async fn save_and_release(session: Arc<RequestSession>, plan: Plan) -> Result<Option<HeaderValue>, SaveError> {
    let saved = save(session.config(), &plan).await;
    release_lock(&plan, &saved);
    RequestSession::finish(session);
    saved
}

/// Releases the session's lock that `plan`'s writes were fenced by, once its save is done. A store
/// that failed may still apply the write it was sent: the lease, not this request, then frees the
/// lock, so that the next holder does not read before the write lands.
fn release_lock(plan: &Plan, saved: &Result<Option<HeaderValue>, SaveError>) {
    if !matches!(saved, Err(SaveError::Store(_))) {
        if let Some(held) = plan.fence() {
            held.release();
        }
    }
}

/// Puts the save's cookie and `Vary: Cookie` on the response — or answers 503 (500 for a
/// client-side session that cannot be sent) if the save
/// failed. The response is changed where it is rather than moved through: it is larger than
/// all the rest.
fn finish_response<B: Default>(saved: Result<Option<HeaderValue>, SaveError>, response: &mut Response<B>) {
    match saved {
        Ok(set_cookie) => {
            if let Some(set_cookie) = set_cookie {
                let headers = response.headers_mut();
                headers.append(SET_COOKIE, set_cookie);
                // A shared cache that stored this response would hand the cookie to others.
                headers
                    .entry(CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static("private"));
            }
        }
        Err(error) => *response = not_saved(&error),
    }
    vary_on_cookie(response.headers_mut());
}

#[cold]
#[inline(never)]
fn not_saved<B: Default>(error: &SaveError) -> Response<B> {
    let status = error.status();
    if matches!(error, SaveError::SessionTooLarge { .. }) {
        // Caused by what a client sent: worth a look, not an alert, and a client must not be
        // able to flood the error log.
        tracing::warn!(%error, "the session could not be saved; answering {status} instead of the handler's response");
    } else {
        tracing::error!(%error, "the session could not be saved; answering {status} instead of the handler's response");
    }
    let mut failed = Response::new(B::default());
    *failed.status_mut() = status;
    failed
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    /// Only this crate's memory store (and client-side sessions) are polled once where their
    /// loads and saves are made; a store of another type, even one that never waits, is awaited.
    #[test]
    fn only_the_memory_store_is_polled_in_place() {
        for memory in [
            Config::new(MemoryStore::new()),
            Config::new(Arc::new(MemoryStore::new())),
        ] {
            assert!(memory.answers_at_once());
            // Called directly: no future, no allocation, no timer per call.
            assert!(matches!(memory.storage, crate::config::Storage::Memory(_)));
        }
        // The app's own `Arc` of the store is the one the layer calls.
        let shared = Arc::new(MemoryStore::new());
        let config = Config::new(Arc::clone(&shared));
        assert!(matches!(&config.storage, crate::config::Storage::Memory(held) if Arc::ptr_eq(held, &shared)));
        // Another type (the `Arc` impl forwarding to another `Arc`), though it never waits.
        let other = Config::new(Arc::new(Arc::new(MemoryStore::new())));
        assert!(!other.answers_at_once());
        assert!(matches!(other.storage, crate::config::Storage::Store(_)));
        #[cfg(feature = "client-side")]
        assert!(SessionLayer::client_side([crate::EncryptionKey::generate()])
            .config
            .answers_at_once());
    }
}
