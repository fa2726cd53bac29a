//! Test support: real servers and a real HTTP client for the integration tests.
//!
//! - [`RedisServer`] and [`PostgresServer`] start a throwaway `redis-server` or PostgreSQL
//!   cluster on a free loopback port, wait until it answers, can be [stopped](RedisServer::stop)
//!   and [restarted](RedisServer::restart) on the same port (outage tests), and are stopped when
//!   dropped. [`RedisCluster`] starts six such Redis nodes and joins them into a cluster of three
//!   masters with a replica each. When the server is not installed their `start` prints `skipped: ...` and returns
//!   `None` — unless `REQUIRE_SERVERS=1` is set (CI), where it panics instead. Every test that
//!   uses a server starts it through these helpers.
//! - [`serve`] runs an axum `Router` on a real `TcpListener` on `127.0.0.1:0`.
//! - [`HttpClient`] is a small HTTP/1.1 client over `TcpStream` with keep-alive and a cookie jar
//!   shared by every server it talks to (cookies are per host, not per port, like a browser's).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
pub mod crash;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use typed_sessions::store::{Applied, Changes, Created, Record, SessionStore, StoreError, StoreKey};
use typed_sessions::MemoryStore;

/// Whether tests must fail instead of skipping when a server binary is missing
/// (`REQUIRE_SERVERS=1`, set by `.ci/run`).
pub fn require_servers() -> bool {
    std::env::var("REQUIRE_SERVERS").is_ok_and(|value| value == "1")
}

/// Reports a missing server: `None` and a `skipped: ..` line, or a panic under `REQUIRE_SERVERS=1`.
fn missing<T>(what: &str) -> Option<T> {
    assert!(
        !require_servers(),
        "{what}, and REQUIRE_SERVERS=1 is set: install it (see .ci/run)"
    );
    eprintln!("skipped: {what} (set REQUIRE_SERVERS=1 to make this a failure)");
    None
}

/// Installs a `tracing` subscriber that prints to the test's output; filter with `RUST_LOG`.
/// Calling it again is harmless.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A loopback port nobody listens on right now (the OS picks it: bind `127.0.0.1:0`).
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0 failed")
        .port()
}

