//! A worker: takes requests that their connection threads have read whole off the lane queues,
//! runs their handlers, and hands each answer back. It never touches a socket.
//!
//! For every request, in this order and nowhere else: call the handler inside `catch_unwind`,
//! then either hand a valid webhook message to the writer, whose completion goes straight back
//! to the waiting connection thread (which answers it with `complete`), or turn the handler's
//! result into a response; `finish` counts it, writes its one log line and sends the response
//! to the connection thread, which writes it to the client.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, select_biased};

use crate::config::KeySlot;
use crate::error::Error;
use crate::feed::Woke;
use crate::handlers::{Context, Handler, Reply, WebhookNote, feed, webhook};
use crate::http::{self, Response};
use crate::logging::{self, AccessLine, WebhookFields};
use crate::metrics::{Queue, Source, WebhookResult};
use crate::router::Route;
use crate::state::Shared;
use crate::store::{Inserted, Store};
use crate::writer::{Completion, Ticket, Writer};

/// A request read whole by its connection thread, waiting for a worker.
pub struct Job {
    pub request: http::Request,
    pub handler: Handler,
    pub pending: Pending,
}

/// What answering a request needs once its handler has run: where the response goes, and what
/// to record about it. A webhook's `Pending` travels through the writer and back.
pub struct Pending {
    /// The connection thread waits on the other end (capacity 1: sending never blocks).
    pub reply: Sender<Answer>,
    pub route: Route,
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub received: Instant,
}

/// What travels through the writer beside a request's messages: where the answer goes, and
/// what the answer and the log line say about the request.
pub struct Token {
    pub pending: Pending,
    pub source: Source,
    pub key: Option<KeySlot>,
}

/// What a connection thread waiting on a request receives.
pub enum Answer {
    /// The finished response, counted and logged.
    Ready(Response),
    /// The writer's outcome for a webhook's messages: the connection thread answers it with
    /// `complete`, so a commit wakes no worker.
    Stored(Completion<Token>),
    /// A feed with nothing new yet: the connection thread waits (`park`), then queues it again.
    Wait(Box<Parked>),
}

/// A feed request waiting on its connection thread for a commit.
pub struct Parked {
    pub job: Job,
    pub wait: Box<feed::Wait>,
}

/// Hands a completion from the writer to its connection thread (never blocks).
pub fn pass_on(completion: Completion<Token>) {
    let reply = completion.token.pending.reply.clone();
    // The slot is free: the request is answered once, and this is its answer. If nobody waits
    // any more (answered 503 at the commit timeout, or a panic), this line is all that is left
    // of the outcome: the sender was not acknowledged, and its retry will be a duplicate.
    if let Err(TrySendError::Disconnected(Answer::Stored(late))) =
        reply.try_send(Answer::Stored(completion))
    {
        log::warn!(
            request_id = late.token.pending.request_id.as_str(),
            message_id = late.message_ids.first().map(String::as_str),
            messages = late.message_ids.len(),
            stored:% = match &late.stored {
                Ok(inserted) if inserted.contains(&Inserted::Created) => "created",
                Ok(_) => "duplicate",
                Err(_) => "failed",
            };
            "a commit finished after its webhook stopped waiting (answered 503 at the commit timeout)"
        );
    }
}

/// Where one worker takes its work from.
pub struct Queues {
    /// Webhooks, probes and metrics.
    pub fast: Receiver<Job>,
    /// Reads; `crossbeam_channel::never()` for a worker reserved for the fast lane.
    pub query: Receiver<Job>,
    /// Disconnects when the server stops: the worker answers what is queued, then ends.
    pub stop: Receiver<()>,
}

/// Serves until `stop` disconnects, the fast lane first; then answers whatever is still queued
/// and ends, letting go of its `Writer`. `store` is this worker's own connection (reads).
pub fn run(shared: Arc<Shared>, mut store: Store, writer: Writer<Token>, queues: Queues) {
    let Queues { fast, query, stop } = queues;
    loop {
        select_biased! {
            recv(fast) -> job => match job {
                Ok(job) => guarded(|| handle(&shared, &mut store, &writer, job)),
                Err(_) => break,
            },
            recv(query) -> job => match job {
                Ok(job) => guarded(|| handle(&shared, &mut store, &writer, job)),
                Err(_) => break,
            },
            recv(stop) -> _ => break,
        }
    }
    for job in fast.try_iter().chain(query.try_iter()) {
        guarded(|| handle(&shared, &mut store, &writer, job));
    }
}

