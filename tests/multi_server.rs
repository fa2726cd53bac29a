//! Three app instances behind one shared store, as behind a round-robin load balancer: one
//! client (one cookie jar) spreads 3,000 requests over them. Every request must see the session
//! the previous one (served by another instance) left, no increment may be lost, and each flash
//! must be seen by exactly the next request. Once on Redis, once on PostgreSQL.

use std::future::Future;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use typed_sessions::{PostgresStore, RedisStore, Session, SessionLayer, SessionSchema, SessionStore, SigningKey};
use typed_sessions_tests::{init_tracing, serve, HttpClient, PostgresServer, RedisCluster, RedisServer, TestServer};

#[derive(SessionSchema)]
struct Values {
    count: u64,
}

#[derive(SessionSchema)]
struct Flash {
    /// The number of the request that set it.
    notice: u64,
}

type AppSession = Session<Values, Flash>;

const INSTANCES: usize = 3;
const REQUESTS: u64 = 3_000;
/// Every `FLASH_EVERY`th request sets a flash.
const FLASH_EVERY: u64 = 10;

/// `<instance> <count> <flash or ->`
fn reply(instance: &str, count: u64, flash: Option<u64>) -> String {
    let flash = flash.map_or_else(|| "-".to_owned(), |n| n.to_string());
    format!("{instance} {count} {flash}")
}

async fn hit(State(instance): State<&'static str>, mut session: AppSession) -> String {
    let flash = session.get_flash(Flash::NOTICE);
    let count = session.update(Values::COUNT, |count| {
        *count += 1;
        *count
    });
    reply(instance, count, flash)
}

async fn hit_and_flash(State(instance): State<&'static str>, mut session: AppSession) -> String {
    let flash = session.get_flash(Flash::NOTICE);
    let count = session.update(Values::COUNT, |count| {
        *count += 1;
        *count
    });
    session.flash(Flash::NOTICE, count);
    reply(instance, count, flash)
}

async fn look(State(instance): State<&'static str>, session: AppSession) -> String {
    reply(
        instance,
        session.get(Values::COUNT).unwrap_or(0),
        session.get_flash(Flash::NOTICE),
    )
}

fn app(instance: &'static str, store: impl SessionStore, key: SigningKey) -> Router {
    Router::new()
        .route("/hit", get(hit))
        .route("/hit-and-flash", get(hit_and_flash))
        .route("/look", get(look))
        .with_state(instance)
        // Same signing key on every instance: a cookie one signed, the others accept.
        .layer(SessionLayer::new(store).with_secure(false).with_signing_keys([key]))
}

fn parse(body: &str) -> (String, u64, Option<u64>) {
    let mut parts = body.split(' ');
    let instance = parts.next().unwrap().to_owned();
    let count = parts.next().unwrap().parse().unwrap();
    let flash = parts.next().unwrap();
    (instance, count, (flash != "-").then(|| flash.parse().unwrap()))
}

async fn round_robin<S, F>(connect: impl Fn() -> F)
where
    S: SessionStore,
    F: Future<Output = S>,
{
    const NAMES: [&str; INSTANCES] = ["alpha", "beta", "gamma"];
    let key = SigningKey::generate();
    let mut servers: Vec<TestServer> = Vec::new();
    for name in NAMES {
        servers.push(serve(app(name, connect().await, key.clone())).await);
    }

    let mut client = HttpClient::new();
    let mut served = [0u64; INSTANCES];
    let mut pending_flash: Option<u64> = None;
    let mut flashes_seen = 0u64;
    for n in 1..=REQUESTS {
        let instance = usize::try_from((n - 1) % INSTANCES as u64).unwrap();
        let path = if n % FLASH_EVERY == 0 { "/hit-and-flash" } else { "/hit" };
        let response = client.get(servers[instance].addr(), path).await.unwrap();
        assert_eq!(response.status, 200, "request {n}: {}", response.body);
        let (name, count, flash) = parse(&response.body);
        assert_eq!(name, NAMES[instance]);
        served[instance] += 1;
        assert_eq!(
            count, n,
            "request {n} (on {name}) did not see the session the previous requests left"
        );
        assert_eq!(flash, pending_flash, "request {n} (on {name}) saw the wrong flash");
        flashes_seen += u64::from(flash.is_some());
        pending_flash = (n % FLASH_EVERY == 0).then_some(n);
    }

    // One more look, from yet another instance: the final count, and the last flash.
    let response = client.get(servers[0].addr(), "/look").await.unwrap();
    let (_, count, flash) = parse(&response.body);
    assert_eq!(count, REQUESTS, "the counter did not end at {REQUESTS}");
    assert_eq!(flash, pending_flash);
    flashes_seen += u64::from(flash.is_some());
    // And the flash is gone after that.
    let response = client.get(servers[1].addr(), "/look").await.unwrap();
    assert_eq!(parse(&response.body).2, None, "a flash was seen twice");

    assert_eq!(flashes_seen, REQUESTS / FLASH_EVERY, "every flash is seen exactly once");
    assert_eq!(served, [REQUESTS / INSTANCES as u64; INSTANCES]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_sessions_through_redis() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    round_robin(|| async { RedisStore::connect(&url).await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_sessions_through_a_redis_cluster() {
    init_tracing();
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let urls = cluster.urls();
    round_robin(|| async { RedisStore::connect_cluster(&urls).await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_sessions_through_postgres() {
    init_tracing();
    let Some(postgres) = PostgresServer::start().await else {
        return;
    };
    let url = postgres.url();
    round_robin(|| async { PostgresStore::connect(&url).await.unwrap() }).await;
}
