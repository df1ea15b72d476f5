//! One request's answer, decided on its connection's own thread: from what the connection read to
//! the `Outgoing` it writes. This is the one place that counts, logs and returns an answer.
//!
//! `Pipeline::answer` routes the request, refuses what needs no handler (no such route, a body
//! that never came, a locked read without the admin token), and then, by the route's `Target`:
//! - `Here`: runs the handler right here (the liveness probe);
//! - `Ingest`: runs the sender's handler right here (HMAC and JSON need no store), hands a valid
//!   webhook's messages straight to the writer and waits for their commit, until the commit
//!   deadline at most; no worker takes part, so webhooks never queue behind reads;
//! - `Worker`: queues the request on its lane and waits for the worker's result.
//!
//! Every path ends in `finish`, which counts the request, writes its one log line and returns
//! the answer, which the connection thread then writes.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};

use crate::auth;
use crate::conn::{Arrival, Outgoing, reason_phrase};
use crate::error::Error;
use crate::feed::Woke;
use crate::handlers::{Decision, Handler, Ingest, Intake, Reply, Verdict, WebhookNote, webhook};
use crate::http::{self, Request, Response};
use crate::logging::{self, AccessLine, WebhookFields};
use crate::metrics::{Queue, WebhookResult};
use crate::reply::{self, Filler, Missed};
use crate::router::{self, Lane, Route, Target};
use crate::state::Shared;
use crate::store::{Inserted, StoreError};
use crate::worker::{Handled, Job, panic_message};
use crate::writer::{Carried, Completion, Ticket, Writer};

/// What rides through the writer with a webhook's messages: where their outcome goes, and the
/// request's id for the line logged when nobody waits for it any more.
pub struct Token {
    reply: Filler<Result<Vec<Inserted>, StoreError>>,
    request_id: String,
}

/// What every connection thread answers with: the shared state, the lanes to the workers, and
/// the write queue.
pub struct Pipeline {
    pub shared: Arc<Shared>,
    pub fast: Sender<Job>,
    pub query: Sender<Job>,
    pub writer: Writer<Token>,
}

/// What a request's log line and metrics name, whichever way it was answered.
struct Seen<'a> {
    route: Route,
    /// Empty for a head that could not be parsed (the line still has the field).
    method: &'a str,
    path: &'a str,
    request_id: &'a str,
    received: Instant,
}

/// A decided answer, before it is counted: the response or the error, and for a webhook route
/// what its handler noted.
type Decided = (Option<WebhookNote>, Result<Response, Error>);

impl Pipeline {
    /// Runs on a connection's thread for every request it read, and for every head it refused.
    pub fn answer(&self, arrival: Arrival) -> Outgoing {
        let incoming = match arrival {
            Arrival::Request(incoming) => incoming,
            Arrival::Refused { status, received } => {
                let request_id = http::next_request_id();
                let seen = Seen {
                    route: Route::Unmatched,
                    method: "",
                    path: "",
                    request_id: &request_id,
                    received,
                };
                let body = serde_json::json!({ "detail": reason_phrase(status) });
                let mut outgoing = self.finish(&seen, (None, Ok(Response::json(status, &body))));
                outgoing.close = true;
                return outgoing;
            }
        };
        let received = incoming.received;
        let request = http::from_incoming(incoming, self.shared.config.max_body_bytes);
        let (route, target) = router::route(&request.method, &request.path);
        let decided = match self.admit(route, target, &request) {
            Ok(Target::Worker(handler)) => {
                return self.on_worker(route, handler, request, received);
            }
            Ok(Target::Here(handler)) => (None, Ok(handler(&request))),
            Ok(Target::Ingest(handler)) => self.ingest(handler, &request, received),
            Err(error) => (None, Err(error)),
        };
        let seen = Seen {
            route,
            method: &request.method,
            path: &request.path,
            request_id: &request.request_id,
            received,
        };
        self.finish(&seen, decided)
    }

