//! [`FileStore`]: one JSON file per session in a directory, written atomically under a lock file
//! per session, with the owner index in files beside them.
//!
//! Why this file is long: the crash-safe write (temporary file, `fsync`, rename, directory sync),
//! the locking that makes a read-change-write one step across processes, and the sweep that
//! cleans up what crashes leave are one protocol, read together.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use fs4::fs_std::FileExt as _;

use super::{Applied, Created, SessionStore, StoreError, StoreKey};
use crate::record::{Changes, Record};

/// In-process lock shards: requests of one session in this process queue on a tokio mutex
/// instead of each parking a blocking thread on the file lock.
const SHARDS: usize = 64;

const RECORD_SUFFIX: &str = ".json";
const LOCK_SUFFIX: &str = ".lock";
const TEMP_SUFFIX: &str = ".tmp";
/// The folder of the owner index, in the store's directory.
const OWNERS_DIR: &str = "owners";

/// Sessions as files in a directory, one per session: survives restarts, needs no database.
///
/// ```no_run
/// use typed_sessions::{FileStore, SessionLayer};
///
/// # fn run() -> Result<(), typed_sessions::store::StoreError> {
/// let store = FileStore::open("/var/lib/my-app/sessions")?; // creates the directory
/// let layer = SessionLayer::new(store);
/// # Ok(())
/// # }
/// ```
///
/// Each session is a file `<key>.json` holding the [`Record`] as JSON, where `<key>` is the
/// session's [`StoreKey`] in hex: a hash of the id, so file names never come from request input
/// and a leaked directory holds no usable cookie. Files are created readable by their owner only.
///
/// Unix only (the `file` feature provides nothing elsewhere): a session's lock file is removed
/// with its record, which is safe because a locker checks, once it holds the lock, that the path
/// still names the file it locked — by inode, and removing a file another process holds open
/// is a Unix guarantee. Elsewhere lock files would have to outlive their records.
///
/// - **Atomic writes**: a record is written to a temporary file in the same directory, flushed to
///   disk (`fsync`), and renamed over the old one (then the directory is synced). A
///   crash leaves the old record or the new one, never a mix; a stale temporary file is removed
///   by [`delete_expired`](SessionStore::delete_expired).
/// - **Merging**: `create` and `apply` read, change and write a record holding an exclusive lock
///   (`flock`) on the session's `<key>.lock` file, so concurrent requests of one session — in this
///   process or in others that opened the same directory — never lose each other's keys.
/// - Blocking file work runs on tokio's blocking thread pool.
/// - [`delete_expired`](SessionStore::delete_expired) scans the directory: it removes expired
///   records, records that no longer decode (with a warning naming the file: no one's session
///   can be read from them), lock files whose record is gone and temporary files a crash left;
///   files whose names it did not make are left alone.
/// - **Owners**: the sessions of an owner ([`Record::owner`]) are indexed by empty files
///   `owners/<SHA-256 of the owner's JSON, in hex>/<key>`, each made (and the folder synced)
///   before the write that gives the session its owner. Listing reads the record each names and
///   keeps those that are live with that owner; a file whose session is gone or has another
///   owner is removed then (holding the session's lock, so that a write in progress cannot be
///   missed), and by `delete_expired`.
///
/// Clones share one directory and its locks. Meant for one machine: file locks on network file
/// systems are not to be trusted.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    shards: Box<[tokio::sync::Mutex<()>]>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.inner.dir).finish()
    }
}

impl FileStore {
    /// A store in the directory `dir`, created (with its parents) if it does not exist.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|error| io_error("create the session directory", dir, error))?;
        if !fs::metadata(dir)
            .map_err(|error| io_error("read", dir, error))?
            .is_dir()
        {
            return Err(StoreError::backend(format!("{} is not a directory", dir.display())));
        }
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                shards: (0..SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            }),
        })
    }

    /// The directory the sessions are in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `work` on the blocking pool, while holding the in-process lock of `key`'s shard.
    async fn locked<T: Send + 'static>(
        &self,
        key: &StoreKey,
        work: impl FnOnce(&Inner, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _shard = self.inner.shards[usize::from(key.as_bytes()[0]) % SHARDS].lock().await;
        self.blocking(key, work).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        key: &StoreKey,
        work: impl FnOnce(&Inner, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        let hex = key.to_hex();
        tokio::task::spawn_blocking(move || work(&inner, &hex))
            .await
            .map_err(|error| StoreError::backend(format!("a file store task failed: {error}")))?
    }
}

