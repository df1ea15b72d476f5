//! The PostgreSQL store: the same seam as SQLite, for many hookbox instances sharing one database.
//!
//! SQL lives in `queries`, `migrate` and `sql/postgres/`. Each worker owns one connection, the
//! writer owns one; there is no pool. A connection that dies (database restarted, backend
//! terminated, network cut) is dropped and opened again on a later call, after a growing pause
//! (`connection`), so hookbox recovers by itself; meanwhile every call answers
//! `StoreError::Unavailable` (503 + `Retry-After`) instead of waiting. A database that does not
//! answer at startup is no reason to stop: every store migrates (under the advisory lock) on its
//! first use once the database answers, and serves from then on.
//!
//! Exactly-once across instances rests on the primary key alone: a batch is one
//! `INSERT … ON CONFLICT (message_id) DO NOTHING RETURNING message_id` statement, whose returned
//! ids are the created ones. The same statement keeps the aggregates (per-sender rows and
//! sharded totals) in its own transaction, so `/stats` and totals are always exact.

mod connection;
mod escape;
mod feed;
mod migrate;
mod queries;
mod tls;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use postgres::error::SqlState;

use self::connection::{Doing, Session};
use self::migrate::Migration;
use self::queries::Export;
use super::{
    Checked, ExportFilter, Inserted, ListQuery, Moment, Page, PostgresOptions, Retention, Stats,
    StoreError, StoredMessage,
};
use crate::message::Message;

pub use self::migrate::SCHEMA_VERSION;
pub use self::queries::PURGE_LOCK;

/// Attempts of one batch when PostgreSQL aborts it for a deadlock or a serialisation failure
/// (possible when instances insert overlapping batches; the rows are sorted to make it rare).
const INSERT_ATTEMPTS: usize = 3;

/// `/health/ready` gets its answer from the database within this, whatever the database does.
const READY_WITHIN: Duration = Duration::from_millis(1500);

/// No statement of the writer runs longer on the server (reads stop at the query timeout).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the writer tries a startup preparation the database was not there for.
const PREPARE_RETRY: Duration = Duration::from_secs(1);

/// How long the writer's connection sits unused before the writer checks it (`maintain`).
const PROBE_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Reads a `postgres://` URL as the store will (for `DATABASE_URL` validation): `sslmode` and
/// `sslrootcert` with libpq's meanings, the rest as the client library parses it.
pub fn parse_url(url: &str) -> Result<postgres::Config, String> {
    let (rest, _) = tls::split_url(url)?;
    rest.parse::<postgres::Config>()
        .map_err(|error| connection::describe(&error))
}

/// One connection to PostgreSQL, reopened when it dies.
pub struct Postgres {
    session: Session,
    query_timeout_ms: u128,
    /// Set once this store has seen the schema at `SCHEMA_VERSION`.
    migrated: bool,
    /// The server's startup preparation (migrations, then the text index as given), when the
    /// database did not answer at startup: done at the first call that finds it answering.
    prepare_pending: Option<bool>,
}

impl Postgres {
    /// Settings for the database `config` names, and a first connection attempt. A database
    /// that does not answer is not an error here (calls answer `Unavailable` until it does);
    /// one that refuses us (no such database, authentication failed) is.
    pub fn open(options: &PostgresOptions) -> Result<Postgres, StoreError> {
        let fatal = |error: String| StoreError::Internal(format!("DATABASE_URL: {error}"));
        let (url, tls) = tls::split_url(&options.url).map_err(fatal)?;
        let session =
            Session::new(&url, &tls, options.lock_timeout, STATEMENT_TIMEOUT).map_err(fatal)?;
        let mut store = Postgres {
            session,
            query_timeout_ms: options.query_timeout.as_millis().max(1),
            migrated: false,
            prepare_pending: None,
        };
        let first = store
            .session
            .connection(connection::CONNECT_WITHIN)
            .map(drop);
        match first {
            Err(StoreError::Unavailable(why)) if store.session.refused => {
                Err(StoreError::Internal(why))
            }
            Ok(()) | Err(StoreError::Unavailable(_)) => Ok(store),
            Err(error) => Err(error),
        }
    }

