//! The tower layer that gives handlers the request's session and saves it after the handler.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use cookie::SameSite;
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use parking_lot::lock_api::{MappedMutexGuard, MutexGuard};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Clock;
use crate::config::{Config, Expiry};
use crate::cookie::{self as session_cookie, CookieId, SigningKey};
use crate::id::{SessionId, StoreKey};
use crate::record::{Changes, Record};
use crate::session::{CookiePlan, InPlace, Plan, State, Write};
use crate::store::{Applied, Created, SessionStore, StoreError};

/// How many random ids `create` tries before giving up. With 144-bit ids a single collision is
/// already a sign of a broken store or random source.
const CREATE_ATTEMPTS: usize = 4;

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
            .field("expiry", &self.config.expiry)
            .field("max_lifetime", &self.config.max_lifetime)
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
        SessionLayer {
            config: Arc::new(Config::new(Arc::new(store))),
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

    /// The cookie's `SameSite` attribute. Default `Lax`.
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
        self.config_mut().set_expiry(expiry);
        self
    }

    /// An absolute cap on a session's life, counted from its creation; activity never extends it.
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.config_mut().max_lifetime = Some(max_lifetime);
        self
    }

    /// Which fraction of the idle window must pass before a request that changed nothing
    /// rewrites the session's expiry (default `0.5`): `0.0` touches on every request, `1.0` never.
    pub fn with_touch_after(mut self, fraction: f64) -> Self {
        let fraction = if fraction.is_nan() {
            0.5
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.config_mut().set_touch_after(fraction);
        self
    }

    /// How long one store call may take before the request is answered with 503 (default 5 s);
    /// `None` waits as long as the store does.
    pub fn with_store_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config_mut().store_timeout = timeout.into();
        self
    }

    /// Where the layer reads the time from (default: the system clock). For tests:
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.config_mut().clock = Arc::new(clock);
        self
    }

    fn check(&self) {
        let cookie = &self.config.cookie;
        if cookie.name.starts_with("__Host-") {
            assert!(
                cookie.secure && cookie.path == "/" && cookie.domain.is_none(),
                "SessionLayer: a `__Host-` cookie needs `with_secure(true)`, path `/` and no domain; \
                 remove the prefix or those settings"
            );
        }
        if cookie.name.starts_with("__Secure-") {
            assert!(
                cookie.secure,
                "SessionLayer: a `__Secure-` cookie needs `with_secure(true)`"
            );
        }
        assert!(
            !cookie.name.is_empty()
                && cookie
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)),
            "SessionLayer: {:?} is not a valid cookie name",
            cookie.name
        );
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
    /// If the cookie name is invalid or its `__Host-` / `__Secure-` prefix does not match the
    /// cookie's settings: a configuration mistake caught when the app is built.
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

/// The session of one request, before and after it is loaded. Lives in the request's extensions.
pub(crate) struct RequestSession {
    pub(crate) config: Arc<Config>,
    /// Set once `state` holds the session: most routes never take it, and their response
    /// asks this instead of taking the lock.
    loaded: AtomicBool,
    /// `None` until a handler extracts the session.
    state: StateLock,
}

/// The lock on a request's session state: a spin lock, whose unlock is a plain store where a
/// parking lock's is an atomic read-modify-write, and a request takes it four times or more.
/// It is never held across an `.await` nor for longer than a few map operations, and only the
/// clones of one request's `Session` can contend for it.
type StateLock = spin::lock_api::Mutex<Option<State>>;

/// The locked state of a loaded session.
pub(crate) type StateGuard<'a> = MappedMutexGuard<'a, spin::Mutex<()>, State>;

impl RequestSession {
    /// Whether a handler has loaded the session.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Saves the session if that needs no waiting (see [`apply_now`]), or hands back the plan
    /// that must be awaited; `None` if no handler loaded the session (nothing to save).
    ///
    /// One lock for all of it (every lock is an atomic read-modify-write, which costs a request
    /// more than its instruction count), and the plan, the largest value a request
    /// builds, is applied where it was made instead of being moved from call to call.
    fn save_now(&self) -> Option<SaveNow> {
        if !self.is_loaded() {
            return None;
        }
        let mut state = self.state.lock();
        let state = state.as_mut()?;
        let config = &self.config;
        let now = state.now;
        let merged = state.merge_in_place(config, |key, changes, cookie, id| {
            merge_now(config, key, changes, cookie, id, now)
        });
        match merged {
            Some(InPlace::Unchanged) => return Some(SaveNow::Done(Ok(None))),
            Some(InPlace::Merged(saved)) => return Some(SaveNow::Done(saved)),
            Some(InPlace::MustWait(plan)) => return Some(SaveNow::MustWait(plan)),
            None => {}
        }
        let plan = state.plan(config);
        state.release_record();
        Some(match apply_now(config, &plan, now) {
            Some(saved) => SaveNow::Done(saved),
            None => SaveNow::MustWait(Box::new(plan)),
        })
    }

