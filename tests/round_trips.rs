//! What a request costs in Redis round trips, counted by Redis itself: a request that reads and
//! writes the session makes two (load, apply script), a read-only request one, a request that
//! never extracts the session none.
//!
//! Counted on a `MONITOR` connection, which shows every command Redis runs and who sent it: the
//! commands a Lua script runs inside Redis (shown as the client `lua`) cost no round trip and are
//! not counted, nor are the measurement's own.
//!
//! A `LockedSession` request makes two as well: one script takes the lock and reads the session,
//! another writes the changes (fenced by the lock) and releases it — or, for a request that only
//! read, releases it after the response.

use std::collections::BTreeMap;

use axum::routing::get;
use axum::Router;
use futures_util::{Stream, StreamExt};
use typed_sessions::{LockedSession, RedisStore, Session, SessionLayer, SessionSchema};
use typed_sessions_tests::{init_tracing, serve, HttpClient, RedisServer, TestServer};

#[derive(SessionSchema)]
struct Values {
    count: u64,
}

#[derive(SessionSchema)]
struct Flash {
    notice: String,
}

/// The command a `MONITOR` line shows, and whether a Lua script ran it (inside Redis, no round
/// trip). A line reads `<time> [<db> <client address, or lua>] "<COMMAND>" "<argument>" ...`.
fn command_of(line: &str) -> Option<(String, bool)> {
    let (client, shown) = line.split_once(" [")?.1.split_once("] ")?;
    let command = shown.split('"').nth(1)?.to_ascii_lowercase();
    Some((command, client.ends_with(" lua")))
}

struct Meter {
    monitor: std::pin::Pin<Box<dyn Stream<Item = String> + Send>>,
    connection: redis::aio::MultiplexedConnection,
    measured: u64,
}

impl Meter {
    /// A meter whose first measurement starts now: its own connection is set up before the
    /// monitor starts, and what the monitor shows up to its first marker is not counted.
    async fn new(redis: &RedisServer) -> Self {
        let client = redis::Client::open(redis.url()).unwrap();
        let connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut meter = Meter {
            monitor: Box::pin(client.get_async_monitor().await.unwrap().into_on_message()),
            connection,
            measured: 0,
        };
        meter.count_to_marker().await;
        meter
    }

    /// The round trips `request` makes, by command.
    async fn measure(&mut self, request: impl std::future::Future<Output = u16>) -> BTreeMap<String, u64> {
        let status = request.await;
        assert_eq!(status, 200);
        self.count_to_marker().await
    }

    /// The round trips Redis shows until a marker sent now, by command.
    async fn count_to_marker(&mut self) -> BTreeMap<String, u64> {
        // Sent on a connection of the meter's own: once Redis shows it, it has shown every
        // command sent before it.
        self.measured += 1;
        let marker = format!("end of measurement {}", self.measured);
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(&mut self.connection)
            .await
            .unwrap();
        let mut round_trips = BTreeMap::new();
        loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(5), self.monitor.next())
                .await
                .expect("MONITOR showed the marker")
                .expect("the MONITOR connection is open");
            if line.contains(&marker) {
                return round_trips;
            }
            let (command, by_script) = command_of(&line).unwrap_or_else(|| panic!("a MONITOR line: {line}"));
            if !by_script && command != "echo" {
                *round_trips.entry(command).or_insert(0) += 1;
            }
        }
    }
}

fn app(store: RedisStore) -> Router {
    Router::new()
        .route(
            "/write",
            get(|mut session: Session<Values, Flash>| async move {
                session.update(Values::COUNT, |count| *count += 1);
                "written"
            }),
        )
        .route(
            "/read",
            get(|session: Session<Values, Flash>| async move { session.get(Values::COUNT).unwrap_or(0).to_string() }),
        )
        .route(
            "/flash",
            get(|mut session: Session<Values, Flash>| async move {
                session.flash(Flash::NOTICE, "hello".to_owned());
                "flashed"
            }),
        )
        .route(
            "/locked-write",
            get(|mut session: LockedSession<Values, Flash>| async move {
                session.update(Values::COUNT, |count| *count += 1);
                "written"
            }),
        )
        .route(
            "/locked-read",
            get(|session: LockedSession<Values, Flash>| async move { session.get(Values::COUNT).unwrap_or(0).to_string() }),
        )
        .route("/static", get(|| async { "no session here" }))
        .layer(SessionLayer::new(store).with_secure(false))
}

