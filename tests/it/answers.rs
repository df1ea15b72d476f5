//! Every answer is decided, counted and logged in one place (`answer.rs`), refused heads
//! included; a webhook needs no worker; latency runs from the request's first byte.

use std::time::Duration;

use crate::support::{Conn, TestServer};

#[test]
fn heads_that_cannot_be_parsed_are_answered_and_counted_under_unmatched() {
    let server = TestServer::start();
    let malformed = server.raw(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n");
    assert_eq!(malformed.status, 400);
    assert_eq!(
        malformed.json(),
        serde_json::json!({"detail": "Bad Request"})
    );
    assert!(malformed.header("X-Request-ID").is_some(), "{malformed:?}");
    let mut huge = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = server.raw(&huge);
    assert_eq!(too_large.status, 431);
    assert_eq!(
        server.metric(r#"http_requests_total{path="unmatched",status="400"}"#),
        Some(1.0)
    );
    assert_eq!(
        server.metric(r#"http_requests_total{path="unmatched",status="431"}"#),
        Some(1.0)
    );
}

#[test]
fn a_webhook_is_stored_and_answered_with_no_worker_at_all() {
    // No worker thread exists: only the connection thread and the writer can answer it. (Before
    // webhooks skipped the workers, this waited for the commit timeout and answered 503.)
    let server = TestServer::start_with(|config| {
        config.workers = 0;
        config.commit_timeout = Duration::from_secs(2);
    });
    let resp = server.post_message("no-worker", "+15550001111", "2025-01-15T10:00:00Z", None);
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Reads need a worker: look at the store through a server that has them.
    let config = server.config();
    let store = server.stop();
    let server = TestServer::start_in(store, config);
    let page = server.get("/messages").json();
    assert_eq!(page["data"][0]["message_id"], "no-worker", "{page}");
}

#[test]
fn latency_is_measured_from_the_first_byte_of_the_request() {
    let server = TestServer::start();
    let mut conn = Conn::open(server.addr);
    assert!(conn.send(b"G"));
    // Not a synchronisation: this wait is what the latency must include.
    std::thread::sleep(Duration::from_millis(300));
    assert!(conn.send(b"ET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"));
    let resp = conn.next(Duration::from_secs(5)).resp("the probe");
    assert_eq!(resp.status, 200);
    let sum = server
        .metric("request_latency_ms_sum")
        .expect("the latency sum");
    assert!(
        sum >= 250.0,
        "latency counted from the end of the head: {sum} ms"
    );
}
