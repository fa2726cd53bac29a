//! [`RedisStore`]: one Redis hash per session, merged by Lua scripts in one round trip, on one
//! Redis server or a Redis Cluster.
//!
//! Why this file is long: each Lua script sits next to the code that calls it and the layout
//! docs it implements, so that a reader checks one against the other in one place. The owner
//! index, which touches other keys than the session's, is in `owners`; the record's stored form
//! (its revision and JSON in one field), in `record`.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind, Value};

use super::codec::{expiry_json, lease_millis, now_millis, to_unix_millis};
use super::{Applied, Created, LockAttempt, LockToken, LockedApply, SessionStore, StoreError, StoreKey};
use crate::id::push_hex;
use crate::record::{Changes, Record};

mod owners;
mod record;

use record::{first_rev, live_record, merged_record_json, record_from_reply, record_json, rev_of, RECORD};

/// The key prefix [`RedisStore`] uses unless told otherwise.
const DEFAULT_PREFIX: &str = "session:";

/// Lua: `json_of(text)`, the JSON of the record `text` (a `record` field: its revision's digits
/// and `:` before it, or the JSON alone in a record written before revisions were kept) and its
/// revision (0 when it has none); and
/// `expired(text)`, whether the record `text` expired by `ARGV[1]` (now, Unix ms). A record that
/// does not decode has not: its reader reports it as corrupt.
const EXPIRED_FUNCTION: &str = r"
local function json_of(text)
  if string.byte(text, 1) == 123 then
    return text, 0
  end
  local colon = string.find(text, ':', 1, true)
  local rev = colon and tonumber(string.match(string.sub(text, 1, colon - 1), '^%d+$'))
  if not rev then
    return text, 0
  end
  return string.sub(text, colon + 1), rev
end
local function expired(text)
  local decoded, record = pcall(cjson.decode, (json_of(text)))
  if not decoded or type(record) ~= 'table' then
    return false
  end
  local expires = tonumber(record.expires_at)
  return expires ~= nil and expires <= tonumber(ARGV[1])
end
";

/// `create`: writes the record unless a live one holds the key.
///
/// `KEYS[1]` the session's key; `ARGV[1]` now (Unix ms); `ARGV[2]` expires_at (Unix ms);
/// `ARGV[3]` the record as the `record` field holds it (its revision, `:`, its JSON); `ARGV[4]`
/// its revision.
///
/// "Live" is decided by the stored `expires_at` against the caller's clock, like every other
/// store, so a record Redis has not evicted yet but that the application considers expired never
/// blocks a new one. Whatever else the key held (an expired record, a hash of an older layout)
/// is deleted first.
static CREATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{EXPIRED_FUNCTION}{}",
        r"
local text = redis.call('HGET', KEYS[1], 'record')
if text and not expired(text) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'rev', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"
    ))
});

/// `apply`: writes a change set into the live record, or does nothing if there is none.
///
/// `KEYS[1]` the session's key; `ARGV[1]` now (Unix ms); `ARGV[2]` new expires_at (Unix ms) or
/// `''` to keep it; `ARGV[3]` the expiry override: `''` keep, `'-'` remove, else its JSON;
/// `ARGV[4]` the owner: `''` keep, `'-'` remove, else `'='` followed by its JSON; `ARGV[5]` the
/// lock's token (see [`APPLY_LOCKED`]; unused here); `ARGV[6]` how many of the name, value pairs
/// that follow are the values' (the rest are the flash's); `ARGV[7]` the revision the request
/// loaded the record at, `ARGV[8]` that record with the changes applied, and `ARGV[9]` its
/// revision, the next one (or `''`, `''` and `''`); `ARGV[10..]` the pairs: a name and its new
/// value's JSON, or `''` (which no JSON is) to remove it.
///
/// Two ways to write, with one result. If the stored revision (the hash's `rev` field) is still
/// the one the request loaded (`ARGV[7]`, sent only while that record is live by `ARGV[1]`),
/// the script stores `ARGV[8]`, the merge the app already made, and the next revision: it reads
/// and compares a few digits, where decoding, merging and re-encoding the record in Lua took
/// Redis' one thread about twice as long for a small session, and every byte of a record that
/// passes through Lua costs that thread about a nanosecond (see BENCHMARKS.md); that thread is
/// what requests queue behind. Otherwise (another request wrote the session meanwhile, or it
/// ended, or it was written before revisions were kept) the script merges the pairs into what
/// is stored, as below, and moves the revision on.
///
/// The changes come as arguments, not as one JSON object, so that nothing but the record passes
/// through `cjson`. Every leaf of the stored record is a string (each value's JSON, the times,
/// the expiry's and the owner's JSON), so `cjson` only ever decodes and re-encodes strings: a
/// number never passes through Lua's doubles. The record is decoded before anything is written:
/// a script that fails half-way keeps its writes, so a corrupt record must stop it before the
/// first.
static APPLY: LazyLock<Lua> = LazyLock::new(|| Lua::new(format!("{EXPIRED_FUNCTION}{APPLY_FUNCTION}return write()\n")));

