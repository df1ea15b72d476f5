//! What each store is told when it opens: its own settings, built from `Config` in one place
//! (`Config::store_options`), so a store never sees (or depends on) settings that are not its own.

use std::path::PathBuf;
use std::time::Duration;

/// The settings of the configured store.
#[derive(Debug, Clone)]
pub enum StoreOptions {
    Sqlite(SqliteOptions),
    Postgres(PostgresOptions),
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// How long a statement waits for a lock before it fails (503).
    pub busy_timeout: Duration,
    /// `synchronous` for every connection (`HOOKBOX_SYNCHRONOUS`).
    pub durability: Durability,
    /// Upper bound on the file in MiB; 0: none (`HOOKBOX_MAX_DB_MIB`).
    pub max_db_mib: u64,
    /// Budget of one read (`HOOKBOX_QUERY_TIMEOUT_MS`).
    pub query_timeout: Duration,
    /// Whether upkeep adds new rows to the text index. Always on in service; tests turn it off to
    /// hold rows in the tail, which `q` must find all the same.
    pub index_upkeep: bool,
}

#[derive(Clone)]
pub struct PostgresOptions {
    /// The connection URL, as given (it may hold a password: never logged).
    pub url: String,
    /// Budget of one read (`statement_timeout`).
    pub query_timeout: Duration,
    /// How long a write waits for a lock before it fails (`lock_timeout`).
    pub lock_timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"…")
            .field("query_timeout", &self.query_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

/// SQLite's `synchronous` setting for every connection (see the README's trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each commit returns after the WAL is fsynced: a 200 survives power loss.
    Full,
    /// Commits are fsynced only at checkpoints: a 200 survives a crash of hookbox, but the last
    /// moments before a power loss or kernel crash may be lost.
    Normal,
}

impl Durability {
    pub fn as_pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}
