//! [`PostgresStore`]: one row per session, merged by one `UPDATE` with JSONB operators.
//!
//! Why this file is long: every statement's SQL is built here, next to the reasons for its shape.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::batched_loads::{BatchedLoads, Found, LoadMany};
use super::codec::{
    expiry_from_json, from_unix_millis, json_object, lease_millis, now_millis, optional_expiry_json, to_unix_millis,
    value_map,
};
use super::{Applied, Created, LockAttempt, LockToken, LockedApply, SessionStore, StoreError, StoreKey};
use crate::record::{Changes, Patch, Record, Revision};

/// The table [`PostgresStore`] uses unless told otherwise.
const DEFAULT_TABLE: &str = "typed_sessions";

/// Longest table name accepted: PostgreSQL identifiers are at most 63 bytes, and the index name
/// appends `_expires_at_idx`.
const MAX_TABLE_LEN: usize = 63 - "_expires_at_idx".len();

/// Sessions in PostgreSQL: one row per session, values and flash as JSON objects.
///
/// ```no_run
/// # async fn demo() -> Result<(), typed_sessions::store::StoreError> {
/// use typed_sessions::{PostgresStore, SessionLayer};
///
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
///
/// # Table
///
/// ```sql
/// CREATE TABLE typed_sessions (
///     key         BYTEA PRIMARY KEY,               -- SHA-256 of the session id (32 bytes)
///     values_json TEXT NOT NULL DEFAULT '{}',      -- JSON object: stored name → value
///     flash_json  TEXT NOT NULL DEFAULT '{}',      -- JSON object: stored name → flash value
///     created_at  BIGINT NOT NULL,                 -- Unix milliseconds
///     expires_at  BIGINT NOT NULL,                 -- Unix milliseconds (indexed)
///     expiry      JSONB,                           -- per-session expiry override
///     lock_token  BYTEA,                           -- LockedSession: the lock's holder
///     lock_until  BIGINT,                          -- and its lease's end (database clock, ms)
///     owner       TEXT                             -- the owner key's JSON (indexed)
/// ) WITH (fillfactor = 70);
/// CREATE INDEX typed_sessions_expires_at_idx ON typed_sessions (expires_at);
/// CREATE INDEX typed_sessions_owner_idx ON typed_sessions (owner) WHERE owner IS NOT NULL;
/// ```
///
/// The key is the raw hash, not its hex: half the bytes in the table and its index, and
/// compared as bytes. The values and the flash are JSON objects kept as text (query them with
/// `values_json::jsonb ->> 'user_id'`): merged as `jsonb` by the write that changes them, they
/// are read back as they lie, where a `jsonb` column would be printed anew on every read — for
/// a session of 100 values that printing doubled the database's work per read. A table made by
/// an earlier build (`JSONB` columns `data_values` and `flash`) is converted by
/// [`migrate`](Self::migrate). The fill factor leaves room in each page so that an `apply`
/// that does not move `expires_at` (most requests: the expiry is renewed once per touch window)
/// is a HOT update, which writes no index entry.
///
/// [`connect`](Self::connect), [`from_pool`](Self::from_pool) and [`migrate`](Self::migrate)
/// create it if it is missing. Another table name: [`with_table_name`](Self::with_table_name).
///
/// # Statements
///
/// Every operation is one statement, so one round trip:
/// - `load` is one `SELECT` by key while the store is quiet. When two loads are already running,
///   further loads wait and are then read together, by one `SELECT .. WHERE key = ANY($keys)`
///   for all of them (up to 64): a statement costs the database and the client far more than a
///   row, so under load this serves several times the reads for the same CPU. A queued load is
///   answered by a statement sent after it was queued, so it sees every write finished before
///   it began, as a load of its own would.
/// - `apply` is `UPDATE .. SET values_json = ((values_json::jsonb - $removed) || $set)::text, ..
///   WHERE key = $1 AND expires_at > $now`: the merge happens in the database under the row
///   lock, so two requests of one session that change different keys both keep their changes,
///   and a session that was deleted (or has expired) is never written back. The statement names
///   only the columns the change set touches: a request that sets one value binds three
///   parameters and rewrites one column.
/// - `create` is `INSERT .. ON CONFLICT (key) DO UPDATE .. WHERE <the existing row expired>`: an
///   expired row never blocks a new session, a live one is a [`Created::Collision`].
/// - `delete_expired` is one `DELETE .. WHERE expires_at <= $now`; run it now and then (expired
///   rows are never loaded, but they stay in the table until then).
/// - an owner's sessions are one `SELECT .. WHERE owner = $1` on the partial index of `owner`
///   (sessions without an owner are not in it), and ending them one `DELETE` on it.
///
/// Times are compared with the application server's clock, passed as a parameter.
///
/// # Locks
///
/// A [`LockedSession`](crate::LockedSession)'s lock is a lease on the session's row
/// (`lock_token`, `lock_until`), shared by every app instance using the table, rather than an
/// advisory lock: an advisory lock lives as long as a connection (or a transaction) holds it, so
/// a request would keep a pooled connection idle for its whole handler, and a lock is only as
/// good as its fencing token, which the row carries anyway. A lease is judged by the database's
/// clock (`statement_timestamp()`), so app servers whose clocks disagree still agree on it.
/// - taking the lock and reading the session is one `UPDATE .. SET lock_token = $token ..
///   WHERE <lease free> RETURNING <the row>` (a request that finds the lock busy writes nothing,
///   and asks a second `SELECT` how long the lease still runs);
/// - the locked request's changes are written by one `apply`-like `UPDATE .. WHERE lock_token =
///   $token` that also clears the lock: a holder whose lease ran out and whose lock another took
///   writes nothing (its save answers 409);
/// - a request that holds the lock only to read releases it with one more `UPDATE`.
///
/// A waiting request asks again after growing pauses (1 ms doubling to 32 ms); no connection is
/// held while it waits or while the handler runs.
///
/// # Limits
///
/// PostgreSQL's `jsonb` re-formats JSON (`{"a": 1}`) — harmless, values decode the same — and
/// cannot hold the character U+0000 in a string: a value containing it fails to save (the
/// request is answered with 503 and an error is logged).
///
/// # Outages
///
/// The pool [`connect`](Self::connect) builds gives up acquiring a connection after 2 seconds, so
/// while the database is down requests get a 503 quickly; connections are re-established once it
/// is back. Build your own pool (and pass it to [`from_pool`](Self::from_pool)) for other
/// limits, or TLS (enable a `sqlx` TLS feature in your `Cargo.toml`).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Statements>,
    loads: Arc<BatchedLoads>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.sql.table_name)
            .finish_non_exhaustive()
    }
}