/// [`APPLY`]'s work, as the Lua function `write()`: the app's rewrite stored if the revision it
/// was made from is still the stored one, else the changes merged by `apply(text)` (`text` the
/// stored record, `false` if there is none), the revision after the stored one's; either way
/// written by `store(text, rev)`, with the new expiry if there is one. 1 if written, 0 if no
/// live record.
const APPLY_FUNCTION: &str = r"
local function store(text, rev)
  redis.call('HSET', KEYS[1], 'record', text, 'rev', rev)
  if ARGV[2] ~= '' then
    redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  end
  return 1
end
local function apply(text)
  if not text then
    return 0
  end
  local json, loaded = json_of(text)
  local record = cjson.decode(json)
  if tonumber(record.expires_at) <= tonumber(ARGV[1]) then
    return 0
  end
  local flash_from = 10 + 2 * tonumber(ARGV[6])
  local function merge(field, from, to)
    if from > to then
      return
    end
    local map = record[field] or {}
    for at = from, to, 2 do
      if ARGV[at + 1] == '' then
        map[ARGV[at]] = nil
      else
        map[ARGV[at]] = ARGV[at + 1]
      end
    end
    if next(map) == nil then
      map = nil
    end
    record[field] = map
  end
  merge('values', 10, flash_from - 1)
  merge('flash', flash_from, #ARGV)
  if ARGV[3] == '-' then
    record.expiry = nil
  elseif ARGV[3] ~= '' then
    record.expiry = ARGV[3]
  end
  if ARGV[4] == '-' then
    record.owner = nil
  elseif ARGV[4] ~= '' then
    record.owner = string.sub(ARGV[4], 2)
  end
  if ARGV[2] ~= '' then
    record.expires_at = ARGV[2]
  end
  -- Every digit, exactly (`tostring` switches to an exponent past 14 of them, and `%d` goes
  -- through a C `long`, 32 bits on some builds).
  local rev = string.format('%.0f', loaded + 1)
  return store(rev .. ':' .. cjson.encode(record), rev)
end
local function write()
  if ARGV[7] ~= '' and redis.call('HGET', KEYS[1], 'rev') == ARGV[7] then
    return store(ARGV[8], ARGV[9])
  end
  return apply(redis.call('HGET', KEYS[1], 'record'))
end
";

/// `apply_locked`: [`APPLY`] only while the caller's token holds the session's lock, which it
/// then releases. 1 written, 0 no live record, -1 the lock is not the caller's.
///
/// `KEYS[1]` the session's key, `KEYS[2]` its lock's; `ARGV` as for [`APPLY`], with the token
/// in `ARGV[5]`. (A plain `Session` ignores the lock, so the revision is compared here too.)
static APPLY_LOCKED: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{EXPIRED_FUNCTION}{APPLY_FUNCTION}{}",
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[5] then
  local text = redis.call('HGET', KEYS[1], 'record')
  if not text or expired(text) then
    return 0
  end
  return -1
end
local applied = write()
redis.call('DEL', KEYS[2])
return applied
"
    ))
});

/// `lock_and_load`: takes the session's lock (`SET NX PX`, so Redis' clock times the lease)
/// and reads the session, in one step. Returns `{'taken', record}` (the session's record, as
/// stored), `{'busy', milliseconds the lease still runs}` or `{'missing'}` — no live session,
/// nothing locked.
///
/// `KEYS[1]` the session's key, `KEYS[2]` its lock's; `ARGV[1]` now (Unix ms); `ARGV[2]` the
/// token; `ARGV[3]` the lease in ms.
static LOCK_AND_LOAD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{EXPIRED_FUNCTION}{}",
        r"
