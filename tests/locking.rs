//! `LockedSession`: the requests of one session take turns, so a read-modify-write of one key
//! loses no update; the lock is bounded (wait → 409, lease → taken over), released on every
//! path, and fenced (a holder whose lock was taken over cannot write). On the stores of one
//! process (an in-process lock), and on Redis, a Redis Cluster and PostgreSQL, whose locks every
//! app instance shares (three instances take turns on one session).
//!
//! The timing tests of the in-process lock run on tokio's paused clock (`start_paused`): waits
//! and leases elapse exactly, whatever the machine's load, and the handlers that hold the lock
//! signal when they have it rather than the test sleeping and hoping. Those on real servers run
//! on the real clock, with margins.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::Notify;
use tokio::time::Instant;
use typed_sessions::{
    FileStore, LockedSession, MemoryStore, PostgresStore, RedisStore, Session, SessionLayer, SessionSchema,
    SessionStore, SigningKey, SqliteStore,
};
use typed_sessions_tests::{init_tracing, PostgresServer, RedisCluster, RedisServer};

#[path = "common/browser.rs"]
mod browser;
use browser::{send, Reply};

#[derive(SessionSchema)]
struct Values {
    count: u32,
    user: String,
}

/// How long the increment handlers take.
const HANDLER: Duration = Duration::from_millis(1);

/// Reads the counter, gives other requests a chance to run, writes it back + 1: without the
/// lock, concurrent requests read the same value and increments are lost.
async fn increment_locked(mut session: LockedSession<Values>) -> String {
    let count = session.get(Values::COUNT).unwrap_or(0);
    tokio::time::sleep(HANDLER).await;
    session.set(Values::COUNT, count + 1);
    (count + 1).to_string()
}

async fn increment_unlocked(mut session: Session<Values>) -> String {
    let count = session.get(Values::COUNT).unwrap_or(0);
    tokio::time::sleep(HANDLER).await;
    session.set(Values::COUNT, count + 1);
    (count + 1).to_string()
}

/// The routes; `holding` is notified by the handlers that keep the lock for a while, once they
/// have it.
fn app(layer: SessionLayer, holding: Arc<Notify>) -> Router {
    let (slow, slower, hang, panics) = (holding.clone(), holding.clone(), holding.clone(), holding);
    Router::new()
        .route(
            "/login",
            get(|mut s: Session<Values>| async move { s.set(Values::USER, "ada".into()) }),
        )
        .route(
            "/count",
            get(|s: Session<Values>| async move { s.get(Values::COUNT).unwrap_or(0).to_string() }),
        )
        .route(
            "/user",
            get(|s: Session<Values>| async move { s.get(Values::USER).unwrap_or_default() }),
        )
        .route("/locked", get(increment_locked))
        .route("/unlocked", get(increment_unlocked))
        .route(
            "/locked-read",
            get(|s: LockedSession<Values>| async move { s.get(Values::COUNT).unwrap_or(0).to_string() }),
        )
        .route(
            "/locked-too-big",
            get(|mut s: LockedSession<Values>| async move { s.set(Values::USER, "x".repeat(2000)) }),
        )
        .route(
            "/locked-destroy",
            get(|mut s: LockedSession<Values>| async move { s.destroy() }),
        )
        .route("/slow-locked", holds_the_lock(slow, Duration::from_millis(600)))
        .route("/slower-locked", holds_the_lock(slower, Duration::from_secs(2)))
        .route(
            "/hang-locked",
            get(move |mut s: LockedSession<Values>| async move {
                hang.notify_one();
                tokio::time::sleep(Duration::from_secs(3)).await;
                s.set(Values::COUNT, 1000);
            }),
        )
        .route(
            "/panic-locked",
            get(move |s: LockedSession<Values>| async move {
                panics.notify_one();
                if s.has(Values::USER) {
                    panic!("the handler fails while it holds the lock");
                }
                "not logged in"
            }),
        )
        .route(
            "/plain-then-locked",
            get(|plain: Session<Values>, mut locked: LockedSession<Values>| async move {
                let seen = plain.get(Values::COUNT).unwrap_or(0);
                locked.set(Values::COUNT, seen + 1);
                (seen + 1).to_string()
            }),
        )
        .layer(layer)
        .with_state(())
}

