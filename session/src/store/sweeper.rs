use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::SessionStore;

/// Removes expired sessions from `store` every `period`, in a background tokio task, until the
/// returned [`Sweeper`] is dropped or [stopped](Sweeper::stop).
///
/// Stores that expire records themselves (Redis) need no sweeper; for the others (SQLite,
/// files, PostgreSQL, memory) expired records are never served, but they take space until swept.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use typed_sessions::store::spawn_sweeper;
/// use typed_sessions::{MemoryStore, SessionLayer};
///
/// let store = Arc::new(MemoryStore::new());
/// let layer = SessionLayer::new(Arc::clone(&store));
/// let sweeper = spawn_sweeper(store, Duration::from_secs(5 * 60));
/// // ... serve the app; keep `sweeper` alive as long as it should run.
/// sweeper.stop().await;
/// # }
/// ```
///
/// # Panics
///
/// If called outside a tokio runtime, or with a zero `period`.
pub fn spawn_sweeper<S: SessionStore>(store: Arc<S>, period: Duration) -> Sweeper {
    assert!(!period.is_zero(), "spawn_sweeper: the period must not be zero");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = ticks.tick() => sweep_once(&*store).await,
            }
        }
    });
    Sweeper {
        stop: Some(stop),
        task: Some(task),
    }
}

async fn sweep_once<S: SessionStore + ?Sized>(store: &S) {
    match store.delete_expired().await {
        Ok(0) => tracing::debug!("session sweep: no expired sessions"),
        Ok(removed) => tracing::info!(removed, "session sweep: removed expired sessions"),
        Err(error) => tracing::warn!(%error, "session sweep failed; retrying next period"),
    }
}

/// The background task [`spawn_sweeper`] started. Dropping it stops the task: keep it (in a
/// variable that lives as long as the app serves) — `spawn_sweeper(store, period);` as a
/// statement would stop sweeping at once.
#[derive(Debug)]
#[must_use = "dropping the Sweeper stops it: keep it as long as the store should be swept"]
pub struct Sweeper {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Stops the task and waits until a sweep in progress has finished.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            // A panic in the store's `delete_expired` ended the task already; nothing to stop.
            let _ = task.await;
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which ends after the sweep it may be in.
        drop(self.stop.take());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::record::{Changes, Record};
    use crate::store::{Applied, Created, StoreError, StoreKey};

    #[derive(Default)]
    struct Counting(AtomicU64);

    impl SessionStore for Counting {
        async fn load(&self, _: &StoreKey) -> Result<Option<Record>, StoreError> {
            Ok(None)
        }
        async fn create(&self, _: &StoreKey, _: &Record) -> Result<Created, StoreError> {
            Ok(Created::Created)
        }
        async fn apply(&self, _: &StoreKey, _: &Changes) -> Result<Applied, StoreError> {
            Ok(Applied::Missing)
        }
        async fn delete(&self, _: &StoreKey) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete_expired(&self) -> Result<u64, StoreError> {
            Ok(self.0.fetch_add(1, Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_every_period_and_stops_when_dropped() {
        let store = Arc::new(Counting::default());
        let sweeper = spawn_sweeper(Arc::clone(&store), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(60 * 3 + 1)).await;
        // Ticks at 0, 60, 120 and 180 s.
        assert_eq!(store.0.load(Ordering::SeqCst), 4);
        drop(sweeper);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            store.0.load(Ordering::SeqCst),
            4,
            "the sweeper kept running after it was dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_waits_for_the_task() {
        let store = Arc::new(Counting::default());
        let sweeper = spawn_sweeper(Arc::clone(&store), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sweeper.stop().await;
        let after_stop = store.0.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(store.0.load(Ordering::SeqCst), after_stop);
    }
}
