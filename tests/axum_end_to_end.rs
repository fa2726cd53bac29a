//! The session handle's semantics, driven through a real axum `Router` with `oneshot`, cookies
//! carried between requests like a browser does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use typed_sessions::{Session, SessionId, SessionLayer, SigningKey};
use typed_sessions_tests::{Failure, TestStore};

#[path = "common/browser.rs"]
mod browser;
use browser::{send, Browser, Reply};

#[path = "common/routes.rs"]
mod routes;
use routes::{routes, AppSession, Other, Values};

/// The routes over `store`'s records, on `MemoryStore` itself or the awaited wrapper as the
/// running test says (see `TestStore::layer`).
fn app_on(store: Arc<TestStore>) -> Router {
    routes().layer(store.layer())
}

/// The routes over `store` itself, whose counters see every store call: for the tests that count
/// them.
fn counted_app_on(store: Arc<TestStore>) -> Router {
    routes().layer(SessionLayer::new(store))
}

/// The routes over new sessions, kept as the running test says (a store, or the cookie): for the
/// tests that look at nothing but responses, which run over client-side sessions too.
fn app() -> Router {
    routes().layer(typed_sessions_tests::fresh_layer().0)
}

async fn new_visitor_that_writes_nothing_gets_no_cookie_and_no_record() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(counted_app_on(store.clone()));
    let reply = browser.get("/whoami").await;
    assert_eq!(reply.body, "None None");
    assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    assert_eq!(
        store.counts(),
        [0, 0, 0, 0],
        "a visitor without a cookie needs no store call at all"
    );
    assert!(store.inner.is_empty());
}

async fn values_survive_between_requests_with_secure_cookie_defaults() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    let login = browser.get("/login").await;
    let cookie = login.session_cookie().expect("login sets the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert!(cookie.max_age().is_some());

    assert_eq!(browser.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
    assert_eq!(store.inner.len(), 1);
}

async fn a_route_that_does_not_extract_the_session_never_touches_the_store() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(counted_app_on(store.clone()));
    browser.get("/login").await;
    let before = store.counts();
    let reply = browser.get("/no-session").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.set_cookie.is_empty());
    assert_eq!(store.counts(), before);
}

async fn store_is_read_once_per_request_and_schemas_share_the_session() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(counted_app_on(store.clone()));
    browser.get("/login").await;
    let loads = store.loads.load(Ordering::SeqCst);
    // `/other` extracts two schemas; the stored `name` is a string, which `Other` reads as u64.
    assert_eq!(browser.get("/other").await.body, r#"None Some("ada")"#);
    assert_eq!(store.loads.load(Ordering::SeqCst), loads + 1);
    assert_eq!(browser.get("/theme").await.body, r#"Some("dark")"#);
    assert_eq!(
        browser.get("/whoami").await.body,
        r#"Some(42) Some("ada")"#,
        "the other schema's write kept ours"
    );
}

async fn only_changed_keys_are_written_and_unchanged_requests_write_nothing() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(counted_app_on(store.clone()));
    browser.get("/login").await;
    assert_eq!(browser.get("/count").await.body, "1");
    let changes = store.last_changes.lock().clone().unwrap();
    assert_eq!(changes.values.keys().collect::<Vec<_>>(), ["visits"]);
    assert_eq!(changes.values["visits"].as_deref(), Some("1"));

    let writes = store.applies.load(Ordering::SeqCst);
    let reply = browser.get("/read-only").await;
    assert_eq!(reply.body, "3");
    assert_eq!(
        store.applies.load(Ordering::SeqCst),
        writes,
        "a read-only request wrote"
    );
    assert!(reply.set_cookie.is_empty());

    assert_eq!(
        browser.get("/set-same").await.body,
        "false",
        "setting the stored value again is no change"
    );
    assert_eq!(store.applies.load(Ordering::SeqCst), writes);
    assert_eq!(browser.get("/count").await.body, "2");
}

