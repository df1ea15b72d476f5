//! Hostile and malformed input: every case ends in a 4xx or a closed connection — never a 5xx,
//! never a hang, never a stored row — and the server still answers `/health/live` afterwards.
//!
//! Requests are sent as raw bytes with `exchange`, which waits a bounded time for either a
//! complete response or the server closing the connection, so nothing here can hang CI.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Resp, TestServer, message, parse_response, read_response_by_length, sign};

const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

/// Read timeout for the servers of tests that wait for a timeout to fire.
const SHORT: Duration = Duration::from_secs(1);

/// How long a client waits, at most, for a server configured with `SHORT` to answer or close.
const BOUND: Duration = Duration::from_secs(5);

/// What a client saw after sending its bytes.
#[derive(Debug)]
enum Seen {
    /// A complete final (non-1xx) response.
    Answered(Resp),
    /// The server closed (or reset) the connection without a complete response.
    Closed,
}

#[derive(Debug)]
struct Exchange {
    seen: Seen,
    /// From the last byte written to the response (or close).
    elapsed: Duration,
}

impl Exchange {
    fn status(&self) -> Option<u16> {
        match &self.seen {
            Seen::Answered(resp) => Some(resp.status),
            Seen::Closed => None,
        }
    }
}

/// Sends `bytes` on a fresh connection and waits at most `within` for a complete response or
/// for the server to close; panics (instead of hanging) when neither happens.
fn exchange(server: &TestServer, bytes: &[u8], within: Duration) -> Exchange {
    let mut stream = server.connect();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    // The server may refuse and close before reading everything; what it answers still counts.
    let _ = stream.write_all(bytes);
    await_outcome(&mut stream, within)
}

/// Waits on `stream` as `exchange` does, skipping interim `1xx` responses.
fn await_outcome(stream: &mut TcpStream, within: Duration) -> Exchange {
    let started = Instant::now();
    let mut raw: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(resp) = take_response(&mut raw) {
            if resp.status >= 200 {
                let elapsed = started.elapsed();
                return Exchange {
                    seen: Seen::Answered(resp),
                    elapsed,
                };
            }
            continue;
        }
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "neither a response nor a close within {within:?}; got so far: {:?}",
            String::from_utf8_lossy(&raw)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // A reset is the server closing on us (it refused before reading everything).
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    // Closed: whatever complete response arrived before the close still counts.
    let seen = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(_) => Seen::Answered(parse_response(&raw)),
        None => Seen::Closed,
    };
    Exchange { seen, elapsed }
}

/// Removes and returns the first complete response in `raw`, if there is one.
fn take_response(raw: &mut Vec<u8>) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = parse_response(&raw[..split + 4]);
    let length: usize = head
        .header("content-length")
        .map_or(0, |value| value.parse().unwrap());
    let end = split + 4 + length;
    if raw.len() < end {
        return None;
    }
    let resp = parse_response(&raw[..end]);
    raw.drain(..end);
    Some(resp)
}

