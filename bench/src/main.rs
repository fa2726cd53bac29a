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
//! # variants interleaved in batches of 1,000 requests (colder caches, steadier rounds)
//! cargo run --release -p typed-sessions-bench -- --batch 1000
//! # also: any layer at all, typed-sessions' layer alone, a session taken but untouched
//! cargo run --release -p typed-sessions-bench -- --breakdown
//! # one session instead of 1,000: its data stays in the CPU's nearest caches
//! cargo run --release -p typed-sessions-bench -- --sessions 1
//! # one variant, for callgrind; `typed-read` / `tower-read` read one key of `--keys N`
//! cargo run --release -p typed-sessions-bench -- --only typed-read --keys 100 --requests 2000
//! # a Cookie header of 5,000 forged signed `id=` pairs, to bare axum and to a signing layer
//! cargo run --release -p typed-sessions-bench -- --only typed-forged --requests 200
//! ```

use std::time::{Duration, Instant};

use ::tower::ServiceExt;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;

/// How many sessions each variant serves round-robin: `--sessions N`, 1,000 by default. With
/// one, a session's data never leaves the CPU's nearest caches; with many, each request finds it
/// cold, as a server with many users would.
fn sessions() -> usize {
    arg("--sessions", 1_000).max(1)
}

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

    /// The same read and write with the session's lock held (`LockedSession`).
    async fn locked_handler(mut session: typed_sessions::LockedSession<Values>) -> String {
        let counter = session.get(Values::COUNTER).unwrap_or(0);
        session.set(Values::COUNTER, counter + 1);
        counter.to_string()
    }

    pub(crate) fn app_locked() -> axum::Router {
        with_layer(axum::routing::get(locked_handler))
    }

    /// Takes the session, reads and writes nothing: the cost of loading and saving alone.
    async fn untouched(_session: Session<Values>) -> String {
        super::bare_work().await
    }

    pub(crate) fn app() -> axum::Router {
        with_layer(axum::routing::get(handler))
    }

    /// The layer in place, the handler taking no session: what every other route of an app pays.
    pub(crate) fn app_layer_only() -> axum::Router {
        with_layer(axum::routing::get(super::bare_work))
    }

    pub(crate) fn app_untouched() -> axum::Router {
        with_layer(axum::routing::get(untouched))
    }

    /// The same handler on client-side sessions: the session opened from and sealed into the
    /// cookie on every request (each request here writes).
    pub(crate) fn app_client_side() -> axum::Router {
        let key = typed_sessions::EncryptionKey::from_bytes(&[7; 32]).expect("32 bytes is long enough");
        super::router(axum::routing::get(handler), axum::routing::get(start)).layer(SessionLayer::client_side([key]))
    }

    /// The same handler behind a layer that signs its cookies with two keys (a rotation), for
    /// requests whose `Cookie` header carries thousands of forged `id=` pairs.
    pub(crate) fn app_signed() -> axum::Router {
        let keys = [[1; 32], [2; 32]].map(|secret| typed_sessions::SigningKey::from_bytes(&secret).expect("32 bytes"));
        super::router(axum::routing::get(handler), axum::routing::get(start))
            .layer(SessionLayer::new(MemoryStore::new()).with_signing_keys(keys))
    }

    fn with_layer(handler: axum::routing::MethodRouter) -> axum::Router {
        super::router(handler, axum::routing::get(start)).layer(SessionLayer::new(MemoryStore::new()))
    }
}

/// How many forged `id=` pairs the `*-forged` variants send in one `Cookie` header.
const FORGED_PAIRS: usize = 5_000;

/// A `Cookie` header of `FORGED_PAIRS` pairs shaped like `signed`, a real signed session cookie
/// (`id=<value>`), each with a signature that does not verify: what an attacker sends to make
/// the layer check signatures until it gives up.
fn forged_cookie_header(signed: &str) -> String {
    let (name, value) = signed.split_once('=').expect("name=value");
    let forged: Vec<String> = (0..FORGED_PAIRS)
        .map(|i| {
            let keep = value.len() - 6;
            format!("{name}={}{i:06}", &value[..keep])
        })
        .collect();
    forged.join("; ")
}

/// The forged header for the bare router and the signing layer alike.
async fn forged_cookies() -> Vec<Option<String>> {
    let (_, headers) = send(&typed::app_signed(), "/start", None).await;
    let signed = session_cookie(&headers).expect("the signing layer sets a cookie");
    vec![Some(forged_cookie_header(&signed))]
}

