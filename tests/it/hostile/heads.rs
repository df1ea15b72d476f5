//! Request heads: too many or too large headers, long URLs, odd methods, TLS and HTTP/2 on the
//! plain port.

use std::time::Duration;

use super::{SHORT, assert_refused, assert_survived, exchange, head};
use crate::support::{BOUND, Seen, TestServer};

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

/// An `HTTP/2.0` request line is answered (505) and closed; it used to deadlock its thread.
#[test]
fn http2_request_line_is_answered_or_closed() {
    let server = TestServer::start_with(|c| c.read_timeout = Duration::from_secs(1));
    let mut conn = server.conn();
    assert!(conn.send(b"GET /health/live HTTP/2.0\r\nHost: x\r\n\r\n"));
    assert!(
        conn.closed_within(BOUND),
        "no answer and no close within {BOUND:?}: {:?}",
        conn.received()
    );
}