/// `name` found in a directory of `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Waits up to `limit` for `child` to exit; kills it if it has not.
async fn reap(child: &mut Child, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `reap` for `Drop`, where there is no runtime to sleep on.
fn reap_blocking(child: &mut Child, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether the process in `child` is still running.
fn running(child: &mut Option<Child>) -> bool {
    child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
}

/// Polls `ready` every 50 ms, for up to `limit`, while the process in `child` runs; kills it if
/// it never gets ready.
async fn wait_until_ready<F: Future<Output = bool>>(
    child: &mut Option<Child>,
    limit: Duration,
    mut ready: impl FnMut() -> F,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit && running(child) {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    false
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A `redis-server` of its own, on a free loopback port, without persistence (`--save ""
/// --appendonly no`): its data is gone when it stops.
///
/// ```no_run
/// # async fn demo() {
/// use typed_sessions_tests::RedisServer;
///
/// let Some(mut redis) = RedisServer::start().await else { return }; // not installed: skipped
/// let url = redis.url();
/// redis.stop().await;    // an outage
/// redis.restart().await; // same port, empty
/// # }
/// ```
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    starts: u32,
    /// A node of a Redis Cluster (see [`RedisCluster`]) rather than a server of its own.
    cluster_node: bool,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing `skipped: ..`) if `redis-server` is not
    /// installed. Panics if it is installed but does not start, or if it is missing and
    /// `REQUIRE_SERVERS=1`.
    pub async fn start() -> Option<Self> {
        Self::start_as(false).await
    }

    async fn start_as(cluster_node: bool) -> Option<Self> {
        let Some(binary) = which("redis-server") else {
            return missing("redis-server not installed");
        };
        let dir = tempfile::Builder::new()
            .prefix("typed-sessions-redis-")
            .tempdir()
            .expect("creating a temporary directory failed");
        let mut server = RedisServer {
            binary,
            port: 0,
            dir,
            child: None,
            starts: 0,
            cluster_node,
        };
        // The port is free when picked but could be taken before the server binds it: retry.
        for _ in 0..5 {
            server.port = if cluster_node { free_cluster_port() } else { free_port() };
            if server.launch().await {
                return Some(server);
            }
        }
        panic!("redis-server did not start; log:\n{}", server.log());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.starts))
    }

    fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// Spawns the server on `self.port` and waits until it answers `PING`.
    async fn launch(&mut self) -> bool {
        self.starts += 1;
        let child = Command::new(&self.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(if self.cluster_node {
                // Its cluster state lives in its directory, so a restarted node rejoins. A node
                // is judged failed after one second without answers: failovers in tests take
                // seconds, not the default fifteen.
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ][..]
            } else {
                &[][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server failed");
        self.child = Some(child);
        let port = self.port;
        let ready = wait_until_ready(&mut self.child, Duration::from_secs(10), || ping(port)).await;
        if ready {
            tracing::debug!(port, "redis-server ready");
        }
        ready
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        running(&mut self.child)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server answering without closing its connections (`SIGSTOP`), as a frozen
    /// machine or a network that drops packets would: clients' commands wait, unanswered, until
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [paused](Self::pause) server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        // The shell's own `kill`: procps' may not be installed.
        let status = Command::new("sh")
            .args(["-c", "kill \"$0\" \"$1\"", signal, &pid.to_string()])
            .status()
            .expect("running sh");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    /// Kills the server (`SIGKILL`: clients see their connections drop, as in a crash) and
    /// waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            reap(&mut child, Duration::from_secs(10)).await;
            tracing::debug!(port = self.port, "redis-server stopped");
        }
    }

    /// Starts the server again on the same port (and directory), empty. Panics if it does not start.
    pub async fn restart(&mut self) {
        self.stop().await;
        assert!(
            self.launch().await,
            "redis-server did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            reap_blocking(&mut child, Duration::from_secs(10));
        }
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A loopback port for a Redis Cluster node: free, and so is the port 10,000 above it (the
/// node's cluster bus), which must also be a valid port.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= u16::MAX - 10_000 && StdTcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of its own: three masters and a replica of each, six `redis-server`s on
/// loopback ports (see [`RedisServer`]), joined by `redis-cli --cluster create`.
///
/// ```no_run
/// # async fn demo() {
/// use typed_sessions_tests::RedisCluster;
///
/// let Some(mut cluster) = RedisCluster::start().await else { return }; // not installed: skipped
/// let urls = cluster.urls();
/// let master = cluster.masters().await[0];
/// cluster.kill(master).await;          // a replica takes over
/// cluster.wait_until_healthy().await;
/// # }
/// ```
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the six nodes and creates the cluster, or returns `None` (after printing
    /// `skipped: ..`) if `redis-server` or `redis-cli` is not installed. Panics if they are
    /// installed but the cluster does not form, or if one is missing and `REQUIRE_SERVERS=1`.
    pub async fn start() -> Option<Self> {
        let Some(cli) = which("redis-cli") else {
            return missing("redis-cli not installed");
        };
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(RedisServer::start_as(true).await?);
        }
        let mut cluster = RedisCluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new(cli)
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli failed");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_healthy().await;
        Some(cluster)
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes (by index) that are masters now, in index order.
    pub async fn masters(&mut self) -> Vec<usize> {
        let mut masters = Vec::new();
        for index in 0..self.nodes.len() {
            if !self.nodes[index].is_running() {
                continue;
            }
            let role: Vec<redis::Value> = node_command(&self.nodes[index], redis::cmd("ROLE"))
                .await
                .expect("ROLE failed");
            if matches!(role.first(), Some(redis::Value::BulkString(kind)) if kind == b"master") {
                masters.push(index);
            }
        }
        masters
    }

    /// Kills node `index` (`SIGKILL`, as in a crash).
    pub async fn kill(&mut self, index: usize) {
        self.nodes[index].stop().await;
    }

    /// Kills every node: the whole cluster is down.
    pub async fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
    }

    /// Starts every node again on its port, with its cluster state but no data (they keep
    /// nothing on disk), and waits until the cluster is healthy.
    pub async fn restart(&mut self) {
        for node in &mut self.nodes {
            node.restart().await;
        }
        self.wait_until_healthy().await;
    }

    /// Waits (up to 30 s, else panics) until every running node says the cluster is `ok` — all
    /// slots served by reachable masters — and every running replica is in sync with its master.
    pub async fn wait_until_healthy(&mut self) {
        let started = Instant::now();
        loop {
            let mut healthy = true;
            for node in &mut self.nodes {
                if !node.is_running() {
                    continue;
                }
                let info: String = node_command(node, redis::cmd("CLUSTER").arg("INFO").clone())
                    .await
                    .unwrap_or_default();
                let replication: String = node_command(node, redis::cmd("INFO").arg("replication").clone())
                    .await
                    .unwrap_or_default();
                let replica_down = replication.contains("role:slave") && !replication.contains("master_link_status:up");
                healthy &= info.contains("cluster_state:ok") && !replica_down;
            }
            if healthy {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Redis Cluster did not become healthy; logs:\n{}",
                self.nodes
                    .iter()
                    .map(RedisServer::log)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<u16> = self.nodes.iter().map(RedisServer::port).collect();
        f.debug_struct("RedisCluster").field("ports", &ports).finish()
    }
}

/// `cmd` sent to one node directly (not through a cluster client).
async fn node_command<T: redis::FromRedisValue>(node: &RedisServer, cmd: redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(node.url())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut connection).await
}

/// Whether a Redis server on `port` answers `PING`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A PostgreSQL cluster of its own: `initdb` into a temporary directory, `postgres` on a free
/// loopback port (`listen_addresses=127.0.0.1`, its socket in the same temporary directory),
/// trust authentication for the superuser `postgres`, and `fsync=off` (a test database).
///
/// PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `postgres` run
/// as the `postgres` system user (the Debian package creates it; if it is missing it is created
/// with `useradd`), and the temporary directory is handed to that user.
///
/// The binaries (`initdb`, `postgres`, `pg_ctl`) are looked up in `$PG_BIN_DIR`, then next to
/// the `initdb` on `PATH`, then in the newest `/usr/lib/postgresql/<version>/bin` (where Debian
/// installs them).
pub struct PostgresServer {
    bin_dir: PathBuf,
    port: u16,
    dir: TempDir,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
    starts: u32,
}

impl PostgresServer {
    /// Creates and starts a cluster, or returns `None` (after printing `skipped: ..`) if
    /// PostgreSQL is not installed. Panics if it is installed but does not start, or if it is
    /// missing and `REQUIRE_SERVERS=1`.
    pub async fn start() -> Option<Self> {
        let Some(bin_dir) = postgres_bin_dir() else {
            return missing("PostgreSQL (initdb, postgres) not installed");
        };
        let dir = tempfile::Builder::new()
            .prefix("typed-sessions-pg-")
            .tempdir()
            .expect("creating a temporary directory failed");
        let owner = if running_as_root() {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("handing the temporary directory to the postgres user failed");
            Some((uid, gid))
        } else {
            None
        };
        let mut server = PostgresServer {
            bin_dir,
            port: 0,
            dir,
            owner,
            child: None,
            starts: 0,
        };
        server.initdb().await;
        for _ in 0..5 {
            server.port = free_port();
            if server.launch().await {
                return Some(server);
            }
        }
        panic!("postgres did not start; log:\n{}", server.log());
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("postgres-{}.log", self.starts))
    }

    fn log(&self) -> String {
        read_log(&self.log_path())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn initdb(&self) {
        let mut command = self.command("initdb");
        command.arg("-D").arg(self.data_dir()).args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("initdb task panicked")
            .expect("spawning initdb failed");
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Spawns `postgres` on `self.port` and waits until its log says it accepts connections.
    async fn launch(&mut self) -> bool {
        self.starts += 1;
        let log_path = self.log_path();
        let log = File::create(&log_path).expect("creating the postgres log failed");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning postgres failed");
        self.child = Some(child);
        let ready = wait_until_ready(&mut self.child, Duration::from_secs(60), || {
            let ready = read_log(&log_path).contains("ready to accept connections");
            async move { ready }
        })
        .await;
        if ready {
            tracing::debug!(port = self.port, "postgres ready");
        }
        ready
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        running(&mut self.child)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres?sslmode=disable`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// `pg_ctl stop -m fast`: sessions are cut off, committed data is kept. (`pg_ctl` signals
    /// the postmaster; the tests forbid `unsafe`, so no `libc::kill`.)
    fn pg_ctl_stop(&self) -> Command {
        let mut command = self.command("pg_ctl");
        command
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "--no-wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Stops the server (fast shutdown: sessions are cut off, nothing committed is lost) and
    /// waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut stop = self.pg_ctl_stop();
            let _ = tokio::task::spawn_blocking(move || stop.status()).await;
            reap(&mut child, Duration::from_secs(20)).await;
            tracing::debug!(port = self.port, "postgres stopped");
        }
    }

    /// Starts the server again on the same port and data directory: what was committed is
    /// still there. Panics if it does not start.
    pub async fn restart(&mut self) {
        self.stop().await;
        assert!(
            self.launch().await,
            "postgres did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.pg_ctl_stop().status();
            reap_blocking(&mut child, Duration::from_secs(20));
        }
    }
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "pg_ctl"]
            .iter()
            .all(|binary| dir.join(binary).is_file())
    };
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from) {
        if complete(&dir) {
            return Some(dir);
        }
    }
    if let Some(dir) = which("initdb").and_then(|initdb| Some(initdb.canonicalize().ok()?.parent()?.to_path_buf())) {
        if complete(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn running_as_root() -> bool {
    // `/proc/self` belongs to the process's effective user.
    std::fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

/// The uid and gid of the `postgres` system user, created if missing.
fn postgres_user() -> (u32, u32) {
    let lookup = || {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == "postgres")
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
        })
    };
    if let Some(ids) = lookup() {
        return ids;
    }
    eprintln!("creating the system user `postgres` to run PostgreSQL as (tests run as root)");
    let status = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "postgres",
        ])
        .status();
    assert!(
        status.is_ok_and(|status| status.success()),
        "PostgreSQL cannot run as root and creating the `postgres` user failed: create it (useradd --system postgres) or run the tests as another user"
    );
    lookup().expect("the `postgres` user was created but is not in /etc/passwd")
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An app served on a real socket by [`serve`]; the server task is aborted when this is dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` with `axum::serve` on a fresh `TcpListener` bound to `127.0.0.1:0`.
pub async fn serve(app: Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0 failed");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "test server failed");
        }
    });
    TestServer { addr, task }
}

/// A response as [`HttpClient`] read it.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .map(|(_, value)| value.as_str())
    }
}

/// A minimal HTTP/1.1 client over `TcpStream`: keep-alive (one connection per server, reopened
/// when the server closed it), `Content-Length` and chunked bodies, and one cookie jar for every
/// server it talks to, as a browser has for one host. Cookies are stored by name; `Max-Age=0`
/// removes one. Attributes (`Secure`, `Path`, ...) are ignored.
#[derive(Debug, Default)]
pub struct HttpClient {
    jar: BTreeMap<String, String>,
    connections: HashMap<SocketAddr, BufReader<TcpStream>>,
}

impl HttpClient {
    /// A client with an empty cookie jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// `GET path` from the server at `addr`.
    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
        self.request("GET", addr, path).await
    }

    /// `POST path` (empty body) to the server at `addr`.
    pub async fn post(&mut self, addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
        self.request("POST", addr, path).await
    }

    /// Sends one request with the jar's cookies, reads the response, stores its cookies.
    pub async fn request(&mut self, method: &str, addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n");
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(name, value)| format!("{name}={value}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        head.push_str("\r\n");

        // A kept-alive connection the server has closed meanwhile fails at once: reopen it.
        let response = match self.connections.remove(&addr) {
            Some(mut connection) => match exchange(&mut connection, &head).await {
                Ok(response) => Ok((response, connection)),
                Err(_) => self.fresh_exchange(addr, &head).await,
            },
            None => self.fresh_exchange(addr, &head).await,
        };
        let (response, connection) = response?;
        let close = response
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        if !close {
            self.connections.insert(addr, connection);
        }
        for set_cookie in response.set_cookies() {
            let Ok(cookie) = cookie::Cookie::parse(set_cookie) else {
                continue;
            };
            if cookie.max_age().is_some_and(|age| age.is_zero() || age.is_negative()) {
                self.jar.remove(cookie.name());
            } else {
                self.jar.insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        Ok(response)
    }

    async fn fresh_exchange(&self, addr: SocketAddr, head: &str) -> io::Result<(HttpResponse, BufReader<TcpStream>)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut connection = BufReader::new(stream);
        let response = exchange(&mut connection, head).await?;
        Ok((response, connection))
    }

    /// The value of the cookie `name` in the jar.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.get(name).map(String::as_str)
    }

    /// Puts a cookie into the jar (or replaces it).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.insert(name.to_owned(), value.to_owned());
    }

    /// Empties the jar: the next request is a new visitor's.
    pub fn clear_cookies(&mut self) {
        self.jar.clear();
    }

    /// Closes the kept-alive connections.
    pub fn disconnect(&mut self) {
        self.connections.clear();
    }
}

async fn exchange(connection: &mut BufReader<TcpStream>, head: &str) -> io::Result<HttpResponse> {
    connection.get_mut().write_all(head.as_bytes()).await?;
    read_response(connection).await
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

async fn read_line(connection: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if connection.read_line(&mut line).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn read_response(connection: &mut BufReader<TcpStream>) -> io::Result<HttpResponse> {
    let status_line = read_line(connection).await?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(connection).await?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };

    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(connection).await?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                while !read_line(connection).await?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            connection.read_exact(&mut body[start..]).await?;
            read_line(connection).await?;
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| bad(format!("bad content-length {length:?}")))?;
        body.resize(length, 0);
        connection.read_exact(&mut body).await?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        connection.read_to_end(&mut body).await?;
        response.headers.push(("connection".to_owned(), "close".to_owned()));
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}

pub use typed_sessions::store::conformance::{fresh_key, millis_from_now, set_value};

/// Milliseconds since the Unix epoch (negative before it): the form the stores keep times in.
pub fn to_unix_millis(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).expect("a time before the year 292 million"),
        Err(before) => -i64::try_from(before.duration().as_millis()).expect("a time after the year -292 million"),
    }
}

