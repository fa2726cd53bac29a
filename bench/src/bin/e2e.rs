//! The end-to-end benchmark's server: one variant — bare axum, typed-sessions, tower-sessions
//! 0.14, or (Redis only) the floor: bare axum plus one redis-rs `GET` per request — on one store,
//! served by `axum::serve` on a loopback port. `bench/e2e.py` starts it once per measurement and
//! drives it with `wrk`; see BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p typed-sessions-bench --features e2e --bin e2e -- \
//!     --variant typed --store redis --url redis://127.0.0.1:6379 --workload read-write \
//!     --port 3000 --sessions 1000 --cookies /tmp/cookies.txt
//! ```
//!
//! Before it listens it creates `--sessions` sessions (user id and counter set) through its own
//! router and writes their `Cookie` header values to `--cookies`, one per line, for `wrk` to send
//! round-robin. The bare variant writes cookies of the same shape, which it ignores; the floor
//! writes cookies of that shape too, and stores a record under each directly in Redis.

use std::path::PathBuf;

use ::tower::ServiceExt;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request};
use axum::routing::{get, MethodRouter};
use axum::Router;
use http_body_util::BodyExt;

/// What one server runs, from its command line.
struct Args {
    variant: String,
    store: String,
    /// Redis or PostgreSQL URL; the SQLite file's path.
    url: String,
    read_only: bool,
    /// `--workload locked-read-write`: read-write, typed-sessions' handler taking a
    /// `LockedSession` (the others have no lock and serve read-write).
    locked: bool,
    port: u16,
    sessions: usize,
    cookies: PathBuf,
    /// With `--keys N`: sessions of N 100-byte keys, of which each request reads one (and the
    /// read-write workload writes it back changed).
    keys: Option<usize>,
}

impl Args {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| -> Option<String> {
            args.iter()
                .position(|arg| arg == name)
                .and_then(|at| args.get(at + 1))
                .cloned()
        };
        let required = |name: &str| value(name).unwrap_or_else(|| panic!("{name} is required"));
        let workload = value("--workload").unwrap_or_else(|| "read-write".to_owned());
        assert!(
            ["read-write", "read-only", "locked-read-write"].contains(&workload.as_str()),
            "--workload is read-write, read-only or locked-read-write, not {workload}"
        );
        Args {
            variant: required("--variant"),
            store: value("--store").unwrap_or_else(|| "memory".to_owned()),
            url: value("--url").unwrap_or_default(),
            read_only: workload == "read-only",
            locked: workload == "locked-read-write",
            port: required("--port").parse().expect("--port is a number"),
            sessions: value("--sessions").map_or(1_000, |n| n.parse().expect("--sessions is a number")),
            cookies: required("--cookies").into(),
            keys: value("--keys").map(|n| n.parse().expect("--keys is a number")),
        }
    }
}

/// The handler's work minus the session, as in the in-process benchmark.
async fn bare_work() -> String {
    (std::hint::black_box("7").parse::<u64>().unwrap_or(0) + 1).to_string()
}

fn router(handler: MethodRouter, start: MethodRouter) -> Router {
    Router::new().route("/", handler).route("/start", start)
}

/// Sessions of many keys (`--keys N`), built by `build.rs`.
mod wide {
    include!(concat!(env!("OUT_DIR"), "/wide.rs"));

    /// A value whose JSON is 100 bytes.
    pub(crate) fn padding() -> String {
        "x".repeat(98)
    }

    /// `value` with its first character changed: what the read-write workload writes back into
    /// a session of many keys (same size, different text).
    pub(crate) fn changed(value: Option<String>) -> String {
        let value = value.unwrap_or_else(padding);
        let next = if value.starts_with('x') { 'y' } else { 'x' };
        std::iter::once(next).chain(value.chars().skip(1)).collect()
    }
}

mod typed {
    use typed_sessions::{
        LockedSession, MemoryStore, PostgresStore, RedisStore, Session, SessionLayer, SessionSchema, SqliteStore,
    };

    use super::wide::{changed, padding, Wide, WIDE_KEYS};
    use super::Args;

    #[derive(SessionSchema)]
    struct Values {
        user_id: u64,
        counter: u64,
    }

    async fn read_write(mut session: Session<Values>) -> String {
        let counter = session.get(Values::COUNTER).unwrap_or(0);
        session.set(Values::COUNTER, counter + 1);
        counter.to_string()
    }

    async fn read_only(session: Session<Values>) -> String {
        session.get(Values::COUNTER).unwrap_or(0).to_string()
    }

    async fn locked_read_write(mut session: LockedSession<Values>) -> String {
        let counter = session.get(Values::COUNTER).unwrap_or(0);
        session.set(Values::COUNTER, counter + 1);
        counter.to_string()
    }

