//! Test support: a real server on an OS-chosen loopback port with its own temporary database, and
//! a tiny raw HTTP/1.1 client, so tests control every byte sent (unencoded `+`, odd bodies,
//! hostile requests) and see every byte returned.
//!
//! One suite, two stores: `HOOKBOX_TEST_STORE=postgres` runs every `TestServer` on a throwaway
//! PostgreSQL database (`hookbox_t_<pid>_<n>` on 127.0.0.1:5432, or `HOOKBOX_TEST_PG_URL`'s
//! server), created for the server and dropped after it; unset or `sqlite`, on an SQLite file in
//! a temporary directory. The few tests about one store's own machinery (SQLite's WAL, page cap)
//! ask `sqlite_only()` and say so when they stand aside.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hookbox::config::Database;
use hookbox::{Config, ServerHandle};
use serde_json::Value;

pub const SECRET: &str = "testsecret";

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

/// A running in-process server. Stops (gracefully) and deletes its database on drop.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub dir: TestDb,
}

impl TestServer {
    /// A server with `SECRET` configured and default settings.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// A server whose config `adjust` may change (secret, limits, workers…).
    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TestDb::new();
        let mut config = dir.config(Some(SECRET));
        adjust(&mut config);
        TestServer::start_in(dir, config)
    }

    /// A server on an existing store (for restart tests); `config.database` decides which.
    pub fn start_in(dir: impl Into<TestDb>, config: Config) -> TestServer {
        let dir = dir.into();
        let handle = hookbox::start(config).expect("server starts");
        TestServer {
            addr: handle.addr(),
            handle: Some(handle),
            dir,
        }
    }

    /// A server on a store the caller owns (several servers on one PostgreSQL database).
    pub fn start_on(config: Config) -> TestServer {
        let dir = TestDb {
            dir: TempDir::new(),
            pg: None,
        };
        TestServer::start_in(dir, config)
    }

    /// The SQLite file (SQLite pass only).
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("test.db")
    }

    /// A config for this server's store, e.g. to restart on it.
    pub fn config(&self) -> Config {
        self.dir.config(Some(SECRET))
    }

    /// Stops the server and hands back its store, e.g. to restart on it.
    pub fn stop(mut self) -> TestDb {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
        std::mem::replace(
            &mut self.dir,
            TestDb {
                dir: TempDir::new(),
                pg: None,
            },
        )
    }

    /// Another connection takes the write lock and keeps it until the block is released.
    pub fn block_writes(&self) -> WriteBlock {
        match self.dir.postgres() {
            None => {
                let conn = rusqlite::Connection::open(self.db_path()).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                WriteBlock::Sqlite(conn)
            }
            Some(pg) => {
                let mut client = pg.client();
                client
                    .batch_execute("BEGIN; LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
                    .unwrap();
                WriteBlock::Postgres(client)
            }
        }
    }

    /// Sets the schema version the store records, behind the server's back.
    pub fn set_schema_version(&self, version: i64) {
        match self.dir.postgres() {
            None => rusqlite::Connection::open(self.db_path())
                .unwrap()
                .pragma_update(None, "user_version", version)
                .unwrap(),
            Some(pg) => {
                let version = i32::try_from(version).unwrap();
                pg.client()
                    .execute(
                        "WITH cut AS (DELETE FROM hookbox_schema WHERE version > $1)
                         INSERT INTO hookbox_schema (version) VALUES ($1) ON CONFLICT DO NOTHING",
                        &[&version],
                    )
                    .unwrap();
            }
        }
    }

    pub fn get(&self, target: &str) -> Resp {
        self.send("GET", target, &[], b"")
    }

    /// POSTs `body` to /webhook signed with `SECRET`.
    pub fn post_webhook(&self, body: &[u8]) -> Resp {
        let signature = sign(body);
        self.send("POST", "/webhook", &[("X-Signature", &signature)], body)
    }

    /// POSTs a valid message built from its parts.
    pub fn post_message(&self, id: &str, from: &str, ts: &str, text: Option<&str>) -> Resp {
        self.post_webhook(message(id, from, ts, text).as_bytes())
    }

    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.raw(&request_bytes(self.addr, method, target, headers, body))
    }

    /// Sends `bytes` as they are and parses the one response.
    pub fn raw(&self, bytes: &[u8]) -> Resp {
        let mut stream = self.connect();
        stream.write_all(bytes).unwrap();
        read_response(&mut stream)
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }

    /// The value of one sample line of /metrics, e.g. `webhook_requests_total{result="created"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").text();
        metric_value(&text, series)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

/// One HTTP/1.1 request with `Content-Length` and `Connection: close`, as bytes.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

pub fn sign(body: &[u8]) -> String {
    hookbox::signature::sign_hex(SECRET.as_bytes(), body)
}

/// A valid message body.
pub fn message(id: &str, from: &str, ts: &str, text: Option<&str>) -> String {
    serde_json::json!({
        "message_id": id,
        "from": from,
        "to": "+14155550100",
        "ts": ts,
        "text": text,
    })
    .to_string()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// POSTs a signed body to /webhook at `addr`, reporting a refused or cut connection as an error
/// instead of panicking (for tests that kill servers under load).
pub fn try_post_webhook(addr: SocketAddr, body: &[u8]) -> std::io::Result<Resp> {
    let signature = sign(body);
    let bytes = request_bytes(
        addr,
        "POST",
        "/webhook",
        &[("X-Signature", &signature)],
        body,
    );
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&bytes)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a whole response head",
        ));
    }
    Ok(parse_response(&raw))
}

/// Reads one response from a stream the server will close (we always send `Connection: close`).
pub fn read_response(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Reads one response by its `Content-Length`, without waiting for the server to close the
/// connection: for requests whose body the server must answer without reading (or finishing).
pub fn read_response_by_length(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(&raw[..split + 4]);
            let length: usize = head
                .header("content-length")
                .map_or(0, |value| value.parse().unwrap());
            if raw.len() >= split + 4 + length {
                return parse_response(&raw[..split + 4 + length]);
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

/// A small deterministic PRNG (xorshift64*): inputs and orders differ per seed, not per run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn range(&mut self, low: u32, high_inclusive: u32) -> u32 {
        low + self.below((high_inclusive - low + 1) as usize) as u32
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Fisher–Yates, in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A string from `alphabet` (chars, so multi-byte ones stay whole).
    pub fn string_from(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }
}

/// The schema version this build applies to the suite's store.
pub fn schema_version() -> i64 {
    match store_kind() {
        StoreKind::Sqlite => hookbox::store::sqlite::SCHEMA_VERSION,
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => hookbox::store::postgres::SCHEMA_VERSION,
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => panic!("{}", hookbox::store::NO_POSTGRES),
    }
}
