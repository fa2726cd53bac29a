//! The cost of listing and ending the sessions of one owner, by how many sessions the owner has
//! (10, 100, 1,000), in a store that also holds 10,000 sessions of other owners: each store's
//! `owner_sessions` and `end_owner_sessions` called directly, median of 5 listings.
//!
//! ```sh
//! cargo run --release -p typed-sessions-bench --features e2e --bin owners -- \
//!     [--sqlite FILE] [--redis redis://127.0.0.1:6390] [--postgres postgres://...]
//! ```
//!
//! `MemoryStore` always runs; the others when given (the servers must be running).

use std::time::{Duration, Instant};

use typed_sessions::store::{conformance, Record, SessionStore};
use typed_sessions::{MemoryStore, PostgresStore, RedisStore, SqliteStore};

const OTHERS: usize = 10_000;

fn record(owner: &str) -> Record {
    let now = std::time::SystemTime::now();
    let mut record = Record::new(now, now + Duration::from_secs(3600));
    record.values.insert("user_id", owner);
    record
        .values
        .insert("user_agent", "\"Mozilla/5.0 (X11; Linux x86_64) Chrome/156\"");
    record.owner = Some(owner.to_owned());
    record
}

async fn fill<S: SessionStore>(store: &S, owner: &str, count: usize) {
    for _ in 0..count {
        store
            .create(&conformance::fresh_key(), &record(owner))
            .await
            .expect("create");
    }
}

async fn measure<S: SessionStore>(name: &str, store: &S) {
    let run = conformance::fresh_key().to_hex();
    for i in 0..OTHERS / 100 {
        fill(store, &format!("\"bystander-{run}-{i}\""), 100).await;
    }
    for count in [10, 100, 1_000] {
        let owner = format!("\"owner-{run}-{count}\"");
        fill(store, &owner, count).await;
        let mut listings = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let listed = store.owner_sessions(&owner).await.expect("owner_sessions");
            listings.push(started.elapsed());
            assert_eq!(listed.len(), count);
        }
        listings.sort();
        let started = Instant::now();
        let ended = store
            .end_owner_sessions(&owner, None)
            .await
            .expect("end_owner_sessions");
        let ending = started.elapsed();
        assert_eq!(ended, count as u64);
        println!(
            "{name:<10} {count:>5} sessions: list {:>9.3} ms, end all {:>9.3} ms",
            listings[2].as_secs_f64() * 1e3,
            ending.as_secs_f64() * 1e3
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    measure("memory", &MemoryStore::new()).await;
    if let Some(path) = arg("--sqlite") {
        measure("sqlite", &SqliteStore::open(path).await.expect("sqlite")).await;
    }
    if let Some(url) = arg("--redis") {
        measure("redis", &RedisStore::connect(&url).await.expect("redis")).await;
    }
    if let Some(url) = arg("--postgres") {
        measure("postgres", &PostgresStore::connect(&url).await.expect("postgres")).await;
    }
}
