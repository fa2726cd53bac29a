//! The store goes away mid-test: requests that need the session get a 503 quickly (no hang, no
//! panic), requests that do not touch the session still get a 200, and once the store is back
//! sessions work again without rebuilding the app. On Redis, PostgreSQL, and a Redis Cluster:
//! all of it down, or one master failing over to its replica.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use typed_sessions::store::{SessionStore, StoreError};
use typed_sessions::{PostgresStore, RedisStore, Session, SessionId, SessionLayer, SessionSchema};
use typed_sessions_tests::{
    init_tracing, serve, HttpClient, HttpResponse, PostgresServer, RedisCluster, RedisServer, TestServer,
};

#[derive(SessionSchema)]
struct Values {
    count: u64,
}

/// How long the layer waits for one store call.
const STORE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a request may take while the store is down: the store timeout plus a wide margin for
/// a loaded CI machine; the point is that it is bounded, not how fast it is.
const BOUND: Duration = Duration::from_secs(6);

fn app(store: impl SessionStore) -> Router {
    Router::new()
        .route(
            "/count",
            get(|mut session: Session<Values>| async move {
                session.update(Values::COUNT, |count| *count += 1);
                session.get(Values::COUNT).unwrap_or(0).to_string()
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(
            SessionLayer::new(store)
                .with_secure(false)
                .with_store_timeout(STORE_TIMEOUT),
        )
}

/// A request that must finish within `BOUND`.
async fn timed_get(client: &mut HttpClient, server: &TestServer, path: &str) -> HttpResponse {
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(server.addr(), path))
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung"))
        .unwrap_or_else(|error| panic!("GET {path} failed: {error}"));
    let took = started.elapsed();
    tracing::info!(path, status = response.status, ?took, "answered");
    assert!(took < BOUND, "GET {path} took {took:?} (answered {})", response.status);
    response
}

/// While the store is down: 503 for every request that extracts the session — with the cookie
/// of a stored session, and as a new visitor — and 200 for one that does not.
async fn down_answers(client: &mut HttpClient, server: &TestServer) {
    for _ in 0..3 {
        let response = timed_get(client, server, "/count").await;
        assert_eq!(response.status, 503, "with a session cookie: {}", response.body);
        let response = timed_get(client, server, "/health").await;
        assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    }
    let mut new_visitor = HttpClient::new();
    let response = timed_get(&mut new_visitor, server, "/count").await;
    assert_eq!(response.status, 503, "a new visitor's first write: {}", response.body);
}

/// Asks until the store answers again (bounded), returning the first 200's body.
async fn first_success(client: &mut HttpClient, server: &TestServer) -> String {
    let started = Instant::now();
    loop {
        let response = timed_get(client, server, "/count").await;
        if response.status == 200 {
            return response.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sessions did not come back after the restart: {}",
            response.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A store call made while the store is down fails as `Unavailable` within `BOUND`.
async fn store_fails_fast(store: &impl SessionStore) {
    let started = Instant::now();
    let result = store.load(&SessionId::random().store_key()).await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
    assert!(
        started.elapsed() < BOUND,
        "the store took {:?} to give up",
        started.elapsed()
    );
}

/// A Redis that stops answering without closing its connections (paused): each request that
/// needs the session is a 503 within the layer's store timeout — `RedisStore::connect` sets no
/// response timeout of its own, so this bound is the layer's alone — and once Redis answers
/// again, so do sessions, on the same connection, with what was stored before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_a_503_within_the_store_timeout() {
    init_tracing();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let server = serve(app(RedisStore::connect(&redis.url()).await.unwrap())).await;
    let mut client = HttpClient::new();
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "1");

    redis.pause();
    let started = Instant::now();
    let response = timed_get(&mut client, &server, "/count").await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        started.elapsed() >= STORE_TIMEOUT,
        "answered after {:?}, before the store timeout: not a timeout",
        started.elapsed()
    );
    let response = timed_get(&mut client, &server, "/health").await;
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));

    redis.resume();
    // The write of the request that timed out never happened (its load did not answer).
    assert_eq!(first_success(&mut client, &server).await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_a_503_and_sessions_return_with_redis() {
    init_tracing();
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let server = serve(app(store.clone())).await;
    let mut client = HttpClient::new();
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "1");
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "2");

    redis.stop().await;
    down_answers(&mut client, &server).await;
    store_fails_fast(&store).await;

    redis.restart().await;
    // Redis kept its data in memory only (`--save ""`): the old session is gone, so the old
    // cookie is not adopted and a new session starts.
    assert_eq!(first_success(&mut client, &server).await, "1");
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "2");

    // A second outage, for good measure: the manager reconnects every time.
    redis.stop().await;
    down_answers(&mut client, &server).await;
    redis.restart().await;
    assert_eq!(first_success(&mut client, &server).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_a_503_and_sessions_survive_the_restart() {
    init_tracing();
    let Some(mut postgres) = PostgresServer::start().await else {
        return;
    };
    let store = PostgresStore::connect(&postgres.url()).await.unwrap();
    let server = serve(app(store.clone())).await;
    let mut client = HttpClient::new();
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "1");
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "2");

    postgres.stop().await;
    down_answers(&mut client, &server).await;
    store_fails_fast(&store).await;

    postgres.restart().await;
    // The data survived the restart: the old cookie's session carries on where it was.
    assert_eq!(first_success(&mut client, &server).await, "3");
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_outage_is_a_503_and_sessions_return_with_the_cluster() {
    init_tracing();
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let store = RedisStore::connect_cluster(cluster.urls()).await.unwrap();
    let server = serve(app(store.clone())).await;
    let mut client = HttpClient::new();
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "1");
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "2");

    cluster.stop().await;
    down_answers(&mut client, &server).await;
    store_fails_fast(&store).await;

    cluster.restart().await;
    // Like the single server, the nodes kept nothing on disk: a new session starts.
    assert_eq!(first_success(&mut client, &server).await, "1");
    assert_eq!(timed_get(&mut client, &server, "/count").await.body, "2");
}

