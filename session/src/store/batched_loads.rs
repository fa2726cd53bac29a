//! Loads of concurrent requests gathered into one query: what a networked store pays per load is
//! mostly the statement (its round trip, its parse and bind, the server's per-statement work),
//! not the row, so under load one statement for many sessions costs far less than one each.
//!
//! A load goes alone, as before, while fewer than [`BatchedLoads::MAX_IN_FLIGHT`] loads of the
//! store are running: a quiet app sees no difference. Past that it waits in a queue, and the
//! next load to finish hands what is queued (up to 64 at a time) to one query (run in a task of
//! its own, so that no request's cancellation can strand the others). Every queued load is
//! answered by a query sent after it was queued: it sees every write finished before it began,
//! as a load of its own would.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{Record, StoreError, StoreKey};

/// What a batch read found: each live record among the keys asked for, with its key (or why it
/// could not be decoded).
pub(crate) type Found = Vec<(StoreKey, Result<Record, StoreError>)>;

/// A store that can read many sessions in one query.
pub(crate) trait LoadMany: Clone + Send + Sync + 'static {
    /// The live records among `keys` (each key at most once), with their keys; a key without
    /// a live record is left out. A record that cannot be decoded is an error for its key only.
    fn load_many(&self, keys: Vec<StoreKey>) -> impl std::future::Future<Output = Result<Found, StoreError>> + Send;
}

type Reply = oneshot::Sender<Result<Option<Record>, StoreError>>;

#[derive(Debug, Default)]
struct Queue {
    /// Loads running now, alone or as a batch.
    in_flight: usize,
    waiting: Vec<(StoreKey, Reply)>,
}

/// The queue of one store (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct BatchedLoads {
    queue: Mutex<Queue>,
}

impl BatchedLoads {
    /// Loads that run at once before more are queued for a batch. Small: each running load holds
    /// a connection, and the pool is shared with the writes.
    const MAX_IN_FLIGHT: usize = 2;
    /// Most sessions one query reads; more queued loads wait for the next one.
    const MAX_BATCH: usize = 64;
    /// How long a batch's read may take before its loads fail, whatever the layer's store
    /// timeout: a load alone is bounded by that timeout, which cancels it, but a batch is read
    /// by a task of its own, which nothing cancels. Each waiting request is still answered
    /// within the layer's timeout (5 s by default) when that is shorter.
    const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    /// Loads `key` with the future `load_one` makes when few loads are running, else in the next
    /// batch `store` reads.
    ///
    /// `load_one` makes its future only when it runs: a future passed in by value would take
    /// room twice in the caller's future (once where it is made, once in this one). Measured on
    /// `RedisStore` when it still batched its loads: its load's future went from 1,456 to 800
    /// bytes.
    pub(crate) async fn load<S, F, L>(
        self: &Arc<Self>,
        store: &S,
        key: &StoreKey,
        load_one: L,
    ) -> Result<Option<Record>, StoreError>
    where
        S: LoadMany,
        L: FnOnce() -> F,
        F: std::future::Future<Output = Result<Option<Record>, StoreError>>,
    {
        let queued = {
            let mut queue = self.queue.lock();
            if queue.in_flight < Self::MAX_IN_FLIGHT {
                queue.in_flight += 1;
                None
            } else {
                let (reply, answer) = oneshot::channel();
                queue.waiting.push((*key, reply));
                Some(answer)
            }
        };
        match queued {
            None => {
                let _running = Running { loads: self, store };
                load_one().await
            }
            Some(answer) => answer
                .await
                .unwrap_or_else(|_| Err(StoreError::unavailable("the batched session load was abandoned"))),
        }
    }

    /// The next batch to read, or `None` (and one load fewer running) if nothing waits.
    fn next_batch(&self) -> Option<Vec<(StoreKey, Reply)>> {
        let mut queue = self.queue.lock();
        if queue.waiting.is_empty() {
            queue.in_flight -= 1;
            return None;
        }
        let take = queue.waiting.len().min(Self::MAX_BATCH);
        Some(queue.waiting.drain(..take).collect())
    }
}

