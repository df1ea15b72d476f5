//! The budget for request bodies held in memory (`HOOKBOX_MAX_BODY_BUFFER_MIB`): clients that
//! send part of a large body and stop cannot make the process hold more than the budget, a new
//! body over it is answered 503 unread, ordinary small webhooks are still served, and the budget
//! is given back when those connections end.
//!
//! Each holder sends `Expect: 100-continue` and waits for the `100 Continue`: the server sends it
//! only after the body's bytes are reserved, so the test knows the reservation landed without
//! sleeping.

use std::time::{Duration, Instant};

use super::{TIMEOUT, next_answer, send};
use crate::support::{Conn, Ending, Resp, TestServer, message, metric_value, sign};

/// Declared size of each held body (over the 16 KiB a small body may be).
const HELD_BODY: usize = 100 * 1024;

/// Sends a head for a `HELD_BODY` webhook with `Expect: 100-continue`, and returns the stream
/// and the first answer: 100 when its bytes were reserved.
fn hold(server: &TestServer) -> (Conn, Resp) {
    let mut stream = Conn::open(server.addr);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Signature: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {HELD_BODY}\r\nExpect: 100-continue\r\n\r\n",
        sign(b"never sent whole")
    );
    assert!(stream.send(head.as_bytes()));
    let answer = next_answer(&mut stream);
    if answer.status == 100 {
        // Half the body, then nothing: the connection holds it until the body deadline.
        assert!(stream.send(&vec![b' '; HELD_BODY / 2]));
    }
    (stream, answer)
}

fn buffered_bytes(server: &TestServer) -> f64 {
    metric_value(&server.get("/metrics").text(), "hookbox_body_buffer_bytes")
        .expect("the gauge is exported")
}

#[test]
fn held_bodies_fill_the_budget_then_new_ones_get_503_while_small_webhooks_are_served() {
    // 2 MiB: large bodies may fill three quarters of it, 1536 KiB, so 15 of 100 KiB fit.
    let server = TestServer::start_with(|config| {
        config.max_body_buffer_bytes = 2 * 1024 * 1024;
        config.max_body_bytes = 256 * 1024;
        config.read_timeout = Duration::from_secs(30);
    });
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..20 {
        let (stream, answer) = hold(&server);
        if answer.status == 100 {
            held.push(stream);
        } else {
            refused.push((stream, answer));
        }
    }
    assert_eq!(held.len(), 15, "bodies reserved before the budget was full");
    assert_eq!(buffered_bytes(&server), (15 * HELD_BODY) as f64);
    for (stream, answer) in &mut refused {
        assert_eq!(answer.status, 503);
        assert!(answer.header("retry-after").is_some(), "{answer:?}");
        assert_eq!(answer.header("connection"), Some("close"));
        assert_ne!(
            stream.ending(TIMEOUT),
            Ending::Open,
            "a refused body's connection closes"
        );
    }

    // An honest webhook of ordinary size is served while the large ones are held.
    let started = Instant::now();
    let honest = server.post_webhook(
        message("honest-1", "+15550001", "2026-01-01T00:00:00Z", Some("hi")).as_bytes(),
    );
    assert_eq!(honest.status, 200, "{}", honest.text());
    assert!(started.elapsed() < Duration::from_secs(1));

    // The holders go away: their reservations are given back, and a large body fits again.
    drop(held);
    let deadline = Instant::now() + TIMEOUT;
    while buffered_bytes(&server) != 0.0 {
        assert!(Instant::now() < deadline, "the budget was not given back");
        std::thread::yield_now();
    }
    let (_again, answer) = hold(&server);
    assert_eq!(answer.status, 100);
}

/// A chunked body is reserved chunk by chunk: the chunk that would take it over the budget is
/// not read, the request is answered as over budget and the connection closes, and what the
/// earlier chunks reserved is given back.
#[test]
fn a_chunked_body_is_reserved_chunk_by_chunk() {
    use super::{Limits, echo, limits, start_with};
    let h = start_with(
        Limits {
            max_body: 256 * 1024,
            // Large bodies may fill three quarters: 48 KiB.
            body_budget: 64 * 1024,
            ..limits()
        },
        echo,
    );
    let chunk = vec![b'x'; 20 * 1024];
    let mut request =
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut client = send(h.addr, &request);
    let answer = next_answer(&mut client);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (503, "POST /chunked over_budget")
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_ne!(client.ending(TIMEOUT), Ending::Open);
    assert_eq!(h.next_close(), super::CloseReason::Refused);
    assert_eq!(h.serving.body_buffer_bytes(), 0);

    // Two such chunks fit: the same body cut to 40 KiB is read whole.
    let mut request =
        b"POST /fits HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut client = send(h.addr, &request);
    let answer = next_answer(&mut client);
    assert_eq!(answer.text(), "POST /fits complete 40960");
}
