//! [`SqliteStore`]: one row per session in a SQLite table (sqlx); a patch is read, merged and
//! written in one `BEGIN IMMEDIATE` transaction.
//!
//! Why this file is long: every statement's SQL is built here, next to the reasons for its
//! shape, and so are the batched load and the transaction that finishes even if its request is
//! dropped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteRow, SqliteSynchronous};
use sqlx::Row;

use super::batched_loads::{BatchedLoads, Found, LoadMany};
use super::codec::{
    expiry_from_json, from_unix_millis, json_object, now_millis, optional_expiry_json, to_unix_millis, value_map,
};
use super::{Applied, Created, SessionStore, StoreError, StoreKey};
use crate::record::{Changes, Record, Revision};

/// The table [`SqliteStore::open`] and [`SqliteStore::from_pool`] use.
const DEFAULT_TABLE: &str = "typed_sessions";

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions in a SQLite database (sqlx), one row per session: survives restarts, needs no server.
///
/// ```no_run
/// use typed_sessions::{SessionLayer, SqliteStore};
///
/// # async fn run() -> Result<(), typed_sessions::store::StoreError> {
/// let store = SqliteStore::open("sessions.db").await?; // creates the file and the table
/// let layer = SessionLayer::new(store);
/// # Ok(())
/// # }
/// ```
///
/// The table (`typed_sessions` unless [`from_pool_with_table`](Self::from_pool_with_table) names
/// another) holds:
///
/// | column | type | content |
/// |---|---|---|
/// | `key` | `TEXT PRIMARY KEY` | the [`StoreKey`] in hex (a hash of the id, never the id) |
/// | `data_values` | `TEXT` | JSON object: stored name → the value's JSON |
/// | `flash` | `TEXT` | JSON object: stored name → the flash's JSON |
/// | `created_at` | `INTEGER` | Unix milliseconds |
/// | `expires_at` | `INTEGER`, indexed | Unix milliseconds |
/// | `expiry` | `TEXT NULL` | the per-session expiry override, as JSON |
/// | `owner` | `TEXT NULL`, indexed | the owner key's JSON ([`Record::owner`]), for listing an owner's sessions |
///
/// [`apply`](SessionStore::apply) reads, merges and writes the row in one `BEGIN IMMEDIATE`
/// transaction, so concurrent requests of one session — from this process or another one that
/// opened the same file — never lose each other's keys, and a row that was deleted or has
/// expired is never written again. Expired rows are invisible to reads; remove them with
/// [`delete_expired`](SessionStore::delete_expired) (one `DELETE` on the indexed `expires_at`).
///
/// A load is one `SELECT` by key while the store is quiet; when two are already running, further
/// loads wait and are then read together by one `SELECT .. WHERE key IN (..)` (each statement
/// goes through a connection's worker thread, which costs far more than a row). A queued load is
/// answered by a statement that began after it was queued.
///
/// [`open`](Self::open) sets up the connections in WAL journal mode with `synchronous = NORMAL`
/// (a killed process loses nothing; a power cut may lose the last commits) and a 5 second busy
/// timeout. Clones share one connection pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: Arc<str>,
    sql: Arc<Sql>,
    /// Writes of this store wait here rather than in SQLite's busy handler, which polls with
    /// sleeps of up to 100 ms; other processes are still kept out by SQLite's own lock.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    loads: Arc<BatchedLoads>,
}

