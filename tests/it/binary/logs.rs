//! stdout is JSON lines only, with the documented request fields; `LOG_LEVEL` filters; the secret
//! and message bodies never reach stdout or stderr.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::harness::*;
use crate::support::{TempDir, message};

#[test]
fn stdout_is_json_lines_with_request_fields() {
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path()).start();

    let with_id = |id: &'static str| [("X-Request-ID", id)];
    let ready = send_to(addr, "GET", "/health/ready", &with_id("rid-ready"), b"");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = message("log-1", FROM, TS, Some("hello"));
    let unsigned = send_to(
        addr,
        "POST",
        "/webhook",
        &[("X-Request-ID", "rid-401"), ("X-Signature", "00ff")],
        body.as_bytes(),
    );
    assert_eq!(unsigned.status, 401);
    assert_eq!(
        unsigned.json(),
        serde_json::json!({"detail": "invalid signature"})
    );
    let created = post_signed(addr, &body, &with_id("rid-created"));
    assert_eq!(created.status, 200, "{}", created.text());
    let duplicate = post_signed(addr, &body, &with_id("rid-dup"));
    assert_eq!(duplicate.status, 200, "{}", duplicate.text());
    let invalid = post_signed(addr, "not json", &with_id("rid-422"));
    assert_eq!(invalid.status, 422, "{}", invalid.text());
    let bad_from = message("log-bad", "12345", TS, None);
    let invalid_field = post_signed(addr, &bad_from, &with_id("rid-422-field"));
    assert_eq!(invalid_field.status, 422, "{}", invalid_field.text());
    let list = send_to(addr, "GET", "/messages", &with_id("rid-list"), b"");
    assert_eq!(list.status, 200);
    let missing = send_to(addr, "GET", "/nope?x=1", &with_id("rid-404"), b"");
    assert_eq!(missing.status, 404);
    let anonymous = [get(addr, "/health/live"), get(addr, "/health/live")];
    let hostile = send_to(
        addr,
        "GET",
        "/health/live",
        &[("X-Request-ID", "has spaces \"and quotes\"")],
        b"",
    );

    for (response, id) in [
        (&ready, "rid-ready"),
        (&unsigned, "rid-401"),
        (&created, "rid-created"),
        (&duplicate, "rid-dup"),
        (&invalid, "rid-422"),
        (&list, "rid-list"),
        (&missing, "rid-404"),
    ] {
        assert_eq!(response.header("X-Request-ID"), Some(id), "{response:?}");
    }
    let generated: Vec<String> = anonymous
        .iter()
        .chain([&hostile])
        .map(|r| {
            r.header("X-Request-ID")
                .expect("a request ID is echoed even when none was sent")
                .to_owned()
        })
        .collect();
    assert!(
        !generated[2].contains(' '),
        "an unsafe ID must not be reused"
    );

    // After exit stdout is complete, so both presence and absence can be checked.
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for json in &lines {
        let ts = json["ts"].as_str().unwrap_or_default();
        assert!(is_iso8601_utc(ts), "bad ts in {json}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG"].contains(&json["level"].as_str().unwrap_or("")),
            "bad level in {json}"
        );
        if json.get("request_id").is_none() {
            continue;
        }
        let id = json["request_id"].as_str().expect("request_id is a string");
        assert!(!id.is_empty());
        assert!(json["method"].is_string(), "{json}");
        assert!(json["path"].is_string(), "{json}");
        assert!(json["status"].is_u64(), "status must be a number: {json}");
        assert!(
            json["latency_ms"].is_number(),
            "latency_ms must be a number: {json}"
        );
        assert!(json["latency_ms"].as_f64().unwrap() >= 0.0);
        if json["path"] == "/webhook" {
            assert!(json["dup"].is_boolean(), "webhook line without dup: {json}");
            assert!(
                json["result"].is_string(),
                "webhook line without result: {json}"
            );
        }
        let previous = by_id.insert(id.to_owned(), json.clone());
        assert!(previous.is_none(), "request_id {id} logged twice");
    }
    let line = |id: &str| {
        by_id
            .get(id)
            .unwrap_or_else(|| panic!("no log line for {id}: {}", run.describe()))
    };

    let l = line("rid-ready");
    assert_eq!(
        (&l["level"], &l["method"], &l["path"], &l["status"]),
        (
            &"INFO".into(),
            &"GET".into(),
            &"/health/ready".into(),
            &200.into()
        )
    );
    assert!(l.get("dup").is_none() && l.get("result").is_none(), "{l}");

    let l = line("rid-401");
    assert_eq!(l["level"], "ERROR", "a 401 is logged at ERROR: {l}");
    assert_eq!((&l["status"], &l["method"]), (&401.into(), &"POST".into()));
    assert_eq!(
        (&l["result"], &l["dup"]),
        (&"invalid_signature".into(), &false.into())
    );
    assert!(
        l.get("message_id").is_none(),
        "unverified body must not be parsed: {l}"
    );

    let l = line("rid-created");
    assert_eq!((&l["level"], &l["status"]), (&"INFO".into(), &200.into()));
    assert_eq!(
        (&l["result"], &l["dup"]),
        (&"created".into(), &false.into())
    );
    assert_eq!(l["message_id"], "log-1");

    let l = line("rid-dup");
    assert_eq!((&l["level"], &l["status"]), (&"INFO".into(), &200.into()));
    assert_eq!(
        (&l["result"], &l["dup"]),
        (&"duplicate".into(), &true.into())
    );
    assert_eq!(l["message_id"], "log-1");

    let l = line("rid-422");
    assert_eq!(
        (&l["status"], &l["result"]),
        (&422.into(), &"validation_error".into())
    );
    assert_eq!(l["dup"], false);
    assert!(l.get("message_id").is_none(), "{l}");

    let l = line("rid-422-field");
    assert_eq!(
        (&l["status"], &l["result"]),
        (&422.into(), &"validation_error".into())
    );
    assert_eq!(
        l["message_id"], "log-bad",
        "a parsed message_id is logged: {l}"
    );

    let l = line("rid-list");
    assert_eq!(
        (&l["level"], &l["path"], &l["status"]),
        (&"INFO".into(), &"/messages".into(), &200.into())
    );

    let l = line("rid-404");
    assert_eq!((&l["status"], &l["path"]), (&404.into(), &"/nope".into()));

    // Generated IDs: unique, and the log line carries the same ID as the response header.
    assert_eq!(generated.iter().collect::<HashSet<_>>().len(), 3);
    for id in &generated {
        let l = line(id);
        assert_eq!(l["path"], "/health/live");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The secret, and message bodies, never reach the output.

#[test]
fn secret_and_bodies_never_reach_stdout_or_stderr() {
    let secret = "canary-Secret-9f2b7c1e-do-not-log";
    let text = "body-canary-5d2e81";
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path())
        .env("WEBHOOK_SECRET", secret)
        .env("LOG_LEVEL", "DEBUG")
        .start();

    let body = message("secret-1", FROM, TS, Some(text));
    let good = hookbox::signature::sign_hex(secret.as_bytes(), body.as_bytes());
    let post = |signature: &str, body: &str| {
        send_to(
            addr,
            "POST",
            "/webhook",
            &[("X-Signature", signature)],
            body.as_bytes(),
        )
    };
    assert_eq!(post(&good, &body).status, 200);
    assert_eq!(post(&good, &body).status, 200);
    assert_eq!(post("deadbeef", &body).status, 401);
    assert_eq!(post(secret, &body).status, 401);
    let invalid = message("secret-2", text, TS, Some(text));
    let signed = hookbox::signature::sign_hex(secret.as_bytes(), invalid.as_bytes());
    assert_eq!(post(&signed, &invalid).status, 422);
    assert_eq!(get(addr, "/messages").status, 200);
    assert_eq!(get(addr, &format!("/messages?q={text}")).status, 200);

    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let stdout = run.stdout.join("\n");
    assert!(
        stdout.contains("secret-1"),
        "the run should have logged the webhook: {}",
        run.describe()
    );
    for (what, needle) in [("the secret", secret), ("a message body", text)] {
        // The query string of /messages?q=… is the operator's own input, not a message body;
        // the logged path leaves the query out, so the text must not appear at all.
        assert!(
            !stdout.contains(needle),
            "{what} is on stdout: {}",
            run.describe()
        );
        assert!(
            !run.stderr.contains(needle),
            "{what} is on stderr: {}",
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. LOG_LEVEL.

#[test]
fn log_level_error_keeps_only_error_lines() {
    let dir = TempDir::new();
    let (proc, addr) = start_on_free_port(Launch::new(dir.path()).env("LOG_LEVEL", "ERROR"));

    assert_eq!(get(addr, "/health/live").status, 200);
    assert_eq!(
        post_signed(addr, &message("lvl-1", FROM, TS, None), &[]).status,
        200
    );
    assert_eq!(get(addr, "/nope").status, 404);
    let unsigned = send_to(
        addr,
        "POST",
        "/webhook",
        &[("X-Request-ID", "rid-lvl-401")],
        b"{}",
    );
    assert_eq!(unsigned.status, 401);

    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines.iter().all(|json| json["level"] == "ERROR"),
        "only ERROR lines at LOG_LEVEL=ERROR: {}",
        run.describe()
    );
    let requests: Vec<&Value> = lines.iter().filter(|j| j.get("status").is_some()).collect();
    assert_eq!(requests.len(), 1, "{}", run.describe());
    assert_eq!(requests[0]["request_id"], "rid-lvl-401");
    assert_eq!(requests[0]["status"], 401);
}

#[test]
fn log_level_warn_mixed_case_hides_info_but_keeps_warnings() {
    let dir = TempDir::new();
    let (proc, addr) = start_on_free_port(Launch::new(dir.path()).env("LOG_LEVEL", "Warn"));
    assert_eq!(get(addr, "/health/live").status, 200);
    let missing = send_to(
        addr,
        "GET",
        "/nope",
        &[("X-Request-ID", "rid-warn-404")],
        b"",
    );
    assert_eq!(missing.status, 404);

    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines
            .iter()
            .all(|j| j["level"] == "WARN" || j["level"] == "ERROR"),
        "{}",
        run.describe()
    );
    let requests: Vec<&Value> = lines.iter().filter(|j| j.get("status").is_some()).collect();
    assert_eq!(requests.len(), 1, "{}", run.describe());
    assert_eq!(requests[0]["request_id"], "rid-warn-404");
    assert_eq!(requests[0]["level"], "WARN");
}

#[test]
fn log_level_lowercase_debug_and_info_are_accepted() {
    for level in ["debug", "info"] {
        let dir = TempDir::new();
        let (proc, addr) = Launch::new(dir.path()).env("LOG_LEVEL", level).start();
        assert_eq!(get(addr, "/health/live").status, 200);
        let run = proc.stop("TERM");
        assert_eq!(run.code, Some(0), "LOG_LEVEL={level}: {}", run.describe());
        assert!(
            run.json_lines()
                .iter()
                .any(|j| j["path"] == "/health/live" && j["level"] == "INFO"),
            "LOG_LEVEL={level} shows INFO request lines: {}",
            run.describe()
        );
    }
}

#[test]
fn log_level_debug_writes_debug_lines() {
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path()).env("LOG_LEVEL", "DEBUG").start();
    assert_eq!(get(addr, "/health/live").status, 200);
    assert_eq!(
        post_signed(addr, &message("dbg-1", FROM, TS, None), &[]).status,
        200
    );
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.json_lines().iter().any(|json| json["level"] == "DEBUG"),
        "LOG_LEVEL=DEBUG wrote no DEBUG line: {}",
        run.describe()
    );
}

#[test]
fn a_head_that_cannot_be_parsed_gets_its_request_line_too() {
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path()).start();
    let mut conn = crate::support::Conn::open(addr);
    assert!(conn.send(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n"));
    let refused = conn.next(crate::support::BOUND).resp("the 400");
    assert_eq!(refused.status, 400);
    let id = refused
        .header("X-Request-ID")
        .expect("a refused head's answer names its request id")
        .to_owned();
    let run = proc.stop("TERM");
    let lines = run.json_lines();
    let line = lines
        .iter()
        .find(|json| json["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no line for the refused head: {}", run.describe()));
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(line["latency_ms"].is_number(), "{line}");
    assert!(
        line["method"].is_string() && line["path"].is_string(),
        "{line}"
    );
}
