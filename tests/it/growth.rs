//! Reads at scale: bounded in time (the query timeout) and in memory (offsets of any size),
//! keyset paging, and totals that stay exact (SPEC Part 2, "Growth" and "Hostile clients").

use hookbox::Config;
use hookbox::message::Message;
use hookbox::store::Store;

use crate::support::{SECRET, TempDir, TestServer};

/// A message with id `m{i:06}`, from one of three senders, a ts spread over a month, and text.
fn numbered(i: usize) -> Message {
    let ts = format!("2025-01-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60);
    Message {
        message_id: format!("m{i:06}"),
        from: format!("+9100{}", i % 3),
        to: "+14155550100".to_owned(),
        ts_key: hookbox::timestamp::sort_key(&ts).unwrap(),
        ts,
        text: Some(format!(
            "message number {i} says {}",
            ["hello", "world", "Hola"][i % 3]
        )),
    }
}

/// A config on `dir` whose database already holds `count` numbered messages, stored through the
/// store itself (much faster than HTTP).
fn preloaded(dir: &TempDir, count: usize) -> Config {
    let config = Config::for_database(dir.path().join("test.db"), Some(SECRET));
    let mut store = Store::open(&config).unwrap();
    store.migrate().unwrap();
    let messages: Vec<Message> = (0..count).map(numbered).collect();
    for chunk in messages.chunks(10_000) {
        store
            .insert_batch(chunk, "2025-02-01T00:00:00.000Z")
            .unwrap();
    }
    store.close();
    config
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_read_past_the_query_timeout_is_stopped_answered_503_with_retry_after_and_counted() {
    let dir = TempDir::new();
    let mut config = preloaded(&dir, 30_000);
    config.query_timeout = std::time::Duration::from_millis(1);
    let server = TestServer::start_in(dir, config);
    assert_eq!(server.metric("hookbox_query_timeouts_total"), Some(0.0));
    // A one-character needle tests every row: far more than a millisecond.
    let resp = server.get("/messages?q=e");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(resp.json()["detail"].as_str().unwrap().contains("too long"));
    assert_eq!(server.metric("hookbox_query_timeouts_total"), Some(1.0));
    // The connection that was interrupted serves the next request normally.
    for _ in 0..8 {
        assert_eq!(server.get("/health/ready").status, 200);
    }
}

#[test]
fn a_huge_offset_reads_nothing_whatever_the_filters() {
    let dir = TempDir::new();
    let config = preloaded(&dir, 3_000);
    let server = TestServer::start_in(dir, config);
    for filters in [
        "",
        "&q=hello",
        "&q=e",
        "&from=%2B91001",
        "&since=2025-01-10T00:00:00Z",
        "&q=hola&from=%2B91002",
    ] {
        let body = server.get(&format!("/messages?limit=100{filters}")).json();
        let total = body["total"].as_u64().unwrap();
        assert!(total > 0, "{filters}");
        // The last row is still reachable by offset…
        let last = server.get(&format!(
            "/messages?limit=100&offset={}{filters}",
            total - 1
        ));
        assert_eq!(ids(&last.json()).len(), 1, "{filters}");
        // …and past it, up to the largest offset, nothing is read (SQLite would take an
        // overflowed LIMIT + OFFSET for "no limit" and return every row).
        for offset in [total, total + 1, i64::MAX as u64 - 100, i64::MAX as u64] {
            let resp = server.get(&format!("/messages?limit=100&offset={offset}{filters}"));
            assert_eq!(resp.status, 200, "{filters} {offset}: {}", resp.text());
            let body = resp.json();
            assert_eq!(ids(&body), Vec::<String>::new(), "{filters} {offset}");
            assert_eq!(body["total"].as_u64(), Some(total));
            assert_eq!(body["offset"].as_u64(), Some(offset));
        }
    }
}