/// The statements, formatted once for the table name.
struct Sql {
    load: String,
    /// The live rows among many keys (a JSON array of their hex): the loads of concurrent
    /// requests in one statement.
    load_many: String,
    create: String,
    update: String,
    touch: String,
    delete: String,
    delete_expired: String,
    owner_sessions: String,
    end_owner_sessions: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        Sql {
            load: format!(
                "SELECT data_values, flash, created_at, expires_at, expiry, owner FROM {t} \
                 WHERE key = ?1 AND expires_at > ?2"
            ),
            load_many: format!(
                "SELECT key, data_values, flash, created_at, expires_at, expiry, owner FROM {t} \
                 WHERE key IN (SELECT value FROM json_each(?1)) AND expires_at > ?2"
            ),
            // An expired row under the same key does not block: it is replaced in the same statement.
            create: format!(
                "INSERT INTO {t} (key, data_values, flash, created_at, expires_at, expiry, owner) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8) \
                 ON CONFLICT (key) DO UPDATE SET data_values = excluded.data_values, \
                 flash = excluded.flash, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at, expiry = excluded.expiry, owner = excluded.owner \
                 WHERE {t}.expires_at <= ?7"
            ),
            update: format!(
                "UPDATE {t} SET data_values = ?2, flash = ?3, expires_at = ?4, expiry = ?5, owner = ?6 WHERE key = ?1"
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = coalesce(?2, expires_at), \
                 expiry = CASE WHEN ?3 THEN ?4 ELSE expiry END \
                 WHERE key = ?1 AND expires_at > ?5"
            ),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= ?1"),
            owner_sessions: format!(
                "SELECT key, data_values, flash, created_at, expires_at, expiry, owner FROM {t} \
                 WHERE owner = ?1 AND expires_at > ?2"
            ),
            end_owner_sessions: format!("DELETE FROM {t} WHERE owner = ?1 AND expires_at > ?2 AND key <> ?3"),
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.table)
            .field("pool", &self.pool)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and creates the
    /// `typed_sessions` table if it does not exist.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let pool = SqlitePool::connect_with(Self::connect_options(path))
            .await
            .map_err(map_error)?;
        Self::from_pool(pool).await
    }

    /// The connection settings [`open`](Self::open) uses — file created if missing, WAL journal,
    /// `synchronous = NORMAL`, 5 s busy timeout — for apps that build their own pool (to share
    /// it, or to size it) and pass it to [`from_pool`](Self::from_pool).
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
    }

    /// A store on an existing pool, in the `typed_sessions` table (created if it does not exist).
    ///
    /// The pool's settings are left as they are; [`connect_options`](Self::connect_options) has
    /// the recommended ones. An in-memory database (`sqlite::memory:`) is private to each
    /// connection and ends with it: give such a pool one connection that it never closes —
    /// `max_connections(1)`, `idle_timeout(None)`, `max_lifetime(None)` and
    /// `test_before_acquire(false)` (with the test on, a request dropped while its connection is
    /// being tested closes the connection, and the database with it).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use typed_sessions::sqlx::sqlite::SqlitePoolOptions;
    /// use typed_sessions::SqliteStore;
    ///
    /// let pool = SqlitePoolOptions::new()
    ///     .max_connections(1)
    ///     .idle_timeout(None)
    ///     .max_lifetime(None)
    ///     .test_before_acquire(false)
    ///     .connect("sqlite::memory:")
    ///     .await?;
    /// let store = SqliteStore::from_pool(pool).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::from_pool_with_table(pool, DEFAULT_TABLE).await
    }

    /// A store on an existing pool, in the table `table` (created if it does not exist).
    ///
    /// The name must be an identifier: ASCII letters, digits and `_`, not starting with a digit,
    /// at most 64 characters, and not starting with `sqlite_` (SQLite reserves those); anything
    /// else is refused with [`StoreError::Backend`] before the database is touched.
    pub async fn from_pool_with_table(pool: SqlitePool, table: &str) -> Result<Self, StoreError> {
        validate_table_name(table)?;
        let create_table = format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (\
                key TEXT PRIMARY KEY NOT NULL, \
                data_values TEXT NOT NULL, \
                flash TEXT NOT NULL, \
                created_at INTEGER NOT NULL, \
                expires_at INTEGER NOT NULL, \
                expiry TEXT NULL, \
                owner TEXT NULL\
            )"
        );
        let create_index = format!("CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON \"{table}\" (expires_at)");
        sqlx::query(&create_table).execute(&pool).await.map_err(map_error)?;
        // A table made before sessions had owners gets the column. Two processes may both find it
        // missing: the second `ALTER` fails, and a second look finds the column there.
        let has_owner = || async {
            sqlx::query_scalar::<_, bool>("SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = 'owner'")
                .bind(table)
                .fetch_one(&pool)
                .await
                .map_err(map_error)
        };
        if !has_owner().await? {
            let add_owner = format!("ALTER TABLE \"{table}\" ADD COLUMN owner TEXT NULL");
            if let Err(error) = sqlx::query(&add_owner).execute(&pool).await {
                if !has_owner().await? {
                    return Err(map_error(error));
                }
            }
        }
        // Only sessions with an owner are listed by it: they alone are in the index.
        let owner_index =
            format!("CREATE INDEX IF NOT EXISTS \"{table}_owner\" ON \"{table}\" (owner) WHERE owner IS NOT NULL");
        sqlx::query(&create_index).execute(&pool).await.map_err(map_error)?;
        sqlx::query(&owner_index).execute(&pool).await.map_err(map_error)?;
        Ok(SqliteStore {
            pool,
            sql: Arc::new(Sql::new(table)),
            table: table.into(),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            loads: Arc::default(),
        })
    }

    /// `apply`'s read, merge and write of the row under `hex`, in one `BEGIN IMMEDIATE`
    /// transaction; the caller holds the write lock.
    async fn merge(&self, hex: &str, changes: &Changes) -> Result<Applied, StoreError> {
        // IMMEDIATE takes the write lock up front: nobody can change the row between our read
        // and our write, and the read never has to be upgraded (which could fail with BUSY).
        // Not dropped half way: `apply` runs this in a task of its own.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_error)?;
        let row = sqlx::query(&self.sql.load)
            .bind(hex)
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(map_error)?;
            return Ok(Applied::Missing);
        };
        let mut record = Self::decode_row(&row)?;
        record.apply(changes);
        sqlx::query(&self.sql.update)
            .bind(hex)
            .bind(json_object(&record.values)?)
            .bind(json_object(&record.flash)?)
            .bind(to_unix_millis(record.expires_at))
            .bind(optional_expiry_json(record.expiry.as_ref())?)
            .bind(record.owner.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(Applied::Applied)
    }

    /// The connection pool (for closing it, or for sharing it with the rest of the app).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The name of the table the sessions are in.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// A keyed row's key (an owner's sessions, a batch of loads).
    fn decode_key(row: &SqliteRow) -> Result<StoreKey, StoreError> {
        let hex: String = row.try_get("key").map_err(map_error)?;
        StoreKey::from_hex(&hex)
            .ok_or_else(|| StoreError::Corrupt(format!("a session row's key {hex:?} is not a store key")))
    }

    fn decode_row(row: &SqliteRow) -> Result<Record, StoreError> {
        let column = |error: sqlx::Error| StoreError::Corrupt(format!("a session row does not decode: {error}"));
        let values: String = row.try_get("data_values").map_err(column)?;
        let flash: String = row.try_get("flash").map_err(column)?;
        let created_at: i64 = row.try_get("created_at").map_err(column)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(column)?;
        let expiry: Option<String> = row.try_get("expiry").map_err(column)?;
        let owner: Option<String> = row.try_get("owner").map_err(column)?;
        let expiry = expiry
            .map(|json| expiry_from_json(&json, "the `expiry` column"))
            .transpose()?;
        Ok(Record {
            values: value_map(&values, "the `data_values` column")?,
            flash: value_map(&flash, "the `flash` column")?,
            created_at: from_unix_millis(created_at),
            expires_at: from_unix_millis(expires_at),
            expiry,
            owner,
            revision: Revision::default(),
        })
    }
}

