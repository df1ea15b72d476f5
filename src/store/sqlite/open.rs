//! Opening a connection: the settings every connection shares (WAL, `synchronous`, the page
//! cache, the size cap), the SQL functions `q` needs, and the read deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::list::DENSE_SHARE;
use super::migrate::SCHEMA_VERSION;
use super::{Sqlite, store_error};
use crate::store::{SqliteOptions, StoreError};
use crate::text;

/// The progress handler runs every this many SQLite VM steps (a few microseconds of work).
const PROGRESS_STEPS: i32 = 1000;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). Small on purpose:
/// the target boxes have little memory and the OS page cache sits behind it anyway.
pub(super) const CACHE_KIB: i64 = 1024;

/// Opening is the one place where "cannot open" names a setting, not a passing state.
fn open_error(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::InvalidParameterName(reason) => StoreError::Internal(reason),
        other => store_error(other),
    }
}

impl Sqlite {
    /// Opens (creating if needed) the database file with the settings every connection shares.
    pub fn open(options: &SqliteOptions) -> Result<Sqlite, StoreError> {
        Sqlite::open_connection(options).map_err(open_error)
    }

    /// Opens an existing database for reading only (`hookbox export`): it creates nothing, changes
    /// nothing (no journal mode, no migration) and works on a read-only file or directory. First
    /// `mode=ro`, which still sees what a live server commits; when that cannot set up the WAL's
    /// shared memory (a read-only directory with no `-shm` beside the file), `immutable=1`, which
    /// is then safe: with no `-shm` and no way to create one, no writer has the file open. A WAL
    /// with frames in it that cannot be read is an error, never a silently older snapshot.
    pub fn open_read_only(options: &SqliteOptions) -> Result<Sqlite, StoreError> {
        let path = &options.path;
        let mut uri = String::from("file:");
        for &byte in path.as_os_str().as_encoded_bytes() {
            if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
                uri.push(byte as char);
            } else {
                uri.push_str(&format!("%{byte:02X}"));
            }
        }
        let open = |parameters: &str| -> rusqlite::Result<Connection> {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(format!("{uri}?{parameters}"), flags)?;
            conn.busy_timeout(options.busy_timeout)?;
            let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if version != SCHEMA_VERSION {
                return Err(rusqlite::Error::InvalidParameterName(match version {
                    0 => format!(
                        "{} is not a hookbox database (schema version 0)",
                        path.display()
                    ),
                    _ => format!(
                        "{} has schema version {version}, this build reads {SCHEMA_VERSION}; \
                         start the server on it once to migrate",
                        path.display()
                    ),
                }));
            }
            Ok(conn)
        };
        let wal = {
            let mut name = path.clone().into_os_string();
            name.push("-wal");
            std::fs::metadata(name).map_or(0, |meta| meta.len())
        };
        let conn = match open("mode=ro") {
            Ok(conn) => conn,
            Err(error @ rusqlite::Error::InvalidParameterName(_)) => return Err(open_error(error)),
            // Only for "cannot set up the shared memory": a busy or damaged file is an error.
            Err(error)
                if wal == 0
                    && matches!(
                        error.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
                    ) =>
            {
                open("immutable=1").map_err(open_error)?
            }
            Err(error) => return Err(open_error(error)),
        };
        Ok(Sqlite {
            conn,
            wal_frames: Arc::new(AtomicI32::new(0)),
            text_index: true,
            // It writes nothing, so it has no upkeep to do.
            index_upkeep: false,
            synchronous: options.durability,
            broken: None,
            index_missing_logged: false,
            #[cfg(test)]
            sabotage_restore: false,
            dense_share: DENSE_SHARE,
            query_timeout: options.query_timeout,
            deadline: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    fn open_connection(options: &SqliteOptions) -> rusqlite::Result<Sqlite> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&options.path, flags)?;
        conn.busy_timeout(options.busy_timeout)?;
        // `list` has a few dozen statement shapes (filters × search kind); keep them all prepared.
        conn.set_prepared_statement_cache_capacity(64);
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "could not switch the database to WAL (journal_mode is {mode})"
            )));
        }
        // FULL (the default): a commit returns only after the WAL is synced, so a 200 survives
        // power loss. NORMAL: synced at checkpoints only (see README, "Durability").
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA cache_size = -{CACHE_KIB}; PRAGMA temp_store = MEMORY;",
            options.durability.as_pragma()
        ))?;
        if options.max_db_mib > 0 {
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            let bytes =
                i64::try_from(options.max_db_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
            conn.pragma_update(None, "max_page_count", bytes / page_size.max(512))?;
        }
        conn.create_scalar_function(
            "hookbox_contains_folded",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            // Borrowed values: no allocation per row of a full scan.
            |ctx| {
                let needle = ctx
                    .get_raw(1)
                    .as_str()
                    .map_err(|error| rusqlite::Error::UserFunctionError(Box::new(error)))?;
                Ok(match ctx.get_raw(0) {
                    ValueRef::Text(text) => std::str::from_utf8(text)
                        .is_ok_and(|text| text::contains_folded(text, needle)),
                    _ => false,
                })
            },
        )?;
        // The fold the text index holds (see sql/text_index_on.sql): its triggers call it.
        conn.create_scalar_function(
            "hookbox_fold",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                Ok(match ctx.get_raw(0) {
                    ValueRef::Text(raw) => std::str::from_utf8(raw).ok().map(text::fold),
                    _ => None,
                })
            },
        )?;
        // A read past its deadline is interrupted (SQLITE_INTERRUPT), which `bounded` reports
        // as a timeout. Writes never arm the deadline: a commit is never cut short.
        let epoch = Instant::now();
        let deadline = Arc::new(AtomicU64::new(0));
        let armed = Arc::clone(&deadline);
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                let deadline = armed.load(Ordering::Relaxed);
                deadline != 0 && epoch.elapsed().as_nanos() as u64 >= deadline
            }),
        )?;
        // Replaces SQLite's automatic checkpoint, which runs inside the commit that crosses the
        // threshold (so its requests would wait for it), with a count of WAL frames after each
        // commit: `after_commit` checkpoints when it says so. Only the writer commits, so on the
        // workers' connections the hook never fires.
        let wal_frames = Arc::new(AtomicI32::new(0));
        let frames = Arc::clone(&wal_frames);
        conn.wal_hook(Some(move |_: &mut _, pages| {
            frames.store(pages, Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Sqlite {
            conn,
            wal_frames,
            text_index: true,
            index_upkeep: options.index_upkeep,
            synchronous: options.durability,
            broken: None,
            index_missing_logged: false,
            #[cfg(test)]
            sabotage_restore: false,
            dense_share: DENSE_SHARE,
            query_timeout: options.query_timeout,
            deadline,
            epoch,
        })
    }

    /// Runs a read under the query timeout.
    pub(super) fn bounded<T>(
        &mut self,
        read: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let deadline = self.epoch.elapsed() + self.query_timeout;
        self.deadline
            .store((deadline.as_nanos() as u64).max(1), Ordering::Relaxed);
        let result = read(&mut self.conn);
        self.deadline.store(0, Ordering::Relaxed);
        result.map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => StoreError::QueryTimeout,
            _ => store_error(error),
        })
    }
}