fn io_error(action: &str, path: &Path, error: io::Error) -> StoreError {
    StoreError::backend(io::Error::new(
        error.kind(),
        format!("cannot {action} {}: {error}", path.display()),
    ))
}

fn is_key_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a file name in the store's directory is, if the store made it.
enum Entry<'a> {
    Record(&'a str),
    Lock(&'a str),
    Temp(&'a str),
}

fn classify(name: &str) -> Option<Entry<'_>> {
    if let Some(hex) = name.strip_suffix(RECORD_SUFFIX) {
        return is_key_hex(hex).then_some(Entry::Record(hex));
    }
    if let Some(hex) = name.strip_suffix(LOCK_SUFFIX) {
        return is_key_hex(hex).then_some(Entry::Lock(hex));
    }
    let (stem, random) = name.strip_suffix(TEMP_SUFFIX)?.split_once('.')?;
    let ours = is_key_hex(stem) && random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    ours.then_some(Entry::Temp(stem))
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// An exclusive lock on one session's lock file; released when dropped.
struct SessionLock {
    file: File,
    path: PathBuf,
}

impl SessionLock {
    /// Removes the lock file while still holding the lock (the session has no record any more).
    ///
    /// Safe because every locker checks, once it holds the lock, that the path still names the
    /// file it locked, and starts over if not.
    fn forget(self) -> Result<(), StoreError> {
        remove_if_present(&self.path)?;
        drop(self.file);
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error("remove", path, error)),
    }
}

/// Whether `path` still names the file `file` has open.
fn still_linked(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

impl Inner {
    fn record_path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}{RECORD_SUFFIX}"))
    }

    fn owners_dir(&self) -> PathBuf {
        self.dir.join(OWNERS_DIR)
    }

    /// The folder of `owner`'s index entries: named by a hash of the owner's JSON, so any owner
    /// value makes a safe name of bounded length.
    fn owner_dir(&self, owner: &str) -> PathBuf {
        self.owners_dir().join(crate::id::sha256_hex(owner))
    }

    /// Indexes the session `hex` under `owner`, durably, before the write that gives it the owner.
    fn index_owner(&self, owner: &str, hex: &str) -> Result<(), StoreError> {
        let dir = self.owner_dir(owner);
        let entry = dir.join(hex);
        if entry.exists() {
            return Ok(());
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        let create_entry = || private_file().write(true).create(true).truncate(false).open(&entry);
        let mut attempts = 0;
        loop {
            builder.create(&dir).map_err(|error| io_error("create", &dir, error))?;
            match create_entry() {
                Ok(_) => break,
                // The sweep removed the folder, empty, between the two steps: make it again.
                Err(error) if error.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(error) => return Err(io_error("create", &entry, error)),
            }
        }
        // The entry, and the folders that hold it, must be on disk before the write they index.
        for synced in [&dir, &self.owners_dir(), &self.dir] {
            File::open(synced)
                .and_then(|folder| folder.sync_all())
                .map_err(|error| io_error("sync", synced, error))?;
        }
        Ok(())
    }

    /// The record under `hex` as the owner index judges it: `None` if it is gone or does not
    /// decode (no one's live session); an error if it cannot be read now, so that an entry of a
    /// session that may well be live is kept.
    fn read_for_index(&self, hex: &str) -> Result<Option<Record>, StoreError> {
        match self.read(hex) {
            Err(StoreError::Corrupt(_)) => Ok(None),
            other => other,
        }
    }

    /// The live records indexed under `owner`; index entries of sessions that are gone or have
    /// another owner are removed.
    fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let dir = self.owner_dir(owner);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("list", &dir, error)),
        };
        let now = SystemTime::now();
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| io_error("list", &dir, error))?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(StoreKey::from_hex) else {
                continue;
            };
            let hex = key.to_hex();
            let owned_by = |record: &Option<Record>| {
                record
                    .as_ref()
                    .is_some_and(|record| !record.is_expired_at(now) && record.owner.as_deref() == Some(owner))
            };
            match self.read_for_index(&hex) {
                Ok(record) if owned_by(&record) => listed.extend(record.map(|record| (key, record))),
                Ok(_) => self.prune_owner_entry(&dir, &hex, &owned_by)?,
                // Its entry is kept: the session may be live, and is listed once it reads again.
                // (It cannot be loaded either meanwhile: its requests get a 503.)
                Err(error) => tracing::warn!(%error, "a session of an owner cannot be read; not listed"),
            }
        }
        Ok(listed)
    }

    /// Removes the index entry `dir/hex` unless, under the session's lock, its record is after
    /// all a live one of the owner (`owned_by`).
    fn prune_owner_entry(
        &self,
        dir: &Path,
        hex: &str,
        owned_by: &dyn Fn(&Option<Record>) -> bool,
    ) -> Result<(), StoreError> {
        let lock = self.lock(hex)?;
        let record = self.read_for_index(hex)?;
        if !owned_by(&record) {
            remove_if_present(&dir.join(hex))?;
        }
        if record.is_none() {
            lock.forget()?;
        }
        Ok(())
    }

    /// Prunes every owner's index entries (`delete_expired`), and removes folders left empty.
    fn sweep_owners(&self) -> Result<(), StoreError> {
        let owners = match fs::read_dir(self.owners_dir()) {
            Ok(owners) => owners,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error("list", &self.owners_dir(), error)),
        };
        let now = SystemTime::now();
        for owner_dir in owners {
            let owner_dir = owner_dir
                .map_err(|error| io_error("list", &self.owners_dir(), error))?
                .path();
            let Ok(entries) = fs::read_dir(&owner_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(hex) = name.to_str().filter(|name| is_key_hex(name)) else {
                    continue;
                };
                // Kept while its session lives: the session's own owner is checked when listed.
                let live = |record: &Option<Record>| record.as_ref().is_some_and(|record| !record.is_expired_at(now));
                let pruned = match self.read_for_index(hex) {
                    Ok(record) if live(&record) => Ok(()),
                    Ok(_) => self.prune_owner_entry(&owner_dir, hex, &live),
                    Err(error) => Err(error),
                };
                if let Err(error) = pruned {
                    tracing::warn!(%error, "FileStore::delete_expired keeps an owner index entry it cannot check");
                }
            }
            // Fails, harmlessly, unless the folder is empty.
            let _ = fs::remove_dir(&owner_dir);
        }
        Ok(())
    }

    fn lock(&self, hex: &str) -> Result<SessionLock, StoreError> {
        let path = self.dir.join(format!("{hex}{LOCK_SUFFIX}"));
        loop {
            let file = private_file()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|error| io_error("open", &path, error))?;
            file.lock_exclusive().map_err(|error| io_error("lock", &path, error))?;
            // Whoever held the lock before may have removed the file: then this lock guards nothing.
            if still_linked(&file, &path).map_err(|error| io_error("check", &path, error))? {
                return Ok(SessionLock { file, path });
            }
        }
    }

    /// The record under `hex`, expired or not.
    fn read(&self, hex: &str) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(hex);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read", &path, error)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StoreError::Corrupt(format!("{} does not decode: {error}", path.display())))
    }

    /// Replaces the record under `hex` atomically. The caller holds the session's lock.
    fn write(&self, hex: &str, record: &Record) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).map_err(StoreError::backend)?;
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|error| StoreError::backend(error.to_string()))?;
        let random: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let temp = self.dir.join(format!("{hex}.{random}{TEMP_SUFFIX}"));
        let target = self.record_path(hex);

        let written = (|| {
            let mut file = private_file().write(true).create_new(true).open(&temp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &target)
        })();
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error("write", &target, error));
        }
        self.sync_dir()
    }

    /// Makes renames and removals in the directory durable.
    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io_error("sync", &self.dir, error))?;
        Ok(())
    }

    /// Removes the record and its lock file. The caller holds the lock.
    fn remove(&self, hex: &str, lock: SessionLock) -> Result<bool, StoreError> {
        let removed = remove_if_present(&self.record_path(hex))?;
        lock.forget()?;
        if removed {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    fn create(&self, hex: &str, record: &Record) -> Result<Created, StoreError> {
        let lock = self.lock(hex)?;
        match self.read(hex) {
            Ok(Some(stored)) if !stored.is_expired_at(SystemTime::now()) => return Ok(Created::Collision),
            // Nothing, an expired record, or one that does not decode (no one's live session):
            // the new record takes its place.
            Ok(_) | Err(StoreError::Corrupt(_)) => {}
            Err(error) => return Err(error),
        }
        if let Some(owner) = &record.owner {
            self.index_owner(owner, hex)?;
        }
        self.write(hex, record)?;
        drop(lock);
        Ok(Created::Created)
    }

    fn apply(&self, hex: &str, changes: &Changes) -> Result<Applied, StoreError> {
        let lock = self.lock(hex)?;
        match self.read(hex)? {
            Some(mut record) if !record.is_expired_at(SystemTime::now()) => {
                if let Some(Some(owner)) = &changes.owner {
                    self.index_owner(owner, hex)?;
                }
                record.apply(changes);
                self.write(hex, &record)?;
                drop(lock);
                Ok(Applied::Applied)
            }
            Some(_expired) => {
                self.remove(hex, lock)?;
                Ok(Applied::Missing)
            }
            None => {
                lock.forget()?;
                Ok(Applied::Missing)
            }
        }
    }

    fn delete(&self, hex: &str) -> Result<(), StoreError> {
        let lock = self.lock(hex)?;
        self.remove(hex, lock)?;
        Ok(())
    }

    /// Whether the sweep removes the record under `hex`: it has expired, or does not decode.
    fn is_sweepable(&self, hex: &str, now: SystemTime) -> bool {
        match self.read(hex) {
            Ok(Some(record)) => record.is_expired_at(now),
            Ok(None) => false,
            Err(StoreError::Corrupt(reason)) => {
                tracing::warn!(%reason, "FileStore::delete_expired removes a session file that does not decode");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "FileStore::delete_expired skips a session file it cannot read");
                false
            }
        }
    }

    fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = SystemTime::now();
        let entries = fs::read_dir(&self.dir).map_err(|error| io_error("list", &self.dir, error))?;
        let mut removed = 0u64;
        for entry in entries {
            let entry = entry.map_err(|error| io_error("list", &self.dir, error))?;
            let name = entry.file_name();
            let Some(entry) = name.to_str().and_then(classify) else {
                continue;
            };
            match entry {
                Entry::Record(hex) => {
                    // A cheap look without the lock first; most records are live.
                    if !self.is_sweepable(hex, now) {
                        continue;
                    }
                    let lock = self.lock(hex)?;
                    if self.is_sweepable(hex, now) && self.remove(hex, lock)? {
                        removed += 1;
                    }
                }
                // A lock file whose session has gone (left by a crash, or on other systems).
                Entry::Lock(hex) => {
                    if self.record_path(hex).exists() {
                        continue;
                    }
                    let lock = self.lock(hex)?;
                    if !self.record_path(hex).exists() {
                        lock.forget()?;
                    }
                }
                // Temporary files exist only while their session's lock is held: one found by
                // the lock holder was left by a writer that crashed.
                Entry::Temp(hex) => {
                    let lock = self.lock(hex)?;
                    remove_if_present(&self.dir.join(&name))?;
                    if self.record_path(hex).exists() {
                        drop(lock);
                    } else {
                        lock.forget()?;
                    }
                }
            }
        }
        self.sweep_owners()?;
        Ok(removed)
    }
}