/// The store's SQL, built once for its table name.
#[derive(Debug)]
struct Statements {
    table_name: String,
    /// The table's name quoted for SQL (`"schema"."table"`).
    quoted_table: String,
    create_table: String,
    create_index: String,
    create_owner_index: String,
    has_index: String,
    /// The indexes' names, qualified and quoted as `to_regclass` takes them.
    quoted_expires_index: String,
    quoted_owner_index: String,
    has_lock_columns: String,
    add_lock_columns: String,
    /// The columns that hold the values and the flash, under their names now or an earlier
    /// build's, with their types.
    object_columns: String,
    rename_values: String,
    rename_flash: String,
    objects_to_text: String,
    lock_state: String,
    load: String,
    /// The live rows among many keys: the loads of concurrent requests in one statement.
    load_many: String,
    create: String,
    /// `apply` and `apply_locked`, one `UPDATE` per [`ApplyParts`] a change set has, made when
    /// first needed.
    apply: [OnceLock<String>; ApplyParts::COMBINATIONS],
    lock_and_load: String,
    renew_lock: String,
    unlock: String,
    is_live: String,
    delete: String,
    delete_expired: String,
    owner_sessions: String,
    end_owner_sessions: String,
}

impl Statements {
    fn new(table_name: &str) -> Result<Self, StoreError> {
        let parts: Vec<&str> = table_name.split('.').collect();
        let valid = parts.len() <= 2
            && parts.iter().all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            && parts.last().is_some_and(|table| table.len() <= MAX_TABLE_LEN)
            && parts.first().is_some_and(|schema| schema.len() <= 63);
        if !valid {
            return Err(StoreError::backend(format!(
                "{table_name:?} is not a valid session table name: use letters, digits and `_` \
                 (not starting with a digit, at most {MAX_TABLE_LEN} characters), optionally \
                 qualified with a schema (`schema.table`)"
            )));
        }
        let table = parts
            .iter()
            .map(|part| format!("\"{part}\""))
            .collect::<Vec<_>>()
            .join(".");
        let index = format!("\"{}_expires_at_idx\"", parts[parts.len() - 1]);
        let owner_index = format!("\"{}_owner_idx\"", parts[parts.len() - 1]);
        // An index lives in its table's schema.
        let qualified = |index: &str| match parts.as_slice() {
            [schema, _] => format!("\"{schema}\".{index}"),
            _ => index.to_owned(),
        };
        let quoted_expires_index = qualified(&index);
        let quoted_owner_index = qualified(&owner_index);
        let columns = "values_json, flash_json, created_at, expires_at, expiry::text, owner";
        // The database's clock, in Unix ms, fixed for the statement: leases are judged by it.
        let now = "(extract(epoch FROM statement_timestamp()) * 1000)::bigint";
        let lease_free = format!("(lock_until IS NULL OR lock_until <= {now})");
        Ok(Statements {
            table_name: table_name.to_owned(),
            quoted_table: table.clone(),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 key BYTEA PRIMARY KEY, \
                 values_json TEXT NOT NULL DEFAULT '{{}}', \
                 flash_json TEXT NOT NULL DEFAULT '{{}}', \
                 created_at BIGINT NOT NULL, \
                 expires_at BIGINT NOT NULL, \
                 expiry JSONB, \
                 lock_token BYTEA, \
                 lock_until BIGINT, \
                 owner TEXT) \
                 WITH (fillfactor = 70)"
            ),
            create_index: format!("CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at)"),
            create_owner_index: format!(
                "CREATE INDEX IF NOT EXISTS {owner_index} ON {table} (owner) WHERE owner IS NOT NULL"
            ),
            has_index: "SELECT to_regclass($1) IS NOT NULL".to_owned(),
            quoted_expires_index,
            quoted_owner_index,
            // Tables made before `LockedSession` have no lock columns, and those made before
            // owners no `owner`. `ALTER TABLE` locks the whole table even when it has nothing to
            // do: it runs only when one is missing.
            has_lock_columns: "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) \
                               AND attname IN ('lock_token', 'lock_until', 'owner') AND NOT attisdropped"
                .to_owned(),
            add_lock_columns: format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS lock_token BYTEA, \
                 ADD COLUMN IF NOT EXISTS lock_until BIGINT, ADD COLUMN IF NOT EXISTS owner TEXT"
            ),
            // Tables made before the objects were text hold them as `JSONB` columns `data_values`
            // and `flash`. They are renamed as well as retyped: an older build still running
            // against the table then fails ("column does not exist") instead of writing its
            // `data_values || $patch`, which on a text column would join two texts.
            object_columns: "SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute \
                             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
                             AND attname IN ('data_values', 'flash', 'values_json', 'flash_json')"
                .to_owned(),
            rename_values: format!("ALTER TABLE {table} RENAME COLUMN data_values TO values_json"),
            rename_flash: format!("ALTER TABLE {table} RENAME COLUMN flash TO flash_json"),
            objects_to_text: format!(
                "ALTER TABLE {table} \
                 ALTER COLUMN values_json TYPE TEXT USING values_json::text, \
                 ALTER COLUMN values_json SET DEFAULT '{{}}', \
                 ALTER COLUMN flash_json TYPE TEXT USING flash_json::text, \
                 ALTER COLUMN flash_json SET DEFAULT '{{}}'"
            ),
            load: format!("SELECT {columns} FROM {table} WHERE key = $1 AND expires_at > $2"),
            load_many: format!("SELECT key, {columns} FROM {table} WHERE key = ANY($1) AND expires_at > $2"),
            create: format!(
                "INSERT INTO {table} AS s (key, values_json, flash_json, created_at, expires_at, expiry, owner) \
                 VALUES ($1, $2::jsonb::text, $3::jsonb::text, $4, $5, $6::jsonb, $8) \
                 ON CONFLICT (key) DO UPDATE SET \
                 values_json = EXCLUDED.values_json, flash_json = EXCLUDED.flash_json, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 expiry = EXCLUDED.expiry, owner = EXCLUDED.owner, lock_token = NULL, lock_until = NULL \
                 WHERE s.expires_at <= $7"
            ),
            apply: std::array::from_fn(|_| OnceLock::new()),
            lock_and_load: format!(
                "UPDATE {table} SET lock_token = $2, lock_until = {now} + $3 \
                 WHERE key = $1 AND expires_at > $4 AND {lease_free} \
                 RETURNING {columns}"
            ),
            // Why `lock_and_load` took nothing: no live row, or how long its lease still runs.
            lock_state: format!("SELECT lock_until - {now} FROM {table} WHERE key = $1 AND expires_at > $2"),
            renew_lock: format!(
                "WITH renewed AS (UPDATE {table} SET lock_until = {now} + $3 \
                 WHERE key = $1 AND lock_token = $2 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM renewed) OR NOT EXISTS (SELECT 1 FROM {table} WHERE key = $1)"
            ),
            unlock: format!(
                "UPDATE {table} SET lock_token = NULL, lock_until = NULL WHERE key = $1 AND lock_token = $2"
            ),
            is_live: format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE key = $1 AND expires_at > $2)"),
            delete: format!("DELETE FROM {table} WHERE key = $1"),
            delete_expired: format!("DELETE FROM {table} WHERE expires_at <= $1"),
            owner_sessions: format!("SELECT key, {columns} FROM {table} WHERE owner = $1 AND expires_at > $2"),
            end_owner_sessions: format!("DELETE FROM {table} WHERE owner = $1 AND expires_at > $2 AND key <> $3"),
        })
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// [the default pool settings](Self::default_pool_options) and creates the table
    /// `typed_sessions` if it is missing.
    ///
    /// Fails with [`StoreError::Unavailable`] if the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = Self::default_pool_options().connect(url).await.map_err(map_error)?;
        Self::from_pool(pool).await
    }

    /// The pool settings [`connect`](Self::connect) uses: at most 10 connections, and acquiring
    /// one gives up after 2 seconds.
    pub fn default_pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(2))
    }

    /// A store on an existing pool; creates the table `typed_sessions` if it is missing.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::from_pool_with_table(pool, DEFAULT_TABLE).await
    }

    /// A store on an existing pool, in the table `table` (see
    /// [`with_table_name`](Self::with_table_name)); creates it if it is missing. Named as
    /// `SqliteStore::from_pool_with_table` is.
    pub async fn from_pool_with_table(pool: PgPool, table: &str) -> Result<Self, StoreError> {
        let store = Self::new(pool).with_table_name(table)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store on an existing pool, using the table `typed_sessions`, without touching the
    /// database: call [`migrate`](Self::migrate) if the table may be missing or was made by an
    /// older version (without the lock or owner columns, or with `JSONB` objects), once before
    /// the store is used: until then, requests on an older table fail (503).
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool) -> Result<(), typed_sessions::store::StoreError> {
    /// use typed_sessions::PostgresStore;
    ///
    /// let store = PostgresStore::new(pool).with_table_name("auth.web_sessions")?;
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            pool,
            sql: Arc::new(Statements::new(DEFAULT_TABLE).expect("the default table name is valid")),
            loads: Arc::default(),
        }
    }

    /// Keeps sessions in the table `name` (`table` or `schema.table`: letters, digits and `_`,
    /// not starting with a digit) instead of `typed_sessions`.
    ///
    /// Fails with [`StoreError::Backend`] for any other name: the name is put into SQL text.
    pub fn with_table_name(mut self, name: &str) -> Result<Self, StoreError> {
        self.sql = Arc::new(Statements::new(name)?);
        // Loads queued together are read from one table: a store of another table (a clone of
        // this one renamed) queues apart.
        self.loads = Arc::default();
        Ok(self)
    }

    /// The table the sessions are kept in.
    pub fn table_name(&self) -> &str {
        &self.sql.table_name
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the table and its indexes if they are missing, and brings an older version's
    /// table up to date. Safe to run from several servers at once (it takes a
    /// transaction-scoped advisory lock).
    ///
    /// A table made before the objects were text (`JSONB` columns `data_values` and `flash`) has
    /// them renamed to `values_json` and `flash_json` and turned into `TEXT`, once. That rewrites
    /// the table while holding off its reads and writes: on a large one, run `migrate` when the
    /// app is quiet. Stop the servers of the older version first: once the columns are renamed
    /// their session calls fail (503) instead of writing the old form. The conversion fails (and
    /// `migrate` says so) while a view, or an index on a JSON expression, uses the columns.
    ///
    /// To go back to the older version, undo it by hand, types first and names last, so that
    /// no moment has text columns under the old names:
    ///
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE typed_sessions
    ///   ALTER COLUMN values_json DROP DEFAULT,
    ///   ALTER COLUMN values_json TYPE JSONB USING values_json::jsonb,
    ///   ALTER COLUMN values_json SET DEFAULT '{}',
    ///   ALTER COLUMN flash_json DROP DEFAULT,
    ///   ALTER COLUMN flash_json TYPE JSONB USING flash_json::jsonb,
    ///   ALTER COLUMN flash_json SET DEFAULT '{}';
    /// ALTER TABLE typed_sessions RENAME COLUMN values_json TO data_values;
    /// ALTER TABLE typed_sessions RENAME COLUMN flash_json TO flash;
    /// COMMIT;
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await.map_err(map_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("typed_sessions:{}", self.sql.table_name))
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        sqlx::query(&self.sql.create_table)
            .persistent(false)
            .execute(&mut *transaction)
            .await
            .map_err(map_error)?;
        let lock_columns: i64 = sqlx::query_scalar(&self.sql.has_lock_columns)
            .bind(&self.sql.quoted_table)
            .fetch_one(&mut *transaction)
            .await
            .map_err(map_error)?;
        if lock_columns < 3 {
            sqlx::query(&self.sql.add_lock_columns)
                .persistent(false)
                .execute(&mut *transaction)
                .await
                .map_err(map_error)?;
        }
        self.objects_as_text(&mut transaction).await?;
        // `CREATE INDEX IF NOT EXISTS` locks the table against writes even when the index is
        // there: each runs only when its index is missing.
        for (index, create) in [
            (&self.sql.quoted_expires_index, &self.sql.create_index),
            (&self.sql.quoted_owner_index, &self.sql.create_owner_index),
        ] {
            let exists: bool = sqlx::query_scalar(&self.sql.has_index)
                .bind(index)
                .fetch_one(&mut *transaction)
                .await
                .map_err(map_error)?;
            if !exists {
                sqlx::query(create)
                    .persistent(false)
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_error)?;
            }
        }
        transaction.commit().await.map_err(map_error)?;
        tracing::debug!(table = %self.sql.table_name, "session table ready");
        Ok(())
    }

    /// Brings an earlier build's object columns (`JSONB` `data_values` and `flash`) to what this
    /// build reads (`TEXT` `values_json` and `flash_json`), each step only if it is still to do,
    /// so that a table left half-way (by hand) is finished too; a table with both forms of a
    /// column, or neither, is an error that names its columns.
    async fn objects_as_text(&self, connection: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        let columns: Vec<(String, String)> = sqlx::query_as(&self.sql.object_columns)
            .bind(&self.sql.quoted_table)
            .fetch_all(&mut *connection)
            .await
            .map_err(map_error)?;
        let has = |name: &str| columns.iter().any(|(column, _)| column == name);
        for (old, new, rename) in [
            ("data_values", "values_json", &self.sql.rename_values),
            ("flash", "flash_json", &self.sql.rename_flash),
        ] {
            match (has(old), has(new)) {
                (false, true) => {}
                (true, false) => self.convert(connection, rename).await?,
                _ => {
                    return Err(StoreError::backend(format!(
                        "the session table {} has the columns {:?} where it needs either {old} (an \
                         earlier build's) or {new}, not both or neither: fix its columns by hand",
                        self.sql.table_name,
                        columns.iter().map(|(column, _)| column).collect::<Vec<_>>()
                    )));
                }
            }
        }
        if columns.iter().any(|(_, column_type)| column_type != "text") {
            self.convert(connection, &self.sql.objects_to_text).await?;
        }
        Ok(())
    }

    /// One step of [`objects_as_text`](Self::objects_as_text).
    async fn convert(&self, connection: &mut sqlx::PgConnection, step: &str) -> Result<(), StoreError> {
        sqlx::query(step)
            .persistent(false)
            .execute(connection)
            .await
            .map(drop)
            .map_err(|error| match error {
                sqlx::Error::Database(refused) => StoreError::backend(format!(
                    "turning {}'s JSONB columns data_values and flash into the text columns values_json \
                     and flash_json failed (does a view, or an index on a JSON expression, use them?): {refused}",
                    self.sql.table_name
                )),
                other => map_error(other),
            })
    }
}