    /// The loaded session's state.
    ///
    /// # Panics
    ///
    /// If it is not loaded: `Session` values exist only after `load` succeeded.
    pub(crate) fn state(&self) -> StateGuard<'_> {
        MutexGuard::map(self.state.lock(), |state| {
            state
                .as_mut()
                .expect("a Session exists only for a loaded request session")
        })
    }

    /// Loads the session if the store answers at once (in memory): `false` when it has to be
    /// awaited ([`load`](Self::load)). `headers` are the request's.
    ///
    /// Plain code, no future: the extractor of a request whose store answers at once polls
    /// nothing, and the handler future that holds the extractor's stays small.
    pub(crate) fn load_at_once(&self, headers: &HeaderMap) -> bool {
        let mut state = self.state.lock();
        if state.is_some() {
            return true;
        }
        // The lock is held only while the store answers at once.
        match self.load_now(headers) {
            Some(loaded) => {
                *state = Some(loaded);
                self.loaded.store(true, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// The session, read from a store that answers at once; `None` when the store has to be
    /// awaited, or the first cookie names no live session and later ones must be tried.
    ///
    /// The cookie is read here rather than when the request arrives: a request whose handler
    /// takes no session never reads it.
    fn load_now(&self, headers: &HeaderMap) -> Option<State> {
        let config = &self.config;
        let now = config.now();
        let Some(first) = session_cookie::first_session_id(headers, &config.cookie, &config.signing_keys) else {
            return Some(State::fresh(now));
        };
        let (key, cached) = config.key_cache.key(&first.id);
        // An error, a corrupt record among them, is left to the awaited path, which asks again
        // and reports it.
        let record = config.store().load_now(&key, now)?.ok()?;
        self.adopt(first, key, cached, record, now)
    }

    /// Reads the session from a store that has to be awaited (or after [`load_at_once`]
    /// could not): the first live session named by the request's session cookies, else a new one.
    ///
    /// [`load_at_once`]: Self::load_at_once
    pub(crate) async fn load(&self, headers: &HeaderMap) -> Result<(), StoreError> {
        let config = &self.config;
        let now = config.now();
        let mut state = None;
        let candidates = session_cookie::session_ids(headers, &config.cookie, &config.signing_keys)
            .take(session_cookie::MAX_CANDIDATES);
        for candidate in candidates {
            let (key, cached) = config.key_cache.key(&candidate.id);
            let record = self.fetch(&key, now).await?;
            state = self.adopt(candidate, key, cached, record, now);
            if state.is_some() {
                break;
            }
        }
        let state = state.unwrap_or_else(|| State::fresh(now));
        // Extractors run one after another, so a second load in one request is not expected;
        // should two race, the first to finish wins and both see its session.
        self.state.lock().get_or_insert(state);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// The record under `key`, judged live or expired at `now` by a store that answers at once
    /// (see [`corrupt_as_none`]).
    async fn fetch(&self, key: &StoreKey, now: SystemTime) -> Result<Option<Arc<Record>>, StoreError> {
        let store = self.config.store();
        let loaded = match store.load_now(key, now) {
            Some(answer) => answer,
            None => with_timeout(&self.config, store.load(key))
                .await
                .map(|record| record.map(Arc::new)),
        };
        corrupt_as_none(loaded)
    }

    /// The session state for `record` loaded for `candidate`, if it is live at `now`. An id the
    /// store does not know (or that has expired) is never adopted.
    fn adopt(
        &self,
        candidate: CookieId,
        key: StoreKey,
        cached: bool,
        record: Option<Arc<Record>>,
        now: SystemTime,
    ) -> Option<State> {
        let config = &self.config;
        let record = record.filter(|r| !r.is_expired_at(now) && !config.past_max_lifetime(r.created_at, now))?;
        if !cached {
            config.key_cache.remember(&candidate.id, key);
        }
        Some(State::loaded(
            candidate.id,
            key,
            record,
            candidate.signed_by_old_key,
            now,
        ))
    }
}

/// An undecodable record counts as none, so that one corrupt record does not answer 503 to its
/// owner forever (the next write starts a new session).
fn corrupt_as_none(loaded: Result<Option<Arc<Record>>, StoreError>) -> Result<Option<Arc<Record>>, StoreError> {
    match loaded {
        Err(StoreError::Corrupt(reason)) => {
            tracing::warn!(%reason, "the stored session does not decode; starting a new one");
            Ok(None)
        }
        other => other,
    }
}

async fn with_timeout<T>(config: &Config, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut call = std::pin::pin!(call);
    // In-memory stores answer at once: no timer is armed for them.
    if let Poll::Ready(result) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        return result;
    }
    match config.store_timeout {
        None => call.await,
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(elapsed) => Err(StoreError::unavailable(format!(
                "no answer within {limit:?} ({elapsed})"
            ))),
        },
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
        let session = Arc::new(RequestSession {
            config: Arc::clone(&self.config),
            loaded: AtomicBool::new(false),
            state: StateLock::new(None),
        });
        request.extensions_mut().insert(Arc::clone(&session));
        ResponseFuture {
            state: ResponseState::Handler {
                future: self.inner.call(request),
                session,
            },
        }
    }
}

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
            session: Arc<RequestSession>,
        },
        Saving {
            future: Pin<Box<dyn Future<Output = Response<B>> + Send>>,
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
                    // Stores that answer at once (in memory) save here, without a boxed future.
                    match session.save_now() {
                        // A request that never extracted the session has nothing to save.
                        None => return Poll::Ready(Ok(response)),
                        Some(SaveNow::Done(saved)) => {
                            finish(saved, &mut response);
                            return Poll::Ready(Ok(response));
                        }
                        Some(SaveNow::MustWait(plan)) => save_later(Arc::clone(session), *plan, response),
                    }
                }
                ResponseStateProj::Saving { future } => return future.as_mut().poll(cx).map(Ok),
            };
            self.as_mut().project().state.set(next);
        }
    }
}