/// A record that lives an hour, holding `user_id = 42`.
pub fn live_record() -> typed_sessions::store::Record {
    let mut record = typed_sessions::store::Record::new(millis_from_now(0), millis_from_now(3_600_000));
    record.values.insert("user_id", "42");
    record
}

/// Runs a race test's `round` — applies racing a delete of their record, answering the applies'
/// outcomes — at least 10 times, and on (up to 300 rounds) until one round's applies landed on
/// both sides of the delete: some found the record (they ran before the delete), some found it
/// gone (after). Fails if none did, so that a pass shows the race was run, not only that one
/// side always won it.
pub async fn race_until_both_sides<F>(mut round: impl FnMut() -> F)
where
    F: Future<Output = Vec<typed_sessions::store::Applied>>,
{
    use typed_sessions::store::Applied;
    let (mut rounds, mut raced) = (0, 0);
    while rounds < 10 || (raced == 0 && rounds < 300) {
        rounds += 1;
        let outcomes = round().await;
        raced += usize::from(outcomes.contains(&Applied::Applied) && outcomes.contains(&Applied::Missing));
    }
    assert!(raced > 0, "in {rounds} rounds no apply ran on each side of the delete");
}

/// Two stores over one server that keep sessions apart (a clone given another table or prefix)
/// load at once, interleaved, each a session of its own under the same key: each reads its own,
/// also (on the SQL stores, which batch their loads) when its loads are queued behind the
/// other's and read together.
pub async fn clones_apart_load_their_own_sessions<S: SessionStore>(one: &S, two: &S) {
    let keys: Vec<StoreKey> = (0..16)
        .map(|_| typed_sessions::store::conformance::fresh_key())
        .collect();
    for (store, marker) in [(one, "\"one\""), (two, "\"two\"")] {
        for key in &keys {
            let mut record = live_record();
            record.values.insert("store", marker);
            assert_eq!(store.create(key, &record).await.unwrap(), Created::Created);
        }
    }
    let loads = (0..128).map(|turn| {
        let (store, marker) = if turn % 2 == 0 {
            (one, "\"one\"")
        } else {
            (two, "\"two\"")
        };
        let key = keys[turn / 2 % keys.len()];
        async move { (store.load(&key).await, marker) }
    });
    for (loaded, marker) in futures_util::future::join_all(loads).await {
        let record = loaded.unwrap().expect("a session of this store was not found");
        assert_eq!(
            record.values.get("store"),
            Some(marker),
            "a load read the other store's session"
        );
    }
}

