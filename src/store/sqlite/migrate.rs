//! Migrations: `sql/00N_*.sql` in order, keyed on `PRAGMA user_version`. Whether a database
//! may be migrated at all (not newer than this build) is decided above the seam, in `Store`.

use std::time::Instant;

use rusqlite::TransactionBehavior;

use super::{Sqlite, store_error};
use crate::store::StoreError;

/// Migrations in order; migration `i` brings `PRAGMA user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../sql/001_init.sql"),
    include_str!("../../../sql/002_growth.sql"),
    include_str!("../../../sql/003_text_index_tail.sql"),
    include_str!("../../../sql/004_feed.sql"),
];

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

impl Sqlite {
    /// Brings the schema from `current` up to `SCHEMA_VERSION`, one transaction per migration
    /// (the caller has refused a newer one). Sorts that a migration needs (`CREATE INDEX` over
    /// every row) spill to temporary files rather than memory: in memory they peaked at 118 MiB
    /// migrating 1M messages.
    pub fn migrate(&mut self, current: i64) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA temp_store = FILE")
            .map_err(store_error)?;
        let migrated = self.migrate_in_steps(current);
        self.conn
            .execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(store_error)?;
        migrated
    }

    fn migrate_in_steps(&mut self, current: i64) -> Result<(), StoreError> {
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{assert_index_exact, search, test_options};

    #[test]
    fn a_schema_two_store_with_its_index_takes_every_row_as_indexed() {
        let dir = std::env::temp_dir().join(format!("hookbox-sqlite-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let options = test_options(dir.join("t.db"));
        {
            // Schema 2 as it was: the index filled inside each insert, no watermark.
            let store = Sqlite::open(&options).unwrap();
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
        let mut store = Sqlite::open(&options).unwrap();
        store.migrate(2).unwrap();
        store.use_text_index(true).unwrap();
        store.dense_share = 0;
        assert_eq!(store.stored_schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.unindexed().unwrap(), 0);
        assert_index_exact(&store);
        assert_eq!(search(&mut store, "zebra"), (vec!["a".to_owned()], 1));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