local text = redis.call('HGET', KEYS[1], 'record')
if not text or expired(text) then
  return {'missing'}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'taken', text}
end
return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
"
    ))
});

/// `renew_lock`: 1 if the token holds the lock (its lease restarted) or the session is gone,
/// else 0. `KEYS[1]` the session's key, `KEYS[2]` its lock's; `ARGV[1]` the token; `ARGV[2]` the
/// lease in ms.
static RENEW_LOCK: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 1
end
return 0
",
    )
});

/// `unlock`: deletes the lock if the token holds it. `KEYS[2]` the lock's key; `ARGV[1]` the
/// token. (`KEYS[1]`, the session's, only places the script on the session's node.)
static UNLOCK: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 0
",
    )
});

/// A Lua script: its source, and its hash for `EVALSHA`.
struct Lua {
    source: String,
    script: Script,
}

impl Lua {
    fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        let script = Script::new(&source);
        Lua { source, script }
    }

    /// The script run on `keys` with `args`: by its hash, or (`eval`) by its source.
    fn call(&self, keys: &[&str], args: &[Cow<'_, str>], eval: bool) -> Cmd {
        let (name, script) = if eval {
            ("EVAL", self.source.as_str())
        } else {
            ("EVALSHA", self.script.get_hash())
        };
        // The argument count's digits take 2 bytes at most.
        let bytes = script.len()
            + 2
            + keys.iter().map(|key| key.len()).sum::<usize>()
            + args.iter().map(|arg| arg.len()).sum::<usize>();
        let mut cmd = command(name, 2 + keys.len() + args.len(), bytes);
        cmd.arg(script).arg(keys.len()).arg(keys);
        for arg in args {
            cmd.arg(arg.as_ref());
        }
        cmd
    }
}