    /// A request for a worker: what its line names is kept here, the request goes to the worker.
    fn on_worker(
        &self,
        route: Route,
        handler: Handler,
        request: Request,
        received: Instant,
    ) -> Outgoing {
        let (method, path, request_id) = (
            request.method.clone(),
            request.path.clone(),
            request.request_id.clone(),
        );
        let seen = Seen {
            route,
            method: &method,
            path: &path,
            request_id: &request_id,
            received,
        };
        let decided = (None, self.dispatch(route, handler, request, received));
        self.finish(&seen, decided)
    }

    /// The route's target, unless the request is refused before any handler: a body cut short,
    /// timed out or in an unknown encoding can serve none (one that is too large goes on: the
    /// webhook handler answers 503 for a missing secret before 413), and a locked read without
    /// the admin token is refused before it takes a worker or a queue slot.
    fn admit(
        &self,
        route: Route,
        target: Result<Target, Error>,
        request: &Request,
    ) -> Result<Target, Error> {
        let target = target?;
        if let Err(error) = request.body()
            && !matches!(error, Error::PayloadTooLarge { .. })
        {
            return Err(error);
        }
        auth::check(route, request, self.shared.config.admin_token.as_ref())?;
        Ok(target)
    }

    /// A sender's request: verified and validated here, its messages handed to the writer, and
    /// answered once their commit is durable (or at the commit deadline: 503, not acknowledged).
    fn ingest(&self, handler: Ingest, request: &Request, received: Instant) -> Decided {
        let shared = &*self.shared;
        let intake = Intake {
            config: &shared.config,
            metrics: &shared.metrics,
        };
        let verdict = panic::catch_unwind(AssertUnwindSafe(|| handler(&intake, request)));
        let Verdict { mut note, decision } = match verdict {
            Ok(verdict) => verdict,
            Err(payload) => {
                let error = Error::Internal(format!(
                    "handler panicked: {}",
                    panic_message(payload.as_ref())
                ));
                return (None, Err(error));
            }
        };
        let messages = match decision {
            Ok(Decision::Store(messages)) => messages,
            Ok(Decision::Answer(response)) => return (Some(note), Ok(response)),
            Err(error) => return (Some(note), Err(error)),
        };
        let (reply, outcome) = reply::slot();
        let token = Token {
            reply,
            request_id: request.request_id.clone(),
        };
        if self
            .writer
            .submit(Ticket { messages, token }, shared)
            .is_err()
        {
            shared.metrics.observe_shed(Queue::Writes);
            let busy = Error::Unavailable("too many messages waiting to be stored, retry later");
            return (Some(note), Err(busy));
        }
        // A stuck store could hold the commit without end: the wait is bounded from the request's
        // first byte. A ticket still queued then is not stored (`Carried::dropped`); one whose
        // commit ran meanwhile lands, and is logged as late (`Carried::complete`).
        let deadline = received + shared.config.commit_timeout;
        let answered = match outcome.wait_until(Some(deadline)) {
            Ok(Ok(inserted)) => {
                note.result = webhook::stored(&inserted);
                Ok(webhook::ok(note.source))
            }
            Ok(Err(error)) => Err(Error::from(error)),
            Err(Missed::Timeout) => Err(Error::CommitTimeout),
            // The writer panicked with this message in its batch: never a 200.
            Err(Missed::Abandoned) => Err(Error::Internal("the commit was dropped".to_owned())),
        };
        (Some(note), answered)
    }

