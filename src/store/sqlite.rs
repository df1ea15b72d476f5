//! The SQLite store: opening connections, migrations, and every query the service runs on SQLite.
//!
//! SQL lives here and in `sql/`, nowhere else. Each worker owns one connection; there is no pool
//! and no lock of ours around a connection. Migrations run once at startup, before workers open
//! theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

mod feed;

/// Migrations in order; migration `i` brings `PRAGMA user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../sql/001_init.sql"),
    include_str!("../../sql/002_growth.sql"),
    include_str!("../../sql/003_text_index_tail.sql"),
    include_str!("../../sql/004_feed.sql"),
];

/// Creates and fills the text index (`HOOKBOX_TEXT_INDEX=on`, when it is missing).
const TEXT_INDEX_ON: &str = include_str!("../../sql/text_index_on.sql");
/// Drops the text index (`HOOKBOX_TEXT_INDEX=off`, when it is present).
const TEXT_INDEX_OFF: &str = include_str!("../../sql/text_index_off.sql");

/// The progress handler runs every this many SQLite VM steps (a few microseconds of work).
const PROGRESS_STEPS: i32 = 1000;

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). Small on purpose:
/// the target boxes have little memory and the OS page cache sits behind it anyway.
const CACHE_KIB: i64 = 1024;

