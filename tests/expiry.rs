//! The expiry model: rolling idle timeout, browser-session cookies, the absolute lifetime cap,
//! per-session overrides ("remember me") and the rule that an unchanged request rewrites the
//! expiry only once enough of the idle window has passed. Time is a `ManualClock`: no sleeping.
//! Every test runs over a store that answers at once, one that is awaited, and client-side
//! sessions (the expiry travels inside the cookie).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::Router;
use typed_sessions::clock::ManualClock;
use typed_sessions::{Expiry, Session, SessionLayer, SessionSchema};
use typed_sessions_tests::TestStore;

#[path = "common/browser.rs"]
mod browser;
use browser::Browser;

#[derive(SessionSchema)]
struct Values {
    user: String,
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// `/login` stores a user, `/user` shows it: the routes every test here uses.
fn login_and_user() -> Router {
    Router::new()
        .route(
            "/login",
            get(|mut s: Session<Values>| async move { s.set(Values::USER, "ada".into()) }),
        )
        .route(
            "/user",
            get(|s: Session<Values>| async move { s.get(Values::USER).unwrap_or_default() }),
        )
}

struct Fixture {
    browser: Browser,
    clock: ManualClock,
    /// `None` for client-side sessions, kept in the cookie.
    store: Option<Arc<TestStore>>,
    /// The layer is on the counting wrapper (see [`Fixture::counted`]).
    counted: bool,
}

impl Fixture {
    fn new(configure: impl FnOnce(SessionLayer) -> SessionLayer) -> Self {
        let (layer, store) = typed_sessions_tests::fresh_layer();
        Fixture::on(layer, store, false, configure)
    }

    /// [`new`](Self::new), with the layer on the counting `TestStore` in both modes (not on
    /// `MemoryStore` itself): for the tests that count writes.
    fn counted(configure: impl FnOnce(SessionLayer) -> SessionLayer) -> Self {
        let (layer, store) = typed_sessions_tests::fresh_layer();
        let layer = store
            .as_ref()
            .map_or(layer, |store| SessionLayer::new(Arc::clone(store)));
        Fixture::on(layer, store, true, configure)
    }

    fn on(
        layer: SessionLayer,
        store: Option<Arc<TestStore>>,
        counted: bool,
        configure: impl FnOnce(SessionLayer) -> SessionLayer,
    ) -> Self {
        let clock = ManualClock::new(SystemTime::now());
        let layer = configure(layer.with_clock(clock.clone()));
        let app = login_and_user()
            .route(
                "/remember-me",
                get(|mut s: Session<Values>| async move {
                    s.set_expiry(Expiry::Idle(30 * DAY));
                    format!("{:?}", s.expiry())
                }),
            )
            .route(
                "/browser-session",
                get(|mut s: Session<Values>| async move { s.set_expiry(Expiry::BrowserSession) }),
            )
            .route(
                "/forever",
                get(|mut s: Session<Values>| async move { s.set_expiry(Expiry::Idle(Duration::MAX)) }),
            )
            .route(
                "/forget-me",
                get(|mut s: Session<Values>| async move { s.set_expiry(None) }),
            )
            .layer(layer);
        Fixture {
            browser: Browser::new(app),
            clock,
            store,
            counted,
        }
    }

