//! One connection to PostgreSQL that reopens itself: bounded connects, a backoff between failed
//! attempts, and errors sorted by what the caller can do about them, worded with the server's
//! own message, SQLSTATE and address.
//!
//! No wait here is unbounded by our choice. Connecting (TCP, TLS, startup, settings) runs on a
//! helper thread that the caller stops waiting for at `CONNECT_WITHIN`; keepalives and
//! `tcp_user_timeout` end a connection whose peer is gone from the network; the server bounds
//! each statement (`statement_timeout`, `lock_timeout`). A server that still acknowledges TCP but
//! does not answer (stopped, or stalled) holds a statement already sent until it answers; the
//! webhook's own commit timeout answers its sender meanwhile, and `check` answers within its
//! budget, leaving such a connection behind to finish on a thread of its own.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::config::Host;
use postgres::error::SqlState;
use postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::TlsSettings;
use crate::store::StoreError;

/// A connect (TCP, TLS and startup) that takes longer is given up.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// Pause before the first reconnect attempt after a failure, doubled after each failed attempt.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// What a failing call was doing, for sorting its error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    Reading,
    Writing,
}

/// A live client and the statements prepared on it (they die with it).
pub struct Connection {
    pub client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    pub fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// One connection to PostgreSQL, reopened when it dies.
pub struct Session {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    /// What every new connection runs first.
    setup: String,
    /// `host:port`, for messages.
    endpoint: String,
    connection: Option<Connection>,
    /// While set, calls fail at once instead of reconnecting (backoff after a failed attempt).
    retry_at: Option<Instant>,
    retry_pause: Duration,
    /// The last connect failed in a way waiting will not fix (see `refused`).
    pub refused: bool,
}

impl Session {
    /// Settings for `url` (without `sslmode`/`sslrootcert`, see `tls::split_url`); connects
    /// later, on first use.
    pub fn new(
        url: &str,
        tls: &TlsSettings,
        lock_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<Session, String> {
        let mut config: postgres::Config = url.parse().map_err(|error| describe(&error))?;
        config.ssl_mode(tls.client_mode());
        // Bounded waits for a database that is gone: connecting, and a silent peer (keepalives
        // probe an idle connection; tcp_user_timeout ends one whose sent data goes unacknowledged).
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_WITHIN);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(10));
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("hookbox");
        }
        // "relation … already exists, skipping" and the like: the server's chatter, not ours.
        config.notice_callback(|notice| {
            log::debug!(code = notice.code().code(); "PostgreSQL {}: {}", notice.severity(), notice.message());
        });
        let endpoint = endpoint(&config);
        // A 200 means durable: the commit waits for the WAL flush, whatever the server default.
        // lock_timeout: a write waiting on a lock fails (503) like SQLite's busy timeout.
        // statement_timeout: no statement of ours holds the connection past it (reads set their
        // own, shorter one).
        let setup = format!(
            "SET synchronous_commit = on; SET lock_timeout = {}; SET statement_timeout = {}; \
             SET idle_in_transaction_session_timeout = 60000",
            lock_timeout.as_millis(),
            statement_timeout.as_millis().max(1),
        );
        Ok(Session {
            config,
            tls: tls.connector()?,
            setup,
            endpoint,
            connection: None,
            retry_at: None,
            retry_pause: RECONNECT_FIRST,
            refused: false,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The live connection, reconnecting (within `within`) if the last one died and the backoff
    /// pause is over.
    pub fn connection(&mut self, within: Duration) -> Result<&mut Connection, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.client.is_closed())
        {
            self.lose();
        }
        if self.connection.is_none() {
            if let Some(at) = self.retry_at {
                if Instant::now() < at {
                    return Err(StoreError::Unavailable(format!(
                        "PostgreSQL at {} is not answering; reconnecting",
                        self.endpoint
                    )));
                }
            }
            match self.connect(within) {
                Ok(client) => {
                    self.retry_at = None;
                    self.retry_pause = RECONNECT_FIRST;
                    self.connection = Some(Connection {
                        client,
                        statements: HashMap::new(),
                    });
                }
                Err(error) => {
                    self.schedule_retry();
                    return Err(error);
                }
            }
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// Opens a connection on a helper thread and waits for it at most `within`. A connect still
    /// going on then is left to finish or fail there; its client is dropped there too.
    fn connect(&mut self, within: Duration) -> Result<Client, StoreError> {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let (config, tls, setup) = (self.config.clone(), self.tls.clone(), self.setup.clone());
        let spawned = thread::Builder::new()
            .name("pg-connect".to_owned())
            .stack_size(256 * 1024)
            .spawn(move || {
                let opened = config.connect(tls).and_then(|mut client| {
                    client.batch_execute(&setup)?;
                    Ok(client)
                });
                // Nobody waits any more: the client is dropped here, not on the caller's thread.
                let _ = sender.send(opened);
            });
        if let Err(error) = spawned {
            return Err(StoreError::Unavailable(format!(
                "cannot start connecting to PostgreSQL: {error}"
            )));
        }
        match receiver.recv_timeout(within) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => {
                self.refused = refused(&error);
                Err(self.sort(&error, Doing::Writing, "cannot connect to"))
            }
            Err(_) => Err(StoreError::Unavailable(format!(
                "PostgreSQL at {} did not complete a connection within {} ms",
                self.endpoint,
                within.as_millis()
            ))),
        }
    }

    /// Forgets the connection. Dropping a client waits for the server to take its goodbye, so a
    /// silent server's client is dropped on a thread of its own.
    pub fn lose(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = thread::Builder::new()
                .name("pg-drop".to_owned())
                .stack_size(64 * 1024)
                .spawn(move || drop(connection));
            // The first attempt after losing a connection comes soon; later ones back off.
            self.retry_pause = RECONNECT_FIRST;
            self.retry_at = None;
        }
    }

