//! `FileStore`: the conformance suite, plus what is particular to files (names, atomic writes,
//! locks across store instances, what `delete_expired` touches).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use typed_sessions::store::Record;
use typed_sessions::store::{conformance, Applied, Created, SessionStore, StoreError};
use typed_sessions::{FileStore, SessionId};
use typed_sessions_tests::{fresh_key, live_record, millis_from_now, race_until_both_sides, set_value};

fn expired_record() -> Record {
    let mut record = live_record();
    record.expires_at = millis_from_now(-1);
    record
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    conformance::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_multi_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("sessions")).unwrap();
    conformance::run(&store).await;
}

#[tokio::test]
async fn open_creates_the_directory_and_refuses_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/sessions");
    let store = FileStore::open(&nested).unwrap();
    assert!(nested.is_dir());
    assert_eq!(store.dir(), nested);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o077,
            0,
            "the directory is private"
        );
    }

    let file = dir.path().join("plain-file");
    fs::write(&file, "x").unwrap();
    assert!(FileStore::open(&file).is_err());
}

/// The only names in the directory are the hashed key in hex plus the store's suffixes; the
/// session id itself appears nowhere.
#[tokio::test]
async fn file_names_are_the_hashed_key_in_hex() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let id = SessionId::random();
    let key = id.store_key();
    store.create(&key, &live_record()).await.unwrap();
    store.apply(&key, &set_value("theme", r#""dark""#)).await.unwrap();
    for _ in 0..5 {
        store.create(&fresh_key(), &live_record()).await.unwrap();
    }

    let names = names(dir.path());
    assert!(names.contains(&format!("{}.json", key.to_hex())));
    for name in &names {
        let (stem, suffix) = name.split_once('.').unwrap();
        assert!(
            is_hex64(stem) && (suffix == "json" || suffix == "lock"),
            "unexpected file {name:?}"
        );
        assert!(!name.contains(id.as_str()));
    }
    let content = fs::read_to_string(dir.path().join(format!("{}.json", key.to_hex()))).unwrap();
    assert!(!content.contains(id.as_str()));
    let record: Record = serde_json::from_str(&content).unwrap();
    assert_eq!(record.values.get("theme"), Some(r#""dark""#));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in &names {
            let mode = fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name} is readable by others");
        }
    }
}

/// Deleting a session removes its record and its lock file.
#[tokio::test]
async fn delete_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let key = fresh_key();
    store.create(&key, &live_record()).await.unwrap();
    store.apply(&key, &set_value("a", "1")).await.unwrap();
    store.delete(&key).await.unwrap();
    // An apply after the logout neither brings the record back nor leaves a lock file.
    assert_eq!(store.apply(&key, &set_value("a", "2")).await.unwrap(), Applied::Missing);
    #[cfg(unix)]
    assert!(names(dir.path()).is_empty(), "left behind: {:?}", names(dir.path()));
    #[cfg(not(unix))]
    assert!(!dir.path().join(format!("{}.json", key.to_hex())).exists());
}

#[tokio::test]
async fn delete_expired_leaves_unrelated_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let hex = fresh_key().to_hex();
    let unrelated = [
        "README.txt".to_owned(),
        ".hidden".to_owned(),
        format!("{hex}.json.bak"),
        format!("{}.json", hex.to_uppercase()),
        format!("{hex}.tmp"),
        "x.json".to_owned(),
    ];
    for name in &unrelated {
        fs::write(dir.path().join(name), "{not a record").unwrap();
    }
    fs::create_dir(dir.path().join("subdir")).unwrap();

    let live = fresh_key();
    store.create(&live, &live_record()).await.unwrap();
    for _ in 0..3 {
        store.create(&fresh_key(), &expired_record()).await.unwrap();
    }
    // Left behind by a writer that crashed: a temporary file, and a lock file without a record.
    let crashed = fresh_key().to_hex();
    fs::write(
        dir.path().join(format!("{crashed}.0123456789abcdef.tmp")),
        "{\"values\":",
    )
    .unwrap();
    fs::write(dir.path().join(format!("{crashed}.lock")), "").unwrap();
    let live_tmp = format!("{}.fedcba9876543210.tmp", live.to_hex());
    fs::write(dir.path().join(&live_tmp), "{").unwrap();

    assert_eq!(store.delete_expired().await.unwrap(), 3);
    assert_eq!(store.delete_expired().await.unwrap(), 0);

    let mut expected: BTreeSet<String> = unrelated.iter().cloned().collect();
    expected.insert("subdir".into());
    expected.insert(format!("{}.json", live.to_hex()));
    expected.insert(format!("{}.lock", live.to_hex()));
    assert_eq!(names(dir.path()), expected);
    for name in &unrelated {
        assert_eq!(fs::read_to_string(dir.path().join(name)).unwrap(), "{not a record");
    }
    assert!(store.load(&live).await.unwrap().is_some());
}

