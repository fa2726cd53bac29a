//! The cost of a store's calls made directly, without HTTP, typed-sessions' stores beside
//! tower-sessions' (0.14, as in the end-to-end benchmark): CPU time per call of this process
//! (the client: the store's code and its database driver) and of the database server's
//! processes, and calls per second, with 8 tasks calling at once over 1,000 sessions of two
//! values. Steadier than the end-to-end benchmark for judging a change to a store's statements.
//!
//! - `load`: one session read (both libraries);
//! - `write`: one value of a loaded session changed and written: typed-sessions' `apply` of a
//!   one-key patch, tower-sessions' `save` of the whole record (what its layer does).
//!
//! ```sh
//! cargo run --release -p typed-sessions-bench --features e2e --bin store_calls -- \
//!     [--redis redis://127.0.0.1:6390] [--postgres postgres://...] [--calls 20000]
//! ```
//!
//! The server's CPU is read from `/proc` for every process named `postgres` or `redis-server`
//! on the machine: run it with no other such servers busy.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tower_sessions_014::session::{Id, Record as TowerRecord};
use tower_sessions_014::SessionStore as TowerStore;
use typed_sessions::store::{conformance, Changes, Record, SessionStore};
use typed_sessions::{sqlx, PostgresStore, RedisStore};

const SESSIONS: usize = 1_000;
const TASKS: usize = 8;

/// CPU time (user + system) of the processes `select` picks by pid and name, in seconds.
fn cpu_seconds(select: impl Fn(u32, &str) -> bool) -> f64 {
    // Clock ticks per second: 100 on Linux.
    const TICKS: f64 = 100.0;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the name may hold spaces, the fields after it do not.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !select(pid, &stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        total += ticks / TICKS;
    }
    total
}

fn own_cpu() -> f64 {
    let me = std::process::id();
    cpu_seconds(|pid, _| pid == me)
}

fn server_cpu() -> f64 {
    cpu_seconds(|_, name| name == "postgres" || name == "redis-server")
}

/// Runs `calls` calls of `call` over the sessions, `TASKS` at a time, and prints their cost.
async fn measure<S, K, F, Fut>(name: &str, what: &str, store: &Arc<S>, keys: &Arc<Vec<K>>, calls: usize, call: F)
where
    S: Send + Sync + 'static,
    K: Clone + Send + Sync + 'static,
    F: Fn(Arc<S>, K, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (own, server, started) = (own_cpu(), server_cpu(), Instant::now());
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, keys, call) = (Arc::clone(store), Arc::clone(keys), call.clone());
        tasks.push(tokio::spawn(async move {
            for i in (task..calls).step_by(TASKS) {
                call(Arc::clone(&store), keys[i % keys.len()].clone(), i).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a task panicked");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_call = |seconds: f64| seconds / calls as f64 * 1e6;
    println!(
        "{name:<24} {what:<6} {:>8.0} calls/s   client {:>6.1} µs/call   server {:>6.1} µs/call",
        calls as f64 / elapsed,
        per_call(own_cpu() - own),
        per_call(server_cpu() - server),
    );
}

async fn typed<S: SessionStore>(name: &str, store: S, calls: usize) {
    let store = Arc::new(store);
    let now = SystemTime::now();
    let mut keys = Vec::new();
    for i in 0..SESSIONS {
        let mut record = Record::new(now, now + Duration::from_secs(3600));
        record.values.insert("user_id", "42");
        record.values.insert("counter", i.to_string());
        let key = conformance::fresh_key();
        store.create(&key, &record).await.expect("create");
        keys.push(key);
    }
    let keys = Arc::new(keys);
    for _ in 0..2 {
        measure(name, "load", &store, &keys, calls, |store, key, _| async move {
            store.load(&key).await.expect("load").expect("a live session");
        })
        .await;
        measure(name, "write", &store, &keys, calls, |store, key, i| async move {
            let mut changes = Changes::default();
            changes.values.insert("counter", Some(i.to_string()));
            store.apply(&key, &changes).await.expect("apply");
        })
        .await;
    }
}

async fn tower<S: TowerStore>(name: &str, store: S, calls: usize) {
    let store = Arc::new(store);
    let expiry_date = tower_sessions_014::cookie::time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let mut records = Vec::new();
    for i in 0..SESSIONS {
        let mut record = TowerRecord {
            id: Id::default(),
            data: Default::default(),
            expiry_date,
        };
        record.data.insert("user_id".to_owned(), 42.into());
        record.data.insert("counter".to_owned(), i.into());
        store.create(&mut record).await.expect("create");
        records.push(record);
    }
    let records = Arc::new(records);
    for _ in 0..2 {
        measure(name, "load", &store, &records, calls, |store, record, _| async move {
            store.load(&record.id).await.expect("load").expect("a live session");
        })
        .await;
        measure(
            name,
            "write",
            &store,
            &records,
            calls,
            |store, mut record, i| async move {
                record.data.insert("counter".to_owned(), i.into());
                store.save(&record).await.expect("save");
            },
        )
        .await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let calls = arg("--calls").map_or(20_000, |calls| calls.parse().expect("--calls N"));
    if let Some(url) = arg("--redis") {
        typed(
            "typed-sessions redis",
            RedisStore::connect(&url).await.expect("redis"),
            calls,
        )
        .await;
        // As tower-sessions-redis-store's own example sets it up (and the end-to-end benchmark).
        use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
        let pool = Pool::new(Config::from_url(&url).expect("a Redis URL"), None, None, None, 6).expect("a fred pool");
        let _connection_task = pool.connect();
        pool.wait_for_connect().await.expect("connecting to Redis");
        tower(
            "tower-sessions redis",
            tower_sessions_redis_store::RedisStore::new(pool),
            calls,
        )
        .await;
    }
    if let Some(url) = arg("--postgres") {
        typed(
            "typed-sessions postgres",
            PostgresStore::connect(&url).await.expect("postgres"),
            calls,
        )
        .await;
        let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
        let store = tower_sessions_sqlx_store::PostgresStore::new(pool);
        store.migrate().await.expect("creating tower-sessions' table");
        tower("tower-sessions postgres", store, calls).await;
    }
}
