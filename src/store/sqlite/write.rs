//! Writes: the group commit's insert and retention's purge.

use std::sync::atomic::Ordering;

use rusqlite::{Connection, TransactionBehavior, params};

use super::open::CACHE_KIB;
use super::text_index::{index_tail, text_index_present};
use super::{CHECKPOINT_FRAMES, Sqlite, store_error};
use crate::message::Message;
use crate::store::{Inserted, Retention, StoreError};

/// A batch this large (an import) gets a page cache of `BULK_CACHE_KIB` for its transaction: its
/// dirty pages then stay in memory until the commit instead of spilling into the WAL and being
/// read back (a quarter of import time). The writer's batches stay far below it.
pub(super) const BULK_ROWS: usize = 1000;
const BULK_CACHE_KIB: i64 = 32 * 1024;

impl Sqlite {
    /// Stores each message unless its id is already present (the first stored row is never
    /// changed), all in one transaction: one commit, one fsync. Results are in input order; a
    /// repeated id within the batch is `Duplicate` from its second occurrence on. If anything
    /// fails the whole batch is rolled back and nothing is stored.
    pub fn insert_batch(
        &mut self,
        messages: &[Message],
        received_at: &str,
    ) -> Result<Vec<Inserted>, StoreError> {
        if let Some(why) = &self.broken {
            return Err(StoreError::Unavailable(why.clone()));
        }
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
        result.map_err(|error| match self.cap_reached(&error, messages) {
            Some(cap) => StoreError::Unavailable(cap),
            None => store_error(error),
        })
    }

    /// When `error` is "database or disk is full" because the file reached `HOOKBOX_MAX_DB_MIB`
    /// (`max_page_count`) rather than the disk filling up, says so: the operator's remedy is the
    /// cap or retention, not a bigger disk. The cap is taken as the cause when the pages left
    /// under it are fewer than a generous estimate of what the batch needs (rows, index
    /// entries and text index, several times over).
    fn cap_reached(&self, error: &rusqlite::Error, messages: &[Message]) -> Option<String> {
        if error.sqlite_error_code() != Some(rusqlite::ErrorCode::DiskFull) {
            return None;
        }
        let pragma = |name: &str| -> Option<i64> {
            self.conn
                .pragma_query_value(None, name, |row| row.get(0))
                .ok()
        };
        let (pages, max_pages, page_size) = (
            pragma("page_count")?,
            pragma("max_page_count")?,
            pragma("page_size")?.max(512),
        );
        // SQLite's own default maximum: no cap was set.
        if max_pages >= 0xFFFF_FFFE {
            return None;
        }
        let bytes: usize = messages
            .iter()
            .map(|m| {
                let text = m.text.as_ref().map_or(0, String::len);
                m.message_id.len() + m.from.len() + m.to.len() + m.ts.len() + text + 64
            })
            .sum();
        let needed = 4 * i64::try_from(bytes).unwrap_or(i64::MAX) / page_size + 64;
        (max_pages - pages < needed).then(|| {
            format!(
                "the database reached its size cap, HOOKBOX_MAX_DB_MIB={} ({pages} of {max_pages} \
                 pages of {page_size} bytes); raise the cap or retention (HOOKBOX_RETAIN_*)",
                max_pages * page_size / (1024 * 1024)
            )
        })
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
        if messages.len() >= BULK_ROWS && text_index_present(&tx)? {
            index_tail(&tx, i64::MAX)?;
        }
        tx.commit()?;
        Ok(results)
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
        let purged = purge(&mut self.conn).map_err(store_error);
        self.checkpoint_if_due();
        purged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{Rng, message, test_store};
    use crate::timestamp;

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
}
