//! Side-by-side cost of a session layer: the same axum handler (read one key, write one key)
//! with no session layer, with tower-sessions, and with typed-sessions, all on their in-memory
//! stores, driven in one process through `oneshot` over 1,000 sessions, in alternating rounds.
//!
//! Each layer's overhead is measured against bare axum receiving the same request, `Cookie`
//! header included: building, carrying and dropping that header is the client's and the HTTP
//! stack's cost, which an app pays whether or not it has a session layer. Bare axum without the
//! header is measured too and printed, with the ratio as it was measured before that baseline.
//!
//! ```text
//! cargo run --release -p typed-sessions-bench
//! cargo run --release -p typed-sessions-bench -- --rounds 20 --requests 20000
//! ```

use std::time::Instant;

use ::tower::ServiceExt;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;

const SESSIONS: usize = 1_000;

mod typed {
    use typed_sessions::{MemoryStore, Session, SessionLayer, SessionSchema};

    #[derive(SessionSchema)]
    struct Values {
        user_id: u64,
        counter: u64,
    }

    async fn handler(mut session: Session<Values>) -> String {
        let counter = session.get(Values::COUNTER).unwrap_or(0);
        session.set(Values::COUNTER, counter + 1);
        counter.to_string()
    }

    async fn start(mut session: Session<Values>) -> &'static str {
        session.set(Values::USER_ID, 7);
        "started"
    }

    pub(crate) fn app() -> axum::Router {
        super::router(axum::routing::get(handler), axum::routing::get(start))
            .layer(SessionLayer::new(MemoryStore::new()))
    }
}

mod tower_sessions_app {
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

    async fn handler(session: Session) -> String {
        let counter: u64 = session.get("counter").await.ok().flatten().unwrap_or(0);
        let _ = session.insert("counter", counter + 1).await;
        counter.to_string()
    }

    async fn start(session: Session) -> &'static str {
        let _ = session.insert("user_id", 7u64).await;
        "started"
    }

    pub(crate) fn app() -> axum::Router {
        super::router(axum::routing::get(handler), axum::routing::get(start))
            .layer(SessionManagerLayer::new(MemoryStore::default()))
    }
}

fn router(handler: axum::routing::MethodRouter, start: axum::routing::MethodRouter) -> Router {
    Router::new().route("/", handler).route("/start", start)
}

/// What `axum::serve` does once: turn handlers into services with their state and layers.
/// Without it, `oneshot` on a `Router` re-applies every layer on every request.
fn ready(app: Router) -> Router {
    app.with_state(())
}

fn bare() -> Router {
    // The same work minus the session: parse, increment and format a number.
    router(
        get(|| async { (std::hint::black_box("7").parse::<u64>().unwrap_or(0) + 1).to_string() }),
        get(|| async { "started" }),
    )
}

/// One request, its body read to the end; returns the status and the response's headers.
async fn send(app: &Router, path: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap) {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let (parts, body) = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
        .into_parts();
    let _ = body.collect().await.unwrap();
    (parts.status, parts.headers)
}

/// The `name=value` part of the session cookie a set-up request was answered with. Measured
/// rounds do not look at `Set-Cookie`: reading it is the client's work, not the layer's.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// A cookie shaped like the session layers' own (`id=` and a 24-character id), for the bare
/// router, which ignores it.
fn bare_cookies() -> Vec<Option<String>> {
    (0..SESSIONS).map(|i| Some(format!("id={i:0>24}"))).collect()
}

struct Variant {
    name: &'static str,
    app: Router,
    cookies: Vec<Option<String>>,
    samples: Vec<f64>,
}

