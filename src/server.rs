//! Starting and stopping the server: the listener, the lanes, the worker pool, the writer.
//!
//! `start` opens and migrates the database (that connection becomes the writer's), opens one
//! connection per worker, binds the listener, and only then spawns threads, so every startup
//! problem is reported before anything serves.
//!
//! Who waits for whom: each connection's own thread (in `conn`) reads a whole request, then calls
//! `answer::Pipeline::answer`, which decides the answer (a webhook: handed to the writer and
//! waited for; a read: put on a *bounded* lane queue and waited for) and returns it; then the
//! connection thread writes it. Workers only compute, so a slow or hostile client holds its own
//! thread and nobody else's.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::answer::{Pipeline, Token};
use crate::auth;
use crate::config::Config;
use crate::config::Database;
use crate::conn::{self, CloseReason, Limits, Observer, Serving};
use crate::metrics::Metrics;
use crate::state::{Shared, StorageHealth};
use crate::store::{Store, StoreError};
use crate::worker::{self, Job, Queues};
use crate::writer::{self, Writer};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database could not be opened or migrated.
    Database(String),
    /// The address could not be bound.
    Listen(String),
    /// A thread could not be started (out of memory or of threads).
    Thread(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Database(message) => write!(f, "database: {message}"),
            StartError::Listen(message) => write!(f, "listen: {message}"),
            StartError::Thread(message) => write!(f, "thread: {message}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server. Dropping it shuts it down gracefully, like `shutdown`.
pub struct ServerHandle {
    addr: SocketAddr,
    serving: Option<Serving>,
    /// Dropped to tell the workers to stop.
    stop: Option<Sender<()>>,
    /// Kept so jobs still queued after the workers stopped can be dropped (their connections
    /// then answer 503 instead of waiting).
    lanes: [Receiver<Job>; 2],
    workers: Vec<JoinHandle<()>>,
    /// Closed once no connection is left to submit: the writer commits what is queued, stops.
    write_queue: Writer<Token>,
    writer: Option<JoinHandle<()>>,
    /// Stopped at shutdown, which answers long-polling feeds at once.
    feed: crate::feed::Watcher,
    failure: Receiver<String>,
    grace: Duration,
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Receives a message if the server can no longer accept connections.
    pub fn failure(&self) -> &Receiver<String> {
        &self.failure
    }

    /// Stops accepting at once (the port closes before this returns) and cuts idle connections;
    /// lets every request already read finish and its answer go out with `Connection: close`,
    /// within 60% of the grace period; lets the writer commit and answer every message handed
    /// to it; closes every database connection, and returns when all threads have ended.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(mut serving) = self.serving.take() else {
            return;
        };
        serving.stop();
        self.feed.stop();
        if !serving.wait_closed(self.grace.mul_f32(0.6)) {
            log::warn!(
                open = serving.open_connections();
                "connections still busy at the end of their share of the grace period; cutting them"
            );
            serving.cut_all();
            serving.wait_closed(Duration::from_secs(1));
        }
        drop(self.stop.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // No connection is left to submit: the writer drains its queue, folds the WAL into the
        // database file, and stops.
        self.write_queue.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        for lane in &self.lanes {
            lane.try_iter().for_each(drop);
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
    let options = config.store_options();
    let mut writer_store = Store::open(&options).map_err(database_error)?;
    // Whether `q` has a text index is decided here, at the server's start, and nowhere else.
    let prepared = writer_store
        .migrate()
        .and_then(|()| writer_store.use_text_index(config.text_index));
    match prepared {
        // A database that does not answer yet (PostgreSQL starting, a network partition): serve
        // 503s and not-ready until it does; the writer prepares it as soon as it answers.
        Err(StoreError::Unavailable(why)) if writer_store.prepare_later(config.text_index) => {
            log::warn!(
                database:% = config.database.describe();
                "the database does not answer; serving 503 until it does: {why}"
            );
        }
        other => other.map_err(database_error)?,
    }
    // The feed watcher's own connection (commits made by other instances or processes).
    let watcher_store = Store::open(&options).map_err(database_error)?;
    let connections = (0..config.workers)
        .map(|_| Store::open(&options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(database_error)?;
    let listen_at = format!("HOST={} PORT={}", config.host, config.port);
    let listen_error = |error: std::io::Error| {
        StartError::Listen(format!("cannot listen on {listen_at}: {error}"))
    };
    let listener = crate::listener::bind(&config.host, config.port).map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;

    if config.webhook_secret.is_none() {
        log::warn!(
            "WEBHOOK_SECRET is not set: /webhook answers 503 and /health/ready is not ready"
        );
    }
    if auth::reads_open_to_the_network(&config) {
        log::warn!(
            host:% = config.host;
            "HOOKBOX_ADMIN_TOKEN is not set and HOST is not a loopback address: anyone who can \
             reach this port can read every stored message (/messages, /stats, /metrics)"
        );
    }
    let max_connections = connection_limit(&config);
    let reserved = reserved_workers(config.workers);
    log::info!(
        addr:% = addr,
        database:% = config.database.describe(),
        schema_version = writer_store.schema_version(),
        workers = config.workers,
        fast_lane_only_workers = reserved,
        max_connections = max_connections,
        queue_capacity = config.queue_capacity,
        max_body_bytes = config.max_body_bytes,
        synchronous:% = durability(&config);
        "listening"
    );
    let limits = Limits {
        idle_timeout: config.read_timeout,
        header_timeout: config.header_timeout,
        body_timeout: config.read_timeout,
        write_timeout: config.write_timeout,
        max_body: config.max_body_bytes,
        max_head_bytes: MAX_HEAD_BYTES,
        max_headers: MAX_HEADERS,
        max_connections,
        body_budget: config.max_body_buffer_bytes,
    };
    let grace = config.shutdown_grace;

    let (fast, fast_jobs) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
    let (query, query_jobs) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let feed = crate::feed::Watcher::start(watcher_store, config.feed_watch_every);
    let shared = Arc::new(Shared {
        config,
        metrics: Metrics::new(),
        storage: StorageHealth::default(),
        held_answer_bytes: AtomicUsize::new(0),
        feed: feed.notifier(),
    });
    let (writer, writer_thread) = writer::spawn::<Token>(Arc::clone(&shared), writer_store);
    let workers = connections
        .into_iter()
        .enumerate()
        .map(|(index, store)| {
            let shared = Arc::clone(&shared);
            let queues = Queues {
                fast: fast_jobs.clone(),
                // The first `reserved` workers never take reads, so webhooks always have one.
                query: if index < reserved {
                    crossbeam_channel::never()
                } else {
                    query_jobs.clone()
                },
                stop: stopped.clone(),
            };
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || worker::run(shared, store, queues))
                .map_err(|error| {
                    StartError::Thread(format!("cannot start worker-{index}: {error}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let (failure_sender, failure) = crossbeam_channel::bounded(1);
    let observer = Arc::new(Connections {
        shared: Arc::clone(&shared),
        failure: failure_sender,
    });
    let pipeline = Pipeline {
        shared: Arc::clone(&shared),
        fast,
        query,
        writer: writer.clone(),
    };
    let handler: conn::Handler = Arc::new(move |arrival| pipeline.answer(arrival));
    let serving = conn::serve(listener, limits, handler, observer)
        .map_err(|error| StartError::Thread(format!("cannot start the accept thread: {error}")))?;
    Ok(ServerHandle {
        addr,
        serving: Some(serving),
        stop: Some(stop),
        lanes: [fast_jobs, query_jobs],
        workers,
        write_queue: writer,
        writer: Some(writer_thread),
        feed,
        failure,
        grace,
    })
}

/// What a commit waits for, as the `listening` line reports it.
fn durability(config: &Config) -> &'static str {
    match config.database {
        Database::Sqlite(_) => config.durability.as_pragma(),
        // hookbox sets synchronous_commit = on for its own connections.
        Database::Postgres(_) => "synchronous_commit=on",
    }
}

/// Largest request head (request line and headers); larger → 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines in one request; more → 431.
const MAX_HEADERS: usize = 100;

/// A quarter of the workers, at least one, serve only the fast lane: a burst of slow reads can
/// take the others, never these, so webhooks and probes do not queue behind reads.
fn reserved_workers(workers: usize) -> usize {
    if workers == 1 {
        0
    } else {
        (workers / 4).max(1)
    }
}

/// `HOOKBOX_MAX_CONNECTIONS`, lowered when the descriptor limit could not hold that many (each
/// connection holds one; the databases, the listener and stdio need some more).
fn connection_limit(config: &Config) -> usize {
    let spare = 64 + 2 * config.workers as u64;
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft.saturating_sub(spare) < config.max_connections as u64 => {
            let lowered = soft.saturating_sub(spare).max(1) as usize;
            log::warn!(
                configured = config.max_connections,
                lowered = lowered,
                open_file_limit = soft;
                "HOOKBOX_MAX_CONNECTIONS lowered to fit the open file limit"
            );
            lowered
        }
        _ => config.max_connections,
    }
}

/// Connection events, counted in metrics.
struct Connections {
    shared: Arc<Shared>,
    failure: Sender<String>,
}

impl Observer for Connections {
    fn opened(&self) {
        self.shared.metrics.connections_open.inc();
    }

    fn refused(&self) {
        self.shared.metrics.connections_refused.inc();
    }

    fn closed(&self, reason: CloseReason) {
        self.shared.metrics.connections_open.dec();
        self.shared.metrics.observe_closed(reason.as_str());
    }

    fn answered(&self, body_bytes: usize) {
        self.shared
            .held_answer_bytes
            .fetch_sub(body_bytes, Ordering::Relaxed);
    }

    fn body_buffer_changed(&self, delta: i64) {
        self.shared.metrics.body_buffer_bytes.add(delta);
    }

    fn spawn_failed(&self, error: &std::io::Error) {
        log::error!("could not start a thread for a new connection; it was closed: {error}");
    }

    fn accept_failed(&self, error: &std::io::Error) {
        log::warn!("accept failed, retrying: {error}");
    }

    fn stopped_accepting(&self, why: &str) {
        let message = format!("listener stopped accepting connections: {why}");
        log::error!("{message}");
        let _ = self.failure.try_send(message);
    }
}
