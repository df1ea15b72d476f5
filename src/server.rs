//! Starting and stopping the server: the listener, the dispatcher, the worker pool.
//!
//! `start` opens and migrates the database (that connection becomes the writer's), opens one
//! connection per worker, binds the listener, and only then spawns threads, so every startup
//! problem is reported before anything serves. The dispatcher moves requests from tiny_http onto
//! a *bounded* queue; when it is full the dispatcher answers 503 itself instead of letting work
//! pile up without limit.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::Config;
use crate::error::Error;
use crate::handlers::WebhookNote;
use crate::http;
use crate::listener;
use crate::metrics::{Metrics, Queue, WebhookResult};
use crate::router;
use crate::store::{Store, StoreError, sqlite::SCHEMA_VERSION};
use crate::worker::{self, Job, Outcome, Shared};
use crate::writer;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database could not be opened or migrated.
    Database(String),
    /// The address could not be bound.
    Listen(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Database(message) => write!(f, "database: {message}"),
            StartError::Listen(message) => write!(f, "listen: {message}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server. Dropping it shuts it down gracefully, like `shutdown`.
pub struct ServerHandle {
    addr: SocketAddr,
    listener: Arc<tiny_http::Server>,
    dispatcher: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    failure: Receiver<String>,
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Receives a message if the listener fails for good and the server can no longer accept.
    pub fn failure(&self) -> &Receiver<String> {
        &self.failure
    }

    /// Stops accepting, lets the workers finish every request already accepted and the writer
    /// commit and answer every message handed to it, closes every database connection, and
    /// returns when all threads have ended.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(dispatcher) = self.dispatcher.take() else {
            return;
        };
        self.listener.unblock();
        let _ = dispatcher.join();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // The workers held the last `Writer`s: the writer drains its queue, folds the WAL into
        // the database file, and stops.
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a server for `config` and returns once it is accepting connections.
pub fn start(config: Config) -> Result<ServerHandle, StartError> {
    let database_error = |error: StoreError| {
        StartError::Database(format!("{}: {error}", config.database.describe()))
    };
    let mut writer_store = Store::open(&config).map_err(database_error)?;
    writer_store.migrate().map_err(database_error)?;
    let connections = (0..config.workers)
        .map(|_| Store::open(&config))
        .collect::<Result<Vec<_>, _>>()
        .map_err(database_error)?;

    let listener = listener::bind(&config.host, config.port, config.read_timeout)
        .map_err(|error| error.to_string())
        .and_then(|socket| {
            tiny_http::Server::from_listener(socket, None).map_err(|error| error.to_string())
        })
        .map_err(|error| {
            StartError::Listen(format!(
                "cannot listen on HOST={} PORT={}: {error}",
                config.host, config.port
            ))
        })?;
    let addr = listener
        .server_addr()
        .to_ip()
        .ok_or_else(|| StartError::Listen("listener has no IP address".to_owned()))?;
    let listener = Arc::new(listener);

    if config.webhook_secret.is_none() {
        log::warn!(
            "WEBHOOK_SECRET is not set: /webhook answers 503 and /health/ready is not ready"
        );
    }
    log::info!(
        addr:% = addr,
        database:% = config.database.describe(),
        schema_version = SCHEMA_VERSION,
        workers = config.workers,
        queue_capacity = config.queue_capacity,
        max_body_bytes = config.max_body_bytes,
        synchronous = config.durability.as_pragma();
        "listening"
    );

    let (sender, receiver) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
    let shared = Arc::new(Shared {
        config,
        metrics: Metrics::new(),
        storage: writer::StorageHealth::default(),
    });
    let (writer, completions, writer_thread) = writer::spawn(Arc::clone(&shared), writer_store);
    let workers = connections
        .into_iter()
        .enumerate()
        .map(|(index, store)| {
            let shared = Arc::clone(&shared);
            let receiver = receiver.clone();
            let writer = writer.clone();
            let completions = completions.clone();
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || worker::run(shared, store, writer, receiver, completions))
                .expect("spawning a worker thread")
        })
        .collect();
    drop(writer);
    let (failure_sender, failure) = crossbeam_channel::bounded(1);
    let dispatcher = {
        let listener = Arc::clone(&listener);
        thread::Builder::new()
            .name("dispatcher".to_owned())
            .spawn(move || dispatch(&listener, &shared, &sender, &failure_sender))
            .expect("spawning the dispatcher thread")
    };
    Ok(ServerHandle {
        addr,
        listener,
        dispatcher: Some(dispatcher),
        workers,
        writer: Some(writer_thread),
        failure,
    })
}

/// Moves requests from the listener to the worker queue until `unblock` is called or the
/// listener fails. Returning drops the queue's sender, which lets the workers drain and stop.
fn dispatch(
    listener: &tiny_http::Server,
    shared: &Shared,
    queue: &Sender<Job>,
    failure: &Sender<String>,
) {
    loop {
        match listener.recv() {
            Ok(request) => enqueue(shared, queue, request),
            // `unblock` during shutdown makes `recv` fail with "thread unblocked".
            Err(error) if error.to_string() == "thread unblocked" => break,
            Err(error) => {
                let message = format!("listener stopped accepting connections: {error}");
                log::error!("{message}");
                let _ = failure.try_send(message);
                break;
            }
        }
    }
    // Requests accepted before the stop are still answered, by the workers as usual.
    while let Ok(Some(request)) = listener.try_recv() {
        enqueue(shared, queue, request);
    }
}

fn enqueue(shared: &Shared, queue: &Sender<Job>, request: tiny_http::Request) {
    let job = Job {
        request,
        received: Instant::now(),
    };
    shared.metrics.queue_depth.inc();
    match queue.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
            shared.metrics.queue_depth.dec();
            shared.metrics.observe_shed(Queue::Workers);
            shed(shared, job);
        }
    }
}

/// Answers 503 + `Retry-After` without reading the body: the queue is full.
fn shed(shared: &Shared, job: Job) {
    let path = job.request.url().split('?').next().unwrap_or("").to_owned();
    let method = job.request.method().as_str().to_owned();
    let request_id = http::request_id_of(&job.request);
    let (route, _) = router::route(&method, &path);
    let note = (route == "/webhook").then_some(WebhookNote {
        message_id: None,
        result: WebhookResult::Unavailable,
    });
    let outcome = Outcome {
        route,
        method: &method,
        path: &path,
        request_id: &request_id,
        received: job.received,
        webhook: note.as_ref(),
    };
    worker::finish(
        shared,
        job.request,
        outcome,
        Err(Error::Unavailable("server busy, retry later")),
    );
}
