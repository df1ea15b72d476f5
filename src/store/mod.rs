//! The storage seam: what handlers, workers, the writer and the CLI may ask of a store.
//!
//! Callers see only `Store` and the plain types below; which database sits behind it, and all of
//! its SQL, stays in the submodule that implements it. Every worker owns one `Store` (reads), the
//! writer owns one (writes); there is no pool.

pub mod feed;
mod options;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;
mod upkeep;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::message::Message;
use crate::timestamp;

pub use options::{Durability, PostgresOptions, SqliteOptions, StoreOptions};
pub use upkeep::{Checked, Maintained, Moment, Upkeep};

/// What a build without the `postgres` cargo feature says about a `postgres://` URL.
pub const NO_POSTGRES: &str =
    "this hookbox was built without PostgreSQL support (cargo feature `postgres`)";

/// One connection to the configured store.
pub enum Store {
    Sqlite(sqlite::Sqlite),
    /// Boxed: its connection settings are large, and a `Store` moves into every worker.
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::Postgres>),
}

/// Why a store operation failed, sorted by what the caller should do about it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// The store can't serve now but a retry may succeed: busy/locked past the timeout, disk
    /// full, read-only, I/O error, connection refused/lost/restarting.
    Unavailable(String),
    /// A read ran past `HOOKBOX_QUERY_TIMEOUT_MS` and was stopped.
    QueryTimeout,
    /// The store cannot hold a row of the batch (a value past an index's size limit, or one
    /// the database refuses): retrying will not help. The writer then stores the batch row by
    /// row, so only that row's sender hears of it.
    Refused(String),
    /// A bug or corruption.
    Internal(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(cause) => write!(f, "store unavailable: {cause}"),
            StoreError::QueryTimeout => f.write_str("query stopped at the query timeout"),
            StoreError::Refused(cause) => write!(f, "the store cannot hold this row: {cause}"),
            StoreError::Internal(cause) => write!(f, "store error: {cause}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    Duplicate,
}

/// A stored message as the API and export return it (`ts` exactly as received). The field order
/// is the JSON key order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: String,
    pub text: Option<String>,
}

/// A position in `/messages` order (`ts_key`, then `message_id`): rows strictly after it come next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub ts_key: String,
    pub message_id: String,
}

/// Filters and page for `list`. Every filter that is `Some` must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// 1..=100.
    pub limit: u32,
    /// Any value: a huge offset must read nothing, never overflow into "no limit".
    pub offset: u64,
    /// Keyset page: only rows after this position (then `offset` is 0).
    pub after: Option<Position>,
    pub from: Option<String>,
    /// Sort key of the `since` instant (see `timestamp::sort_key`).
    pub since_key: Option<String>,
    /// The `q` needle as given; the store folds it with `text::fold`.
    pub text: Option<String>,
}

/// One page and the number of rows matching the filters in all (ignoring `after` and `offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<StoredMessage>,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SenderCount {
    pub from: String,
    pub count: i64,
}

/// What `/stats` answers; field order is the JSON key order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub total_messages: i64,
    pub senders_count: i64,
    pub messages_per_sender: Vec<SenderCount>,
    pub first_message_ts: Option<String>,
    pub last_message_ts: Option<String>,
}

/// Retention: 0 means "no limit" for both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest this many messages by arrival.
    pub keep_messages: u64,
    /// Drop what arrived more than this many days ago.
    pub keep_days: u64,
}

impl Retention {
    pub fn is_unlimited(&self) -> bool {
        self.keep_messages == 0 && self.keep_days == 0
    }

    /// With `keep_days`: the `received_at` (as stores write it) before which a message must go.
    pub fn cutoff(&self) -> Option<String> {
        (self.keep_days > 0).then(|| {
            let age = Duration::from_secs(self.keep_days.saturating_mul(86_400));
            timestamp::format_utc(SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH))
        })
    }
}

/// Which rows `export` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub since_key: Option<String>,
    pub from: Option<String>,
}

