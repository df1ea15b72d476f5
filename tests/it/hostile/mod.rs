//! Hostile and malformed input: every case ends in a 4xx or a closed connection — never a 5xx,
//! never a hang, never a stored row — and the server still answers `/health/live` afterwards.
//!
//! Requests are sent as raw bytes with `exchange` (over `support::Conn`), which waits a bounded
//! time for either a complete response or the server closing the connection, so nothing here can
//! hang CI.

mod bodies;
mod heads;
mod limits;
mod queries;
mod slow;

use std::time::{Duration, Instant};

use crate::support::{Conn, Resp, Seen, TestServer};

const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

/// Read timeout for the servers of tests that wait for a timeout to fire.
const SHORT: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Exchange {
    seen: Seen,
    /// From the last byte written to the response (or close).
    elapsed: Duration,
}

impl Exchange {
    fn status(&self) -> Option<u16> {
        self.seen.status()
    }
}

/// Sends `bytes` on a fresh connection and waits at most `within` for a complete response or
/// for the server to close; panics (instead of hanging) when neither happens.
fn exchange(server: &TestServer, bytes: &[u8], within: Duration) -> Exchange {
    let mut conn = server.conn();
    // The server may refuse and close before reading everything; what it answers still counts.
    conn.send(bytes);
    await_outcome(&mut conn, within)
}

/// Waits on `conn` as `exchange` does, skipping interim `1xx` responses.
fn await_outcome(conn: &mut Conn, within: Duration) -> Exchange {
    let started = Instant::now();
    let seen = conn.next(within);
    assert!(
        !matches!(seen, Seen::Silent),
        "neither a response nor a close within {within:?}; got so far: {:?}",
        conn.received()
    );
    Exchange {
        seen,
        elapsed: started.elapsed(),
    }
}

/// 4xx or closed: never a 2xx/3xx/5xx.
fn assert_refused(exchange: &Exchange, what: &str) {
    match &exchange.seen {
        Seen::Closed | Seen::Silent => {}
        Seen::Answered(resp) => assert!(
            (400..500).contains(&resp.status),
            "{what}: expected a 4xx or a close, got {} {}",
            resp.status,
            resp.text()
        ),
    }
}

fn total(server: &TestServer) -> u64 {
    let resp = server.get("/messages");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["total"].as_u64().unwrap()
}

/// The server still serves, and the store holds exactly `rows` messages.
fn assert_survived(server: &TestServer, rows: u64) {
    let live = server.get("/health/live");
    assert_eq!(live.status, 200, "{}", live.text());
    assert_eq!(total(server), rows, "unexpected rows stored");
}

fn head(server: &TestServer, request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut raw = format!("{request_line}\r\nHost: {}\r\n", server.addr);
    for header in headers {
        raw.push_str(header);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

fn problem_types(resp: &Resp) -> Vec<String> {
    assert_eq!(resp.status, 422, "{}", resp.text());
    resp.json()["detail"]
        .as_array()
        .expect("detail is a list")
        .iter()
        .map(|problem| problem["type"].as_str().unwrap_or("").to_owned())
        .collect()
}
