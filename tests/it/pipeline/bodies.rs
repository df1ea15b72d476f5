//! Bodies that never come, come a byte at a time, or are not read: none holds a worker,
//! each is cut at the total body deadline, and an unread body closes its connection.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Bounded, ask, body_of, metric_reaches, request, signed_webhook, stored_total};
use crate::support::{Conn, Seen, sign};

/// More silent bodies than workers: another client is answered at once, and each silent
/// connection gets 408 at the body deadline (not later, in turn) and is closed.
#[test]
fn absent_bodies_never_hold_a_worker_and_each_gets_408_at_the_deadline() {
    let body_deadline = Duration::from_secs(2);
    let server = Bounded::start(|config| {
        config.workers = 2;
        config.read_timeout = body_deadline;
    });
    let head = request(
        "POST",
        "/webhook",
        &[
            ("Content-Length", "60000"),
            ("X-Signature", "00"),
            ("Expect", "100-continue"),
        ],
        b"",
    );
    // `request` adds `Content-Length: 0` for a POST; send the announced 60000 only.
    let head = String::from_utf8(head)
        .unwrap()
        .replace("Content-Length: 0\r\n", "")
        .into_bytes();
    let sent = Instant::now();
    let mut silent: Vec<Conn> = (0..6)
        .map(|_| {
            let mut conn = Conn::open(server.addr);
            assert!(conn.send(&head));
            conn
        })
        .collect();
    // `100 Continue` on each: the server has taken the head and waits for the body, so the
    // attack has landed before the honest request goes out.
    for conn in &mut silent {
        conn.expect_continue();
    }
    let (honest, took) = ask(
        server.addr,
        &signed_webhook(&body_of("honest-1"), "rid-honest"),
        Duration::from_secs(3),
    );
    assert_eq!(honest.status(), Some(200), "{honest:?}");
    assert!(
        took < Duration::from_millis(1000),
        "an honest webhook waited {took:?} behind 6 absent bodies (body deadline {body_deadline:?})"
    );
    for (i, conn) in silent.iter_mut().enumerate() {
        let left = (body_deadline + Duration::from_millis(1500)).saturating_sub(sent.elapsed());
        let seen = conn.next(left);
        let at = sent.elapsed();
        assert_eq!(
            seen.status(),
            Some(408),
            "silent body {i}: {seen:?} after {at:?}"
        );
        assert!(
            at >= body_deadline - Duration::from_millis(300),
            "silent body {i} cut after {at:?}, before the deadline"
        );
        assert!(
            conn.closed_within(Duration::from_secs(1)),
            "silent body {i} still open after its 408"
        );
    }
    assert_eq!(
        metric_reaches(
            server.addr,
            r#"hookbox_connections_closed_total{reason="body_timeout"}"#,
            6.0,
            Duration::from_secs(1)
        ),
        Some(6.0),
        "body_timeout closes counted"
    );
    assert_eq!(stored_total(server.addr), 1);
}

/// A body trickled one byte per 200 ms is cut at the total body deadline; the bytes do not
/// restart the clock.
#[test]
fn a_trickled_body_is_cut_at_the_total_body_deadline() {
    let body_deadline = Duration::from_secs(2);
    let server = Bounded::start(|config| config.read_timeout = body_deadline);
    let mut conn = Conn::open(server.addr);
    let head =
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Signature: 00\r\nContent-Length: 60000\r\n\r\n";
    assert!(conn.send(head.as_bytes()));
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = conn.stream.try_clone().unwrap();
    let trickler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let began = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && began.elapsed() < Duration::from_secs(8)
                && writer.write_all(b"x").is_ok()
            {
                // The attack's pace, not a synchronisation.
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let seen = conn.next(body_deadline + Duration::from_millis(1500));
    let at = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    assert!(
        matches!(seen, Seen::Answered(_) | Seen::Closed),
        "a trickled body was still being read after {at:?} (deadline {body_deadline:?}): {seen:?}"
    );
    assert!(
        matches!(seen.status(), None | Some(408)),
        "expected 408 or a close: {seen:?}"
    );
    assert!(
        at >= body_deadline - Duration::from_millis(300),
        "cut after {at:?}"
    );
    assert_eq!(
        metric_reaches(
            server.addr,
            r#"hookbox_connections_closed_total{reason="body_timeout"}"#,
            1.0,
            Duration::from_secs(1)
        ),
        Some(1.0),
        "the trickled body's close counted"
    );
}

// ---- 3. a body the handler did not read --------------------------------------------------------

/// 413 from `Content-Length` alone: the answer says `Connection: close` and the connection is
/// closed at once, without draining (or waiting for) the announced body.
#[test]
fn an_unread_body_closes_the_connection_instead_of_draining_it() {
    let server = Bounded::start(|config| {
        config.max_body_bytes = 1024;
        config.read_timeout = Duration::from_secs(10);
    });
    let mut conn = Conn::open(server.addr);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Signature: {}\r\nContent-Length: 100000\r\n\r\n",
        sign(b"")
    );
    assert!(conn.send(head.as_bytes()));
    assert!(conn.send(&[b'x'; 2000]));
    let started = Instant::now();
    let resp = conn.next(Duration::from_secs(2)).resp("413");
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(
        resp.closes(),
        "413 without `Connection: close`: {:?}",
        resp.headers
    );
    assert!(
        conn.closed_within(Duration::from_secs(1)),
        "connection still open {:?} after a 413 for an unread body (waiting to drain it?)",
        started.elapsed()
    );
}