impl Variant {
    async fn new(name: &'static str, app: Router) -> Self {
        let mut cookies = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            let (status, headers) = send(&app, "/start", None).await;
            assert_eq!(status, StatusCode::OK);
            cookies.push(session_cookie(&headers));
        }
        Variant {
            name,
            app,
            cookies,
            samples: Vec::new(),
        }
    }

    /// `app` with the given cookies instead of the ones its `/start` would hand out.
    fn with_cookies(name: &'static str, app: Router, cookies: Vec<Option<String>>) -> Self {
        Variant {
            name,
            app,
            cookies,
            samples: Vec::new(),
        }
    }

    async fn round(&mut self, requests: usize) {
        let started = Instant::now();
        for i in 0..requests {
            let (status, _) = send(&self.app, "/", self.cookies[i % SESSIONS].as_deref()).await;
            debug_assert_eq!(status, StatusCode::OK);
        }
        self.samples.push(started.elapsed().as_nanos() as f64 / requests as f64);
    }

    fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = arg("--rounds", 15);
    let requests = arg("--requests", 20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // `--only bare|bare-cookie|tower|typed`: one variant, one round, no report — for counting instructions
    // under callgrind, where the difference between two request counts is the cost per request.
    let args: Vec<String> = std::env::args().collect();
    if let Some(only) = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)) {
        runtime.block_on(async {
            let mut variant = match only.as_str() {
                "bare" => Variant::new("only", ready(bare())).await,
                "bare-cookie" => Variant::with_cookies("only", ready(bare()), bare_cookies()),
                "tower" => Variant::new("only", ready(tower_sessions_app::app())).await,
                "typed" => Variant::new("only", ready(typed::app())).await,
                other => panic!("--only takes bare, bare-cookie, tower or typed, not {other}"),
            };
            variant.round(requests).await;
        });
        return;
    }
    runtime.block_on(async {
        let mut variants = vec![
            Variant::with_cookies("bare axum", ready(bare()), bare_cookies()),
            Variant::new("tower-sessions 0.15", ready(tower_sessions_app::app())).await,
            Variant::new("typed-sessions", ready(typed::app())).await,
            Variant::new("bare axum, no Cookie", ready(bare())).await,
        ];
        // Sanity: both session layers really carry a session across requests.
        for variant in &variants[1..3] {
            let cookie = variant.cookies[0].as_deref();
            assert!(cookie.is_some(), "{} set no cookie", variant.name);
        }
        for variant in &mut variants {
            variant.round(requests / 4).await; // warm-up, discarded
            variant.samples.clear();
        }
        for round in 0..rounds {
            // Alternate the order so drift (thermal, other load) hits every variant alike.
            let order: Vec<usize> = if round % 2 == 0 {
                vec![0, 1, 2, 3]
            } else {
                vec![3, 2, 1, 0]
            };
            for i in order {
                variants[i].round(requests).await;
            }
        }

        let bare = variants[0].median();
        println!("{rounds} rounds x {requests} requests over {SESSIONS} sessions, median ns/request:");
        for variant in &variants {
            let median = variant.median();
            println!(
                "  {:<22} {:>8.0} ns   overhead {:>7.0} ns",
                variant.name,
                median,
                median - bare
            );
        }
        // The ratio is taken within each round, whose variants ran back to back, and the median
        // of those is reported: on a shared machine the speed of a whole round drifts (bare axum
        // alone has measured anywhere from 1.5 to 2.7 µs), which a ratio of medians taken from
        // different rounds would mix in.
        let median_ratio = |baseline: usize| {
            let mut ratios: Vec<f64> = (0..rounds)
                .map(|r| {
                    let bare = variants[baseline].samples[r];
                    100.0 * (variants[2].samples[r] - bare) / (variants[1].samples[r] - bare)
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            (ratios[ratios.len() / 2], ratios[0], ratios[ratios.len() - 1])
        };
        let (median, low, high) = median_ratio(0);
        println!(
            "typed-sessions overhead / tower-sessions overhead, median of rounds = {median:.1}% \
             (rounds {low:.1}-{high:.1}%; target <= 25%)"
        );
        let (median, low, high) = median_ratio(3);
        println!("  (against bare axum without the Cookie header: {median:.1}%, rounds {low:.1}-{high:.1}%)");
    });
}
