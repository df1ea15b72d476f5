//! The feed on SQLite: rows after a position, in `seq` order (see sql/004_feed.sql).
//!
//! SQLite takes `seq` under its single write lock and a reader's snapshot is a prefix of the
//! commits, so a snapshot holding some row holds every row with a smaller `seq`: "rows above N"
//! read now can never be joined later by a row below one already served.

use rusqlite::OptionalExtension;

use super::Sqlite;
use crate::store::feed::{FeedPage, FeedQuery, FeedStart, PageBuilder};
use crate::store::{StoreError, StoredMessage};

/// Rows after a `seq`, in `seq` order: a range of the rowid itself, no sort, no other index.
const PAGE_SQL: &str = "SELECT seq, message_id, sender, recipient, ts, text FROM messages
                        WHERE seq > ?1 ORDER BY seq LIMIT ?2";

impl Sqlite {
    /// One page from one read transaction: `feed_state` and the rows agree.
    pub fn feed(&mut self, query: &FeedQuery) -> Result<FeedPage, StoreError> {
        self.bounded(|conn| {
            let tx = conn.transaction()?;
            let (store_id, base, purged_upto): (String, i64, i64) = tx
                .prepare_cached("SELECT store_id, base, purged_upto FROM feed_state WHERE id = 1")?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            let after = match query.start {
                FeedStart::Oldest => base,
                FeedStart::After(position) => position,
                FeedStart::End => end_in(&tx, base, purged_upto)?,
            };
            let mut page = PageBuilder::new(query, after, purged_upto);
            if query.start != FeedStart::End {
                let mut statement = tx.prepare_cached(PAGE_SQL)?;
                let mut rows = statement.query([after.saturating_sub(base), page.read_limit()])?;
                while let Some(row) = rows.next()? {
                    let message = StoredMessage {
                        message_id: row.get(1)?,
                        from: row.get(2)?,
                        to: row.get(3)?,
                        ts: row.get(4)?,
                        text: row.get(5)?,
                    };
                    if !page.take(base + row.get::<_, i64>(0)?, message) {
                        break;
                    }
                }
            }
            Ok(page.finish(store_id))
        })
    }

    /// The newest position (or, with no rows, the highest ever purged).
    pub fn feed_end(&mut self) -> Result<i64, StoreError> {
        self.bounded(|conn| {
            let tx = conn.transaction()?;
            let state: Option<(i64, i64)> = tx
                .prepare_cached("SELECT base, purged_upto FROM feed_state WHERE id = 1")?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (base, purged_upto) = state.unwrap_or((0, 0));
            end_in(&tx, base, purged_upto)
        })
    }
}

fn end_in(tx: &rusqlite::Transaction<'_>, base: i64, purged_upto: i64) -> rusqlite::Result<i64> {
    let newest: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM messages")?
        .query_row([], |row| row.get(0))?;
    Ok(newest.map_or(base, |seq| base + seq).max(purged_upto))
}

#[cfg(test)]
mod tests {
    use super::super::tests::test_store;
    use super::PAGE_SQL;

    /// A page of 100 from any position is a range read of the rowid at any table size: pinned
    /// by the plan, which must not sort nor scan.
    #[test]
    fn a_feed_page_is_a_range_of_the_rowid() {
        let test = test_store("feed-plan", |_| {});
        let plan: Vec<String> = test
            .store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {PAGE_SQL}"))
            .unwrap()
            .query_map([0, 100], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH messages USING INTEGER PRIMARY KEY (rowid>?)"],
            "{plan:?}"
        );
    }
}