/// A `LockedSession` handler that signals `holding` once it has the lock, keeps it for `hold`,
/// then sets the user to "slow".
fn holds_the_lock(holding: Arc<Notify>, hold: Duration) -> axum::routing::MethodRouter {
    get(move |mut s: LockedSession<Values>| async move {
        holding.notify_one();
        tokio::time::sleep(hold).await;
        s.set(Values::USER, "slow".into());
    })
}

/// Logs in and returns the app's cookie.
async fn logged_in(app: &Router) -> String {
    send(app, "/login", None)
        .await
        .cookie_header()
        .expect("login sets a cookie")
}

/// `requests` concurrent requests to `path` with `cookie`, each on its own task.
async fn concurrently(app: &Router, path: &'static str, cookie: Option<&str>, requests: usize) -> Vec<Reply> {
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.map(str::to_owned));
            tokio::spawn(async move { send(&app, path, cookie.as_deref()).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("a request task"));
    }
    replies
}

/// A request to `path` on its own task.
fn in_background(app: &Router, path: &'static str, cookie: &str) -> tokio::task::JoinHandle<Reply> {
    let (app, cookie) = (app.clone(), cookie.to_owned());
    tokio::spawn(async move { send(&app, path, Some(&cookie)).await })
}

/// 100 concurrent locked increments of one key end at exactly 100; the same requests without
/// the lock lose some, which shows the race was there to lose.
async fn hundred_locked_increments_end_at_a_hundred(store: impl SessionStore + Clone) {
    let app = app(
        SessionLayer::new(store.clone()).with_lock_wait(Duration::from_secs(60)),
        Arc::default(),
    );
    let cookie = logged_in(&app).await;
    let replies = concurrently(&app, "/locked", Some(&cookie), 100).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(send(&app, "/count", Some(&cookie)).await.body, "100");

    let unlocked = app_without_lock(store).await;
    assert!(
        unlocked < 100,
        "unlocked increments lost nothing ({unlocked}): the test raced nothing"
    );
}

