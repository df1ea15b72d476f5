//! `GET /feed` on both stores: arrival order whatever the `ts`, each stored message once across
//! pages and arrivals, duplicates adding nothing, the long poll (woken by a commit, bounded by
//! `wait`, answered at shutdown, never holding a worker), retention gaps, bad tokens, and two
//! instances writing at once. `follow` runs `hookbox export --follow`.

mod follow;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use hookbox::Config;
use hookbox::message::Message;
use hookbox::store::feed::{FeedQuery, FeedStart};
use hookbox::store::{Retention, Store};
use serde_json::Value;

use crate::support::{Resp, TestDb, TestServer, message, request_bytes, try_post_webhook};

const WAITERS: &str = "hookbox_feed_waiters";

/// One page: the ids in order, `next`, and whether it says `gap`.
struct Page {
    ids: Vec<String>,
    data: Vec<Value>,
    next: String,
    gap: bool,
}

fn page(resp: &Resp) -> Page {
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|key| ["data", "next", "gap"].contains(&key.as_str())),
        "{body}"
    );
    let data = body["data"].as_array().unwrap().clone();
    Page {
        ids: data
            .iter()
            .map(|row| row["message_id"].as_str().unwrap().to_owned())
            .collect(),
        data,
        next: body["next"].as_str().unwrap().to_owned(),
        gap: body.get("gap") == Some(&Value::Bool(true)),
    }
}

fn feed(server: &TestServer, query: &str) -> Page {
    page(&server.get(&format!("/feed?{query}")))
}

fn post(server: &TestServer, id: &str, ts: &str) {
    let resp = server.post_message(id, "+911", ts, Some(id));
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// Follows `next` from `start` (a query suffix) until an empty page; returns every id seen.
fn drain(server: &TestServer, start: &str, limit: u32) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut query = start.to_owned();
    loop {
        let page = feed(server, &format!("limit={limit}{query}"));
        if page.ids.is_empty() {
            return (ids, page.next);
        }
        ids.extend(page.ids);
        query = format!("&after={}", page.next);
    }
}

/// Waits until `series` reads `value` on /metrics (a real signal: the gauge moves when a waiter
/// parks), for at most 10 s.
fn until_metric(server: &TestServer, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric(series) != Some(value) {
        assert!(Instant::now() < deadline, "{series} never reached {value}");
        thread::yield_now();
    }
}

/// Starts a long poll on its own thread; returns when it has parked.
fn long_poll(server: &TestServer, query: &str) -> thread::JoinHandle<(Resp, Instant)> {
    let before = server.metric(WAITERS).unwrap();
    let bytes = request_bytes(server.addr, "GET", &format!("/feed?{query}"), &[], b"");
    let mut stream = server.connect();
    let waiter = thread::spawn(move || {
        use std::io::Write;
        stream.write_all(&bytes).unwrap();
        let resp = crate::support::read_response(&mut stream);
        (resp, Instant::now())
    });
    until_metric(server, WAITERS, before + 1.0);
    waiter
}

#[test]
fn the_feed_is_arrival_order_whatever_the_ts_and_a_duplicate_adds_nothing() {
    let server = TestServer::start();
    let arrivals = [
        ("late", "2025-01-15T10:00:00Z"),
        ("early", "2020-01-01T00:00:00Z"),
        ("frac", "2025-01-15T09:59:59.999Z"),
        ("future", "2030-06-01T00:00:00Z"),
        ("same", "2025-01-15T10:00:00Z"),
    ];
    for (id, ts) in arrivals {
        post(&server, id, ts);
    }
    // The duplicate of an earlier id, with other content: nothing new, the first row kept.
    let resp = server.post_message("early", "+922", "2026-01-01T00:00:00Z", Some("changed"));
    assert_eq!(resp.status, 200);
    post(&server, "last", "2001-01-01T00:00:00Z");

    let all = feed(&server, "");
    let expected: Vec<&str> = arrivals.iter().map(|(id, _)| *id).chain(["last"]).collect();
    assert_eq!(all.ids, expected);
    assert!(!all.gap);
    let early = &all.data[1];
    assert_eq!(early["from"], "+911");
    assert_eq!(early["ts"], "2020-01-01T00:00:00Z");
    assert_eq!(early["text"], "early");
    // The same five keys as /messages, in its order.
    let text = server.get("/feed?limit=1").text();
    assert!(
        text.starts_with(
            r#"{"data":[{"message_id":"late","from":"+911","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"late"}],"next":""#
        ),
        "{text}"
    );

    // Paging by one visits the same rows, in the same order, each once.
    let (paged, end) = drain(&server, "", 1);
    assert_eq!(paged, expected);
    assert_eq!(
        end, all.next,
        "the last page's next is where the full read ended"
    );
    // An empty page carries the same next.
    assert_eq!(feed(&server, &format!("after={end}")).next, end);
    // `from` filters.
    let resp = server.post_message("other", "+922", "2025-01-01T00:00:00Z", None);
    assert_eq!(resp.status, 200);
    assert_eq!(feed(&server, "from=+922").ids, ["other"]);
    assert_eq!(feed(&server, "from=%2B922").ids, ["other"]);
    assert_eq!(feed(&server, &format!("after={end}")).ids, ["other"]);
}