/// Sessions of many keys (`--keys N`, 1 to 100, each a 100-byte JSON string), of which a
/// request reads one: what reading a key costs as a session grows.
mod wide {
    use typed_sessions::{MemoryStore, Session, SessionLayer};

    include!(concat!(env!("OUT_DIR"), "/wide.rs"));

    /// A value whose JSON is 100 bytes.
    pub(crate) fn padding() -> String {
        "x".repeat(98)
    }

    pub(crate) fn keys() -> usize {
        super::arg("--keys", 1).clamp(1, WIDE_KEYS.len())
    }

    async fn read_typed(session: Session<Wide>) -> String {
        session.get(WIDE_KEYS[0]).map_or(0, |value| value.len()).to_string()
    }

    async fn start_typed(mut session: Session<Wide>) -> &'static str {
        for key in &WIDE_KEYS[..keys()] {
            session.set(*key, padding());
        }
        "started"
    }

    pub(crate) fn typed_app() -> axum::Router {
        super::router(axum::routing::get(read_typed), axum::routing::get(start_typed))
            .layer(SessionLayer::new(MemoryStore::new()))
    }

    async fn read_tower(session: tower_sessions::Session) -> String {
        let value: Option<String> = session.get("k0").await.ok().flatten();
        value.map_or(0, |value| value.len()).to_string()
    }

    async fn start_tower(session: tower_sessions::Session) -> &'static str {
        for i in 0..keys() {
            let _ = session.insert(&format!("k{i}"), padding()).await;
        }
        "started"
    }

    pub(crate) fn tower_app() -> axum::Router {
        super::router(axum::routing::get(read_tower), axum::routing::get(start_tower)).layer(
            tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default()),
        )
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

/// The handler's work minus the session: parse, increment and format a number.
async fn bare_work() -> String {
    (std::hint::black_box("7").parse::<u64>().unwrap_or(0) + 1).to_string()
}

fn bare() -> Router {
    router(get(bare_work), get(|| async { "started" }))
}

/// Bare axum under a layer that does nothing: what wrapping the routes in any layer costs
/// (`Router::layer` boxes each route once more).
fn any_layer() -> Router {
    bare().layer(::tower::layer::util::Identity::new())
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
    (0..sessions()).map(|i| Some(format!("id={i:0>24}"))).collect()
}

struct Variant {
    name: &'static str,
    app: Router,
    cookies: Vec<Option<String>>,
    next_session: usize,
    /// ns/request, one per round.
    samples: Vec<f64>,
}

impl Variant {
    async fn new(name: &'static str, app: Router) -> Self {
        let mut cookies = Vec::with_capacity(sessions());
        for _ in 0..sessions() {
            let (status, headers) = send(&app, "/start", None).await;
            assert_eq!(status, StatusCode::OK);
            cookies.push(session_cookie(&headers));
        }
        Self::with_cookies(name, app, cookies)
    }

    /// `app` with the given cookies instead of the ones its `/start` would hand out.
    fn with_cookies(name: &'static str, app: Router, cookies: Vec<Option<String>>) -> Self {
        Variant {
            name,
            app,
            cookies,
            next_session: 0,
            samples: Vec::new(),
        }
    }

    /// Serves `requests` requests, going on through the sessions where the last call stopped;
    /// returns the time they took.
    async fn serve(&mut self, requests: usize) -> Duration {
        let started = Instant::now();
        for _ in 0..requests {
            let cookie = self.cookies[self.next_session % self.cookies.len()].as_deref();
            self.next_session += 1;
            let (status, _) = send(&self.app, "/", cookie).await;
            debug_assert_eq!(status, StatusCode::OK);
        }
        started.elapsed()
    }

    fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
}

