//! Retention: the writer keeps only the newest HOOKBOX_RETAIN_MESSAGES by arrival, purging in
//! small batches between commits while senders keep sending; aggregates and the text index stay
//! exact, freed pages are reused, and a purged id may be stored again.

use std::time::{Duration, Instant};

use crate::support::TestServer;

const KEEP: i64 = 40;

/// Polls `/stats` until the purge has caught up (it runs right after the commit whose answers
/// have already gone out), within a bounded time.
fn settled_total(server: &TestServer) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total = server.get("/stats").json()["total_messages"]
            .as_i64()
            .unwrap();
        if total <= KEEP || Instant::now() > deadline {
            return total;
        }
        std::thread::yield_now();
    }
}

/// Sends `per_thread` messages from each of four threads at once; returns how many were created.
fn ingest(server: &TestServer, round: usize, per_thread: usize) -> usize {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let id = format!("r{round}-t{thread}-{i}");
                        let ts = format!("2025-01-{:02}T10:00:00Z", 1 + (i * 7 + thread) % 28);
                        let text = format!("retained text {i} ünïcode");
                        let resp =
                            server.post_message(&id, &format!("+9{thread}"), &ts, Some(&text));
                        assert_eq!(resp.status, 200, "{}", resp.text());
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    4 * per_thread
}

/// Pages of the SQLite file (None on PostgreSQL, which manages its own space).
fn pages(server: &TestServer) -> Option<i64> {
    server.dir.postgres().is_none().then(|| {
        rusqlite::Connection::open(server.db_path())
            .unwrap()
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap()
    })
}

/// Counted in the store itself, past the aggregates: rows, distinct senders, the lowest and
/// highest arrival number, and the rows the text index (or, above its watermark, its tail) finds
/// for "retained".
fn recount(server: &TestServer) -> (i64, i64, i64, i64, i64) {
    match server.dir.postgres() {
        None => {
            let conn = rusqlite::Connection::open(server.db_path()).unwrap();
            let (rows, senders, first, last) = conn
                .query_row(
                    "SELECT count(*), count(DISTINCT sender), min(seq), max(seq) FROM messages",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .unwrap();
            // The index's rows (all at or below the watermark) and the tail's, above it.
            let indexed = conn
                .query_row(
                    "SELECT count(*) FROM messages_fts, text_index_state
                     WHERE messages_fts MATCH '\"ret\" AND \"ned\"' AND messages_fts.rowid <= indexed_upto",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .unwrap()
                + conn
                    .query_row(
                        "SELECT count(*) FROM messages, text_index_state WHERE seq > indexed_upto",
                        [],
                        |row| row.get::<_, i64>(0),
                    )
                    .unwrap();
            let everything: i64 = conn
                .query_row(
                    "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"ret\" AND \"ned\"'",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            let below: i64 = conn
                .query_row(
                    "SELECT count(*) FROM messages, text_index_state WHERE seq <= indexed_upto",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            // Nothing purged or above the watermark is left in the index.
            assert_eq!(everything, below);
            (rows, senders, first, last, indexed)
        }
        Some(pg) => {
            let row = pg
                .client()
                .query_one(
                    "SELECT count(*), count(DISTINCT sender), min(arrival), max(arrival),
                            count(*) FILTER (WHERE text_folded LIKE '%retained%')
                     FROM messages",
                    &[],
                )
                .unwrap();
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
        }
    }
}

#[test]
fn retention_keeps_the_newest_by_arrival_under_concurrent_ingest_with_exact_aggregates() {
    let server = TestServer::start_with(|config| {
        config.retain_messages = KEEP as u64;
        config.max_batch = 16;
    });
    let created = ingest(&server, 0, 100);
    assert_eq!(settled_total(&server), KEEP);
    let after_first = pages(&server);

    // Aggregates equal a recount; the text index holds exactly the kept rows.
    let check = || {
        let stats = server.get("/stats").json();
        let (rows, senders, first, last, indexed) = recount(&server);
        assert_eq!(stats["total_messages"].as_i64(), Some(rows));
        assert_eq!(stats["senders_count"].as_i64(), Some(senders));
        let top: i64 = stats["messages_per_sender"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .sum();
        assert_eq!(top, rows);
        // The newest by arrival: arrival numbers without a gap up to the latest.
        assert_eq!(last - first + 1, rows);
        assert_eq!(indexed, rows);
        assert_eq!(
            server.get("/messages?q=%C3%9CN%C3%8F").json()["total"].as_i64(),
            Some(rows)
        );
    };
    check();
    // Counted right after the purge commits, so possibly just after /stats saw it.
    let purged = (created as i64 - KEEP) as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("hookbox_purged_messages_total") != Some(purged)
        && Instant::now() < deadline
    {
        std::thread::yield_now();
    }
    assert_eq!(server.metric("hookbox_purged_messages_total"), Some(purged));

    // A second round: the file reuses the freed pages instead of growing.
    let created_again = ingest(&server, 1, 100);
    assert_eq!(settled_total(&server), KEEP);
    check();
    if let (Some(after_first), Some(now)) = (after_first, pages(&server)) {
        assert!(
            now <= after_first + 2,
            "{now} pages after the second round, {after_first} after the first"
        );
    }

    // A purged id may be stored again: it is new to the store, so this row is stored.
    let resp = server.post_message(
        "r0-t0-0",
        "+90",
        "2025-01-01T10:00:00Z",
        Some("stored again"),
    );
    assert_eq!(resp.status, 200);
    let again = server.get("/messages?q=stored%20again").json();
    assert_eq!(again["total"], 1);
    assert_eq!(again["data"][0]["message_id"], "r0-t0-0");
    assert_eq!(created_again, created);
}
