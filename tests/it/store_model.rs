//! The store against a model: `hookbox::store::Store`, opened on the suite's store
//! (`HOOKBOX_TEST_STORE`), is driven through random batches with repeated ids, partial text
//! indexing and purges, and after each step must answer exactly as a plain in-memory model of
//! the contract does (`/stats`, every filter and needle, keyset pages, export). Its aggregate
//! rows are also recounted in the store's own SQL, behind its back, and on SQLite the text
//! index is checked to hold exactly the rows below its watermark.
//!
//! One model for both stores, so that they cannot drift apart in what they are held to. (The
//! one SQLite variant that only a private field can set, the text index used whatever the
//! needle's density, is pinned by a unit test in src/store/sqlite.rs: index answers equal scans.)

use std::collections::BTreeMap;
use std::path::Path;

use hookbox::message::Message;
use hookbox::store::{
    ExportFilter, Inserted, ListQuery, Position, Retention, SenderCount, Stats, Store,
};

use crate::support::{PgDatabase, Rng, TestDb};

/// Pieces of message text: case folds that change length (ß, İ), LIKE and FTS5 syntax (`%`,
/// `_`, `\`, `*`, `"`), and control characters PostgreSQL text cannot hold as they are.
const PIECES: &[&str] = &[
    "a", "B", "ab", "Hello", "wörld", "ÄRGER", "ß", "İ", "i", "%", "_", "\\", "*", "\"", " ", "x",
    "yZ", "100%", "a_c", "quote\"d", "\u{0}", "\u{1}", "\u{2}",
];

/// A message with id `m{id}` (some with U+0000 or U+0001 in it), one of seven senders, a
/// timestamp in January 2025 at one of three precisions, and mostly some text of `PIECES`.
pub fn random_message(rng: &mut Rng, id: usize) -> Message {
    let ts = format!(
        "2025-01-{:02}T{:02}:00:{:02}{}Z",
        rng.range(1, 28),
        rng.below(24),
        rng.below(60),
        rng.pick(&[".5", "", ".25"])
    );
    let text = (!rng.chance(8)).then(|| {
        (0..rng.below(6))
            .map(|_| *rng.pick(PIECES))
            .collect::<String>()
    });
    Message {
        message_id: format!("m{id}{}", ["", "\u{0}", "\u{1}x"][id % 3]),
        from: format!("+91{}", rng.below(7)),
        to: "+1415".to_owned(),
        ts_key: hookbox::timestamp::sort_key(&ts).unwrap(),
        ts,
        text,
    }
}

/// What the store must hold: messages by id, with their arrival numbers.
#[derive(Default)]
struct Oracle {
    rows: BTreeMap<String, (u64, Message)>,
    arrivals: u64,
}

impl Oracle {
    fn insert(&mut self, message: &Message) -> Inserted {
        if self.rows.contains_key(&message.message_id) {
            return Inserted::Duplicate;
        }
        self.arrivals += 1;
        let entry = (self.arrivals, message.clone());
        self.rows.insert(message.message_id.clone(), entry);
        Inserted::Created
    }

    /// Retention by count: the newest `keep` by arrival stay.
    fn keep_newest(&mut self, keep: usize) {
        let mut by_arrival: Vec<(u64, String)> = self
            .rows
            .values()
            .map(|(arrival, m)| (*arrival, m.message_id.clone()))
            .collect();
        by_arrival.sort();
        let excess = by_arrival.len().saturating_sub(keep);
        for (_, id) in by_arrival.into_iter().take(excess) {
            self.rows.remove(&id);
        }
    }

    /// Every row matching the query's filters (not its page), in `/messages` order.
    fn matching(&self, query: &ListQuery) -> Vec<&Message> {
        let needle = query.text.as_deref().map(hookbox::text::fold);
        let mut found: Vec<&Message> = self
            .rows
            .values()
            .map(|(_, m)| m)
            .filter(|m| query.from.as_ref().is_none_or(|from| &m.from == from))
            .filter(|m| query.since_key.as_ref().is_none_or(|key| &m.ts_key >= key))
            .filter(|m| {
                needle.as_ref().is_none_or(|needle| {
                    m.text
                        .as_deref()
                        .is_some_and(|t| hookbox::text::fold(t).contains(needle.as_str()))
                })
            })
            .collect();
        found.sort_by(|a, b| (&a.ts_key, &a.message_id).cmp(&(&b.ts_key, &b.message_id)));
        found
    }