/// Sessions in Redis: one hash per session, expired by Redis itself (`PEXPIREAT`).
///
/// ```no_run
/// # async fn demo() -> Result<(), typed_sessions::store::StoreError> {
/// use typed_sessions::{RedisStore, SessionLayer};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
///
/// # Layout
///
/// A session lives under `<prefix><store key in hex>` (prefix `session:` by default, see
/// [`with_prefix`](Self::with_prefix)), a hash with two fields. `record` holds the record's
/// revision in digits, `:`, then a JSON object with the members
///
/// | member | holds |
/// |---|---|
/// | `values` | an object: each stored name → its value's JSON, as a string (absent when empty) |
/// | `flash` | the same for the flash |
/// | `created_at`, `expires_at` | Unix milliseconds, as strings |
/// | `expiry` | the per-session expiry override's JSON, as a string (absent when there is none) |
/// | `owner` | the owner key's JSON ([`Record::owner`]), as a string (absent when there is none) |
///
/// and `rev` the same revision, alone: a number that starts at random when the session is
/// created (at 1 for a session stored before revisions were kept, on its first write) and every
/// write moves on by one (see "Round trips"). The revision comes before the
/// JSON, not in it, so that a load reads it without a member more to decode. The hash has a Redis expiry
/// (`PEXPIREAT`) at `expires_at`, so `delete_expired` has nothing to do. A hash without the
/// `record` field (one of an older layout) is no session; a record without a revision (written
/// before revisions were kept) is read as any other, and gets one on its first write.
///
/// # Sessions of an owner
///
/// The sessions of an owner are listed in a sorted set, `<prefix>owner:<SHA-256 of the owner's
/// JSON, in hex>`, of their store keys in hex, each scored with when it was added. On a Redis
/// Cluster that set is in another hash slot than the sessions, so it cannot be written by their
/// scripts: a session is added to it *before* the write that gives the session its owner, so the
/// set holds at least every session of the owner, and listing reads each member's hash
/// (concurrently: one round trip's wait in all) and keeps those that are live and still have that
/// owner. The others (expired, deleted, given another owner) are removed from the set then, unless
/// added in the last minute by Redis' clock (their write may still be on its way); and the set is
/// pruned so when an added session takes it to 64 members, 128, 256, …. Redis deletes a set left
/// empty. Ending the sessions of an owner lists them and deletes their hashes.
///
/// The sets have no expiry (a session's does not move its set's): with an eviction policy that
/// may evict any key (`allkeys-lru`, `allkeys-lfu`, `allkeys-random`), Redis could drop an
/// owner's set while their sessions live, and they would not be listed until a new login. Use
/// `noeviction` or a `volatile-*` policy (sessions themselves have an expiry) for a Redis that
/// holds sessions.
///
/// The whole record is one field: loading a session is then one bulk string to parse whatever
/// its size. Each item of a reply costs the client an allocation and a parse, which it does on
/// the connection's one task, for every request in turn: a session hash of one field per value
/// made a session of 100 keys several times slower to load, and one of a field per part (three
/// to six) cost a read-only request a fifth more of the app's instructions than this, and the
/// connection's task more time than any other part of the request (see BENCHMARKS.md).
/// Every member is a string, a value's JSON too, so that the merge script, which decodes and
/// re-encodes the record with Lua's `cjson`, never turns a number into a double.
///
/// # Redis Cluster
///
/// [`connect_cluster`](Self::connect_cluster) connects to a cluster instead of one server.
/// Every command and script of the store touches the one key of one session, so all of a
/// session's data is in one hash slot, on one master, and each call is one round trip to it.
///
/// Redis replicates to replicas asynchronously: when a master fails and a replica takes over,
/// the writes the master acknowledged but had not yet sent to that replica are lost. For
/// sessions that means a change made in the last moment before the failover (a login, a logout,
/// a value set) may be undone, and a session created then may be gone (its user is logged out);
/// Redis' `WAIT` would narrow that window at the cost of a round trip per write, and does not
/// close it. During the failover itself (about the cluster's `cluster-node-timeout` plus a
/// second), calls for the failed master's sessions fail or time out, so those requests get a
/// 503; the cluster client finds the new master by itself and sessions work again without
/// restarting the app.
///
/// # Round trips
///
/// `load` is one `HGET`, sent as soon as it is asked for: the multiplexed connection already
/// writes the commands of concurrent requests together and reads their replies together, so
/// loads are not queued for batches here as they are for the SQL stores (measured: sent at
/// once, a store serves 1.4–1.8× the loads a second, at less CPU per load on both sides; see
/// BENCHMARKS.md).
/// `create` and `apply` are one `EVALSHA` each: Lua scripts that check
/// the record is live (or, for `apply`'s write over the loaded record below, that it is the one
/// the app checked) and write it (`HSET`, `PEXPIREAT`) atomically, `apply` merging the
/// changed names into the stored objects. Two requests of one
/// session that change different keys both keep their changes; a change to a session that was
/// deleted meanwhile writes nothing. (After Redis restarts, the first call of each script also
/// sends it: `NOSCRIPT`, then `EVAL` with the script's source.)
///
/// `load` notes the record's revision as its [`revision`](Record::revision), so the layer hands the
/// loaded record back with the request's changes ([`Changes::base`]). While that record is
/// live, `apply` then sends it with the changes applied as well, at the next revision, and the
/// script stores that if the `rev` field still holds the loaded revision (`apply_locked` too,
/// with the record the lock script read). It merges in Lua only otherwise: when another write
/// came between, and for changes without a base (`regenerate_id`'s, a direct caller's).
/// Decoding, merging and re-encoding the record in Lua took Redis' one thread, which every
/// request waits on, about twice as long for a small session; and every byte of a record that
/// passes into or out of a script costs that thread about a nanosecond, so the script reads the
/// few digits of `rev`, not the record (see BENCHMARKS.md).
///
/// # Outages
///
/// [`connect`](Self::connect) sets a connection timeout and does not wait between reconnection
/// attempts, so while Redis is down calls fail at once with [`StoreError::Unavailable`] (the
/// request gets a 503), and the store reconnects by itself on the first call after Redis is
/// back. A Redis that stops answering without closing the connection costs each call the
/// layer's store timeout ([`SessionLayer::with_store_timeout`](crate::SessionLayer::with_store_timeout),
/// 5 s by default), which every call the layer makes is under; with no store timeout, calls
/// wait for as long as Redis does. A store built with
/// [`from_manager`](Self::from_manager) behaves as that manager was configured.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    prefix: String,
}