/// Handler panics are contained in `call`; this guards the glue around them, so that not even
/// a bug in our own plumbing can end the worker. (The dropped reply answers a 500.)
fn guarded(work: impl FnOnce()) {
    if panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
        log::error!("request handling panicked outside the handler; worker continues");
    }
}

/// Answers messages the writer has committed (or failed to). Runs on the connection thread.
pub fn complete(shared: &Shared, completion: Completion<Token>) {
    let Completion {
        token,
        message_ids,
        stored,
    } = completion;
    let (result, response) = webhook::answer(token.source, stored.map_err(Error::from));
    let note = WebhookNote {
        key: token.key,
        ..stored_note(token.source, result, message_ids)
    };
    finish(shared, token.pending, Some(note), response);
}

/// Waits for a commit on the connection thread, within `until` (the first wait's deadline, kept
/// across the re-queries of one request), then queues the request again on `lane`, continuing
/// after the empty page's `next`; at the deadline, or at shutdown, answers that empty page.
pub fn park(shared: &Shared, lane: &Sender<Job>, parked: Parked, until: &mut Option<Instant>) {
    let Parked { mut job, wait } = parked;
    let until = *until.get_or_insert(job.pending.received + wait.wait);
    shared.metrics.feed_waiters.inc();
    let woke = shared.feed.wait(wait.seen, until);
    shared.metrics.feed_waiters.dec();
    if woke != Woke::Changed {
        return finish(shared, job.pending, None, Ok(wait.empty));
    }
    job.request.query = Some(wait.retry_query);
    shared.metrics.queue_depth.inc();
    if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) = lane.try_send(job) {
        shared.metrics.queue_depth.dec();
        shared.metrics.observe_shed(Queue::Workers);
        let busy = Error::Unavailable("server busy, retry later");
        finish(shared, job.pending, None, Err(busy));
    }
}

/// The log line of stored messages: the first id, and their number when there are several.
fn stored_note(source: Source, result: WebhookResult, mut ids: Vec<String>) -> WebhookNote {
    let messages = (ids.len() > 1).then_some(ids.len());
    WebhookNote {
        message_id: (!ids.is_empty()).then(|| ids.swap_remove(0)),
        messages,
        ..WebhookNote::new(source, result)
    }
}

fn handle(shared: &Shared, store: &mut Store, writer: &Writer<Token>, job: Job) {
    shared.metrics.queue_depth.dec();
    let Job {
        request,
        handler,
        pending,
    } = job;
    // A webhook that waited past its commit deadline in the queue has been answered 503 by its
    // connection thread already (`server::respond`): handling it now would count it twice, or
    // store a message whose sender was told it was not.
    if pending.route.waits_for_commit()
        && pending.received.elapsed() >= shared.config.commit_timeout
    {
        return;
    }
    let mut ctx = Context {
        config: &shared.config,
        metrics: &shared.metrics,
        storage: &shared.storage,
        store,
        feed: &shared.feed,
        webhook: None,
    };
    let result = match call(handler, &mut ctx, &request) {
        Ok(Reply::Store(delivery)) => {
            let ticket = Ticket {
                messages: delivery.messages,
                token: Token {
                    pending,
                    source: delivery.source,
                    key: delivery.key,
                },
            };
            if let Err(ticket) = writer.submit(ticket, shared) {
                // No room in the write queue: the sender retries later.
                shared.metrics.observe_shed(Queue::Writes);
                let Ticket { messages, token } = *ticket;
                let ids = messages.into_iter().map(|message| message.message_id);
                let note = WebhookNote {
                    key: token.key,
                    ..stored_note(token.source, WebhookResult::Unavailable, ids.collect())
                };
                let busy =
                    Error::Unavailable("too many messages waiting to be stored, retry later");
                finish(shared, token.pending, Some(note), Err(busy));
            }
            return; // Answered once the message is committed.
        }
        Ok(Reply::Wait(wait)) => {
            let reply = pending.reply.clone();
            let job = Job {
                request,
                handler,
                pending,
            };
            // The slot is free: this request has no other answer yet.
            let _ = reply.try_send(Answer::Wait(Box::new(Parked { job, wait })));
            return; // Answered by its connection thread, or by a worker after the next commit.
        }
        Ok(Reply::Now(response)) => Ok(response),
        Err(error) => Err(error),
    };
    let note = ctx.webhook.take();
    finish(shared, pending, note, result);
}

