//! Slow clients: idle connections, stalled and trickled bodies. A connection's own thread waits
//! on its client; none of this may hold a worker.
//!
//! The worker tests run one worker and probe `/health/ready`, which only a worker answers (the
//! liveness probe is answered on the connection's own thread, so it could not tell).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{SHORT, assert_survived, await_outcome, head};
use crate::support::{BOUND, TestServer};

/// How long a probe that a free worker answers may take (a debug build on a busy 2-CPU box),
/// well under the body deadline of the tests below.
const PROMPT: Duration = Duration::from_millis(1500);

/// The body deadline of the worker tests: a worker held by the slow body would answer the probe
/// only after it.
const BODY_DEADLINE: Duration = Duration::from_secs(4);

#[test]
fn idle_connections_are_closed_after_the_read_timeout() {
    let server = TestServer::start_with(|config| config.read_timeout = SHORT);
    // A connection that never sends a byte.
    let mut silent = server.conn();
    let seen = await_outcome(&mut silent, BOUND);
    assert!(
        matches!(seen.status(), None | Some(408)),
        "expected a close (or 408): {seen:?}"
    );
    assert!(
        seen.elapsed >= SHORT / 2,
        "closed after {:?}, long before the read timeout",
        seen.elapsed
    );

    // A keep-alive connection that goes quiet after one request.
    let mut kept = server.conn();
    assert!(kept.send(&head(&server, "GET /health/live HTTP/1.1", &[])));
    assert_eq!(kept.next(BOUND).resp("the first answer").status, 200);
    let seen = await_outcome(&mut kept, BOUND);
    assert!(
        matches!(seen.status(), None | Some(408)),
        "expected a close (or 408): {seen:?}"
    );
    assert_survived(&server, 0);
}

/// Asks `/health/ready` on a fresh connection: (status, time to the answer).
fn probe_ready(server: &TestServer) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let mut probe = server.conn();
    assert!(probe.send(&head(server, "GET /health/ready HTTP/1.1", &[])));
    let seen = probe.next(BODY_DEADLINE + BOUND);
    (seen.status(), started.elapsed())
}

/// With a single worker, a client that announces a body and never sends it does not hold the
/// worker: the probe is answered at once, long before the body's deadline; the body gets 408 at
/// its deadline. A body announced over the limit is refused at once and holds nothing either.
#[test]
fn a_stalled_body_does_not_hold_the_only_worker() {
    let server = TestServer::start_with(|config| {
        config.workers = 1;
        config.read_timeout = BODY_DEADLINE;
    });

    // Within the limit. `100 Continue` says the server has taken the head and is waiting for
    // the body: from here on, a server that read bodies on its workers would have none free.
    let mut stalled = server.conn();
    assert!(stalled.send(&head(
        &server,
        "POST /webhook HTTP/1.1",
        &["Content-Length: 60000", "Expect: 100-continue"],
    )));
    stalled.expect_continue();
    let waiting = Instant::now();
    let (status, waited) = probe_ready(&server);
    assert_eq!(status, Some(200));
    assert!(
        waited < PROMPT,
        "a stalled body held the only worker: /health/ready took {waited:?} (body deadline {BODY_DEADLINE:?})"
    );
    let refused = await_outcome(&mut stalled, BODY_DEADLINE + BOUND);
    assert!(matches!(refused.status(), None | Some(408)), "{refused:?}");
    assert!(
        waiting.elapsed() >= BODY_DEADLINE - Duration::from_millis(500),
        "the stalled body was cut after {:?}, before its deadline: the probe raced nothing",
        waiting.elapsed()
    );

    // Over the limit: 413 at once, and nothing is held afterwards.
    let mut oversized = server.conn();
    assert!(oversized.send(&head(
        &server,
        "POST /webhook HTTP/1.1",
        &["Content-Length: 500000"],
    )));
    let refused = await_outcome(&mut oversized, BOUND);
    assert_eq!(refused.status(), Some(413), "{refused:?}");
    let (status, waited) = probe_ready(&server);
    assert_eq!(status, Some(200));
    assert!(
        waited < PROMPT,
        "an over-limit announcement held the only worker for {waited:?} after its 413"
    );
    assert_survived(&server, 0);
}

/// With a single worker, a client trickling a body (a byte every 300 ms, so no read ever times
/// out) does not hold the worker: `/health/ready` is answered at once while it trickles.
#[test]
fn trickled_body_does_not_hold_the_worker() {
    let server = TestServer::start_with(|config| {
        config.workers = 1;
        config.read_timeout = BODY_DEADLINE;
    });
    let mut slow = server.conn();
    assert!(slow.send(&head(
        &server,
        "POST /webhook HTTP/1.1",
        &["Content-Length: 60000", "Expect: 100-continue"],
    )));
    // The server has taken the head and reads the body from here on.
    slow.expect_continue();
    let trickling = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = slow.stream.try_clone().unwrap();
    let trickler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed)
                && trickling.elapsed() < BODY_DEADLINE + BOUND
                && writer.write_all(b"x").is_ok()
            {
                // The attack's pace, not a synchronisation.
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let (status, waited) = probe_ready(&server);
    let still_trickling = !trickler.is_finished();
    assert_eq!(status, Some(200));
    assert!(
        waited < PROMPT,
        "/health/ready waited {waited:?} behind a trickled body (body deadline {BODY_DEADLINE:?})"
    );
    assert!(still_trickling, "the trickler had stopped before the probe");
    // The trickled body is cut at its total deadline: bytes do not restart the clock.
    let cut = await_outcome(&mut slow, BODY_DEADLINE + BOUND);
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    assert!(matches!(cut.status(), None | Some(408)), "{cut:?}");
    assert!(
        trickling.elapsed() < BODY_DEADLINE + Duration::from_secs(2),
        "the trickled body was read for {:?} (body deadline {BODY_DEADLINE:?})",
        trickling.elapsed()
    );
}