#[test]
fn arrivals_during_paging_are_each_visited_once_and_after_now_starts_at_the_end() {
    let server = TestServer::start();
    for i in 0..5 {
        post(
            &server,
            &format!("a{i}"),
            &format!("2025-01-15T10:00:0{i}Z"),
        );
    }
    let now = feed(&server, "after=now");
    assert!(now.ids.is_empty());
    let mut seen = Vec::new();
    let mut query = String::new();
    let mut added = 0;
    loop {
        let page = feed(&server, &format!("limit=2{query}"));
        if page.ids.is_empty() {
            break;
        }
        seen.extend(page.ids);
        query = format!("&after={}", page.next);
        // Each page brings a new message, earlier by ts than everything stored.
        if added < 4 {
            post(&server, &format!("b{added}"), "2000-01-01T00:00:00Z");
            added += 1;
        }
    }
    let expected: HashSet<String> = (0..5)
        .map(|i| format!("a{i}"))
        .chain((0..4).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    // From `now`, only what arrived after it.
    let (after_now, _) = drain(&server, &format!("&after={}", now.next), 100);
    assert_eq!(after_now, ["b0", "b1", "b2", "b3"]);
}

#[test]
fn a_long_poll_is_woken_by_a_commit_and_holds_no_worker() {
    // Two workers: one reserved for the fast lane, one for reads. Three parked feeds would
    // starve /messages if waiting held a worker.
    // No watcher to fall back on: only the writer's own signal can wake them in time.
    let server = TestServer::start_with(|config| {
        config.workers = 2;
        config.feed_watch_every = Duration::from_secs(3600);
    });
    let start = feed(&server, "after=now").next;
    let waiters: Vec<_> = (0..3)
        .map(|_| long_poll(&server, &format!("after={start}&wait=30")))
        .collect();
    // (A waiter may be between two waits for a moment: the watcher's first reading wakes them.)
    until_metric(&server, WAITERS, 3.0);
    let listed = server.get("/messages");
    assert_eq!(listed.status, 200, "a read is served while feeds wait");

    let posted = Instant::now();
    post(&server, "wake", "2025-01-15T10:00:00Z");
    for waiter in waiters {
        let (resp, answered) = waiter.join().unwrap();
        let woke = page(&resp);
        assert_eq!(woke.ids, ["wake"]);
        // Woken by the commit, not by the 30 s bound (nor a watcher).
        assert!(
            answered - posted < Duration::from_secs(5),
            "{:?}",
            answered - posted
        );
    }
    assert_eq!(server.metric(WAITERS), Some(0.0));
}

#[test]
fn a_long_poll_filtered_by_sender_waits_through_other_senders() {
    let server = TestServer::start();
    let start = feed(&server, "after=now").next;
    let waiter = long_poll(&server, &format!("after={start}&wait=30&from=%2B933"));
    // Another sender's message wakes it; it finds nothing of its own and parks again.
    let resp = server.post_message("not-mine", "+922", "2025-01-15T10:00:00Z", None);
    assert_eq!(resp.status, 200);
    let resp = server.post_message("mine", "+933", "2025-01-15T10:00:00Z", None);
    assert_eq!(resp.status, 200);
    let (resp, _) = waiter.join().unwrap();
    assert_eq!(page(&resp).ids, ["mine"]);
}

#[test]
fn the_wait_is_bounded_and_the_empty_page_keeps_its_next() {
    let server = TestServer::start();
    post(&server, "m1", "2025-01-15T10:00:00Z");
    let end = feed(&server, "").next;
    let started = Instant::now();
    let waited = feed(&server, &format!("after={end}&wait=1"));
    let took = started.elapsed();
    assert!(waited.ids.is_empty());
    assert_eq!(waited.next, end);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    for bad in ["wait=61", "wait=-1", "wait=x", "limit=0", "limit=1001"] {
        let resp = server.get(&format!("/feed?{bad}"));
        assert_eq!(resp.status, 422, "{bad}");
        let name = bad.split('=').next().unwrap();
        assert_eq!(
            resp.json()["detail"][0]["loc"],
            serde_json::json!(["query", name])
        );
    }
    assert_eq!(feed(&server, "limit=1000&wait=0").ids, ["m1"]);
}

#[test]
fn shutdown_answers_waiting_feeds_at_once() {
    let server = TestServer::start_with(|config| config.shutdown_grace = Duration::from_secs(30));
    let start = feed(&server, "after=now").next;
    let waiter = long_poll(&server, &format!("after={start}&wait=60"));
    let stopping = Instant::now();
    server.stop();
    let (resp, answered) = waiter.join().unwrap();
    let empty = page(&resp);
    assert!(empty.ids.is_empty());
    assert_eq!(empty.next, start);
    assert!(
        answered - stopping < Duration::from_secs(5),
        "{:?}",
        answered - stopping
    );
}

#[test]
fn bad_tokens_are_422_on_query_after() {
    let server = TestServer::start();
    post(&server, "m1", "2025-01-15T10:00:00Z");
    let good = feed(&server, "").next;
    let other = TestServer::start();
    let foreign = feed(&other, "").next;
    let garbled = good.replacen('.', ".9", 1);
    for token in [
        garbled.as_str(),
        &good[..good.len() - 1],
        foreign.as_str(),
        "0",
        "",
        "NOW",
    ] {
        let resp = server.get(&format!("/feed?after={token}"));
        assert_eq!(resp.status, 422, "{token}: {}", resp.text());
        let problem = &resp.json()["detail"][0];
        assert_eq!(
            problem["loc"],
            serde_json::json!(["query", "after"]),
            "{token}"
        );
    }
    assert_eq!(server.get(&format!("/feed?after={good}")).status, 200);
    assert_eq!(server.send("POST", "/feed", &[], b"").status, 405);
}

#[test]
fn a_position_retention_purged_gives_a_gap_then_continues() {
    let server = TestServer::start_with(|config| config.retain_messages = 2);
    let start = feed(&server, "after=now").next;
    for i in 0..5 {
        post(&server, &format!("m{i}"), "2025-01-15T10:00:00Z");
    }
    // The writer purges after answering; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/stats").json()["total_messages"] != 2 {
        assert!(Instant::now() < deadline, "retention never ran");
        thread::yield_now();
    }
    let gapped = feed(&server, &format!("after={start}"));
    assert_eq!(gapped.ids, ["m3", "m4"]);
    assert!(gapped.gap);
    let after = feed(&server, &format!("after={}", gapped.next));
    assert!(after.ids.is_empty() && !after.gap);
    // From the oldest is not a gap: nothing was promised before it.
    assert!(!feed(&server, "").gap);
}