impl SessionStore for FileStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        // No lock: records are replaced by rename, so a reader sees the old file or the new one.
        let record = self.blocking(key, |inner, hex| inner.read(hex)).await?;
        Ok(record.filter(|record| !record.is_expired_at(SystemTime::now())))
    }

    async fn create(&self, key: &StoreKey, record: &Record) -> Result<Created, StoreError> {
        let record = record.clone();
        self.locked(key, move |inner, hex| inner.create(hex, &record)).await
    }

    async fn apply(&self, key: &StoreKey, changes: &Changes) -> Result<Applied, StoreError> {
        let changes = changes.clone();
        self.locked(key, move |inner, hex| inner.apply(hex, &changes)).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.locked(key, |inner, hex| inner.delete(hex)).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.delete_expired())
            .await
            .map_err(|error| StoreError::backend(format!("a file store task failed: {error}")))?
    }

    async fn owner_sessions(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let inner = Arc::clone(&self.inner);
        let owner = owner.to_owned();
        tokio::task::spawn_blocking(move || inner.owner_sessions(&owner))
            .await
            .map_err(|error| StoreError::backend(format!("a file store task failed: {error}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_store_makes_are_recognised() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(matches!(classify(&format!("{hex}.json")), Some(Entry::Record(h)) if h == hex));
        assert!(matches!(classify(&format!("{hex}.lock")), Some(Entry::Lock(h)) if h == hex));
        assert!(matches!(classify(&format!("{hex}.00ff00ff00ff00ff.tmp")), Some(Entry::Temp(h)) if h == hex));
        for other in [
            "notes.txt".to_owned(),
            ".json".to_owned(),
            format!("{}.json", hex.to_uppercase()),
            format!("{hex}x.json"),
            format!("{hex}.json.bak"),
            format!("{hex}.tmp"),
            format!("{hex}.zz.tmp"),
            format!("../{hex}.json"),
        ] {
            assert!(classify(&other).is_none(), "{other}");
        }
    }
}
