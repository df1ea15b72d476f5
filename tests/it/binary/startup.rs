//! Starting up: configuration errors are exit 2 with a JSON line naming the variable, a store or
//! port that cannot be had is exit 1 naming it, and a missing secret still serves reads.

use std::net::TcpListener;

use super::harness::*;
use crate::support::{TempDir, message, sign};

#[test]
fn config_errors_exit_2_with_a_json_line_naming_the_variable() {
    let canary = "startup-secret-canary-41d7";
    for (variable, value) in [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "postgres://u:pw@h:port/db"),
        ("DATABASE_URL", "sqlite:x.db"),
        ("DATABASE_URL", "file:test.db"),
        ("DATABASE_URL", "postgres:test"),
        ("DATABASE_URL", "host=127.0.0.1 dbname=hookbox"),
        ("DATABASE_URL", " sqlite:///test.db"),
        ("DATABASE_URL", "test.db "),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432"),
        ("HOST", "abc"),
        ("HOST", "localhost"),
        ("HOST", "127.0.0.1:80"),
        ("HOST", "[::1]"),
        ("HOST", " 127.0.0.1"),
        ("LOG_LEVEL", "loud"),
        ("PORT", "70000"),
        ("PORT", "http"),
        ("HOOKBOX_WORKERS", "0"),
        ("HOOKBOX_QUEUE_CAPACITY", "-1"),
        ("HOOKBOX_MAX_BODY_BYTES", "abc"),
        ("HOOKBOX_BUSY_TIMEOUT_MS", "soon"),
    ] {
        let dir = TempDir::new();
        let run = Launch::new(dir.path())
            .env("WEBHOOK_SECRET", canary)
            .env(variable, value)
            .run_to_exit();
        let context = format!("{variable}={value}\n{}", run.describe());
        assert_eq!(run.code, Some(2), "{context}");
        let lines = run.json_lines();
        let named = lines.iter().find(|json| json["variable"] == variable);
        let named = named.unwrap_or_else(|| panic!("no line names the variable: {context}"));
        assert_eq!(named["level"], "ERROR", "{context}");
        let msg = named["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(variable),
            "msg should name {variable}: {context}"
        );
        assert!(
            lines.iter().all(|json| json["msg"] != "listening"),
            "{context}"
        );
        assert!(
            !run.stdout.join("\n").contains(canary) && !run.stderr.contains(canary),
            "the secret leaked: {context}"
        );
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "a config error must not touch any file: {context}"
        );
    }
}

#[test]
fn database_in_a_missing_directory_exits_1() {
    let dir = TempDir::new();
    let run = Launch::new(dir.path())
        .env("DATABASE_URL", "sqlite:///no/such/dir/app.db")
        .run_to_exit();
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let lines = run.json_lines();
    let error = lines
        .iter()
        .find(|json| json["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line: {}", run.describe()));
    let msg = error["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no/such/dir/app.db"),
        "the error should name the file: {}",
        run.describe()
    );
    assert!(lines.iter().all(|json| json["msg"] != "listening"));
    assert!(!dir.path().join("no").exists());
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let dir = TempDir::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let run = Launch::new(dir.path()).env("PORT", &port).run_to_exit();
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines.iter().any(|json| json["level"] == "ERROR"
            && json["msg"].as_str().is_some_and(|msg| msg.contains(&port))),
        "an ERROR line should name the port: {}",
        run.describe()
    );
}

#[test]
fn without_a_secret_the_server_starts_but_is_not_ready() {
    for secret in [None, Some("")] {
        let dir = TempDir::new();
        let mut launch = Launch::new(dir.path()).unset("WEBHOOK_SECRET");
        if let Some(value) = secret {
            launch = launch.env("WEBHOOK_SECRET", value);
        }
        let mut proc = launch.spawn();
        let warning = proc.wait_for("a warning about WEBHOOK_SECRET", |json| {
            json["msg"]
                .as_str()
                .is_some_and(|msg| msg.contains("WEBHOOK_SECRET"))
        });
        assert_eq!(warning["level"], "WARN", "{warning}");
        let addr = proc.listening();

        assert_eq!(get(addr, "/health/live").status, 200);
        let ready = get(addr, "/health/ready");
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(ready.json().is_object());
        let body = message("nosecret-1", FROM, TS, None);
        let webhook = send_to(
            addr,
            "POST",
            "/webhook",
            &[("X-Signature", &sign(body.as_bytes()))],
            body.as_bytes(),
        );
        assert_eq!(webhook.status, 503, "{}", webhook.text());
        assert_eq!(
            webhook.json(),
            serde_json::json!({"detail": "webhook secret not configured"})
        );
        // The operator can still read the store.
        assert_eq!(get(addr, "/messages").json()["total"], 0);

        let run = proc.stop("TERM");
        assert_eq!(run.code, Some(0), "{}", run.describe());
        run.json_lines();
        assert_eq!(stored_rows(&dir.path().join("test.db")), 0);
    }
}