fn stored(id: &str) -> Message {
    hookbox::message::parse(message(id, "+911", "2025-01-15T10:00:00Z", None).as_bytes())
        .result
        .unwrap()
}

/// Retention can empty the store (SQLite then numbers its next row 1 again): a position from
/// before must still see every later row, with a gap.
#[test]
fn positions_keep_growing_after_retention_empties_the_store() {
    let db = TestDb::new();
    let mut store = Store::open(&db.config(None).store_options()).unwrap();
    store.migrate().unwrap();
    let query = |start| FeedQuery {
        start,
        limit: 100,
        from: None,
    };
    store
        .insert_batch(
            &[stored("old1"), stored("old2")],
            "2001-01-01T00:00:00.000Z",
        )
        .unwrap();
    let before = store.feed(&query(FeedStart::Oldest)).unwrap();
    assert_eq!(before.rows.len(), 2);
    let days = Retention {
        keep_messages: 0,
        keep_days: 1,
    };
    assert_eq!(store.purge(&days, 100).unwrap(), 2);
    let now = hookbox::timestamp::now_utc();
    store.insert_batch(&[stored("new1")], &now).unwrap();
    let after = store.feed(&query(FeedStart::After(before.next))).unwrap();
    let ids: Vec<&str> = after
        .rows
        .iter()
        .map(|row| row.message_id.as_str())
        .collect();
    assert_eq!(ids, ["new1"]);
    assert!(after.next > before.next);
    assert!(!after.gap, "nothing after that position was purged");
    // A position before the purge reports it.
    let from_start = store.feed(&query(FeedStart::After(0))).unwrap();
    assert!(from_start.gap);
    assert_eq!(from_start.rows.len(), 1);
}