/// Tasks on a multi-thread runtime apply patches to one session, alternating between two store
/// instances over the same storage (as two processes would): every key survives, and two values
/// written in one patch are never seen apart, by a reader in between or at the end.
pub async fn concurrent_applies_from_two_instances_all_survive<S>(
    one: std::sync::Arc<S>,
    two: std::sync::Arc<S>,
    rounds: usize,
) where
    S: typed_sessions::SessionStore,
{
    use typed_sessions::store::Applied;

    let key = fresh_key();
    one.create(&key, &live_record()).await.unwrap();
    let tasks = 8;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = std::sync::Arc::clone(if task % 2 == 0 { &one } else { &two });
            tokio::spawn(async move {
                for round in 0..rounds {
                    let mut changes = set_value(&format!("task{task}_round{round}"), &round.to_string());
                    let both = format!("\"{task}-{round}\"");
                    changes.values.insert("a", Some(both.clone()));
                    changes.values.insert("b", Some(both));
                    assert_eq!(store.apply(&key, &changes).await.unwrap(), Applied::Applied);
                    let seen = store.load(&key).await.unwrap().unwrap();
                    assert_eq!(seen.values.get("a"), seen.values.get("b"), "a patch came apart");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }

    let loaded = two.load(&key).await.unwrap().unwrap();
    for task in 0..tasks {
        for round in 0..rounds {
            assert_eq!(
                loaded.values.get(&format!("task{task}_round{round}")),
                Some(round.to_string().as_str()),
                "task {task} round {round} lost"
            );
        }
    }
    assert_eq!(loaded.values.get("a"), loaded.values.get("b"));
    assert_eq!(loaded.values.get("user_id"), Some("42"));
}

// ---------------------------------------------------------------------------------------------
// An instrumented store, for the layer's tests

/// How the store of a test answers: at once, as `MemoryStore` does, or only after yielding to
/// the runtime on every call, as a store across a network does. The layer has one path for both;
/// the end-to-end and expiry suites run every test both ways ([`on_both_paths!`]).
///
/// [`TestStore::layer`] (and [`fresh_layer`]) give the layer `MemoryStore` itself in the first
/// mode — the storage the layer calls directly and polls in place, as most apps on
/// `MemoryStore` run — and the [`TestStore`] wrapper in the second, which the layer calls
/// through its boxed, timed store interface and awaits. Tests that count the store's calls
/// build their layer on the wrapper in both modes (`SessionLayer::new(store.clone())`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// Every call is ready when first polled.
    AtOnce,
    /// Every call yields to the runtime once before it answers.
    Awaited,
}

/// What a [`TestStore`] does instead of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Every call fails as an unreachable store's does.
    Down,
    /// No call ever answers.
    Hanging,
    /// `load` finds a record it cannot decode; writes do nothing.
    Corrupt,
}

