//! Many clients at once: exactly-once storage under concurrent duplicates, every concurrent
//! distinct message landing, reads staying consistent during writes, and a store locked by
//! another process answering 503 + `Retry-After` until the lock goes away.

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Resp, Rng, TestServer, message};

fn body_for(id: usize) -> String {
    message(
        &format!("dup-{id:02}"),
        &format!("+9198765432{:02}", id % 7),
        &format!("2025-01-15T10:{:02}:00Z", id),
        Some(&format!("text of {id}")),
    )
}

fn assert_ok(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 200, "{what}: {}", resp.text());
    assert_eq!(resp.json(), json!({"status": "ok"}), "{what}");
}

/// Every stored row, paging through `/messages`.
fn all_rows(server: &TestServer) -> Vec<Value> {
    let mut rows = Vec::new();
    loop {
        let resp = server.get(&format!("/messages?limit=100&offset={}", rows.len()));
        assert_eq!(resp.status, 200, "{}", resp.text());
        let page = resp.json();
        let data = page["data"].as_array().unwrap().clone();
        if data.is_empty() {
            assert_eq!(page["total"], rows.len(), "total disagrees with the rows");
            return rows;
        }
        rows.extend(data);
    }
}

fn metric(server: &TestServer, series: &str) -> f64 {
    server
        .metric(series)
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

#[test]
fn concurrent_duplicates_are_stored_exactly_once() {
    const THREADS: usize = 16;
    const PER_THREAD: usize = 50;
    const IDS: usize = 40;
    let server = TestServer::start();
    let barrier = Barrier::new(THREADS);

    let failures: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    // Every id once, in this thread's own order, then 10 repeats: each id is
                    // sent 20 times in all, by many threads at nearly the same moment.
                    let mut order: Vec<usize> = (0..IDS).collect();
                    Rng::new(t as u64 + 1).shuffle(&mut order);
                    order.extend((0..PER_THREAD - IDS).map(|j| (t * 10 + j) % IDS));
                    barrier.wait();
                    order
                        .into_iter()
                        .filter_map(|id| {
                            let resp = server.post_webhook(body_for(id).as_bytes());
                            (resp.status != 200 || resp.json() != json!({"status": "ok"}))
                                .then(|| format!("id {id}: {} {}", resp.status, resp.text()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "non-200 answers: {failures:#?}");

    let rows = all_rows(&server);
    assert_eq!(rows.len(), IDS);
    let expected: Vec<Value> = (0..IDS)
        .map(|id| serde_json::from_str(&body_for(id)).unwrap())
        .collect();
    assert_eq!(rows, expected, "stored rows differ from what was sent");

    let created = metric(&server, r#"webhook_requests_total{result="created"}"#);
    let duplicate = metric(&server, r#"webhook_requests_total{result="duplicate"}"#);
    assert_eq!(created, IDS as f64);
    assert_eq!(created + duplicate, (THREADS * PER_THREAD) as f64);
    assert_eq!(
        metric(
            &server,
            r#"http_requests_total{path="/webhook",status="200"}"#
        ),
        (THREADS * PER_THREAD) as f64
    );

    // A late duplicate with different content still answers ok and changes nothing.
    let changed = message("dup-00", "+1", "2030-01-01T00:00:00Z", Some("changed"));
    assert_ok(&server.post_webhook(changed.as_bytes()), "late duplicate");
    assert_eq!(all_rows(&server), expected);
}

#[test]
fn concurrent_distinct_messages_all_land_while_reads_stay_consistent() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 30;
    const SENT: usize = WRITERS * PER_WRITER;
    let server = TestServer::start();
    let barrier = Barrier::new(WRITERS + 2);
    let writing = AtomicBool::new(true);

    thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    for i in 0..PER_WRITER {
                        let id = format!("w{w}-{i:02}");
                        let ts = format!("2025-01-15T{:02}:{:02}:00Z", w, i);
                        let body = message(&id, &format!("+{}", w + 1), &ts, Some("hi"));
                        assert_ok(&server.post_webhook(body.as_bytes()), &id);
                    }
                })
            })
            .collect();
        // Readers: every answer is 200, and counts never go backwards or past what was sent.
        let readers: Vec<_> = ["/messages?limit=5", "/stats"]
            .into_iter()
            .map(|target| {
                let (server, barrier, writing) = (&server, &barrier, &writing);
                scope.spawn(move || {
                    barrier.wait();
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let mut last = 0;
                    let mut reads = 0;
                    while writing.load(Ordering::Acquire) && Instant::now() < deadline {
                        let resp = server.get(target);
                        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
                        let body = resp.json();
                        let seen = body["total"]
                            .as_u64()
                            .or_else(|| body["total_messages"].as_u64())
                            .unwrap();
                        assert!(seen >= last, "{target}: total went from {last} to {seen}");
                        assert!(seen <= SENT as u64, "{target}: {seen} > {SENT}");
                        last = seen;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::Release);
        for reader in readers {
            assert!(reader.join().unwrap() > 0, "a reader never got to read");
        }
    });

    let rows = all_rows(&server);
    let ids: BTreeSet<String> = rows
        .iter()
        .map(|row| row["message_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (0..WRITERS)
        .flat_map(|w| (0..PER_WRITER).map(move |i| format!("w{w}-{i:02}")))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(rows.len(), SENT);
    let stats = server.get("/stats").json();
    assert_eq!(stats["total_messages"], SENT);
    assert_eq!(stats["senders_count"], WRITERS);
    assert_eq!(
        metric(&server, r#"webhook_requests_total{result="created"}"#),
        SENT as f64
    );
    assert_eq!(
        metric(&server, r#"webhook_requests_total{result="duplicate"}"#),
        0.0
    );
}

#[test]
fn store_locked_by_another_process_is_503_with_retry_after_for_everyone_then_retries_succeed() {
    const SENDERS: usize = 4;
    let server = TestServer::start_with(|config| config.busy_timeout = Duration::from_millis(100));
    // Another process (here: another connection) holds the write lock.
    let blocker = server.block_writes();

    let bodies: Vec<String> = (0..SENDERS)
        .map(|i| message(&format!("locked-{i}"), "+1", "2025-01-15T10:00:00Z", None))
        .collect();
    let barrier = Barrier::new(SENDERS);
    let answers: Vec<Resp> = thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    server.post_webhook(body.as_bytes())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for resp in &answers {
        assert_eq!(resp.status, 503, "{}", resp.text());
        let retry_after = resp
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {:?}", resp.headers));
        assert!(
            retry_after.parse::<u32>().is_ok_and(|s| s >= 1),
            "Retry-After {retry_after:?}"
        );
        assert!(resp.json()["detail"].is_string(), "{}", resp.text());
    }
    // Readers are not blocked by a writer (WAL), and nothing was stored.
    let page = server.get("/messages");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.json()["total"], 0);
    assert_eq!(server.get("/health/live").status, 200);

    blocker.release();
    for (i, body) in bodies.iter().enumerate() {
        assert_ok(&server.post_webhook(body.as_bytes()), &format!("retry {i}"));
    }
    assert_eq!(all_rows(&server).len(), SENDERS);
    assert_eq!(
        metric(&server, r#"webhook_requests_total{result="created"}"#),
        SENDERS as f64
    );
}