/// A running load: when it ends (or is cancelled), whatever queued meanwhile is read in a task
/// that keeps its place until the queue is empty. It borrows the queue and the store: they are
/// cloned for that task only, not for every load.
struct Running<'a, S: LoadMany> {
    loads: &'a Arc<BatchedLoads>,
    store: &'a S,
}

impl<S: LoadMany> Drop for Running<'_, S> {
    fn drop(&mut self) {
        let Some(batch) = self.loads.next_batch() else {
            return;
        };
        // The place is the batch reader's from here; `reading` gives it back however that ends.
        let mut reading = Reading {
            loads: Arc::clone(self.loads),
            emptied: false,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to read them in (the load was dropped outside one): `reading` fails
            // them as it is dropped.
            return;
        };
        let store = self.store.clone();
        // A runtime that is shutting down drops the task unpolled: `reading`, moved into it,
        // then fails the queued loads as it is dropped.
        runtime.spawn(async move {
            let mut batch = batch;
            loop {
                answer(&store, batch).await;
                match reading.next_batch() {
                    Some(next) => batch = next,
                    None => break,
                }
            }
        });
    }
}

/// A batch reader's place. A reader that ends before the queue is empty (its task panicked, or
/// was dropped with its runtime) gives the place back, and the loads still queued fail at once
/// rather than wait for a reader that will not come.
struct Reading {
    loads: Arc<BatchedLoads>,
    /// Set when `next_batch` found the queue empty, which also gave the place back.
    emptied: bool,
}

impl Reading {
    /// The queue's next batch, or `None` when it is empty (which gives the place back).
    fn next_batch(&mut self) -> Option<Vec<(StoreKey, Reply)>> {
        let next = self.loads.next_batch();
        self.emptied = next.is_none();
        next
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if self.emptied {
            return;
        }
        let abandoned = {
            let mut queue = self.loads.queue.lock();
            queue.in_flight -= 1;
            std::mem::take(&mut queue.waiting)
        };
        // Each dropped reply answers its load with an error.
        drop(abandoned);
    }
}

