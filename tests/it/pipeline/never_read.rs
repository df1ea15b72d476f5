//! Clients that never read their answers lose their own connections at the write deadline;
//! answers they leave unread count against a budget for reads.

use std::thread;
use std::time::{Duration, Instant};

use hookbox::config::Durability;

use super::{
    Bounded, body_of, metric_on, metric_reaches, metric_settles, metric_until, request,
    signed_webhook, stored_total,
};
use crate::support::{BOUND, Conn, message};

/// How long the never-readers' attack may take to land: answering them until their buffers fill
/// takes ~100 reads of ~400 KB, seconds on a loaded box running a debug build.
const RAMP: Duration = Duration::from_secs(30);

/// Answers to `GET /messages` counted so far (each is counted before its connection writes it).
const READS_ANSWERED: &str = r#"http_requests_total{path="/messages",status="200"}"#;

/// Clients pipelining big reads and never reading the answers lose their own connections after
/// about the write deadline; everyone else keeps being served promptly.
#[test]
fn never_reading_clients_lose_their_connections_and_nobody_else_notices() {
    let write_deadline = Duration::from_secs(2);
    let server = Bounded::start(|config| {
        config.workers = 2;
        config.write_timeout = write_deadline;
        config.durability = Durability::Normal;
    });
    // 300 messages of ~4,000 characters: every `limit=100` page is ~400 KB.
    let text = "e".repeat(4000);
    let seeders: Vec<_> = (0..4)
        .map(|t| {
            let addr = server.addr;
            let text = text.clone();
            thread::spawn(move || {
                let mut conn = Conn::open(addr);
                for i in 0..75 {
                    let id = format!("seed-{t}-{i}");
                    let body = message(&id, "+1", "2025-01-15T10:00:00Z", Some(&text));
                    conn.send(&signed_webhook(body.as_bytes(), "seed"));
                    let resp = conn.next(BOUND).resp("seeding");
                    assert_eq!(resp.status, 200, "{}", resp.text());
                }
            })
        })
        .collect();
    for seeder in seeders {
        seeder.join().expect("seeding");
    }
    assert_eq!(stored_total(server.addr), 300);

    let mut reads = Vec::new();
    for _ in 0..100 {
        reads.extend(request("GET", "/messages?limit=100", &[], b""));
    }
    let attacked = Instant::now();
    let mut never_readers: Vec<Conn> = (0..4)
        .map(|_| {
            let mut conn = Conn::open(server.addr);
            assert!(conn.send(&reads));
            conn
        })
        .collect();
    // The attack has landed once the never-readers' reads were answered until their clients'
    // buffers filled: the count of answered reads has grown (four answers, ~1.6 MB, a
    // connection on top of the one read before) and then holds still, every connection thread
    // of theirs blocked on a write (for a second: longer than one of their reads takes, so a
    // read still being run does not pass for a stall).
    let answered = metric_until(server.addr, READS_ANSWERED, RAMP, |n| n >= 17.0);
    assert!(
        answered.is_some_and(|n| n >= 17.0),
        "the never-readers' reads were not being answered: {answered:?}"
    );
    let settled = metric_settles(server.addr, READS_ANSWERED, Duration::from_secs(1), RAMP);
    assert!(
        settled.is_some(),
        "the never-readers were still being answered {RAMP:?} later"
    );
    let stalled = Instant::now();

    let mut slow = Vec::new();
    let mut honest = Conn::open(server.addr);
    for i in 0..10 {
        let started = Instant::now();
        let id = format!("honest-{i}");
        honest.send(&signed_webhook(&body_of(&id), &id));
        let webhook = honest.next(Duration::from_secs(2));
        let took_webhook = started.elapsed();
        let started = Instant::now();
        honest.send(&request("GET", "/messages?limit=5", &[], b""));
        let read = honest.next(Duration::from_secs(2));
        let took_read = started.elapsed();
        assert_eq!(webhook.status(), Some(200), "{id}: {webhook:?}");
        assert_eq!(read.status(), Some(200), "GET after {id}: {read:?}");
        for (what, took) in [("webhook", took_webhook), ("GET", took_read)] {
            if took > Duration::from_millis(500) {
                slow.push(format!("{what} {i}: {took:?}"));
            }
        }
    }
    assert!(
        slow.is_empty(),
        "honest requests waited behind never-readers: {slow:?}"
    );

    // Each never-reader is closed about the write deadline after its writes stalled. Counted
    // before the test reads from them: reading would let the server write again.
    let closed = metric_reaches(
        server.addr,
        r#"hookbox_connections_closed_total{reason="write_timeout"}"#,
        4.0,
        write_deadline + BOUND,
    );
    assert_eq!(
        closed,
        Some(4.0),
        "write_timeout closes counted {:?} after the never-readers stalled (write deadline {write_deadline:?})",
        stalled.elapsed()
    );
    assert!(
        stalled.elapsed() < write_deadline + Duration::from_secs(2),
        "the never-readers were closed {:?} after they stalled (write deadline {write_deadline:?})",
        stalled.elapsed()
    );
    for (i, conn) in never_readers.iter_mut().enumerate() {
        assert!(
            conn.closed_within(Duration::from_secs(2)),
            "never-reader {i} still open {:?} after its close was counted",
            attacked.elapsed()
        );
    }
}

