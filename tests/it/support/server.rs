//! A real server started in-process on 127.0.0.1:0, stopped gracefully in `Drop`.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use hookbox::{Config, ServerHandle};

use super::http::{Conn, Resp, request_bytes};
use super::store::{TestDb, WriteBlock};
use super::{SECRET, message, metric_value, sign};

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
        TestServer::start_in(TestDb::scratch(), config)
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
        std::mem::replace(&mut self.dir, TestDb::scratch())
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
        let mut conn = self.conn();
        assert!(
            conn.send(bytes),
            "the server closed before taking the request"
        );
        conn.next(Duration::from_secs(30)).resp("one request")
    }

    /// A client connection to this server (see `Conn`).
    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
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
