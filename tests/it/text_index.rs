//! SQLite's deferred text index: rows stored since the writer last indexed (the tail, above the
//! watermark) are found by `q` at once, totals stay exact with rows on both sides of the
//! watermark, purges keep the index holding exactly the indexed rows, and a tail left by one run
//! is indexed after the next start (README, "Growth").
//!
//! The stores here are large enough (2,400 rows) for the needle to be rare, so `q` is answered
//! from the index and its tail, not by a scan, which would find the tail rows anyway.

use std::path::Path;
use std::time::{Duration, Instant};

use hookbox::Config;
use hookbox::message::Message;
use hookbox::store::Store;

use crate::support::{SECRET, TestDb, TestServer, sqlite_only};

const PRELOADED: usize = 2_400;

/// `PRELOADED` rows stored through the store in import-sized batches (so they index themselves);
/// every 100th says "Zebra".
fn preloaded(dir: &TestDb) -> Config {
    let config = dir.config(Some(SECRET));
    let mut store = Store::open(&config.store_options()).unwrap();
    store.migrate().unwrap();
    store.use_text_index(config.text_index).unwrap();
    let messages: Vec<Message> = (0..PRELOADED)
        .map(|i| {
            let ts = format!("2025-01-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24);
            let text = if i % 100 == 0 {
                format!("Zebra crossing {i}")
            } else {
                format!("plain row {i}")
            };
            Message {
                message_id: format!("p{i:05}"),
                from: format!("+9100{}", i % 3),
                to: "+14155550100".to_owned(),
                ts_key: hookbox::timestamp::sort_key(&ts).unwrap(),
                ts,
                text: Some(text),
            }
        })
        .collect();
    for chunk in messages.chunks(1_200) {
        store
            .insert_batch(chunk, "2025-02-01T00:00:00.000Z")
            .unwrap();
    }
    store.close();
    config
}

/// The watermark and the highest arrival number, read behind the server's back.
fn watermark(path: &Path) -> (i64, i64) {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT indexed_upto, (SELECT coalesce(max(seq), 0) FROM messages)
             FROM text_index_state",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

/// The text index holds exactly the rows with text at or below the watermark (also used by
/// tests/it/store_model.rs).
pub fn assert_index_exact(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let ids = |sql: &str| -> Vec<i64> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let indexed = ids("SELECT id FROM messages_fts_docsize ORDER BY id");
    let expected = ids("SELECT seq FROM messages, text_index_state
         WHERE seq <= indexed_upto AND text IS NOT NULL ORDER BY seq");
    assert_eq!(indexed, expected);
}

/// What `/messages?q=…` must answer, from every row in the file: ids in page order, and the total.
fn expected(path: &Path, needle: &str, from: Option<&str>) -> (Vec<String>, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let needle = hookbox::text::fold(needle);
    let mut rows: Vec<(String, String)> = conn
        .prepare("SELECT ts_key, message_id, sender, text FROM messages")
        .unwrap()
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .filter(|(_, _, sender, text)| {
            from.is_none_or(|from| sender == from)
                && text
                    .as_deref()
                    .is_some_and(|text| hookbox::text::fold(text).contains(&needle))
        })
        .map(|(ts_key, id, _, _)| (ts_key, id))
        .collect();
    rows.sort();
    let total = rows.len() as i64;
    (
        rows.into_iter().take(100).map(|(_, id)| id).collect(),
        total,
    )
}

/// The ids (in page order) and total of `/messages?limit=100&{query}`, which must be a 200.
pub fn answer(server: &TestServer, query: &str) -> (Vec<String>, i64) {
    let resp = server.get(&format!("/messages?limit=100&{query}"));
    assert_eq!(resp.status, 200, "{query}: {}", resp.text());
    let body = resp.json();
    let ids = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["total"].as_i64().unwrap())
}

/// Every needle and filter against the rows themselves.
fn assert_answers_exact(server: &TestServer) {
    let path = server.db_path();
    for (query, needle, from) in [
        ("q=zebra", "zebra", None),
        ("q=ZEBRA%20TAIL", "ZEBRA TAIL", None),
        ("q=zebra&from=%2B91001", "zebra", Some("+91001")),
        ("q=bra%20c", "bra c", None),
    ] {
        assert_eq!(
            answer(server, query),
            expected(&path, needle, from),
            "{query}"
        );
    }
}

/// Waits (bounded) until the writer has indexed every row.
fn wait_until_indexed(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (upto, last) = watermark(path);
        if upto == last {
            return;
        }
        assert!(Instant::now() < deadline, "not indexed: {upto} of {last}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn post_tail(server: &TestServer, prefix: &str, count: usize) {
    for k in 0..count {
        let text = match k % 4 {
            0 => Some(format!("ZEBRA tail {prefix} {k}")),
            1 => None,
            2 => Some(format!("zébra is not zebra {k}")),
            _ => Some(format!("a zebra tail, {prefix} again {k}")),
        };
        let ts = format!("2025-01-{:02}T12:00:00Z", 1 + (k * 5) % 28);
        let id = format!("{prefix}{k:03}");
        let from = format!("+9100{}", k % 3);
        let resp = server.post_message(&id, &from, &ts, text.as_deref());
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

#[test]
fn q_finds_rows_in_the_tail_at_once_and_after_indexing_with_totals_exact_across_the_watermark() {
    if !sqlite_only("the text index's tail is SQLite's") {
        return;
    }
    let dir = TestDb::new();
    let mut config = preloaded(&dir);
    config.text_index_catch_up = false;
    let server = TestServer::start_in(dir, config.clone());
    let path = server.db_path();
    assert_eq!(watermark(&path), (PRELOADED as i64, PRELOADED as i64));
    let base = answer(&server, "q=zebra").1;
    assert_eq!(base, (PRELOADED / 100) as i64);
    // Each row is found right after its 200, while it is in the tail.
    for k in 0..8 {
        let id = format!("t{k:03}");
        let resp = server.post_message(&id, "+91001", "2025-01-05T00:00:00Z", Some("new ZEBRA"));
        assert_eq!(resp.status, 200);
        let (ids, total) = answer(&server, "q=Zebra&from=%2B91001&since=2025-01-05T00:00:00Z");
        assert!(ids.contains(&id), "{id} not found: {ids:?}");
        assert_eq!(total as usize, ids.len());
        assert_eq!(answer(&server, "q=zebra").1, base + k + 1);
    }
    post_tail(&server, "u", 24);
    let (upto, last) = watermark(&path);
    assert_eq!((upto, last), (PRELOADED as i64, PRELOADED as i64 + 32));
    assert_answers_exact(&server);
    assert_index_exact(&path);

    // A restart with a tail: the writer indexes it after startup, and answers stay the same.
    let dir = server.stop();
    config.text_index_catch_up = true;
    let server = TestServer::start_in(dir, config.clone());
    wait_until_indexed(&path);
    assert_index_exact(&path);
    assert_answers_exact(&server);

    // Rows on both sides of the watermark: the indexed ones above, a new tail.
    let dir = server.stop();
    config.text_index_catch_up = false;
    let server = TestServer::start_in(dir, config);
    post_tail(&server, "v", 16);
    let (upto, last) = watermark(&path);
    assert_eq!(last - upto, 16);
    assert_answers_exact(&server);
    assert_eq!(answer(&server, "q=zebra").1, base + 8 + 18 + 12);
}

#[test]
fn a_quiet_writer_indexes_new_rows_soon_after_their_commit() {
    if !sqlite_only("the text index's tail is SQLite's") {
        return;
    }
    let dir = TestDb::new();
    let config = preloaded(&dir);
    let server = TestServer::start_in(dir, config);
    let path = server.db_path();
    post_tail(&server, "w", 12);
    // Found whichever side of the watermark it is on by now…
    assert_answers_exact(&server);
    // …and indexed once the queue has been quiet a moment.
    wait_until_indexed(&path);
    assert_index_exact(&path);
    assert_answers_exact(&server);
}

#[test]
fn purging_tail_rows_and_indexed_rows_keeps_the_index_exact() {
    if !sqlite_only("the text index's tail is SQLite's") {
        return;
    }
    let dir = TestDb::new();
    let mut config = preloaded(&dir);
    // Keeps a few preloaded (indexed) rows and part of the tail; the purge goes through both.
    config.retain_messages = 30;
    config.text_index_catch_up = false;
    let server = TestServer::start_in(dir, config.clone());
    let path = server.db_path();
    post_tail(&server, "x", 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/stats").json()["total_messages"] != 30 {
        assert!(Instant::now() < deadline, "not purged");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (upto, last) = watermark(&path);
    assert_eq!((upto, last), (PRELOADED as i64, PRELOADED as i64 + 20));
    assert_index_exact(&path);
    assert_answers_exact(&server);
    // More tail rows, each pushing out an older tail row now that the indexed ones are gone.
    post_tail(&server, "y", 40);
    while server.get("/stats").json()["total_messages"] != 30 {
        assert!(Instant::now() < deadline, "not purged");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_index_exact(&path);
    assert_answers_exact(&server);
    // Indexed, then purged again: the index follows.
    let dir = server.stop();
    config.text_index_catch_up = true;
    let server = TestServer::start_in(dir, config);
    wait_until_indexed(&path);
    post_tail(&server, "z", 20);
    wait_until_indexed(&path);
    while server.get("/stats").json()["total_messages"] != 30 {
        assert!(Instant::now() < deadline, "not purged");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_index_exact(&path);
    assert_answers_exact(&server);
}

/// FTS5's query parser stops at U+0000: a needle holding one is answered by the scan, not the
/// index, so it finds exactly its rows instead of failing (it was a 500).
#[test]
fn a_needle_holding_a_nul_is_found_exactly_not_a_500() {
    let server = TestServer::start();
    for (id, text) in [
        ("n1", "x\u{0}abc"),
        ("n2", "abc"),
        ("n3", "X\u{0}ABC again"),
    ] {
        let resp = server.post_message(id, "+91001", "2025-01-05T00:00:00Z", Some(text));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let resp = server.get("/messages?q=%00abc");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["total"], 2);
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["n1", "n3"]);
}