std::thread_local! {
    static ANSWERS: std::cell::Cell<Answers> = const { std::cell::Cell::new(Answers::AtOnce) };
    static IN_COOKIE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs the async test `body` on a current-thread runtime (as `#[tokio::test]` does), with every
/// [`TestStore`] it makes answering as `answers` says.
pub fn run_with(answers: Answers, body: impl Future<Output = ()>) {
    ANSWERS.with(|cell| cell.set(answers));
    IN_COOKIE.with(|cell| cell.set(false));
    block_on(body);
}

/// Runs the async test `body` as [`run_with`] does, with every [`fresh_layer`] it makes keeping
/// sessions in the cookie (client-side sessions).
pub fn run_client_side(body: impl Future<Output = ()>) {
    ANSWERS.with(|cell| cell.set(Answers::AtOnce));
    IN_COOKIE.with(|cell| cell.set(true));
    block_on(body);
}

/// The key the client-side layers of the tests encrypt with.
pub fn test_encryption_key() -> typed_sessions::EncryptionKey {
    typed_sessions::EncryptionKey::from_bytes(&[7; 32]).expect("32 bytes is long enough")
}

/// A layer over new sessions, kept as the running test says: in a new [`TestStore`]'s records
/// (see [`TestStore::layer`]; the store is returned too, for the test to look into its `inner`),
/// or, under [`run_client_side`], in the cookie itself (no store).
pub fn fresh_layer() -> (typed_sessions::SessionLayer, Option<std::sync::Arc<TestStore>>) {
    if IN_COOKIE.with(std::cell::Cell::get) {
        (typed_sessions::SessionLayer::client_side([test_encryption_key()]), None)
    } else {
        let store = std::sync::Arc::new(TestStore::default());
        (store.layer(), Some(store))
    }
}

fn block_on(body: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(body);
}

/// Declares each of the listed `async fn` tests once more, in module `client_side`, where every
/// [`fresh_layer`] keeps sessions in the cookie: for the tests whose behaviour is the same with
/// client-side sessions.
#[macro_export]
macro_rules! on_client_side {
    ($($test:ident),* $(,)?) => {
        mod client_side {
            $(#[test] fn $test() { $crate::run_client_side(super::$test()) })*
        }
    };
}

/// [`on_both_paths!`] and [`on_client_side!`] together: each listed test over a store that
/// answers at once, one that is awaited, and client-side sessions.
#[macro_export]
macro_rules! on_every_path {
    ($($test:ident),* $(,)?) => {
        $crate::on_both_paths!($($test),*);
        $crate::on_client_side!($($test),*);
    };
}

/// Declares each of the listed `async fn` tests twice, in modules `at_once` and `awaited`: once
/// with stores that answer at once (`MemoryStore` itself, through [`TestStore::layer`], or the
/// wrapper for tests that count calls), once with stores that must be awaited.
#[macro_export]
macro_rules! on_both_paths {
    ($($test:ident),* $(,)?) => {
        mod at_once {
            $(#[test] fn $test() { $crate::run_with($crate::Answers::AtOnce, super::$test()) })*
        }
        mod awaited {
            $(#[test] fn $test() { $crate::run_with($crate::Answers::Awaited, super::$test()) })*
        }
    };
}

/// A store (by default a `MemoryStore`) wrapped to count its calls and keep the last patch it
/// was given; it answers at once or after yielding (see [`Answers`]; the constructors take the
/// mode of the running [`run_with`]), or [fails](Failure), and its `create` and `delete` can be
/// held at a [`Gate`]. The one store wrapper of the tests.
pub struct TestStore<S = MemoryStore> {
    /// Where the records are; shared with the layer that [`layer`](Self::layer) builds in the
    /// at-once mode.
    pub inner: std::sync::Arc<S>,
    answers: Answers,
    failure: Option<Failure>,
    /// Whether `owner_sessions` reaches the inner store's owner index; without it the store
    /// answers as one that keeps none.
    owner_index: bool,
    /// Calls of `load` so far.
    pub loads: AtomicUsize,
    /// Calls of `create` so far.
    pub creates: AtomicUsize,
    /// Calls of `apply` so far.
    pub applies: AtomicUsize,
    /// Calls of `delete` so far.
    pub deletes: AtomicUsize,
    /// The patch of the last `apply`.
    pub last_changes: parking_lot::Mutex<Option<Changes>>,
    /// The keys `create` was called with, in order.
    pub created_keys: parking_lot::Mutex<Vec<StoreKey>>,
    /// Where `create` waits, when armed.
    pub create_gate: Gate,
    /// Where `delete` waits, when armed.
    pub delete_gate: Gate,
}

impl Default for TestStore {
    fn default() -> Self {
        TestStore::wrapping(std::sync::Arc::new(MemoryStore::new()))
    }
}

impl TestStore {
    /// A layer over this store's records, as the running test says ([`Answers`]): on
    /// `MemoryStore` itself when calls answer at once (the layer then calls it directly, and
    /// this wrapper counts nothing), on this wrapper when they are awaited.
    /// A failing store is always the wrapper: `MemoryStore` itself never fails.
    pub fn layer(self: &std::sync::Arc<Self>) -> typed_sessions::SessionLayer {
        if self.answers == Answers::AtOnce && self.failure.is_none() {
            typed_sessions::SessionLayer::new(std::sync::Arc::clone(&self.inner))
        } else {
            typed_sessions::SessionLayer::new(std::sync::Arc::clone(self))
        }
    }

    /// A store that fails every call as `failure` says.
    pub fn failing(failure: Failure) -> Self {
        TestStore {
            failure: Some(failure),
            ..TestStore::default()
        }
    }

    /// A store whose `owner_sessions` fails as a store's without an owner index does.
    pub fn without_owner_index() -> Self {
        TestStore {
            owner_index: false,
            ..TestStore::default()
        }
    }
}

impl<S: SessionStore> TestStore<S> {
    /// `inner`, wrapped; its owner index (if it keeps one) reachable.
    pub fn wrapping(inner: std::sync::Arc<S>) -> Self {
        TestStore {
            inner,
            answers: ANSWERS.with(std::cell::Cell::get),
            failure: None,
            owner_index: true,
            loads: AtomicUsize::new(0),
            creates: AtomicUsize::new(0),
            applies: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
            last_changes: parking_lot::Mutex::new(None),
            created_keys: parking_lot::Mutex::new(Vec::new()),
            create_gate: Gate::default(),
            delete_gate: Gate::default(),
        }
    }

    /// Calls so far: loads, creates, applies, deletes.
    pub fn counts(&self) -> [usize; 4] {
        [&self.loads, &self.creates, &self.applies, &self.deletes].map(|n| n.load(Ordering::SeqCst))
    }

    /// Creates and applies so far.
    pub fn writes(&self) -> usize {
        self.creates.load(Ordering::SeqCst) + self.applies.load(Ordering::SeqCst)
    }

    /// Counts the call, then waits or fails as the store is set to; `Ok(Some(answer))` is the
    /// answer a corrupt store gives instead of the inner store's.
    async fn call<T>(
        &self,
        counter: &AtomicUsize,
        corrupt: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.answers == Answers::Awaited {
            tokio::task::yield_now().await;
        }
        match self.failure {
            None => Ok(None),
            Some(Failure::Down) => Err(StoreError::unavailable("connection refused")),
            Some(Failure::Hanging) => std::future::pending().await,
            Some(Failure::Corrupt) => corrupt().map(Some),
        }
    }
}

/// What an armed [`Gate`] holds: whom to tell that the call arrived, and what lets it go on.
type Armed = (tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Receiver<()>);

/// A point a [`TestStore`] call waits at, once, when armed: the test learns that the call
/// arrived, does what it wants to happen meanwhile, and lets the call go on. The interleaving is
/// forced, not hoped for with a sleep.
#[derive(Default)]
pub struct Gate(parking_lot::Mutex<Option<Armed>>);

impl Gate {
    /// Arms the gate for the next call: returns (the call arrived, let it go on).
    pub fn arm(&self) -> (tokio::sync::oneshot::Receiver<()>, tokio::sync::oneshot::Sender<()>) {
        let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        *self.0.lock() = Some((arrived_tx, release_rx));
        (arrived_rx, release_tx)
    }

    /// Waits here if armed (disarming it), until the test lets the call go on.
    async fn pass(&self) {
        let armed = self.0.lock().take();
        if let Some((arrived, release)) = armed {
            arrived.send(()).expect("the test waits for the call to arrive");
            release.await.expect("the test lets the call go on");
        }
    }
}

impl<S: SessionStore> SessionStore for TestStore<S> {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        match self
            .call(&self.loads, || Err(StoreError::Corrupt("not JSON".into())))
            .await?
        {
            Some(answer) => Ok(answer),
            None => self.inner.load(key).await,
        }
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        self.create_gate.pass().await;
        self.created_keys.lock().push(*key);
        match self.call(&self.creates, || Ok(Created::Created)).await? {
            Some(answer) => Ok(answer),
            None => self.inner.create(key, record).await,
        }
    }
    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        *self.last_changes.lock() = Some(changes.clone());
        match self.call(&self.applies, || Ok(Applied::Missing)).await? {
            Some(answer) => Ok(answer),
            None => self.inner.apply(key, changes).await,
        }
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.delete_gate.pass().await;
        match self.call(&self.deletes, || Ok(())).await? {
            Some(answer) => Ok(answer),
            None => self.inner.delete(key).await,
        }
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        match self.call(&AtomicUsize::new(0), || Ok(0)).await? {
            Some(answer) => Ok(answer),
            None => self.inner.delete_expired().await,
        }
    }
    async fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        if !self.owner_index {
            return Err(StoreError::Unsupported("this test store keeps no owner index".into()));
        }
        match self.call(&AtomicUsize::new(0), || Ok(Vec::new())).await? {
            Some(answer) => Ok(answer),
            None => self.inner.owner_sessions(owner).await,
        }
    }
}