    async fn start(mut session: Session<Values>) -> &'static str {
        session.set(Values::USER_ID, 7);
        session.set(Values::COUNTER, 0);
        "started"
    }

    async fn read_one_of_many(session: Session<Wide>) -> String {
        session.get(WIDE_KEYS[0]).map_or(0, |value| value.len()).to_string()
    }

    async fn write_one_of_many(mut session: Session<Wide>) -> String {
        let value = changed(session.get(WIDE_KEYS[0]));
        let len = value.len();
        session.set(WIDE_KEYS[0], value);
        len.to_string()
    }

    pub(crate) async fn app(args: &Args) -> axum::Router {
        let layer = match args.store.as_str() {
            "memory" => SessionLayer::new(MemoryStore::new()),
            "sqlite" => SessionLayer::new(SqliteStore::open(&args.url).await.expect("opening SQLite")),
            "postgres" => SessionLayer::new(
                PostgresStore::connect(&args.url)
                    .await
                    .expect("connecting to PostgreSQL"),
            ),
            "redis" => SessionLayer::new(RedisStore::connect(&args.url).await.expect("connecting to Redis")),
            other => panic!("unknown store {other}"),
        };
        let layer = layer.with_secure(false);
        if let Some(keys) = args.keys {
            let keys = keys.clamp(1, WIDE_KEYS.len());
            let start = move |mut session: Session<Wide>| async move {
                for key in &WIDE_KEYS[..keys] {
                    session.set(*key, padding());
                }
                "started"
            };
            let handler = if args.read_only {
                axum::routing::get(read_one_of_many)
            } else {
                axum::routing::get(write_one_of_many)
            };
            return super::router(handler, axum::routing::get(start)).layer(layer);
        }
        let handler = if args.read_only {
            axum::routing::get(read_only)
        } else if args.locked {
            axum::routing::get(locked_read_write)
        } else {
            axum::routing::get(read_write)
        };
        super::router(handler, axum::routing::get(start)).layer(layer)
    }
}

mod tower_app {
    use tower_sessions_014::{Expiry, MemoryStore, Session, SessionManagerLayer, SessionStore};
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};
    use typed_sessions::sqlx;

    use super::wide::{changed, padding};
    use super::Args;

    async fn read_write(session: Session) -> String {
        let counter: u64 = session.get("counter").await.ok().flatten().unwrap_or(0);
        let _ = session.insert("counter", counter + 1).await;
        counter.to_string()
    }

    async fn read_only(session: Session) -> String {
        let counter: u64 = session.get("counter").await.ok().flatten().unwrap_or(0);
        counter.to_string()
    }

    async fn start(session: Session) -> &'static str {
        let _ = session.insert("user_id", 7u64).await;
        let _ = session.insert("counter", 0u64).await;
        "started"
    }

    async fn read_one_of_many(session: Session) -> String {
        let value: Option<String> = session.get("k0").await.ok().flatten();
        value.map_or(0, |value| value.len()).to_string()
    }

    async fn write_one_of_many(session: Session) -> String {
        let value = changed(session.get("k0").await.ok().flatten());
        let len = value.len();
        let _ = session.insert("k0", value).await;
        len.to_string()
    }

    fn with_layer<S: SessionStore + Clone>(store: S, args: &Args) -> axum::Router {
        let (handler, start) = match args.keys {
            Some(keys) => {
                let start = move |session: Session| async move {
                    for i in 0..keys.clamp(1, 100) {
                        let _ = session.insert(&format!("k{i}"), padding()).await;
                    }
                    "started"
                };
                let handler = if args.read_only {
                    axum::routing::get(read_one_of_many)
                } else {
                    axum::routing::get(write_one_of_many)
                };
                (handler, axum::routing::get(start))
            }
            None if args.read_only => (axum::routing::get(read_only), axum::routing::get(start)),
            None => (axum::routing::get(read_write), axum::routing::get(start)),
        };
        // Two weeks of inactivity, as typed-sessions' default.
        let layer = SessionManagerLayer::new(store)
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(tower_sessions_014::cookie::time::Duration::days(
                14,
            )));
        super::router(handler, start).layer(layer)
    }

    pub(crate) async fn app(args: &Args) -> axum::Router {
        match args.store.as_str() {
            "memory" => with_layer(MemoryStore::default(), args),
            "sqlite" => {
                let url = format!("sqlite:{}?mode=rwc", args.url);
                let pool = sqlx::SqlitePool::connect(&url).await.expect("opening SQLite");
                let store = SqliteStore::new(pool);
                store.migrate().await.expect("creating tower-sessions' table");
                with_layer(store, args)
            }
            "postgres" => {
                let pool = sqlx::PgPool::connect(&args.url)
                    .await
                    .expect("connecting to PostgreSQL");
                let store = PostgresStore::new(pool);
                store.migrate().await.expect("creating tower-sessions' table");
                with_layer(store, args)
            }
            "redis" => {
                // As tower-sessions-redis-store's own example sets it up.
                let config = Config::from_url(&args.url).expect("a Redis URL");
                let pool = Pool::new(config, None, None, None, 6).expect("a fred pool");
                let _connection_task = pool.connect();
                pool.wait_for_connect().await.expect("connecting to Redis");
                with_layer(RedisStore::new(pool), args)
            }
            other => panic!("unknown store {other}"),
        }
    }
}