async fn flash_is_seen_by_the_next_request_only() {
    let mut browser = Browser::new(app());
    browser.get("/flash?v=saved").await;
    assert_eq!(browser.get("/show-flash").await.body, r#"Some("saved") None"#);
    assert_eq!(browser.get("/show-flash").await.body, "None None");
}

async fn requests_that_do_not_extract_the_session_do_not_age_flash() {
    let mut browser = Browser::new(app());
    browser.get("/flash").await;
    browser.get("/no-session").await;
    browser.get("/no-session").await;
    assert_eq!(browser.get("/show-flash").await.body, r#"Some("hello") None"#);
}

async fn reading_flash_twice_in_one_request_does_not_consume_it_and_flash_is_no_value() {
    let mut browser = Browser::new(app());
    browser.get("/flash").await;
    // `/keep-notice` reads twice (via format) and `/read-only` counts values only.
    assert_eq!(
        browser.get("/read-only").await.body,
        "0",
        "flash must not count as a value"
    );
    assert_eq!(
        browser.get("/show-flash").await.body,
        "None None",
        "the /read-only request aged it"
    );
}

async fn flash_now_is_visible_in_this_request_and_never_stored() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    assert_eq!(browser.get("/flash-now").await.body, r#"Some("right now")"#);
    assert!(store.inner.is_empty(), "flash_now alone must not create a session");
    browser.get("/login").await;
    assert_eq!(browser.get("/flash-now").await.body, r#"Some("right now")"#);
    assert_eq!(browser.get("/show-flash").await.body, "None None");
}

async fn keep_flash_carries_one_key_and_reflash_carries_all() {
    let mut browser = Browser::new(app());
    browser.get("/flash-both").await;
    assert_eq!(browser.get("/keep-notice").await.body, r#"Some("n") Some("a")"#);
    assert_eq!(browser.get("/show-flash").await.body, r#"Some("n") None"#);
    assert_eq!(browser.get("/show-flash").await.body, "None None");

    browser.get("/flash-both").await;
    assert_eq!(browser.get("/reflash").await.body, r#"Some("n") Some("a")"#);
    assert_eq!(browser.get("/reflash").await.body, r#"Some("n") Some("a")"#);
    assert_eq!(browser.get("/show-flash").await.body, r#"Some("n") Some("a")"#);
    assert_eq!(browser.get("/show-flash").await.body, "None None");
}

async fn new_flash_replaces_incoming_flash_of_the_same_key() {
    let mut browser = Browser::new(app());
    browser.get("/flash?v=first").await;
    browser.get("/flash?v=second").await;
    assert_eq!(browser.get("/show-flash").await.body, r#"Some("second") None"#);
}

async fn regenerate_id_with_delete_old_kills_the_old_cookie() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();
    browser.get("/regenerate?v=delete").await;
    let new_cookie = browser.cookie.clone().unwrap();
    assert_ne!(old_cookie, new_cookie);
    assert_eq!(
        browser.get("/whoami").await.body,
        r#"Some(42) Some("ada")"#,
        "data moves to the new id"
    );
    let app = app_on(store.clone());
    assert_eq!(
        send(&app, "/whoami", Some(&old_cookie)).await.body,
        "None None",
        "the old id must be dead"
    );
    assert_eq!(store.inner.len(), 1);
}

async fn regenerate_id_without_delete_leaves_the_old_record() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();
    browser.get("/regenerate").await;
    assert_ne!(browser.cookie.clone().unwrap(), old_cookie);
    let app = app_on(store.clone());
    assert_eq!(
        send(&app, "/whoami", Some(&old_cookie)).await.body,
        r#"Some(42) Some("ada")"#
    );
    assert_eq!(store.inner.len(), 2);
}

async fn destroy_deletes_the_record_expires_the_cookie_and_ignores_later_writes() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();
    let reply = browser.get("/destroy").await;
    assert_eq!(reply.body, "true None");
    let removal = reply.session_cookie().expect("destroy expires the cookie");
    assert_eq!(removal.max_age(), Some(cookie::time::Duration::ZERO));
    assert!(store.inner.is_empty());
    let app = app_on(store.clone());
    assert_eq!(send(&app, "/whoami", Some(&old_cookie)).await.body, "None None");
}

/// `flash_now`, before or after `destroy`, is shown by this response (a logout's page can say
/// so); `flash` after it is dropped, and the session ends all the same.
async fn flash_now_after_destroy_is_shown_on_this_response_only() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();
    let reply = browser.get("/logout-notice").await;
    assert_eq!(reply.body, r#"Some("Logged out") Some("shown before")"#);
    let removal = reply.session_cookie().expect("destroy expires the cookie");
    assert_eq!(removal.max_age(), Some(cookie::time::Duration::ZERO));
    assert!(store.inner.is_empty(), "the notice brought the session back");
    let app = app_on(store);
    assert_eq!(send(&app, "/show-flash", Some(&old_cookie)).await.body, "None None");
}

async fn invalidate_clears_everything_and_moves_to_a_new_id() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    browser.get("/login").await;
    browser.get("/flash").await;
    let old_cookie = browser.cookie.clone().unwrap();
    assert_eq!(browser.get("/invalidate").await.body, "1");
    assert_ne!(browser.cookie.clone().unwrap(), old_cookie);
    assert_eq!(browser.get("/whoami").await.body, "None None");
    assert_eq!(browser.get("/show-flash").await.body, "None None");
    assert_eq!(browser.get("/count").await.body, "2");
    let app = app_on(store.clone());
    assert_eq!(send(&app, "/whoami", Some(&old_cookie)).await.body, "None None");
    assert_eq!(store.inner.len(), 1);
}

async fn take_unset_clear_and_update() {
    let mut browser = Browser::new(app());
    browser.get("/login").await;
    assert_eq!(browser.get("/take").await.body, r#"Some("ada") false"#);
    assert_eq!(browser.get("/take").await.body, "None false");
    assert_eq!(browser.get("/unset").await.body, "false 0");
    assert_eq!(browser.get("/whoami").await.body, "None None");
    assert_eq!(browser.get("/cart").await.body, r#"["apple"]"#);
    assert_eq!(browser.get("/cart").await.body, r#"["apple","apple"]"#);
    browser.get("/flash").await;
    assert_eq!(browser.get("/clear").await.body, "true 0 None");
    assert_eq!(browser.get("/read-only").await.body, "0");
    assert_eq!(browser.get("/show-flash").await.body, "None None");
}

async fn optional_extractor_is_none_without_a_stored_session() {
    let mut browser = Browser::new(app());
    assert_eq!(browser.get("/maybe").await.body, "none");
    browser.get("/login").await;
    assert_eq!(browser.get("/maybe").await.body, "some Some(42)");
}

async fn bad_cookies_mean_no_session_and_are_never_adopted() {
    let key = SigningKey::from_bytes(&[9; 32]).unwrap();
    let store = Arc::new(TestStore::default());
    let app = routes().layer(store.layer().with_signing_keys([key.clone()]));
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    let good = browser.cookie.clone().unwrap();
    let (id, _signature) = good.trim_start_matches("id=").split_once('.').unwrap();

    let forged = format!("id={}.{}", "A".repeat(24), &good[good.len() - 43..]);
    let bad_cookies = [
        format!("id={id}"),                                             // unsigned although keys are set
        format!("id={id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), // bad signature
        forged,                                                         // signature of another id
        format!("id={}", "x".repeat(5000)),                             // oversized
        "id=%%%;;==".to_owned(),                                        // malformed
        "id=".to_owned(),
        "garbage".to_owned(),
    ];
    for bad in &bad_cookies {
        let reply = send(&app, "/whoami", Some(bad)).await;
        assert_eq!(reply.status, StatusCode::OK, "{bad}");
        assert_eq!(reply.body, "None None", "{bad}");
        let reply = send(&app, "/count", Some(bad)).await;
        assert_eq!(reply.body, "1", "{bad}: a write starts a fresh session");
        let new_cookie = reply.session_cookie().unwrap();
        assert!(
            !new_cookie.value().starts_with(id),
            "{bad}: the id from a bad cookie was adopted"
        );
    }
    assert_eq!(send(&app, "/whoami", Some(&good)).await.body, r#"Some(42) Some("ada")"#);
}

async fn an_unknown_id_is_never_adopted() {
    let store = Arc::new(TestStore::default());
    let app = app_on(store.clone());
    let planted = "id=AttackerChoseThisId0000";
    let reply = send(&app, "/login", Some(planted)).await;
    let cookie = reply.session_cookie().unwrap();
    assert_ne!(cookie.value(), "AttackerChoseThisId0000");
    assert_eq!(send(&app, "/whoami", Some(planted)).await.body, "None None");
}

async fn signing_key_rotation_keeps_old_cookies_working() {
    let old_key = SigningKey::from_bytes(&[1; 32]).unwrap();
    let new_key = SigningKey::from_bytes(&[2; 32]).unwrap();
    let store = Arc::new(TestStore::default());
    let before = routes().layer(store.layer().with_signing_keys([old_key.clone()]));
    let mut browser = Browser::new(before);
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();

    let rotated = routes().layer(store.layer().with_signing_keys([new_key.clone(), old_key]));
    assert_eq!(
        send(&rotated, "/whoami", Some(&old_cookie)).await.body,
        r#"Some(42) Some("ada")"#
    );
    let reply = send(&rotated, "/count", Some(&old_cookie)).await;
    let resigned = format!("id={}", reply.session_cookie().unwrap().value());
    assert_ne!(resigned, old_cookie, "a write re-signs the cookie with the new key");

    let retired = routes().layer(store.layer().with_signing_keys([new_key]));
    assert_eq!(send(&retired, "/whoami", Some(&old_cookie)).await.body, "None None");
    assert_eq!(
        send(&retired, "/whoami", Some(&resigned)).await.body,
        r#"Some(42) Some("ada")"#
    );
}

async fn missing_layer_is_a_500_that_names_the_fix() {
    let reply = send(&routes(), "/whoami", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
}

/// The 503 of a store that is down depends on the cookie too (a request without one reads no
/// store and gets its page): it varies on `Cookie`, as a loaded session's response does.
async fn a_503_for_a_store_that_is_down_varies_on_cookie() {
    let app = routes().layer(SessionLayer::new(TestStore::failing(Failure::Down)));
    let reply = send(&app, "/whoami", Some("id=AAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.vary, ["Cookie"]);
}

async fn store_down_is_a_503_and_routes_without_sessions_still_work() {
    let app = routes().layer(SessionLayer::new(TestStore::failing(Failure::Down)));
    assert_eq!(
        send(&app, "/whoami", Some("id=AAAAAAAAAAAAAAAAAAAAAAAA")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(&app, "/login", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a failed save is a 503"
    );
    assert_eq!(
        send(&app, "/no-session", Some("id=AAAAAAAAAAAAAAAAAAAAAAAA"))
            .await
            .status,
        StatusCode::OK
    );
}

async fn concurrent_requests_writing_different_keys_both_keep_their_writes() {
    let store = Arc::new(TestStore::default());
    let gate = Arc::new(tokio::sync::Barrier::new(2));
    let app = {
        let (g1, g2) = (gate.clone(), gate.clone());
        Router::new()
            .route(
                "/a",
                get(move |mut s: AppSession| async move {
                    g1.wait().await; // both requests have loaded the same version
                    s.set(Values::USER_ID, 1);
                }),
            )
            .route(
                "/b",
                get(move |mut s: Session<Other>| async move {
                    g2.wait().await;
                    s.set(Other::THEME, "light".into());
                }),
            )
            .merge(routes())
            .layer(store.layer())
    };
    let mut browser = Browser::new(app.clone());
    browser.get("/count").await;
    let cookie = browser.cookie.clone().unwrap();
    let (a, b) = tokio::join!(send(&app, "/a", Some(&cookie)), send(&app, "/b", Some(&cookie)));
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(browser.get("/whoami").await.body, "Some(1) None");
    assert_eq!(browser.get("/theme").await.body, r#"Some("light")"#);
    assert_eq!(browser.get("/count").await.body, "2");
}

async fn handlers_run_concurrently_across_sessions_without_mixing_them() {
    let app = app_on(Default::default());
    let browsers: Vec<_> = (0..20).map(|_| Browser::new(app.clone())).collect();
    let results = futures_join_all(browsers.into_iter().map(|mut browser| async move {
        for _ in 0..10 {
            browser.get("/count").await;
        }
        browser.get("/count").await.body
    }))
    .await;
    assert!(results.iter().all(|body| body == "11"), "{results:?}");
}

async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn store_timeout_turns_a_hanging_store_into_a_503() {
    let app = routes()
        .layer(SessionLayer::new(TestStore::failing(Failure::Hanging)).with_store_timeout(Duration::from_millis(50)));
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        send(&app, "/whoami", Some("id=AAAAAAAAAAAAAAAAAAAAAAAA")),
    )
    .await
    .expect("the layer must not hang");
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

async fn destroy_after_invalidate_still_deletes_the_old_record() {
    let store = Arc::new(TestStore::default());
    let mut browser = Browser::new(app_on(store.clone()));
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();
    browser.get("/invalidate-then-destroy").await;
    assert!(store.inner.is_empty(), "the old record survived");
    let app = app_on(store);
    assert_eq!(send(&app, "/whoami", Some(&old_cookie)).await.body, "None None");
}

async fn clear_removes_stored_flash_too() {
    let mut browser = Browser::new(app());
    browser.get("/login").await;
    browser.get("/flash").await;
    browser.get("/clear-only").await;
    assert_eq!(browser.get("/show-flash").await.body, "None None");
    assert_eq!(browser.get("/whoami").await.body, "None None");
}

async fn an_undecodable_record_is_no_session_not_a_503_forever() {
    let app = routes().layer(SessionLayer::new(TestStore::failing(Failure::Corrupt)));
    let reply = send(&app, "/whoami", Some("id=AAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "None None"));
    let reply = send(&app, "/login", Some("id=AAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_ne!(reply.session_cookie().unwrap().value(), "AAAAAAAAAAAAAAAAAAAAAAAA");
}

/// Holds a handler between loading the session and saving it, while another request runs.
#[derive(Clone, Default)]
struct HandlerGate {
    loaded: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl HandlerGate {
    /// Called by the held handler once it has loaded the session.
    async fn hold(&self) {
        self.loaded.notify_one();
        self.release.notified().await;
    }

    /// Sends `held`; once its handler holds, sends `meanwhile` to completion, then lets `held`
    /// finish and returns its reply.
    async fn around(&self, app: &Router, cookie: &str, held: &str, meanwhile: &str) -> Reply {
        let held = tokio::spawn({
            let (app, cookie, held) = (app.clone(), cookie.to_owned(), held.to_owned());
            async move { send(&app, &held, Some(&cookie)).await }
        });
        self.loaded.notified().await;
        assert_eq!(send(app, meanwhile, Some(cookie)).await.status, StatusCode::OK);
        self.release.notify_one();
        held.await.unwrap()
    }
}

/// The test routes plus `/held`, which holds at `gate` and then runs `then` on the session; on
/// `store` itself, whose counters prove the race happened.
fn app_with_held_route(store: Arc<TestStore>, gate: &HandlerGate, then: fn(&mut AppSession)) -> Router {
    let gate = gate.clone();
    Router::new()
        .route(
            "/held",
            get(move |mut s: AppSession| async move {
                gate.hold().await;
                then(&mut s);
            }),
        )
        .merge(routes())
        .layer(SessionLayer::new(store))
}

async fn logged_in(app: &Router) -> String {
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    browser.cookie.unwrap()
}

async fn a_slow_request_never_undoes_a_logout() {
    let (store, gate) = (Arc::new(TestStore::default()), HandlerGate::default());
    let app = app_with_held_route(store.clone(), &gate, |s| s.set(Values::USER_ID, 99));
    let cookie = logged_in(&app).await;
    let [_, _, applies, deletes] = store.counts();
    let slow = gate.around(&app, &cookie, "/held", "/destroy").await;
    // The race happened: the logout deleted the record, then the slow request's patch reached
    // the store, which refused it.
    assert_eq!(store.counts()[3], deletes + 1);
    assert_eq!(
        store.counts()[2],
        applies + 1,
        "the slow request's patch never reached the store"
    );
    assert_eq!(slow.status, StatusCode::OK);
    // No Set-Cookie at all: removing `id` could remove a newer session's cookie.
    assert!(slow.session_cookie().is_none(), "{:?}", slow.set_cookie);
    assert!(store.inner.is_empty(), "the slow request brought the session back");
    assert_eq!(send(&app, "/whoami", Some(&cookie)).await.body, "None None");
}

async fn regenerate_id_never_brings_back_a_session_destroyed_meanwhile() {
    let (store, gate) = (Arc::new(TestStore::default()), HandlerGate::default());
    let app = app_with_held_route(store.clone(), &gate, |s| {
        s.regenerate_id(true);
        s.set(Values::VISITS, 5);
    });
    let cookie = logged_in(&app).await;
    let [loads, creates, _, _] = store.counts();
    let slow = gate.around(&app, &cookie, "/held", "/destroy").await;
    // The race happened: the slow request loaded the session, the logout deleted it, and the
    // slow request's save read it again (three loads: held, logout, the move's re-read) and
    // created nothing.
    assert_eq!(store.counts()[0], loads + 3, "the move never re-read the record");
    assert_eq!(store.counts()[1], creates);
    assert_eq!(slow.status, StatusCode::OK);
    assert!(
        slow.session_cookie().is_none(),
        "a cookie for a resurrected session: {:?}",
        slow.set_cookie
    );
    assert!(
        store.inner.is_empty(),
        "regenerate_id brought the destroyed session back"
    );
}

async fn regenerate_id_keeps_what_a_concurrent_request_wrote() {
    let (store, gate) = (Arc::new(TestStore::default()), HandlerGate::default());
    let app = app_with_held_route(store.clone(), &gate, |s| s.regenerate_id(true));
    let cookie = logged_in(&app).await;
    // `/other` sets Other::THEME while `/held` holds the session it loaded before.
    let moved = gate.around(&app, &cookie, "/held", "/other").await;
    let new_cookie = format!("id={}", moved.session_cookie().expect("the new id's cookie").value());
    assert_eq!(send(&app, "/theme", Some(&new_cookie)).await.body, r#"Some("dark")"#);
    assert_eq!(
        send(&app, "/whoami", Some(&new_cookie)).await.body,
        r#"Some(42) Some("ada")"#
    );
    assert_eq!(store.inner.len(), 1, "the old record was not deleted");
}

async fn host_prefixed_cookie_names_work_with_their_required_settings() {
    let app = routes().layer(typed_sessions_tests::fresh_layer().0.with_cookie_name("__Host-id"));
    let reply = send(&app, "/login", None).await;
    let set_cookie = reply.set_cookie.first().expect("a session cookie");
    assert!(set_cookie.starts_with("__Host-id="), "{set_cookie}");
    assert!(set_cookie.contains("Secure") && set_cookie.contains("Path=/") && !set_cookie.contains("Domain"));
}

#[test]
#[should_panic(expected = "`__Host-` cookie needs")]
fn host_prefix_with_a_domain_is_refused_when_the_app_is_built() {
    // `with_state` turns handlers into services, as `axum::serve` does at start-up.
    let _: Router = routes()
        .layer(
            SessionLayer::new(TestStore::default())
                .with_cookie_name("__Host-id")
                .with_domain("example.com"),
        )
        .with_state(());
}

#[test]
#[should_panic(expected = "`__Secure-` cookie needs")]
fn secure_prefix_without_secure_is_refused_when_the_app_is_built() {
    let _: Router = routes()
        .layer(
            SessionLayer::new(TestStore::default())
                .with_cookie_name("__Secure-id")
                .with_secure(false),
        )
        .with_state(());
}

#[test]
#[should_panic(expected = "is not a valid cookie name")]
fn an_invalid_cookie_name_is_refused_when_the_app_is_built() {
    let _: Router = routes()
        .layer(SessionLayer::new(TestStore::default()).with_cookie_name("my session"))
        .with_state(());
}

async fn a_stale_session_cookie_sent_first_does_not_hide_the_live_one() {
    let key = SigningKey::from_bytes(&[5; 32]).unwrap();
    let store = Arc::new(TestStore::default());
    let app = routes().layer(store.layer().with_signing_keys([key]));
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    let stale = browser.cookie.clone().unwrap();
    browser.get("/regenerate?v=delete").await; // the old id is gone from the store
    let live = browser.cookie.clone().unwrap();
    // A browser holding both (say the stale one at a longer path) sends the stale one first.
    let both = format!("{stale}; {live}");
    assert_eq!(send(&app, "/whoami", Some(&both)).await.body, r#"Some(42) Some("ada")"#);
}

/// A shared cache must not hand one user's session page or cookie to another: every response of
/// a request that took the session varies on `Cookie`, merged with the handler's own `Vary`.
async fn session_responses_vary_on_cookie_and_others_do_not() {
    let mut browser = Browser::new(app());
    let visitor = browser.get("/whoami").await;
    assert_eq!(visitor.vary, ["Cookie"], "a visitor's page depends on having no cookie");
    let login = browser.get("/login").await;
    assert!(!login.set_cookie.is_empty());
    assert_eq!(login.vary, ["Cookie"]);
    assert_eq!(browser.get("/read-only").await.vary, ["Cookie"]);
    let own = browser.get("/vary-own").await;
    assert_eq!(own.body, "Some(42)");
    assert_eq!(
        own.vary,
        ["Accept-Encoding, Cookie"],
        "the handler's Vary is kept, Cookie added once"
    );
    let logout = browser.get("/destroy").await;
    assert!(
        logout.cookie_header().is_some_and(|c| c == "id="),
        "{:?}",
        logout.set_cookie
    );
    assert_eq!(logout.vary, ["Cookie"]);
    assert!(
        browser.get("/no-session").await.vary.is_empty(),
        "a route that never takes the session is left alone"
    );
}

/// A request whose changes would make the session hold more than `with_max_session_size` is
/// answered 413 and writes nothing; the limit counts what is stored as well as the changes.
async fn a_session_over_its_size_limit_is_refused_with_413_and_nothing_is_written() {
    // Stored names and JSON values, plus 8 bytes per entry: the login's two values take 34.
    let app = routes().layer(typed_sessions_tests::fresh_layer().0.with_max_session_size(200));
    let flash = |len: usize| format!("/flash?v={}", "x".repeat(len));

    let refused = send(&app, &flash(300), None).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(refused.set_cookie.is_empty(), "a new session over the limit was stored");

    let cookie = send(&app, "/login", None).await.cookie_header().unwrap();
    // 8 + "notice" + the 160-character JSON string: 174 bytes, under the limit alone, over it
    // with the stored values.
    let refused = send(&app, &flash(160), Some(&cookie)).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        send(&app, "/show-flash", Some(&cookie)).await.body,
        "None None",
        "the flash was written"
    );
    assert_eq!(
        send(&app, "/whoami", Some(&cookie)).await.body,
        r#"Some(42) Some("ada")"#
    );

    let accepted = send(&app, &flash(140), Some(&cookie)).await;
    assert_eq!(accepted.status, StatusCode::OK, "34 + 154 bytes fit in 200");
    // A client-side session's changes travel in the new cookie.
    let cookie = accepted.cookie_header().unwrap_or(cookie);
    assert_eq!(
        send(&app, "/show-flash", Some(&cookie)).await.body,
        format!("Some({:?}) None", "x".repeat(140))
    );
}

/// A session already over the limit (stored before the limit was lowered) can still shrink —
/// here, by using up its flash — but not grow.
async fn a_session_over_its_size_limit_can_shrink_but_not_grow() {
    let store = Arc::new(TestStore::default());
    let unlimited = routes().layer(store.layer().with_secure(false));
    let limited = routes().layer(store.layer().with_secure(false).with_max_session_size(200));
    let flash = format!("/flash?v={}", "x".repeat(300));
    let cookie = send(&unlimited, &flash, None).await.cookie_header().unwrap();

    let shown = send(&limited, "/show-flash", Some(&cookie)).await;
    assert_eq!(shown.status, StatusCode::OK, "a shrinking save was refused");
    assert!(shown.body.starts_with("Some(\"xxx"), "{}", shown.body);
    assert_eq!(
        send(&limited, &flash, Some(&cookie)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        send(&limited, "/count", Some(&cookie)).await.status,
        StatusCode::OK,
        "small again"
    );
}

/// A response that sets the session cookie is `Cache-Control: private` (unless the handler chose
/// its own), so that no shared cache hands the cookie to another user.
async fn responses_that_set_the_cookie_are_private_to_caches() {
    let app = app();
    let cache_control = |path: &'static str, cookie: Option<String>| {
        let app = app.clone();
        async move {
            let reply = send(&app, path, cookie.as_deref()).await;
            let cache_control = reply.header(axum::http::header::CACHE_CONTROL).map(str::to_owned);
            (cache_control, reply.set_cookie.first().cloned())
        }
    };
    let (login_cache, set_cookie) = cache_control("/login", None).await;
    assert_eq!(login_cache.as_deref(), Some("private"));
    let cookie = set_cookie
        .expect("login sets the cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        cache_control("/whoami", Some(cookie)).await,
        (None, None),
        "no cookie sent, nothing added"
    );
    let (own, set_cookie) = cache_control("/login-no-store", None).await;
    assert!(set_cookie.is_some());
    assert_eq!(
        own.as_deref(),
        Some("no-store"),
        "the handler's own Cache-Control is kept"
    );
}

/// A thread starts each request in the slot of the last request it finished (the layer reuses
/// it): nothing of a finished request's session — its values, its flash, its id — reaches the
/// next visitor served there, and the first visitor's session is intact afterwards.
async fn a_finished_requests_session_never_reaches_the_next_visitor() {
    let store = Arc::new(TestStore::default());
    let app = app_on(store.clone());
    let mut first = Browser::new(app.clone());
    first.get("/login").await;
    first.get("/flash?v=first").await;

    let mut next = Browser::new(app.clone());
    let reply = next.get("/whoami").await;
    assert_eq!(reply.body, "None None");
    assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    assert_eq!(next.get("/show-flash").await.body, "None None");
    assert_eq!(next.get("/read-only").await.body, "0");
    assert_eq!(next.get("/count").await.body, "1");
    assert_eq!(next.get("/whoami").await.body, "None None");

    assert_eq!(first.get("/show-flash").await.body, r#"Some("first") None"#);
    assert_eq!(first.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
    assert_eq!(store.inner.len(), 2, "each visitor has a session of their own");
}

/// A `Session` moved into a task that outlives the response still names its own session while
/// other visitors' requests run after it (the layer reuses a finished request's slot only when
/// nothing holds it any more); as documented on `Session`, its values went to the save and it
/// reads none.
async fn a_session_moved_into_a_task_outlives_its_request() {
    type Seen = (Option<SessionId>, Option<SessionId>, Option<u64>);
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Seen>();
    let seen_tx = Arc::new(parking_lot::Mutex::new(Some(seen_tx)));
    let (others_done_tx, others_done_rx) = tokio::sync::oneshot::channel::<()>();
    let others_done_rx = Arc::new(parking_lot::Mutex::new(Some(others_done_rx)));
    let store = Arc::new(TestStore::default());
    let app = routes()
        .route(
            "/later",
            get(move |s: AppSession| {
                let seen = seen_tx.lock().take().expect("one request to /later");
                let others_done = others_done_rx.lock().take().expect("one request to /later");
                async move {
                    let during = s.id();
                    tokio::spawn(async move {
                        let _ = others_done.await;
                        // Reads the layer's settings too: a slot emptied under it would panic here.
                        let _ = s.expiry();
                        let _ = seen.send((during, s.id(), s.get(Values::USER_ID)));
                    });
                    "later"
                }
            }),
        )
        .layer(store.layer());
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    assert_eq!(browser.get("/later").await.body, "later");
    // Other visitors' requests, each of which starts in a finished request's slot if one is free.
    for _ in 0..3 {
        let mut other = Browser::new(app.clone());
        assert_eq!(other.get("/whoami").await.body, "None None");
        other.get("/login").await;
        assert_eq!(other.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
    }
    others_done_tx.send(()).expect("the task waits");
    let (during, after, user_after) = seen_rx.await.expect("the task reads its session");
    assert!(during.is_some(), "the logged-in visitor's session has an id");
    assert_eq!(after, during, "the task's session changed under it");
    assert_eq!(user_after, None, "after the response the values belong to the save");
}

typed_sessions_tests::on_both_paths!(
    a_finished_requests_session_never_reaches_the_next_visitor,
    a_session_moved_into_a_task_outlives_its_request,
    a_session_over_its_size_limit_can_shrink_but_not_grow,
    a_session_over_its_size_limit_is_refused_with_413_and_nothing_is_written,
    responses_that_set_the_cookie_are_private_to_caches,
    session_responses_vary_on_cookie_and_others_do_not,
    new_visitor_that_writes_nothing_gets_no_cookie_and_no_record,
    values_survive_between_requests_with_secure_cookie_defaults,
    a_route_that_does_not_extract_the_session_never_touches_the_store,
    store_is_read_once_per_request_and_schemas_share_the_session,
    only_changed_keys_are_written_and_unchanged_requests_write_nothing,
    flash_is_seen_by_the_next_request_only,
    requests_that_do_not_extract_the_session_do_not_age_flash,
    reading_flash_twice_in_one_request_does_not_consume_it_and_flash_is_no_value,
    flash_now_is_visible_in_this_request_and_never_stored,
    keep_flash_carries_one_key_and_reflash_carries_all,
    new_flash_replaces_incoming_flash_of_the_same_key,
    regenerate_id_with_delete_old_kills_the_old_cookie,
    regenerate_id_without_delete_leaves_the_old_record,
    destroy_deletes_the_record_expires_the_cookie_and_ignores_later_writes,
    flash_now_after_destroy_is_shown_on_this_response_only,
    invalidate_clears_everything_and_moves_to_a_new_id,
    take_unset_clear_and_update,
    optional_extractor_is_none_without_a_stored_session,
    bad_cookies_mean_no_session_and_are_never_adopted,
    an_unknown_id_is_never_adopted,
    signing_key_rotation_keeps_old_cookies_working,
    missing_layer_is_a_500_that_names_the_fix,
    store_down_is_a_503_and_routes_without_sessions_still_work,
    a_503_for_a_store_that_is_down_varies_on_cookie,
    concurrent_requests_writing_different_keys_both_keep_their_writes,
    handlers_run_concurrently_across_sessions_without_mixing_them,
    store_timeout_turns_a_hanging_store_into_a_503,
    destroy_after_invalidate_still_deletes_the_old_record,
    clear_removes_stored_flash_too,
    an_undecodable_record_is_no_session_not_a_503_forever,
    a_slow_request_never_undoes_a_logout,
    regenerate_id_never_brings_back_a_session_destroyed_meanwhile,
    regenerate_id_keeps_what_a_concurrent_request_wrote,
    host_prefixed_cookie_names_work_with_their_required_settings,
    a_stale_session_cookie_sent_first_does_not_hide_the_live_one,
);

typed_sessions_tests::on_client_side!(
    a_session_over_its_size_limit_is_refused_with_413_and_nothing_is_written,
    responses_that_set_the_cookie_are_private_to_caches,
    session_responses_vary_on_cookie_and_others_do_not,
    flash_is_seen_by_the_next_request_only,
    requests_that_do_not_extract_the_session_do_not_age_flash,
    reading_flash_twice_in_one_request_does_not_consume_it_and_flash_is_no_value,
    keep_flash_carries_one_key_and_reflash_carries_all,
    new_flash_replaces_incoming_flash_of_the_same_key,
    take_unset_clear_and_update,
    optional_extractor_is_none_without_a_stored_session,
    host_prefixed_cookie_names_work_with_their_required_settings,
    clear_removes_stored_flash_too,
);
