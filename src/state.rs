//! What every thread of one server shares: the settings, the metrics, and what the writer last
//! learned about the store. Its own module so the worker and the writer can both use it without
//! naming each other.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::feed::Notifier;
use crate::metrics::Metrics;

pub struct Shared {
    pub config: Config,
    pub metrics: Metrics,
    pub storage: StorageHealth,
    /// Bytes of answer bodies handed to connection threads and not yet written to their clients.
    /// A client that does not read holds its answer until the write deadline; reads are refused
    /// while this is over `HOOKBOX_MAX_HELD_ANSWERS_MIB`, so such clients cannot make us hold
    /// without bound the pages they asked for (one page of `/messages` is up to ~2.5 MiB).
    /// Honest clients take their answers at once, so they never get near it.
    pub held_answer_bytes: AtomicUsize,
    /// Moves after every commit that stored a message; long-polling feeds wait on it.
    pub feed: Arc<Notifier>,
}

/// How long a failed commit keeps `/health/ready` at 503 when no later commit succeeds. Senders
/// retry after `Retry-After`, and the first commit that succeeds clears it at once; the expiry
/// only matters when nothing is retrying (a load balancer that stops sending to an unready
/// instance would otherwise never see it recover).
const FAILURE_SHOWN_FOR: Duration = Duration::from_secs(30);

/// What the writer last learned about the store, for `/health/ready`.
#[derive(Default)]
pub struct StorageHealth {
    last_failure: Mutex<Option<(Instant, String)>>,
    /// Why the writer's own connection could not commit when it last checked it while idle
    /// (PostgreSQL: `Store::maintain`); cleared by its next good check or commit.
    writer_connection: Mutex<Option<String>>,
    /// Set once the writer's store can no longer keep its promises; never cleared (a restart
    /// is what heals it).
    broken: OnceLock<String>,
}

impl StorageHealth {
    pub fn record_success(&self) {
        *self.lock() = None;
        *lock(&self.writer_connection) = None;
    }

    /// What the writer's idle check of its own connection found (`None`: it answers).
    pub fn record_writer_connection(&self, problem: Option<String>) {
        *lock(&self.writer_connection) = problem;
    }

    pub fn record_failure(&self, why: String) {
        *self.lock() = Some((Instant::now(), why));
    }

    /// The store refuses writes until hookbox restarts (see `Store::broken`).
    pub fn record_broken(&self, why: String) {
        let _ = self.broken.set(why);
    }

    /// Why the store is broken, else the last commit failure if no commit has succeeded since
    /// and it is recent, else what the writer's last check of its connection found.
    pub fn problem(&self) -> Option<String> {
        if let Some(why) = self.broken.get() {
            return Some(why.clone());
        }
        self.lock()
            .as_ref()
            .filter(|(when, _)| when.elapsed() < FAILURE_SHOWN_FOR)
            .map(|(_, why)| format!("the last write failed: {why}"))
            .or_else(|| lock(&self.writer_connection).clone())
    }

    fn lock(&self) -> MutexGuard<'_, Option<(Instant, String)>> {
        lock(&self.last_failure)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the value is still a plain value.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::StorageHealth;

    #[test]
    fn a_broken_store_stays_unready_whatever_succeeds_after() {
        let health = StorageHealth::default();
        health.record_failure("disk full".to_owned());
        health.record_broken("synchronous could not be restored".to_owned());
        health.record_success();
        assert_eq!(
            health.problem().as_deref(),
            Some("synchronous could not be restored")
        );
    }

    #[test]
    fn the_writers_connection_check_shows_until_it_or_a_commit_succeeds() {
        let health = StorageHealth::default();
        health.record_writer_connection(Some("the writer's connection: gone".to_owned()));
        assert_eq!(
            health.problem().as_deref(),
            Some("the writer's connection: gone")
        );
        // A failed commit says more, and is shown first.
        health.record_failure("timeout".to_owned());
        assert_eq!(
            health.problem().as_deref(),
            Some("the last write failed: timeout")
        );
        health.record_success();
        assert_eq!(health.problem(), None);
        health.record_writer_connection(Some("gone again".to_owned()));
        health.record_writer_connection(None);
        assert_eq!(health.problem(), None);
    }
}
