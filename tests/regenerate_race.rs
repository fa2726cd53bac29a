//! `regenerate_id` never brings back a session ended while it runs, on every store: a store
//! wrapper stops the regenerating request's save between its read of the old record and its
//! create of the new one, a logout ends the session right there, and the save then goes on.
//! The interleaving is forced, not hoped for with a sleep.

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;
use tokio::sync::Notify;
use typed_sessions::store::{Applied, Changes, Created, Record, SessionStore, StoreError, StoreKey};
use typed_sessions::{
    FileStore, MemoryStore, PostgresStore, RedisStore, Session, SessionLayer, SessionSchema, SqliteStore,
};
use typed_sessions_tests::{init_tracing, PostgresServer, RedisServer};

#[path = "common/browser.rs"]
mod browser;
use browser::send;

#[derive(SessionSchema)]
struct Values {
    user: String,
    visits: u32,
}

/// A store that, once armed, stops its next `create` until resumed, and remembers the keys it
/// created.
struct PausingStore<S> {
    inner: S,
    pause: Mutex<Option<Pause>>,
    created: Mutex<Vec<StoreKey>>,
}

#[derive(Clone, Default)]
struct Pause {
    reached: Arc<Notify>,
    resume: Arc<Notify>,
}

impl<S> PausingStore<S> {
    fn new(inner: S) -> Self {
        PausingStore {
            inner,
            pause: Mutex::new(None),
            created: Mutex::new(Vec::new()),
        }
    }

    fn arm(&self) -> Pause {
        let pause = Pause::default();
        *self.pause.lock() = Some(pause.clone());
        pause
    }
}

impl<S: SessionStore> SessionStore for PausingStore<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.inner.load(key).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        let pause = self.pause.lock().take();
        if let Some(pause) = pause {
            pause.reached.notify_one();
            pause.resume.notified().await;
        }
        self.created.lock().push(*key);
        self.inner.create(key, record).await
    }
    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        self.inner.apply(key, changes).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
}

fn app(store: Arc<PausingStore<impl SessionStore>>, delete_old: bool) -> Router {
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
        let store = Arc::new(PausingStore::new(Arc::clone(&store)));
        let app = app(store.clone(), delete_old);
        let cookie = send(&app, "/login", None)
            .await
            .cookie_header()
            .expect("login sets a cookie");

        let pause = store.arm();
        let regenerating = tokio::spawn({
            let (app, cookie) = (app.clone(), cookie.clone());
            async move { send(&app, "/regenerate", Some(&cookie)).await }
        });
        pause.reached.notified().await;
        let logout = send(&app, "/logout", Some(&cookie)).await;
        assert_eq!(
            logout.cookie_header().as_deref(),
            Some("id="),
            "the logout removes the cookie"
        );
        pause.resume.notify_one();
        let regenerated = regenerating.await.unwrap();

        assert_eq!(regenerated.status, StatusCode::OK);
        assert!(
            regenerated.session_cookie().is_none(),
            "regenerate_id({delete_old}) sent a cookie for a session ended meanwhile: {:?}",
            regenerated.set_cookie
        );
        let created = store
            .created
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
