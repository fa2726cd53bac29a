//! `LockedSession`: the requests of one session take turns, so a read-modify-write of one key
//! loses no update; the lock is bounded (wait → 409, lease → taken over), released on every
//! path, and fenced (a holder past its lease cannot write). On the stores of one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use typed_sessions::{
    FileStore, LockedSession, MemoryStore, Session, SessionLayer, SessionSchema, SessionStore, SqliteStore,
};

#[path = "common/browser.rs"]
mod browser;
use browser::{send, Reply};

#[derive(SessionSchema)]
struct Values {
    count: u32,
    user: String,
}

/// Reads the counter, gives other requests a chance to run, writes it back + 1: without the
/// lock, concurrent requests read the same value and increments are lost.
async fn increment_locked(mut session: LockedSession<Values>) -> String {
    let count = session.get(Values::COUNT).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1)).await;
    session.set(Values::COUNT, count + 1);
    (count + 1).to_string()
}

async fn increment_unlocked(mut session: Session<Values>) -> String {
    let count = session.get(Values::COUNT).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1)).await;
    session.set(Values::COUNT, count + 1);
    (count + 1).to_string()
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/login",
            get(|mut s: Session<Values>| async move { s.set(Values::USER, "ada".into()) }),
        )
        .route(
            "/count",
            get(|s: Session<Values>| async move { s.get(Values::COUNT).unwrap_or(0).to_string() }),
        )
        .route("/locked", get(increment_locked))
        .route("/unlocked", get(increment_unlocked))
        .route(
            "/slow-locked",
            get(|mut s: LockedSession<Values>| async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                s.set(Values::USER, "slow".into());
            }),
        )
        .route(
            "/hang-locked",
            get(|mut s: LockedSession<Values>| async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                s.set(Values::COUNT, 1000);
            }),
        )
        .route(
            "/panic-locked",
            get(|s: LockedSession<Values>| async move {
                if s.has(Values::USER) {
                    panic!("the handler fails while it holds the lock");
                }
                "not logged in"
            }),
        )
        .route(
            "/both-in-the-wrong-order",
            get(|_plain: Session<Values>, _locked: LockedSession<Values>| async move { "unreachable" }),
        )
        .route(
            "/user",
            get(|s: Session<Values>| async move { s.get(Values::USER).unwrap_or_default() }),
        )
        .layer(layer)
        .with_state(())
}

/// Logs in and returns the app's cookie.
async fn logged_in(app: &Router) -> String {
    send(app, "/login", None)
        .await
        .cookie_header()
        .expect("login sets a cookie")
}

/// `requests` concurrent requests to `path` with `cookie`, each on its own task.
async fn concurrently(app: &Router, path: &'static str, cookie: &str, requests: usize) -> Vec<Reply> {
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.to_owned());
            tokio::spawn(async move { send(&app, path, Some(&cookie)).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("a request task"));
    }
    replies
}

/// 100 concurrent locked increments of one key end at exactly 100; the same requests without
/// the lock lose some, which shows the race was there to lose.
async fn hundred_locked_increments_end_at_a_hundred(store: impl SessionStore + Clone) {
    let app = app(SessionLayer::new(store.clone()).with_lock_wait(Duration::from_secs(30)));
    let cookie = logged_in(&app).await;
    let replies = concurrently(&app, "/locked", &cookie, 100).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(send(&app, "/count", Some(&cookie)).await.body, "100");

    let unlocked = app_without_lock_reads(store).await;
    assert!(
        unlocked < 100,
        "unlocked increments lost nothing ({unlocked}): the test raced nothing"
    );
}

