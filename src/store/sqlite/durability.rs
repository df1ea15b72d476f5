//! `synchronous` relaxed for work that promises nothing, and always put back.
//!
//! Indexing the tail adds nothing anyone was promised, so its transactions need not be synced on
//! their own: the writer relaxes `synchronous` to NORMAL around them. The setting is a safety
//! setting: were it left at NORMAL, every later 200 would be acknowledged before its fsync. So
//! the relaxation is a guard that restores the configured value when dropped (on every path, a
//! failed or panicking index chunk included), reads it back, and, if it cannot be put back, marks
//! the store broken: its writes then answer 503 and `/health/ready` says why, until a restart.

use rusqlite::Connection;

use crate::config::Durability;

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
}
