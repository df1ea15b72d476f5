//! `/messages`: one page and its exact total from one read snapshot. A few statement shapes
//! (`Shape`: filters × how `q` is answered), each walking an order index, never sorting.

use rusqlite::types::ToSql;

use super::text_index::{TRIGRAM, text_index_present, trigram_query};
use super::{Sqlite, StoreError};
use crate::store::{ListQuery, Page, StoredMessage};
use crate::text;

impl Sqlite {
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
        let mut index_missing = false;
        let page = self.bounded(|conn| {
            let tx = conn.transaction()?;
            // The watermark, read in the same transaction as the rows: an indexing commit in
            // between can neither make a row count twice nor hide it.
            let mut upto: i64 = 0;
            let search = match (&needle, &phrase) {
                (None, _) => Search::None,
                (Some(_), None) => Search::Scan,
                // The index is looked for in this read's own snapshot: something else may have
                // dropped it since this connection opened (an older `hookbox import` with
                // HOOKBOX_TEXT_INDEX=off did). Without it, `q` scans, as with the index off.
                (Some(_), Some(_)) if !text_index_present(&tx)? => {
                    index_missing = true;
                    Search::Scan
                }
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
        });
        if index_missing && !self.index_missing_logged {
            self.index_missing_logged = true;
            log::warn!(
                "the text index is gone (dropped by another program?): q scans the rows until \
                 the server restarts with HOOKBOX_TEXT_INDEX=on"
            );
        }
        page
    }
}

/// `q` scans when the text index's candidates exceed this fraction (1/8) of the rows: past it a
/// scan counts faster (0.18 µs a row against about 1.5 µs a candidate at 1M rows) and needs no
/// candidate set in memory, which this also bounds to an eighth of the rows.
pub(super) const DENSE_SHARE: i64 = 8;

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
pub(super) fn stored_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
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
    use crate::store::sqlite::tests::{Rng, message, test_store};
    use crate::timestamp;

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
