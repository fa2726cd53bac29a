//! `regenerate_id` never brings back a session ended while it runs, on every store: the test
//! store wrapper stops the regenerating request's save between its read of the old record and its
//! create of the new one, a logout ends the session right there, and the save then goes on.
//! The interleaving is forced, not hoped for with a sleep.

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use typed_sessions::store::SessionStore;
use typed_sessions::{
    FileStore, MemoryStore, PostgresStore, RedisStore, Session, SessionLayer, SessionSchema, SqliteStore,
};
use typed_sessions_tests::{init_tracing, PostgresServer, RedisServer, TestStore};

#[path = "common/browser.rs"]
mod browser;
use browser::send;

#[derive(SessionSchema)]
struct Values {
    user: String,
    visits: u32,
}

fn app(store: Arc<TestStore<impl SessionStore>>, delete_old: bool) -> Router {
    Router::new()
        .route(
            "/login",
            get(|mut s: Session<Values>| async move { s.set(Values::USER, "ada".to_owned()) }),
        )
        .route(
            "/regenerate",
            get(move |mut s: Session<Values>| async move {
                s.regenerate_id(delete_old);
                s.set(Values::VISITS, 5);
            }),
        )
        .route("/logout", get(|mut s: Session<Values>| async move { s.destroy() }))
        .route(
            "/whoami",
            get(|s: Session<Values>| async move { s.get(Values::USER).unwrap_or_default() }),
        )
        .layer(SessionLayer::new(store).with_secure(false))
}

/// A login, then a `regenerate_id` whose save is stopped after reading the old record; a logout
/// ends the session meanwhile; the save goes on. The session must stay ended: no cookie for the
/// new id, no record under it, nothing under the old one.
async fn the_logout_stands(store: impl SessionStore) {
    let store = Arc::new(store);
    for delete_old in [true, false] {
        let store = Arc::new(TestStore::wrapping(Arc::clone(&store)));
        let app = app(store.clone(), delete_old);
        let cookie = send(&app, "/login", None)
            .await
            .cookie_header()
            .expect("login sets a cookie");

        let (create_arrived, create_release) = store.create_gate.arm();
        let regenerating = tokio::spawn({
            let (app, cookie) = (app.clone(), cookie.clone());
            async move { send(&app, "/regenerate", Some(&cookie)).await }
        });
        create_arrived.await.unwrap();
        let logout = send(&app, "/logout", Some(&cookie)).await;
        assert_eq!(
            logout.cookie_header().as_deref(),
            Some("id="),
            "the logout removes the cookie"
        );
        create_release.send(()).unwrap();
        let regenerated = regenerating.await.unwrap();

        assert_eq!(regenerated.status, StatusCode::OK);
        assert!(
            regenerated.session_cookie().is_none(),
            "regenerate_id({delete_old}) sent a cookie for a session ended meanwhile: {:?}",
            regenerated.set_cookie
        );
        let created = store
            .created_keys
            .lock()
            .last()
            .copied()
            .expect("the move created its record");
        assert!(
            store.inner.load(&created).await.unwrap().is_none(),
            "regenerate_id({delete_old}) brought the ended session back under its new id"
        );
        assert_eq!(
            send(&app, "/whoami", Some(&cookie)).await.body,
            "",
            "the old id lives on"
        );
    }
}

fn run(test: impl Future<Output = ()>) {
    init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

#[test]
fn memory_store() {
    run(the_logout_stands(MemoryStore::new()));
}

#[test]
fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    run(async { the_logout_stands(SqliteStore::open(dir.path().join("sessions.db")).await.unwrap()).await });
}

#[test]
fn file_store() {
    let dir = tempfile::tempdir().unwrap();
    run(the_logout_stands(FileStore::open(dir.path()).unwrap()));
}

#[test]
fn redis_store() {
    run(async {
        let Some(redis) = RedisServer::start().await else {
            return;
        };
        the_logout_stands(RedisStore::connect(&redis.url()).await.unwrap()).await;
    });
}

#[test]
fn postgres_store() {
    run(async {
        let Some(postgres) = PostgresServer::start().await else {
            return;
        };
        the_logout_stands(PostgresStore::connect(&postgres.url()).await.unwrap()).await;
    });
}
