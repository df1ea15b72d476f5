//! SQLite access: opening connections, migrations, and every query the service runs.
//!
//! SQL lives here and in `sql/`, nowhere else. Each worker owns one `Db`; there is no pool and no
//! lock of ours around a connection. Migrations run once at startup, before workers open theirs.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSql, ValueRef};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::config::Config;
use crate::message::Message;

/// Migrations in order; migration `i` brings `PRAGMA user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[include_str!("../sql/001_init.sql")];

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). Small on purpose:
/// the target boxes have little memory and the OS page cache sits behind it anyway.
const CACHE_KIB: i64 = 1024;

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    Duplicate,
}

/// A stored message as the API returns it (`ts` exactly as received).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: String,
    pub text: Option<String>,
}

/// Filters and page for `list`. Every filter that is `Some` must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: u32,
    pub offset: u64,
    pub from: Option<String>,
    /// Sort key of the `since` instant (see `timestamp::sort_key`).
    pub since_key: Option<String>,
    /// Needle for the case-insensitive substring search, already case-folded.
    pub text_folded: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SenderCount {
    pub from: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub total_messages: i64,
    pub senders_count: i64,
    pub messages_per_sender: Vec<SenderCount>,
    pub first_message_ts: Option<String>,
    pub last_message_ts: Option<String>,
}

pub struct Db {
    conn: Connection,
    /// Frames in the WAL after this connection's last commit (see `track_wal`).
    wal_frames: Arc<AtomicI32>,
}

impl Db {
    /// Opens (creating if needed) the database file with the settings every connection shares.
    pub fn open(config: &Config) -> rusqlite::Result<Db> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let crate::config::Database::Sqlite(path) = &config.database else {
            return Err(rusqlite::Error::InvalidPath(
                config.database.describe().into(),
            ));
        };
        let conn = Connection::open_with_flags(path, flags)?;
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
                    ValueRef::Text(text) => {
                        std::str::from_utf8(text).is_ok_and(|text| contains_folded(text, needle))
                    }
                    _ => false,
                })
            },
        )?;
        Ok(Db {
            conn,
            wal_frames: Arc::new(AtomicI32::new(0)),
        })
    }

    /// Replaces SQLite's automatic checkpoint, which runs inside the commit that crosses the
    /// threshold (so its requests would wait for it), with a count of WAL frames after each
    /// commit: the writer checkpoints when `wal_frames` says so, after answering its batch.
    pub fn track_wal(&mut self) -> rusqlite::Result<()> {
        let frames = Arc::clone(&self.wal_frames);
        self.conn.wal_hook(Some(move |_: &mut _, pages| {
            frames.store(pages, Ordering::Relaxed);
            Ok(())
        }))
    }

    /// Frames in the WAL after the last commit on this connection (needs `track_wal`).
    pub fn wal_frames(&self) -> i32 {
        self.wal_frames.load(Ordering::Relaxed)
    }

    /// Copies what it can from the WAL into the database without waiting for anyone. When it
    /// copies everything, the next commit starts the WAL over from its beginning.
    pub fn checkpoint_passive(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.wal_frames.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Copies everything and empties the WAL (waits for readers; used at shutdown).
    pub fn checkpoint_truncate(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// Brings the schema up to `SCHEMA_VERSION`, one transaction per migration.
    pub fn migrate(&mut self) -> rusqlite::Result<()> {
        let current = self.schema_version()?;
        if current > SCHEMA_VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "database schema version {current} is newer than this build ({SCHEMA_VERSION})"
            )));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
    }

    /// Stores each message unless its id is already present (the first stored row is never
    /// changed), all in one transaction: one commit, one fsync. Results are in input order; a
    /// repeated id within the batch is `Duplicate` from its second occurrence on. If anything
    /// fails the whole batch is rolled back and nothing is stored.
    pub fn insert_batch<'m>(
        &mut self,
        messages: impl IntoIterator<Item = &'m Message>,
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
                .into_iter()
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
    pub fn list(&mut self, query: &ListQuery) -> rusqlite::Result<(Vec<StoredMessage>, i64)> {
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
        if let Some(needle) = &query.text_folded {
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
            .query_map(page_values.as_slice(), |row| {
                Ok(StoredMessage {
                    message_id: row.get(0)?,
                    from: row.get(1)?,
                    to: row.get(2)?,
                    ts: row.get(3)?,
                    text: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        tx.commit()?;
        Ok((rows, total))
    }

    /// Aggregates over the whole store, from one read transaction.
    pub fn stats(&mut self) -> rusqlite::Result<Stats> {
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
}

/// True when `haystack`, case-folded, contains `needle_folded` literally (no wildcards).
/// ASCII text takes an allocation-free path; anything else is lower-cased first.
fn contains_folded(haystack: &str, needle_folded: &str) -> bool {
    if needle_folded.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle_folded.is_ascii() {
        let needle = needle_folded.as_bytes();
        // Cheap first-byte test before the full comparison: this runs for every row of a scan.
        let (lower, upper) = (needle[0], needle[0].to_ascii_uppercase());
        return haystack.as_bytes().windows(needle.len()).any(|window| {
            (window[0] == lower || window[0] == upper) && window.eq_ignore_ascii_case(needle)
        });
    }
    haystack.to_lowercase().contains(needle_folded)
}

/// The form `list` expects for `ListQuery::text_folded`.
pub fn fold_case(text: &str) -> String {
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_search_is_literal_and_case_insensitive() {
        assert!(contains_folded("Hello World", &fold_case("WORLD")));
        assert!(contains_folded("100% sure", "%"));
        assert!(!contains_folded("100 sure", "%"));
        assert!(!contains_folded("abc", "a_c"));
        assert!(contains_folded("a_c", "a_c"));
        assert!(contains_folded("ÄRGER", &fold_case("ärger")));
        assert!(contains_folded("anything", ""));
        assert!(!contains_folded("short", "longer needle"));
    }
}