    fn stats(&self) -> Stats {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, m) in self.rows.values() {
            *counts.entry(&m.from).or_default() += 1;
        }
        let mut top: Vec<SenderCount> = counts
            .iter()
            .map(|(from, count)| SenderCount {
                from: from.to_string(),
                count: *count,
            })
            .collect();
        top.sort_by(|a, b| b.count.cmp(&a.count).then(a.from.cmp(&b.from)));
        top.truncate(10);
        let ordered = self.matching(&ListQuery::default());
        Stats {
            total_messages: self.rows.len() as i64,
            senders_count: counts.len() as i64,
            messages_per_sender: top,
            first_message_ts: ordered.first().map(|m| m.ts.clone()),
            last_message_ts: ordered.last().map(|m| m.ts.clone()),
        }
    }
}

/// Needles for `q`: the syntax of LIKE, FTS5 and PostgreSQL's NUL escape, folds that change
/// length, and 12 random pieces of stored texts, some upper-cased.
fn needles(rng: &mut Rng, oracle: &Oracle) -> Vec<String> {
    let mut needles: Vec<String> = [
        "%",
        "_",
        "\\",
        "*",
        "\"",
        "\"\"",
        "quote\"d",
        "a_c",
        "100%",
        "ärger",
        "wÖr",
        "İ",
        "I",
        "ss",
        "\u{0}",
        "\u{1}",
        "\u{2}",
        "\u{1}\u{2}",
        "\u{1}\u{1}",
        "a\u{0}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let texts: Vec<&str> = oracle
        .rows
        .values()
        .filter_map(|(_, m)| m.text.as_deref())
        .filter(|text| !text.is_empty())
        .collect();
    for _ in 0..12 {
        if texts.is_empty() {
            break;
        }
        let chars: Vec<char> = rng.pick(&texts).chars().collect();
        let start = rng.below(chars.len());
        let len = 1 + rng.below(5.min(chars.len() - start));
        let piece: String = chars[start..start + len].iter().collect();
        needles.push(if rng.chance(2) {
            piece.to_uppercase()
        } else {
            piece
        });
    }
    needles
}

/// The aggregates recounted from the messages in the store's own SQL.
#[derive(Debug)]
struct Recount {
    /// Rows in `messages`, and what the aggregate rows say.
    messages: (i64, i64),
    /// Distinct senders in `messages`, and what the aggregate rows say.
    senders: (i64, i64),
    /// Per-sender rows whose count differs from the messages' count, and how many rows there are.
    wrong_sender_rows: i64,
    sender_rows: i64,
    /// The ten senders with the most messages, recounted (count descending, then sender).
    top: Vec<(String, i64)>,
}

impl Recount {
    fn sqlite(path: &Path) -> Recount {
        let conn = rusqlite::Connection::open(path).unwrap();
        let numbers: Vec<i64> = conn
            .query_row(
                "SELECT (SELECT count(*) FROM messages),
                        (SELECT messages FROM totals WHERE id = 1),
                        (SELECT count(DISTINCT sender) FROM messages),
                        (SELECT senders FROM totals WHERE id = 1),
                        (SELECT count(*) FROM sender_counts s WHERE n <> (
                            SELECT count(*) FROM messages m WHERE m.sender = s.sender)),
                        (SELECT count(*) FROM sender_counts)",
                [],
                |row| (0..6).map(|i| row.get(i)).collect(),
            )
            .unwrap();
        let top = conn
            .prepare(
                "SELECT sender, count(*) AS n FROM messages GROUP BY sender
                 ORDER BY n DESC, sender LIMIT 10",
            )
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        Recount::from_numbers(&numbers, top)
    }

    /// (`totals` is sharded; `sender_counts` may keep a row at 0 only inside a purge.)
    fn postgres(db: &PgDatabase) -> Recount {
        let mut client = db.client();
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM messages),
                        (SELECT coalesce(sum(messages), 0)::bigint FROM totals),
                        (SELECT count(DISTINCT sender) FROM messages),
                        (SELECT coalesce(sum(senders), 0)::bigint FROM totals),
                        (SELECT count(*) FROM sender_counts s WHERE count <> (
                            SELECT count(*) FROM messages m WHERE m.sender = s.sender)),
                        (SELECT count(*) FROM sender_counts)",
                &[],
            )
            .unwrap();
        let numbers: Vec<i64> = (0..6).map(|i| row.get(i)).collect();
        let top = client
            .query(
                "SELECT sender, count(*) AS n FROM messages GROUP BY sender
                 ORDER BY n DESC, sender COLLATE \"C\" LIMIT 10",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        Recount::from_numbers(&numbers, top)
    }

    fn from_numbers(numbers: &[i64], top: Vec<(String, i64)>) -> Recount {
        Recount {
            messages: (numbers[0], numbers[1]),
            senders: (numbers[2], numbers[3]),
            wrong_sender_rows: numbers[4],
            sender_rows: numbers[5],
            top,
        }
    }

    /// The aggregate rows agree with the rows; returns how many messages there are.
    fn assert_exact(&self) -> i64 {
        assert_eq!(
            self.messages.0, self.messages.1,
            "totals.messages: {self:?}"
        );
        assert_eq!(self.senders.0, self.senders.1, "totals.senders: {self:?}");
        assert_eq!(
            self.wrong_sender_rows, 0,
            "a sender_counts row disagrees: {self:?}"
        );
        assert_eq!(
            self.sender_rows, self.senders.0,
            "one row per sender: {self:?}"
        );
        self.messages.0
    }
}