/// A batch this large (an import) gets a page cache of `BULK_CACHE_KIB` for its transaction: its
/// dirty pages then stay in memory until the commit instead of spilling into the WAL and being
/// read back (a quarter of import time). The writer's batches stay far below it.
const BULK_ROWS: usize = 1000;
const BULK_CACHE_KIB: i64 = 32 * 1024;

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
    /// Whether `q` may use the text index (`HOOKBOX_TEXT_INDEX`); `migrate` makes it so.
    text_index: bool,
    /// `synchronous` as configured (`HOOKBOX_SYNCHRONOUS`), restored after `index_pending`.
    synchronous: &'static str,
    /// `q` scans instead of using the index when its candidates are more than 1/`dense_share` of
    /// all rows (0: never; tests use that to exercise the index on tiny stores).
    dense_share: i64,
    query_timeout: Duration,
    /// When the running read must stop, in nanoseconds after `epoch`; 0 while none runs.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
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
        // `list` has a few dozen statement shapes (filters × search kind); keep them all prepared.
        conn.set_prepared_statement_cache_capacity(64);
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
        // The fold the text index holds (see sql/text_index_on.sql): its triggers call it.
        conn.create_scalar_function(
            "hookbox_fold",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                Ok(match ctx.get_raw(0) {
                    ValueRef::Text(raw) => std::str::from_utf8(raw).ok().map(text::fold),
                    _ => None,
                })
            },
        )?;
        // A read past its deadline is interrupted (SQLITE_INTERRUPT), which `bounded` reports
        // as a timeout. Writes never arm the deadline: a commit is never cut short.
        let epoch = Instant::now();
        let deadline = Arc::new(AtomicU64::new(0));
        let armed = Arc::clone(&deadline);
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                let deadline = armed.load(Ordering::Relaxed);
                deadline != 0 && epoch.elapsed().as_nanos() as u64 >= deadline
            }),
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
        Ok(Sqlite {
            conn,
            wal_frames,
            text_index: config.text_index,
            synchronous: config.durability.as_pragma(),
            dense_share: DENSE_SHARE,
            query_timeout: config.query_timeout,
            deadline,
            epoch,
        })
    }

    /// Runs a read under the query timeout.
    fn bounded<T>(
        &mut self,
        read: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let deadline = self.epoch.elapsed() + self.query_timeout;
        self.deadline
            .store((deadline.as_nanos() as u64).max(1), Ordering::Relaxed);
        let result = read(&mut self.conn);
        self.deadline.store(0, Ordering::Relaxed);
        result.map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => StoreError::QueryTimeout,
            _ => store_error(error),
        })
    }

    /// Brings the schema up to `SCHEMA_VERSION`, one transaction per migration. Sorts that a
    /// migration needs (`CREATE INDEX` over every row) spill to temporary files rather than
    /// memory: in memory they peaked at 118 MiB migrating 1M messages.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA temp_store = FILE")
            .map_err(store_error)?;
        let migrated = self.migrate_in_steps();
        self.conn
            .execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(store_error)?;
        migrated
    }

    fn migrate_in_steps(&mut self) -> Result<(), StoreError> {
        let current = self.schema_version().map_err(store_error)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::Internal(format!(
                "database schema version {current} is newer than this build ({SCHEMA_VERSION})"
            )));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let started = Instant::now();
            let mut run = || -> rusqlite::Result<()> {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", index as i64 + 1)?;
                tx.commit()
            };
            run().map_err(store_error)?;
            log::info!(
                schema_version = index + 1,
                seconds = started.elapsed().as_secs_f64();
                "schema migrated"
            );
        }
        self.reconcile_text_index().map_err(store_error)
    }

    /// Creates (and fills) or drops the text index as `HOOKBOX_TEXT_INDEX` says.
    fn reconcile_text_index(&mut self) -> rusqlite::Result<()> {
        let present: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'messages_fts')",
            [],
            |row| row.get(0),
        )?;
        if present == self.text_index {
            return Ok(());
        }
        let started = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(if self.text_index {
            TEXT_INDEX_ON
        } else {
            TEXT_INDEX_OFF
        })?;
        tx.commit()?;
        log::info!(
            text_index = self.text_index,
            seconds = started.elapsed().as_secs_f64();
            "text index {}",
            if self.text_index { "built" } else { "dropped" }
        );
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
        let bulk = messages.len() >= BULK_ROWS;
        if bulk {
            self.set_cache_kib(BULK_CACHE_KIB).map_err(store_error)?;
        }
        let result = self.try_insert_batch(messages, received_at);
        if bulk {
            // Shrinking the cache frees the pages beyond it.
            self.set_cache_kib(CACHE_KIB).map_err(store_error)?;
        }
        if result.is_err() {
            // A failed commit (a full disk, say) checkpoints at once, not at the next 1000
            // frames: the WAL then starts over inside the space it already has, instead of
            // needing to grow into space that is not there.
            self.wal_frames.store(CHECKPOINT_FRAMES, Ordering::Relaxed);
        }
        result.map_err(store_error)
    }

    fn set_cache_kib(&self, kib: i64) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "cache_size", -kib)
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
        // The writer's batches leave their rows in the tail for `index_pending` (the text index
        // costs a commit the most per row when the commit is small). An import's batch is large
        // enough to add its rows, and any tail before them, in its own transaction: one segment
        // of thousands of rows, as cheap per row as indexing gets.
        if self.text_index && messages.len() >= BULK_ROWS {
            index_tail(&tx, i64::MAX)?;
        }
        tx.commit()?;
        Ok(results)
    }

    /// Adds the oldest `max_rows` rows of the tail (rows above the watermark, see
    /// sql/003_text_index_tail.sql) to the text index and moves the watermark past them, in one
    /// transaction; returns how many rows that covered, those without text included (0: the
    /// tail is empty, or there is no text index). The transaction is not synced on its own
    /// (`synchronous = NORMAL`): it adds nothing anyone was promised, and the next durable
    /// commit syncs the WAL holding it; lost with a power cut, it rolls back whole, leaving
    /// those rows in the tail.
    pub fn index_pending(&mut self, max_rows: usize) -> Result<usize, StoreError> {
        if !self.text_index || max_rows == 0 {
            return Ok(0);
        }
        let relaxed = self.synchronous != "NORMAL";
        if relaxed {
            self.conn
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(store_error)?;
        }
        let mut run = || -> rusqlite::Result<usize> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let covered = index_tail(&tx, i64::try_from(max_rows).unwrap_or(i64::MAX))?;
            tx.commit()?;
            Ok(covered)
        };
        let result = run();
        if relaxed {
            self.conn
                .pragma_update(None, "synchronous", self.synchronous)
                .map_err(store_error)?;
        }
        result.map_err(store_error)
    }

    /// How many rows the tail holds at most (its arrival numbers above the watermark; purged
    /// ones are counted too, so this may say more than are there). 0 without a text index.
    pub fn unindexed(&mut self) -> Result<u64, StoreError> {
        if !self.text_index {
            return Ok(0);
        }
        self.conn
            .prepare_cached(
                "SELECT (SELECT coalesce(max(seq), 0) FROM messages) - indexed_upto
                 FROM text_index_state WHERE id = 1",
            )
            .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
            .map(|rows| rows.max(0) as u64)
            .map_err(store_error)
    }

    /// One page of messages in (instant, message_id) order, and how many match in all, from one
    /// read transaction (so `total` agrees with the page), within the query timeout.
    ///
    /// Rows always come in index order, never through a sort: the page walks `messages_by_ts`
    /// (or `messages_by_sender` with `from`) and stops after `offset + limit` matches, so memory
    /// holds one page whatever the filters. `total` comes from the aggregates when it can, else
    /// from an index range or the text index's candidates, each verified exactly.
    pub fn list(&mut self, query: &ListQuery) -> Result<Page, StoreError> {
        let needle = query.text.as_deref().map(text::fold);
        // FTS5's query parser stops at U+0000 (the MATCH fails as "unterminated string"), so a
        // needle holding one is answered by the scan, like a short one.
        let indexed = self.text_index
            && needle.as_ref().is_some_and(|needle| {
                needle.chars().count() >= TRIGRAM && !needle.contains('\u{0}')
            });
        let phrase = needle.as_deref().filter(|_| indexed).map(trigram_query);
        let dense_share = self.dense_share;
        let limit = i64::from(query.limit);
        let (after_ts, after_id) = match &query.after {
            Some(position) => (Some(&position.ts_key), Some(&position.message_id)),
            None => (None, None),
        };
        // Only reached when offset < total, which is an i64.
        let offset = query.offset.min(i64::MAX as u64) as i64;
        self.bounded(|conn| {
            let tx = conn.transaction()?;
            // The watermark, read in the same transaction as the rows: an indexing commit in
            // between can neither make a row count twice nor hide it.
            let mut upto: i64 = 0;
            let search = match (&needle, &phrase) {
                (None, _) => Search::None,
                (Some(_), None) => Search::Scan,
                // A needle in a large share of the rows gives a large candidate set, which the
                // page holds in memory and the count verifies row by row: a scan is cheaper
                // then, and finds a page within a few rows. Counting candidates reads only the
                // index (10 ms for 300k at 1M rows) and the tail's stretch of the table (every
                // tail row is a candidate).
                (Some(_), Some(phrase)) => {
                    upto = tx
                        .prepare_cached("SELECT indexed_upto FROM text_index_state WHERE id = 1")?
                        .query_row([], |row| row.get(0))?;
                    let tail: i64 = tx
                        .prepare_cached("SELECT count(*) FROM messages WHERE seq > ?1")?
                        .query_row([upto], |row| row.get(0))?;
                    let candidates: i64 = tx
                        .prepare_cached(
                            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
                        )?
                        .query_row([phrase], |row| row.get::<_, i64>(0))?
                        + tail;
                    let rows: i64 = tx
                        .prepare_cached("SELECT messages FROM totals WHERE id = 1")?
                        .query_row([], |row| row.get(0))?;
                    let dense = dense_share > 0 && candidates.saturating_mul(dense_share) > rows;
                    if dense || candidates > MAX_CANDIDATES {
                        Search::Scan
                    } else {
                        Search::Index
                    }
                }
            };
            let values: [(&str, Option<&dyn ToSql>); 9] = [
                (":from", query.from.as_ref().map(|v| v as &dyn ToSql)),
                (":since", query.since_key.as_ref().map(|v| v as &dyn ToSql)),
                (":after_ts", after_ts.map(|v| v as &dyn ToSql)),
                (":after_id", after_id.map(|v| v as &dyn ToSql)),
                (":phrase", phrase.as_ref().map(|v| v as &dyn ToSql)),
                (":needle", needle.as_ref().map(|v| v as &dyn ToSql)),
                (":upto", Some(&upto)),
                (":limit", Some(&limit)),
                (":offset", Some(&offset)),
            ];
            let shape = Shape {
                from: query.from.is_some(),
                since: query.since_key.is_some(),
                after: query.after.is_some(),
                search,
            };
            let count_sql = shape.count_sql();
            let total: i64 = tx
                .prepare_cached(&count_sql)?
                .query_row(bind(&count_sql, &values).as_slice(), |row| row.get(0))?;
            // Past the last match there is nothing to read. Clamping also keeps `offset + limit`
            // far from i64::MAX, where SQLite would take an overflowed sum for "no limit".
            let rows = if query.offset >= total.max(0) as u64 {
                Vec::new()
            } else {
                // Of `since` and a cursor, only the later bound matters, and SQLite seeks to just
                // one: give it that one, or a deep cursor page would walk from `since` to it.
                let cursor_is_later = match (&query.after, &query.since_key) {
                    (Some(after), Some(since)) => after.ts_key >= *since,
                    _ => shape.after,
                };
                let page_shape = Shape {
                    since: shape.since && !cursor_is_later,
                    after: shape.after && cursor_is_later,
                    ..shape
                };
                let page_sql = page_shape.page_sql();
                tx.prepare_cached(&page_sql)?
                    .query_map(bind(&page_sql, &values).as_slice(), stored_message)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            Ok(Page { rows, total })
        })
    }

    /// Totals, top senders and first/last, from the aggregates and the ends of the ts index.
    pub fn stats(&mut self) -> Result<Stats, StoreError> {
        self.bounded(|conn| {
            let tx = conn.transaction()?;
            let (total_messages, senders_count) = tx
                .prepare_cached("SELECT messages, senders FROM totals WHERE id = 1")?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            let messages_per_sender = tx
                .prepare_cached(
                    "SELECT sender, n FROM sender_counts INDEXED BY sender_counts_by_n
                     ORDER BY n DESC, sender ASC LIMIT 10",
                )?
                .query_map([], |row| {
                    Ok(SenderCount {
                        from: row.get(0)?,
                        count: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let first_message_ts = tx
                .prepare_cached(
                    "SELECT ts FROM messages INDEXED BY messages_by_ts
                     ORDER BY ts_key ASC, message_id ASC LIMIT 1",
                )?
                .query_row([], |row| row.get(0))
                .optional()?;
            let last_message_ts = tx
                .prepare_cached(
                    "SELECT ts FROM messages INDEXED BY messages_by_ts
                     ORDER BY ts_key DESC, message_id DESC LIMIT 1",
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
        })
    }

    /// Deletes up to `batch` of the oldest rows by arrival that retention says must go, in one
    /// `IMMEDIATE` transaction; the triggers keep the aggregates and the text index exact.
    /// Arrival is `seq` order, and `received_at` grows along it, so what must go is always a
    /// prefix of `seq` order: finding it reads at most `batch` index entries, never the table.
    /// (Should the clock step back, rows behind a later-stamped one wait for it.)
    pub fn purge(&mut self, retention: &Retention, batch: usize) -> Result<usize, StoreError> {
        if retention.is_unlimited() || batch == 0 {
            return Ok(0);
        }
        let cutoff = retention.cutoff();
        let purge = |conn: &mut Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let total: i64 = tx
                .prepare_cached("SELECT messages FROM totals WHERE id = 1")?
                .query_row([], |row| row.get(0))?;
            let excess = match retention.keep_messages {
                0 => 0,
                keep => (total.max(0) as u64).saturating_sub(keep),
            };
            let mut last = None;
            let mut count = 0;
            {
                let mut oldest = tx.prepare_cached(
                    "SELECT seq, received_at FROM messages ORDER BY seq LIMIT ?1",
                )?;
                let mut rows = oldest.query([batch as i64])?;
                while let Some(row) = rows.next()? {
                    let received_at: String = row.get(1)?;
                    let expired = cutoff
                        .as_deref()
                        .is_some_and(|cutoff| received_at.as_str() < cutoff);
                    if (count as u64) >= excess && !expired {
                        break;
                    }
                    last = Some(row.get::<_, i64>(0)?);
                    count += 1;
                }
            }
            if let Some(last) = last {
                tx.prepare_cached("DELETE FROM messages WHERE seq <= ?1")?
                    .execute([last])?;
                // Emptied, the table numbers its next row 1 again: were the watermark left
                // above it, new rows would count as indexed. (Otherwise the newest row stays,
                // and with it every number up to the watermark stays used.)
                tx.prepare_cached(
                    "UPDATE text_index_state SET indexed_upto = 0
                     WHERE id = 1 AND indexed_upto > 0 AND NOT EXISTS (SELECT 1 FROM messages)",
                )?
                .execute([])?;
            }
            tx.commit()?;
            Ok(count)
        };
        purge(&mut self.conn).map_err(store_error)
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

/// Adds the oldest `max_rows` rows above the watermark to the text index, inside `tx`, and moves
/// the watermark to the last of them; returns how many rows that covered. Rows go in `seq` order
/// in one statement, so FTS5 writes them out as one segment.
fn index_tail(tx: &rusqlite::Transaction<'_>, max_rows: i64) -> rusqlite::Result<usize> {
    let upto: i64 = tx
        .prepare_cached("SELECT indexed_upto FROM text_index_state WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    let (last, covered): (Option<i64>, i64) = tx
        .prepare_cached(
            "SELECT max(seq), count(*)
             FROM (SELECT seq FROM messages WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
        )?
        .query_row([upto, max_rows], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let Some(last) = last else {
        return Ok(0);
    };
    tx.prepare_cached(
        "INSERT INTO messages_fts (rowid, text)
         SELECT seq, hookbox_fold(text) FROM messages
         WHERE seq > ?1 AND seq <= ?2 AND text IS NOT NULL ORDER BY seq",
    )?
    .execute([upto, last])?;
    tx.prepare_cached("UPDATE text_index_state SET indexed_upto = ?1 WHERE id = 1")?
        .execute([last])?;
    Ok(covered as usize)
}

/// Needles this many characters long or longer are looked up in the trigram index; shorter
/// ones have no trigram and scan.
const TRIGRAM: usize = 3;

/// The FTS5 query for rows whose folded text may contain `needle` (3+ characters): all of the
/// needle's trigrams at every third position, and its last one. The index keeps no positions
/// (`detail=none`: a third smaller and faster to fill), so this finds a superset of the rows
/// containing the needle, which the exact check then narrows. Every third trigram already
/// covers each character, and fewer terms are fewer doclists to intersect.
fn trigram_query(needle: &str) -> String {
    let chars: Vec<char> = needle.chars().collect();
    let last = chars.len().saturating_sub(TRIGRAM);
    let mut starts: Vec<usize> = (0..=last).step_by(TRIGRAM).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
        .iter()
        .map(|&start| {
            let trigram: String = chars[start..start + TRIGRAM].iter().collect();
            // FTS5 string syntax: in double quotes, with quotes doubled.
            format!("\"{}\"", trigram.replace('"', "\"\""))
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `q` scans when the text index's candidates exceed this fraction (1/8) of the rows: past it a
/// scan counts faster (0.18 µs a row against about 1.5 µs a candidate at 1M rows) and needs no
/// candidate set in memory, which this also bounds to an eighth of the rows.
const DENSE_SHARE: i64 = 8;

/// `q` also scans when the index gives more candidates than this, whatever the share: the page
/// query holds its candidate set in memory (about 20 bytes each), so this bounds one read's set
/// to ~5 MiB on any store size (at 10M rows an eighth would be 1.25M candidates, ~25 MiB).
const MAX_CANDIDATES: i64 = 250_000;

/// How `q` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    None,
    /// Candidates from the trigram index, each verified by the exact check.
    Index,
    /// The exact check on every row in range (short needles, or `HOOKBOX_TEXT_INDEX=off`).
    Scan,
}

/// Which filters a `list` call has: decides its two statements. There are few shapes, so each
/// one's statements are prepared once per connection and cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    from: bool,
    since: bool,
    after: bool,
    search: Search,
}

impl Shape {
    /// The index whose order is the page order for these filters.
    fn index(&self) -> &'static str {
        if self.from {
            "messages_by_sender"
        } else {
            "messages_by_ts"
        }
    }

    /// Conditions on `messages` from `from` and `since` (the ones `total` honours).
    fn filters(&self, alias: &str) -> Vec<String> {
        let mut conditions = Vec::new();
        if self.from {
            conditions.push(format!("{alias}sender = :from"));
        }
        if self.since {
            conditions.push(format!("{alias}ts_key >= :since"));
        }
        conditions
    }

    /// Counts every row matching the filters (a cursor does not narrow `total`).
    fn count_sql(&self) -> String {
        let mut conditions = self.filters("m.");
        match self.search {
            Search::None if conditions.is_empty() => {
                "SELECT messages FROM totals WHERE id = 1".to_owned()
            }
            Search::None if !self.since => {
                "SELECT coalesce((SELECT n FROM sender_counts WHERE sender = :from), 0)".to_owned()
            }
            Search::None => format!(
                "SELECT count(*) FROM messages AS m INDEXED BY {} WHERE {}",
                self.index(),
                conditions.join(" AND ")
            ),
            // The index's candidates drive (CROSS JOIN fixes the order), and the tail's rows
            // are read by arrival number (the rowid, so `NOT INDEXED` still allows it); each
            // is verified. A row is in one or the other, never both (`seq <= :upto`).
            Search::Index => {
                conditions.push("hookbox_contains_folded(m.text, :needle)".to_owned());
                let verified = conditions.join(" AND ");
                format!(
                    "SELECT
                     (SELECT count(*) FROM messages_fts CROSS JOIN messages AS m
                      ON m.seq = messages_fts.rowid
                      WHERE messages_fts MATCH :phrase AND m.seq <= :upto AND {verified})
                     + (SELECT count(*) FROM messages AS m NOT INDEXED
                        WHERE m.seq > :upto AND {verified})"
                )
            }
            Search::Scan => {
                // Every row is tested anyway: a plain table scan beats walking an index and
                // fetching each row, unless `from`/`since` narrow the range first.
                let table = if conditions.is_empty() {
                    "messages AS m NOT INDEXED".to_owned()
                } else {
                    format!("messages AS m INDEXED BY {}", self.index())
                };
                conditions.push("hookbox_contains_folded(m.text, :needle)".to_owned());
                format!(
                    "SELECT count(*) FROM {table} WHERE {}",
                    conditions.join(" AND ")
                )
            }
        }
    }

    /// One page in index order: no sort, and the walk stops after `offset + limit` rows.
    fn page_sql(&self) -> String {
        let mut conditions = self.filters("");
        if self.after {
            conditions.push("(ts_key, message_id) > (:after_ts, :after_id)".to_owned());
        }
        if self.search == Search::Index {
            // `+seq`: a filter on each row walked, never a lookup that would drive the query
            // (and then need a sort). The candidate set is built once per statement; every row
            // of the tail is a candidate too.
            conditions.push(
                "(+seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :phrase)
                  OR +seq > :upto)"
                    .to_owned(),
            );
        }
        if self.search != Search::None {
            conditions.push("hookbox_contains_folded(text, :needle)".to_owned());
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        format!(
            "SELECT message_id, sender, recipient, ts, text FROM messages INDEXED BY {} {filter}
             ORDER BY ts_key, message_id LIMIT :limit OFFSET :offset",
            self.index()
        )
    }

    /// Every shape `list` can take.
    #[cfg(test)]
    fn all() -> Vec<Shape> {
        let mut shapes = Vec::new();
        for bits in 0..8 {
            for search in [Search::None, Search::Index, Search::Scan] {
                shapes.push(Shape {
                    from: bits & 1 != 0,
                    since: bits & 2 != 0,
                    after: bits & 4 != 0,
                    search,
                });
            }
        }
        shapes
    }
}

/// The named parameters `sql` uses, out of every one `list` may have (rusqlite refuses names a
/// statement lacks).
fn bind<'a>(
    sql: &str,
    values: &[(&'static str, Option<&'a dyn ToSql>)],
) -> Vec<(&'static str, &'a dyn ToSql)> {
    values
        .iter()
        .filter(|(name, _)| sql.contains(name))
        .filter_map(|(name, value)| value.map(|value| (*name, value)))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Position;
    use crate::timestamp;

    /// A store on a fresh file, removed on drop.
    struct TestStore {
        store: Sqlite,
        dir: std::path::PathBuf,
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn test_store(name: &str, adjust: impl FnOnce(&mut Config)) -> TestStore {
        let dir =
            std::env::temp_dir().join(format!("hookbox-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config::for_database(dir.join("t.db"), Some("secret"));
        adjust(&mut config);
        let mut store = Sqlite::open(&config).unwrap();
        store.migrate().unwrap();
        TestStore { store, dir }
    }

    /// xorshift64*: reproducible randomness without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "a", "B", "ab", "Hello", "wörld", "ÄRGER", "ß", "İ", "i", "%", "_", "\\", "*", "\"", " ",
        "x", "yZ", "100%", "a_c", "quote\"d",
    ];

    fn message(rng: &mut Rng, id: usize) -> Message {
        let ts = format!(
            "2025-01-{:02}T{:02}:00:{:02}{}Z",
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            [".5", "", ".25"][rng.below(3)]
        );
        let text = (rng.below(8) != 0).then(|| {
            (0..rng.below(6))
                .map(|_| PIECES[rng.below(PIECES.len())])
                .collect::<String>()
        });
        Message {
            message_id: format!("m{id}"),
            from: format!("+91{}", rng.below(7)),
            to: "+1415".to_owned(),
            ts_key: timestamp::sort_key(&ts).unwrap(),
            ts,
            text,
        }
    }

    #[test]
    fn trigram_queries_cover_the_needle() {
        // (On tiny stores every needle is dense; `dense_share = 0` keeps the index in use.)
        assert_eq!(trigram_query("abc"), r#""abc""#);
        assert_eq!(trigram_query("abcd"), r#""abc" AND "bcd""#);
        assert_eq!(trigram_query("abcdef"), r#""abc" AND "def""#);
        assert_eq!(trigram_query("abcdefg"), r#""abc" AND "def" AND "efg""#);
        assert_eq!(trigram_query("a\"bü"), r#""a""b" AND """bü""#);

        // A row with every trigram of the needle but not the needle: a candidate the exact
        // check turns away.
        let mut test = test_store("trigrams", |_| {});
        test.store.dense_share = 0;
        let mut rng = Rng(5);
        let mut decoy = message(&mut rng, 1);
        decoy.text = Some("ABC then BCD".to_owned());
        test.store
            .insert_batch(&[decoy], "2025-01-01T00:00:00.000Z")
            .unwrap();
        let mut total = |needle: &str| {
            let query = ListQuery {
                limit: 10,
                text: Some(needle.to_owned()),
                ..ListQuery::default()
            };
            test.store.list(&query).unwrap().total
        };
        assert_eq!((total("abcd"), total("abc t"), total("bcd")), (0, 1, 1));
    }

    /// `q` through the text index answers as a scan does, on both sides of the watermark and
    /// after purges. tests/it/store_model.rs holds both stores to a model, but only with the
    /// default `dense_share`, under which a small store's needles are mostly dense and scanned:
    /// this pins the index path (`dense_share = 0`) to the scan (the index off) on equal rows.
    #[test]
    fn searches_through_the_text_index_answer_as_a_scan_does() {
        let mut test = test_store("index-scan", |_| {});
        let store = &mut test.store;
        store.dense_share = 0;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut found = 0;
        for round in 0..6 {
            let batch: Vec<_> = (0..40).map(|i| message(&mut rng, round * 40 + i)).collect();
            store.insert_batch(&batch, &timestamp::now_utc()).unwrap();
            store.index_pending(rng.below(60)).unwrap();
            if round % 3 == 2 {
                let keep = Retention {
                    keep_messages: 60,
                    keep_days: 0,
                };
                while store.purge(&keep, 7).unwrap() > 0 {}
            }
            assert_index_exact(store);
            let texts: Vec<Vec<char>> = batch
                .iter()
                .filter_map(|m| Some(m.text.as_deref()?.chars().collect::<Vec<_>>()))
                .filter(|chars| chars.len() >= 3)
                .collect();
            let mut needles = vec!["quote\"d".to_owned(), "\"\"\"".to_owned(), "wÖr".to_owned()];
            needles.extend((0..10).map(|_| {
                let chars = &texts[rng.below(texts.len())];
                let start = rng.below(chars.len() - 2);
                let end = (start + 3 + rng.below(3)).min(chars.len());
                chars[start..end].iter().collect::<String>().to_uppercase()
            }));
            for needle in needles {
                for (from, since_key) in [(None, None), (Some("+913"), Some("2025-01-15T00:00:00"))]
                {
                    let mut query = ListQuery {
                        limit: 100,
                        from: from.map(str::to_owned),
                        since_key: since_key.map(str::to_owned),
                        text: Some(needle.clone()),
                        ..ListQuery::default()
                    };
                    let indexed = store.list(&query).unwrap();
                    store.text_index = false;
                    let scanned = store.list(&query).unwrap();
                    store.text_index = true;
                    assert_eq!(indexed, scanned, "{query:?}");
                    found += indexed.total;
                    // And a keyset page from the middle.
                    if let Some(pivot) = scanned.rows.get(1) {
                        query.limit = 2;
                        query.after = Some(Position {
                            ts_key: timestamp::sort_key(&pivot.ts).unwrap(),
                            message_id: pivot.message_id.clone(),
                        });
                        let indexed = store.list(&query).unwrap();
                        store.text_index = false;
                        assert_eq!(indexed, store.list(&query).unwrap(), "{query:?}");
                        store.text_index = true;
                    }
                }
            }
        }
        assert!(
            found > 0,
            "no needle found anything: the comparison proved nothing"
        );
    }

    /// The rowids in the text index are exactly the rows with text at or below the watermark:
    /// nothing of the tail, nothing purged, nothing missing.
    fn assert_index_exact(store: &Sqlite) {
        let ids = |sql: &str| -> Vec<i64> {
            store
                .conn
                .prepare(sql)
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(
            ids("SELECT id FROM messages_fts_docsize ORDER BY id"),
            ids("SELECT seq FROM messages, text_index_state
                 WHERE seq <= indexed_upto AND text IS NOT NULL ORDER BY seq")
        );
    }

    fn search(store: &mut Sqlite, needle: &str) -> (Vec<String>, i64) {
        let page = store
            .list(&ListQuery {
                limit: 100,
                text: Some(needle.to_owned()),
                ..ListQuery::default()
            })
            .unwrap();
        let ids = page.rows.into_iter().map(|m| m.message_id).collect();
        (ids, page.total)
    }

    #[test]
    fn new_rows_wait_in_the_tail_until_indexed_and_q_finds_them_on_both_sides() {
        let mut test = test_store("tail", |_| {});
        let store = &mut test.store;
        store.dense_share = 0;
        assert_eq!(store.unindexed().unwrap(), 0);
        let mut rng = Rng(11);
        let with_text = |rng: &mut Rng, id: usize, text: Option<&str>| Message {
            text: text.map(str::to_owned),
            ..message(rng, id)
        };
        for (id, text) in [(0, Some("Zebra one")), (1, None), (2, Some("no match"))] {
            store
                .insert_batch(&[with_text(&mut rng, id, text)], &timestamp::now_utc())
                .unwrap();
        }
        // Nothing indexed yet: found from the tail alone.
        assert_eq!(store.unindexed().unwrap(), 3);
        assert_eq!(search(store, "ZEBRA"), (vec!["m0".to_owned()], 1));
        // Two rows indexed (the one without text only moves the watermark), one still waits.
        assert_eq!(store.index_pending(2).unwrap(), 2);
        assert_eq!(store.unindexed().unwrap(), 1);
        assert_index_exact(store);
        store
            .insert_batch(
                &[with_text(&mut rng, 3, Some("zebra two"))],
                &timestamp::now_utc(),
            )
            .unwrap();
        let (mut ids, total) = search(store, "zEbRa");
        ids.sort();
        assert_eq!((ids, total), (vec!["m0".to_owned(), "m3".to_owned()], 2));
        assert_eq!(store.index_pending(100).unwrap(), 2);
        assert_eq!(store.index_pending(100).unwrap(), 0);
        assert_index_exact(store);
        assert_eq!(search(store, "zebra").1, 2);

        // A batch the size of an import's indexes itself, and the tail before it.
        store
            .insert_batch(
                &[with_text(&mut rng, 4, Some("zebra three"))],
                &timestamp::now_utc(),
            )
            .unwrap();
        let bulk: Vec<_> = (5..5 + BULK_ROWS)
            .map(|id| with_text(&mut rng, id, Some("bulk zebra")))
            .collect();
        store.insert_batch(&bulk, &timestamp::now_utc()).unwrap();
        assert_eq!(store.unindexed().unwrap(), 0);
        assert_index_exact(store);
        assert_eq!(search(store, "zebra").1, 3 + BULK_ROWS as i64);
    }

    #[test]
    fn a_store_emptied_by_retention_numbers_rows_from_1_again_and_they_are_not_taken_as_indexed() {
        let mut test = test_store("emptied", |_| {});
        let store = &mut test.store;
        store.dense_share = 0;
        let mut rng = Rng(12);
        let old: Vec<_> = (0..5).map(|i| message(&mut rng, i)).collect();
        store
            .insert_batch(&old, "2001-01-01T00:00:00.000Z")
            .unwrap();
        assert_eq!(store.index_pending(100).unwrap(), 5);
        let days = Retention {
            keep_messages: 0,
            keep_days: 1,
        };
        assert_eq!(store.purge(&days, 100).unwrap(), 5);
        let fresh = Message {
            text: Some("zebra".to_owned()),
            ..message(&mut rng, 9)
        };
        store.insert_batch(&[fresh], &timestamp::now_utc()).unwrap();
        let seq: i64 = store
            .conn
            .query_row("SELECT seq FROM messages", [], |row| row.get(0))
            .unwrap();
        assert_eq!(seq, 1);
        assert_eq!(search(store, "zebra"), (vec!["m9".to_owned()], 1));
        assert_eq!(store.unindexed().unwrap(), 1);
    }

    /// Purges delete tail rows from the text index too (its trigger knows nothing of the
    /// watermark): FTS5 must take deleting a rowid it does not hold as a no-op, on every
    /// segment layout, and keep taking that row later.
    #[test]
    fn deleting_an_absent_rowid_from_the_text_index_changes_nothing() {
        let test = test_store("absent", |_| {});
        let conn = &test.store.conn;
        let count = || -> i64 {
            conn.query_row(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"hel\"'",
                [],
                |row| row.get(0),
            )
            .unwrap()
        };
        let check = || {
            conn.execute(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 0)",
                [],
            )
            .unwrap();
        };
        // One segment per statement: several segments, even rowids only.
        for rowid in 0..100_i64 {
            conn.execute(
                "INSERT INTO messages_fts (rowid, text) VALUES (?1, 'hello ' || ?1)",
                [rowid * 2],
            )
            .unwrap();
        }
        let pages = || -> i64 {
            conn.query_row("SELECT count(*) FROM messages_fts_data", [], |row| {
                row.get(0)
            })
            .unwrap()
        };
        let before = pages();
        for rowid in 0..100_i64 {
            let deleted = conn
                .execute("DELETE FROM messages_fts WHERE rowid = ?1", [rowid * 2 + 1])
                .unwrap();
            assert_eq!(deleted, 0);
        }
        // Nothing written (no tombstones), nothing lost.
        assert_eq!((count(), pages()), (100, before));
        check();
        // The absent rows may come later, and go again twice.
        for rowid in 0..100_i64 {
            conn.execute(
                "INSERT INTO messages_fts (rowid, text) VALUES (?1, 'hello odd')",
                [rowid * 2 + 1],
            )
            .unwrap();
        }
        assert_eq!(count(), 200);
        check();
        for rowid in 0..200_i64 {
            let delete = "DELETE FROM messages_fts WHERE rowid = ?1";
            assert_eq!(conn.execute(delete, [rowid]).unwrap(), 1);
            assert_eq!(conn.execute(delete, [rowid]).unwrap(), 0);
        }
        assert_eq!(count(), 0);
        check();
    }

    #[test]
    fn a_schema_two_store_with_its_index_takes_every_row_as_indexed() {
        let dir = std::env::temp_dir().join(format!("hookbox-sqlite-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::for_database(dir.join("t.db"), Some("secret"));
        {
            // Schema 2 as it was: the index filled inside each insert, no watermark.
            let store = Sqlite::open(&config).unwrap();
            store.conn.execute_batch(MIGRATIONS[0]).unwrap();
            store.conn.execute_batch(MIGRATIONS[1]).unwrap();
            store
                .conn
                .execute_batch(
                    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content = '',
                         contentless_delete = 1, detail = none,
                         tokenize = 'trigram case_sensitive 1');
                     CREATE TRIGGER messages_text_unindexed AFTER DELETE ON messages
                         WHEN OLD.text IS NOT NULL BEGIN
                         DELETE FROM messages_fts WHERE rowid = OLD.seq;
                     END;
                     INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text,
                         received_at)
                     VALUES ('a', '+1', '+2', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00',
                         'Zebra', '2025-02-01T00:00:00.000Z'),
                         ('b', '+1', '+2', '2025-01-02T00:00:00Z', '2025-01-02T00:00:00',
                         NULL, '2025-02-01T00:00:00.000Z');
                     INSERT INTO messages_fts (rowid, text)
                         SELECT seq, hookbox_fold(text) FROM messages WHERE text IS NOT NULL;
                     PRAGMA user_version = 2;",
                )
                .unwrap();
        }
        let mut store = Sqlite::open(&config).unwrap();
        store.migrate().unwrap();
        store.dense_share = 0;
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.unindexed().unwrap(), 0);
        assert_index_exact(&store);
        assert_eq!(search(&mut store, "zebra"), (vec!["a".to_owned()], 1));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_by_days_drops_what_arrived_before_the_cutoff() {
        let mut test = test_store("days", |_| {});
        let store = &mut test.store;
        let mut rng = Rng(7);
        let old: Vec<_> = (0..30).map(|i| message(&mut rng, i)).collect();
        let new: Vec<_> = (30..40).map(|i| message(&mut rng, i)).collect();
        store
            .insert_batch(&old, "2001-01-01T00:00:00.000Z")
            .unwrap();
        store.insert_batch(&new, &timestamp::now_utc()).unwrap();
        let retention = Retention {
            keep_messages: 0,
            keep_days: 1,
        };
        assert_eq!(store.purge(&retention, 25).unwrap(), 25);
        assert_eq!(store.purge(&retention, 25).unwrap(), 5);
        assert_eq!(store.purge(&retention, 25).unwrap(), 0);
        assert_eq!(store.stats().unwrap().total_messages, 10);
        // A purged id may be stored again.
        assert_eq!(
            store
                .insert_batch(&old[..1], &timestamp::now_utc())
                .unwrap(),
            [Inserted::Created]
        );
    }

    /// The plan of `sql`, one detail line per step.
    fn plan(store: &Sqlite, sql: &str) -> Vec<String> {
        let mut statement = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let count = statement.parameter_count();
        // Plans do not depend on the values; NULL fits every parameter.
        let nulls: Vec<rusqlite::types::Null> = vec![rusqlite::types::Null; count];
        statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn no_list_plan_sorts_and_every_page_walks_an_order_index() {
        let test = test_store("plans", |_| {});
        let mut rng = Rng(3);
        let batch: Vec<_> = (0..200).map(|i| message(&mut rng, i)).collect();
        let mut store = test_store("plans-filled", |_| {});
        store
            .store
            .insert_batch(&batch, &timestamp::now_utc())
            .unwrap();
        store.store.conn.execute_batch("ANALYZE").unwrap();
        for sqlite in [&test.store, &store.store] {
            for shape in Shape::all() {
                let page = plan(sqlite, &shape.page_sql());
                let count = plan(sqlite, &shape.count_sql());
                for line in page.iter().chain(&count) {
                    assert!(
                        !line.contains("TEMP B-TREE"),
                        "{shape:?}: {line}\n{page:?}\n{count:?}"
                    );
                }
                assert!(
                    page[0].contains(&format!("USING INDEX {}", shape.index()))
                        || page[0].contains(&format!("USING COVERING INDEX {}", shape.index())),
                    "{shape:?}: {page:?}"
                );
                if shape.search == Search::Index {
                    // The index's candidates drive the first part; the tail is a range of
                    // arrival numbers, whatever the filters (never a walk of a filter's index).
                    let at = |text: &str| count.iter().position(|line| line.contains(text));
                    let (fts, tail) = (at("VIRTUAL TABLE"), at("SCALAR SUBQUERY 2"));
                    assert!(fts.is_some() && tail.is_some(), "{shape:?}: {count:?}");
                    assert_eq!(
                        count[tail.unwrap() + 1..],
                        ["SEARCH m USING INTEGER PRIMARY KEY (rowid>?)"],
                        "{shape:?}: {count:?}"
                    );
                }
            }
            for sql in [
                "SELECT sender, n FROM sender_counts INDEXED BY sender_counts_by_n ORDER BY n DESC, sender ASC LIMIT 10",
                "SELECT ts FROM messages INDEXED BY messages_by_ts ORDER BY ts_key DESC, message_id DESC LIMIT 1",
                "SELECT seq, received_at FROM messages ORDER BY seq LIMIT 1",
            ] {
                let lines = plan(sqlite, sql);
                assert!(
                    lines.iter().all(|l| !l.contains("TEMP B-TREE")),
                    "{sql}: {lines:?}"
                );
            }
        }
    }
}