/// One server or a cluster. Both are handles to one multiplexed connection (per node): cloning
/// one for a call is cheap.
#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` with a redis-rs TLS feature enabled) with the
    /// [default connection settings](Self::default_manager_config).
    ///
    /// Fails with [`StoreError::Unavailable`] if the server cannot be reached, and with
    /// [`StoreError::Backend`] if the URL is invalid.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_config(url, Self::default_manager_config()).await
    }

    /// Connects to the Redis server at `url` with the given connection settings.
    pub async fn connect_with_config(url: &str, config: ConnectionManagerConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(map_error)?;
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(map_error)?;
        tracing::debug!("connected to Redis");
        Ok(Self::from_manager(manager))
    }

    /// The settings [`connect`](Self::connect) uses: connecting times out after 1 s, and a lost
    /// connection is re-established on the next call instead of after a back-off, so a Redis
    /// that is down costs each request at most that timeout, never a queue.
    ///
    /// No response timeout: the layer's store timeout (5 s by default) already bounds every call
    /// it makes, and redis-rs arms a tokio timer for each command that has one, which cost the
    /// app 2–3% of its instructions per request (see BENCHMARKS.md). A layer built with
    /// `with_store_timeout(None)` then waits on a Redis that stops answering for as long as it
    /// does. Code that calls the store directly,
    /// outside a layer, and wants each command bounded can add one:
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), typed_sessions::store::StoreError> {
    /// use std::time::Duration;
    /// use typed_sessions::RedisStore;
    ///
    /// let config = RedisStore::default_manager_config().set_response_timeout(Some(Duration::from_secs(2)));
    /// let store = RedisStore::connect_with_config("redis://127.0.0.1:6379", config).await?;
    /// # Ok(()) }
    /// ```
    pub fn default_manager_config() -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(None)
            .set_number_of_retries(0)
    }

    /// A store on an existing connection manager (an app that already talks to Redis).
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self::on(Connection::Server(manager))
    }

    /// Connects to the Redis Cluster that `nodes` belong to (`redis://host:port` URLs of one or
    /// more of its nodes; the client learns the rest from them) with the
    /// [default cluster settings](Self::default_cluster_client).
    ///
    /// Fails with [`StoreError::Unavailable`] if no node can be reached, and with
    /// [`StoreError::Backend`] if a URL is invalid.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), typed_sessions::store::StoreError> {
    /// use typed_sessions::{RedisStore, SessionLayer};
    ///
    /// let store = RedisStore::connect_cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]).await?;
    /// let layer = SessionLayer::new(store);
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<N: AsRef<str>>(nodes: impl IntoIterator<Item = N>) -> Result<Self, StoreError> {
        let nodes: Vec<String> = nodes.into_iter().map(|node| node.as_ref().to_owned()).collect();
        let client = Self::default_cluster_client(nodes).build().map_err(map_error)?;
        Self::connect_cluster_with(&client).await
    }

    /// Connects to a Redis Cluster through `client`, built with the settings you choose.
    pub async fn connect_cluster_with(client: &ClusterClient) -> Result<Self, StoreError> {
        let connection = client.get_async_connection().await.map_err(map_error)?;
        tracing::debug!("connected to the Redis Cluster");
        Ok(Self::from_cluster(connection))
    }

    /// The settings [`connect_cluster`](Self::connect_cluster) uses for the cluster at `nodes`:
    /// connecting times out after 1 s, as [`connect`](Self::connect)'s, and a command after 2 s;
    /// a command that fails because its node is down or the slot moved is retried twice, after
    /// the client has refreshed its map of the cluster.
    pub fn default_cluster_client(nodes: Vec<String>) -> ClusterClientBuilder {
        ClusterClientBuilder::new(nodes)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(2))
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(500)
    }

    /// A store on an existing cluster connection (an app that already talks to its cluster).
    pub fn from_cluster(connection: ClusterConnection) -> Self {
        Self::on(Connection::Cluster(connection))
    }

    fn on(connection: Connection) -> Self {
        RedisStore {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    /// Files sessions under keys starting with `prefix` (default `"session:"`): give each app
    /// sharing one Redis database its own. On a Redis Cluster, a prefix with `{` or `}` should
    /// hold a whole hash tag (`"{app}:"`, which puts every session on one node) or none: with a
    /// stray brace a session's lock key cannot share its slot, and `LockedSession` requests fail.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key a session is filed under: the prefix followed by the store key in hex.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        let mut redis_key = String::with_capacity(self.prefix.len() + 64);
        redis_key.push_str(&self.prefix);
        push_hex(&mut redis_key, key.as_bytes());
        redis_key
    }

    /// Runs a command; retried once if the connection was refused, which means the command was
    /// never sent and the manager has just started a new connection attempt (Redis came back).
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.send(&Request::Command(cmd)).await
    }

    /// Runs `script` on the session `key` with `args` (`EVALSHA`; `EVAL` if Redis does not know
    /// the script); retried as `query`.
    async fn invoke<T: FromRedisValue>(
        &self,
        script: &Lua,
        key: &StoreKey,
        args: &[Cow<'_, str>],
    ) -> Result<T, StoreError> {
        let key = self.redis_key(key);
        self.send(&Request::Script {
            script,
            keys: &[&key],
            args,
        })
        .await
    }

    /// [`invoke`](Self::invoke) on the session `key` and its lock's key.
    async fn invoke_locked<T: FromRedisValue>(
        &self,
        script: &Lua,
        key: &StoreKey,
        args: &[Cow<'_, str>],
    ) -> Result<T, StoreError> {
        let key = self.redis_key(key);
        let lock = lock_key(&self.prefix, &key);
        self.send(&Request::Script {
            script,
            keys: &[&key, &lock],
            args,
        })
        .await
    }

    async fn send<T: FromRedisValue>(&self, request: &Request<'_>) -> Result<T, StoreError> {
        match self.connection.clone() {
            Connection::Server(mut manager) => request.send_retrying(&mut manager).await,
            Connection::Cluster(mut cluster) => request.send_retrying(&mut cluster).await,
        }
    }
}

/// What the store sends Redis: a command, or a script on one session's key.
enum Request<'a> {
    Command(&'a Cmd),
    Script {
        script: &'a Lua,
        keys: &'a [&'a str],
        args: &'a [Cow<'a, str>],
    },
}