/// 4xx or closed: never a 2xx/3xx/5xx.
fn assert_refused(exchange: &Exchange, what: &str) {
    match &exchange.seen {
        Seen::Closed => {}
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

// ---- bodies that reach validation --------------------------------------------------------------

#[test]
fn invalid_utf8_in_a_signed_body_is_422_and_nothing_stored() {
    let server = TestServer::start();
    let bodies: [&[u8]; 4] = [
        b"{\"message_id\":\"m\xff\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\"}",
        b"{\"message_id\":\"m1\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\",\"text\":\"\xc3\x28\"}",
        // An overlong encoding of '/', and a UTF-8-encoded surrogate half.
        b"{\"message_id\":\"m\xc0\xaf\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\"}",
        b"{\"message_id\":\"m\xed\xa0\x80\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\"}",
    ];
    for body in bodies {
        let resp = server.post_webhook(body);
        assert_eq!(resp.status, 422, "{:?}: {}", body, resp.text());
        assert!(resp.json()["detail"].is_array());
    }
    assert_survived(&server, 0);
}

#[test]
fn json_nesting_bombs_are_422_without_crashing() {
    let server = TestServer::start();
    let arrays = "[".repeat(10_000);
    let closed_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = "{\"a\":".repeat(10_000);
    let inside_a_field = format!(
        r#"{{"message_id":"m1","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","x":{}}}"#,
        "[".repeat(5_000) + &"]".repeat(5_000)
    );
    for body in [&arrays, &closed_arrays, &objects, &inside_a_field] {
        let resp = server.post_webhook(body.as_bytes());
        assert_eq!(problem_types(&resp), ["json_invalid"], "{}", resp.text());
    }
    assert_survived(&server, 0);
}

#[test]
fn lone_surrogate_escapes_are_422() {
    let server = TestServer::start();
    for (field, escaped) in [
        ("message_id", r#""\ud800""#),
        ("message_id", r#""m\udfff""#),
        ("text", r#""\ud800""#),
        ("text", r#""\udc00\ud800""#),
        ("text", r#""a\ud83d""#),
    ] {
        let mut fields: serde_json::Map<String, Value> = serde_json::from_str(VALID).unwrap();
        fields.insert(field.to_owned(), json!("PLACEHOLDER"));
        let body = serde_json::to_string(&fields)
            .unwrap()
            .replace(r#""PLACEHOLDER""#, escaped);
        let resp = server.post_webhook(body.as_bytes());
        assert_eq!(resp.status, 422, "{body}: {}", resp.text());
    }
    assert_survived(&server, 0);
}

#[test]
fn absurd_numbers_as_field_values_are_422() {
    let server = TestServer::start();
    for (field, number) in [
        ("message_id", "1e999999"),
        ("text", "1e999999"),
        ("text", "-1e999999"),
        ("from", "1e-999999"),
        ("ts", "123456789012345678901234567890"),
        ("to", "-0"),
    ] {
        let mut fields: serde_json::Map<String, Value> = serde_json::from_str(VALID).unwrap();
        fields.insert(field.to_owned(), json!("PLACEHOLDER"));
        let body = serde_json::to_string(&fields)
            .unwrap()
            .replace(r#""PLACEHOLDER""#, number);
        let resp = server.post_webhook(body.as_bytes());
        assert_eq!(resp.status, 422, "{body}: {}", resp.text());
    }
    assert_survived(&server, 0);
}

// ---- bodies too large, or never finished -------------------------------------------------------

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
    // 100 TB, the requests below would wait for the 10 s timeout and fail the bound.
    let server = TestServer::start_with(|config| {
        config.workers = 1;
        config.read_timeout = Duration::from_secs(10);
    });
    let mut stream = server.connect();
    stream
        .write_all(&head(
            &server,
            "POST /webhook HTTP/1.1",
            &[
                "Content-Length: 100000000000000",
                &format!("X-Signature: {}", sign(b"")),
            ],
        ))
        .unwrap();
    let refused = await_outcome(&mut stream, BOUND);
    assert_eq!(refused.status(), Some(413), "{refused:?}");

    // The connection is still open on our side; others are served meanwhile.
    let started = Instant::now();
    assert_eq!(server.get("/health/live").status, 200);
    let ok = server.post_message("after", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "others waited {:?} behind the 100 TB announcement",
        started.elapsed()
    );
    drop(stream);
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

// ---- request heads -----------------------------------------------------------------------------

#[test]
fn two_thousand_headers_or_one_huge_header_are_400_or_closed() {
    let server = TestServer::start();
    let many: Vec<String> = (0..2_000).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let raw = head(&server, "GET /health/live HTTP/1.1", &many);
    assert_refused(&exchange(&server, &raw, BOUND), "2,000 headers");

    let huge = format!("X-Huge: {}", "h".repeat(64 * 1024));
    let raw = head(&server, "GET /health/live HTTP/1.1", &[&huge]);
    assert_refused(&exchange(&server, &raw, BOUND), "one 64 KiB header");
    assert_survived(&server, 0);
}

#[test]
fn a_64_kib_url_is_4xx_or_closed_while_a_long_but_sane_one_is_served() {
    let server = TestServer::start();
    let target = format!("/messages?q={}", "a".repeat(64 * 1024));
    let raw = head(&server, &format!("GET {target} HTTP/1.1"), &[]);
    assert_refused(&exchange(&server, &raw, BOUND), "64 KiB URL");
    let path = format!("/{}", "p".repeat(64 * 1024));
    let raw = head(&server, &format!("GET {path} HTTP/1.1"), &[]);
    assert_refused(&exchange(&server, &raw, BOUND), "64 KiB path");

    // The limit is not so tight that ordinary long queries fail.
    let sane = server.get(&format!("/messages?q={}", "a".repeat(8 * 1024)));
    assert_eq!(sane.status, 200, "{}", sane.text());
    assert_survived(&server, 0);
}

#[test]
fn unknown_and_odd_methods_are_405_with_allow_never_5xx() {
    let server = TestServer::start();
    for (method, path) in [
        ("BREW", "/webhook"),
        ("PATCH", "/messages"),
        ("DELETE", "/webhook"),
        ("PUT", "/stats"),
        ("OPTIONS", "/health/live"),
        ("get", "/messages"),
        ("PROPFIND", "/metrics"),
    ] {
        let raw = head(
            &server,
            &format!("{method} {path} HTTP/1.1"),
            &["Content-Length: 0", "Connection: close"],
        );
        let seen = exchange(&server, &raw, BOUND);
        let Seen::Answered(resp) = &seen.seen else {
            panic!("{method} {path}: closed without an answer");
        };
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text());
        assert!(resp.header("allow").is_some(), "{method} {path}: no Allow");
        assert!(resp.json()["detail"].is_string());
    }
    let raw = head(
        &server,
        "BREW /coffee HTTP/1.1",
        &["Content-Length: 0", "Connection: close"],
    );
    assert_eq!(exchange(&server, &raw, BOUND).status(), Some(404));
    assert_survived(&server, 0);
}

#[test]
fn tls_client_hello_on_the_plain_port_is_400_or_closed() {
    let server = TestServer::start_with(|config| config.read_timeout = SHORT);
    // A TLS 1.2/1.3 ClientHello record (with SNI "localhost"), as `curl https://` would send.
    let mut hello: Vec<u8> = vec![0x16, 0x03, 0x01, 0x00, 0x00]; // record header, length later
    let mut handshake: Vec<u8> = vec![0x03, 0x03]; // client_version
    handshake.extend((0u8..32).map(|i| i.wrapping_mul(37))); // random
    handshake.push(0); // session id
    handshake.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    handshake.extend_from_slice(&[0x01, 0x00]); // compression: null
    let sni = b"localhost";
    let mut extensions = vec![0x00, 0x00]; // server_name
    let name_list_len = sni.len() + 3;
    extensions.extend_from_slice(&((name_list_len + 2) as u16).to_be_bytes());
    extensions.extend_from_slice(&(name_list_len as u16).to_be_bytes());
    extensions.push(0);
    extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    extensions.extend_from_slice(sni);
    handshake.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&extensions);
    let mut message = vec![0x01, 0x00];
    message.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    message.extend_from_slice(&handshake);
    hello[3..5].copy_from_slice(&(message.len() as u16).to_be_bytes());
    hello.extend_from_slice(&message);

    let seen = exchange(&server, &hello, BOUND);
    assert!(
        matches!(seen.status(), None | Some(400) | Some(408)),
        "{seen:?}"
    );
    assert_survived(&server, 0);
}

#[test]
fn idle_connections_are_closed_after_the_read_timeout() {
    let server = TestServer::start_with(|config| config.read_timeout = SHORT);
    // A connection that never sends a byte.
    let mut silent = server.connect();
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
    let mut kept = server.connect();
    kept.write_all(&head(&server, "GET /health/live HTTP/1.1", &[]))
        .unwrap();
    let first = read_response_by_length(&mut kept);
    assert_eq!(first.status, 200);
    let seen = await_outcome(&mut kept, BOUND);
    assert!(
        matches!(seen.status(), None | Some(408)),
        "expected a close (or 408): {seen:?}"
    );
    assert_survived(&server, 0);
}

/// With a single worker, a client that announces a body and never sends it holds that worker
/// only about as long as the read timeout (here 1 s), not indefinitely.
///
/// The body is read on the connection's own thread (`conn`), never on a worker, so the stalled
/// client holds only its own connection; other requests are not delayed by it at all.
#[test]
fn one_stalled_body_delays_other_requests_by_about_the_read_timeout_only() {
    let server = TestServer::start_with(|config| {
        config.workers = 1;
        config.read_timeout = SHORT;
    });

    // Within the limit. `Expect: 100-continue` makes the worker announce (with `100 Continue`)
    // the moment it starts reading this body: from then on the only worker is busy with it.
    let mut stalled = server.connect();
    stalled
        .write_all(&head(
            &server,
            "POST /webhook HTTP/1.1",
            &["Content-Length: 60000", "Expect: 100-continue"],
        ))
        .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        assert_eq!(stalled.read(&mut byte).unwrap(), 1, "closed before 100");
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    let started = Instant::now();
    let live = server.get("/health/live");
    let waited = started.elapsed();
    assert_eq!(live.status, 200);
    assert!(
        waited < SHORT * 7 / 2,
        "a stalled body held the only worker for {waited:?} (read timeout {SHORT:?})"
    );
    let refused = await_outcome(&mut stalled, BOUND);
    assert!(matches!(refused.status(), None | Some(408)), "{refused:?}");

    // Over the limit: 413 at once, then only the bounded drain.
    let mut oversized = server.connect();
    oversized
        .write_all(&head(
            &server,
            "POST /webhook HTTP/1.1",
            &["Content-Length: 500000"],
        ))
        .unwrap();
    let refused = await_outcome(&mut oversized, BOUND);
    assert_eq!(refused.status(), Some(413), "{refused:?}");
    let started = Instant::now();
    assert_eq!(server.get("/health/live").status, 200);
    let waited = started.elapsed();
    assert!(
        waited < SHORT * 2,
        "an over-limit announcement held the only worker for {waited:?} after its 413"
    );
    assert_survived(&server, 0);
}

// ---- query strings -----------------------------------------------------------------------------

fn seed(server: &TestServer, rows: &[(&str, &str)]) {
    for (i, (id, text)) in rows.iter().enumerate() {
        let ts = format!("2025-01-15T10:00:{i:02}Z");
        let resp = server.post_message(id, "+919876543210", &ts, Some(text));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

/// The ids listed for `target`, which must answer 200.
fn listed(server: &TestServer, target: &str) -> Vec<String> {
    let resp = server.get(target);
    assert_eq!(resp.status, 200, "{target}: {}", resp.text());
    let page = resp.json();
    let ids: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page["total"], ids.len(), "{target}: {page}");
    ids
}

fn query_problem_locs(server: &TestServer, target: &str) -> Vec<Value> {
    let resp = server.get(target);
    assert_eq!(resp.status, 422, "{target}: {}", resp.text());
    resp.json()["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["loc"].clone())
        .collect()
}

#[test]
fn bad_percent_escapes_in_the_query_are_taken_literally() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("zz", "a %zz b"),
            ("pct", "50% off"),
            ("plain", "plain"),
            ("euro", "5 €"),
        ],
    );
    assert_eq!(listed(&server, "/messages?q=%zz"), ["zz"]);
    assert_eq!(listed(&server, "/messages?q=%"), ["zz", "pct"]);
    assert_eq!(listed(&server, "/messages?q=%25"), ["zz", "pct"]);
    assert_eq!(listed(&server, "/messages?q=0%"), ["pct"]);
    assert!(listed(&server, "/messages?from=%").is_empty());
    assert!(listed(&server, "/messages?q=%zz&from=%").is_empty());
    assert!(listed(&server, "/messages?q=%2").is_empty());
    // A well-formed escape still decodes.
    assert_eq!(listed(&server, "/messages?q=%e2%82%ac"), ["euro"]);
    assert_survived(&server, 4);
}

#[test]
fn escapes_that_decode_to_invalid_utf8_are_422_at_their_parameter() {
    let server = TestServer::start();
    assert_eq!(
        query_problem_locs(&server, "/messages?q=%ff"),
        [json!(["query", "q"])]
    );
    assert_eq!(
        query_problem_locs(&server, "/messages?from=%C3%28"),
        [json!(["query", "from"])]
    );
    assert_eq!(
        query_problem_locs(&server, "/messages?since=%ed%a0%80"),
        [json!(["query", "since"])]
    );
    assert_survived(&server, 0);
}

#[test]
fn integer_overflow_in_limit_and_offset_is_422() {
    let server = TestServer::start();
    seed(&server, &[("only", "x")]);
    for (target, name) in [
        ("/messages?limit=99999999999999999999", "limit"),
        ("/messages?limit=-9223372036854775809", "limit"),
        ("/messages?limit=18446744073709551617", "limit"),
        ("/messages?offset=-9223372036854775809", "offset"),
        ("/messages?offset=9223372036854775808", "offset"),
        ("/messages?offset=99999999999999999999", "offset"),
        ("/messages?offset=1e3", "offset"),
    ] {
        assert_eq!(
            query_problem_locs(&server, target),
            [json!(["query", name])],
            "{target}"
        );
    }
    // The largest offset that fits is served (an empty page), not an error.
    let resp = server.get("/messages?offset=9223372036854775807");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let page = resp.json();
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["total"], 1);
    assert_eq!(page["offset"], json!(9223372036854775807u64));
    assert_survived(&server, 1);
}

#[test]
fn sql_in_query_parameters_and_bodies_is_just_text() {
    let server = TestServer::start();
    seed(
        &server,
        &[("a", "hello"), ("b", "world"), ("c", "x' OR 1=1 --y")],
    );
    // ' OR 1=1 --     matches only the message that literally contains it.
    assert_eq!(listed(&server, "/messages?q=%27%20OR%201%3D1%20--"), ["c"]);
    for target in [
        // %'; DROP TABLE messages; --
        "/messages?q=%25%27%3B%20DROP%20TABLE%20messages%3B%20--",
        "/messages?q=%';DROP%20TABLE%20messages;--",
        "/messages?q=%22)%20OR%20(%221%22%3D%221",
        // ' OR '1'='1
        "/messages?from=%27%20OR%20%271%27%3D%271",
        "/messages?from=%2B1%27%20OR%201%3D1%20--",
    ] {
        assert!(listed(&server, target).is_empty(), "{target} matched rows");
    }
    assert_eq!(
        query_problem_locs(
            &server,
            "/messages?since=2025-01-01T00:00:00Z%27%20OR%201%3D1"
        ),
        [json!(["query", "since"])]
    );
    // In a body, too: stored verbatim as an id, the table intact.
    let id = "x'); DROP TABLE messages; --";
    let resp = server.post_message(
        id,
        "+1",
        "2025-01-16T00:00:00Z",
        Some("'; DELETE FROM messages"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let stored = listed(&server, "/messages?limit=100");
    assert_eq!(stored, ["a", "b", "c", id]);
    assert_eq!(server.get("/stats").json()["total_messages"], 4);
    assert_eq!(server.get("/health/ready").status, 200);
    assert_survived(&server, 4);
}

/// An `HTTP/2.0` request line is answered (505) and closed; it used to deadlock its thread.
#[test]
fn http2_request_line_is_answered_or_closed() {
    let server = TestServer::start_with(|c| c.read_timeout = Duration::from_secs(1));
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /health/live HTTP/2.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let result = stream.read_to_end(&mut raw);
    assert!(
        result.is_ok(),
        "no answer and no close within 5 s: {result:?}"
    );
}

/// A client trickling a body it never finishes frees the worker within ~2 read timeouts.
#[test]
fn trickled_body_does_not_hold_the_worker() {
    let server = TestServer::start_with(|c| {
        c.workers = 1;
        c.read_timeout = Duration::from_secs(1);
    });
    let mut slow = server.connect();
    slow.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let mut interim = [0u8; 25];
    slow.read_exact(&mut interim).unwrap(); // "HTTP/1.1 100 Continue\r\n..." : the worker is on it
    let mut writer = slow.try_clone().unwrap();
    let trickler = thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) && writer.write_all(b"x").is_ok() {
            thread::sleep(Duration::from_millis(300)); // the attack: one byte per 300 ms
        }
    });
    let started = Instant::now();
    let mut probe = server.connect();
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    probe
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let live = read_response_by_length(&mut probe);
    let waited = started.elapsed();
    trickler.join().unwrap();
    assert_eq!(live.status, 200);
    assert!(
        waited < Duration::from_secs(4),
        "/health/live waited {waited:?} behind a trickler"
    );
}

/// A Content-Length too long for 64 bits is far over the limit (413, not read), and the body is
/// never parsed as a second request.
#[test]
fn overflowing_content_length_is_413_and_the_body_is_not_a_request() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
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
    let mut stream = server.connect();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    let _ = stream.write_all(bytes);
    stream.set_read_timeout(Some(within)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let started = Instant::now();
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// A refused body is never parsed as the next request on its connection, whether the server
/// drains it (small), gives up on it (over the 1 MiB drain bound) or stops mid-chunk.
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