fn map_error(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01..57P03: the server is shutting down or starting
        // up; 53300: too many connections.
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P") || code == "53300"),
        _ => false,
    };
    StoreError::classify(error, unavailable)
}

/// A patch as the `UPDATE` takes it: names to remove, and an object of entries to set (`None`
/// when the patch sets nothing).
fn split_patch(patch: &Patch) -> Result<(Vec<&str>, Option<String>), StoreError> {
    let removed = patch
        .iter()
        .filter(|(_, change)| change.is_none())
        .map(|(name, _)| name)
        .collect();
    let mut set = patch
        .iter()
        .filter_map(|(name, change)| change.as_deref().map(|json| (name, json)))
        .peekable();
    let set = match set.peek() {
        Some(_) => Some(json_object(set)?),
        None => None,
    };
    Ok((removed, set))
}

/// Which parts of a [`Changes`] an `apply` writes, as bits. Each combination has an `UPDATE` of
/// its own that sets only those columns and binds only their parameters: most applies set one
/// value and nothing else, and a statement that also rewrote the flash, the expiry and the owner
/// with no-op expressions cost the database and the client more than the write itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ApplyParts(u8);

impl ApplyParts {
    const REMOVE_VALUES: u8 = 1;
    const SET_VALUES: u8 = 1 << 1;
    const REMOVE_FLASH: u8 = 1 << 2;
    const SET_FLASH: u8 = 1 << 3;
    const EXPIRES_AT: u8 = 1 << 4;
    const EXPIRY: u8 = 1 << 5;
    const OWNER: u8 = 1 << 6;
    /// `apply_locked`: fenced by the lock's token, and releasing the lock.
    const LOCKED: u8 = 1 << 7;
    const COMBINATIONS: usize = 1 << 8;

