//! `synchronous` relaxed for work that promises nothing, and always put back.
//!
//! Indexing the tail adds nothing anyone was promised, so its transactions need not be synced on
//! their own: the writer relaxes `synchronous` to NORMAL around them. The setting is a safety
//! setting: were it left at NORMAL, every later 200 would be acknowledged before its fsync. So
//! the relaxation is a guard that restores the configured value when dropped (on every path, a
//! failed or panicking index chunk included), reads it back, and, if it cannot be put back, marks
//! the store broken: its writes then answer 503 and `/health/ready` says why, until a restart.

use rusqlite::Connection;

use crate::store::Durability;

/// `synchronous = NORMAL` on `conn` while this lives.
pub(super) struct Relaxed<'a> {
    pub(super) conn: &'a Connection,
    restore: Durability,
    broken: &'a mut Option<String>,
    /// Tests make the restore fail this way (SQLite gives no natural way to).
    #[cfg(test)]
    pub(super) sabotage: bool,
}

impl<'a> Relaxed<'a> {
    pub(super) fn new(
        conn: &'a Connection,
        restore: Durability,
        broken: &'a mut Option<String>,
    ) -> rusqlite::Result<Relaxed<'a>> {
        conn.pragma_update(None, "synchronous", Durability::Normal.as_pragma())?;
        Ok(Relaxed {
            conn,
            restore,
            broken,
            #[cfg(test)]
            sabotage: false,
        })
    }

    fn put_back(&self) -> Result<(), String> {
        #[cfg(test)]
        let wanted = if self.sabotage {
            Durability::Normal
        } else {
            self.restore
        };
        #[cfg(not(test))]
        let wanted = self.restore;
        self.conn
            .pragma_update(None, "synchronous", wanted.as_pragma())
            .map_err(|error| error.to_string())?;
        let level: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .map_err(|error| error.to_string())?;
        if level == level_of(self.restore) {
            Ok(())
        } else {
            Err(format!(
                "synchronous reads {level} after setting {}",
                self.restore.as_pragma()
            ))
        }
    }
}

impl Drop for Relaxed<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.put_back() {
            let why = format!(
                "synchronous could not be restored to {} after indexing ({error}); writes are \
                 refused until hookbox restarts",
                self.restore.as_pragma()
            );
            log::error!("{why}");
            *self.broken = Some(why);
        }
    }
}

/// What `PRAGMA synchronous` reads for `durability`.
fn level_of(durability: Durability) -> i64 {
    match durability {
        Durability::Normal => 1,
        Durability::Full => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn the_guard_relaxes_while_it_lives_and_restores_on_drop() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        let mut broken = None;
        {
            let guard = Relaxed::new(&conn, Durability::Full, &mut broken).unwrap();
            assert_eq!(synchronous(guard.conn), 1);
        }
        assert_eq!((synchronous(&conn), broken), (2, None));
    }

    #[test]
    fn a_restore_that_does_not_take_marks_the_store_broken() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        let mut broken = None;
        {
            let mut guard = Relaxed::new(&conn, Durability::Full, &mut broken).unwrap();
            guard.sabotage = true;
        }
        let why = broken.expect("marked broken");
        assert!(
            why.contains("synchronous could not be restored to FULL"),
            "{why}"
        );
    }

    mod store {
        use crate::message::Message;
        use crate::store::Durability;
        use crate::store::sqlite::tests::{Rng, message, test_store};
        use crate::store::{Store, StoreError};
        use crate::timestamp;

        fn synchronous(store: &crate::store::sqlite::Sqlite) -> i64 {
            super::synchronous(&store.conn)
        }

        fn some_rows(rng: &mut Rng, from: usize) -> Vec<Message> {
            (from..from + 20).map(|id| message(rng, id)).collect()
        }

        #[test]
        fn index_work_leaves_synchronous_as_configured_even_when_it_fails() {
            for durability in [Durability::Full, Durability::Normal] {
                let mut test = test_store("sync", |options| {
                    options.durability = durability;
                    options.busy_timeout = std::time::Duration::from_millis(10);
                });
                let store = &mut test.store;
                let level = synchronous(store);
                assert_eq!(level, super::level_of(durability));
                let mut rng = Rng(3);
                let now = timestamp::now_utc();
                store.insert_batch(&some_rows(&mut rng, 0), &now).unwrap();
                assert_eq!(store.index_pending(7).unwrap(), 7);
                assert_eq!(synchronous(store), level);
                // An index chunk that cannot take the write lock fails; the setting is back.
                let other = rusqlite::Connection::open(test.dir.join("t.db")).unwrap();
                other.execute_batch("BEGIN IMMEDIATE").unwrap();
                assert!(test.store.index_pending(7).is_err());
                assert_eq!(synchronous(&test.store), level);
                assert_eq!(test.store.broken(), None);
            }
        }

        #[test]
        fn a_store_that_cannot_restore_synchronous_refuses_writes_and_is_not_ready() {
            let mut test = test_store("sync-broken", |_| {});
            let mut rng = Rng(4);
            let now = timestamp::now_utc();
            test.store
                .insert_batch(&some_rows(&mut rng, 0), &now)
                .unwrap();
            test.store.sabotage_restore = true;
            test.store.index_pending(100).unwrap();
            let why = test.store.broken().expect("marked broken");
            assert!(why.contains("synchronous"), "{why}");
            // Never a write acknowledged under the relaxed setting: every write is refused.
            let refused = test.store.insert_batch(&some_rows(&mut rng, 100), &now);
            assert!(
                matches!(refused, Err(StoreError::Unavailable(ref cause)) if *cause == why),
                "{refused:?}"
            );
            assert!(test.store.index_pending(100).is_err());
            let sqlite = std::mem::replace(
                &mut test.store,
                crate::store::sqlite::Sqlite::open(&crate::store::sqlite::tests::test_options(
                    test.dir.join("t.db"),
                ))
                .unwrap(),
            );
            let mut store = Store::Sqlite(sqlite);
            assert_eq!(store.check_ready(), Err(why.clone()));
            assert_eq!(store.broken(), Some(why));
            // A fresh connection (a restart) is not broken.
            assert_eq!(test.store.broken(), None);
        }
    }
}
