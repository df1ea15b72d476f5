//! A hostile client against the admin token: every way of spelling a locked path, method or
//! credential that is not exactly `Authorization: Bearer <token>` on a locked route reveals
//! nothing (401, or a 404/405 that carries no stored data).

use hookbox::config::Secret;
use hookbox::router::{self, Route};

use crate::support::TestServer;

const TOKEN: &str = "tok-en";

fn locked() -> TestServer {
    TestServer::start_with(|config| config.admin_token = Some(Secret::new(TOKEN)))
}

/// Sends a raw request line and headers; the answer's status and body.
fn raw(server: &TestServer, method: &str, target: &str, headers: &[&[u8]]) -> (u16, String) {
    let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n").into_bytes();
    for header in headers {
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"Connection: close\r\n\r\n");
    let resp = server.raw(&bytes);
    (resp.status, resp.text())
}

#[test]
fn no_spelling_of_a_locked_path_reads_without_the_token() {
    let server = locked();
    assert_eq!(
        server
            .post_message(
                "secret-id",
                "+1",
                "2025-01-15T10:00:00Z",
                Some("secret text")
            )
            .status,
        200
    );
    let paths = [
        "/messages",
        "/messages/",
        "//messages",
        "/messages//",
        "///stats",
        "/metrics/",
        "/feed",
        "/feed/",
        "/%6Dessages",
        "/%6desages",
        "/MESSAGES",
        "/messages%2F",
        "/messages;x",
        "/./messages",
        "/x/../messages",
        "http://x/messages",
        "/messages?limit=1",
        "/stats?",
        "/metrics?x=%00",
        "/messages#frag",
        "*",
    ];
    for path in paths {
        for method in ["GET", "HEAD", "OPTIONS", "POST", "get", "TRACE"] {
            let (status, body) = raw(&server, method, path, &[]);
            assert!(
                !body.contains("secret") && !body.contains("webhook_requests_total"),
                "{method} {path}: {status} {body}"
            );
            let (route, _) = router::route(method, path.split('?').next().unwrap());
            if route.needs_admin() && matches!(method, "GET" | "HEAD") {
                assert_eq!(status, 401, "{method} {path}: {body}");
            }
        }
    }
}

#[test]
fn no_credential_but_exactly_the_token_opens_a_locked_route() {
    let server = locked();
    let long = format!("Authorization: Bearer {}", "t".repeat(7000));
    let headers: [&[u8]; 18] = [
        b"Authorization:",
        b"Authorization: ",
        b"Authorization: Bearer",
        b"Authorization: Bearer ",
        b"Authorization: Bearer tok",
        b"Authorization: Bearer tok-en-",
        b"Authorization: Bearer TOK-EN",
        b"Authorization: Bearer\ttok-en",
        b"Authorization: Bearertok-en",
        b"Authorization: Basic dG9rLWVuOg==",
        b"Authorization: Token tok-en",
        b"Authorization: tok-en",
        b"Authorization: Bearer tok\x00en",
        b"Authorization: Bearer tok-en\x00",
        b"Authorization: Bearer tok-en\xff",
        b"Authorization: Bearer tok-en, Bearer tok-en",
        b"X-Authorization: Bearer tok-en",
        long.as_bytes(),
    ];
    for header in headers {
        for path in ["/messages", "/stats", "/metrics", "/feed"] {
            let (status, body) = raw(&server, "GET", path, &[header]);
            assert!(
                matches!(status, 400 | 401 | 431),
                "{path} {:?}: {status} {body}",
                String::from_utf8_lossy(header)
            );
        }
    }
    // A wrong header first and the right one second: the first decides, as it does everywhere.
    let (status, _) = raw(
        &server,
        "GET",
        "/stats",
        &[
            b"Authorization: Bearer nope",
            b"Authorization: Bearer tok-en",
        ],
    );
    assert_eq!(status, 401);
    for ok in [
        &b"Authorization: Bearer tok-en"[..],
        b"authorization: bearer tok-en",
        b"AUTHORIZATION:   BEARER tok-en  ",
    ] {
        let (status, body) = raw(&server, "GET", "/stats", &[ok]);
        assert_eq!(status, 200, "{}: {body}", String::from_utf8_lossy(ok));
    }
    assert!(Route::Feed.needs_admin());
}
