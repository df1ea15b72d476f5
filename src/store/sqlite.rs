//! The SQLite store: opening connections, migrations, and every query the service runs on SQLite.
//!
//! SQL lives here and in `sql/`, nowhere else. Each worker owns one connection; there is no pool
//! and no lock of ours around a connection. Migrations run once at startup, before workers open
//! theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    ExportFilter, Inserted, ListQuery, Page, Retention, SenderCount, Stats, StoreError,
    StoredMessage,
};
use crate::config::{Config, Database};
use crate::message::Message;
use crate::text;

/// Migrations in order; migration `i` brings `PRAGMA user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[include_str!("../../sql/001_init.sql")];

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). Small on purpose:
/// the target boxes have little memory and the OS page cache sits behind it anyway.
const CACHE_KIB: i64 = 1024;

/// SQLite's own default threshold: about 4 MiB of WAL with 4 KiB pages.
const CHECKPOINT_FRAMES: i32 = 1000;

/// Sorts a SQLite error by what the caller can do about it: conditions a sender can wait out
/// (busy, locked, full, read-only, I/O) are `Unavailable`; anything else is a bug or corruption.
fn store_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match error.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | DiskFull | ReadOnly | SystemIoFailure | CannotOpen
            | OutOfMemory,
        ) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Internal(error.to_string()),
    }
}

pub struct Sqlite {
    conn: Connection,
    /// Frames in the WAL after this connection's last commit (see `open`).
    wal_frames: Arc<AtomicI32>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file with the settings every connection shares.
    pub fn open(config: &Config) -> Result<Sqlite, StoreError> {
        Sqlite::open_connection(config).map_err(|error| match error {
            // Opening is the one place where "cannot open" names a setting, not a passing state.
            rusqlite::Error::InvalidParameterName(reason) => StoreError::Internal(reason),
            other => store_error(other),
        })
    }