    /// Writes of the session so far: to the store, or, for a session kept in the cookie, cookies
    /// sent (each is the whole session written again). Counted only on a
    /// [`counted`](Self::counted) fixture: a layer on `MemoryStore` itself bypasses the counters.
    fn writes(&self) -> usize {
        assert!(self.counted, "Fixture::writes needs a Fixture::counted");
        match &self.store {
            Some(store) => store.writes(),
            None => self.browser.cookies_received,
        }
    }
}

async fn idle_timeout_sets_max_age_and_ends_an_idle_session() {
    let mut f = Fixture::new(|layer| layer.with_expiry(Expiry::Idle(30 * MINUTE)));
    let login = f.browser.get("/login").await;
    assert_eq!(login.max_age_secs(), Some(30 * 60));

    f.clock.advance(29 * MINUTE);
    assert_eq!(f.browser.get("/user").await.body, "ada");
    f.clock.advance(29 * MINUTE);
    assert_eq!(
        f.browser.get("/user").await.body,
        "ada",
        "activity keeps the session alive"
    );
    f.clock.advance(31 * MINUTE);
    assert_eq!(f.browser.get("/user").await.body, "", "30 idle minutes end it");
}

async fn an_unchanged_request_touches_only_after_half_the_window() {
    let mut f = Fixture::counted(|layer| layer.with_expiry(Expiry::Idle(60 * MINUTE)));
    f.browser.get("/login").await;
    let after_login = f.writes();

    for _ in 0..5 {
        f.clock.advance(5 * MINUTE);
        let reply = f.browser.get("/user").await;
        assert!(reply.set_cookie.is_empty(), "no Set-Cookie before half the window");
    }
    assert_eq!(
        f.writes(),
        after_login,
        "read-only requests in the first half must not write"
    );

    f.clock.advance(6 * MINUTE); // 31 minutes since the last write
    let touched = f.browser.get("/user").await;
    assert_eq!(f.writes(), after_login + 1, "past half the window, one touch");
    assert_eq!(touched.max_age_secs(), Some(60 * 60), "the touch renews the cookie");

    f.clock.advance(MINUTE);
    f.browser.get("/user").await;
    assert_eq!(
        f.writes(),
        after_login + 1,
        "the touch reset the clock for the next one"
    );
}

async fn touch_fraction_is_configurable() {
    let mut f = Fixture::counted(|layer| layer.with_expiry(Expiry::Idle(60 * MINUTE)).with_touch_after(0.0));
    f.browser.get("/login").await;
    let after_login = f.writes();
    for round in 1..=3 {
        f.clock.advance(Duration::from_secs(1));
        f.browser.get("/user").await;
        assert_eq!(
            f.writes(),
            after_login + round,
            "touch_after(0.0) touches on every request"
        );
    }
}

async fn max_lifetime_caps_the_session_whatever_its_activity() {
    let mut f = Fixture::new(|layer| {
        layer
            .with_expiry(Expiry::Idle(60 * MINUTE))
            .with_max_lifetime(90 * MINUTE)
            .with_touch_after(0.0)
    });
    f.browser.get("/login").await;
    f.clock.advance(45 * MINUTE);
    let reply = f.browser.get("/user").await;
    assert_eq!(reply.body, "ada");
    assert_eq!(reply.max_age_secs(), Some(45 * 60), "the cookie never outlives the cap");

    for _ in 0..4 {
        f.clock.advance(10 * MINUTE);
        assert_eq!(f.browser.get("/user").await.body, "ada");
    }
    f.clock.advance(6 * MINUTE); // 91 minutes since login, last request 6 minutes ago
    assert_eq!(
        f.browser.get("/user").await.body,
        "",
        "rolling must not extend past the cap"
    );
}

async fn browser_session_cookies_have_no_max_age() {
    let mut f = Fixture::new(|layer| layer.with_expiry(Expiry::BrowserSession));
    let login = f.browser.get("/login").await;
    let cookie = login.session_cookie().unwrap();
    assert_eq!(cookie.max_age(), None);
    assert_eq!(cookie.expires(), None);
    f.clock.advance(typed_sessions::BROWSER_SESSION_IDLE + MINUTE);
    assert_eq!(
        f.browser.get("/user").await.body,
        "",
        "the server forgets an idle browser session too"
    );
}

async fn remember_me_is_persisted_with_the_session_and_sets_max_age() {
    let mut f = Fixture::new(|layer| layer.with_expiry(Expiry::Idle(30 * MINUTE)));
    f.browser.get("/login").await;
    let reply = f.browser.get("/remember-me").await;
    assert_eq!(reply.body, format!("{:?}", Expiry::Idle(30 * DAY)));
    assert_eq!(reply.max_age_secs(), Some(30 * 24 * 60 * 60));

    f.clock.advance(10 * DAY);
    assert_eq!(
        f.browser.get("/user").await.body,
        "ada",
        "the override outlives the layer's 30 minutes"
    );
    f.clock.advance(16 * DAY); // past half of 30 days since the last write: a touch
    let touched = f.browser.get("/user").await;
    assert_eq!(
        touched.max_age_secs(),
        Some(30 * 24 * 60 * 60),
        "touches use the stored override"
    );

    f.browser.get("/forget-me").await;
    f.clock.advance(31 * MINUTE);
    assert_eq!(
        f.browser.get("/user").await.body,
        "",
        "back on the layer's idle timeout"
    );
}

/// Client-side, the same test is a browser that replays its cookie past the cookie's expiry: the
/// expiry inside the cookie decides, not what the browser kept.
async fn an_expired_record_is_not_served_even_if_the_store_still_has_it() {
    let mut f = Fixture::new(|layer| layer.with_expiry(Expiry::Idle(MINUTE)));
    f.browser.get("/login").await;
    f.clock.advance(2 * MINUTE);
    if let Some(store) = &f.store {
        assert_eq!(store.inner.len(), 1, "the store has not swept it");
    }
    assert!(f.browser.cookie.is_some(), "the browser still sends its cookie");
    assert_eq!(f.browser.get("/user").await.body, "");
}

async fn switching_to_a_browser_session_replaces_the_persistent_cookie() {
    let mut f = Fixture::new(|layer| layer.with_expiry(Expiry::Idle(30 * MINUTE)));
    f.browser.get("/login").await;
    let reply = f.browser.get("/browser-session").await;
    let cookie = reply.session_cookie().expect("a new cookie without Max-Age");
    assert_eq!(cookie.max_age(), None);

    let mut g = Fixture::new(|layer| layer.with_expiry(Expiry::BrowserSession));
    g.browser.get("/login").await;
    g.browser.get("/remember-me").await;
    let forget = g.browser.get("/forget-me").await;
    assert_eq!(
        forget.session_cookie().expect("forget-me resets the cookie").max_age(),
        None
    );
}

async fn an_idle_timeout_of_duration_max_means_never_and_does_not_panic() {
    let mut f = Fixture::new(|layer| {
        layer
            .with_expiry(Expiry::Idle(30 * MINUTE))
            .with_max_lifetime(Duration::MAX)
    });
    f.browser.get("/login").await;
    let reply = f.browser.get("/forever").await;
    assert_eq!(reply.status, axum::http::StatusCode::OK);
    f.clock.advance(10 * 365 * DAY);
    assert_eq!(f.browser.get("/user").await.body, "ada");
}

/// A request's time is when it loaded the session: a session live when the request arrived is
/// renewed by it, even if its expiry passes while the handler runs (a slow handler, here one
/// that moves the clock), and what the request wrote is kept. The memory store judges expiry by
/// the time the layer gives it, so this is the path where the request's time decides.
async fn a_request_that_arrives_in_time_renews_its_session_even_if_the_handler_outlasts_it() {
    let clock = ManualClock::new(SystemTime::now());
    let in_handler = clock.clone();
    let app = login_and_user()
        .route(
            "/slow-rename",
            get(move |mut s: Session<Values>| async move {
                in_handler.advance(5 * MINUTE);
                s.set(Values::USER, "grace".into());
            }),
        )
        .layer(
            typed_sessions_tests::fresh_layer()
                .0
                .with_clock(clock.clone())
                .with_expiry(Expiry::Idle(30 * MINUTE)),
        );
    let mut browser = Browser::new(app);
    browser.get("/login").await;

    clock.advance(29 * MINUTE);
    let renamed = browser.get("/slow-rename").await;
    assert_eq!(
        renamed.max_age_secs(),
        Some(30 * 60),
        "renewed from the request's arrival, 29 minutes after login"
    );
    // 34 minutes after login: past the expiry the session had when the request arrived.
    assert_eq!(browser.get("/user").await.body, "grace");

    clock.advance(26 * MINUTE); // 30 minutes after the slow request arrived: ended
    assert_eq!(browser.get("/user").await.body, "");
}

typed_sessions_tests::on_every_path!(
    idle_timeout_sets_max_age_and_ends_an_idle_session,
    an_unchanged_request_touches_only_after_half_the_window,
    touch_fraction_is_configurable,
    max_lifetime_caps_the_session_whatever_its_activity,
    browser_session_cookies_have_no_max_age,
    remember_me_is_persisted_with_the_session_and_sets_max_age,
    an_expired_record_is_not_served_even_if_the_store_still_has_it,
    switching_to_a_browser_session_replaces_the_persistent_cookie,
    an_idle_timeout_of_duration_max_means_never_and_does_not_panic,
    a_request_that_arrives_in_time_renews_its_session_even_if_the_handler_outlasts_it,
);
