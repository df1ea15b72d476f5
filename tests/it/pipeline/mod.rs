//! The request pipeline against hostile and careless clients (issue 7, SPEC Part 2 "Hostile
//! clients"): pipelining, bodies that never come, clients that never read, header dribblers, the
//! connection cap, strict framing, and shutdown with a request in flight.
//!
//! Every wait here is bounded: client sockets (`support::Conn`) carry read and write timeouts,
//! responses are awaited against a deadline, and the server is stopped on a helper thread joined with a deadline (see
//! `Bounded`), so a server that hangs makes a test fail within seconds instead of hanging the
//! suite. A hung server is leaked rather than joined: the test binary ends anyway.

mod bodies;
mod framing;
mod heads;
mod never_read;
mod pipelining;
mod shutdown;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hookbox::Config;

use crate::support::{
    BOUND, Conn, Seen, TestServer, keep_alive_request, message, metric_value, sign,
};

/// A test server whose shutdown is bounded: dropped (also while unwinding from a failed
/// assertion), it is stopped on another thread and abandoned if that takes over 10 s.
struct Bounded(Option<TestServer>);

impl Bounded {
    fn start(adjust: impl FnOnce(&mut Config)) -> Bounded {
        Bounded(Some(TestServer::start_with(adjust)))
    }

    /// Stops the server; `Some(time taken)` if `ServerHandle::shutdown` returned within `within`.
    fn stop_within(&mut self, within: Duration) -> Option<Duration> {
        let server = self.0.take()?;
        let (done, finished) = mpsc::channel();
        let started = Instant::now();
        thread::spawn(move || {
            drop(server.stop());
            let _ = done.send(());
        });
        finished
            .recv_timeout(within)
            .ok()
            .map(|()| started.elapsed())
    }
}

impl Deref for Bounded {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        self.0.as_ref().expect("server already stopped")
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        let _ = self.stop_within(Duration::from_secs(10));
    }
}

/// One keep-alive HTTP/1.1 request (no `Connection: close`) as bytes.
fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    keep_alive_request(method, target, headers, body)
}

/// A signed webhook request carrying `id` as X-Request-ID.
fn signed_webhook(body: &[u8], id: &str) -> Vec<u8> {
    request(
        "POST",
        "/webhook",
        &[("X-Signature", &sign(body)), ("X-Request-ID", id)],
        body,
    )
}

/// One request on a fresh connection, answered within `within` (else `Silent` / `Closed`).
fn ask(addr: SocketAddr, bytes: &[u8], within: Duration) -> (Seen, Duration) {
    let started = Instant::now();
    let mut conn = Conn::open(addr);
    conn.send(bytes);
    let seen = conn.next(within);
    (seen, started.elapsed())
}

fn get(addr: SocketAddr, target: &str, within: Duration) -> Seen {
    ask(addr, &request("GET", target, &[], b""), within).0
}

/// One value of /metrics, fetched within `BOUND` on `conn` (so it works at the connection cap).
fn metric_on(conn: &mut Conn, series: &str) -> Option<f64> {
    conn.send(&request("GET", "/metrics", &[], b""));
    let resp = conn.next(BOUND).resp("GET /metrics");
    metric_value(&resp.text(), series)
}

/// Polls `series` on /metrics (fresh connections) until it equals `expected` or `within` passes;
/// returns the last value seen. The server may count a close just after the client sees it.
fn metric_reaches(addr: SocketAddr, series: &str, expected: f64, within: Duration) -> Option<f64> {
    metric_until(addr, series, within, |value| value == expected)
}

/// Polls `series` on /metrics (fresh connections) until `wanted` holds for its value or `within`
/// passes; returns the last value seen. The poll interval is not a synchronisation: the gauge or
/// counter is the signal, and the deadline bounds the wait.
fn metric_until(
    addr: SocketAddr,
    series: &str,
    within: Duration,
    wanted: impl Fn(f64) -> bool,
) -> Option<f64> {
    let deadline = Instant::now() + within;
    loop {
        let value = match get(addr, "/metrics", BOUND) {
            Seen::Answered(resp) => metric_value(&resp.text(), series),
            _ => None,
        };
        if value.is_some_and(&wanted) || Instant::now() > deadline {
            return value;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `series` until it has held one value for `quiet` (the server stopped moving it), within
/// `within`; `None` if it never did.
fn metric_settles(
    addr: SocketAddr,
    series: &str,
    quiet: Duration,
    within: Duration,
) -> Option<f64> {
    let deadline = Instant::now() + within;
    let mut last = None;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        let value = match get(addr, "/metrics", BOUND) {
            Seen::Answered(resp) => metric_value(&resp.text(), series),
            _ => None,
        };
        if value != last {
            (last, since) = (value, Instant::now());
        } else if since.elapsed() >= quiet {
            return value;
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn stored_total(addr: SocketAddr) -> u64 {
    let resp = get(addr, "/messages?limit=1", BOUND).resp("GET /messages");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["total"].as_u64().unwrap()
}

fn body_of(id: &str) -> Vec<u8> {
    message(
        id,
        "+919876543210",
        "2025-01-15T10:00:00Z",
        Some("pipelined"),
    )
    .into_bytes()
}