/// The save for a store that has to be awaited, as the response future's next state. Out of
/// line, like the other rare paths, so that the common one runs through less code.
#[cold]
#[inline(never)]
fn save_later<F, B: Default + Send + 'static>(
    session: Arc<RequestSession>,
    plan: Plan,
    response: Response<B>,
) -> ResponseState<F, B> {
    ResponseState::Saving {
        future: Box::pin(async move {
            let mut response = response;
            finish(save(&session, plan).await, &mut response);
            response
        }),
    }
}

/// Puts the save's cookie on the response — or answers 503 if the save failed. The response is
/// changed where it is rather than moved through: it is larger than all the rest.
fn finish<B: Default>(saved: Result<Option<HeaderValue>, StoreError>, response: &mut Response<B>) {
    if let Err(error) = add_cookie(saved, response.headers_mut()) {
        *response = unavailable(&error);
    }
}

/// Puts the save's cookie, if any, on the response headers; gives back the error of a failed save.
fn add_cookie(saved: Result<Option<HeaderValue>, StoreError>, headers: &mut HeaderMap) -> Result<(), StoreError> {
    if let Some(set_cookie) = saved? {
        headers.append(SET_COOKIE, set_cookie);
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn unavailable<B: Default>(error: &StoreError) -> Response<B> {
    tracing::error!(%error, "the session could not be saved; answering 503 instead of the handler's response");
    let mut unavailable = Response::new(B::default());
    *unavailable.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    unavailable
}

/// Stores `record` under `first` (`regenerate_id`'s new id) or a random id, retrying with random
/// ids on collision; returns the id it was stored under.
async fn create(config: &Config, first: Option<SessionId>, record: &Record) -> Result<SessionId, StoreError> {
    let mut candidate = first.unwrap_or_else(SessionId::random);
    for _ in 0..CREATE_ATTEMPTS {
        let key = candidate.store_key();
        match with_timeout(config, config.store().create(&key, record)).await? {
            Created::Created => {
                config.key_cache.remember(&candidate, key);
                return Ok(candidate);
            }
            Created::Collision => {
                tracing::warn!("session id collision; retrying with a new id");
                candidate = SessionId::random();
            }
        }
    }
    Err(StoreError::backend(format!(
        "{CREATE_ATTEMPTS} fresh session ids in a row collided"
    )))
}

/// Saves `plan` (made at `now`) if that needs no waiting: no store write, or a merge the store
/// does at once ([`SessionStore::apply_now`]); returns the `Set-Cookie` to send, or why the
/// save failed. `None`: the plan needs a store call that must be awaited.
fn apply_now(config: &Config, plan: &Plan, now: SystemTime) -> Option<Result<Option<HeaderValue>, StoreError>> {
    if plan.delete.is_some() {
        return None;
    }
    match &plan.write {
        None => Some(Ok(cookie_header(config, plan.cookie, None))),
        Some(Write::Apply { key, changes, id }) => merge_now(config, key, changes, plan.cookie, id, now),
        Some(_) => None,
    }
}

/// Merges `changes` into the session `id` (under `key`) if the store does it at once; returns
/// the `Set-Cookie` to send (`cookie` planned it), or why the merge failed. `None`: the store
/// must be awaited.
fn merge_now(
    config: &Config,
    key: &StoreKey,
    changes: &Changes,
    cookie: CookiePlan,
    id: &SessionId,
    now: SystemTime,
) -> Option<Result<Option<HeaderValue>, StoreError>> {
    let applied = config.store().apply_now(key, changes, now)?;
    Some(applied.map(|applied| {
        let (cookie, id) = after_apply(applied, cookie, id);
        cookie_header(config, cookie, id)
    }))
}

enum SaveNow {
    /// Saved: the `Set-Cookie` to send, or why the save failed.
    Done(Result<Option<HeaderValue>, StoreError>),
    /// The plan needs a store call that must be awaited (boxed: it is large, and rare).
    MustWait(Box<Plan>),
}

/// Writes what the request changed; returns the `Set-Cookie` to send, if any.
async fn save(session: &RequestSession, plan: Plan) -> Result<Option<HeaderValue>, StoreError> {
    let config = &session.config;
    let store = config.store();
    let mut cookie = plan.cookie;
    let mut cookie_id = None;
    match plan.write {
        None => {}
        Some(Write::Create { record }) => cookie_id = Some(create(config, None, &record).await?),
        Some(Write::Move { from, to, changes }) => match session.fetch(&from, config.now()).await? {
            Some(record) => {
                let mut record = Arc::unwrap_or_clone(record);
                record.apply(&changes);
                cookie_id = Some(create(config, Some(to), &record).await?);
            }
            None => {
                tracing::debug!("the session ended while the request ran; its new id was dropped");
                cookie = CookiePlan::Keep;
            }
        },
        Some(Write::Apply { key, changes, id }) => {
            let applied = match store.apply_now(&key, &changes, config.now()) {
                Some(answer) => answer?,
                None => with_timeout(config, store.apply(&key, &changes)).await?,
            };
            (cookie, cookie_id) = after_apply(applied, cookie, &id);
        }
    }
    if let Some(old) = plan.delete {
        config.key_cache.forget(&old);
        with_timeout(config, store.delete(&old.store_key())).await?;
    }
    Ok(cookie_header(config, cookie, cookie_id))
}

/// The cookie to send, and the id it names, after `apply` to the session `id` answered `applied`.
fn after_apply(applied: Applied, cookie: CookiePlan, id: &SessionId) -> (CookiePlan, Option<SessionId>) {
    match applied {
        // The id is copied only when a cookie is sent: once per touch window, not per request.
        Applied::Applied if cookie == CookiePlan::Keep => (cookie, None),
        Applied::Applied => (cookie, Some(id.clone())),
        Applied::Missing => ended_meanwhile(),
    }
}

/// Destroyed (or expired) while this request ran: its changes must not bring it back. No cookie
/// either: removing `id` could remove a newer session's cookie (logged in again in another tab),
/// and a stale id is never adopted anyway.
#[cold]
#[inline(never)]
fn ended_meanwhile() -> (CookiePlan, Option<SessionId>) {
    tracing::debug!("the session ended while the request ran; its changes were dropped");
    (CookiePlan::Keep, None)
}

fn cookie_header(config: &Config, cookie: CookiePlan, id: Option<SessionId>) -> Option<HeaderValue> {
    match (cookie, id) {
        (CookiePlan::Set { max_age }, Some(id)) => {
            let value = session_cookie::encode_value(&id, &config.cookie.name, &config.signing_keys);
            session_cookie::set_cookie(&config.cookie, value, max_age)
        }
        (CookiePlan::Remove, _) => session_cookie::removal_cookie(&config.cookie),
        _ => None,
    }
}