/// Refuses anything but a plain identifier, which is then safe to quote into SQL.
fn validate_table_name(table: &str) -> Result<(), StoreError> {
    let mut bytes = table.bytes();
    let valid = table.len() <= 64
        && bytes
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !table.to_ascii_lowercase().starts_with("sqlite_");
    if valid {
        Ok(())
    } else {
        Err(StoreError::backend(format!(
            "{table:?} is not a valid session table name: use ASCII letters, digits and `_` \
             (not starting with a digit or `sqlite_`, at most 64 characters)"
        )))
    }
}

/// Connection trouble and lock waits that ran out are [`StoreError::Unavailable`]; data that
/// does not decode is [`StoreError::Corrupt`]; the rest is [`StoreError::Backend`].
fn map_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Io(_) => {
            StoreError::unavailable(error)
        }
        sqlx::Error::Database(ref database) => {
            // Extended result code; the primary code is its low byte.
            let primary = database
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .map(|code| code & 0xff);
            match primary {
                // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN
                Some(5 | 6 | 14) => StoreError::unavailable(error),
                _ => StoreError::backend(error),
            }
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt(error.to_string()),
        other => StoreError::backend(other),
    }
}

impl LoadMany for SqliteStore {
    async fn load_many(&self, keys: Vec<StoreKey>) -> Result<Found, StoreError> {
        let hex: Vec<String> = keys.iter().map(StoreKey::to_hex).collect();
        let keys = serde_json::to_string(&hex).map_err(StoreError::backend)?;
        let rows = sqlx::query(&self.sql.load_many)
            .bind(keys)
            .bind(now_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        // A row whose key does not decode answers no load (none asked for such a key).
        Ok(rows
            .iter()
            .filter_map(|row| Some((Self::decode_key(row).ok()?, Self::decode_row(row))))
            .collect())
    }
}

impl SessionStore for SqliteStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let load_one = || async {
            let row = sqlx::query(&self.sql.load)
                .bind(key.to_hex())
                .bind(now_millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?;
            row.as_ref().map(Self::decode_row).transpose()
        };
        self.loads.load(self, key, load_one).await
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        let values = json_object(&record.values)?;
        let flash = json_object(&record.flash)?;
        let expiry = optional_expiry_json(record.expiry.as_ref())?;
        let _writing = self.write_lock.lock().await;
        let done = sqlx::query(&self.sql.create)
            .bind(key.to_hex())
            .bind(values)
            .bind(flash)
            .bind(to_unix_millis(record.created_at))
            .bind(to_unix_millis(record.expires_at))
            .bind(expiry)
            .bind(now_millis())
            .bind(record.owner.as_deref())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        // No row changed: the upsert's condition found a live record under the key.
        Ok(if done.rows_affected() == 0 {
            Created::Collision
        } else {
            Created::Created
        })
    }

    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        let hex = key.to_hex();
        if changes.values.is_empty() && changes.flash.is_empty() && changes.owner.is_none() {
            // An expiry touch: one conditional UPDATE, no need to read the row.
            let _writing = self.write_lock.lock().await;
            let expires_at = changes.expires_at.map(to_unix_millis);
            let (set_expiry, expiry) = match changes.expiry {
                Some(expiry) => (true, optional_expiry_json(expiry.as_ref())?),
                None => (false, None),
            };
            let done = sqlx::query(&self.sql.touch)
                .bind(&hex)
                .bind(expires_at)
                .bind(set_expiry)
                .bind(expiry)
                .bind(now_millis())
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
            return Ok(if done.rows_affected() == 0 {
                Applied::Missing
            } else {
                Applied::Applied
            });
        }

