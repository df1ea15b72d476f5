//! `/stats` from the aggregates, and `export`'s stream.

use rusqlite::{OptionalExtension, params};

use super::list::stored_message;
use super::{Sqlite, store_error};
use crate::store::{ExportFilter, SenderCount, Stats, StoreError, StoredMessage};

impl Sqlite {
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
}
