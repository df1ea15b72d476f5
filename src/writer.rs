//! The writer: the one thread that writes messages to the store, committing them in groups.
//!
//! A connection thread validates a webhook's messages, then hands them to the writer together
//! with an opaque token (what is needed to answer it later), and waits. The writer takes
//! everything that is waiting (up to `HOOKBOX_MAX_BATCH`), stores it in one transaction with one
//! durable commit (`Store::insert_batch`), and only then hands each token back with its outcome
//! (`Completion`) to `Carried::complete`, which passes it on to be answered: 200
//! for created or duplicate, 503 if the commit failed. One durable commit covers a whole group,
//! so throughput does not stop at the disk's sync rate, and still no 200 is written before the
//! commit holding its row. Responses and log lines are made elsewhere, so the writer's thread
//! does nothing but storage.
//!
//! The queue is a `Mutex`-guarded deque, not a channel: the writer parks on a futex when it is
//! empty and is woken once, by the first ticket that finds it asleep (tickets that arrive while
//! it commits wake nobody; it takes them all when the commit is done). A channel's receive
//! spins and yields before it parks, which costs context switches at every message.
//!
//! Workers keep their own connections for reads. One writing thread loses nothing (SQLite allows
//! one writer at a time anyway) and never waits on its own lock.
//!
//! Between commits, and when no message has come for the pause the store asked for, the writer
//! calls `Store::maintain` once: retention, then the store's own upkeep (what that is, and how
//! much of it to do when, is the store's business). It hands over a probe of its queue, so upkeep
//! stops as soon as a message waits.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::message::Message;
use crate::state::Shared;
use crate::store::{Inserted, Moment, Retention, Store, StoreError, Upkeep};
use crate::timestamp;

/// Validated messages waiting to be stored, with whatever their sender needs to answer them
/// (`token`): the writer only carries it through. A ticket's messages (one from `/webhook`,
/// several from one WhatsApp POST) go into the same commit, so they get one answer.
pub struct Ticket<T> {
    pub messages: Vec<Message>,
    pub token: T,
}

/// A ticket whose commit has finished (or failed): ready to be answered by whoever holds it.
pub struct Completion<T> {
    pub token: T,
    /// The ticket's message ids, in its order.
    pub message_ids: Vec<String>,
    /// Each message's outcome in the same order, or the failure of the commit holding them all.
    pub stored: Result<Vec<Inserted>, StoreError>,
}

struct Waiting<T> {
    tickets: VecDeque<Ticket<T>>,
    /// The writer is parked (or about to be) on `arrived`; the first submitter clears this and
    /// wakes it, so one wake-up per sleep, and none while it commits.
    asleep: bool,
    /// Set by `close`: the writer drains the queue and stops; nothing more is taken.
    closed: bool,
}

struct Queue<T> {
    waiting: Mutex<Waiting<T>>,
    arrived: Condvar,
    capacity: usize,
}