    fn schedule_retry(&mut self) {
        // Jitter, so the connections of many instances do not all knock at the same instant.
        let jitter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos() % 1000);
        let pause = self.retry_pause + self.retry_pause * jitter / 2000;
        self.retry_at = Some(Instant::now() + pause);
        self.retry_pause = (self.retry_pause * 2).min(RECONNECT_MAX);
    }

    /// Sorts an error, and forgets the connection when the error means it is gone.
    pub fn fail(&mut self, error: &postgres::Error, doing: Doing) -> StoreError {
        let sorted = self.sort(error, doing, "");
        let closed = self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.client.is_closed());
        if closed || connection_lost(error) {
            self.lose();
        }
        sorted
    }

    /// Runs `work` on the connection. When it fails because a connection that was already open
    /// turns out to be dead (the database restarted while this one sat idle), it runs once more
    /// on a new connection: everything `work` may be is safe to repeat (reads, purges, and the
    /// insert, whose `ON CONFLICT DO NOTHING` makes a repeat of a committed batch duplicates),
    /// and a stale connection is no reason for a 503 once the database is back.
    pub fn run<T>(
        &mut self,
        doing: Doing,
        mut work: impl FnMut(&mut Connection) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let was_open = self.connection.is_some();
        let connection = self.connection(CONNECT_WITHIN)?;
        let error = match work(connection) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let lost = connection_lost(&error) || connection.client.is_closed();
        if !(lost && was_open) {
            return Err(self.fail(&error, doing));
        }
        log::info!(endpoint = self.endpoint.as_str(); "the PostgreSQL connection was stale ({}); reconnecting and trying once more", describe(&error));
        self.lose();
        let connection = self.connection(CONNECT_WITHIN)?;
        let result = work(connection);
        result.map_err(|error| self.fail(&error, doing))
    }

    /// Conditions a sender can wait out are `Unavailable`; a read stopped by
    /// `statement_timeout` is `QueryTimeout`; anything else is a bug or a misconfiguration.
    fn sort(&self, error: &postgres::Error, doing: Doing, what: &str) -> StoreError {
        let message = format!(
            "{what} PostgreSQL at {}: {}",
            self.endpoint,
            describe(error)
        );
        let message = message.trim_start().to_owned();
        let Some(code) = error.code() else {
            // No SQLSTATE: the connection failed, or a value did not convert (a bug of ours).
            return if connection_lost(error) || !what.is_empty() {
                StoreError::Unavailable(message)
            } else {
                StoreError::Internal(message)
            };
        };
        if *code == SqlState::QUERY_CANCELED && doing == Doing::Reading {
            return StoreError::QueryTimeout;
        }
        // A value the database cannot take (class 22: data exception) or past one of its limits
        // (54000: e.g. an index row over ~2.7 kB): that row's fault, not the store's.
        if doing == Doing::Writing
            && (code.code().starts_with("22") || *code == SqlState::PROGRAM_LIMIT_EXCEEDED)
        {
            return StoreError::Refused(message);
        }
        let waitable = matches!(
            &code.code()[..2],
            // connection, resources (disk full, too many connections), operator intervention
            // (shutdown, cancel), system error, transaction rollback (deadlock, serialisation)
            "08" | "53" | "57" | "58" | "40"
        ) || matches!(
            *code,
            SqlState::LOCK_NOT_AVAILABLE | SqlState::READ_ONLY_SQL_TRANSACTION
        );
        if waitable {
            StoreError::Unavailable(message)
        } else {
            StoreError::Internal(message)
        }
    }

    /// Closes the connection politely (the server ends its backend at once).
    pub fn close(self) {
        if let Some(connection) = self.connection {
            let _ = connection.client.close();
        }
    }
}

/// The error with what the server said: severity, SQLSTATE and message for a server error (never
/// a bare "db error"), and the cause under a client error ("error connecting to server: …").
pub fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// True for errors after which this connection cannot be used again: the server ended the
/// session (shutdown, restart, terminated backend), or the socket failed or closed.
pub fn connection_lost(error: &postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || matches!(
                    *code,
                    SqlState::ADMIN_SHUTDOWN
                        | SqlState::CRASH_SHUTDOWN
                        | SqlState::CANNOT_CONNECT_NOW
                )
        }
        None => {
            error.is_closed()
                || std::error::Error::source(error)
                    .is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}

/// A connect failure that waiting will not fix: the server refused these credentials or this
/// database, or its certificate failed our checks. At startup these stop hookbox (an operator
/// must act); later they are 503s like any other outage.
fn refused(error: &postgres::Error) -> bool {
    if let Some(code) = error.code() {
        return code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) =
            inner.or_else(|| cause.downcast_ref::<rustls::Error>())
        {
            return true;
        }
        // `sslmode=require` against a server without TLS: the client says so only in words.
        if cause.to_string().contains("server does not support TLS") {
            return true;
        }
        source = cause.source();
    }
    false
}

/// `host:port` of the first host, as messages name it.
fn endpoint(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}