/// The counter after 100 concurrent unlocked increments of a new session.
async fn app_without_lock(store: impl SessionStore) -> u32 {
    let app = app(SessionLayer::new(store), Arc::default());
    let cookie = logged_in(&app).await;
    concurrently(&app, "/unlocked", Some(&cookie), 100).await;
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

/// The memory-store app with `configure`d locking, and the signal of its lock-holding handlers.
fn memory_app(configure: impl FnOnce(SessionLayer) -> SessionLayer) -> (Router, Arc<Notify>) {
    let holding = Arc::new(Notify::new());
    (
        app(configure(SessionLayer::new(MemoryStore::new())), holding.clone()),
        holding,
    )
}

#[tokio::test(start_paused = true)]
async fn a_plain_session_is_served_while_a_locked_one_is_held() {
    let (app, holding) = memory_app(|layer| layer);
    let cookie = logged_in(&app).await;
    let slow = in_background(&app, "/slow-locked", &cookie);
    holding.notified().await;
    let started = Instant::now();
    assert_eq!(send(&app, "/user", Some(&cookie)).await.body, "ada");
    assert_eq!(started.elapsed(), Duration::ZERO, "a plain Session waited for the lock");
    assert!(!slow.is_finished());
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(send(&app, "/user", Some(&cookie)).await.body, "slow");
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_get_the_lock_in_time_gets_409_with_retry_after() {
    let (app, holding) = memory_app(|layer| layer.with_lock_wait(Duration::from_millis(200)));
    let cookie = logged_in(&app).await;
    let slow = in_background(&app, "/slow-locked", &cookie);
    holding.notified().await;
    let started = Instant::now();
    let refused = status_and_retry_after(&app, "/locked", &cookie).await;
    assert_eq!(refused, (StatusCode::CONFLICT, Some("1".to_owned())));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "answered when the wait ended"
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        send(&app, "/locked", Some(&cookie)).await.status,
        StatusCode::OK,
        "free again"
    );
}

/// The 409 of a busy lock depends on which session the cookie names: it varies on `Cookie`.
#[tokio::test(start_paused = true)]
async fn a_409_for_a_busy_lock_varies_on_cookie() {
    let (app, holding) = memory_app(|layer| layer.with_lock_wait(Duration::from_millis(200)));
    let cookie = logged_in(&app).await;
    let slow = in_background(&app, "/slow-locked", &cookie);
    holding.notified().await;
    let refused = send(&app, "/locked", Some(&cookie)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.vary, ["Cookie"]);
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
}

/// Status and `Retry-After` of one request.
async fn status_and_retry_after(app: &Router, path: &str, cookie: &str) -> (StatusCode, Option<String>) {
    let reply = send(app, path, Some(cookie)).await;
    let retry_after = reply.header(axum::http::header::RETRY_AFTER).map(str::to_owned);
    (reply.status, retry_after)
}

#[tokio::test(start_paused = true)]
async fn a_dropped_holder_frees_the_lock_at_once() {
    let (app, holding) = memory_app(|layer| layer.with_lock_wait(Duration::from_secs(1)));
    let cookie = logged_in(&app).await;
    let held = in_background(&app, "/hang-locked", &cookie);
    holding.notified().await;
    held.abort(); // the client went away: the request's future is dropped
    assert!(matches!(held.await, Err(error) if error.is_cancelled()));
    let started = Instant::now();
    assert_eq!(
        send(&app, "/locked", Some(&cookie)).await.body,
        "1",
        "the dropped request wrote nothing"
    );
    assert_eq!(started.elapsed(), HANDLER, "no wait but the handler's own");
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_panics_frees_the_lock_at_once() {
    let (app, holding) = memory_app(|layer| layer.with_lock_wait(Duration::from_secs(1)));
    let cookie = logged_in(&app).await;
    let panicked = in_background(&app, "/panic-locked", &cookie);
    holding.notified().await;
    match panicked.await {
        Err(error) => assert!(error.is_panic()),
        Ok(reply) => panic!("the handler did not panic: {}", reply.status),
    }
    let started = Instant::now();
    assert_eq!(send(&app, "/locked", Some(&cookie)).await.status, StatusCode::OK);
    assert_eq!(started.elapsed(), HANDLER, "no wait but the handler's own");
}

/// A holder that hangs past its lease loses the lock to the next request, and its own save,
/// when it finally comes, fails (409) instead of overwriting what the next holder wrote.
#[tokio::test(start_paused = true)]
async fn a_hung_holder_frees_the_lock_at_its_lease_and_cannot_write_after_it() {
    let (app, holding) = memory_app(|layer| {
        layer
            .with_lock_lease(Duration::from_millis(500))
            .with_lock_wait(Duration::from_secs(5))
    });
    let cookie = logged_in(&app).await;
    let hung = in_background(&app, "/hang-locked", &cookie);
    holding.notified().await;
    let started = Instant::now();
    let next = send(&app, "/locked", Some(&cookie)).await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500) + HANDLER,
        "taken over when the lease ended"
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

#[tokio::test(start_paused = true)]
async fn a_holder_past_its_lease_saves_if_no_one_took_the_lock_over() {
    let (app, holding) = memory_app(|layer| layer.with_lock_lease(Duration::from_millis(500)));
    let cookie = logged_in(&app).await;
    let hung = in_background(&app, "/hang-locked", &cookie);
    holding.notified().await;
    assert_eq!(hung.await.unwrap().status, StatusCode::OK);
    assert_eq!(send(&app, "/count", Some(&cookie)).await.body, "1000");
}

#[tokio::test(start_paused = true)]
async fn locks_are_released_by_reads_and_by_destroy() {
    let (app, _) = memory_app(|layer| layer.with_lock_wait(Duration::ZERO));
    let cookie = logged_in(&app).await;
    assert_eq!(send(&app, "/locked-read", Some(&cookie)).await.body, "0");
    assert_eq!(
        send(&app, "/locked", Some(&cookie)).await.status,
        StatusCode::OK,
        "a read released it"
    );
    let destroyed = send(&app, "/locked-destroy", Some(&cookie)).await;
    assert_eq!(destroyed.cookie_header().as_deref(), Some("id="));
    assert_eq!(send(&app, "/locked-read", Some(&cookie)).await.status, StatusCode::OK);
}

/// A locked save refused for its size (413) writes nothing and releases the lock at once, as a
/// save that succeeds does: the next locked request does not wait for the lease.
#[tokio::test(start_paused = true)]
async fn a_locked_save_refused_for_its_size_releases_the_lock() {
    let (app, _) = memory_app(|layer| layer.with_lock_wait(Duration::ZERO).with_max_session_size(1000));
    let cookie = logged_in(&app).await;
    assert_eq!(
        send(&app, "/locked-too-big", Some(&cookie)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        send(&app, "/locked", Some(&cookie)).await.status,
        StatusCode::OK,
        "the refused save released the lock"
    );
    assert_eq!(
        send(&app, "/user", Some(&cookie)).await.body,
        "ada",
        "nothing of it was written"
    );
}

/// A `LockedSession` after a plain `Session` of the same request takes the lock then and reads
/// the session again; after a plain `Session` that changed the session, it is refused.
#[tokio::test(start_paused = true)]
async fn a_locked_session_after_a_plain_one_locks_then_or_is_refused_after_a_change() {
    let (app, holding) = memory_app(|layer| layer.with_lock_wait(Duration::from_secs(5)));
    let cookie = logged_in(&app).await;
    let slow = in_background(&app, "/slow-locked", &cookie);
    holding.notified().await;
    let started = Instant::now();
    assert_eq!(send(&app, "/plain-then-locked", Some(&cookie)).await.body, "1");
    assert_eq!(started.elapsed(), Duration::from_millis(600), "it waited for the lock");
    slow.await.unwrap();
    assert_eq!(
        send(&app, "/user", Some(&cookie)).await.body,
        "slow",
        "and saw the holder's write"
    );

    let app = Router::new()
        .route("/both", get(|_: LockedSession<Values>| async { "unreachable" }))
        .layer(axum::middleware::from_fn(
            |mut plain: Session<Values>, request: axum::extract::Request, next: axum::middleware::Next| async move {
                plain.update(Values::COUNT, |count| *count += 1);
                next.run(request).await
            },
        ))
        .layer(SessionLayer::new(MemoryStore::new()));
    let cookie = send(&app, "/both", None).await.cookie_header();
    let reply = send(&app, "/both", cookie.as_deref()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("had changed the session"), "{}", reply.body);
}

#[tokio::test(start_paused = true)]
async fn new_visitors_need_no_lock() {
    let (app, _) = memory_app(|layer| layer.with_lock_wait(Duration::ZERO));
    let replies = concurrently(&app, "/locked", None, 20).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK && r.body == "1"));
}

#[tokio::test(start_paused = true)]
async fn client_side_sessions_have_nothing_to_lock() {
    let layer = SessionLayer::client_side([typed_sessions_tests::test_encryption_key()]).with_lock_wait(Duration::ZERO);
    let app = app(layer, Arc::default());
    let cookie = logged_in(&app).await;
    assert_eq!(send(&app, "/plain-then-locked", Some(&cookie)).await.body, "1");
    let replies = concurrently(&app, "/locked", Some(&cookie), 5).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK), "never a 409");
}

