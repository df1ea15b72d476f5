//! Storage failures and group commit: a 200 only for a committed row, 503 + Retry-After for
//! anything the store could not take, readiness that reflects it, and recovery.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use hookbox::Config;

use crate::support::{Resp, TestServer, message};

/// Sends `count` distinct messages with a ~4 KiB text each, from `threads` threads at once.
fn flood(server: &TestServer, prefix: &str, threads: usize, count: usize) -> Vec<(String, Resp)> {
    let barrier = Arc::new(Barrier::new(threads));
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    barrier.wait();
                    (0..count / threads)
                        .map(|i| {
                            let id = format!("{prefix}-{t}-{i}");
                            let text = "x".repeat(4000);
                            let body = message(&id, "+1", "2025-01-15T10:00:00Z", Some(&text));
                            (id, server.post_webhook(body.as_bytes()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn stored_ids(server: &TestServer) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut offset = 0;
    loop {
        let page = server
            .get(&format!("/messages?limit=100&offset={offset}"))
            .json();
        let data = page["data"].as_array().unwrap();
        if data.is_empty() {
            return ids;
        }
        ids.extend(
            data.iter()
                .map(|m| m["message_id"].as_str().unwrap().to_owned()),
        );
        offset += data.len();
    }
}

#[test]
fn a_full_database_answers_503_never_200_for_an_unstored_row_and_recovers_with_room() {
    if !crate::support::sqlite_only("HOOKBOX_MAX_DB_MIB caps the SQLite file") {
        return;
    }
    // 1 MiB holds a couple of hundred 4 KiB messages; 600 cannot all fit.
    let server = TestServer::start_with(|config| config.max_db_mib = 1);
    let results = flood(&server, "full", 8, 600);

    let acked: HashSet<String> = results
        .iter()
        .filter(|(_, r)| r.status == 200)
        .map(|(id, _)| id.clone())
        .collect();
    let refused: Vec<&Resp> = results
        .iter()
        .filter(|(_, r)| r.status != 200)
        .map(|(_, r)| r)
        .collect();
    assert!(!acked.is_empty(), "some messages fit before the cap");
    assert!(!refused.is_empty(), "the cap was reached");
    for response in &refused {
        assert_eq!(response.status, 503, "{}", response.text());
        assert!(response.header("Retry-After").is_some());
        assert_eq!(
            response.json()["detail"],
            "storage unavailable, retry later"
        );
    }
    // Exactly the acknowledged messages are stored: none lost, none half-written.
    assert_eq!(stored_ids(&server), acked);
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="created"}"#),
        Some(acked.len() as f64)
    );
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="unavailable"}"#),
        Some(refused.len() as f64)
    );
    // Ready names the cap, the operator's remedy, not "database or disk is full".
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 503);
    let detail = ready.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("last write failed"), "{detail}");
    assert!(detail.contains("HOOKBOX_MAX_DB_MIB=1 "), "{detail}");
    assert!(!detail.contains("disk is full"), "{detail}");

    // Given room (here: a restart without the cap), the same retries succeed and nothing was lost.
    let dir = server.stop();
    let mut config = Config::for_database(dir.path().join("test.db"), Some(crate::support::SECRET));
    config.max_db_mib = 0;
    let server = TestServer::start_in(dir, config);
    assert_eq!(server.get("/health/ready").status, 200);
    let before = stored_ids(&server);
    assert_eq!(before, acked);
    let text = "x".repeat(4000);
    let retry = message("full-retry", "+1", "2025-01-15T10:00:00Z", Some(&text));
    assert_eq!(server.post_webhook(retry.as_bytes()).status, 200);
    assert_eq!(stored_ids(&server).len(), acked.len() + 1);
}

#[test]
fn a_failed_commit_marks_the_store_not_ready_until_a_commit_succeeds() {
    let server = TestServer::start_with(|config| {
        config.busy_timeout = Duration::from_millis(50);
    });
    assert_eq!(server.get("/health/ready").status, 200);
    let blocker = server.block_writes();
    let body = message("blocked", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.post_webhook(body.as_bytes()).status, 503);
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 503, "{}", ready.text());
    blocker.release();
    assert_eq!(server.post_webhook(body.as_bytes()).status, 200);
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn concurrent_messages_are_committed_in_groups() {
    let server = TestServer::start_with(|config| config.workers = 8);
    let results = flood(&server, "group", 16, 400);
    assert!(results.iter().all(|(_, r)| r.status == 200));
    let commits = server.metric("hookbox_commit_batch_size_count").unwrap();
    let stored = server.metric("hookbox_commit_batch_size_sum").unwrap();
    assert_eq!(stored, 400.0);
    // With 16 senders at once, some commits must have carried more than one message.
    assert!(commits < stored, "{commits} commits for {stored} messages");
}

#[test]
fn normal_durability_is_accepted_and_still_stores_exactly_once() {
    let server = TestServer::start_with(|config| {
        config.durability = hookbox::config::Durability::Normal;
    });
    let body = message("n1", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.post_webhook(body.as_bytes()).status, 200);
    assert_eq!(server.post_webhook(body.as_bytes()).status, 200);
    assert_eq!(server.get("/messages").json()["total"], 1);
}

#[test]
fn the_wal_stays_bounded_under_steady_writes_and_is_emptied_at_shutdown() {
    if !crate::support::sqlite_only("SQLite's WAL and checkpoints") {
        return;
    }
    let server = TestServer::start_with(|config| config.workers = 8);
    let wal = server.dir.path().join("test.db-wal");
    // ~10 MiB of messages: far more than the WAL may hold if checkpoints keep up.
    let results = flood(&server, "wal", 8, 2400);
    assert!(results.iter().all(|(_, r)| r.status == 200));
    let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        wal_bytes < 8 * 1024 * 1024,
        "the WAL grew to {wal_bytes} bytes"
    );
    let dir = server.stop();
    let wal_after = std::fs::metadata(dir.path().join("test.db-wal")).map_or(0, |m| m.len());
    assert_eq!(
        wal_after, 0,
        "shutdown leaves everything in the database file"
    );
    let conn = rusqlite::Connection::open(dir.path().join("test.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 2400);
}
