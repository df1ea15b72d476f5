//! Whether `q` has a text index is the server's startup decision (`HOOKBOX_TEXT_INDEX`): a CLI
//! subcommand run beside a live server never changes it (nor the schema), and a server that
//! finds its index gone all the same scans, never a 500 (issue 16).

use crate::export::hookbox_with;
use crate::support::{TestDb, TestServer, sqlite_only};

/// Whether the store has its text index, looked at behind the server's back.
fn text_index_present(db: &TestDb) -> bool {
    match db.postgres() {
        None => rusqlite::Connection::open(db.path().join("test.db"))
            .unwrap()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'messages_fts')",
                [],
                |row| row.get(0),
            )
            .unwrap(),
        Some(pg) => pg
            .client()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'messages_text_trgm')",
                &[],
            )
            .unwrap()
            .get(0),
    }
}

/// Drops the text index behind the server's back, as `HOOKBOX_TEXT_INDEX=off hookbox import`
/// did before it learned not to.
fn drop_text_index(db: &TestDb) {
    match db.postgres() {
        None => rusqlite::Connection::open(db.path().join("test.db"))
            .unwrap()
            .execute_batch(include_str!("../../sql/text_index_off.sql"))
            .unwrap(),
        Some(pg) => pg
            .client()
            .batch_execute(include_str!("../../sql/postgres/text_index_off.sql"))
            .unwrap(),
    }
}

/// `q`'s ids (in page order) and total; the answer must be a 200.
fn search(server: &TestServer, needle: &str) -> (Vec<String>, i64) {
    crate::text_index::answer(server, &format!("q={needle}"))
}

/// Stores `count` messages, every third saying "Zebra"; returns the ids that do.
fn post_some(server: &TestServer, prefix: &str, count: usize) -> Vec<String> {
    let mut zebras = Vec::new();
    for k in 0..count {
        let id = format!("{prefix}{k:03}");
        let text = if k % 3 == 0 {
            zebras.push(id.clone());
            format!("a Zebra crossing {k}")
        } else {
            format!("plain {k}")
        };
        let ts = format!("2025-01-{:02}T12:00:00Z", 1 + k % 28);
        let resp = server.post_message(&id, "+91001", &ts, Some(&text));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    zebras
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn an_import_with_the_index_off_leaves_a_live_servers_index_and_search_alone() {
    let server = TestServer::start();
    let mut zebras = post_some(&server, "s", 12);
    assert!(text_index_present(&server.dir));
    let line = r#"{"message_id":"imported","from":"+91002","to":"+1","ts":"2025-01-20T10:00:00Z","text":"zebra, imported"}"#;
    let out = hookbox_with(
        &server.dir,
        &[("HOOKBOX_TEXT_INDEX", "off")],
        &["import", "-"],
        line.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text_index_present(&server.dir),
        "the import dropped the live server's text index"
    );
    zebras.push("imported".to_owned());
    let (ids, total) = search(&server, "ZEBRA");
    assert_eq!((sorted(ids), total), (sorted(zebras.clone()), 5));
    // The server goes on storing and finding.
    zebras.extend(post_some(&server, "t", 6));
    let (ids, total) = search(&server, "zebra%20cross");
    zebras.retain(|id| id != "imported");
    assert_eq!((sorted(ids), total), (sorted(zebras), 6));
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn an_import_on_an_older_schema_refuses_and_changes_nothing() {
    if !sqlite_only("PostgreSQL's schema has one version: there is no older one to refuse") {
        return;
    }
    let server = TestServer::start();
    post_some(&server, "s", 3);
    let current = hookbox::store::Store::open(&server.config().store_options())
        .unwrap()
        .schema_version();
    server.set_schema_version(current - 1);
    let db = server.stop();
    let line = r#"{"message_id":"late","from":"+91002","to":"+1","ts":"2025-01-20T10:00:00Z"}"#;
    let out = hookbox_with(&db, &[], &["import", "-"], line.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("older than this build"), "{stderr}");
    let mut store = hookbox::store::Store::open(&db.config(None).store_options()).unwrap();
    assert_eq!(store.stored_schema_version().unwrap(), current - 1);
    assert_eq!(store.stats().unwrap().total_messages, 3);
}

#[test]
fn a_server_whose_text_index_is_dropped_behind_its_back_scans_never_a_500() {
    let server = TestServer::start();
    let mut zebras = post_some(&server, "s", 30);
    // The index path's statements are prepared and cached on the workers' connections.
    for _ in 0..4 {
        assert_eq!(search(&server, "zebra").1, zebras.len() as i64);
    }
    drop_text_index(&server.dir);
    assert!(!text_index_present(&server.dir));
    for needle in ["zebra", "ZEBRA%20CROSSING", "bra"] {
        for _ in 0..4 {
            let (ids, total) = search(&server, needle);
            assert_eq!(
                (sorted(ids), total),
                (sorted(zebras.clone()), 10),
                "{needle}"
            );
        }
    }
    // Writes go on, and what they store is found.
    zebras.extend(post_some(&server, "t", 9));
    let (ids, total) = search(&server, "zebra");
    assert_eq!((sorted(ids), total), (sorted(zebras), 13));
    assert_eq!(server.get("/health/ready").status, 200);
}
