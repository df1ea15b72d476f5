//! Test support: a real server on an OS-chosen loopback port with its own temporary database
//! (`server`), where it keeps its data (`store`), and one raw HTTP/1.1 client (`http`), so tests
//! control every byte sent (unencoded `+`, odd bodies, hostile requests) and see every byte
//! returned.
//!
//! One suite, two stores: `HOOKBOX_TEST_STORE=postgres` runs every `TestServer` on a throwaway
//! PostgreSQL database (`hookbox_t_<pid>_<n>` on 127.0.0.1:5432, or `HOOKBOX_TEST_PG_URL`'s
//! server), created for the server and dropped after it; unset or `sqlite`, on an SQLite file in
//! a temporary directory. The few tests about one store's own machinery (SQLite's WAL, page cap)
//! ask `sqlite_only()` and say so when they stand aside.

#![allow(dead_code, unused_imports)]

mod http;
mod server;
mod store;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

pub use http::{
    BOUND, Conn, Ending, Resp, Seen, keep_alive_request, metric_value, parse_response,
    read_response, read_response_by_length, request_bytes, send_to, take_response,
};
pub use server::TestServer;
pub use store::{
    PgDatabase, StoreKind, TempDir, TestDb, WriteBlock, postgres_available, sqlite_only, store_kind,
};

pub const SECRET: &str = "testsecret";

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
    let mut conn = Conn::try_open(addr, Duration::from_secs(5))?;
    conn.stream.write_all(&bytes)?;
    match conn.next(Duration::from_secs(30)) {
        Seen::Answered(resp) => Ok(resp),
        Seen::Closed => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a whole response",
        )),
        Seen::Silent => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no response within 30 s",
        )),
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

/// Every `.rs` file under `dir`, recursively.
pub fn rust_files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}
