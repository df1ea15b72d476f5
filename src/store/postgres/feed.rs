//! The feed on PostgreSQL: rows after a position, in `arrival` order (see sql/postgres/002_feed.sql).
//!
//! Several instances insert at once, and a sequence number is drawn at insert but visible only at
//! commit: without more, a reader could see arrival 20 committed while arrival 10 is still in
//! flight, serve 20, and never see 10. So every writer takes `FEED_LOCK` (transaction-scoped) as
//! the first statement of its insert transaction, before drawing any arrival number, and holds it
//! through its commit: positions are drawn and made visible one transaction at a time, in order.
//! The whole argument is in ARCHITECTURE.md ("The feed's order").

use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use super::Postgres;
use super::connection::Doing;
use super::queries::{read_snapshot, stored_message};
use crate::store::StoreError;
use crate::store::feed::{FeedPage, FeedQuery, FeedStart, PageBuilder};

/// Advisory lock key ("hookbox" and a number) that orders writers' commits, in every instance.
pub const FEED_LOCK: i64 = 0x686f_6f6b_626f_7803;

/// Rows fetched per round trip of a page read.
const FETCH_ROWS: i32 = 1000;

/// Runs the insert statement in a transaction that first takes `FEED_LOCK`: rows are numbered
/// (by the statement's `nextval`) only by the one transaction holding it, and it is released only
/// after the commit has made them visible.
pub(super) fn insert_in_arrival_order(
    client: &mut Client,
    insert: &Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({FEED_LOCK})"))?;
    let rows = tx.query(insert, params)?;
    tx.commit()?;
    Ok(rows)
}

impl Postgres {
    /// One page from one snapshot: `feed_state` and the rows agree.
    pub fn feed(&mut self, query: &FeedQuery) -> Result<FeedPage, StoreError> {
        self.ensure_schema()?;
        let timeout = self.query_timeout_ms;
        self.session.run(Doing::Reading, |connection| {
            feed_in(&mut connection.client, timeout, query)
        })
    }

    /// The newest position (or, with no rows, the highest ever purged).
    pub fn feed_end(&mut self) -> Result<i64, StoreError> {
        self.ensure_schema()?;
        let timeout = self.query_timeout_ms;
        self.session.run(Doing::Reading, |connection| {
            let mut tx = read_snapshot(&mut connection.client, timeout)?;
            let end = end_in(&mut tx)?;
            tx.commit()?;
            Ok(end)
        })
    }
}

fn feed_in(
    client: &mut Client,
    timeout_ms: u128,
    query: &FeedQuery,
) -> Result<FeedPage, postgres::Error> {
    let mut tx = read_snapshot(client, timeout_ms)?;
    let state = tx.query_one(
        "SELECT store_id, purged_upto FROM feed_state WHERE id = 1",
        &[],
    )?;
    let (store_id, purged_upto): (String, i64) = (state.get(0), state.get(1));
    let after = match query.start {
        FeedStart::Oldest => 0,
        FeedStart::After(position) => position,
        FeedStart::End => end_in(&mut tx)?,
    };
    let mut page = PageBuilder::new(query, after, purged_upto);
    if query.start != FeedStart::End {
        // A range of messages_by_arrival: no sort. Fetched a chunk at a time, so a filtered
        // page holds in memory at most a chunk of the rows it passes over.
        let portal = tx.bind(
            "SELECT message_id, sender, recipient, ts, text, arrival FROM messages
             WHERE arrival > $1 ORDER BY arrival LIMIT $2",
            &[&after, &page.read_limit()],
        )?;
        'read: loop {
            let rows = tx.query_portal(&portal, FETCH_ROWS)?;
            for row in &rows {
                if !page.take(row.get(5), stored_message(row)) {
                    break 'read;
                }
            }
            if rows.len() < FETCH_ROWS as usize {
                break;
            }
        }
    }
    tx.commit()?;
    Ok(page.finish(store_id))
}

fn end_in(tx: &mut postgres::Transaction<'_>) -> Result<i64, postgres::Error> {
    let row = tx.query_one(
        "SELECT coalesce((SELECT max(arrival) FROM messages), 0),
                (SELECT purged_upto FROM feed_state WHERE id = 1)",
        &[],
    )?;
    Ok(row.get::<_, i64>(0).max(row.get::<_, i64>(1)))
}
