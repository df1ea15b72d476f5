//! In-place migration: a database written by schema 1 (the previous release) is upgraded at
//! startup, keeping every row and its arrival order, with the aggregates and the text index
//! backfilled from the rows.

use serde_json::json;

use crate::support::{TempDir, TestServer};

/// A schema-1 database as the previous release left it: `sql/001_init.sql` and rows.
fn schema_one_database(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join("test.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(include_str!("../../sql/001_init.sql"))
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    let rows = [
        (
            "m3",
            "+911",
            "2025-01-15T10:00:00.5Z",
            "2025-01-15T10:00:00.5",
            Some("Grüße aus KÖLN"),
        ),
        (
            "m1",
            "+912",
            "2025-01-10T09:00:00Z",
            "2025-01-10T09:00:00",
            Some("100% literal_text"),
        ),
        (
            "m2",
            "+911",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00",
            None,
        ),
        (
            "m0",
            "+911",
            "2025-01-20T00:00:00Z",
            "2025-01-20T00:00:00",
            Some("ab"),
        ),
    ];
    for (id, from, ts, ts_key, text) in rows {
        conn.execute(
            "INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, received_at)
             VALUES (?1, ?2, '+14155550100', ?3, ?4, ?5, '2025-02-01T00:00:00.000Z')",
            rusqlite::params![id, from, ts, ts_key, text],
        )
        .unwrap();
    }
    path
}

#[test]
fn a_schema_one_database_is_upgraded_in_place_with_aggregates_and_text_index_backfilled() {
    let dir = TempDir::new();
    let path = schema_one_database(&dir);
    let config = hookbox::Config::for_database(&path, Some(crate::support::SECRET));
    let server = TestServer::start_in(dir, config);
    assert_eq!(server.get("/health/ready").status, 200);

    assert_eq!(
        server.get("/stats").json(),
        json!({
            "total_messages": 4,
            "senders_count": 2,
            "messages_per_sender": [{"from": "+911", "count": 3}, {"from": "+912", "count": 1}],
            "first_message_ts": "2025-01-10T09:00:00Z",
            "last_message_ts": "2025-01-20T00:00:00Z",
        })
    );
    let ids = |target: &str| {
        let body = server.get(target).json();
        let ids: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_owned())
            .collect();
        (ids, body["total"].as_i64().unwrap())
    };
    assert_eq!(
        ids("/messages"),
        (vec!["m1".into(), "m2".into(), "m3".into(), "m0".into()], 4)
    );
    // Case-insensitive and literal (on a store this small every needle is served by a scan; the
    // index's contents are checked below).
    assert_eq!(ids("/messages?q=k%C3%B6ln"), (vec!["m3".into()], 1));
    assert_eq!(ids("/messages?q=GR%C3%9C%C3%9FE"), (vec!["m3".into()], 1));
    assert_eq!(ids("/messages?q=%25%20literal_"), (vec!["m1".into()], 1));
    assert_eq!(ids("/messages?q=ab"), (vec!["m0".into()], 1));
    assert_eq!(ids("/messages?from=%2B911&q=E%20A"), (vec!["m3".into()], 1));

    // New rows land after the old ones in arrival order, and the aggregates move with them.
    assert_eq!(
        server
            .post_message("m4", "+913", "2025-01-01T00:00:00Z", Some("köln again"))
            .status,
        200
    );
    assert_eq!(
        server
            .post_message("m1", "+913", "2025-01-01T00:00:00Z", None)
            .status,
        200
    );
    assert_eq!(
        ids("/messages?q=K%C3%96LN"),
        (vec!["m4".into(), "m3".into()], 2)
    );
    assert_eq!(server.get("/stats").json()["senders_count"], 3);
    let dir = server.stop();
    let conn = rusqlite::Connection::open(dir.path().join("test.db")).unwrap();
    let arrival: Vec<String> = conn
        .prepare("SELECT message_id FROM messages ORDER BY seq")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(arrival, ["m3", "m1", "m2", "m0", "m4"]);
    // The text index was filled from the old rows (folded) and took the new one.
    let indexed: Vec<i64> = conn
        .prepare("SELECT rowid FROM messages_fts WHERE messages_fts MATCH '\"köl\"' ORDER BY rowid")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexed, [1, 5]);
    // Every row counts as indexed (the writer indexed the last one by shutdown at the latest).
    let upto: i64 = conn
        .query_row("SELECT indexed_upto FROM text_index_state", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(upto, 5);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, hookbox::store::sqlite::SCHEMA_VERSION);
}

#[test]
fn the_text_index_can_be_turned_off_and_on_again_without_changing_answers() {
    let dir = TempDir::new();
    let path = schema_one_database(&dir);
    let mut config = hookbox::Config::for_database(&path, Some(crate::support::SECRET));
    config.text_index = false;
    let server = TestServer::start_in(dir, config.clone());
    assert_eq!(server.get("/messages?q=k%C3%B6ln").json()["total"], 1);
    // Stored while the index is off: the rebuild must pick it up.
    assert_eq!(
        server
            .post_message("m9", "+913", "2025-01-01T00:00:00Z", Some("KÖLN"))
            .status,
        200
    );
    let dir = server.stop();
    let has_index = |path: &std::path::Path| -> bool {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'messages_fts')",
                [],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert!(!has_index(&path));
    config.text_index = true;
    let server = TestServer::start_in(dir, config);
    assert!(has_index(&path));
    assert_eq!(server.get("/messages?q=k%C3%B6ln").json()["total"], 2);
}

/// Retention applies without a single write: rows that aged past `HOOKBOX_RETAIN_DAYS` while
/// hookbox was stopped go at startup (and an idle writer purges on a timer).
#[test]
fn retention_by_days_purges_at_startup_without_any_write() {
    let dir = TempDir::new();
    // Its four rows arrived on 2025-02-01, long before "30 days ago".
    let path = schema_one_database(&dir);
    let mut config = hookbox::Config::for_database(&path, Some(crate::support::SECRET));
    config.retain_days = 30;
    let server = TestServer::start_in(dir, config);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.get("/stats").json()["total_messages"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not purged: {}",
            server.get("/stats").json()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.metric("hookbox_purged_messages_total"), Some(4.0));
    assert_eq!(server.get("/messages").json()["total"], 0);
}
