//! A worker: takes requests off the bounded queue and answers each one.
//!
//! For every request, in this order and nowhere else: copy it into our own `Request` (reading the
//! body up to the limit), route, call the handler inside `catch_unwind`, then either hand a valid
//! webhook message to the writer (which answers once it is committed), or turn the handler's
//! result into a response here; `finish` writes it, counts it and writes its one log line.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, select_biased};

use crate::config::Config;
use crate::error::Error;
use crate::handlers::{Context, Handler, Reply, WebhookNote, webhook};
use crate::http::{self, Response};
use crate::logging::{self, AccessLine, WebhookFields};
use crate::metrics::{Metrics, Queue, WebhookResult};
use crate::router;
use crate::store::Store;
use crate::writer::{Completion, StorageHealth, Ticket, Writer};

/// What every thread of one server shares.
pub struct Shared {
    pub config: Config,
    pub metrics: Metrics,
    pub storage: StorageHealth,
}

/// A request handed from the dispatcher to a worker, stamped with when it was accepted.
pub struct Job {
    pub request: tiny_http::Request,
    pub received: Instant,
}

/// Serves requests from `jobs` and answers stored messages from `completions` (first, so that
/// finished work leaves before new work starts) until the dispatcher closes `jobs`; then keeps
/// answering completions until the writer, having committed everything handed to it, stops.
/// `store` is this worker's own connection (reads); messages to store go to `writer`.
pub fn run(
    shared: Arc<Shared>,
    mut store: Store,
    writer: Writer,
    jobs: Receiver<Job>,
    completions: Receiver<Completion>,
) {
    loop {
        select_biased! {
            recv(completions) -> completion => {
                if let Ok(completion) = completion {
                    guarded(|| complete(&shared, completion));
                }
            }
            recv(jobs) -> job => {
                let Ok(job) = job else { break };
                shared.metrics.queue_depth.dec();
                guarded(|| handle(&shared, &mut store, &writer, job));
            }
        }
    }
    // This worker's `Writer` goes; once all are gone the writer drains, stops, and
    // disconnects `completions`.
    drop(writer);
    for completion in completions.iter() {
        guarded(|| complete(&shared, completion));
    }
}

/// Handler panics are contained in `handle`; this guards the glue around them, so that not even
/// a bug in our own plumbing can end the worker.
fn guarded(work: impl FnOnce()) {
    if panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
        log::error!("request handling panicked outside the handler; worker continues");
    }
}

/// Answers a message the writer has committed (or failed to).
fn complete(shared: &Shared, completion: Completion) {
    let Completion { ticket, stored } = completion;
    let (result, response) = webhook::answer(stored);
    answer_ticket(shared, ticket, result, response);
}

/// Answers a webhook request that reached the writer's queue (or tried to).
fn answer_ticket(
    shared: &Shared,
    ticket: Ticket,
    result: WebhookResult,
    response: Result<Response, Error>,
) {
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
    finish(shared, ticket.request, outcome, response);
}

fn handle(shared: &Shared, store: &mut Store, writer: &Writer, job: Job) {
    let Job {
        mut request,
        received,
    } = job;
    let owned = http::from_tiny(
        &mut request,
        shared.config.max_body_bytes,
        shared.config.read_timeout,
    );
    let (route, handler) = router::route(&owned.method, &owned.path);
    let mut ctx = Context {
        config: &shared.config,
        metrics: &shared.metrics,
        storage: &shared.storage,
        store,
        webhook: None,
    };
    let result = handler.and_then(|handler| call(handler, &mut ctx, &owned));
    let result = match result {
        Ok(Reply::Store(message)) => {
            let ticket = Ticket {
                message,
                request,
                method: owned.method,
                path: owned.path,
                request_id: owned.request_id,
                received,
            };
            let Err(ticket) = writer.submit(ticket, shared) else {
                return; // The writer answers once the message is committed.
            };
            shed_write(shared, *ticket);
            return;
        }
        Ok(Reply::Now(response)) => Ok(response),
        Err(error) => Err(error),
    };
    let webhook_note = ctx.webhook.take();
    let webhook = (route == "/webhook").then(|| {
        webhook_note.unwrap_or_else(|| WebhookNote {
            message_id: None,
            result: match &result {
                Ok(_) => WebhookResult::Error,
                Err(error) => webhook::result_of(error),
            },
        })
    });
    let outcome = Outcome {
        route,
        method: &owned.method,
        path: &owned.path,
        request_id: &owned.request_id,
        received,
        webhook: webhook.as_ref(),
    };
    finish(shared, request, outcome, result);
}

/// Answers 503 for a valid message the writer has no room for: the sender retries later.
fn shed_write(shared: &Shared, ticket: Ticket) {
    shared.metrics.observe_shed(Queue::Writes);
    let busy = Error::Unavailable("too many messages waiting to be stored, retry later");
    answer_ticket(shared, ticket, WebhookResult::Unavailable, Err(busy));
}

/// Who a response is for, and what to record about it.
pub struct Outcome<'a> {
    pub route: &'static str,
    pub method: &'a str,
    pub path: &'a str,
    pub request_id: &'a str,
    pub received: Instant,
    pub webhook: Option<&'a WebhookNote>,
}

/// Writes the response, then counts and logs the request. Used by workers and, for requests it
/// sheds, by the dispatcher, so every request is recorded the same way.
pub fn finish(
    shared: &Shared,
    request: tiny_http::Request,
    outcome: Outcome<'_>,
    result: Result<Response, Error>,
) {
    let (response, error) = match result {
        Ok(response) => (response, None),
        Err(error) => {
            let detail = (error.status() >= 500).then(|| error.to_string());
            (error.into_response(), detail)
        }
    };
    let status = response.status;
    if let Err(io_error) = request.respond(http::into_tiny(response, outcome.request_id)) {
        log::debug!("could not write the response: {io_error}");
    }
    let latency_ms = outcome.received.elapsed().as_secs_f64() * 1000.0;
    shared
        .metrics
        .observe_request(outcome.route, status, latency_ms);
    if let Some(note) = outcome.webhook {
        shared.metrics.observe_webhook(note.result);
    }
    logging::access(&AccessLine {
        request_id: outcome.request_id,
        method: outcome.method,
        path: outcome.path,
        status,
        latency_ms,
        webhook: outcome.webhook.map(|note| WebhookFields {
            message_id: note.message_id.as_deref(),
            result: note.result,
        }),
        error,
    });
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
            webhook: None,
        };
        let request = http::Request::new("GET", "/", b"");
        let error = call(panicking, &mut ctx, &request).unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(error.to_string().contains("boom at 42"), "{error}");
        let response = error.into_response();
        assert_eq!(response.body, br#"{"detail":"internal server error"}"#);
        // The same context serves the next call: nothing was left poisoned.
        assert!(call(crate::handlers::health::live, &mut ctx, &request).is_ok());
        drop(ctx);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
