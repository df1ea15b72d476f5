//! A worker: takes requests that their connection threads have read whole off the lane queues,
//! runs their handlers with its own store connection, and hands each result back to the waiting
//! connection thread (`answer`), which counts, logs and writes it. It never touches a socket.
//!
//! Only handlers that need a store run here: reads, readiness, metrics. Webhooks need none, so
//! their connection threads verify them and hand them to the writer themselves.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, select_biased};

use crate::error::Error;
use crate::handlers::{Context, Handler, Reply};
use crate::http;
use crate::reply::Filler;
use crate::state::Shared;
use crate::store::Store;

/// What a worker hands back: the handler's reply or its error (a panic is a 500), and the
/// request, which a feed with nothing new yet is queued with again after a commit.
pub struct Handled {
    pub result: Result<Reply, Error>,
    pub request: http::Request,
}

/// A request read whole by its connection thread, waiting for a worker.
pub struct Job {
    pub request: http::Request,
    pub handler: Handler,
    /// The connection thread waits on the other end.
    pub reply: Filler<Handled>,
}

/// Where one worker takes its work from.
pub struct Queues {
    /// Probes and metrics.
    pub fast: Receiver<Job>,
    /// Reads; `crossbeam_channel::never()` for a worker reserved for the fast lane.
    pub query: Receiver<Job>,
    /// Disconnects when the server stops: the worker answers what is queued, then ends.
    pub stop: Receiver<()>,
}

/// Serves until `stop` disconnects, the fast lane first; then answers whatever is still queued
/// and ends. `store` is this worker's own connection (reads).
pub fn run(shared: Arc<Shared>, mut store: Store, queues: Queues) {
    let Queues { fast, query, stop } = queues;
    loop {
        select_biased! {
            recv(fast) -> job => match job {
                Ok(job) => guarded(|| handle(&shared, &mut store, job)),
                Err(_) => break,
            },
            recv(query) -> job => match job {
                Ok(job) => guarded(|| handle(&shared, &mut store, job)),
                Err(_) => break,
            },
            recv(stop) -> _ => break,
        }
    }
    for job in fast.try_iter().chain(query.try_iter()) {
        guarded(|| handle(&shared, &mut store, job));
    }
}

/// Handler panics are contained in `call`; this guards the glue around them, so that not even
/// a bug in our own plumbing can end the worker. (The dropped reply answers a 500.)
fn guarded(work: impl FnOnce()) {
    if panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
        log::error!("request handling panicked outside the handler; worker continues");
    }
}

fn handle(shared: &Shared, store: &mut Store, job: Job) {
    shared.metrics.queue_depth.dec();
    let Job {
        request,
        handler,
        reply,
    } = job;
    let mut ctx = Context {
        config: &shared.config,
        metrics: &shared.metrics,
        storage: &shared.storage,
        store,
        feed: &shared.feed,
    };
    let result = call(handler, &mut ctx, &request);
    // The connection thread may be gone (a panic); then there is no one to tell.
    let _ = reply.fill(Handled { result, request });
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

/// The text of a panic's payload, for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
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
        let mut store = Store::open(&config.store_options()).unwrap();
        store.migrate().unwrap();
        let (metrics, storage) = (Metrics::new(), StorageHealth::default());
        let mut ctx = Context {
            config: &config,
            metrics: &metrics,
            storage: &storage,
            store: &mut store,
            feed: &crate::feed::Notifier::default(),
        };
        let request = http::Request::new("GET", "/", b"");
        let error = call(panicking, &mut ctx, &request).unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(error.to_string().contains("boom at 42"), "{error}");
        let response = error.into_response();
        assert_eq!(response.body, br#"{"detail":"internal server error"}"#);
        // The same context serves the next call: nothing was left poisoned.
        assert!(call(crate::handlers::health::metrics, &mut ctx, &request).is_ok());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
