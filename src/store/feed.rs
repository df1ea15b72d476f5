//! The storage seam of the feed (`GET /feed`, `hookbox export --follow`): rows in arrival order
//! after a position. Positions are integers that only grow, one per stored row, assigned so that
//! a row becomes visible only after every row with a smaller position (the argument for each store
//! is in ARCHITECTURE.md, "The feed's order"). The SQL is in `sqlite/feed.rs` and
//! `postgres/feed.rs`.

use super::{Store, StoreError, StoredMessage};

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStart {
    /// At the oldest stored row.
    Oldest,
    /// At the end: only rows stored after this read.
    End,
    /// After this position.
    After(i64),
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    pub start: FeedStart,
    /// 1..=1000.
    pub limit: u32,
    /// Only this sender's rows. Rows of other senders are passed over, at most `FILTER_SCAN_ROWS`
    /// per page, so a rare sender costs a bounded read per page, never a scan to the end.
    pub from: Option<String>,
}

/// Rows a filtered page examines at most; a page that stops there is not at the end.
pub const FILTER_SCAN_ROWS: u32 = 5_000;

/// What a page read found, all from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    pub rows: Vec<StoredMessage>,
    /// The position to continue after: the last row returned, or past the rows examined, or
    /// (nothing left to examine) the start itself, moved past what retention purged.
    pub next: i64,
    /// Retention purged rows after the start position: the consumer missed something.
    pub gap: bool,
    /// No row after `next` existed in the snapshot: a consumer may wait for the next commit.
    pub at_end: bool,
    /// Names the database, so positions from another store are refused.
    pub store_id: String,
}

impl Store {
    /// One page of rows in arrival order, never buffering more than `limit` rows, bounded by
    /// the query timeout.
    pub fn feed(&mut self, query: &FeedQuery) -> Result<FeedPage, StoreError> {
        match self {
            Store::Sqlite(store) => store.feed(query),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.feed(query),
        }
    }

    /// The position of the newest row (cheap: one end of an index). Compared between calls, it
    /// tells that another process or instance committed.
    pub fn feed_end(&mut self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(store) => store.feed_end(),
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.feed_end(),
        }
    }
}

/// Shared by both stores: takes the rows after the start in arrival order (at most
/// `read_limit`: the page, or `FILTER_SCAN_ROWS` with a filter), keeps those that match, and
/// works out `next`, `gap` and `at_end` from what it took.
pub(super) struct PageBuilder<'q> {
    query: &'q FeedQuery,
    after: i64,
    purged_upto: i64,
    rows: Vec<StoredMessage>,
    last_examined: Option<i64>,
    examined: u32,
}

impl<'q> PageBuilder<'q> {
    /// `after`: the position the read starts after (for `Oldest`, below every position).
    pub fn new(query: &'q FeedQuery, after: i64, purged_upto: i64) -> PageBuilder<'q> {
        PageBuilder {
            query,
            after,
            purged_upto,
            rows: Vec::new(),
            last_examined: None,
            examined: 0,
        }
    }

    /// Rows the read may return: the page, or the scan budget of a filtered page.
    pub fn read_limit(&self) -> i64 {
        i64::from(match self.query.from {
            Some(_) => FILTER_SCAN_ROWS.max(self.query.limit),
            None => self.query.limit,
        })
    }

    /// Takes the next row; false once the page is full (stop reading).
    pub fn take(&mut self, position: i64, message: StoredMessage) -> bool {
        self.examined += 1;
        self.last_examined = Some(position);
        if self
            .query
            .from
            .as_ref()
            .is_none_or(|from| *from == message.from)
        {
            self.rows.push(message);
        }
        self.rows.len() < self.query.limit as usize
    }

    pub fn finish(self, store_id: String) -> FeedPage {
        let read_all = i64::from(self.examined) < self.read_limit();
        let full = self.rows.len() >= self.query.limit as usize;
        let at_end = read_all && !full;
        let next = match self.last_examined {
            Some(last) => last,
            // Nothing after the start: every purged position is behind us too (rows commit in
            // position order), so the next page need not report the same gap again.
            None => self.after.max(self.purged_upto),
        };
        FeedPage {
            rows: self.rows,
            next,
            gap: self.query.start != FeedStart::Oldest && self.purged_upto > self.after,
            at_end,
            store_id,
        }
    }
}