fn total(calls: &BTreeMap<String, u64>) -> u64 {
    calls.values().sum()
}

fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(name, n)| ((*name).to_owned(), *n)).collect()
}

/// A `LockedSession` read, and time for its unlock, sent after the response, to land.
async fn locked_read(client: &mut HttpClient, server: &TestServer) -> u16 {
    let status = status(client, server, "/locked-read").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    status
}

async fn status(client: &mut HttpClient, server: &TestServer, path: &str) -> u16 {
    client.get(server.addr(), path).await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_costs_at_most_two_redis_round_trips() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let server = serve(app(store)).await;
    let mut meter = Meter::new(&redis).await;
    let mut client = HttpClient::new();

    // A new visitor's first write: nothing to load (no cookie), one create script. The very
    // first call of a script after Redis started also sends its source (NOSCRIPT, then EVAL).
    // (Whether Redis counts the refused EVALSHA varies by version: at most 2 either way.)
    let first = meter.measure(status(&mut client, &server, "/write")).await;
    assert!(
        first.contains_key("eval") && !first.contains_key("hget") && total(&first) <= 2,
        "cold create: {first:?}"
    );
    let warm_up = meter.measure(status(&mut client, &server, "/write")).await;
    assert!(
        warm_up.contains_key("eval") && warm_up.get("hget") == Some(&1) && total(&warm_up) <= 3,
        "cold apply: {warm_up:?}"
    );

    // Scripts cached: the steady state.
    let mut new_visitor = HttpClient::new();
    let create = meter.measure(status(&mut new_visitor, &server, "/write")).await;
    assert_eq!(create, calls(&[("evalsha", 1)]), "a new visitor's first write");

    let read_write = meter.measure(status(&mut client, &server, "/write")).await;
    assert_eq!(
        read_write,
        calls(&[("hget", 1), ("evalsha", 1)]),
        "a request that reads and writes"
    );
    assert!(total(&read_write) <= 2);

    let read_only = meter.measure(status(&mut client, &server, "/read")).await;
    assert_eq!(read_only, calls(&[("hget", 1)]), "a read-only request");

    let untouched = meter.measure(status(&mut client, &server, "/static")).await;
    assert_eq!(
        total(&untouched),
        0,
        "a request that never extracts the session: {untouched:?}"
    );

    // Flash: setting one is a write (2); the next request that loads the session drops it,
    // which is a write too (2); after that, reading is 1 again.
    let flash = meter.measure(status(&mut client, &server, "/flash")).await;
    assert_eq!(flash, calls(&[("hget", 1), ("evalsha", 1)]));
    let sees_flash = meter.measure(status(&mut client, &server, "/read")).await;
    assert_eq!(sees_flash, calls(&[("hget", 1), ("evalsha", 1)]));
    let read_only = meter.measure(status(&mut client, &server, "/read")).await;
    assert_eq!(read_only, calls(&[("hget", 1)]));

    // 100 requests of each kind, in bulk: same cost per request.
    let bulk = meter
        .measure(async {
            for _ in 0..100 {
                assert_eq!(status(&mut client, &server, "/write").await, 200);
                assert_eq!(status(&mut client, &server, "/read").await, 200);
                assert_eq!(status(&mut client, &server, "/static").await, 200);
            }
            200
        })
        .await;
    assert_eq!(bulk, calls(&[("hget", 200), ("evalsha", 100)]));

    // LockedSession: two scripts, two round trips. The first locked requests send the scripts'
    // sources (NOSCRIPT, then EVAL): warm up. A locked read's unlock is sent after the response:
    // give it time to land.
    meter.measure(status(&mut client, &server, "/locked-write")).await;
    meter.measure(locked_read(&mut client, &server)).await;
    let locked_write = meter.measure(status(&mut client, &server, "/locked-write")).await;
    assert_eq!(locked_write, calls(&[("evalsha", 2)]), "a locked request that writes");
    let locked_read = meter.measure(locked_read(&mut client, &server)).await;
    assert_eq!(locked_read, calls(&[("evalsha", 2)]), "a locked request that reads");
    assert_eq!(status(&mut client, &server, "/read").await, 200);
}
