//! The writer: the one thread that writes messages to SQLite, committing them in groups.
//!
//! A worker validates a webhook message, then hands it to the writer together with the still
//! unanswered tiny_http request, and goes on to its next request. The writer takes everything that
//! is waiting (up to `HOOKBOX_MAX_BATCH`), inserts it in one `IMMEDIATE` transaction and commits
//! once — one fsync under `synchronous=FULL` — and only then answers each request: 200 for created
//! or duplicate, 503 if the commit failed. One fsync covers a whole group, so throughput no longer
//! stops at the disk's fsync rate, and still no 200 is written before the commit holding its row.
//!
//! Workers keep their own connections for reads; SQLite allows one writer at a time anyway, so a
//! single writing thread loses nothing and never waits on its own lock.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::db::Db;
use crate::error::Error;
use crate::handlers::{WebhookNote, webhook};
use crate::message::Message;
use crate::timestamp;
use crate::worker::{self, Outcome, Shared};

/// A validated message waiting to be stored, with the request to answer once it is.
pub struct Ticket {
    pub message: Message,
    pub request: tiny_http::Request,
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub received: Instant,
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

/// Starts the writer on its own connection. It stops once every `Writer` is dropped and the
/// queue is drained.
pub fn spawn(shared: Arc<Shared>, db: Db) -> (Writer, JoinHandle<()>) {
    let (sender, receiver) = crossbeam_channel::bounded(shared.config.write_queue_capacity);
    let handle = thread::Builder::new()
        .name("writer".to_owned())
        .spawn(move || run(&shared, db, &receiver))
        .expect("spawning the writer thread");
    (Writer { queue: sender }, handle)
}

fn run(shared: &Shared, mut db: Db, queue: &Receiver<Ticket>) {
    let max_batch = shared.config.max_batch;
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(max_batch.min(queue.len() + 1));
        batch.push(first);
        batch.extend(queue.try_iter().take(max_batch - 1));
        shared.metrics.write_queue_depth.sub(batch.len() as i64);
        // A panic drops the batch's requests unanswered, which tiny_http turns into 500s:
        // never a 200, and the writer lives on for the next batch.
        if panic::catch_unwind(AssertUnwindSafe(|| commit(shared, &mut db, batch))).is_err() {
            log::error!("the writer panicked while committing a batch; its requests got 500");
        }
    }
}

/// Stores one batch in one transaction, then answers every request in it.
fn commit(shared: &Shared, db: &mut Db, batch: Vec<Ticket>) {
    let started = Instant::now();
    let received_at = timestamp::now_utc();
    let stored = db.insert_batch(batch.iter().map(|ticket| &ticket.message), &received_at);
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
    for (ticket, result) in batch.into_iter().zip(results) {
        let (result, response) = webhook::answer(result);
        let note = WebhookNote {
            message_id: Some(ticket.message.message_id),
            result,
        };
        let outcome = Outcome {
            route: "/webhook",
            method: &ticket.method,
            path: &ticket.path,
            request_id: &ticket.request_id,
            received: ticket.received,
            webhook: Some(&note),
        };
        worker::finish(shared, ticket.request, outcome, response);
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
