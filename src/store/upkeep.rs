//! Upkeep between commits: what the writer hands `Store::maintain`, and the part of it every
//! store shares (retention, whose arithmetic is `Retention::cutoff`). Each store's own upkeep
//! (SQLite: the text index's tail and WAL checkpoints; PostgreSQL: none) stays in its module.

use std::time::Duration;

use super::{Retention, Store};

/// When `maintain` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Right after a commit was answered: messages are likely coming, so only what must not
    /// wait is done.
    AfterCommit,
    /// No message came for the pause the last `maintain` asked for (or the writer just started).
    Idle,
}

/// What the writer hands `maintain`.
pub struct Upkeep<'a> {
    pub moment: Moment,
    /// What must go (`HOOKBOX_RETAIN_*`).
    pub retention: Retention,
    /// True once a message waits for the writer: upkeep stops at its next step (a step is one
    /// short transaction), so no message waits for more than a step or two.
    pub work_waiting: &'a dyn Fn() -> bool,
}

/// What one `maintain` call did, and when the writer should call again if no message comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintained {
    pub purged: u64,
    pub call_again_in: Duration,
    /// What this call learned of the writer's own connection, when it checked it (PostgreSQL,
    /// while idle): `Err` says why the next commit could not be made on it.
    pub connection: Option<Result<(), String>>,
}

/// What PostgreSQL's own upkeep found (`Postgres::maintain`); SQLite's writer has nothing to
/// check (the default).
#[derive(Debug, Default)]
pub struct Checked {
    /// When to be called again if no message comes.
    pub call_again_in: Option<Duration>,
    /// The writer's connection, when it was checked (see `Maintained::connection`).
    pub connection: Option<Result<(), String>>,
}

/// How often an idle writer applies retention.
pub(super) const IDLE_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Rows deleted per purge transaction: about 3.5 ms each on a 1M-message SQLite store (its dirty
/// pages fit the page cache; 256 did not, and took 26 ms), so a message arriving during a purge
/// waits at most that long.
const PURGE_BATCH: usize = 64;

/// Retention: deletes what must go in small batches, stopping as soon as a message waits. At
/// least one batch runs per call, so under steady load the purge still advances; under a flood
/// of full commits it lags and catches up in the next lull. A failure is logged and retried at
/// the next call. Returns how many rows went.
pub(super) fn purge_some(store: &mut Store, upkeep: &Upkeep<'_>) -> u64 {
    if upkeep.retention.is_unlimited() {
        return 0;
    }
    let mut purged = 0;
    loop {
        match store.purge(&upkeep.retention, PURGE_BATCH) {
            Ok(0) => break,
            Ok(rows) => purged += rows as u64,
            Err(error) => {
                log::warn!("retention purge failed (retried after the next commit): {error}");
                break;
            }
        }
        if (upkeep.work_waiting)() {
            break;
        }
    }
    purged
}