/// The least any session library on redis-rs could do per request: bare axum, plus one `GET` of
/// the key the request's cookie names (and, read-write, one `SET` back), on the same kind of
/// connection `RedisStore::connect` makes. No cookie signing, no id hashing, no record decoding,
/// no expiry check. Its requests/s over tower-sessions' bound what typed-sessions can reach on Redis.
mod floor {
    use axum::http::{header, HeaderMap};
    use typed_sessions::redis::aio::ConnectionManager;
    use typed_sessions::redis::{AsyncCommands, Client};
    use typed_sessions::RedisStore;

    use super::Args;

    /// A stored session, in the form and size `RedisStore` stores the benchmark's session in.
    const RECORD: &str =
        r#"{"created_at":"1764900000000","expires_at":"1766100000000","values":{"counter":"0","user_id":"7"}}"#;

    /// The key of the session a `name=id` cookie names.
    fn key(cookie: &str) -> String {
        format!("floor:{}", cookie.split_once('=').map_or("", |(_, id)| id))
    }

    pub(crate) async fn app(args: &Args) -> (axum::Router, Vec<String>) {
        let client = Client::open(args.url.as_str()).expect("a Redis URL");
        let mut redis = ConnectionManager::new_with_config(client, RedisStore::default_manager_config())
            .await
            .expect("connecting to Redis");
        let cookies = super::bare_cookies(args.sessions);
        for cookie in &cookies {
            let () = redis.set(key(cookie), RECORD).await.expect("storing a session");
        }
        let read_only = args.read_only;
        let handler = move |headers: HeaderMap| {
            let mut redis = redis.clone();
            async move {
                let cookie = headers.get(header::COOKIE).and_then(|value| value.to_str().ok());
                let key = key(cookie.unwrap_or(""));
                let record: Option<String> = redis.get(&key).await.expect("reading a session");
                let record = record.unwrap_or_default();
                if !read_only {
                    let () = redis.set_ex(&key, &record, 1_209_600).await.expect("writing a session");
                }
                std::hint::black_box(record);
                super::bare_work().await
            }
        };
        (
            super::router(axum::routing::get(handler), axum::routing::get(|| async { "started" })),
            cookies,
        )
    }
}

/// `count` cookies of a session cookie's shape, for the variants that keep no sessions of their
/// own making: bare axum ignores them, the floor files a record under each.
fn bare_cookies(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("id={i:0>24}")).collect()
}

/// Creates `count` sessions through `app`'s `/start` and returns their `Cookie` values.
async fn create_sessions(app: &Router, count: usize) -> Vec<String> {
    let mut cookies = Vec::with_capacity(count);
    for _ in 0..count {
        let request = Request::get("/start").body(Body::empty()).unwrap();
        let (parts, body) = app.clone().oneshot(request).await.unwrap().into_parts();
        let _ = body.collect().await.unwrap();
        assert!(parts.status.is_success(), "/start answered {}", parts.status);
        cookies.push(session_cookie(&parts.headers).expect("/start set no cookie"));
    }
    cookies
}

/// The `name=value` part of a response's `Set-Cookie`.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_owned)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut floor_cookies = None;
    let app = match args.variant.as_str() {
        "bare" => router(get(bare_work), get(|| async { "started" })),
        "typed" => typed::app(&args).await,
        "tower" => tower_app::app(&args).await,
        "floor" => {
            assert_eq!(args.store, "redis", "--variant floor is for --store redis");
            assert!(
                args.keys.is_none(),
                "--variant floor reads one small record; it takes no --keys"
            );
            let (app, cookies) = floor::app(&args).await;
            floor_cookies = Some(cookies);
            app
        }
        other => panic!("--variant is bare, typed, tower or floor, not {other}"),
    }
    .with_state(());
    let cookies = if args.variant == "bare" {
        bare_cookies(args.sessions)
    } else if let Some(cookies) = floor_cookies {
        cookies
    } else {
        create_sessions(&app, args.sessions).await
    };
    std::fs::write(&args.cookies, cookies.join("\n") + "\n").expect("writing the cookie file");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .expect("binding the port");
    axum::serve(listener, app).await.expect("serving");
}