/// Reads `batch`'s sessions in one query and answers each waiting load.
async fn answer<S: LoadMany>(store: &S, batch: Vec<(StoreKey, Reply)>) {
    let mut keys: Vec<StoreKey> = batch.iter().map(|(key, _)| *key).collect();
    keys.sort_unstable();
    keys.dedup();
    let found = match tokio::time::timeout(BatchedLoads::READ_TIMEOUT, store.load_many(keys)).await {
        Ok(found) => found,
        Err(_) => Err(StoreError::unavailable(format!(
            "reading a batch of sessions took longer than {:?}",
            BatchedLoads::READ_TIMEOUT
        ))),
    };
    match found {
        Ok(mut found) => {
            let mut batch = batch;
            while let Some((key, reply)) = batch.pop() {
                // Two requests of one session in one batch: the last answered takes the record,
                // the others a copy.
                let wanted_again = batch.iter().any(|(other, _)| *other == key);
                let result = match found.iter().position(|(found_key, _)| *found_key == key) {
                    None => Ok(None),
                    Some(at) if wanted_again => match &found[at].1 {
                        Ok(record) => Ok(Some(record.clone())),
                        Err(error) => Err(copy_of(error)),
                    },
                    Some(at) => found.swap_remove(at).1.map(Some),
                };
                // The receiver may have given up (its request timed out): nothing to tell.
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            for (_, reply) in batch {
                // The receiver may have given up (its request timed out): nothing to tell.
                let _ = reply.send(Err(copy_of(&error)));
            }
        }
    }
}

/// The same failure for another waiting load (store errors carry boxed sources and do not clone).
fn copy_of(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(source) => StoreError::unavailable(source.to_string()),
        StoreError::Corrupt(message) => StoreError::Corrupt(message.clone()),
        StoreError::Unsupported(message) => StoreError::Unsupported(message.clone()),
        other => StoreError::backend(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use tokio::sync::Notify;

    use super::*;

    /// A store whose batch reads are counted; single loads are the tests' own futures.
    #[derive(Clone, Default)]
    struct Counted {
        records: Arc<HashMap<StoreKey, Record>>,
        batches: Arc<Mutex<Vec<Vec<StoreKey>>>>,
    }

    impl LoadMany for Counted {
        async fn load_many(&self, keys: Vec<StoreKey>) -> Result<Found, StoreError> {
            self.batches.lock().push(keys.clone());
            Ok(keys
                .into_iter()
                .filter_map(|key| self.records.get(&key).map(|record| (key, Ok(record.clone()))))
                .collect())
        }
    }

    fn record(marker: &str) -> Record {
        let now = SystemTime::now();
        let mut record = Record::new(now, now + Duration::from_secs(60));
        record.values.insert("marker", marker);
        record
    }

    fn key(byte: u8) -> StoreKey {
        StoreKey::from_bytes([byte; 32])
    }

    /// A store holding keys 1 to 3, and the batcher.
    fn setup() -> (Counted, Arc<BatchedLoads>) {
        let records = (1..=3)
            .map(|byte| (key(byte), record(&format!("\"{byte}\""))))
            .collect();
        let store = Counted {
            records: Arc::new(records),
            ..Counted::default()
        };
        (store, Arc::default())
    }

    /// Starts as many loads as may run at once, each holding its place until `gate` opens, and
    /// waits until they all run.
    async fn take_every_place<S: LoadMany>(
        store: &S,
        loads: &Arc<BatchedLoads>,
        gate: &Arc<Notify>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let running = (0..BatchedLoads::MAX_IN_FLIGHT)
            .map(|_| {
                let (store, loads, gate) = (store.clone(), Arc::clone(loads), Arc::clone(gate));
                tokio::spawn(async move {
                    let load_one = || async {
                        gate.notified().await;
                        Ok(None)
                    };
                    let _ = loads.load(&store, &key(9), load_one).await;
                })
            })
            .collect();
        while loads.queue.lock().in_flight < BatchedLoads::MAX_IN_FLIGHT {
            tokio::task::yield_now().await;
        }
        running
    }

    /// Queues a load of `byte`'s key (both places are taken), returning its answer's marker.
    fn queued_load(
        store: &Counted,
        loads: &Arc<BatchedLoads>,
        byte: u8,
    ) -> tokio::task::JoinHandle<Result<Option<String>, StoreError>> {
        let (store, loads) = (store.clone(), Arc::clone(loads));
        tokio::spawn(async move {
            let loaded = loads.load(&store, &key(byte), made_while_queued).await?;
            Ok(loaded.map(|record| record.values.get("marker").unwrap().to_owned()))
        })
    }

    /// The single load of a load expected to queue. Panics when called, not when awaited: a
    /// queued load must not even make its future.
    fn made_while_queued() -> std::future::Ready<Result<Option<Record>, StoreError>> {
        panic!("a queued load made its single load")
    }

    /// Fails, rather than spinning for ever, if the loads never queue: a load that panicked
    /// (one that made its single load while queued) never does.
    async fn until_waiting(loads: &BatchedLoads, count: usize) {
        let queued = async {
            while loads.queue.lock().waiting.len() < count {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), queued)
            .await
            .expect("the loads never queued");
    }

    #[tokio::test]
    async fn a_quiet_store_loads_each_session_alone() {
        let (store, loads) = setup();
        for byte in [1, 2, 1] {
            let loaded = loads
                .load(&store, &key(byte), || async { Ok(Some(record("alone"))) })
                .await;
            assert_eq!(loaded.unwrap().unwrap().values.get("marker"), Some("alone"));
        }
        assert!(store.batches.lock().is_empty(), "a load was batched with none running");
        assert_eq!(loads.queue.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn loads_queued_behind_running_ones_are_read_in_one_batch() {
        let (store, loads) = setup();
        let gate = Arc::new(Notify::new());
        let running = take_every_place(&store, &loads, &gate).await;
        // Two loads of one session, one of a session that does not exist.
        let queued: Vec<_> = [1, 2, 2, 7, 3].map(|byte| queued_load(&store, &loads, byte)).into();
        until_waiting(&loads, 5).await;

        gate.notify_one();
        let mut answers = Vec::new();
        for load in queued {
            answers.push(load.await.unwrap().unwrap());
        }
        let expected =
            ["\"1\"", "\"2\"", "\"2\"", "", "\"3\""].map(|marker| (!marker.is_empty()).then(|| marker.to_owned()));
        assert_eq!(answers, expected);
        assert_eq!(
            *store.batches.lock(),
            vec![vec![key(1), key(2), key(3), key(7)]],
            "the queued loads were not read in one batch of their distinct keys"
        );
        gate.notify_one();
        for load in running {
            load.await.unwrap();
        }
        assert_eq!(loads.queue.lock().in_flight, 0, "a finished load kept its place");
    }

    #[tokio::test]
    async fn queued_loads_are_answered_when_the_running_ones_are_cancelled() {
        let (store, loads) = setup();
        let gate = Arc::new(Notify::new());
        let running = take_every_place(&store, &loads, &gate).await;
        let queued = queued_load(&store, &loads, 3);
        until_waiting(&loads, 1).await;

        for load in running {
            load.abort();
            assert!(load.await.unwrap_err().is_cancelled());
        }
        assert_eq!(queued.await.unwrap().unwrap().as_deref(), Some("\"3\""));
        assert_eq!(loads.queue.lock().in_flight, 0);
    }

    /// Takes both places with loads held until `gate` opens, queues three more, opens the gate
    /// and returns the queued loads' answers.
    async fn queue_behind_held_loads<S: LoadMany>(
        store: S,
        loads: &Arc<BatchedLoads>,
    ) -> Vec<Result<Option<Record>, StoreError>> {
        let gate = Arc::new(Notify::new());
        let running = take_every_place(&store, loads, &gate).await;
        let queued: Vec<_> = (0..3)
            .map(|byte| {
                let (store, loads) = (store.clone(), Arc::clone(loads));
                tokio::spawn(async move { loads.load(&store, &key(byte), made_while_queued).await })
            })
            .collect();
        until_waiting(loads, 3).await;
        gate.notify_waiters();
        let mut answers = Vec::new();
        for load in queued {
            answers.push(load.await.unwrap());
        }
        for load in running {
            load.await.unwrap();
        }
        answers
    }

    #[tokio::test]
    async fn a_batch_reader_that_panics_fails_its_loads_and_gives_its_place_back() {
        #[derive(Clone)]
        struct Panicking;
        impl LoadMany for Panicking {
            async fn load_many(&self, _: Vec<StoreKey>) -> Result<Found, StoreError> {
                panic!("a bug in the store")
            }
        }
        let loads = Arc::new(BatchedLoads::default());
        for answer in queue_behind_held_loads(Panicking, &loads).await {
            assert!(matches!(answer, Err(StoreError::Unavailable(_))), "{answer:?}");
        }
        while loads.queue.lock().in_flight > 0 {
            tokio::task::yield_now().await;
        }
        // The store still loads afterwards.
        let loaded = loads
            .load(&Panicking, &key(1), || async { Ok(Some(record("after"))) })
            .await;
        assert!(loaded.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_read_that_hangs_fails_its_loads_after_the_read_timeout() {
        #[derive(Clone)]
        struct Hanging;
        impl LoadMany for Hanging {
            async fn load_many(&self, _: Vec<StoreKey>) -> Result<Found, StoreError> {
                std::future::pending().await
            }
        }
        let loads = Arc::new(BatchedLoads::default());
        let started = tokio::time::Instant::now();
        for answer in queue_behind_held_loads(Hanging, &loads).await {
            let error = answer.unwrap_err();
            assert!(error.to_string().contains("took longer than"), "{error}");
        }
        assert!(started.elapsed() >= BatchedLoads::READ_TIMEOUT);
        assert_eq!(loads.queue.lock().in_flight, 0, "the hung reader kept its place");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_loads() {
        #[derive(Clone)]
        struct Down;
        impl LoadMany for Down {
            async fn load_many(&self, _: Vec<StoreKey>) -> Result<Found, StoreError> {
                Err(StoreError::unavailable("connection refused"))
            }
        }
        let loads = Arc::new(BatchedLoads::default());
        for answer in queue_behind_held_loads(Down, &loads).await {
            let error = answer.unwrap_err();
            assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
            assert!(error.to_string().contains("connection refused"), "{error}");
        }
    }
}