impl<T> Queue<T> {
    /// A poisoned lock means a panic elsewhere while holding it; every change under it is a push,
    /// a drain or a flag, so the queue is whole.
    fn lock(&self) -> MutexGuard<'_, Waiting<T>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The connection threads' end of the write queue.
pub struct Writer<T> {
    queue: Arc<Queue<T>>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Writer<T> {
        Writer {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<T: Send + 'static> Writer<T> {
    /// Queues `ticket` for the next commit, or hands it back when the write queue is full or the
    /// writer is closing, so the caller can shed it with a 503.
    pub fn submit(&self, ticket: Ticket<T>, shared: &Shared) -> Result<(), Box<Ticket<T>>> {
        let mut waiting = self.queue.lock();
        if waiting.closed || waiting.tickets.len() >= self.queue.capacity {
            return Err(Box::new(ticket));
        }
        waiting.tickets.push_back(ticket);
        let wake = std::mem::take(&mut waiting.asleep);
        drop(waiting);
        shared.metrics.write_queue_depth.inc();
        if wake {
            self.queue.arrived.notify_one();
        }
        Ok(())
    }

    /// Tells the writer to commit what is queued and stop (the end of a shutdown, once no
    /// connection is left to submit).
    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.queue.arrived.notify_one();
    }
}

/// What the writer does with its tickets' tokens, besides carrying them.
pub trait Carried: Send + 'static {
    /// Whether anyone still waits for this ticket's outcome. One nobody waits for any more (its
    /// sender was answered 503 at the commit timeout) is not stored when its commit has not
    /// begun: its sender was told it was not.
    fn awaited(&self) -> bool;
    /// Hands the outcome on, on the writer's thread: it must never block.
    fn complete(completion: Completion<Self>)
    where
        Self: Sized;
    /// The log line of a ticket dropped unstored because nobody waited for it.
    fn dropped(completion: Completion<Self>)
    where
        Self: Sized;
}

/// Starts the writer on its own connection. Each committed (or failed) ticket is handed to
/// `T::complete`. The writer stops once `Writer::close` was called and the queue is drained.
pub fn spawn<T: Carried>(shared: Arc<Shared>, store: Store) -> (Writer<T>, JoinHandle<()>) {
    let queue = Arc::new(Queue {
        waiting: Mutex::new(Waiting {
            tickets: VecDeque::with_capacity(shared.config.max_batch),
            asleep: false,
            closed: false,
        }),
        arrived: Condvar::new(),
        capacity: shared.config.write_queue_capacity,
    });
    let writer_queue = Arc::clone(&queue);
    let handle = thread::Builder::new()
        .name("writer".to_owned())
        .spawn(move || run(&shared, store, &writer_queue))
        .expect("spawning the writer thread");
    (Writer { queue }, handle)
}

/// What the writer found when it looked at its queue.
enum Next<T> {
    Batch(Vec<Ticket<T>>),
    /// Nothing came within the pause: time for upkeep.
    Idle,
    /// `close` was called and the queue is empty.
    Stop,
}

/// Takes what is waiting (up to `max_batch`), parking until something comes or `pause` passes.
fn next<T>(queue: &Queue<T>, max_batch: usize, pause: Duration) -> Next<T> {
    // The store asks for at most a minute; a far-off instant that cannot be represented is "never".
    let deadline = Instant::now().checked_add(pause);
    let mut waiting = queue.lock();
    loop {
        if !waiting.tickets.is_empty() {
            waiting.asleep = false;
            let take = waiting.tickets.len().min(max_batch);
            return Next::Batch(waiting.tickets.drain(..take).collect());
        }
        if waiting.closed {
            return Next::Stop;
        }
        let left = deadline.map_or(pause, |at| at.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            waiting.asleep = false;
            return Next::Idle;
        }
        waiting.asleep = true;
        waiting = queue
            .arrived
            .wait_timeout(waiting, left)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

fn run<T: Carried>(shared: &Shared, mut store: Store, queue: &Queue<T>) {
    let max_batch = shared.config.max_batch;
    // Upkeep runs at startup too: a store may have aged while hookbox was stopped.
    let mut pause = maintain(shared, &mut store, queue, Moment::Idle);
    loop {
        let batch = match next(queue, max_batch, pause) {
            Next::Batch(batch) => batch,
            Next::Idle => {
                pause = maintain(shared, &mut store, queue, Moment::Idle);
                continue;
            }
            Next::Stop => break,
        };
        shared.metrics.write_queue_depth.sub(batch.len() as i64);
        let (batch, unwanted): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|ticket| ticket.token.awaited());
        for ticket in unwanted {
            T::dropped(Completion {
                token: ticket.token,
                message_ids: ticket.messages.into_iter().map(|m| m.message_id).collect(),
                stored: Ok(Vec::new()),
            });
        }
        if batch.is_empty() {
            continue;
        }
        // A panic drops the batch's tokens unanswered, which their connections answer with a
        // 500: never a 200, and the writer lives on for the next batch.
        let committed = panic::catch_unwind(AssertUnwindSafe(|| {
            commit(shared, &mut store, batch);
        }));
        if committed.is_err() {
            log::error!("the writer panicked while committing a batch; its requests got 500");
        }
        pause = maintain(shared, &mut store, queue, Moment::AfterCommit);
    }
    store.close();
}

/// One `Store::maintain` call; returns how long to wait for a message before calling again.
fn maintain<T>(shared: &Shared, store: &mut Store, queue: &Queue<T>, moment: Moment) -> Duration {
    let work_waiting = || !queue.lock().tickets.is_empty();
    let upkeep = Upkeep {
        moment,
        retention: Retention {
            keep_messages: shared.config.retain_messages,
            keep_days: shared.config.retain_days,
        },
        work_waiting: &work_waiting,
    };
    let maintained = store.maintain(&upkeep);
    shared.metrics.purged_messages.inc_by(maintained.purged);
    if let Some(why) = store.broken() {
        shared.storage.record_broken(why);
    }
    if let Some(probe) = maintained.connection {
        shared.storage.record_writer_connection(probe.err());
    }
    maintained.call_again_in
}

/// Stores one batch in one transaction, then hands every ticket in it back for answering.
fn commit<T: Carried>(shared: &Shared, store: &mut Store, batch: Vec<Ticket<T>>) {
    let started = Instant::now();
    let received_at = timestamp::now_utc();
    let mut messages = Vec::with_capacity(batch.len());
    let mut tickets = Vec::with_capacity(batch.len());
    for ticket in batch {
        tickets.push((ticket.token, ticket.messages.len()));
        messages.extend(ticket.messages);
    }
    let stored = store.insert_batch(&messages, &received_at);
    shared
        .metrics
        .observe_commit(messages.len(), started.elapsed());
    // Each ticket's share of the batch, in order.
    let mut ranges = Vec::with_capacity(tickets.len());
    let mut start = 0;
    for (_, count) in &tickets {
        ranges.push(start..start + count);
        start += count;
    }
    let results: Vec<Result<Vec<Inserted>, StoreError>> = match stored {
        Ok(inserted) => {
            shared.storage.record_success();
            // After the commit, so a feed that missed these rows finds the generation moved.
            if inserted.contains(&Inserted::Created) {
                shared.feed.bump();
            }
            let mut each = inserted.into_iter();
            ranges
                .iter()
                .map(|range| Ok(each.by_ref().take(range.len()).collect()))
                .collect()
        }
        // One row the store cannot hold fails the whole statement: store each ticket's share
        // on its own, so only that row's sender gets the error, and a ticket of several
        // messages (one WhatsApp POST) is still stored whole or not at all.
        Err(StoreError::Refused(_)) if tickets.len() > 1 => ranges
            .iter()
            .map(|range| store.insert_batch(&messages[range.clone()], &received_at))
            .collect(),
        Err(error) => {
            if matches!(error, StoreError::Refused(_)) {
                log::warn!("a message the store cannot hold was refused: {error}");
            } else {
                log::error!(batch = messages.len(); "commit failed, answering the batch with an error: {error}");
                shared.storage.record_failure(error.to_string());
            }
            ranges.iter().map(|_| Err(error.clone())).collect()
        }
    };
    let mut ids = messages.into_iter().map(|message| message.message_id);
    for ((token, count), stored) in tickets.into_iter().zip(results) {
        T::complete(Completion {
            token,
            message_ids: ids.by_ref().take(count).collect(),
            stored,
        });
    }
}
