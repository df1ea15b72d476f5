//! The writer: the one thread that writes messages to SQLite, committing them in groups.
//!
//! A worker validates a webhook message, then hands it to the writer together with an opaque
//! token (what is needed to answer it later), and goes on to its next request. The writer takes
//! everything that is waiting (up to `HOOKBOX_MAX_BATCH`), inserts it in one `IMMEDIATE`
//! transaction and commits once — one fsync under `synchronous=FULL` — and only then hands each
//! token back with its outcome (`Completion`) to the `complete` function it was given, which
//! passes it on to be answered: 200 for created or duplicate, 503 if the commit failed. One fsync covers a whole
//! group, so throughput no longer stops at the disk's fsync rate, and still no 200 is written
//! before the commit holding its row. Responses and log lines are made elsewhere, so the
//! writer's thread does nothing but SQL.
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
//!
//! Between commits it also adds new rows to SQLite's text index (`Store::index_pending`), which
//! the insert no longer does: in chunks of `INDEX_CHUNK` rows once the queue has been quiet for
//! `INDEX_WHEN_QUIET_FOR`, and after a commit whenever the rows waiting (the tail, which `q`
//! reads row by row) exceed `TAIL_BOUND`. Also at startup, and at shutdown.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::message::Message;
use crate::state::Shared;
use crate::store::{Inserted, Retention, Store, StoreError};
use crate::timestamp;

/// A validated message waiting to be stored, with whatever its sender needs to answer it
/// (`token`): the writer only carries it through.
pub struct Ticket<T> {
    pub message: Message,
    pub token: T,
}

/// A ticket whose commit has finished (or failed): ready to be answered by whoever holds it.
pub struct Completion<T> {
    pub token: T,
    pub message_id: String,
    pub stored: Result<Inserted, StoreError>,
}

