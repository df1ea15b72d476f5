//! Where test servers keep their data: temporary directories, the suite's store switch
//! (`HOOKBOX_TEST_STORE`), throwaway PostgreSQL databases, and a second connection that gets in
//! the writer's way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hookbox::Config;
use hookbox::config::Database;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "hookbox-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The store the suite runs against (`HOOKBOX_TEST_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

pub fn store_kind() -> StoreKind {
    static KIND: OnceLock<StoreKind> = OnceLock::new();
    *KIND.get_or_init(|| match std::env::var("HOOKBOX_TEST_STORE").as_deref() {
        Ok("postgres" | "postgresql") => StoreKind::Postgres,
        Ok("sqlite" | "") | Err(_) => StoreKind::Sqlite,
        Ok(other) => panic!("HOOKBOX_TEST_STORE={other:?}: use sqlite or postgres"),
    })
}

/// True on the SQLite pass. On the PostgreSQL pass a test about SQLite's own machinery (its
/// file, WAL or page cap) prints that it stands aside and returns.
pub fn sqlite_only(what: &str) -> bool {
    let sqlite = store_kind() == StoreKind::Sqlite;
    if !sqlite {
        eprintln!("SQLite-only test, not run on PostgreSQL: {what}");
    }
    sqlite
}

/// The server that throwaway databases are created on: the maintenance database of
/// `HOOKBOX_TEST_PG_URL`, by default the local one (trust auth, user postgres).
fn pg_admin_url() -> String {
    std::env::var("HOOKBOX_TEST_PG_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn pg_admin() -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = pg_admin_url().parse()?;
    config.connect_timeout(Duration::from_secs(3));
    config.connect(postgres::NoTls)
}

/// Whether PostgreSQL answers, asked once per test process. Tests that need it whatever the
/// store (tests/it/postgres.rs) call this: without PostgreSQL they print a loud SKIPPED line
/// and pass — except under `CI=true`, where they fail: CI never skips.
pub fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let answer = AVAILABLE.get_or_init(|| {
        let answer = pg_admin()
            .and_then(|mut client| client.batch_execute("SELECT 1"))
            .map_err(|error| format!("{error}"));
        if let Err(error) = &answer {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                return answer;
            }
            // Straight to the file descriptor: the test harness captures eprintln!.
            let banner = format!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! PostgreSQL tests SKIPPED: cannot reach {} ({error})\n\
                 !!! Start it (see README, Tests) or run `make test`; under CI=true they fail.\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
                hookbox::config::redact_url(&pg_admin_url())
            );
            let _ = std::io::stderr().write_all(banner.as_bytes());
        }
        answer
    });
    match answer {
        Ok(()) => true,
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true and PostgreSQL is unreachable ({error}): CI never skips")
        }
        Err(_) => false,
    }
}

/// A throwaway PostgreSQL database, dropped (with any connection still on it) on drop.
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut admin = pg_admin().unwrap_or_else(|error| {
            panic!(
                "HOOKBOX_TEST_STORE=postgres but PostgreSQL is unreachable at {}: {error}",
                hookbox::config::redact_url(&pg_admin_url())
            )
        });
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(|| drop_leftovers(&mut admin));
        let name = format!(
            "hookbox_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        PgDatabase { name }
    }

    pub fn url(&self) -> String {
        let mut url = pg_admin_url();
        let path_start = url
            .find("://")
            .and_then(|scheme| url[scheme + 3..].find('/').map(|slash| scheme + 3 + slash));
        let query = url
            .find('?')
            .map(|at| url[at..].to_owned())
            .unwrap_or_default();
        url.truncate(path_start.unwrap_or(url.len()));
        format!("{url}/{}{query}", self.name)
    }

    /// A connection of the test's own, to look inside or to get in the server's way.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls)
            .expect("connect to the test database")
    }

    /// Every `message_id` stored, read behind the server's back.
    pub fn stored_ids(&self) -> std::collections::HashSet<String> {
        self.client()
            .query("SELECT message_id FROM messages", &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = pg_admin() {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Databases left by test processes that died before dropping them.
fn drop_leftovers(admin: &mut postgres::Client) {
    let Ok(rows) = admin.query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'hookbox\\_t\\_%'",
        &[],
    ) else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name
            .split('_')
            .nth(2)
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Where a test server keeps its data: a temporary directory (the SQLite file `test.db` lives
/// there) and, on the PostgreSQL pass, its own database. Outlives a server for restart tests.
pub struct TestDb {
    dir: TempDir,
    pg: Option<PgDatabase>,
}

impl TestDb {
    /// A fresh store of the suite's kind.
    pub fn new() -> TestDb {
        TestDb {
            dir: TempDir::new(),
            pg: (store_kind() == StoreKind::Postgres).then(PgDatabase::create),
        }
    }

    /// A fresh SQLite store, whatever the suite's store.
    pub fn new_sqlite() -> TestDb {
        TestDb {
            dir: TempDir::new(),
            pg: None,
        }
    }

    /// A fresh PostgreSQL store, whatever the suite's store.
    pub fn new_postgres() -> TestDb {
        TestDb {
            dir: TempDir::new(),
            pg: Some(PgDatabase::create()),
        }
    }

    /// `DATABASE_URL` for this store (for the binary).
    pub fn url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url(),
            None => self.dir.path().join("test.db").display().to_string(),
        }
    }

    /// The temporary directory (for SQLite, where `test.db` is).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn database(&self) -> Database {
        match &self.pg {
            Some(pg) => Database::Postgres(pg.url()),
            None => Database::Sqlite(self.dir.path().join("test.db")),
        }
    }

    /// A server config for this store, as `Config::for_database` makes one.
    pub fn config(&self, secret: Option<&str>) -> Config {
        Config::for_store(self.database(), secret)
    }

    pub fn postgres(&self) -> Option<&PgDatabase> {
        self.pg.as_ref()
    }
}

impl TestDb {
    /// A scratch directory and no database: the stand-in a stopped server leaves behind, or the
    /// directory of a server whose store the caller owns.
    pub(super) fn scratch() -> TestDb {
        TestDb {
            dir: TempDir::new(),
            pg: None,
        }
    }
}

/// A directory of the test's own making (an SQLite file it prepared, say).
impl From<TempDir> for TestDb {
    fn from(dir: TempDir) -> TestDb {
        TestDb { dir, pg: None }
    }
}

/// Keeps a second connection in the writer's way (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a lock
/// on `messages` that conflicts with inserts but not with reads) until released or dropped.
pub enum WriteBlock {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl WriteBlock {
    pub fn release(self) {
        match self {
            WriteBlock::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
            WriteBlock::Postgres(mut client) => client.batch_execute("ROLLBACK").unwrap(),
        }
    }
}