    /// Brings the schema up to `SCHEMA_VERSION` under an advisory lock, one transaction per
    /// migration: instances starting together take turns, and the later ones find it done.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        self.locked(migrate::migrate_locked)?;
        self.migrated = true;
        Ok(())
    }

    /// Creates or drops the trigram index (the server's startup decision), under the lock.
    pub fn use_text_index(&mut self, on: bool) -> Result<(), StoreError> {
        self.locked(|client| migrate::use_text_index(client, on))
    }

    /// Runs schema work with no statement timeout (a migration, or a wait for another
    /// instance's, may take longer than any statement), then restores it.
    fn locked(
        &mut self,
        work: impl FnOnce(&mut postgres::Client) -> Result<(), Migration>,
    ) -> Result<(), StoreError> {
        let connection = self.session.connection(connection::CONNECT_WITHIN)?;
        let client = &mut connection.client;
        let result = client
            .batch_execute("SET statement_timeout = 0")
            .map_err(Migration::Database)
            .and_then(|()| work(client))
            .and_then(|()| {
                let bound = format!("SET statement_timeout = {}", STATEMENT_TIMEOUT.as_millis());
                Ok(client.batch_execute(&bound)?)
            });
        match result {
            Ok(()) => Ok(()),
            Err(Migration::Database(error)) => Err(self.session.fail(&error, Doing::Writing)),
            Err(Migration::TooNew(current)) => {
                Err(super::newer_schema(current.into(), SCHEMA_VERSION))
            }
        }
    }

    /// The schema version the database holds (0: none yet), reconnecting if needed.
    pub fn stored_schema_version(&mut self) -> Result<i64, StoreError> {
        self.session.run(Doing::Reading, |connection| {
            migrate::current_version(&mut connection.client)
        })
    }

    /// The database did not answer at startup: the server's preparation (migrations, then the
    /// text index as `text_index` says) is done as soon as it does (`maintain`, or a first
    /// call).
    pub fn prepare_later(&mut self, text_index: bool) {
        self.prepare_pending = Some(text_index);
    }

    /// The writer's upkeep: a pending startup preparation, retried every second until the
    /// database answers; and, once the connection has sat unused for `PROBE_IDLE_AFTER`, a check
    /// of it (`check_ready`, within `READY_WITHIN`), repeated every `PROBE_IDLE_AFTER` while no
    /// message comes. So a connection a database restart or a partition ended is replaced
    /// before the next webhook needs it, and `/health/ready` hears what the writer's own
    /// connection says (the second value). Retention is above the seam; PostgreSQL
    /// checkpoints by itself.
    pub fn maintain(&mut self, moment: Moment) -> Checked {
        if let Err(error) = self.ensure_schema()
            && self.prepare_pending.is_some()
        {
            log::warn!("the database is not prepared yet (retried in 1 s): {error}");
            let why = format!("the writer's connection: database not ready: {error}");
            return Checked {
                call_again_in: Some(PREPARE_RETRY),
                connection: Some(Err(why)),
            };
        }
        let connection = match moment {
            Moment::AfterCommit => None,
            Moment::Idle => Some(
                self.check_ready()
                    .map_err(|why| format!("the writer's connection: {why}")),
            ),
        };
        Checked {
            call_again_in: Some(PROBE_IDLE_AFTER),
            connection,
        }
    }

    /// Before any read or write: the schema is this build's. A pending startup preparation is
    /// done here; otherwise a schema not (yet) at this build's version is a 503 until the server
    /// that prepares it has.
    fn ensure_schema(&mut self) -> Result<(), StoreError> {
        if self.migrated {
            return Ok(());
        }
        if let Some(text_index) = self.prepare_pending {
            self.migrate()?;
            self.use_text_index(text_index)?;
            self.prepare_pending = None;
            log::info!("the database answers: schema migrated, serving");
            return Ok(());
        }
        match self.stored_schema_version()? {
            SCHEMA_VERSION => {
                self.migrated = true;
                Ok(())
            }
            other => Err(StoreError::Unavailable(format!(
                "the database's schema version is {other}, this build expects {SCHEMA_VERSION}"
            ))),
        }
    }

    /// Answers a trivial query within `READY_WITHIN` (connecting if need be) and carries this
    /// build's schema. A connection that does not answer in time is given up.
    pub fn check_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        // Twice at most: a connection the server ended while it sat idle (a restart) fails at
        // once, and a new one is tried within what is left of the budget. One that does not
        // answer in time is given up (it may be stuck behind a statement that never returns).
        for attempt in 0..2 {
            let left = READY_WITHIN.saturating_sub(started.elapsed());
            let connection = self
                .session
                .connection(left.max(Duration::from_millis(100)))
                .map_err(|error| format!("database does not answer: {error}"))?;
            let left = READY_WITHIN.saturating_sub(started.elapsed());
            let Err(error) = connection
                .client
                .is_valid(left.max(Duration::from_millis(100)))
            else {
                break;
            };
            let endpoint = self.session.endpoint().to_owned();
            self.session.lose();
            if attempt == 1 || !connection::connection_lost(&error) {
                return Err(format!(
                    "database does not answer: PostgreSQL at {endpoint}: {}",
                    connection::describe(&error)
                ));
            }
        }
        self.ensure_schema()
            .map_err(|error| format!("database not ready: {error}"))
    }

    /// Stores the batch with one statement (one transaction, one durable commit). Repeats of an
    /// id inside the batch are left out of the statement and answered `Duplicate`. A connection
    /// found dead is replaced and the batch sent once more (`Session::run`).
    pub fn insert_batch(
        &mut self,
        messages: &[Message],
        received_at: &str,
    ) -> Result<Vec<Inserted>, StoreError> {
        self.ensure_schema()?;
        let mut seen = HashSet::with_capacity(messages.len());
        let first: Vec<bool> = messages
            .iter()
            .map(|message| seen.insert(message.message_id.as_str()))
            .collect();
        let unique: Vec<&Message> = messages
            .iter()
            .zip(&first)
            .filter_map(|(message, first)| first.then_some(message))
            .collect();
        let created = self.session.run(Doing::Writing, |connection| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = connection
                    .statement(queries::INSERT_BATCH)
                    .and_then(|statement| {
                        queries::insert_in(&mut connection.client, &statement, &unique, received_at)
                    });
                match result {
                    Err(error) if attempt < INSERT_ATTEMPTS && retryable(&error) => continue,
                    other => return other,
                }
            }
        })?;
        let mut answered = HashSet::with_capacity(created.len());
        Ok(messages
            .iter()
            .zip(first)
            .map(|(message, first)| {
                if first
                    && created.contains(&message.message_id)
                    && answered.insert(&message.message_id)
                {
                    Inserted::Created
                } else {
                    Inserted::Duplicate
                }
            })
            .collect())
    }

    /// One page and the exact total from one snapshot (a read-only repeatable-read
    /// transaction), each statement bounded by `HOOKBOX_QUERY_TIMEOUT_MS`.
    pub fn list(&mut self, query: &ListQuery) -> Result<Page, StoreError> {
        self.ensure_schema()?;
        let timeout = self.query_timeout_ms;
        self.session.run(Doing::Reading, |connection| {
            queries::list_in(&mut connection.client, timeout, query)
        })
    }

    /// From the aggregates: 16 total shards, ten index entries, and the two ends of the ts index.
    pub fn stats(&mut self) -> Result<Stats, StoreError> {
        self.ensure_schema()?;
        let timeout = self.query_timeout_ms;
        self.session.run(Doing::Reading, |connection| {
            queries::stats_in(&mut connection.client, timeout)
        })
    }

    /// Deletes at most `batch` rows retention says must go, keeping the aggregates exact, in one
    /// short transaction. Only one instance purges at a time (an advisory lock taken without
    /// waiting): the others find it held and return 0.
    pub fn purge(&mut self, retention: &Retention, batch: usize) -> Result<usize, StoreError> {
        if retention.is_unlimited() || batch == 0 {
            return Ok(0);
        }
        self.ensure_schema()?;
        let cutoff = retention.cutoff();
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.session.run(Doing::Writing, |connection| {
            let keep = retention.keep_messages;
            queries::purge_in(&mut connection.client, keep, cutoff.as_deref(), batch)
        })
    }

    /// Streams matching rows in `/messages` order through a portal, a few hundred at a time,
    /// from one snapshot; no statement timeout (an export of a large store takes a while).
    pub fn export(
        &mut self,
        filter: &ExportFilter,
        each: &mut dyn FnMut(&StoredMessage) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let connection = self.session.connection(connection::CONNECT_WITHIN)?;
        let result = queries::export_in(&mut connection.client, filter, each);
        match result {
            Ok(()) => Ok(()),
            Err(Export::Write(error)) => Err(StoreError::Unavailable(format!(
                "could not write the export: {error}"
            ))),
            Err(Export::Database(error)) => Err(self.session.fail(&error, Doing::Reading)),
        }
    }

    /// Closes the connection politely (the server ends its backend at once).
    pub fn close(self) {
        self.session.close();
    }
}

/// A deadlock or serialisation failure: the batch may simply be sent again.
fn retryable(error: &postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
    )
}