/// The workers' end of the write queue.
pub struct Writer<T> {
    queue: Sender<Ticket<T>>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Writer<T> {
        Writer {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static> Writer<T> {
    /// Queues `ticket` for the next commit, or hands it back when the write queue is full (or
    /// the writer has stopped), so the caller can shed it with a 503.
    pub fn submit(&self, ticket: Ticket<T>, shared: &Shared) -> Result<(), Box<Ticket<T>>> {
        shared.metrics.write_queue_depth.inc();
        self.queue.try_send(ticket).map_err(|error| {
            shared.metrics.write_queue_depth.dec();
            match error {
                TrySendError::Full(ticket) | TrySendError::Disconnected(ticket) => Box::new(ticket),
            }
        })
    }
}

/// Starts the writer on its own connection. Each committed (or failed) ticket is handed to
/// `complete`, on the writer's thread, so it must only pass the completion on (it never blocks).
/// The writer stops once every `Writer` is dropped and the queue is drained.
pub fn spawn<T: Send + 'static>(
    shared: Arc<Shared>,
    store: Store,
    complete: impl Fn(Completion<T>) + Send + 'static,
) -> (Writer<T>, JoinHandle<()>) {
    let (sender, receiver) = crossbeam_channel::bounded(shared.config.write_queue_capacity);
    let handle = thread::Builder::new()
        .name("writer".to_owned())
        .spawn(move || run(&shared, store, &receiver, &complete))
        .expect("spawning the writer thread");
    (Writer { queue: sender }, handle)
}

fn run<T>(
    shared: &Shared,
    mut store: Store,
    queue: &Receiver<Ticket<T>>,
    complete: &dyn Fn(Completion<T>),
) {
    let max_batch = shared.config.max_batch;
    // Retention runs at startup too (a store may have aged while hookbox was stopped), and so
    // does indexing (a tail left by the last run).
    purge_some(shared, &mut store, queue);
    let mut tail_waits = index_some(shared, &mut store, queue, Until::Empty);
    loop {
        // Rows wait for the text index: as soon as no message comes for a moment, take them.
        let wait = if tail_waits {
            INDEX_WHEN_QUIET_FOR
        } else {
            IDLE_PURGE_EVERY
        };
        let first = match queue.recv_timeout(wait) {
            Ok(first) => first,
            // No message for a while: what `HOOKBOX_RETAIN_DAYS` expired meanwhile still goes.
            Err(RecvTimeoutError::Timeout) => {
                purge_some(shared, &mut store, queue);
                tail_waits = index_some(shared, &mut store, queue, Until::Empty);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = Vec::with_capacity(max_batch.min(queue.len() + 1));
        batch.push(first);
        batch.extend(queue.try_iter().take(max_batch - 1));
        shared.metrics.write_queue_depth.sub(batch.len() as i64);
        // A panic drops the batch's tokens unanswered, which their connections answer with a
        // 500: never a 200, and the writer lives on for the next batch.
        let committed = panic::catch_unwind(AssertUnwindSafe(|| {
            commit(shared, &mut store, batch, complete);
        }));
        if committed.is_err() {
            log::error!("the writer panicked while committing a batch; its requests got 500");
        }
        store.after_commit();
        purge_some(shared, &mut store, queue);
        tail_waits = index_some(shared, &mut store, queue, Until::Bound);
    }
    // The next start begins with an empty tail (it is at most about `TAIL_BOUND` rows: a few
    // chunks).
    index_some(shared, &mut store, queue, Until::Empty);
    store.close();
}

/// How often an idle writer applies retention.
const IDLE_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Rows deleted per purge transaction: about 3.5 ms each on a 1M-message store (its dirty pages
/// fit the page cache; 256 did not, and took 26 ms), so a message arriving during a purge waits
/// at most that long.
const PURGE_BATCH: usize = 64;

/// Retention (`HOOKBOX_RETAIN_*`), between commits: deletes what must go in small batches,
/// stopping as soon as a message waits. At least one batch runs after every commit, so under
/// steady load the purge still advances; under a flood of full commits it lags and catches up in
/// the next lull.
fn purge_some<T>(shared: &Shared, store: &mut Store, queue: &Receiver<Ticket<T>>) {
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

/// How long the queue must stay empty before the writer indexes a tail below `TAIL_BOUND`. Not
/// at once after a commit: under load the next messages come within a millisecond, and indexing
/// each commit's few rows as they come would write a small FTS5 segment per commit again, the
/// cost that deferring the index avoids. Waiting lets the rows gather into large chunks while
/// messages keep coming, and costs a quiet writer nothing.
const INDEX_WHEN_QUIET_FOR: Duration = Duration::from_millis(20);

/// Rows the tail may hold while messages keep coming; past it the writer indexes after every
/// commit (`q` verifies every tail row, so this bounds what the tail adds to a search).
const TAIL_BOUND: u64 = 4096;

/// Rows per indexing transaction: 2 ms median, 8 ms at p90 here under full ingest load (1024
/// rows took 3 and 15 ms), so a message arriving meanwhile waits about that long.
const INDEX_CHUNK: usize = 512;

/// At most this many chunks after one commit while messages wait: more than a commit adds (it
/// adds under `BULK_ROWS` rows to the tail; larger batches index their own), so a tail past its
/// bound shrinks under any load, and no message waits more than a few chunks.
const BUSY_CHUNKS: usize = 2;

/// How far `index_some` goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Until the tail is empty, stopping as soon as a message waits.
    Empty,
    /// Only while the tail is past `TAIL_BOUND` (right after a commit).
    Bound,
}

/// Adds the tail to the text index, chunk by chunk, between commits (see `Until`). Returns
/// whether rows still wait for it. A failure is logged and retried after the next commit.
fn index_some<T>(
    shared: &Shared,
    store: &mut Store,
    queue: &Receiver<Ticket<T>>,
    until: Until,
) -> bool {
    if !shared.config.text_index_catch_up {
        return false;
    }
    let mut chunks = 0;
    loop {
        let waiting = match store.unindexed() {
            Ok(waiting) => waiting,
            Err(error) => {
                log::warn!("reading the text index's tail failed: {error}");
                return false;
            }
        };
        if waiting == 0 {
            return false;
        }
        let busy = until == Until::Bound || !queue.is_empty();
        if busy && (waiting <= TAIL_BOUND || chunks >= BUSY_CHUNKS) {
            return true;
        }
        let started = Instant::now();
        match store.index_pending(INDEX_CHUNK) {
            Ok(0) => return false,
            Ok(rows) => {
                log::debug!(rows, seconds = started.elapsed().as_secs_f64(); "text index took new rows");
                chunks += 1;
                store.after_commit();
            }
            Err(error) => {
                log::warn!("indexing new rows failed (retried after the next commit): {error}");
                return false;
            }
        }
    }
}

/// Stores one batch in one transaction, then hands every ticket in it back for answering.
fn commit<T>(
    shared: &Shared,
    store: &mut Store,
    batch: Vec<Ticket<T>>,
    complete: &dyn Fn(Completion<T>),
) {
    let started = Instant::now();
    let received_at = timestamp::now_utc();
    let (messages, tokens): (Vec<Message>, Vec<T>) = batch
        .into_iter()
        .map(|ticket| (ticket.message, ticket.token))
        .unzip();
    let stored = store.insert_batch(&messages, &received_at);
    shared
        .metrics
        .observe_commit(messages.len(), started.elapsed());
    let results: Vec<Result<Inserted, StoreError>> = match stored {
        Ok(inserted) => {
            shared.storage.record_success();
            inserted.into_iter().map(Ok).collect()
        }
        // One row the store cannot hold fails the whole statement: store them one by one, so
        // only that row's sender gets the error.
        Err(StoreError::Refused(_)) if messages.len() > 1 => messages
            .iter()
            .map(|message| {
                store
                    .insert_batch(std::slice::from_ref(message), &received_at)
                    .and_then(|mut inserted| {
                        inserted.pop().ok_or_else(|| {
                            StoreError::Internal("a batch of one answered nothing".to_owned())
                        })
                    })
            })
            .collect(),
        Err(error @ StoreError::Refused(_)) => {
            log::warn!("a message the store cannot hold was refused: {error}");
            vec![Err(error)]
        }
        Err(error) => {
            log::error!(batch = messages.len(); "commit failed, answering the batch with an error: {error}");
            shared.storage.record_failure(error.to_string());
            messages.iter().map(|_| Err(error.clone())).collect()
        }
    };
    for ((message, token), stored) in messages.into_iter().zip(tokens).zip(results) {
        complete(Completion {
            token,
            message_id: message.message_id,
            stored,
        });
    }
}
