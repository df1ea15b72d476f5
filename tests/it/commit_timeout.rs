//! `HOOKBOX_COMMIT_TIMEOUT_SECS`: no webhook waits longer than that for its commit. A writer stuck
//! behind another connection's lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a table lock held in
//! an open transaction), with a busy/lock timeout far longer than the commit timeout, must not
//! hold the sender: it gets 503 + `Retry-After` at the commit timeout, not acknowledged. When the
//! lock goes, the commit lands, and the sender's retry is a duplicate (200), stored once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestServer;

const COMMIT_TIMEOUT: Duration = Duration::from_secs(1);

#[test]
fn a_webhook_behind_a_stuck_commit_gets_503_at_the_commit_timeout_and_its_retry_is_a_duplicate() {
    let server = TestServer::start_with(|config| {
        config.commit_timeout = COMMIT_TIMEOUT;
        // The store itself would wait ten minutes for the lock.
        config.busy_timeout = Duration::from_secs(600);
    });
    let blocker = server.block_writes();
    let started = Instant::now();
    let resp = server.post_message("stuck", "+1", "2025-01-15T10:00:00Z", Some("hi"));
    let waited = started.elapsed();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.header("retry-after").is_some());
    let detail = resp.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("not acknowledged"), "{detail}");
    assert!(waited >= COMMIT_TIMEOUT, "answered after {waited:?}");
    assert!(waited < COMMIT_TIMEOUT * 10, "answered after {waited:?}");
    // The rest of the service is not held: probes, reads and metrics answer meanwhile.
    assert_eq!(server.get("/health/live").status, 200);
    assert_eq!(server.get("/messages").json()["total"], 0);
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="commit_timeout"}"#),
        Some(1.0)
    );
    assert_eq!(
        server.metric(r#"http_requests_total{path="/webhook",status="503"}"#),
        Some(1.0)
    );

    // The lock goes; the stuck commit lands; the retry finds the row.
    blocker.release();
    let retry = server.post_message("stuck", "+1", "2025-01-15T10:00:00Z", Some("hi"));
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(retry.json(), json!({"status": "ok"}));
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="duplicate"}"#),
        Some(1.0)
    );
    let page = server.get("/messages").json();
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"][0]["message_id"], "stuck");
}

/// A webhook needs no worker: with the only worker held by a read (a lock on PostgreSQL, whose
/// readers can be made to wait; SQLite's never do), it goes straight to the writer. The lock holds
/// the writer's insert too, so the webhook is answered 503 once, at its commit timeout, and
/// counted once; the commit lands when the lock goes (a late commit, logged, as documented), and
/// a later webhook is stored behind it.
#[test]
fn a_webhook_behind_a_busy_worker_and_a_held_commit_is_answered_once() {
    if crate::support::store_kind() != crate::support::StoreKind::Postgres {
        eprintln!("PostgreSQL-only test (a read held by a lock), not run on SQLite");
        return;
    }
    let server = TestServer::start_with(|config| {
        config.workers = 1;
        config.commit_timeout = COMMIT_TIMEOUT;
        config.query_timeout = COMMIT_TIMEOUT * 3;
    });
    let mut lock = server.dir.postgres().unwrap().client();
    lock.batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    std::thread::scope(|scope| {
        // The only worker takes this read and waits on the lock until the query timeout.
        let read = scope.spawn(|| server.get("/messages?q=x&since=2025-01-01T00:00:00Z"));
        // The worker is busy once its read waits on the lock (PostgreSQL says so).
        let mut watcher = server.dir.postgres().unwrap().client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the read never reached the lock");
        }
        let resp = server.post_message("late", "+1", "2025-01-15T10:00:00Z", None);
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert_eq!(read.join().unwrap().status, 503);
    });
    lock.batch_execute("ROLLBACK").unwrap();
    // The writer works in order: once this one is answered, anything before it is committed.
    assert_eq!(
        server
            .post_message("after", "+1", "2025-01-15T10:00:00Z", None)
            .status,
        200
    );
    let page = server.get("/messages").json();
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(
        server.metric(r#"http_requests_total{path="/webhook",status="503"}"#),
        Some(1.0)
    );
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="commit_timeout"}"#),
        Some(1.0)
    );
}

/// A webhook that waits out its commit timeout in the write queue (behind a commit held by a
/// lock) is answered 503 and then not stored: its commit had not begun, and its sender was told
/// "not acknowledged". The one whose commit was running lands when the lock goes, as documented.
#[test]
fn a_webhook_answered_503_while_still_queued_is_not_stored() {
    let server = TestServer::start_with(|config| {
        config.commit_timeout = COMMIT_TIMEOUT;
        // The store itself would wait ten minutes for the lock.
        config.busy_timeout = Duration::from_secs(600);
    });
    let blocker = server.block_writes();
    // The writer takes this one at once, and its commit waits on the lock.
    let running = server.post_message("running", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(running.status, 503, "{}", running.text());
    // This one waits in the queue behind it, past its own timeout.
    let queued = server.post_message("queued", "+1", "2025-01-15T10:00:01Z", None);
    assert_eq!(queued.status, 503, "{}", queued.text());
    blocker.release();
    // The writer works in order: once this one is answered, both before it were handled.
    let after = server.post_message("after", "+1", "2025-01-15T10:00:02Z", None);
    assert_eq!(after.status, 200, "{}", after.text());
    let page = server.get("/messages").json();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["running", "after"], "{page}");
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="commit_timeout"}"#),
        Some(2.0)
    );
}