    /// Queues the request on its lane and waits for the worker's result. A feed with nothing new
    /// yet waits here, on the connection thread, for a commit (until its `wait` runs out from the
    /// request's first byte), then is queued again continuing after its empty page.
    fn dispatch(
        &self,
        route: Route,
        handler: Handler,
        mut request: Request,
        received: Instant,
    ) -> Result<Response, Error> {
        let shared = &*self.shared;
        let lane = match route.lane() {
            Lane::Fast => &self.fast,
            Lane::Query => &self.query,
        };
        let held = shared.held_answer_bytes.load(Ordering::Relaxed);
        if route.lane() == Lane::Query && held as u64 > shared.config.max_held_answer_bytes {
            shared.metrics.observe_shed(Queue::Answers);
            return Err(Error::Unavailable(
                "too many answers waiting for their clients, retry later",
            ));
        }
        let mut until = None;
        loop {
            let (reply, result) = reply::slot();
            shared.metrics.queue_depth.inc();
            let job = Job {
                request,
                handler,
                reply,
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = lane.try_send(job) {
                shared.metrics.queue_depth.dec();
                shared.metrics.observe_shed(Queue::Workers);
                return Err(Error::Unavailable("server busy, retry later"));
            }
            // A job is dropped unanswered only by a bug caught in a worker, or at a shutdown's end.
            let Ok(Handled {
                result,
                request: back,
            }) = result.wait()
            else {
                return Err(Error::Internal("request dropped unanswered".to_owned()));
            };
            let wait = match result {
                Ok(Reply::Now(response)) => return Ok(response),
                Ok(Reply::Wait(wait)) => wait,
                Err(error) => return Err(error),
            };
            let until = *until.get_or_insert(received + wait.wait);
            shared.metrics.feed_waiters.inc();
            let woke = shared.feed.wait(wait.seen, until);
            shared.metrics.feed_waiters.dec();
            if woke != Woke::Changed {
                return Ok(wait.empty);
            }
            request = back;
            request.query = Some(wait.retry_query);
        }
    }

    /// Counts the request, writes its one log line, and returns its answer for the connection to
    /// write, counting the body as held until the connection says it is written
    /// (`Observer::answered`). A webhook's outcome is its handler's or its commit's, or, for an
    /// error, the error's: decided here, once.
    fn finish(&self, seen: &Seen<'_>, decided: Decided) -> Outgoing {
        let shared = &*self.shared;
        let (note, result) = decided;
        let webhook = seen.route.source().map(|source| {
            let mut note = note.unwrap_or_else(|| WebhookNote::new(source, WebhookResult::Error));
            if let Err(error) = &result {
                note.result = webhook::result_of(error);
            }
            note
        });
        let (response, error) = match result {
            Ok(response) => (response, None),
            Err(error) => {
                let detail = (error.status() >= 500).then(|| error.to_string());
                (error.into_response(), detail)
            }
        };
        let status = response.status;
        let latency_ms = seen.received.elapsed().as_secs_f64() * 1000.0;
        // Counted before the answer leaves, so a client that reads its answer sees itself counted.
        shared
            .metrics
            .observe_request(seen.route.label(), status, latency_ms);
        if let Some(note) = &webhook {
            shared
                .metrics
                .observe_webhook(note.source, note.result, note.key);
        }
        logging::access(&AccessLine {
            request_id: seen.request_id,
            method: seen.method,
            path: seen.path,
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
        shared
            .held_answer_bytes
            .fetch_add(response.body.len(), Ordering::Relaxed);
        http::into_outgoing(response, seen.request_id)
    }
}

impl Carried for Token {
    fn awaited(&self) -> bool {
        self.reply.awaited()
    }

    /// Hands a commit's outcome to the connection thread waiting for it (never blocks). If nobody
    /// waits any more (answered 503 at the commit timeout while the commit ran), this line is all
    /// that is left of the outcome: the sender was not acknowledged, and its retry will be a
    /// duplicate.
    fn complete(completion: Completion<Token>) {
        let Completion {
            token,
            message_ids,
            stored,
        } = completion;
        if let Err(late) = token.reply.fill(stored) {
            log::warn!(
                request_id = token.request_id.as_str(),
                message_id = message_ids.first().map(String::as_str),
                messages = message_ids.len(),
                stored:% = match &late {
                    Ok(inserted) if inserted.contains(&Inserted::Created) => "created",
                    Ok(_) => "duplicate",
                    Err(_) => "failed",
                };
                "a commit finished after its webhook stopped waiting (answered 503 at the commit timeout)"
            );
        }
    }

    fn dropped(completion: Completion<Token>) {
        log::warn!(
            request_id = completion.token.request_id.as_str(),
            message_id = completion.message_ids.first().map(String::as_str),
            messages = completion.message_ids.len();
            "not stored: its webhook was answered 503 at the commit timeout before its commit began"
        );
    }
}