/// PostgreSQL's aggregate rows (sharded totals, per-sender counts) agree with a recount of the
/// messages; returns how many messages there are.
pub fn assert_aggregates_recount(db: &PgDatabase) -> i64 {
    Recount::postgres(db).assert_exact()
}

/// SQLite's text index holds exactly the rows with text at or below the watermark (nothing of
/// the tail, nothing purged, nothing missing), and `unindexed` counts the whole tail at least.
fn assert_text_index_exact(path: &Path, store: &mut Store) {
    crate::text_index::assert_index_exact(path);
    let tail: i64 = rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM messages, text_index_state WHERE seq > indexed_upto",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let sqlite = store.as_sqlite().expect("an SQLite store");
    assert!(sqlite.unindexed().unwrap() >= tail as u64, "tail of {tail}");
}

/// The suite's store with the text index on or off, opened and migrated as the server does.
struct Subject {
    store: Store,
    db: TestDb,
    text_index: bool,
}

impl Subject {
    fn open(text_index: bool) -> Subject {
        let db = TestDb::new();
        let mut config = db.config(None);
        config.text_index = text_index;
        let mut store = Store::open(&config.store_options()).unwrap();
        store.migrate().unwrap();
        store.use_text_index(text_index).unwrap();
        Subject {
            store,
            db,
            text_index,
        }
    }

    fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self.db
            .postgres()
            .is_none()
            .then(|| self.db.path().join("test.db"))
    }

    /// Everything the store answers equals the model, and its own rows recount to its
    /// aggregates.
    fn check_against(&mut self, oracle: &Oracle, rng: &mut Rng) {
        let stats = self.store.stats().unwrap();
        assert_eq!(stats, oracle.stats());
        let recount = match self.db.postgres() {
            Some(pg) => Recount::postgres(pg),
            None => Recount::sqlite(&self.db.path().join("test.db")),
        };
        assert_eq!(
            (stats.total_messages, stats.senders_count),
            (recount.messages.0, recount.senders.0)
        );
        let top: Vec<(String, i64)> = stats
            .messages_per_sender
            .iter()
            .map(|s| (s.from.clone(), s.count))
            .collect();
        assert_eq!(top, recount.top);
        recount.assert_exact();
        match self.sqlite_file() {
            Some(file) if self.text_index => assert_text_index_exact(&file, &mut self.store),
            Some(_) => assert_eq!(self.store.as_sqlite().unwrap().unindexed().unwrap(), 0),
            None => {}
        }

        // Needles holding U+0000 included: FTS5 cannot take them, so SQLite scans for them.
        let needles: Vec<String> = needles(rng, oracle);
        for text in needles.into_iter().map(Some).chain([None]) {
            for from in [None, Some("+913".to_owned())] {
                for since_key in [None, Some("2025-01-15T00:00:00".to_owned())] {
                    let query = ListQuery {
                        limit: 100,
                        offset: 0,
                        after: None,
                        from: from.clone(),
                        since_key: since_key.clone(),
                        text: text.clone(),
                    };
                    self.check_list(oracle, query);
                }
            }
        }

        // Export: every row, in /messages order.
        let mut exported = Vec::new();
        self.store
            .export(&ExportFilter::default(), &mut |m| {
                exported.push(m.message_id.clone());
                Ok(())
            })
            .unwrap();
        let want: Vec<String> = oracle
            .matching(&ListQuery::default())
            .iter()
            .map(|m| m.message_id.clone())
            .collect();
        assert_eq!(exported, want);
    }

    /// The first page and total of `query`, and a keyset page from the middle, as the model
    /// has them.
    fn check_list(&mut self, oracle: &Oracle, query: ListQuery) {
        let expected = oracle.matching(&query);
        let ids_of = |page: &hookbox::store::Page| -> Vec<String> {
            page.rows.iter().map(|m| m.message_id.clone()).collect()
        };
        let want = |from: usize, count: usize| -> Vec<String> {
            expected
                .iter()
                .skip(from)
                .take(count)
                .map(|m| m.message_id.clone())
                .collect()
        };
        let page = self
            .store
            .list(&query)
            .unwrap_or_else(|e| panic!("{query:?}: {e}"));
        assert_eq!(page.total, expected.len() as i64, "{query:?}");
        assert_eq!(ids_of(&page), want(0, 100), "{query:?}");
        if expected.len() > 3 {
            let pivot = expected[2];
            let after = ListQuery {
                limit: 2,
                after: Some(Position {
                    ts_key: pivot.ts_key.clone(),
                    message_id: pivot.message_id.clone(),
                }),
                ..query
            };
            let page = self.store.list(&after).unwrap();
            assert_eq!(page.total, expected.len() as i64, "{after:?}");
            assert_eq!(ids_of(&page), want(3, 2), "{after:?}");
        }
    }
}

#[test]
fn the_store_equals_a_model_through_inserts_duplicates_partial_indexing_purges_and_searches() {
    for text_index in [true, false] {
        let mut subject = Subject::open(text_index);
        let mut rng = Rng::new(0x9E37);
        let mut oracle = Oracle::default();
        subject.check_against(&oracle, &mut rng);
        let mut next_id = 0;
        for round in 0..8 {
            let batch: Vec<Message> = (0..rng.range(1, 60))
                .map(|_| {
                    // Every fourth id is one seen before (or earlier in this very batch).
                    let id = if next_id > 0 && rng.chance(4) {
                        rng.below(next_id)
                    } else {
                        next_id += 1;
                        next_id - 1
                    };
                    random_message(&mut rng, id)
                })
                .collect();
            let expected: Vec<Inserted> = batch.iter().map(|m| oracle.insert(m)).collect();
            let now = hookbox::timestamp::now_utc();
            assert_eq!(subject.store.insert_batch(&batch, &now).unwrap(), expected);
            // Some of SQLite's tail indexed, some not: `q` reads both sides of the watermark.
            // (PostgreSQL's index has no tail: this does nothing there.)
            if text_index && round % 2 == 1 {
                if let Some(sqlite) = subject.store.as_sqlite() {
                    sqlite.index_pending(rng.below(50)).unwrap();
                }
            }
            if round % 3 == 2 {
                let keep = oracle.rows.len() * 2 / 3;
                let retention = Retention {
                    keep_messages: keep as u64,
                    keep_days: 0,
                };
                // Small batches until done, as the writer does it.
                while subject.store.purge(&retention, 7).unwrap() > 0 {}
                oracle.keep_newest(keep);
            }
            subject.check_against(&oracle, &mut rng);
        }
        let everything_but_one = Retention {
            keep_messages: 1,
            keep_days: 0,
        };
        while subject.store.purge(&everything_but_one, 100).unwrap() > 0 {}
        oracle.keep_newest(1);
        subject.check_against(&oracle, &mut rng);
        subject.store.close();
    }
}