    fn has(self, part: u8) -> bool {
        self.0 & part != 0
    }

    /// The statement: `$1` the key, `$2` now (Unix ms), then one parameter per part present, in
    /// the order of the bits, then the lock's token. [`ApplyArguments::bind`] binds in that order.
    fn sql(self, table: &str) -> String {
        let mut parameter = 2;
        let mut next = || {
            parameter += 1;
            parameter
        };
        let mut sets = Vec::new();
        for (column, remove, set) in [
            ("values_json", Self::REMOVE_VALUES, Self::SET_VALUES),
            ("flash_json", Self::REMOVE_FLASH, Self::SET_FLASH),
        ] {
            // Merged as `jsonb` (a name's removal, then the new values) and kept as the text
            // `jsonb` prints: a load then reads the column as it lies, where a `jsonb` column is
            // printed anew on every read.
            let mut merged = format!("{column}::jsonb");
            if self.has(remove) {
                merged = format!("({merged} - ${}::text[])", next());
            }
            if self.has(set) {
                merged = format!("{merged} || ${}::jsonb", next());
            }
            if self.has(remove) || self.has(set) {
                sets.push(format!("{column} = ({merged})::text"));
            }
        }
        if self.has(Self::EXPIRES_AT) {
            sets.push(format!("expires_at = ${}", next()));
        }
        if self.has(Self::EXPIRY) {
            sets.push(format!("expiry = ${}::jsonb", next()));
        }
        if self.has(Self::OWNER) {
            sets.push(format!("owner = ${}", next()));
        }
        let mut fence = String::new();
        if self.has(Self::LOCKED) {
            sets.push("lock_token = NULL, lock_until = NULL".to_owned());
            fence = format!(" AND lock_token = ${}", next());
        }
        if sets.is_empty() {
            // Nothing to change, but whether the session is live is still the answer.
            sets.push("expires_at = expires_at".to_owned());
        }
        format!(
            "UPDATE {table} SET {} WHERE key = $1 AND expires_at > $2{fence}",
            sets.join(", ")
        )
    }
}