#[tokio::test]
async fn a_torn_file_is_corrupt_and_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let key = fresh_key();
    store.create(&key, &live_record()).await.unwrap();
    let path = dir.path().join(format!("{}.json", key.to_hex()));
    let whole = fs::read(&path).unwrap();
    fs::write(&path, &whole[..whole.len() / 2]).unwrap();

    assert!(matches!(store.load(&key).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.apply(&key, &set_value("a", "1")).await,
        Err(StoreError::Corrupt(_))
    ));
    // A corrupt file is nobody's live session: a create may take its place.
    let fresh = live_record();
    assert_eq!(store.create(&key, &fresh).await.unwrap(), Created::Created);
    assert_eq!(store.load(&key).await.unwrap(), Some(fresh));
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
}

/// A record that no longer decodes is removed by the sweep (with a warning), lock file and all:
/// it would otherwise stay in the directory forever.
#[tokio::test]
async fn the_sweep_removes_records_that_do_not_decode() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let (torn, live) = (fresh_key(), fresh_key());
    store.create(&torn, &live_record()).await.unwrap();
    store.create(&live, &live_record()).await.unwrap();
    let path = dir.path().join(format!("{}.json", torn.to_hex()));
    fs::write(&path, b"{\"values\": {\"us").unwrap();

    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert!(!path.exists(), "the corrupt record is still there");
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        left.iter().all(|name| name.starts_with(&live.to_hex())),
        "something of the corrupt session is left: {left:?}"
    );
    assert!(
        store.load(&live).await.unwrap().is_some(),
        "the sweep removed a live record"
    );
}

/// Many tasks on a multi-thread runtime, through two store instances on one directory (as two
/// processes would), apply changes to one session: every key survives, and values written
/// together in one patch never come apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_from_two_instances_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let one = Arc::new(FileStore::open(dir.path()).unwrap());
    let two = Arc::new(FileStore::open(dir.path()).unwrap());
    typed_sessions_tests::concurrent_applies_from_two_instances_all_survive(one, two, 10).await;
    assert!(
        names(dir.path()).iter().all(|name| !name.ends_with(".tmp")),
        "temporary files left behind"
    );
}

/// Deletes, applies, creates and the sweeper racing on the same sessions: nothing comes back
/// after a delete, and no lock is ever lost (which would show as a lost key). The workers and the
/// delete start together; rounds go on until in one of them applies landed on both sides of the
/// delete, which shows the race was run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_and_sweeps_racing_applies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let store = &store;
    race_until_both_sides(|| async move {
        let doomed = fresh_key();
        let kept = fresh_key();
        store.create(&doomed, &live_record()).await.unwrap();
        store.create(&kept, &live_record()).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(5));
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let (store, start) = (Arc::clone(store), Arc::clone(&start));
                tokio::spawn(async move {
                    let changes = set_value(&format!("k{i}"), "1");
                    start.wait().await;
                    let doomed_outcome = store.apply(&doomed, &changes).await.unwrap();
                    assert_eq!(store.apply(&kept, &changes).await.unwrap(), Applied::Applied);
                    store.delete_expired().await.unwrap();
                    doomed_outcome
                })
            })
            .collect();
        start.wait().await;
        store.delete(&doomed).await.unwrap();
        let mut outcomes = Vec::new();
        for worker in workers {
            outcomes.push(worker.await.unwrap());
        }
        assert!(
            store.load(&doomed).await.unwrap().is_none(),
            "an apply brought a deleted record back"
        );
        let kept = store.load(&kept).await.unwrap().unwrap();
        for i in 0..4 {
            assert!(kept.values.contains_key(&format!("k{i}")), "k{i} lost");
        }
        outcomes
    })
    .await;
}

/// The owner index's files go with their sessions: an entry whose session was deleted is removed
/// by the next listing of its owner or by the sweep, which also removes the owner's emptied
/// folder; nothing is left of an owner once all their sessions are gone.
#[tokio::test]
async fn owner_index_files_go_with_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let owners = dir.path().join("owners");
    let mut record = live_record();
    record.owner = Some("\"ada\"".to_owned());
    let (kept, deleted) = (fresh_key(), fresh_key());
    for key in [&kept, &deleted] {
        assert_eq!(store.create(key, &record).await.unwrap(), Created::Created);
    }
    let owner_dirs: Vec<_> = fs::read_dir(&owners)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(owner_dirs.len(), 1);
    let entries = || names(&owner_dirs[0]);
    assert_eq!(entries(), [kept.to_hex(), deleted.to_hex()].into_iter().collect());

    store.delete(&deleted).await.unwrap();
    let listed = store.owner_sessions("\"ada\"").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, kept);
    assert_eq!(
        entries(),
        [kept.to_hex()].into_iter().collect(),
        "the listing pruned the entry"
    );

    store.delete(&kept).await.unwrap();
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(!owner_dirs[0].exists(), "the sweep removed the emptied owner folder");
    assert_eq!(names(dir.path()), ["owners".to_owned()].into_iter().collect());
}