        // Waiting for the write lock can be given up (a request that timed out leaves the
        // queue), but the transaction, once begun, is finished in a task of its own even if
        // this call is dropped: sqlx 0.8 can hand a connection whose `BEGIN` was cancelled back
        // to the pool still inside the transaction (launchbadge/sqlx#3932), holding SQLite's
        // write lock, and every later write would wait out the busy timeout and fail.
        let writing = Arc::clone(&self.write_lock).lock_owned().await;
        let store = self.clone();
        let changes = changes.clone();
        tokio::spawn(async move {
            let _writing = writing;
            store.merge(&hex, &changes).await
        })
        .await
        .unwrap_or_else(|error| Err(StoreError::backend(format!("a session write's task ended: {error}"))))
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let _writing = self.write_lock.lock().await;
        sqlx::query(&self.sql.delete)
            .bind(key.to_hex())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let _writing = self.write_lock.lock().await;
        let done = sqlx::query(&self.sql.delete_expired)
            .bind(now_millis())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(done.rows_affected())
    }

    async fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let rows = sqlx::query(&self.sql.owner_sessions)
            .bind(owner)
            .bind(now_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| Ok((Self::decode_key(row)?, Self::decode_row(row)?)))
            .collect()
    }

    async fn end_owner_sessions(&self, owner: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let _writing = self.write_lock.lock().await;
        let done = sqlx::query(&self.sql.end_owner_sessions)
            .bind(owner)
            .bind(now_millis())
            .bind(except.map(StoreKey::to_hex).unwrap_or_default())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers() {
        for good in ["sessions", "_s", "app_sessions_2", "S"] {
            assert!(validate_table_name(good).is_ok(), "{good:?}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "1sessions",
            "my-sessions",
            "a b",
            "s\"; DROP TABLE x; --",
            "sqlite_master",
            "SQLITE_x",
            "sé",
            &long,
        ] {
            assert!(validate_table_name(bad).is_err(), "{bad:?}");
        }
    }
}
