//! Sessions in the embedded stores outlive the app: log in, shut the app and its store down,
//! start a new one on the same file or directory, and the old cookie still finds the session.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use typed_sessions::{FileStore, Session, SessionLayer, SessionSchema, SessionStore, SigningKey, SqliteStore};

#[path = "common/browser.rs"]
mod browser;
use browser::send_method as send;

#[derive(SessionSchema)]
struct Values {
    user: String,
    visits: u32,
}

async fn login(mut session: Session<Values>) -> &'static str {
    session.regenerate_id(true);
    session.set(Values::USER, "alice".to_owned());
    "logged in"
}

async fn whoami(mut session: Session<Values>) -> String {
    let visits = session.update(Values::VISITS, |visits| {
        *visits += 1;
        *visits
    });
    match session.get(Values::USER) {
        Some(user) => format!("{user} ({visits})"),
        None => "nobody".to_owned(),
    }
}

async fn logout(mut session: Session<Values>) -> &'static str {
    session.destroy();
    "logged out"
}

fn app(store: impl SessionStore) -> Router {
    // The signing key must survive the restart too, or every old cookie is rejected.
    let key = SigningKey::from_bytes(b"persistence test key: 32+ bytes long").unwrap();
    Router::new()
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(store).with_signing_keys([key]))
}

/// Logs in on `first`, and returns the session cookie.
async fn log_in(first: &Router) -> String {
    let reply = send(first, "POST", "/login", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.cookie_header().expect("login sets the session cookie");
    assert_eq!(send(first, "GET", "/whoami", Some(&cookie)).await.body, "alice (1)");
    cookie
}

/// On the restarted app: the session is there, takes changes, and a logout ends it for good.
async fn check_after_restart(second: &Router, cookie: &str) {
    let reply = send(second, "GET", "/whoami", Some(cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "alice (2)", "the session did not survive the restart");
    assert_eq!(send(second, "GET", "/whoami", Some(cookie)).await.body, "alice (3)");
    assert_eq!(send(second, "POST", "/logout", Some(cookie)).await.body, "logged out");
    assert_eq!(send(second, "GET", "/whoami", Some(cookie)).await.body, "nobody");
}

#[tokio::test]
async fn sqlite_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");

    let store = SqliteStore::open(&path).await.unwrap();
    let first = app(store.clone());
    let cookie = log_in(&first).await;
    drop(first);
    store.pool().close().await;
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    let second = app(store.clone());
    check_after_restart(&second, &cookie).await;
    drop(second);
    store.pool().close().await;
}

#[tokio::test]
async fn file_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");

    let first = app(FileStore::open(&sessions).unwrap());
    let cookie = log_in(&first).await;
    drop(first);

    let second = app(FileStore::open(&sessions).unwrap());
    check_after_restart(&second, &cookie).await;
}