impl Store {
    /// One connection to the configured database (`Config::store_options`).
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        match options {
            StoreOptions::Sqlite(options) => sqlite::Sqlite::open(options).map(Store::Sqlite),
            #[cfg(feature = "postgres")]
            StoreOptions::Postgres(options) => {
                postgres::Postgres::open(options).map(|store| Store::Postgres(Box::new(store)))
            }
            #[cfg(not(feature = "postgres"))]
            StoreOptions::Postgres(_) => Err(StoreError::Internal(NO_POSTGRES.to_owned())),
        }
    }

    /// A connection that only reads (`hookbox export`): creates and migrates nothing. SQLite opens
    /// the file read-only; PostgreSQL connects as usual (export runs one read-only snapshot).
    pub fn open_read_only(options: &StoreOptions) -> Result<Store, StoreError> {
        match options {
            StoreOptions::Sqlite(options) => {
                sqlite::Sqlite::open_read_only(options).map(Store::Sqlite)
            }
            postgres => Store::open(postgres),
        }
    }

    /// The schema version this build brings the store to.
    pub fn schema_version(&self) -> i64 {
        match self {
            Store::Sqlite(_) => sqlite::SCHEMA_VERSION,
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => postgres::SCHEMA_VERSION,
        }
    }

    /// The schema version the database holds (0: none yet).
    pub fn stored_schema_version(&mut self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(store) => store.stored_schema_version(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.stored_schema_version(),
        }
    }

    /// Brings the schema up to date; runs once at startup before other connections open. A
    /// database newer than this build is refused, untouched.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        let current = self.stored_schema_version()?;
        refuse_newer(current, self.schema_version())?;
        match self {
            Store::Sqlite(store) => store.migrate(current),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.migrate(),
        }
    }

    /// The server's startup decision (`HOOKBOX_TEXT_INDEX`): creates and fills the text index,
    /// or drops it, and (SQLite) adds any rows waiting for it before serving. Only the server
    /// calls this: a CLI subcommand uses the index as it finds it.
    pub fn use_text_index(&mut self, on: bool) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.use_text_index(on),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.use_text_index(on),
        }
    }

    /// The server's startup preparation (`migrate`, `use_text_index`) found the database not
    /// answering: PostgreSQL does it as soon as the database answers, meanwhile answering 503
    /// (true); SQLite cannot wait (false: startup fails).
    pub fn prepare_later(&mut self, text_index: bool) -> bool {
        match self {
            Store::Sqlite(_) => {
                let _ = text_index;
                false
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => {
                store.prepare_later(text_index);
                true
            }
        }
    }

    /// What a CLI subcommand (`import`) may do to the schema: a new, empty database gets this
    /// build's schema (and the text index as `text_index` says), as a first server start would
    /// give it; any other database is left exactly as it is, since a live server may depend on
    /// it, and must already hold this build's schema.
    pub fn prepare_for_tool(&mut self, text_index: bool) -> Result<(), StoreError> {
        let current = self.stored_schema_version()?;
        let expected = self.schema_version();
        if current == 0 {
            self.migrate()?;
            return self.use_text_index(text_index);
        }
        refuse_newer(current, expected)?;
        if current < expected {
            return Err(StoreError::Internal(format!(
                "database schema version {current} is older than this build's ({expected}); \
                 start the server (hookbox serve) once to migrate it"
            )));
        }
        Ok(())
    }

    /// Ready = answers a query, carries this build's schema, and is not broken.
    pub fn check_ready(&mut self) -> Result<(), String> {
        if let Some(why) = self.broken() {
            return Err(why);
        }
        // PostgreSQL answers within its own budget, whatever the database does.
        #[cfg(feature = "postgres")]
        if let Store::Postgres(store) = self {
            return store.check_ready();
        }
        let expected = self.schema_version();
        match self.stored_schema_version() {
            Ok(version) if version == expected => Ok(()),
            Ok(other) => Err(format!(
                "schema version is {other}, this build expects {expected}"
            )),
            Err(error) => Err(format!("database does not answer: {error}")),
        }
    }

    /// Set once this connection can no longer keep the store's promises (SQLite: a durability
    /// setting it could not restore); its writes then fail until hookbox restarts.
    pub fn broken(&self) -> Option<String> {
        match self {
            Store::Sqlite(store) => store.broken(),
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => None,
        }
    }

    /// One transaction, one durable commit; aggregates updated inside it. (SQLite's text index
    /// takes the writer's rows later, in `maintain`; `list` reads them from the tail till then.
    /// PostgreSQL's is an ordinary index, updated inside it.)
    /// Results in input order; a repeated id in one batch is `Duplicate` from its 2nd occurrence.
    /// On error nothing of the batch is stored.
    pub fn insert_batch(
        &mut self,
        messages: &[Message],
        received_at: &str,
    ) -> Result<Vec<Inserted>, StoreError> {
        match self {
            Store::Sqlite(store) => store.insert_batch(messages, received_at),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.insert_batch(messages, received_at),
        }
    }

    /// One page and the exact total, from one read snapshot, bounded by the query timeout,
    /// never buffering more than `limit` rows.
    pub fn list(&mut self, query: &ListQuery) -> Result<Page, StoreError> {
        match self {
            Store::Sqlite(store) => store.list(query),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.list(query),
        }
    }

    /// From the aggregates; equal to a full recount, always.
    pub fn stats(&mut self) -> Result<Stats, StoreError> {
        match self {
            Store::Sqlite(store) => store.stats(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.stats(),
        }
    }

    /// Deletes at most `batch` rows that retention says must go, in one short transaction,
    /// keeping aggregates and the text index exact; returns how many went (0 = nothing to do).
    pub fn purge(&mut self, retention: &Retention, batch: usize) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(store) => store.purge(retention, batch),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.purge(retention, batch),
        }
    }

    /// Upkeep between commits, called by the writer after each commit and when idle (and by
    /// `import` between batches): retention, then the store's own upkeep, each stopping as soon
    /// as `upkeep.work_waiting` says a message waits. Failures are logged and retried at a
    /// later call.
    pub fn maintain(&mut self, upkeep: &Upkeep<'_>) -> Maintained {
        // PostgreSQL checks the writer's connection first: a purge on one found dead would only
        // fail (and log it) every second while the database is away. The writer's SQLite
        // connection is a file handle; the workers' check of the same file is its check.
        let checked = match self {
            Store::Sqlite(_) => Checked::default(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.maintain(upkeep.moment),
        };
        let purged = match checked.connection {
            Some(Err(_)) => 0,
            _ => upkeep::purge_some(self, upkeep),
        };
        let again = match self {
            Store::Sqlite(store) => store.maintain(upkeep.moment, upkeep.work_waiting),
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => checked.call_again_in,
        };
        Maintained {
            purged,
            call_again_in: again.map_or(upkeep::IDLE_PURGE_EVERY, |again| {
                again.min(upkeep::IDLE_PURGE_EVERY)
            }),
            connection: checked.connection,
        }
    }

    /// Streams matching rows in `/messages` order, in constant memory.
    pub fn export(
        &mut self,
        filter: &ExportFilter,
        each: &mut dyn FnMut(&StoredMessage) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.export(filter, each),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.export(filter, each),
        }
    }

    /// The SQLite store behind this one, for what only SQLite has (its tests reach the text
    /// index's tail through it); `None` on PostgreSQL.
    pub fn as_sqlite(&mut self) -> Option<&mut sqlite::Sqlite> {
        match self {
            Store::Sqlite(store) => Some(store),
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => None,
        }
    }

    /// Called once by the writer at shutdown, and by `import` when done (SQLite: indexes what
    /// waits and empties the WAL).
    pub fn close(self) {
        match self {
            Store::Sqlite(store) => store.close(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.close(),
        }
    }
}

/// A database whose schema is newer than this build is never touched.
fn refuse_newer(current: i64, expected: i64) -> Result<(), StoreError> {
    if current > expected {
        return Err(newer_schema(current, expected));
    }
    Ok(())
}

/// The error for a database newer than this build (also found under PostgreSQL's migration
/// lock, should another instance have migrated meanwhile).
fn newer_schema(current: i64, expected: i64) -> StoreError {
    StoreError::Internal(format!(
        "database schema version {current} is newer than this build ({expected})"
    ))
}
