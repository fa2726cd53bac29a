//! Sessions in the embedded stores outlive the app: log in, shut the app and its store down,
//! start a new one on the same file or directory, and the old cookie still finds the session.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use typed_sessions::{FileStore, Session, SessionLayer, SessionSchema, SessionStore, SigningKey, SqliteStore};

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

struct Reply {
    status: StatusCode,
    body: String,
    /// `name=value` of the session cookie the response set, if it set one.
    cookie: Option<String>,
}

async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| cookie::Cookie::parse(value.to_str().ok()?.to_owned()).ok())
        .find(|c| c.name() == "id")
        .map(|c| format!("{}={}", c.name(), c.value()));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        cookie,
    }
}

/// Logs in on `first`, and returns the session cookie.
async fn log_in(first: &Router) -> String {
    let reply = send(first, "POST", "/login", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.cookie.expect("login sets the session cookie");
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
