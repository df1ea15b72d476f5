//! SQLite's text index for `q` (sql/text_index_on.sql), and its upkeep policy.
//!
//! The insert does not add rows to the index: FTS5 writes a new segment at every statement that
//! touches it, which cost a small commit the most per row. Rows not added yet are the tail, above
//! the watermark (sql/003_text_index_tail.sql), and `q` verifies every one of them besides the
//! index's candidates, so answers stay exact. Upkeep (`Sqlite::maintain`, between the writer's
//! commits) adds the tail in chunks of `INDEX_CHUNK` rows once the writer has been quiet for
//! `INDEX_WHEN_QUIET_FOR`, and after a commit whenever the tail exceeds `TAIL_BOUND`; also at
//! startup (`use_text_index`) and at shutdown (`close`). An import's large batches add their own
//! rows (`BULK_ROWS`).
//!
//! Whether the index exists is the server's startup decision (`use_text_index`). Everything else
//! looks for it in its own transaction and does without it when it is gone.

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use super::durability::Relaxed;
use super::{Sqlite, store_error};
use crate::store::StoreError;

/// Creates and fills the text index (`HOOKBOX_TEXT_INDEX=on`, when it is missing).
const TEXT_INDEX_ON: &str = include_str!("../../../sql/text_index_on.sql");
/// Drops the text index (`HOOKBOX_TEXT_INDEX=off`, when it is present).
const TEXT_INDEX_OFF: &str = include_str!("../../../sql/text_index_off.sql");

/// Rows per transaction when the text index catches up at startup.
const STARTUP_INDEX_CHUNK: usize = 50_000;

/// How long the writer must stay quiet before upkeep indexes a tail below `TAIL_BOUND`. Not at
/// once after a commit: under load the next messages come within a millisecond, and indexing each
/// commit's few rows as they come would write a small FTS5 segment per commit again, the cost that
/// deferring the index avoids. Waiting lets the rows gather into large chunks while messages keep
/// coming, and costs a quiet writer nothing.
pub(super) const INDEX_WHEN_QUIET_FOR: Duration = Duration::from_millis(20);

/// Rows the tail may hold while messages keep coming; past it upkeep indexes after every commit
/// (`q` verifies every tail row, so this bounds what the tail adds to a search).
const TAIL_BOUND: u64 = 4096;

/// Rows per indexing transaction: 2 ms median, 8 ms at p90 here under full ingest load (1024 rows
/// took 3 and 15 ms), so a message arriving meanwhile waits about that long.
const INDEX_CHUNK: usize = 512;

/// At most this many chunks after one commit while messages wait: more than a commit adds (it
/// adds under `BULK_ROWS` rows to the tail; larger batches index their own), so a tail past its
/// bound shrinks under any load, and no message waits more than a few chunks.
const BUSY_CHUNKS: usize = 2;

/// How far `index_some` goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// Until the tail is empty, stopping as soon as a message waits.
    Empty,
    /// Only while the tail is past `TAIL_BOUND` (right after a commit).
    Bound,
}

/// Whether the database has the text index, as the transaction (or connection) on `conn` sees it.
pub(super) fn text_index_present(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'messages_fts')",
    )?
    .query_row([], |row| row.get(0))
}

impl Sqlite {
    /// Creates (and fills) or drops the text index, the server's startup decision; with the
    /// index on, rows waiting for it (a tail left by the last run, or rows another program
    /// wrote) are added before serving, so every search starts from an empty tail.
    pub fn use_text_index(&mut self, on: bool) -> Result<(), StoreError> {
        self.reconcile_text_index(on).map_err(store_error)?;
        if on && self.index_upkeep {
            while self.index_pending(STARTUP_INDEX_CHUNK)? > 0 {}
        }
        Ok(())
    }

    fn reconcile_text_index(&mut self, on: bool) -> rusqlite::Result<()> {
        if text_index_present(&self.conn)? == on {
            return Ok(());
        }
        let started = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(if on { TEXT_INDEX_ON } else { TEXT_INDEX_OFF })?;
        tx.commit()?;
        log::info!(
            text_index = on,
            seconds = started.elapsed().as_secs_f64();
            "text index {}",
            if on { "built" } else { "dropped" }
        );
        Ok(())
    }