/// Answers held for clients that do not read count against `HOOKBOX_MAX_HELD_ANSWERS_MIB`: past
/// it, reads are refused with 503 + `Retry-After` (webhooks and probes never are), and once the
/// never-reader is gone, reads are served again.
#[test]
fn reads_are_refused_while_unread_answers_are_held_over_the_budget() {
    // Long enough that the answer held for the never-reader is there for the whole wait below,
    // however slowly the box runs: the test does not race the write deadline.
    let write_deadline = Duration::from_secs(20);
    let server = Bounded::start(|config| {
        config.write_timeout = write_deadline;
        config.durability = Durability::Normal;
        config.max_held_answer_bytes = 0;
    });
    let text = "e".repeat(4000);
    let mut seeder = Conn::open(server.addr);
    for i in 0..100 {
        let id = format!("seed-{i}");
        let body = message(&id, "+1", "2025-01-15T10:00:00Z", Some(&text));
        seeder.send(&signed_webhook(body.as_bytes(), "seed"));
        assert_eq!(seeder.next(BOUND).resp("seeding").status, 200);
    }
    // ~400 KB answers, pipelined and never read: the kernel's buffers fill, then the connection
    // thread holds the next answer until its write deadline.
    let reads: Vec<u8> = (0..40)
        .flat_map(|_| request("GET", "/messages?limit=100", &[], b""))
        .collect();
    let mut never_reader = Conn::open(server.addr);
    assert!(never_reader.send(&reads));

    let mut honest = Conn::open(server.addr);
    let refused_at = Instant::now();
    let refused = loop {
        honest.send(&request("GET", "/messages?limit=1", &[], b""));
        let resp = honest.next(BOUND).resp("honest read");
        if resp.status == 503 || refused_at.elapsed() > 2 * BOUND {
            break resp;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    honest.send(&request("GET", "/health/live", &[], b""));
    assert_eq!(honest.next(BOUND).status(), Some(200));
    honest.send(&signed_webhook(&body_of("during"), "during"));
    assert_eq!(
        honest.next(BOUND).status(),
        Some(200),
        "webhooks are never refused for it"
    );
    let shed = metric_on(&mut honest, r#"hookbox_shed_total{queue="answers"}"#);
    assert!(shed.is_some_and(|n| n >= 1.0), "counted: {shed:?}");

    // Once their connection is gone (closed with answers unread: a reset, so the blocked write
    // fails at once, long before its deadline), reads are served again.
    drop(never_reader);
    let served_at = Instant::now();
    loop {
        honest.send(&request("GET", "/messages?limit=1", &[], b""));
        let status = honest.next(BOUND).status();
        if status == Some(200) {
            break;
        }
        assert!(
            served_at.elapsed() < BOUND,
            "reads still refused {:?} after the never-reader left: {status:?}",
            served_at.elapsed()
        );
        thread::sleep(Duration::from_millis(50));
    }
}
