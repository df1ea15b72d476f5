//! Request heads (dribbled, oversized) and the connection cap.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Bounded, get, metric_on, metric_reaches, request};
use crate::support::{BOUND, Conn, Seen};

/// One header byte per 200 ms: closed within the header deadline (+1 s), however many bytes came.
#[test]
fn a_header_dribbler_is_closed_at_the_total_header_deadline() {
    let header_deadline = Duration::from_secs(2);
    let server = Bounded::start(|config| {
        config.header_timeout = header_deadline;
        config.read_timeout = Duration::from_secs(10);
    });
    let mut conn = Conn::open(server.addr);
    let mut writer = conn.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let dribbler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Dribble: ";
            let mut sent = 0;
            let began = Instant::now();
            while !stop.load(Ordering::Relaxed) && began.elapsed() < Duration::from_secs(8) {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if writer.write_all(&[byte]).is_err() {
                    break;
                }
                sent += 1;
                // The attack's pace, not a synchronisation.
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let seen = conn.next(header_deadline + Duration::from_secs(1));
    let at = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    dribbler.join().unwrap();
    assert!(
        matches!(seen, Seen::Closed | Seen::Answered(_)),
        "a header dribbler was still connected after {at:?} (header deadline {header_deadline:?})"
    );
    assert!(
        matches!(seen.status(), None | Some(408)),
        "expected a close (or 408): {seen:?}"
    );
    assert!(
        at >= header_deadline - Duration::from_millis(300),
        "cut after {at:?}"
    );
    assert_eq!(
        metric_reaches(
            server.addr,
            r#"hookbox_connections_closed_total{reason="header_timeout"}"#,
            1.0,
            Duration::from_secs(1)
        ),
        Some(1.0),
        "the dribbler's close counted"
    );
    assert_eq!(get(server.addr, "/health/live", BOUND).status(), Some(200));
}

/// 431 (then close) for a 20 KiB request line, 2,000 headers, or one 20 KiB header.
#[test]
fn oversized_request_line_or_headers_are_431_then_closed() {
    let server = Bounded::start(|_| {});
    let long_url = format!(
        "GET /messages?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let mut many = String::from("GET /health/live HTTP/1.1\r\nHost: x\r\n");
    for i in 0..2000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let long_header = format!(
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "h".repeat(20 * 1024)
    );
    for (what, bytes) in [
        ("20 KiB request line", long_url),
        ("2,000 headers", many),
        ("one 20 KiB header", long_header),
    ] {
        let mut conn = Conn::open(server.addr);
        conn.send(bytes.as_bytes());
        let seen = conn.next(Duration::from_secs(2));
        assert_eq!(seen.status(), Some(431), "{what}: {seen:?}");
        assert!(
            conn.closed_within(Duration::from_secs(1)),
            "{what}: still open after the 431"
        );
    }
    assert_eq!(get(server.addr, "/health/live", BOUND).status(), Some(200));
}

// ---- 6. the connection cap ---------------------------------------------------------------------

/// At `max_connections` open, a new connection gets a canned 503 at once and is counted; once
/// one closes, new connections are served again.
#[test]
fn beyond_max_connections_a_new_connection_gets_503_at_once_and_is_counted() {
    let server = Bounded::start(|config| config.max_connections = 4);
    let mut held: Vec<Conn> = (0..4)
        .map(|i| {
            let mut conn = Conn::open(server.addr);
            conn.send(&request("GET", "/health/live", &[], b""));
            let seen = conn.next(BOUND);
            assert_eq!(seen.status(), Some(200), "held connection {i}: {seen:?}");
            conn
        })
        .collect();

    // Nothing sent: the 503 comes on accept (and a request the server never read cannot turn it
    // into a reset).
    let started = Instant::now();
    let mut fifth = Conn::open(server.addr);
    let seen = fifth.next(Duration::from_secs(1));
    assert_eq!(
        seen.status(),
        Some(503),
        "fifth connection at a cap of 4, after {:?}: {seen:?}",
        started.elapsed()
    );
    drop(fifth);
    assert_eq!(
        metric_on(&mut held[0], "hookbox_connections_refused_total"),
        Some(1.0)
    );
    assert_eq!(
        metric_on(&mut held[0], "hookbox_connections_open"),
        Some(4.0)
    );

    drop(held.pop());
    // The server notices the close on the connection's own thread: once the gauge (asked on a
    // held connection, so the cap does not answer instead) says 3, a new connection is served.
    let deadline = Instant::now() + BOUND;
    let mut open = metric_on(&mut held[0], "hookbox_connections_open");
    while open != Some(3.0) && Instant::now() < deadline {
        open = metric_on(&mut held[0], "hookbox_connections_open");
    }
    assert_eq!(open, Some(3.0), "the closed connection was not counted");
    let served = get(server.addr, "/health/live", Duration::from_secs(1));
    assert_eq!(served.status(), Some(200), "after one closed: {served:?}");
}