impl Request<'_> {
    /// Sends the request, a second time if the connection was refused (see `RedisStore::query`).
    async fn send_retrying<T: FromRedisValue>(&self, connection: &mut impl ConnectionLike) -> Result<T, StoreError> {
        match self.send(connection).await {
            Err(error) if error.is_connection_refusal() => self.send(connection).await,
            result => result,
        }
        .map_err(map_error)
    }

    /// A script goes as `EVALSHA`, then as `EVAL` if the node answers `NOSCRIPT` (it restarted, or
    /// it is a replica that has just taken over): `EVAL` runs the script and caches it on the node
    /// that holds the key. (redis-rs' own fallback sends `SCRIPT LOAD`, which on a cluster goes to
    /// every node and fails while any of them is down.)
    async fn send<T: FromRedisValue>(&self, connection: &mut impl ConnectionLike) -> redis::RedisResult<T> {
        match *self {
            Request::Command(cmd) => cmd.query_async(connection).await,
            Request::Script { script, keys, args } => {
                match script.call(keys, args, false).query_async(connection).await {
                    Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        script.call(keys, args, true).query_async(connection).await
                    }
                    result => result,
                }
            }
        }
    }
}

/// The key of the lock of the session under `session_key` (which starts with `prefix`): also
/// under the prefix (for ACLs and scans that name it), and in the same hash slot, so that a
/// script may touch both on a Redis Cluster. A key's slot is that of its first `{…}` tag if it
/// has one, else of the whole key: the session key is wrapped in a tag, unless it already has
/// one (from the prefix), which the lock's key then shares.
fn lock_key(prefix: &str, session_key: &str) -> String {
    let tagged = session_key
        .find('{')
        .is_some_and(|open| session_key[open + 1..].find('}').is_some_and(|len| len > 0));
    if tagged {
        format!("{session_key}:lock")
    } else if prefix.contains('{') {
        // The prefix's stray `{` would start the lock key's tag: no prefix in front then.
        format!("{{{session_key}}}:lock")
    } else {
        format!("{prefix}{{{session_key}}}:lock")
    }
}

fn map_error(error: RedisError) -> StoreError {
    let unavailable = error.is_io_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::ClusterConnectionNotFound
        );
    StoreError::classify(error, unavailable)
}

/// `HGET` of the record in the session hash under `redis_key` (see [`record`]).
fn read_record(redis_key: &str) -> Cmd {
    let mut cmd = command("HGET", 2, redis_key.len() + RECORD.len());
    cmd.arg(redis_key).arg(RECORD);
    cmd
}

/// A command named `name` with room for `args` arguments of `bytes` bytes in all: built without
/// growing its buffers on the way.
fn command(name: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(1 + args, name.len() + bytes);
    cmd.arg(name);
    cmd
}

impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let reply: Value = self.query(&read_record(&self.redis_key(key))).await?;
        live_record(&reply, now_millis())
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        if let Some(owner) = &record.owner {
            // Indexed first: the index lists at least every session that has the owner.
            self.index_owner(owner, key).await?;
        }
        let rev = first_rev();
        let args = [
            now_millis().to_string().into(),
            to_unix_millis(record.expires_at).to_string().into(),
            record_json(record, rev)?.into(),
            rev.to_string().into(),
        ];
        let created: i64 = self.invoke(&CREATE, key, &args).await?;
        Ok(if created == 1 {
            Created::Created
        } else {
            Created::Collision
        })
    }

    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        if let Some(Some(owner)) = &changes.owner {
            self.index_owner(owner, key).await?;
        }
        let applied: i64 = self.invoke(&APPLY, key, &apply_args(changes, None)?).await?;
        Ok(if applied == 1 {
            Applied::Applied
        } else {
            Applied::Missing
        })
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.redis_key(key));
        self.query::<()>(&cmd).await
    }

    /// Redis expires session keys itself (`PEXPIREAT`): nothing to do, returns 0.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// A session's lock is a key of its own next to the session's (`<prefix>{<session key>}:lock`,
    /// in the same hash slot), holding the holder's token, set with `SET NX PX`: Redis' clock
    /// times the lease, and a lock outlives no lease.
    const SHARED_LOCKS: bool = true;

    async fn lock_and_load(
        &self,
        key: &StoreKey,
        token: &LockToken,
        lease: Duration,
    ) -> Result<LockAttempt, StoreError> {
        let args = [
            now_millis().to_string().into(),
            token.to_hex().into(),
            lease_millis(lease).to_string().into(),
        ];
        let reply: Vec<Value> = self.invoke_locked(&LOCK_AND_LOAD, key, &args).await?;
        let text = |at: usize| match reply.get(at) {
            Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        };
        // Not quoted in errors: a reply may hold the values of someone's session.
        let unexpected = || StoreError::Corrupt("unexpected reply of the lock script".to_owned());
        match text(0) {
            Some("taken") => match <[Value; 2]>::try_from(reply) {
                Ok([_, record]) => Ok(LockAttempt::Taken(record_from_reply(&record)?.ok_or_else(unexpected)?)),
                Err(_) => Err(unexpected()),
            },
            Some("missing") => Ok(LockAttempt::Missing),
            Some("busy") => {
                // PTTL: -1 no expiry (not set by this store), -2 gone since: ask again soon.
                let millis = text(1).and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
                Ok(LockAttempt::Busy {
                    remaining: Duration::from_millis(millis),
                })
            }
            _ => Err(unexpected()),
        }
    }

    async fn apply_locked(
        &self,
        key: &StoreKey,
        token: &LockToken,
        changes: &Changes,
    ) -> Result<LockedApply, StoreError> {
        if let Some(Some(owner)) = &changes.owner {
            self.index_owner(owner, key).await?;
        }
        let token = token.to_hex();
        let args = apply_args(changes, Some(&token))?;
        let applied: i64 = self.invoke_locked(&APPLY_LOCKED, key, &args).await?;
        Ok(match applied {
            1 => LockedApply::Applied,
            0 => LockedApply::Missing,
            _ => LockedApply::LockLost,
        })
    }

    async fn renew_lock(&self, key: &StoreKey, token: &LockToken, lease: Duration) -> Result<bool, StoreError> {
        let args = [token.to_hex().into(), lease_millis(lease).to_string().into()];
        let held: i64 = self.invoke_locked(&RENEW_LOCK, key, &args).await?;
        Ok(held == 1)
    }

    async fn unlock(&self, key: &StoreKey, token: &LockToken) -> Result<(), StoreError> {
        self.invoke_locked::<i64>(&UNLOCK, key, &[token.to_hex().into()])
            .await
            .map(drop)
    }

    async fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        self.listed(owner).await
    }

    async fn end_owner_sessions(&self, owner: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        self.end_listed(owner, except).await
    }
}