    fn open_connection(config: &Config) -> rusqlite::Result<Sqlite> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let Database::Sqlite(path) = &config.database else {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "{} is not an SQLite database",
                config.database.describe()
            )));
        };
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(config.busy_timeout)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "could not switch the database to WAL (journal_mode is {mode})"
            )));
        }
        // FULL (the default): a commit returns only after the WAL is synced, so a 200 survives
        // power loss. NORMAL: synced at checkpoints only (see README, "Durability").
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA cache_size = -{CACHE_KIB}; PRAGMA temp_store = MEMORY;",
            config.durability.as_pragma()
        ))?;
        if config.max_db_mib > 0 {
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            let bytes = i64::try_from(config.max_db_mib * 1024 * 1024).unwrap_or(i64::MAX);
            conn.pragma_update(None, "max_page_count", bytes / page_size.max(512))?;
        }
        conn.create_scalar_function(
            "hookbox_contains_folded",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            // Borrowed values: no allocation per row of a full scan.
            |ctx| {
                let needle = ctx
                    .get_raw(1)
                    .as_str()
                    .map_err(|error| rusqlite::Error::UserFunctionError(Box::new(error)))?;
                Ok(match ctx.get_raw(0) {
                    ValueRef::Text(text) => std::str::from_utf8(text)
                        .is_ok_and(|text| text::contains_folded(text, needle)),
                    _ => false,
                })
            },
        )?;
        // Replaces SQLite's automatic checkpoint, which runs inside the commit that crosses the
        // threshold (so its requests would wait for it), with a count of WAL frames after each
        // commit: `after_commit` checkpoints when it says so. Only the writer commits, so on the
        // workers' connections the hook never fires.
        let wal_frames = Arc::new(AtomicI32::new(0));
        let frames = Arc::clone(&wal_frames);
        conn.wal_hook(Some(move |_: &mut _, pages| {
            frames.store(pages, Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Sqlite { conn, wal_frames })
    }

    /// Brings the schema up to `SCHEMA_VERSION`, one transaction per migration.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        let current = self.schema_version().map_err(store_error)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::Internal(format!(
                "database schema version {current} is newer than this build ({SCHEMA_VERSION})"
            )));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let mut run = || -> rusqlite::Result<()> {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", index as i64 + 1)?;
                tx.commit()
            };
            run().map_err(store_error)?;
        }
        Ok(())
    }

    fn schema_version(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
    }

    /// Proves the database answers a query (reading the schema version opens a read transaction
    /// on the file) and carries the schema this build expects.
    pub fn check_ready(&mut self) -> Result<(), String> {
        match self.schema_version() {
            Ok(SCHEMA_VERSION) => Ok(()),
            Ok(other) => Err(format!(
                "schema version is {other}, this build expects {SCHEMA_VERSION}"
            )),
            Err(error) => Err(format!("database does not answer: {error}")),
        }
    }

    /// Stores each message unless its id is already present (the first stored row is never
    /// changed), all in one transaction: one commit, one fsync. Results are in input order; a
    /// repeated id within the batch is `Duplicate` from its second occurrence on. If anything
    /// fails the whole batch is rolled back and nothing is stored.
    pub fn insert_batch(
        &mut self,
        messages: &[Message],
        received_at: &str,
    ) -> Result<Vec<Inserted>, StoreError> {
        self.try_insert_batch(messages, received_at)
            .map_err(store_error)
    }

    fn try_insert_batch(
        &mut self,
        messages: &[Message],
        received_at: &str,
    ) -> rusqlite::Result<Vec<Inserted>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let results = {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (message_id) DO NOTHING",
            )?;
            messages
                .iter()
                .map(|message| {
                    let changed = insert.execute(params![
                        message.message_id,
                        message.from,
                        message.to,
                        message.ts,
                        message.ts_key,
                        message.text,
                        received_at,
                    ])?;
                    Ok(if changed == 1 {
                        Inserted::Created
                    } else {
                        Inserted::Duplicate
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.commit()?;
        Ok(results)
    }

    /// One page of messages in (instant, message_id) order, and how many match in all.
    /// Both come from one read transaction, so `total` always agrees with the page.
    pub fn list(&mut self, query: &ListQuery) -> Result<Page, StoreError> {
        self.try_list(query).map_err(store_error)
    }

    fn try_list(&mut self, query: &ListQuery) -> rusqlite::Result<Page> {
        let needle = query.text.as_deref().map(text::fold);
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<&dyn ToSql> = Vec::new();
        if let Some(from) = &query.from {
            conditions.push("sender = ?");
            values.push(from);
        }
        if let Some(since_key) = &query.since_key {
            conditions.push("ts_key >= ?");
            values.push(since_key);
        }
        if let Some(needle) = &needle {
            conditions.push("hookbox_contains_folded(text, ?)");
            values.push(needle);
        }
        // A text search alone would otherwise walk the ts index and fetch every row by rowid to
        // test it (380 ms for a rare word in 100k rows); a plain table scan and a sort of the few
        // matches is ~6x faster. With `from` or `since` an index narrows the rows first.
        let table = if conditions == ["hookbox_contains_folded(text, ?)"] {
            "messages NOT INDEXED"
        } else {
            "messages"
        };
        let filter = if conditions.is_empty() {
            table.to_owned()
        } else {
            format!("{table} WHERE {}", conditions.join(" AND "))
        };

        let tx = self.conn.transaction()?;
        let total: i64 = tx
            .prepare_cached(&format!("SELECT count(*) FROM {filter}"))?
            .query_row(values.as_slice(), |row| row.get(0))?;
        let limit = i64::from(query.limit);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let mut page_values = values.clone();
        page_values.push(&limit);
        page_values.push(&offset);
        let rows = tx
            .prepare_cached(&format!(
                "SELECT message_id, sender, recipient, ts, text FROM {filter}
                 ORDER BY ts_key, message_id LIMIT ? OFFSET ?"
            ))?
            .query_map(page_values.as_slice(), stored_message)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(Page { rows, total })
    }

    /// Aggregates over the whole store, from one read transaction.
    pub fn stats(&mut self) -> Result<Stats, StoreError> {
        self.try_stats().map_err(store_error)
    }

    fn try_stats(&mut self) -> rusqlite::Result<Stats> {
        let tx = self.conn.transaction()?;
        // One pass over the sender index gives the per-sender counts; the window functions add
        // the number of senders and of messages to every row (half the time of separate scans).
        let mut senders_count = 0;
        let mut total_messages = 0;
        let messages_per_sender = tx
            .prepare_cached(
                "SELECT sender, n, count(*) OVER (), sum(n) OVER ()
                 FROM (SELECT sender, count(*) AS n FROM messages GROUP BY sender)
                 ORDER BY n DESC, sender ASC LIMIT 10",
            )?
            .query_map([], |row| {
                Ok((
                    SenderCount {
                        from: row.get(0)?,
                        count: row.get(1)?,
                    },
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })?
            .map(|row| {
                row.map(|(sender, senders, messages)| {
                    (senders_count, total_messages) = (senders, messages);
                    sender
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let first_message_ts = tx
            .prepare_cached("SELECT ts FROM messages ORDER BY ts_key ASC, message_id ASC LIMIT 1")?
            .query_row([], |row| row.get(0))
            .optional()?;
        let last_message_ts = tx
            .prepare_cached(
                "SELECT ts FROM messages ORDER BY ts_key DESC, message_id DESC LIMIT 1",
            )?
            .query_row([], |row| row.get(0))
            .optional()?;
        tx.commit()?;
        Ok(Stats {
            total_messages,
            senders_count,
            messages_per_sender,
            first_message_ts,
            last_message_ts,
        })
    }

    /// Retention needs the arrival order that schema 2 adds; until then nothing is purged.
    pub fn purge(&mut self, _retention: &Retention, _batch: usize) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Streams matching rows in `/messages` order from one read snapshot, one row in memory at a
    /// time.
    pub fn export(
        &mut self,
        filter: &ExportFilter,
        each: &mut dyn FnMut(&StoredMessage) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(store_error)?;
        {
            let mut statement = tx
                .prepare(
                    "SELECT message_id, sender, recipient, ts, text FROM messages
                     WHERE (?1 IS NULL OR sender = ?1) AND (?2 IS NULL OR ts_key >= ?2)
                     ORDER BY ts_key, message_id",
                )
                .map_err(store_error)?;
            let mut rows = statement
                .query(params![filter.from, filter.since_key])
                .map_err(store_error)?;
            while let Some(row) = rows.next().map_err(store_error)? {
                let message = stored_message(row).map_err(store_error)?;
                each(&message)
                    .map_err(|error| StoreError::Unavailable(format!("output: {error}")))?;
            }
        }
        tx.commit().map_err(store_error)
    }

    /// Copies what it can from the WAL into the database without waiting for anyone, once the
    /// WAL holds `CHECKPOINT_FRAMES`. When it copies everything, the next commit starts the WAL
    /// over from its beginning. A failure is retried after the next commits.
    pub fn after_commit(&mut self) {
        if self.wal_frames.load(Ordering::Relaxed) < CHECKPOINT_FRAMES {
            return;
        }
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            Ok(()) => self.wal_frames.store(0, Ordering::Relaxed),
            Err(error) => log::warn!("checkpoint failed (retried after the next commits): {error}"),
        }
    }

    /// Copies everything and empties the WAL (waits for readers; used at shutdown).
    pub fn close(self) {
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!("final checkpoint failed (the WAL is replayed on next open): {error}");
        }
    }
}

/// A row of `message_id, sender, recipient, ts, text`.
fn stored_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        message_id: row.get(0)?,
        from: row.get(1)?,
        to: row.get(2)?,
        ts: row.get(3)?,
        text: row.get(4)?,
    })
}
