//! Locked reads (`HOOKBOX_ADMIN_TOKEN`): with a token, `/messages`, `/stats` and `/metrics` answer
//! only `Authorization: Bearer <token>`, anything else is 401 `{"detail":"unauthorized"}` with
//! `WWW-Authenticate: Bearer`, counted on its own path; health and webhooks stay open. Without a
//! token the reads stay open, and startup warns when `HOST` is not loopback.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use hookbox::config::Secret;

use crate::support::{TestDb, TestServer, metric_value};

const TOKEN: &str = "an admin token, with spaces";

fn locked() -> TestServer {
    TestServer::start_with(|config| config.admin_token = Some(Secret::new(TOKEN)))
}

fn get_as(server: &TestServer, target: &str, authorization: &str) -> crate::support::Resp {
    server.send("GET", target, &[("Authorization", authorization)], b"")
}

#[test]
fn locked_reads_answer_only_the_bearer_of_the_token() {
    let server = locked();
    assert_eq!(
        server
            .post_message("m1", "+1", "2025-01-15T10:00:00Z", None)
            .status,
        200
    );
    let bearer = format!("Bearer {TOKEN}");
    for target in [
        "/messages",
        "/stats",
        "/metrics",
        "/messages?limit=1&from=%2B1",
    ] {
        let refusals = [
            server.get(target),
            get_as(&server, target, &format!("Bearer {TOKEN}x")),
            get_as(&server, target, &format!("Basic {TOKEN}")),
            get_as(&server, target, "Bearer "),
        ];
        for resp in refusals {
            assert_eq!(resp.status, 401, "{target}");
            assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{target}");
            assert_eq!(resp.json(), json!({"detail": "unauthorized"}), "{target}");
        }
        // A wrong method is still its 405: it reveals nothing stored.
        assert_eq!(
            server.send("POST", target, &[], b"").status,
            405,
            "{target}"
        );
        let resp = get_as(&server, target, &bearer);
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        let resp = get_as(&server, target, &format!("bearer {TOKEN}"));
        assert_eq!(resp.status, 200, "{target}: the scheme is case-insensitive");
    }
    let page = get_as(&server, "/messages", &bearer).json();
    assert_eq!(page["total"], 1);
}

#[test]
fn health_and_webhooks_stay_open_and_refusals_are_counted_on_their_path() {
    let server = locked();
    assert_eq!(server.get("/health/live").status, 200);
    assert_eq!(server.get("/health/ready").status, 200);
    assert_eq!(
        server
            .post_message("m1", "+1", "2025-01-15T10:00:00Z", None)
            .status,
        200
    );
    let unsigned = server.send("POST", "/webhook", &[], b"{}");
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.json(), json!({"detail": "invalid signature"}));
    assert_eq!(server.get("/nope").status, 404);
    for _ in 0..2 {
        assert_eq!(server.get("/stats").status, 401);
    }
    assert_eq!(server.get("/messages").status, 401);
    let metrics = get_as(&server, "/metrics", &format!("Bearer {TOKEN}")).text();
    let count = |series: &str| metric_value(&metrics, series);
    assert_eq!(
        count(r#"http_requests_total{path="/stats",status="401"}"#),
        Some(2.0)
    );
    assert_eq!(
        count(r#"http_requests_total{path="/messages",status="401"}"#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"http_requests_total{path="/webhook",status="401"}"#),
        Some(1.0)
    );
    // An admin refusal is not a webhook outcome.
    assert_eq!(
        count(r#"webhook_requests_total{result="invalid_signature"}"#),
        Some(1.0)
    );
}

#[test]
fn without_a_token_the_reads_stay_open() {
    let server = TestServer::start();
    for target in ["/messages", "/stats", "/metrics"] {
        assert_eq!(server.get(target).status, 200, "{target}");
    }
    // A stray Authorization header changes nothing.
    assert_eq!(get_as(&server, "/stats", "Bearer whatever").status, 200);
}

/// The stdout lines of a `hookbox` process with `host` and `token`, up to its `listening` line.
fn startup_lines(host: &str, token: Option<&str>) -> Vec<serde_json::Value> {
    let db = TestDb::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookbox"));
    command
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("HOST", host)
        .env("PORT", "0")
        .env("WEBHOOK_SECRET", "s")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(token) = token {
        command.env("HOOKBOX_ADMIN_TOKEN", token);
    }
    let mut child = command.spawn().expect("the hookbox binary starts");
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The reader ends at the `listening` line, or at EOF if the process dies first.
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let done = line["msg"] == "listening";
        lines.push(line);
        if done || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.last().is_some_and(|line| line["msg"] == "listening"),
        "{lines:?}"
    );
    lines
}

fn warns_about_open_reads(lines: &[serde_json::Value]) -> bool {
    lines.iter().any(|line| {
        line["level"] == "WARN"
            && line["msg"]
                .as_str()
                .is_some_and(|msg| msg.contains("HOOKBOX_ADMIN_TOKEN"))
    })
}

#[test]
fn startup_warns_when_open_reads_listen_beyond_loopback() {
    // Every warning comes before `listening`, so its absence there is final.
    assert!(warns_about_open_reads(&startup_lines("0.0.0.0", None)));
    assert!(!warns_about_open_reads(&startup_lines("127.0.0.1", None)));
    let locked = startup_lines("0.0.0.0", Some(TOKEN));
    assert!(!warns_about_open_reads(&locked));
    // The token never reaches the log.
    assert!(!format!("{locked:?}").contains(TOKEN));
}