/// The counter after 100 concurrent unlocked increments of a new session.
async fn app_without_lock_reads(store: impl SessionStore) -> u32 {
    let app = app(SessionLayer::new(store));
    let cookie = logged_in(&app).await;
    concurrently(&app, "/unlocked", &cookie, 100).await;
    send(&app, "/count", Some(&cookie)).await.body.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_hundred_locked_increments() {
    hundred_locked_increments_end_at_a_hundred(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_hundred_locked_increments() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
    hundred_locked_increments_end_at_a_hundred(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_hundred_locked_increments() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    hundred_locked_increments_end_at_a_hundred(Arc::new(store)).await;
}

fn memory_app(configure: impl FnOnce(SessionLayer) -> SessionLayer) -> Router {
    app(configure(SessionLayer::new(MemoryStore::new())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_session_is_served_while_a_locked_one_is_held() {
    let app = memory_app(|layer| layer);
    let cookie = logged_in(&app).await;
    let slow = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { send(&app, "/slow-locked", Some(&cookie)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(send(&app, "/user", Some(&cookie)).await.body, "ada");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "a plain Session waited for the lock"
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(send(&app, "/user", Some(&cookie)).await.body, "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_get_the_lock_in_time_gets_409_with_retry_after() {
    let app = memory_app(|layer| layer.with_lock_wait(Duration::from_millis(200)));
    let cookie = logged_in(&app).await;
    let slow = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { send(&app, "/slow-locked", Some(&cookie)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let refused = send_with_headers(&app, "/locked", &cookie).await;
    let waited = started.elapsed();
    assert_eq!(refused.0, StatusCode::CONFLICT);
    assert_eq!(refused.1.as_deref(), Some("1"), "Retry-After");
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(450),
        "answered after {waited:?}, the wait is 200 ms"
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        send(&app, "/locked", Some(&cookie)).await.status,
        StatusCode::OK,
        "free again"
    );
}

/// Status and `Retry-After` of one request.
async fn send_with_headers(app: &Router, path: &str, cookie: &str) -> (StatusCode, Option<String>) {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .uri(path)
        .header(axum::http::header::COOKIE, cookie)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let retry_after = response
        .headers()
        .get(axum::http::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_holder_frees_the_lock_at_once() {
    let app = memory_app(|layer| layer.with_lock_wait(Duration::from_millis(300)));
    let cookie = logged_in(&app).await;
    let held = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { send(&app, "/hang-locked", Some(&cookie)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.abort(); // the client went away: the request's future is dropped
    let _ = held.await;
    let started = Instant::now();
    assert_eq!(send(&app, "/locked", Some(&cookie)).await.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(
        send(&app, "/count", Some(&cookie)).await.body,
        "1",
        "the dropped request wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_panics_frees_the_lock_at_once() {
    let app = memory_app(|layer| layer.with_lock_wait(Duration::from_millis(300)));
    let cookie = logged_in(&app).await;
    let panicked = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { send(&app, "/panic-locked", Some(&cookie)).await }
    });
    match panicked.await {
        Err(error) => assert!(error.is_panic()),
        Ok(reply) => panic!("the handler did not panic: {}", reply.status),
    }
    let started = Instant::now();
    assert_eq!(send(&app, "/locked", Some(&cookie)).await.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(200));
}

/// A holder that hangs past its lease loses the lock to the next request, and its own save,
/// when it finally comes, fails (409) instead of overwriting what the next holder wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_holder_frees_the_lock_at_its_lease_and_cannot_write_after_it() {
    let app = memory_app(|layer| {
        layer
            .with_lock_lease(Duration::from_millis(500))
            .with_lock_wait(Duration::from_secs(5))
    });
    let cookie = logged_in(&app).await;
    let hung = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { send(&app, "/hang-locked", Some(&cookie)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let next = send(&app, "/locked", Some(&cookie)).await;
    let waited = started.elapsed();
    assert_eq!(next.status, StatusCode::OK);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
        "taken over after {waited:?}; the lease is 500 ms"
    );
    assert_eq!(
        hung.await.unwrap().status,
        StatusCode::CONFLICT,
        "the late save is refused"
    );
    assert_eq!(
        send(&app, "/count", Some(&cookie)).await.body,
        "1",
        "the next holder's write stands"
    );
}

#[tokio::test]
async fn a_locked_session_after_a_plain_one_is_a_500_that_names_the_fix() {
    let app = memory_app(|layer| layer);
    let cookie = logged_in(&app).await;
    let reply = send(&app, "/both-in-the-wrong-order", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("put the `LockedSession` argument before"),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_visitors_need_no_lock() {
    let app = memory_app(|layer| layer.with_lock_wait(Duration::ZERO));
    let replies: Vec<Reply> = futures_join((0..20).map(|_| {
        let app = app.clone();
        async move { send(&app, "/locked", None).await }
    }))
    .await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK && r.body == "1"));
}

async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}