/// Sessions spread over the cluster's three masters; enough that one master surely holds some
/// (each lands on a given master with probability 1/3).
const CLUSTER_SESSIONS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_redis_cluster_master_is_a_503_until_its_replica_takes_over() {
    init_tracing();
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let store = RedisStore::connect_cluster(cluster.urls()).await.unwrap();
    let server = serve(app(store)).await;
    let mut clients: Vec<HttpClient> = (0..CLUSTER_SESSIONS).map(|_| HttpClient::new()).collect();
    for client in &mut clients {
        assert_eq!(timed_get(client, &server, "/count").await.body, "1");
        assert_eq!(timed_get(client, &server, "/count").await.body, "2");
    }
    // Replication is asynchronous: give the replicas a moment to receive the last writes, which
    // a real failover could lose (see `RedisStore`'s documentation).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3, "a new cluster has three masters");
    cluster.kill(masters[0]).await;
    // Until a replica takes over, the sessions on the killed master get a 503 (within the
    // bound), the others carry on.
    let mut counts = vec![2u64; CLUSTER_SESSIONS];
    let mut unavailable = 0;
    for (client, count) in clients.iter_mut().zip(&mut counts) {
        let response = timed_get(client, &server, "/count").await;
        match response.status {
            200 => {
                *count += 1;
                assert_eq!(response.body, count.to_string());
            }
            503 => unavailable += 1,
            other => panic!("a request during the failover answered {other}: {}", response.body),
        }
    }
    assert!(unavailable > 0, "no request noticed the failed master");
    assert!(
        unavailable < CLUSTER_SESSIONS,
        "the other masters' sessions must keep working"
    );

    // The replica is promoted (three masters again); then, without restarting the app, every
    // session works again and carries on from its count.
    let started = Instant::now();
    while cluster.masters().await.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no replica took over the killed master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_until_healthy().await;
    for (client, count) in clients.iter_mut().zip(&counts) {
        assert_eq!(first_success(client, &server).await, (count + 1).to_string());
    }
}