/// A [`Changes`] encoded for the `UPDATE`: only the parts it has.
struct ApplyArguments<'c> {
    removed_values: Vec<&'c str>,
    set_values: Option<String>,
    removed_flash: Vec<&'c str>,
    set_flash: Option<String>,
    expires_at: Option<i64>,
    expiry: Option<Option<String>>,
    owner: Option<Option<&'c str>>,
}

impl<'c> ApplyArguments<'c> {
    fn new(changes: &'c Changes) -> Result<Self, StoreError> {
        let (removed_values, set_values) = split_patch(&changes.values)?;
        let (removed_flash, set_flash) = split_patch(&changes.flash)?;
        Ok(ApplyArguments {
            removed_values,
            set_values,
            removed_flash,
            set_flash,
            expires_at: changes.expires_at.map(to_unix_millis),
            expiry: changes
                .expiry
                .as_ref()
                .map(|expiry| optional_expiry_json(expiry.as_ref()))
                .transpose()?,
            owner: changes.owner.as_ref().map(Option::as_deref),
        })
    }

    fn parts(&self, locked: bool) -> ApplyParts {
        let bit = |present: bool, part: u8| if present { part } else { 0 };
        ApplyParts(
            bit(!self.removed_values.is_empty(), ApplyParts::REMOVE_VALUES)
                | bit(self.set_values.is_some(), ApplyParts::SET_VALUES)
                | bit(!self.removed_flash.is_empty(), ApplyParts::REMOVE_FLASH)
                | bit(self.set_flash.is_some(), ApplyParts::SET_FLASH)
                | bit(self.expires_at.is_some(), ApplyParts::EXPIRES_AT)
                | bit(self.expiry.is_some(), ApplyParts::EXPIRY)
                | bit(self.owner.is_some(), ApplyParts::OWNER)
                | bit(locked, ApplyParts::LOCKED),
        )
    }

