//! The writer: the one thread that writes messages to SQLite, committing them in groups.
//!
//! A worker validates a webhook message, then hands it to the writer together with the still
//! unanswered tiny_http request, and goes on to its next request. The writer takes everything that
//! is waiting (up to `HOOKBOX_MAX_BATCH`), inserts it in one `IMMEDIATE` transaction and commits
//! once — one fsync under `synchronous=FULL` — and only then hands each request back to the
//! workers with its outcome (`Completion`), who answer it: 200 for created or duplicate, 503 if the
//! commit failed. One fsync covers a whole group, so throughput no longer stops at the disk's
//! fsync rate, and still no 200 is written before the commit holding its row. Writing responses
//! and log lines stays with the workers, so the writer's thread does nothing but SQL.
//!
//! Workers keep their own connections for reads; SQLite allows one writer at a time anyway, so a
//! single writing thread loses nothing and never waits on its own lock.
//!
//! The writer also checkpoints (`Store::after_commit`): once the WAL holds ~1000 frames, after answering
//! a batch, it copies the WAL into the database file (`PASSIVE`). Done by the only writer, between
//! its own commits, the checkpoint completes and the WAL starts over, so it stays a few MiB.
//! (A checkpoint on another thread races the writer and never completes under steady load: the
//! WAL grew by ~100 MB/s in the benchmark. SQLite's automatic checkpoint would complete, but
//! inside a commit, delaying that batch's answers.) At shutdown it empties the WAL (`TRUNCATE`).

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::error::Error;
use crate::message::Message;
use crate::store::{Inserted, Retention, Store};
use crate::timestamp;
use crate::worker::Shared;

/// A validated message waiting to be stored, with the request to answer once it is.
pub struct Ticket {
    pub message: Message,
    pub request: tiny_http::Request,
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub received: Instant,
}

/// A ticket whose commit has finished (or failed): ready to be answered by a worker.
pub struct Completion {
    pub ticket: Ticket,
    pub stored: Result<Inserted, Error>,
}

/// The workers' end of the write queue.
#[derive(Clone)]
pub struct Writer {
    queue: Sender<Ticket>,
}

impl Writer {
    /// Queues `ticket` for the next commit, or hands it back when the write queue is full (or
    /// the writer has stopped), so the caller can shed it with a 503.
    pub fn submit(&self, ticket: Ticket, shared: &Shared) -> Result<(), Box<Ticket>> {
        shared.metrics.write_queue_depth.inc();
        self.queue.try_send(ticket).map_err(|error| {
            shared.metrics.write_queue_depth.dec();
            match error {
                TrySendError::Full(ticket) | TrySendError::Disconnected(ticket) => Box::new(ticket),
            }
        })
    }
}

/// Starts the writer on its own connection. Finished tickets come back on the returned
/// receiver. The writer stops once every `Writer` is dropped and the queue is drained; the
/// completion channel then disconnects, after the last completion.
pub fn spawn(shared: Arc<Shared>, store: Store) -> (Writer, Receiver<Completion>, JoinHandle<()>) {
    let (sender, receiver) = crossbeam_channel::bounded(shared.config.write_queue_capacity);
    // Unbounded, but never long: at most the write queue plus one batch of tickets exist.
    let (completed, completions) = crossbeam_channel::unbounded();
    let handle = thread::Builder::new()
        .name("writer".to_owned())
        .spawn(move || run(&shared, store, &receiver, &completed))
        .expect("spawning the writer thread");
    (Writer { queue: sender }, completions, handle)
}

fn run(
    shared: &Shared,
    mut store: Store,
    queue: &Receiver<Ticket>,
    completed: &Sender<Completion>,
) {
    let max_batch = shared.config.max_batch;
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(max_batch.min(queue.len() + 1));
        batch.push(first);
        batch.extend(queue.try_iter().take(max_batch - 1));
        shared.metrics.write_queue_depth.sub(batch.len() as i64);
        // A panic drops the batch's requests unanswered, which tiny_http turns into 500s:
        // never a 200, and the writer lives on for the next batch.
        let committed = panic::catch_unwind(AssertUnwindSafe(|| {
            commit(shared, &mut store, batch, completed);
        }));
        if committed.is_err() {
            log::error!("the writer panicked while committing a batch; its requests got 500");
        }
        store.after_commit();
        purge_some(shared, &mut store, queue);
    }
    store.close();
}

/// Rows deleted per purge transaction: about 3.5 ms each on a 1M-message store (its dirty pages
/// fit the page cache; 256 did not, and took 26 ms), so a message arriving during a purge waits
/// at most that long.
const PURGE_BATCH: usize = 64;

/// Retention (`HOOKBOX_RETAIN_*`), between commits: deletes what must go in small batches,
/// stopping as soon as a message waits. At least one batch runs after every commit, so under
/// steady load the purge still advances; under a flood of full commits it lags and catches up in
/// the next lull.
fn purge_some(shared: &Shared, store: &mut Store, queue: &Receiver<Ticket>) {
    let retention = Retention {
        keep_messages: shared.config.retain_messages,
        keep_days: shared.config.retain_days,
    };
    if retention.is_unlimited() {
        return;
    }
    loop {
        match store.purge(&retention, PURGE_BATCH) {
            Ok(0) => break,
            Ok(purged) => shared.metrics.purged_messages.inc_by(purged as u64),
            Err(error) => {
                log::warn!("retention purge failed (retried after the next commit): {error}");
                break;
            }
        }
        store.after_commit();
        if !queue.is_empty() {
            break;
        }
    }
}

/// Stores one batch in one transaction, then hands every ticket in it back for answering.
fn commit(shared: &Shared, store: &mut Store, batch: Vec<Ticket>, completed: &Sender<Completion>) {
    let started = Instant::now();
    let received_at = timestamp::now_utc();
    // Copies, because the tickets keep their messages for the answers; a few small strings per
    // message, next to an fsync.
    let messages: Vec<Message> = batch.iter().map(|ticket| ticket.message.clone()).collect();
    let stored = store.insert_batch(&messages, &received_at);
    shared
        .metrics
        .observe_commit(batch.len(), started.elapsed());
    let results: Vec<Result<_, Error>> = match stored {
        Ok(inserted) => {
            shared.storage.record_success();
            inserted.into_iter().map(Ok).collect()
        }
        Err(error) => {
            let error = Error::from(error);
            log::error!(batch = batch.len(); "commit failed, answering the batch with an error: {error}");
            shared.storage.record_failure(&error);
            batch.iter().map(|_| Err(error.clone())).collect()
        }
    };
    for (ticket, stored) in batch.into_iter().zip(results) {
        // Workers outlive the writer (they wait for its last completion), so this cannot fail
        // while a worker is left to answer; if it ever did, dropping the request sends a 500.
        let _ = completed.send(Completion { ticket, stored });
    }
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
}

impl StorageHealth {
    fn record_success(&self) {
        *self.lock() = None;
    }

    fn record_failure(&self, error: &Error) {
        *self.lock() = Some((Instant::now(), error.to_string()));
    }

    /// The last commit failure, if no commit has succeeded since and it is recent.
    pub fn problem(&self) -> Option<String> {
        self.lock()
            .as_ref()
            .filter(|(when, _)| when.elapsed() < FAILURE_SHOWN_FOR)
            .map(|(_, why)| format!("the last write failed: {why}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        // A poisoned lock only means a panic elsewhere; the value is still a plain Option.
        self.last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
