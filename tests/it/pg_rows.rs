//! One row PostgreSQL cannot hold never fails its batch: a message_id past the btree's row
//! limit (SQLSTATE 54000). Validation's 256-byte cap now refuses such an id before the writer
//! (a 422); the store answers it `Refused` all the same (a 422, never a 500), and the writer
//! stores a batch refused that way row by row, for whatever validation cannot foresee.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Rng, SECRET, TestDb, TestServer, message, postgres_available};

/// An id PostgreSQL cannot compress under its btree row limit (~2.7 kB): 6,000 random letters.
fn incompressible_id(seed: u64) -> String {
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let mut rng = Rng::new(seed);
    (0..6000).map(|_| *rng.pick(&alphabet)).collect()
}

#[test]
fn a_long_id_fails_alone_and_its_batch_mates_are_stored() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::new_postgres();
    let config = db.config(Some(SECRET));
    let server = TestServer::start_in(db, config);
    let pg = server.dir.postgres().expect("a PostgreSQL store");
    let mut admin = pg.client();
    // Hold the writer on its first message, so the next ones queue up and commit as one batch.
    let block = server.block_writes();
    let answers = thread::scope(|scope| {
        let server = &server;
        let first = scope.spawn(move || {
            let body = message("first", "+1", "2025-01-15T10:00:00Z", None);
            server.post_webhook(body.as_bytes()).status
        });
        let deadline = Instant::now() + Duration::from_secs(4);
        loop {
            let waiting: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name = 'hookbox'
                       AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the writer never reached the lock"
            );
            thread::sleep(Duration::from_millis(5));
        }
        let long_id = incompressible_id(1);
        let ids = [long_id.as_str(), "mate-1", "mate-2", "mate-3"];
        let mates: Vec<_> = ids
            .iter()
            .map(|id| {
                let body = message(id, "+2", "2025-01-15T10:00:01Z", Some("batch mate"));
                scope.spawn(move || server.post_webhook(body.as_bytes()))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(4);
        // The three mates wait together (the long id stops at validation).
        while server.metric("hookbox_write_queue_depth") != Some(3.0) {
            assert!(Instant::now() < deadline, "the mates never queued together");
            thread::sleep(Duration::from_millis(5));
        }
        block.release();
        let first = first.join().unwrap();
        let mates: Vec<_> = mates.into_iter().map(|h| h.join().unwrap()).collect();
        (first, mates)
    });
    let (first, mates) = answers;
    assert_eq!(first, 200);
    assert_eq!(mates[0].status, 422, "the long id: {}", mates[0].text());
    for resp in &mates[1..] {
        assert_eq!(resp.status, 200, "a batch mate: {}", resp.text());
    }
    let page = server.get("/messages?from=%2B2").json();
    assert_eq!(page["total"], 3, "{page}");
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
}

/// The store's own answer, whatever validation lets through: a row it cannot hold is `Refused`
/// (a 422 for its sender), never `Internal` (a 500), and nothing of that batch is stored.
#[test]
fn the_store_answers_a_row_past_the_index_limit_with_refused() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::new_postgres();
    let config = db.config(Some(SECRET));
    let mut store = hookbox::store::Store::open(&config.store_options()).unwrap();
    store.migrate().unwrap();
    let row = |id: &str| hookbox::message::Message {
        message_id: id.to_owned(),
        from: "+1".to_owned(),
        to: "+2".to_owned(),
        ts: "2025-01-15T10:00:00Z".to_owned(),
        ts_key: hookbox::timestamp::sort_key("2025-01-15T10:00:00Z").unwrap(),
        text: None,
    };
    let long_id = incompressible_id(2);
    let batch = [row("ok-1"), row(&long_id)];
    match store.insert_batch(&batch, "2025-01-15T10:00:00.000Z") {
        Err(hookbox::store::StoreError::Refused(why)) => {
            assert!(why.contains("54000"), "{why}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    let alone = store.insert_batch(&batch[..1], "2025-01-15T10:00:00.000Z");
    assert_eq!(alone.unwrap(), [hookbox::store::Inserted::Created]);
}