/// One round: every variant serves `requests` requests, in batches of `batch` taken in turn
/// (one batch each when `batch >= requests`). Each variant's time for the round is one sample.
///
/// Small batches spread the machine's drift (this VM's speed wanders by tens of percent over
/// seconds) evenly over the variants, but also leave each variant's sessions cold in the caches
/// when its next batch starts, as other traffic would on a real server: they measure a colder
/// request than whole rounds do.
async fn round(variants: &mut [Variant], requests: usize, batch: usize, round: usize) {
    let mut spent = vec![Duration::ZERO; variants.len()];
    let mut served = 0;
    let mut turn = round;
    while served < requests {
        let size = batch.min(requests - served);
        // Alternate the order, so that no variant always runs right after the same other one.
        let order: Vec<usize> = if turn.is_multiple_of(2) {
            (0..variants.len()).collect()
        } else {
            (0..variants.len()).rev().collect()
        };
        for i in order {
            spent[i] += variants[i].serve(size).await;
        }
        served += size;
        turn += 1;
    }
    for (variant, spent) in variants.iter_mut().zip(spent) {
        variant.samples.push(spent.as_nanos() as f64 / requests as f64);
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
    // By default a variant serves its whole round in one go, as every earlier result in
    // BENCHMARKS.md was measured; `--batch` interleaves the variants in smaller batches.
    let batch = arg("--batch", requests).max(1);
    let args: Vec<String> = std::env::args().collect();
    let breakdown = args.iter().any(|a| a == "--breakdown");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // `--only <variant>`: one variant, one round, no report — for counting instructions under
    // callgrind, where the difference between two request counts is the cost per request.
    if let Some(only) = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)) {
        runtime.block_on(async {
            let mut variant = match only.as_str() {
                "bare" => Variant::new("only", ready(bare())).await,
                "bare-cookie" => Variant::with_cookies("only", ready(bare()), bare_cookies()),
                "tower" => Variant::new("only", ready(tower_sessions_app::app())).await,
                "typed" => Variant::new("only", ready(typed::app())).await,
                "any-layer" => Variant::with_cookies("only", ready(any_layer()), bare_cookies()),
                "typed-layer-only" => Variant::new("only", ready(typed::app_layer_only())).await,
                "typed-untouched" => Variant::new("only", ready(typed::app_untouched())).await,
                "typed-client-side" => Variant::new("only", ready(typed::app_client_side())).await,
                "typed-locked" => Variant::new("only", ready(typed::app_locked())).await,
                "bare-forged" => Variant::with_cookies("only", ready(bare()), forged_cookies().await),
                "typed-forged" => Variant::with_cookies("only", ready(typed::app_signed()), forged_cookies().await),
                "typed-read" => Variant::new("only", ready(wide::typed_app())).await,
                "tower-read" => Variant::new("only", ready(wide::tower_app())).await,
                other => panic!(
                    "--only takes bare, bare-cookie, tower, typed, any-layer, typed-layer-only, \
                     typed-untouched, typed-client-side, typed-locked, bare-forged, typed-forged, typed-read \
                     or tower-read, not {other}"
                ),
            };
            variant.serve(requests).await;
        });
        return;
    }
    runtime.block_on(async {
        let mut variants = vec![
            Variant::with_cookies("bare axum", ready(bare()), bare_cookies()),
            Variant::new("tower-sessions 0.15", ready(tower_sessions_app::app())).await,
            Variant::new("typed-sessions", ready(typed::app())).await,
            Variant::new("bare axum, no Cookie", ready(bare())).await,
            Variant::new("typed, client-side", ready(typed::app_client_side())).await,
            Variant::new("typed, LockedSession", ready(typed::app_locked())).await,
        ];
        if breakdown {
            variants.extend([
                Variant::with_cookies("any layer (Identity)", ready(any_layer()), bare_cookies()),
                Variant::new("typed: layer only", ready(typed::app_layer_only())).await,
                Variant::new("typed: untouched", ready(typed::app_untouched())).await,
            ]);
        }
        // Sanity: both session layers really carry a session across requests.
        for variant in &variants[1..3] {
            let cookie = variant.cookies[0].as_deref();
            assert!(cookie.is_some(), "{} set no cookie", variant.name);
        }
        round(&mut variants, requests / 4, batch, 0).await; // warm-up, discarded
        for variant in &mut variants {
            variant.samples.clear();
        }
        for r in 0..rounds {
            round(&mut variants, requests, batch, r).await;
        }

        let bare = variants[0].median();
        let batches = if batch >= requests {
            String::from("whole rounds")
        } else {
            format!("batches of {batch}")
        };
        let sessions = sessions();
        println!("{rounds} rounds x {requests} requests ({batches}) over {sessions} sessions, median ns/request:");
        for variant in &variants {
            let median = variant.median();
            println!(
                "  {:<22} {:>8.0} ns   overhead {:>7.0} ns",
                variant.name,
                median,
                median - bare
            );
        }
        // The ratio is taken within each round, whose variants ran back to back (or interleaved),
        // and the median of those is reported: the speed of a whole round drifts on a shared
        // machine, which a ratio of medians taken from different rounds would mix in.
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
