//! What a request costs in Redis round trips, counted by Redis itself (`INFO commandstats`, read
//! on a separate plain connection): a request that reads and writes the session makes two (load,
//! apply script), a read-only request one, a request that never extracts the session none.
//!
//! `commandstats` also counts the commands a Lua script runs (`HGET`, `HSET`, `HDEL`,
//! `PEXPIREAT`, and `DEL` when re-creating over an expired record): those run inside Redis and
//! cost no round trip, so they are not counted — the store never sends them itself. The `INFO`
//! calls of the measurement are not counted either.
//!
//! A `LockedSession` request makes two as well: one script takes the lock and reads the session,
//! another writes the changes (fenced by the lock) and releases it — or, for a request that only
//! read, releases it after the response. Those scripts' own commands (`SET`, `HGETALL`, `GET`,
//! `DEL`) show in `commandstats` too; only the `EVALSHA`s are round trips.

use std::collections::BTreeMap;

use axum::routing::get;
use axum::Router;
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

/// Commands that only the store's scripts run (inside Redis), and the measurement's own.
const NOT_ROUND_TRIPS: [&str; 5] = ["hget", "hset", "hdel", "pexpireat", "info"];

/// Calls per command so far, as `INFO commandstats` reports them.
async fn command_calls(connection: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|stat| stat.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

struct Meter {
    connection: redis::aio::MultiplexedConnection,
}

impl Meter {
    /// The round trips `request` makes, by command.
    async fn measure(&mut self, request: impl std::future::Future<Output = u16>) -> BTreeMap<String, u64> {
        let before = command_calls(&mut self.connection).await;
        let status = request.await;
        assert_eq!(status, 200);
        let after = command_calls(&mut self.connection).await;
        after
            .into_iter()
            .filter(|(name, _)| !NOT_ROUND_TRIPS.contains(&name.as_str()))
            .map(|(name, calls)| {
                let delta = calls - before.get(&name).copied().unwrap_or(0);
                (name, delta)
            })
            .filter(|(_, delta)| *delta > 0)
            .collect()
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
    let mut meter = Meter {
        connection: redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap(),
    };
    let mut client = HttpClient::new();

    // A new visitor's first write: nothing to load (no cookie), one create script. The very
    // first call of a script after Redis started also sends its source (NOSCRIPT, then EVAL).
    // (Whether Redis counts the refused EVALSHA varies by version: at most 2 either way.)
    let first = meter.measure(status(&mut client, &server, "/write")).await;
    assert!(
        first.contains_key("eval") && !first.contains_key("hgetall") && total(&first) <= 2,
        "cold create: {first:?}"
    );
    let warm_up = meter.measure(status(&mut client, &server, "/write")).await;
    assert!(
        warm_up.contains_key("eval") && warm_up["hgetall"] == 1 && total(&warm_up) <= 3,
        "cold apply: {warm_up:?}"
    );

    // Scripts cached: the steady state.
    let mut new_visitor = HttpClient::new();
    let create = meter.measure(status(&mut new_visitor, &server, "/write")).await;
    assert_eq!(create, calls(&[("evalsha", 1)]), "a new visitor's first write");

    let read_write = meter.measure(status(&mut client, &server, "/write")).await;
    assert_eq!(
        read_write,
        calls(&[("hgetall", 1), ("evalsha", 1)]),
        "a request that reads and writes"
    );
    assert!(total(&read_write) <= 2);

    let read_only = meter.measure(status(&mut client, &server, "/read")).await;
    assert_eq!(read_only, calls(&[("hgetall", 1)]), "a read-only request");

    let untouched = meter.measure(status(&mut client, &server, "/static")).await;
    assert_eq!(
        total(&untouched),
        0,
        "a request that never extracts the session: {untouched:?}"
    );

    // Flash: setting one is a write (2); the next request that loads the session drops it,
    // which is a write too (2); after that, reading is 1 again.
    let flash = meter.measure(status(&mut client, &server, "/flash")).await;
    assert_eq!(flash, calls(&[("hgetall", 1), ("evalsha", 1)]));
    let sees_flash = meter.measure(status(&mut client, &server, "/read")).await;
    assert_eq!(sees_flash, calls(&[("hgetall", 1), ("evalsha", 1)]));
    let read_only = meter.measure(status(&mut client, &server, "/read")).await;
    assert_eq!(read_only, calls(&[("hgetall", 1)]));

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
    assert_eq!(bulk, calls(&[("hgetall", 200), ("evalsha", 100)]));

    // LockedSession: two scripts (two round trips), whose own commands show beside them. The
    // first locked requests send the scripts' sources (NOSCRIPT, then EVAL): warm up. A locked
    // read's unlock is sent after the response: give it time to land.
    meter.measure(status(&mut client, &server, "/locked-write")).await;
    meter.measure(locked_read(&mut client, &server)).await;
    let script_commands = [("set", 1), ("hgetall", 1), ("get", 1), ("del", 1)];
    let locked_write = meter.measure(status(&mut client, &server, "/locked-write")).await;
    assert_eq!(
        locked_write,
        calls(&[&[("evalsha", 2)][..], &script_commands].concat()),
        "a locked request that writes"
    );
    let locked_read = meter.measure(locked_read(&mut client, &server)).await;
    assert_eq!(
        locked_read,
        calls(&[&[("evalsha", 2)][..], &script_commands].concat()),
        "a locked request that reads"
    );
    assert_eq!(status(&mut client, &server, "/read").await, 200);
}