    /// Adds the oldest `max_rows` rows of the tail (rows above the watermark, see
    /// sql/003_text_index_tail.sql) to the text index and moves the watermark past them, in one
    /// transaction; returns how many rows that covered, those without text included (0: the
    /// tail is empty, or there is no text index). The transaction is not synced on its own
    /// (`synchronous = NORMAL`, see `Relaxed`): it adds nothing anyone was promised, and the
    /// next durable commit syncs the WAL holding it; lost with a power cut, it rolls back whole,
    /// leaving those rows in the tail.
    pub fn index_pending(&mut self, max_rows: usize) -> Result<usize, StoreError> {
        if max_rows == 0 {
            return Ok(0);
        }
        if let Some(why) = &self.broken {
            return Err(StoreError::Unavailable(why.clone()));
        }
        #[cfg(test)]
        let sabotage = self.sabotage_restore;
        #[cfg_attr(not(test), allow(unused_mut))]
        let mut relaxed =
            Relaxed::new(&self.conn, self.synchronous, &mut self.broken).map_err(store_error)?;
        #[cfg(test)]
        {
            relaxed.sabotage = sabotage;
        }
        let covered = (|| -> rusqlite::Result<usize> {
            let tx =
                rusqlite::Transaction::new_unchecked(relaxed.conn, TransactionBehavior::Immediate)?;
            if !text_index_present(&tx)? {
                return Ok(0);
            }
            let covered = index_tail(&tx, i64::try_from(max_rows).unwrap_or(i64::MAX))?;
            tx.commit()?;
            Ok(covered)
        })();
        drop(relaxed);
        self.checkpoint_if_due();
        covered.map_err(store_error)
    }

    /// How many rows the tail holds at most (its arrival numbers above the watermark; purged
    /// ones are counted too, so this may say more than are there). 0 without a text index.
    pub fn unindexed(&mut self) -> Result<u64, StoreError> {
        if !text_index_present(&self.conn).map_err(store_error)? {
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

    /// Adds the tail to the text index, chunk by chunk, between commits (see `Until`), stopping
    /// as soon as a message waits. Returns whether rows still wait for it. A failure is logged
    /// and retried at a later call.
    pub(super) fn index_some(&mut self, until: Until, work_waiting: &dyn Fn() -> bool) -> bool {
        let mut chunks = 0;
        loop {
            let waiting = match self.unindexed() {
                Ok(waiting) => waiting,
                Err(error) => {
                    log::warn!("reading the text index's tail failed: {error}");
                    return false;
                }
            };
            if waiting == 0 {
                return false;
            }
            let busy = until == Until::Bound || work_waiting();
            if busy && (waiting <= TAIL_BOUND || chunks >= BUSY_CHUNKS) {
                return true;
            }
            let started = Instant::now();
            match self.index_pending(INDEX_CHUNK) {
                Ok(0) => return false,
                Ok(rows) => {
                    log::debug!(rows, seconds = started.elapsed().as_secs_f64(); "text index took new rows");
                    chunks += 1;
                }
                Err(error) => {
                    log::warn!("indexing new rows failed (retried after the next commit): {error}");
                    return false;
                }
            }
        }
    }
}

/// Adds the oldest `max_rows` rows above the watermark to the text index, inside `tx`, and moves
/// the watermark to the last of them; returns how many rows that covered. Rows go in `seq` order
/// in one statement, so FTS5 writes them out as one segment.
pub(super) fn index_tail(tx: &rusqlite::Transaction<'_>, max_rows: i64) -> rusqlite::Result<usize> {
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
pub(super) const TRIGRAM: usize = 3;

/// The FTS5 query for rows whose folded text may contain `needle` (3+ characters): all of the
/// needle's trigrams at every third position, and its last one. The index keeps no positions
/// (`detail=none`: a third smaller and faster to fill), so this finds a superset of the rows
/// containing the needle, which the exact check then narrows. Every third trigram already
/// covers each character, and fewer terms are fewer doclists to intersect.
pub(super) fn trigram_query(needle: &str) -> String {
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