/// The loaded record `base` with `changes` applied, as [`APPLY`] stores it if `base`'s revision
/// is still the stored one. `None` when `base` noted no revision (a record written before
/// revisions were kept) or is no longer live at `now` (Unix ms): the script then merges, or
/// finds no live record.
fn rewritten(base: &Record, changes: &Changes, now: i64) -> Option<Result<Rewrite, StoreError>> {
    let loaded = rev_of(base)?;
    if to_unix_millis(base.expires_at) <= now {
        return None;
    }
    Some(merged_record_json(base, changes, loaded + 1).map(|text| Rewrite { loaded, text }))
}

/// A record rewritten by the app: the revision it was loaded at, and its text at the next one.
struct Rewrite {
    loaded: i64,
    text: String,
}

/// [`APPLY`]'s arguments for `changes`, now, and [`APPLY_LOCKED`]'s, with the lock's `token`:
/// [`script_args`] with the app's rewrite of `changes.base`, if it makes one.
fn apply_args<'a>(changes: &'a Changes, token: Option<&'a str>) -> Result<Vec<Cow<'a, str>>, StoreError> {
    let now = now_millis();
    let rewrite = changes.base.as_deref().and_then(|base| rewritten(base, changes, now));
    script_args(changes, now, token, rewrite.transpose()?)
}

/// [`apply_args`] at `now` (Unix ms) with `rewrite`: the changed names and values borrowed from
/// `changes`.
fn script_args<'a>(
    changes: &'a Changes,
    now: i64,
    token: Option<&'a str>,
    rewrite: Option<Rewrite>,
) -> Result<Vec<Cow<'a, str>>, StoreError> {
    let expires_at = changes
        .expires_at
        .map_or(Cow::Borrowed(""), |at| to_unix_millis(at).to_string().into());
    let expiry = match &changes.expiry {
        None => Cow::Borrowed(""),
        Some(None) => Cow::Borrowed("-"),
        Some(Some(expiry)) => expiry_json(expiry)?.into(),
    };
    let owner = match &changes.owner {
        None => Cow::Borrowed(""),
        Some(None) => Cow::Borrowed("-"),
        Some(Some(owner)) => format!("={owner}").into(),
    };
    let [loaded, text, rev] = rewrite.map_or([Cow::Borrowed(""), Cow::Borrowed(""), Cow::Borrowed("")], |rewrite| {
        [
            rewrite.loaded.to_string().into(),
            rewrite.text.into(),
            (rewrite.loaded + 1).to_string().into(),
        ]
    });
    let mut args = Vec::with_capacity(9 + 2 * (changes.values.len() + changes.flash.len()));
    args.extend([
        now.to_string().into(),
        expires_at,
        expiry,
        owner,
        Cow::Borrowed(token.unwrap_or("")),
        changes.values.len().to_string().into(),
        loaded,
        text,
        rev,
    ]);
    for (name, change) in changes.values.iter().chain(changes.flash.iter()) {
        // `''` removes a name: a value must be JSON, which is never empty.
        let change = change.as_deref();
        if change == Some("") {
            return Err(StoreError::backend(format!(
                "the value under {name:?} is not JSON: it is empty"
            )));
        }
        args.extend([Cow::Borrowed(name), Cow::Borrowed(change.unwrap_or(""))]);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apply`'s arguments: the fixed ones, then the values' name, value pairs, then the
    /// flash's, `''` for a removal; an empty value (which no JSON is) is refused, not sent as a
    /// removal.
    #[test]
    fn apply_arguments_pair_names_with_values() {
        let mut changes = Changes::default();
        changes.values.insert("b", None);
        changes.values.insert("a", Some("1".to_owned()));
        changes.flash.insert("notice", Some(r#""saved""#.to_owned()));
        changes.owner = Some(None);
        let args = script_args(&changes, 1000, Some("token"), None).unwrap();
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        assert_eq!(
            args,
            [
                "1000",
                "",
                "",
                "-",
                "token",
                "2",
                "",
                "",
                "",
                "a",
                "1",
                "b",
                "",
                "notice",
                r#""saved""#
            ]
        );
        assert_eq!(
            script_args(
                &Changes::default(),
                1000,
                None,
                Some(Rewrite {
                    loaded: 41,
                    text: "{\"x\":1}".to_owned(),
                })
            )
            .unwrap(),
            ["1000", "", "", "", "", "0", "41", "{\"x\":1}", "42"]
        );
        changes.values.insert("c", Some(String::new()));
        assert!(matches!(
            script_args(&changes, 1000, None, None),
            Err(StoreError::Backend(_))
        ));
    }
}