/// Counts and logs the request, then hands its response to the connection thread. Used by
/// workers and, for requests answered without one (404, 405, a body that never came, a full
/// queue), by the connection thread itself, so every request is recorded the same way.
pub fn finish(
    shared: &Shared,
    pending: Pending,
    note: Option<WebhookNote>,
    result: Result<Response, Error>,
) {
    let webhook = pending.route.source().map(|source| {
        note.unwrap_or_else(|| {
            let result = match &result {
                Ok(_) => WebhookResult::Error,
                Err(error) => webhook::result_of(error),
            };
            WebhookNote::new(source, result)
        })
    });
    let (response, error) = match result {
        Ok(response) => (response, None),
        Err(error) => {
            let detail = (error.status() >= 500).then(|| error.to_string());
            (error.into_response(), detail)
        }
    };
    let status = response.status;
    let latency_ms = pending.received.elapsed().as_secs_f64() * 1000.0;
    // Counted before the answer leaves, so a client that reads its answer sees itself counted.
    shared
        .metrics
        .observe_request(pending.route.label(), status, latency_ms);
    if let Some(note) = &webhook {
        shared
            .metrics
            .observe_webhook(note.source, note.result, note.key);
    }
    logging::access(&AccessLine {
        request_id: &pending.request_id,
        method: &pending.method,
        path: &pending.path,
        status,
        latency_ms,
        webhook: webhook.as_ref().map(|note| WebhookFields {
            message_id: note.message_id.as_deref(),
            result: note.result,
            source: note.source,
            key: note.key,
            messages: note.messages,
            reason: note.reason.as_deref(),
        }),
        error,
    });
    // The connection thread may be gone (a panic); then there is no one to tell.
    let _ = pending.reply.try_send(Answer::Ready(response));
}

/// Runs a handler; a panic becomes `Error::Internal` (a logged 500) instead of unwinding further.
fn call(handler: Handler, ctx: &mut Context<'_>, request: &http::Request) -> Result<Reply, Error> {
    panic::catch_unwind(AssertUnwindSafe(|| handler(ctx, request))).unwrap_or_else(|payload| {
        Err(Error::Internal(format!(
            "handler panicked: {}",
            panic_message(payload.as_ref())
        )))
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::state::StorageHealth;

    fn panicking(_: &mut Context<'_>, _: &http::Request) -> Result<Reply, Error> {
        panic!("boom at {}", 42)
    }

    #[test]
    fn a_panicking_handler_becomes_a_500_whose_cause_is_kept_for_the_log() {
        let dir = std::env::temp_dir().join(format!("hookbox-worker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::for_database(dir.join("t.db"), Some("secret"));
        let mut store = Store::open(&config).unwrap();
        store.migrate().unwrap();
        let (metrics, storage) = (Metrics::new(), StorageHealth::default());
        let mut ctx = Context {
            config: &config,
            metrics: &metrics,
            storage: &storage,
            store: &mut store,
            feed: &crate::feed::Notifier::default(),
            webhook: None,
        };
        let request = http::Request::new("GET", "/", b"");
        let error = call(panicking, &mut ctx, &request).unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(error.to_string().contains("boom at 42"), "{error}");
        let response = error.into_response();
        assert_eq!(response.body, br#"{"detail":"internal server error"}"#);
        // The same context serves the next call: nothing was left poisoned.
        assert!(call(crate::handlers::health::metrics, &mut ctx, &request).is_ok());
        drop(ctx);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
