//! Bodies too large, never finished, or hiding a request: 413, 408 or a close, and a refused
//! body is never parsed as the next request.

use std::time::{Duration, Instant};

use super::{SHORT, assert_refused, assert_survived, await_outcome, exchange, head};
use crate::support::{BOUND, TestServer, message, sign};

#[test]
fn body_over_the_limit_is_413_by_content_length_and_by_an_endless_chunked_stream() {
    let server = TestServer::start_with(|config| {
        config.max_body_bytes = 300;
        config.read_timeout = Duration::from_secs(10);
    });
    // By Content-Length, with the (signed) body actually sent.
    let body = message("big", "+1", "2025-01-15T10:00:00Z", Some(&"x".repeat(400)));
    let by_length = server.post_webhook(body.as_bytes());
    assert_eq!(by_length.status, 413, "{}", by_length.text());

    // A chunked stream that exceeds the limit and never ends: the 413 must come as soon as the
    // limit is passed, not after a terminating chunk (or the 10 s read timeout).
    let mut raw = head(
        &server,
        "POST /webhook HTTP/1.1",
        &["Transfer-Encoding: chunked", "X-Signature: 00"],
    );
    for _ in 0..5 {
        raw.extend_from_slice(format!("64\r\n{}\r\n", "y".repeat(100)).as_bytes());
    }
    let streamed = exchange(&server, &raw, Duration::from_secs(5));
    assert_eq!(streamed.status(), Some(413), "{streamed:?}");
    assert!(streamed.elapsed < Duration::from_secs(5));
    assert_survived(&server, 0);
}

#[test]
fn absurd_content_length_without_a_body_is_413_and_the_server_keeps_serving() {
    // One worker and a long read timeout: if the server tried to read (or drain) the announced
    // 100 TB on a worker, the requests below (which only a worker answers) would wait for the
    // 10 s timeout and fail the bound.
    let server = TestServer::start_with(|config| {
        config.workers = 1;
        config.read_timeout = Duration::from_secs(10);
    });
    let mut conn = server.conn();
    assert!(conn.send(&head(
        &server,
        "POST /webhook HTTP/1.1",
        &[
            "Content-Length: 100000000000000",
            &format!("X-Signature: {}", sign(b"")),
        ],
    )));
    let refused = await_outcome(&mut conn, BOUND);
    assert_eq!(refused.status(), Some(413), "{refused:?}");

    // The connection is still open on our side; others are served meanwhile.
    let started = Instant::now();
    assert_eq!(server.get("/health/ready").status, 200);
    let ok = server.post_message("after", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "others waited {:?} behind the 100 TB announcement",
        started.elapsed()
    );
    drop(conn);
    assert_survived(&server, 1);
}

#[test]
fn content_length_that_lies_is_408_or_closed_within_a_few_seconds() {
    let server = TestServer::start_with(|config| config.read_timeout = SHORT);
    // A short body and one over the first read's 1 KiB: both reads must give up once the read
    // timeout passes.
    for announced in [100, 5_000] {
        let mut raw = head(
            &server,
            "POST /webhook HTTP/1.1",
            &[
                &format!("Content-Length: {announced}"),
                &format!("X-Signature: {}", sign(b"")),
            ],
        );
        raw.extend_from_slice(b"0123456789");
        let lied = exchange(&server, &raw, BOUND);
        assert_refused(
            &lied,
            &format!("Content-Length {announced} with 10 bytes sent"),
        );
        assert!(
            matches!(lied.status(), None | Some(408)),
            "expected 408 or a close: {lied:?}"
        );
    }
    assert_survived(&server, 0);
}

#[test]
fn chunked_body_that_never_ends_is_408_or_closed_within_a_few_seconds() {
    let server = TestServer::start_with(|config| config.read_timeout = SHORT);
    let mut raw = head(
        &server,
        "POST /webhook HTTP/1.1",
        &["Transfer-Encoding: chunked", "X-Signature: 00"],
    );
    raw.extend_from_slice(b"5\r\nhello\r\n");
    let endless = exchange(&server, &raw, BOUND);
    assert!(
        matches!(endless.status(), None | Some(408)),
        "expected 408 or a close: {endless:?}"
    );
    // A chunk size that is not hex is malformed, not a reason to wait.
    let mut bad = head(
        &server,
        "POST /webhook HTTP/1.1",
        &["Transfer-Encoding: chunked", "X-Signature: 00"],
    );
    bad.extend_from_slice(b"zz\r\nhello\r\n0\r\n\r\n");
    assert_refused(&exchange(&server, &bad, BOUND), "chunk size zz");
    assert_survived(&server, 0);
}

#[test]
fn overflowing_content_length_is_413_and_the_body_is_not_a_request() {
    let server = TestServer::start();
    let text = all_responses(
        &server,
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        BOUND,
    );
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "the body was served as a request: {text}"
    );
}

/// Everything the server sends on one connection until it closes it (bounded by `within`).
fn all_responses(server: &TestServer, bytes: &[u8], within: Duration) -> String {
    let mut conn = server.conn();
    conn.send(bytes);
    conn.closed_within(within);
    conn.received()
}

/// A refused body is never parsed as the next request on its connection, whether it is a little
/// or far over the limit, or the refusal comes mid-chunk.
#[test]
fn a_request_hidden_in_a_refused_body_is_never_served() {
    let server = TestServer::start_with(|config| {
        config.max_body_bytes = 1024;
        config.read_timeout = Duration::from_secs(1);
    });
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let padded = |len: usize| {
        let mut body = smuggled.to_vec();
        body.resize(len, b' ');
        body
    };
    for length in [4096, 2 * 1024 * 1024] {
        let mut bytes =
            format!("POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n")
                .into_bytes();
        bytes.extend_from_slice(&padded(length));
        let answered = all_responses(&server, &bytes, Duration::from_secs(5));
        assert!(answered.starts_with("HTTP/1.1 413"), "{length}: {answered}");
        assert_eq!(
            answered.matches("HTTP/1.1 ").count(),
            1,
            "{length}: {answered}"
        );
    }
    let mut chunked =
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n", 2048).as_bytes());
    chunked.extend_from_slice(&padded(2048));
    chunked.extend_from_slice(b"\r\n");
    chunked.extend_from_slice(format!("{:x}\r\n", smuggled.len()).as_bytes());
    chunked.extend_from_slice(smuggled);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let answered = all_responses(&server, &chunked, Duration::from_secs(5));
    assert!(answered.starts_with("HTTP/1.1 413"), "chunked: {answered}");
    assert_eq!(
        answered.matches("HTTP/1.1 ").count(),
        1,
        "chunked: {answered}"
    );
    assert_eq!(
        server.metric(r#"http_requests_total{path="unmatched",status="404"}"#),
        None
    );
    assert_survived(&server, 0);
}
