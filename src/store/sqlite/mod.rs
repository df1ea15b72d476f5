//! The SQLite store: one file, one writer, every query the service runs on SQLite.
//!
//! SQL lives here and in `sql/`, nowhere else. Each worker owns one connection; there is no pool
//! and no lock of ours around a connection. Migrations run once at startup, before workers open
//! theirs. The rooms: `open` (connection settings), `migrate`, `write` (insert and purge),
//! `list` (the `/messages` query shapes and search), `read` (stats and export), `text_index`
//! (the deferred FTS5 index and its upkeep), `durability` (the `synchronous` guard).

mod durability;
mod feed;
mod list;
mod migrate;
mod open;
mod read;
#[cfg(test)]
mod tests;
mod text_index;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::StoreError;
use crate::store::Durability;
use crate::store::upkeep::Moment;
pub use migrate::SCHEMA_VERSION;
use text_index::{INDEX_WHEN_QUIET_FOR, Until};

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
    /// Whether `q` may use the text index when the database has one (always, in service: tests
    /// turn it off to compare the index with the scan on equal rows).
    text_index: bool,
    /// Whether `maintain` and `close` add the tail to the text index (`SqliteOptions`).
    index_upkeep: bool,
    /// `synchronous` as configured (`HOOKBOX_SYNCHRONOUS`), restored after index work.
    synchronous: Durability,
    /// Set when `synchronous` could not be restored: every write then fails (see `Relaxed`).
    broken: Option<String>,
    /// Whether this connection found the text index gone during a search (logged once).
    index_missing_logged: bool,
    /// Tests make `synchronous` fail to be restored after index work (see `Relaxed`).
    #[cfg(test)]
    sabotage_restore: bool,
    /// `q` scans instead of using the index when its candidates are more than 1/`dense_share` of
    /// all rows (0: never; tests use that to exercise the index on tiny stores).
    dense_share: i64,
    query_timeout: Duration,
    /// When the running read must stop, in nanoseconds after `epoch`; 0 while none runs.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
}

impl Sqlite {
    /// `PRAGMA user_version`: reading it opens a read transaction on the file, so it also
    /// proves the database answers.
    pub fn stored_schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(store_error)
    }

    /// Why this connection refuses writes, if it does (see `Relaxed`).
    pub fn broken(&self) -> Option<String> {
        self.broken.clone()
    }

    /// SQLite's upkeep between commits: a checkpoint once the WAL is large, then the text
    /// index's tail (see `index_some`). Returns when the writer should call again if no message
    /// comes (`None`: nothing of SQLite's waits).
    pub fn maintain(
        &mut self,
        moment: Moment,
        work_waiting: &dyn Fn() -> bool,
    ) -> Option<Duration> {
        self.checkpoint_if_due();
        // A broken store writes nothing more (the writer reports why, once).
        if !self.index_upkeep || self.broken.is_some() {
            return None;
        }
        let until = match moment {
            Moment::AfterCommit => Until::Bound,
            Moment::Idle => Until::Empty,
        };
        self.index_some(until, work_waiting)
            .then_some(INDEX_WHEN_QUIET_FOR)
    }

    /// Copies what it can from the WAL into the database without waiting for anyone, once the
    /// WAL holds `CHECKPOINT_FRAMES`. When it copies everything, the next commit starts the WAL
    /// over from its beginning. A failure is retried after the next commits.
    ///
    /// Why here and not SQLite's automatic checkpoint: that one runs inside the commit that
    /// crosses the threshold, delaying that batch's answers; this runs after they are answered.
    /// And only the writer checkpoints, between its own commits, so the checkpoint completes and
    /// the WAL stays a few MiB (one on another thread races the writer and never completes under
    /// steady load: the WAL grew by ~100 MB/s in the benchmark).
    fn checkpoint_if_due(&mut self) {
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

    /// At shutdown (or the end of an import): adds the whole tail to the text index, so the next
    /// start begins with an empty tail (it is at most about `TAIL_BOUND` rows: a few chunks),
    /// then copies everything and empties the WAL (waiting for readers).
    pub fn close(mut self) {
        if self.index_upkeep && self.broken.is_none() {
            self.index_some(Until::Empty, &|| false);
        }
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!("final checkpoint failed (the WAL is replayed on next open): {error}");
        }
    }
}