    /// `sql` (made by [`ApplyParts::sql`] for these arguments) with them bound.
    fn bind<'q>(self, sql: &'q str, key: &'q StoreKey, token: Option<&'q LockToken>) -> PgQuery<'q>
    where
        'c: 'q,
    {
        let mut query = sqlx::query(sql).bind(key.as_bytes().as_slice()).bind(now_millis());
        if !self.removed_values.is_empty() {
            query = query.bind(self.removed_values);
        }
        if let Some(set) = self.set_values {
            query = query.bind(set);
        }
        if !self.removed_flash.is_empty() {
            query = query.bind(self.removed_flash);
        }
        if let Some(set) = self.set_flash {
            query = query.bind(set);
        }
        if let Some(expires_at) = self.expires_at {
            query = query.bind(expires_at);
        }
        if let Some(expiry) = self.expiry {
            query = query.bind(expiry);
        }
        if let Some(owner) = self.owner {
            query = query.bind(owner);
        }
        if let Some(token) = token {
            query = query.bind(token.as_bytes().as_slice());
        }
        query
    }
}

impl Statements {
    /// The `UPDATE` for `parts`, made the first time it is needed.
    fn apply(&self, parts: ApplyParts) -> &str {
        self.apply[usize::from(parts.0)].get_or_init(|| parts.sql(&self.quoted_table))
    }
}