/// Two instances (PostgreSQL: one database; SQLite: one file) take webhooks from many clients at
/// once while a consumer follows the feed: it sees every acknowledged id, each exactly once.
#[test]
fn two_instances_writing_at_once_a_follower_sees_every_acknowledged_id_once() {
    let first = TestServer::start_with(|config| config.workers = 4);
    let mut config: Config = first.config();
    config.workers = 4;
    let second = TestServer::start_on(config);
    let addrs = [first.addr, second.addr];
    let start = feed(&first, "after=now").next;

    let done = std::sync::atomic::AtomicBool::new(false);
    let (acked, seen) = thread::scope(|scope| {
        let follower = scope.spawn(|| {
            let mut seen = Vec::new();
            let mut next = start.clone();
            let mut quiet_after_done = 0;
            // Short waits keep the reads racing the commits.
            while quiet_after_done < 2 {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = feed(&first, &format!("after={next}&limit=7&wait=1"));
                if page.ids.is_empty() && finished {
                    quiet_after_done += 1;
                }
                seen.extend(page.ids);
                next = page.next;
            }
            seen
        });
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..60 {
                        let id = format!("w{writer}-{i}");
                        let body = message(&id, "+911", "2025-01-15T10:00:00Z", None);
                        if let Ok(resp) = try_post_webhook(addrs[(writer + i) % 2], body.as_bytes())
                        {
                            if resp.status == 200 {
                                acked.push(id);
                            }
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<String> = writers
            .into_iter()
            .flat_map(|writer| writer.join().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (acked, follower.join().unwrap())
    });
    assert!(acked.len() > 400, "only {} acknowledged", acked.len());
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an id was served twice");
    let acked: HashSet<&String> = acked.iter().collect();
    let missed: Vec<_> = acked.difference(&unique).collect();
    assert!(
        missed.is_empty(),
        "missed {} acknowledged ids: {missed:?}",
        missed.len()
    );
}

/// A commit made by another instance (or process) on the same store wakes a waiting feed too:
/// the watcher sees the store's newest position move.
#[test]
fn a_commit_by_another_instance_wakes_a_waiting_feed() {
    let first = TestServer::start();
    let second = TestServer::start_on(first.config());
    let start = feed(&first, "after=now").next;
    let waiter = long_poll(&first, &format!("after={start}&wait=30"));
    let posted = Instant::now();
    let resp = second.post_message("elsewhere", "+911", "2025-01-15T10:00:00Z", None);
    assert_eq!(resp.status, 200);
    let (resp, answered) = waiter.join().unwrap();
    assert_eq!(page(&resp).ids, ["elsewhere"]);
    assert!(
        answered - posted < Duration::from_secs(5),
        "{:?}",
        answered - posted
    );
}

/// `/feed` is a read: behind `HOOKBOX_ADMIN_TOKEN` like `/messages`, long polls included.
#[test]
fn the_feed_needs_the_admin_token_when_one_is_set() {
    let server = TestServer::start_with(|config| {
        config.admin_token = Some(hookbox::config::Secret::new("feed token"))
    });
    let refused = server.get("/feed?wait=1");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let bearer = [("Authorization", "Bearer feed token")];
    let start = server.send("GET", "/feed?after=now", &bearer, b"");
    let start = page(&start).next;
    let bytes = request_bytes(
        server.addr,
        "GET",
        &format!("/feed?after={start}&wait=30"),
        &bearer,
        b"",
    );
    let mut stream = server.connect();
    let waiter = thread::spawn(move || {
        use std::io::Write;
        stream.write_all(&bytes).unwrap();
        crate::support::read_response(&mut stream)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.send("GET", "/metrics", &bearer, b"").text();
        if crate::support::metric_value(&metrics, WAITERS) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the long poll never parked");
        thread::yield_now();
    }
    post(&server, "locked", "2025-01-15T10:00:00Z");
    assert_eq!(page(&waiter.join().unwrap()).ids, ["locked"]);
}
