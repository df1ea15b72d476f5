//! Helpers for the SQLite store's unit tests, and the text index's tests (the tail, the
//! watermark, searches through the index against the scan).

use super::text_index::trigram_query;
use super::write::BULK_ROWS;
use super::*;
use crate::message::Message;
use crate::store::{ListQuery, Position, Retention, SqliteOptions};
use crate::timestamp;

/// A store on a fresh file, removed on drop.
pub(super) struct TestStore {
    pub(super) store: Sqlite,
    pub(super) dir: std::path::PathBuf,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The settings a server gives a store on `path` by default.
pub(super) fn test_options(path: std::path::PathBuf) -> SqliteOptions {
    SqliteOptions {
        path,
        busy_timeout: std::time::Duration::from_secs(5),
        durability: crate::store::Durability::Full,
        max_db_mib: 0,
        query_timeout: std::time::Duration::from_secs(2),
        index_upkeep: true,
    }
}

/// A store on a fresh file, migrated and with the text index, as a server starts it.
pub(super) fn test_store(name: &str, adjust: impl FnOnce(&mut SqliteOptions)) -> TestStore {
    let dir = std::env::temp_dir().join(format!("hookbox-sqlite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut options = test_options(dir.join("t.db"));
    adjust(&mut options);
    let mut store = Sqlite::open(&options).unwrap();
    store.migrate(0).unwrap();
    store.use_text_index(true).unwrap();
    TestStore { store, dir }
}

/// xorshift64*: reproducible randomness without a dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "a", "B", "ab", "Hello", "wörld", "ÄRGER", "ß", "İ", "i", "%", "_", "\\", "*", "\"", " ", "x",
    "yZ", "100%", "a_c", "quote\"d",
];

pub(super) fn message(rng: &mut Rng, id: usize) -> Message {
    let ts = format!(
        "2025-01-{:02}T{:02}:00:{:02}{}Z",
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        [".5", "", ".25"][rng.below(3)]
    );
    let text = (rng.below(8) != 0).then(|| {
        (0..rng.below(6))
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect::<String>()
    });
    Message {
        message_id: format!("m{id}"),
        from: format!("+91{}", rng.below(7)),
        to: "+1415".to_owned(),
        ts_key: timestamp::sort_key(&ts).unwrap(),
        ts,
        text,
    }
}

#[test]
fn trigram_queries_cover_the_needle() {
    // (On tiny stores every needle is dense; `dense_share = 0` keeps the index in use.)
    assert_eq!(trigram_query("abc"), r#""abc""#);
    assert_eq!(trigram_query("abcd"), r#""abc" AND "bcd""#);
    assert_eq!(trigram_query("abcdef"), r#""abc" AND "def""#);
    assert_eq!(trigram_query("abcdefg"), r#""abc" AND "def" AND "efg""#);
    assert_eq!(trigram_query("a\"bü"), r#""a""b" AND """bü""#);

    // A row with every trigram of the needle but not the needle: a candidate the exact
    // check turns away.
    let mut test = test_store("trigrams", |_| {});
    test.store.dense_share = 0;
    let mut rng = Rng(5);
    let mut decoy = message(&mut rng, 1);
    decoy.text = Some("ABC then BCD".to_owned());
    test.store
        .insert_batch(&[decoy], "2025-01-01T00:00:00.000Z")
        .unwrap();
    let mut total = |needle: &str| {
        let query = ListQuery {
            limit: 10,
            text: Some(needle.to_owned()),
            ..ListQuery::default()
        };
        test.store.list(&query).unwrap().total
    };
    assert_eq!((total("abcd"), total("abc t"), total("bcd")), (0, 1, 1));
}

/// `q` through the text index answers as a scan does, on both sides of the watermark and
/// after purges. tests/it/store_model.rs holds both stores to a model, but only with the
/// default `dense_share`, under which a small store's needles are mostly dense and scanned:
/// this pins the index path (`dense_share = 0`) to the scan (the index off) on equal rows.
#[test]
fn searches_through_the_text_index_answer_as_a_scan_does() {
    let mut test = test_store("index-scan", |_| {});
    let store = &mut test.store;
    store.dense_share = 0;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut found = 0;
    for round in 0..6 {
        let batch: Vec<_> = (0..40).map(|i| message(&mut rng, round * 40 + i)).collect();
        store.insert_batch(&batch, &timestamp::now_utc()).unwrap();
        store.index_pending(rng.below(60)).unwrap();
        if round % 3 == 2 {
            let keep = Retention {
                keep_messages: 60,
                keep_days: 0,
            };
            while store.purge(&keep, 7).unwrap() > 0 {}
        }
        assert_index_exact(store);
        let texts: Vec<Vec<char>> = batch
            .iter()
            .filter_map(|m| Some(m.text.as_deref()?.chars().collect::<Vec<_>>()))
            .filter(|chars| chars.len() >= 3)
            .collect();
        let mut needles = vec!["quote\"d".to_owned(), "\"\"\"".to_owned(), "wÖr".to_owned()];
        needles.extend((0..10).map(|_| {
            let chars = &texts[rng.below(texts.len())];
            let start = rng.below(chars.len() - 2);
            let end = (start + 3 + rng.below(3)).min(chars.len());
            chars[start..end].iter().collect::<String>().to_uppercase()
        }));
        for needle in needles {
            for (from, since_key) in [(None, None), (Some("+913"), Some("2025-01-15T00:00:00"))] {
                let mut query = ListQuery {
                    limit: 100,
                    from: from.map(str::to_owned),
                    since_key: since_key.map(str::to_owned),
                    text: Some(needle.clone()),
                    ..ListQuery::default()
                };
                let indexed = store.list(&query).unwrap();
                store.text_index = false;
                let scanned = store.list(&query).unwrap();
                store.text_index = true;
                assert_eq!(indexed, scanned, "{query:?}");
                found += indexed.total;
                // And a keyset page from the middle.
                if let Some(pivot) = scanned.rows.get(1) {
                    query.limit = 2;
                    query.after = Some(Position {
                        ts_key: timestamp::sort_key(&pivot.ts).unwrap(),
                        message_id: pivot.message_id.clone(),
                    });
                    let indexed = store.list(&query).unwrap();
                    store.text_index = false;
                    assert_eq!(indexed, store.list(&query).unwrap(), "{query:?}");
                    store.text_index = true;
                }
            }
        }
    }
    assert!(
        found > 0,
        "no needle found anything: the comparison proved nothing"
    );
}

/// The rowids in the text index are exactly the rows with text at or below the watermark:
/// nothing of the tail, nothing purged, nothing missing.
pub(super) fn assert_index_exact(store: &Sqlite) {
    let ids = |sql: &str| -> Vec<i64> {
        store
            .conn
            .prepare(sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert_eq!(
        ids("SELECT id FROM messages_fts_docsize ORDER BY id"),
        ids("SELECT seq FROM messages, text_index_state
                 WHERE seq <= indexed_upto AND text IS NOT NULL ORDER BY seq")
    );
}

pub(super) fn search(store: &mut Sqlite, needle: &str) -> (Vec<String>, i64) {
    let page = store
        .list(&ListQuery {
            limit: 100,
            text: Some(needle.to_owned()),
            ..ListQuery::default()
        })
        .unwrap();
    let ids = page.rows.into_iter().map(|m| m.message_id).collect();
    (ids, page.total)
}

#[test]
fn new_rows_wait_in_the_tail_until_indexed_and_q_finds_them_on_both_sides() {
    let mut test = test_store("tail", |_| {});
    let store = &mut test.store;
    store.dense_share = 0;
    assert_eq!(store.unindexed().unwrap(), 0);
    let mut rng = Rng(11);
    let with_text = |rng: &mut Rng, id: usize, text: Option<&str>| Message {
        text: text.map(str::to_owned),
        ..message(rng, id)
    };
    for (id, text) in [(0, Some("Zebra one")), (1, None), (2, Some("no match"))] {
        store
            .insert_batch(&[with_text(&mut rng, id, text)], &timestamp::now_utc())
            .unwrap();
    }
    // Nothing indexed yet: found from the tail alone.
    assert_eq!(store.unindexed().unwrap(), 3);
    assert_eq!(search(store, "ZEBRA"), (vec!["m0".to_owned()], 1));
    // Two rows indexed (the one without text only moves the watermark), one still waits.
    assert_eq!(store.index_pending(2).unwrap(), 2);
    assert_eq!(store.unindexed().unwrap(), 1);
    assert_index_exact(store);
    store
        .insert_batch(
            &[with_text(&mut rng, 3, Some("zebra two"))],
            &timestamp::now_utc(),
        )
        .unwrap();
    let (mut ids, total) = search(store, "zEbRa");
    ids.sort();
    assert_eq!((ids, total), (vec!["m0".to_owned(), "m3".to_owned()], 2));
    assert_eq!(store.index_pending(100).unwrap(), 2);
    assert_eq!(store.index_pending(100).unwrap(), 0);
    assert_index_exact(store);
    assert_eq!(search(store, "zebra").1, 2);

    // A batch the size of an import's indexes itself, and the tail before it.
    store
        .insert_batch(
            &[with_text(&mut rng, 4, Some("zebra three"))],
            &timestamp::now_utc(),
        )
        .unwrap();
    let bulk: Vec<_> = (5..5 + BULK_ROWS)
        .map(|id| with_text(&mut rng, id, Some("bulk zebra")))
        .collect();
    store.insert_batch(&bulk, &timestamp::now_utc()).unwrap();
    assert_eq!(store.unindexed().unwrap(), 0);
    assert_index_exact(store);
    assert_eq!(search(store, "zebra").1, 3 + BULK_ROWS as i64);
}

#[test]
fn a_store_emptied_by_retention_numbers_rows_from_1_again_and_they_are_not_taken_as_indexed() {
    let mut test = test_store("emptied", |_| {});
    let store = &mut test.store;
    store.dense_share = 0;
    let mut rng = Rng(12);
    let old: Vec<_> = (0..5).map(|i| message(&mut rng, i)).collect();
    store
        .insert_batch(&old, "2001-01-01T00:00:00.000Z")
        .unwrap();
    assert_eq!(store.index_pending(100).unwrap(), 5);
    let days = Retention {
        keep_messages: 0,
        keep_days: 1,
    };
    assert_eq!(store.purge(&days, 100).unwrap(), 5);
    let fresh = Message {
        text: Some("zebra".to_owned()),
        ..message(&mut rng, 9)
    };
    store.insert_batch(&[fresh], &timestamp::now_utc()).unwrap();
    let seq: i64 = store
        .conn
        .query_row("SELECT seq FROM messages", [], |row| row.get(0))
        .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(search(store, "zebra"), (vec!["m9".to_owned()], 1));
    assert_eq!(store.unindexed().unwrap(), 1);
}

/// Purges delete tail rows from the text index too (its trigger knows nothing of the
/// watermark): FTS5 must take deleting a rowid it does not hold as a no-op, on every
/// segment layout, and keep taking that row later.
#[test]
fn deleting_an_absent_rowid_from_the_text_index_changes_nothing() {
    let test = test_store("absent", |_| {});
    let conn = &test.store.conn;
    let count = || -> i64 {
        conn.query_row(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"hel\"'",
            [],
            |row| row.get(0),
        )
        .unwrap()
    };
    let check = || {
        conn.execute(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 0)",
            [],
        )
        .unwrap();
    };
    // One segment per statement: several segments, even rowids only.
    for rowid in 0..100_i64 {
        conn.execute(
            "INSERT INTO messages_fts (rowid, text) VALUES (?1, 'hello ' || ?1)",
            [rowid * 2],
        )
        .unwrap();
    }
    let pages = || -> i64 {
        conn.query_row("SELECT count(*) FROM messages_fts_data", [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    let before = pages();
    for rowid in 0..100_i64 {
        let deleted = conn
            .execute("DELETE FROM messages_fts WHERE rowid = ?1", [rowid * 2 + 1])
            .unwrap();
        assert_eq!(deleted, 0);
    }
    // Nothing written (no tombstones), nothing lost.
    assert_eq!((count(), pages()), (100, before));
    check();
    // The absent rows may come later, and go again twice.
    for rowid in 0..100_i64 {
        conn.execute(
            "INSERT INTO messages_fts (rowid, text) VALUES (?1, 'hello odd')",
            [rowid * 2 + 1],
        )
        .unwrap();
    }
    assert_eq!(count(), 200);
    check();
    for rowid in 0..200_i64 {
        let delete = "DELETE FROM messages_fts WHERE rowid = ?1";
        assert_eq!(conn.execute(delete, [rowid]).unwrap(), 1);
        assert_eq!(conn.execute(delete, [rowid]).unwrap(), 0);
    }
    assert_eq!(count(), 0);
    check();
}

/// The upkeep policy: a short tail waits for a quiet writer and is left alone while a message
/// waits; past `TAIL_BOUND` a commit is followed by at most `BUSY_CHUNKS` chunks while messages
/// wait; a quiet writer takes all of it.
#[test]
fn upkeep_indexes_the_tail_when_quiet_and_stops_while_a_message_waits() {
    use super::text_index::INDEX_WHEN_QUIET_FOR;
    use crate::store::Moment;
    let mut test = test_store("upkeep", |_| {});
    let store = &mut test.store;
    let mut rng = Rng(21);
    let now = timestamp::now_utc();
    let batch: Vec<_> = (0..30).map(|i| message(&mut rng, i)).collect();
    store.insert_batch(&batch, &now).unwrap();
    let quiet = Some(INDEX_WHEN_QUIET_FOR);
    assert_eq!(store.maintain(Moment::AfterCommit, &|| false), quiet);
    assert_eq!(store.maintain(Moment::Idle, &|| true), quiet);
    assert_eq!(store.unindexed().unwrap(), 30);
    assert_eq!(store.maintain(Moment::Idle, &|| false), None);
    assert_eq!(store.unindexed().unwrap(), 0);
    assert_index_exact(store);

    // Well past the bound (in batches too small to index themselves): while messages wait, two
    // chunks after a commit, though the tail is still past the bound; then down to the bound.
    for round in 0..6 {
        let batch: Vec<_> = (0..900)
            .map(|i| message(&mut rng, 1000 + round * 900 + i))
            .collect();
        store.insert_batch(&batch, &now).unwrap();
    }
    assert_eq!(store.unindexed().unwrap(), 5400);
    assert_eq!(store.maintain(Moment::AfterCommit, &|| true), quiet);
    assert_eq!(store.unindexed().unwrap(), 5400 - 2 * 512);
    assert_index_exact(store);
    assert_eq!(store.maintain(Moment::AfterCommit, &|| true), quiet);
    assert_eq!(store.unindexed().unwrap(), 5400 - 3 * 512);
    assert_eq!(store.maintain(Moment::Idle, &|| false), None);
    assert_eq!(store.unindexed().unwrap(), 0);
    assert_index_exact(store);
}

#[test]
fn without_index_upkeep_rows_stay_in_the_tail() {
    use crate::store::Moment;
    let mut test = test_store("no-upkeep", |options| options.index_upkeep = false);
    let store = &mut test.store;
    let mut rng = Rng(22);
    let batch: Vec<_> = (0..10).map(|i| message(&mut rng, i)).collect();
    store.insert_batch(&batch, &timestamp::now_utc()).unwrap();
    assert_eq!(store.maintain(Moment::Idle, &|| false), None);
    assert_eq!(store.unindexed().unwrap(), 10);
}