#[test]
#[should_panic(expected = "a lease of zero")]
fn a_zero_lease_is_refused_when_the_app_is_built() {
    let _ = app(
        SessionLayer::new(MemoryStore::new()).with_lock_lease(Duration::ZERO),
        Arc::default(),
    );
}

// ---------------------------------------------------------------------------------------------
// Locks shared by app instances: Redis, a Redis Cluster, PostgreSQL

/// Three app instances (each its own layer and store connection, as three processes have)
/// share one session: 300 locked increments spread over them, 30 at a time, end at 300.
async fn three_instances_take_turns<S: SessionStore, F: std::future::Future<Output = S>>(connect: impl Fn() -> F) {
    let key = SigningKey::generate();
    let mut instances = Vec::new();
    for _ in 0..3 {
        let layer = SessionLayer::new(connect().await)
            .with_signing_keys([key.clone()])
            .with_lock_wait(Duration::from_secs(60));
        instances.push(app(layer, Arc::default()));
    }
    let cookie = logged_in(&instances[0]).await;
    let workers: Vec<_> = (0..30)
        .map(|worker| {
            let (instances, cookie) = (instances.clone(), cookie.clone());
            tokio::spawn(async move {
                for n in 0..10 {
                    let reply = send(&instances[(worker + n) % 3], "/locked", Some(&cookie)).await;
                    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    for instance in &instances {
        assert_eq!(send(instance, "/count", Some(&cookie)).await.body, "300");
    }
}

/// The lock's rules on the real clock, for a store that keeps the locks: a plain `Session` does
/// not wait; a request that waits too long gets 409 soon after its wait; a dropped or panicking
/// holder frees the lock at once (long before its lease); a hung holder loses it at its lease
/// and its late save is refused.
async fn lock_rules_in_real_time(store: impl SessionStore + Clone) {
    let holding = Arc::new(Notify::new());
    let app = app(
        SessionLayer::new(store.clone()).with_lock_wait(Duration::from_millis(300)),
        holding.clone(),
    );
    let cookie = logged_in(&app).await;
    let margin = Duration::from_secs(1);

    // The holder keeps the lock 2 s: room for the plain read, the 300 ms wait and a margin.
    let slow = in_background(&app, "/slower-locked", &cookie);
    holding.notified().await;
    let started = Instant::now();
    assert_eq!(send(&app, "/user", Some(&cookie)).await.body, "ada");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "a plain Session waited for the lock"
    );
    let started = Instant::now();
    let refused = status_and_retry_after(&app, "/locked", &cookie).await;
    assert_eq!(refused, (StatusCode::CONFLICT, Some("1".to_owned())));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(300) + margin,
        "answered 409 after {waited:?}, not when the 300 ms wait ended"
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(send(&app, "/user", Some(&cookie)).await.body, "slow");

    let patient = |lease| {
        crate::app(
            SessionLayer::new(store.clone())
                .with_lock_wait(Duration::from_secs(20))
                .with_lock_lease(lease),
            holding.clone(),
        )
    };
    let app = patient(Duration::from_secs(10));
    let held = in_background(&app, "/hang-locked", &cookie);
    holding.notified().await;
    held.abort();
    assert!(held.await.unwrap_err().is_cancelled());
    let started = Instant::now();
    assert_eq!(
        send(&app, "/locked", Some(&cookie)).await.body,
        "1",
        "the dropped request wrote nothing"
    );
    assert!(
        started.elapsed() < margin,
        "a dropped holder kept the lock for {:?}",
        started.elapsed()
    );

    let panicked = in_background(&app, "/panic-locked", &cookie);
    holding.notified().await;
    assert!(panicked.await.unwrap_err().is_panic());
    let started = Instant::now();
    assert_eq!(send(&app, "/locked", Some(&cookie)).await.body, "2");
    assert!(
        started.elapsed() < margin,
        "a panicked holder kept the lock for {:?}",
        started.elapsed()
    );

    let lease = Duration::from_millis(500);
    let app = patient(lease);
    // Timed from before the holder's request: its lease starts later than this.
    let started = Instant::now();
    let hung = in_background(&app, "/hang-locked", &cookie);
    holding.notified().await;
    assert_eq!(send(&app, "/locked", Some(&cookie)).await.body, "3");
    let waited = started.elapsed();
    assert!(
        waited >= lease && waited < lease + margin,
        "the lock was taken over after {waited:?}, not at the end of the 500 ms lease"
    );
    assert_eq!(
        hung.await.unwrap().status,
        StatusCode::CONFLICT,
        "the late save is refused"
    );
    assert_eq!(
        send(&app, "/count", Some(&cookie)).await.body,
        "3",
        "the next holder's write stands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_locks_are_shared_by_instances() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let connect = || async { RedisStore::connect(&redis.url()).await.unwrap() };
    hundred_locked_increments_end_at_a_hundred(connect().await).await;
    three_instances_take_turns(connect).await;
    lock_rules_in_real_time(connect().await).await;
    a_record_that_does_not_decode_leaves_no_lock(connect().await.with_prefix("corrupt:"), &redis.url()).await;
}

/// A locked request whose session does not decode (the store took the lock, then could not
/// read the record) starts a new session and leaves the lock behind for no one: the next locked
/// request with the same cookie is not kept waiting for its lease.
async fn a_record_that_does_not_decode_leaves_no_lock(store: RedisStore, url: &str) {
    let app = app(
        SessionLayer::new(store).with_lock_wait(Duration::from_millis(300)),
        Arc::default(),
    );
    let cookie = logged_in(&app).await;
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("corrupt:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one session: {keys:?}");
    let _: () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg("record")
        .arg("{not json")
        .query_async(&mut redis)
        .await
        .unwrap();
    for _ in 0..3 {
        let reply = send(&app, "/locked-read", Some(&cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "a lock was left behind: {}", reply.body);
        assert_eq!(reply.body, "0", "the undecodable session is no session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_locks_are_shared_by_instances() {
    init_tracing();
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let connect = || async { RedisStore::connect_cluster(cluster.urls()).await.unwrap() };
    hundred_locked_increments_end_at_a_hundred(connect().await).await;
    three_instances_take_turns(connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_locks_are_shared_by_instances() {
    init_tracing();
    let Some(postgres) = PostgresServer::start().await else {
        return;
    };
    let connect = || async { PostgresStore::connect(&postgres.url()).await.unwrap() };
    hundred_locked_increments_end_at_a_hundred(connect().await).await;
    three_instances_take_turns(connect).await;
    lock_rules_in_real_time(connect().await).await;
}
