//! Memory per idle session in each library's in-memory store: 100,000 sessions (`--sessions N`)
//! created through each layer (one small value each, as a login leaves), and how much this
//! process's resident memory grew for them (`/proc/self/statm`; Linux only). Each library runs in
//! a process of its own, so that memory one freed cannot be reused by the other.
//!
//! ```sh
//! cargo run --release -p typed-sessions-bench --bin memory -- --variant typed
//! cargo run --release -p typed-sessions-bench --bin memory -- --variant tower
//! ```
//!
//! `--flood N --max-sessions M`: N cookieless requests to a page that writes a session (as an
//! attacker, or a crawler, would send them), against typed-sessions' `MemoryStore` bounded to M
//! sessions; prints resident memory every N/10 requests, which must stay flat once the store
//! is full.
//!
//! ```sh
//! cargo run --release -p typed-sessions-bench --bin memory -- --flood 1000000 --max-sessions 100000
//! ```

use ::tower::ServiceExt;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;

/// This process's resident memory, in bytes.
fn resident_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm (Linux only)");
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0
}

mod typed {
    use typed_sessions::{MemoryStore, Session, SessionLayer, SessionSchema};

    #[derive(SessionSchema)]
    struct Values {
        user_id: u64,
    }

    async fn login(mut session: Session<Values>) -> &'static str {
        session.set(Values::USER_ID, 7);
        "ok"
    }

    pub(crate) fn app() -> axum::Router {
        bounded_app(MemoryStore::new())
    }

    pub(crate) fn bounded_app(store: MemoryStore) -> axum::Router {
        axum::Router::new()
            .route("/login", axum::routing::get(login))
            .layer(SessionLayer::new(store))
    }
}

mod tower_sessions_app {
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

    async fn login(session: Session) -> &'static str {
        let _ = session.insert("user_id", 7u64).await;
        "ok"
    }

    pub(crate) fn app() -> axum::Router {
        axum::Router::new()
            .route("/login", axum::routing::get(login))
            .layer(SessionManagerLayer::new(MemoryStore::default()))
    }
}

/// Resident bytes added per session by `sessions` logins through `app`.
async fn bytes_per_session(app: Router, sessions: usize) -> f64 {
    let app = app.with_state(());
    // A few requests first, so that what the router and layer allocate once is not counted.
    for _ in 0..100 {
        login(&app).await;
    }
    let before = resident_bytes();
    for _ in 0..sessions {
        login(&app).await;
    }
    (resident_bytes() - before) / sessions as f64
}

async fn login(app: &Router) {
    let request = Request::get("/login").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let _ = response.into_body().collect().await.unwrap();
}

/// Resident memory every tenth of `requests` cookieless writing requests to `app`.
async fn flood(app: Router, requests: usize) {
    let app = app.with_state(());
    let start = resident_bytes();
    for sent in 1..=requests {
        login(&app).await;
        if sent % (requests / 10).max(1) == 0 {
            let mib = resident_bytes() / (1024.0 * 1024.0);
            println!(
                "{sent:>9} requests: {mib:7.1} MiB resident ({:+.1} MiB)",
                mib - start / (1024.0 * 1024.0)
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1));
    if let Some(requests) = value("--flood") {
        let requests: usize = requests.parse().expect("--flood is a number");
        let max = value("--max-sessions").map_or(100_000, |n| n.parse().expect("--max-sessions is a number"));
        let app = typed::bounded_app(typed_sessions::MemoryStore::with_max_sessions(max));
        println!("{requests} cookieless writing requests, MemoryStore::with_max_sessions({max})");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(flood(app, requests));
        return;
    }
    let sessions = value("--sessions").map_or(100_000, |n| n.parse().expect("--sessions is a number"));
    let variant = value("--variant").map_or("typed", String::as_str);
    let app = match variant {
        "bare" => Router::new().route("/login", get(|| async { "ok" })),
        "tower" => tower_sessions_app::app(),
        "typed" => typed::app(),
        other => panic!("--variant is bare, tower or typed, not {other}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let bytes = runtime.block_on(bytes_per_session(app, sessions));
    println!("{variant}: {bytes:.0} resident bytes per idle session ({sessions} sessions, one value each)");
}