type Row = (String, String, i64, i64, Option<String>, Option<String>);

/// A [`Row`] with its key in front (an owner's sessions).
type KeyedRow = (Vec<u8>, String, String, i64, i64, Option<String>, Option<String>);

fn record_from_row((values, flash, created_at, expires_at, expiry, owner): Row) -> Result<Record, StoreError> {
    let expiry = expiry
        .map(|json| expiry_from_json(&json, "the session's `expiry` column"))
        .transpose()?;
    Ok(Record {
        values: value_map(&values, "the session's `values_json` column")?,
        flash: value_map(&flash, "the session's `flash_json` column")?,
        created_at: from_unix_millis(created_at),
        expires_at: from_unix_millis(expires_at),
        expiry,
        owner,
        revision: Revision::default(),
    })
}

/// A keyed row's key (an owner's sessions, a batch of loads).
fn row_key(key: &[u8]) -> Result<StoreKey, StoreError> {
    <[u8; 32]>::try_from(key)
        .map(StoreKey::from_bytes)
        .map_err(|_| StoreError::Corrupt("a session row's key is not 32 bytes".into()))
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl LoadMany for PostgresStore {
    async fn load_many(&self, keys: Vec<StoreKey>) -> Result<Found, StoreError> {
        let keys: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes().as_slice()).collect();
        let rows: Vec<KeyedRow> = sqlx::query_as(&self.sql.load_many)
            .bind(keys)
            .bind(now_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        // A row whose key does not decode answers no load (none asked for such a key).
        Ok(rows
            .into_iter()
            .filter_map(|(key, values, flash, created_at, expires_at, expiry, owner)| {
                let key = row_key(&key).ok()?;
                Some((
                    key,
                    record_from_row((values, flash, created_at, expires_at, expiry, owner)),
                ))
            })
            .collect())
    }
}

impl SessionStore for PostgresStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let load_one = || async {
            let row: Option<Row> = sqlx::query_as(&self.sql.load)
                .bind(key.as_bytes().as_slice())
                .bind(now_millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?;
            row.map(record_from_row).transpose()
        };
        self.loads.load(self, key, load_one).await
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        let result = sqlx::query(&self.sql.create)
            .bind(key.as_bytes().as_slice())
            .bind(json_object(&record.values)?)
            .bind(json_object(&record.flash)?)
            .bind(to_unix_millis(record.created_at))
            .bind(to_unix_millis(record.expires_at))
            .bind(optional_expiry_json(record.expiry.as_ref())?)
            .bind(now_millis())
            .bind(record.owner.as_deref())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(if result.rows_affected() == 1 {
            Created::Created
        } else {
            Created::Collision
        })
    }

    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        let arguments = ApplyArguments::new(changes)?;
        let sql = self.sql.apply(arguments.parts(false));
        let result = arguments
            .bind(sql, key, None)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(if result.rows_affected() == 1 {
            Applied::Applied
        } else {
            Applied::Missing
        })
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        sqlx::query(&self.sql.delete)
            .bind(key.as_bytes().as_slice())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let result = sqlx::query(&self.sql.delete_expired)
            .bind(now_millis())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    /// A lease on the session's row; see [Locks](PostgresStore#locks).
    const SHARED_LOCKS: bool = true;

    async fn lock_and_load(
        &self,
        key: &StoreKey,
        token: &LockToken,
        lease: Duration,
    ) -> Result<LockAttempt, StoreError> {
        let row: Option<Row> = sqlx::query_as(&self.sql.lock_and_load)
            .bind(key.as_bytes().as_slice())
            .bind(token.as_bytes().as_slice())
            .bind(lease_millis(lease))
            .bind(now_millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        if let Some(row) = row {
            return Ok(LockAttempt::Taken(record_from_row(row)?));
        }
        // Nothing taken, nothing written: a second look says why (only a request that waits
        // pays for it). A lease that ended meanwhile reads as busy for no time: ask again.
        let remaining: Option<Option<i64>> = sqlx::query_scalar(&self.sql.lock_state)
            .bind(key.as_bytes().as_slice())
            .bind(now_millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(match remaining {
            None => LockAttempt::Missing,
            Some(remaining) => LockAttempt::Busy {
                remaining: Duration::from_millis(remaining.unwrap_or(0).max(0).unsigned_abs()),
            },
        })
    }

    async fn apply_locked(
        &self,
        key: &StoreKey,
        token: &LockToken,
        changes: &Changes,
    ) -> Result<LockedApply, StoreError> {
        let arguments = ApplyArguments::new(changes)?;
        let sql = self.sql.apply(arguments.parts(true));
        let result = arguments
            .bind(sql, key, Some(token))
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        if result.rows_affected() == 1 {
            return Ok(LockedApply::Applied);
        }
        // Nothing written: say whether the session is gone or the lock is another's.
        let live: bool = sqlx::query_scalar(&self.sql.is_live)
            .bind(key.as_bytes().as_slice())
            .bind(now_millis())
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(if live {
            LockedApply::LockLost
        } else {
            LockedApply::Missing
        })
    }

    async fn renew_lock(&self, key: &StoreKey, token: &LockToken, lease: Duration) -> Result<bool, StoreError> {
        sqlx::query_scalar(&self.sql.renew_lock)
            .bind(key.as_bytes().as_slice())
            .bind(token.as_bytes().as_slice())
            .bind(lease_millis(lease))
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn unlock(&self, key: &StoreKey, token: &LockToken) -> Result<(), StoreError> {
        sqlx::query(&self.sql.unlock)
            .bind(key.as_bytes().as_slice())
            .bind(token.as_bytes().as_slice())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let rows: Vec<KeyedRow> = sqlx::query_as(&self.sql.owner_sessions)
            .bind(owner)
            .bind(now_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.into_iter()
            .map(|(key, values, flash, created_at, expires_at, expiry, owner)| {
                let key = row_key(&key)?;
                Ok((
                    key,
                    record_from_row((values, flash, created_at, expires_at, expiry, owner))?,
                ))
            })
            .collect()
    }

    async fn end_owner_sessions(&self, owner: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let except: &[u8] = except.map_or(&[], |key| key.as_bytes().as_slice());
        let result = sqlx::query(&self.sql.end_owner_sessions)
            .bind(owner)
            .bind(now_millis())
            .bind(except)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }
}
