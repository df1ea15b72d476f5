//! Input at the edges never reaches a 500, on either store: the documented caps (422
//! `string_too_long`), query filters that no stored row can match (an empty page, not a store
//! error), an `offset` past the end (answered without walking), and cursors that are forged,
//! garbled or made for another query (422 on `["query","cursor"]`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hookbox::cursor;
use hookbox::store::{ListQuery, Position};

use crate::support::{StoreKind, TestServer, store_kind};

const TS: &str = "2025-01-15T10:00:00Z";

/// The one problem of a 422, checked for its type (unless `None`) and place.
fn one_problem(resp: &crate::support::Resp, kind: Option<&str>, loc: Value) -> Value {
    assert_eq!(resp.status, 422, "{}", resp.text());
    let detail = resp.json()["detail"].clone();
    let problems = detail.as_array().unwrap();
    assert_eq!(problems.len(), 1, "{detail}");
    if let Some(kind) = kind {
        assert_eq!(problems[0]["type"], kind, "{detail}");
    }
    assert_eq!(problems[0]["loc"], loc, "{detail}");
    problems[0].clone()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_message_id_over_256_bytes_is_422_and_the_messages_beside_it_are_stored() {
    let server = TestServer::start();
    // 256 bytes in 128 two-byte characters: the cap counts bytes, and this is at it.
    let at_cap = "é".repeat(128);
    assert_eq!(server.post_message(&at_cap, "+1", TS, None).status, 200);
    let problem = one_problem(
        &server.post_message(&format!("{at_cap}x"), "+1", TS, None),
        Some("string_too_long"),
        json!(["body", "message_id"]),
    );
    assert_eq!(problem["ctx"], json!({"max_length": 256}));

    // A 4 KB id sent in the same moment as others: only its own sender sees the refusal.
    let huge = "m".repeat(4096);
    let answers: Vec<(String, u16)> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..16)
            .map(|i| {
                let id = if i == 8 {
                    huge.clone()
                } else {
                    format!("beside-{i}")
                };
                let server = &server;
                scope.spawn(move || {
                    let status = server.post_message(&id, "+1", TS, Some("hi")).status;
                    (id, status)
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for (id, status) in &answers {
        let expected = if *id == huge { 422 } else { 200 };
        assert_eq!(*status, expected, "{}", &id[..id.len().min(20)]);
    }
    let page = server.get("/messages?limit=100").json();
    assert_eq!(page["total"], 16, "{page}");
    assert!(!ids(&page).contains(&huge));
}

#[test]
fn numbers_over_32_digits_and_fractions_over_9_digits_are_422() {
    let server = TestServer::start();
    let digits = |n: usize| format!("+{}", "9".repeat(n));
    let body = |from: &str, to: &str, ts: &str| {
        json!({"message_id": "m", "from": from, "to": to, "ts": ts}).to_string()
    };
    for (field, at_cap, over) in [
        (
            "from",
            body(&digits(32), "+1", TS),
            body(&digits(33), "+1", TS),
        ),
        (
            "to",
            body("+1", &digits(32), TS),
            body("+1", &digits(33), TS),
        ),
        (
            "ts",
            body("+1", "+1", "2025-01-15T10:00:00.123456789Z"),
            body("+1", "+1", "2025-01-15T10:00:00.1234567890Z"),
        ),
    ] {
        let resp = server.post_webhook(at_cap.as_bytes());
        assert_eq!(resp.status, 200, "{field} at its cap: {}", resp.text());
        one_problem(
            &server.post_webhook(over.as_bytes()),
            Some("string_too_long"),
            json!(["body", field]),
        );
    }
}

#[test]
fn filters_no_stored_row_can_match_are_an_empty_page() {
    let server = TestServer::start();
    for i in 0..3 {
        let resp = server.post_message(&format!("m{i}"), "+15550001", TS, Some("hello"));
        assert_eq!(resp.status, 200);
    }
    for query in [
        "from=%00",
        "from=%2B1%00",
        "from=abc",
        "from=1555",
        "from=",
        "from=%2B%2B1",
        &format!("from=%2B{}", "1".repeat(33)),
        &format!("from=%2B{}", "1".repeat(4000)),
        "q=%00",
        "q=hel%00lo",
        "q=%00%00%00%00",
        "from=%00&q=%00&since=2025-01-15T10:00:00Z",
        "since=9999-12-31T23:59:59.999999999Z",
        "from=%2B15550001&q=%00",
    ] {
        let resp = server.get(&format!("/messages?{query}"));
        assert_eq!(resp.status, 200, "{query}: {}", resp.text());
        let page = resp.json();
        assert_eq!(page["data"], json!([]), "{query}");
        assert_eq!(page["total"], 0, "{query}");
    }
    // The same filters, matching: the rows are there.
    let page = server.get("/messages?from=%2B15550001&q=hello").json();
    assert_eq!(page["total"], 3);
}

#[test]
fn an_offset_past_the_end_answers_at_once_without_reading_rows() {
    let server = TestServer::start_with(|config| {
        config.query_timeout = Duration::from_millis(1000);
    });
    for i in 0..5 {
        assert_eq!(
            server.post_message(&format!("m{i}"), "+1", TS, None).status,
            200
        );
    }
    // On PostgreSQL a reader of `messages` waits behind this lock until the query timeout, so a
    // page that walks rows to skip the offset would answer 503; totals come from the aggregates
    // and need no row. (SQLite readers never wait for a writer.)
    let lock = match store_kind() {
        StoreKind::Postgres => {
            let mut client = server.dir.postgres().unwrap().client();
            client
                .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
                .unwrap();
            Some(client)
        }
        StoreKind::Sqlite => None,
    };
    for target in [
        "/messages?offset=1000000000000000000",
        "/messages?offset=1000000000000000000&from=%2B1",
        "/messages?offset=5&limit=100",
        "/messages?offset=9223372036854775807",
    ] {
        let started = Instant::now();
        let resp = server.get(target);
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        assert!(started.elapsed() < Duration::from_millis(900), "{target}");
        let page = resp.json();
        assert_eq!(
            (page["data"].clone(), page["total"].clone()),
            (json!([]), json!(5))
        );
    }
    drop(lock);
}

/// The cursor in a response's `Link: <…>; rel="next"`.
fn cursor_of(resp: &crate::support::Resp) -> String {
    let link = resp.header("link").expect("a next link");
    let target = link.strip_prefix('<').unwrap().split_once('>').unwrap().0;
    target.split_once("cursor=").unwrap().1.to_owned()
}

#[test]
fn a_cursor_is_refused_with_any_other_filter_or_limit() {
    let server = TestServer::start();
    for i in 0..6 {
        let from = if i % 2 == 0 { "+1" } else { "+2" };
        let ts = format!("2025-01-15T10:00:0{i}Z");
        assert_eq!(
            server
                .post_message(&format!("m{i}"), from, &ts, Some("hello"))
                .status,
            200
        );
    }
    let base = "limit=1&from=%2B1&since=2025-01-15T10:00:00Z&q=ell";
    let first = server.get(&format!("/messages?{base}"));
    let cursor = cursor_of(&first);
    let resp = server.get(&format!("/messages?{base}&cursor={cursor}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(ids(&resp.json()), ["m2"]);
    // The same instant written another way is the same query.
    let same = "limit=1&from=%2B1&since=2025-01-15T10:00:00.000Z&q=ell";
    assert_eq!(
        server
            .get(&format!("/messages?{same}&cursor={cursor}"))
            .status,
        200
    );
    for other in [
        "limit=2&from=%2B1&since=2025-01-15T10:00:00Z&q=ell",
        "limit=1&from=%2B2&since=2025-01-15T10:00:00Z&q=ell",
        "limit=1&since=2025-01-15T10:00:00Z&q=ell",
        "limit=1&from=%2B1&since=2025-01-15T10:00:01Z&q=ell",
        "limit=1&from=%2B1&q=ell",
        "limit=1&from=%2B1&since=2025-01-15T10:00:00Z&q=ELL",
        "limit=1&from=%2B1&since=2025-01-15T10:00:00Z",
        "",
    ] {
        let resp = server.get(&format!("/messages?{other}&cursor={cursor}"));
        one_problem(&resp, Some("value_error"), json!(["query", "cursor"]));
    }
}

/// What a forger who read our source could build: a well-formed cursor, bound to the query it is
/// sent with, around a position that no page of ours ever ends on.
fn forged(ts_key: &str, message_id: &str) -> String {
    let query = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    let position = Position {
        ts_key: ts_key.to_owned(),
        message_id: message_id.to_owned(),
    };
    cursor::encode(&position, &query)
}

#[test]
fn forged_or_garbled_cursors_are_422_never_500() {
    let server = TestServer::start();
    for i in 0..3 {
        assert_eq!(
            server.post_message(&format!("m{i}"), "+1", TS, None).status,
            200
        );
    }
    let real = cursor_of(&server.get("/messages?limit=1"));
    assert_eq!(
        server
            .get(&format!("/messages?limit=1&cursor={real}"))
            .status,
        200
    );
    // A well-formed position is served: the forger only learns rows they could page to.
    let fair = forged("2025-01-15T10:00:00", "m0");
    let resp = server.get(&format!("/messages?cursor={fair}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(ids(&resp.json()), ["m1", "m2"]);

    let mut bad: Vec<String> = [
        "\u{0}",
        "2025-01-15T10:00:00\u{0}",
        "2025-01-15T10:00:00Z",
        "2025-01-15T10:00:00.50",
        "2025-02-30T10:00:00",
        "zzz",
        "",
    ]
    .iter()
    .map(|ts_key| forged(ts_key, "m0"))
    .collect();
    bad.push(real.to_uppercase());
    bad.push(format!("{real}00"));
    bad.push(real[..real.len() - 2].to_owned());
    bad.push("%FF%FE".to_owned());
    bad.push("00".repeat(300));
    for cursor in &bad {
        let resp = server.get(&format!("/messages?cursor={cursor}"));
        one_problem(&resp, None, json!(["query", "cursor"]));
    }
    // Every one-character change of a real cursor is refused, none reaches the store.
    for at in 0..real.len() {
        for replacement in ["0", "f", "g", "A", "%00"] {
            let mut mutated = real.clone();
            mutated.replace_range(at..at + 1, replacement);
            if mutated == real {
                continue;
            }
            let resp = server.get(&format!("/messages?limit=1&cursor={mutated}"));
            assert_eq!(resp.status, 422, "{mutated}: {}", resp.text());
        }
    }
    // A forged message_id holding U+0000 is only a position (both stores keep such ids).
    let nul_id = forged("2025-01-15T10:00:00", "m\u{0}");
    let resp = server.get(&format!("/messages?cursor={nul_id}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn hookbox_import_refuses_the_same_over_cap_lines() {
    let db = crate::support::TestDb::new();
    let mut store = hookbox::store::Store::open(&db.config(None).store_options()).unwrap();
    store.migrate().unwrap();
    let line = |id: &str, from: &str, ts: &str| {
        json!({"message_id": id, "from": from, "to": "+1", "ts": ts, "text": null}).to_string()
    };
    let input = [
        line("ok", "+1", TS),
        line(&"m".repeat(257), "+1", TS),
        line("long-from", &format!("+{}", "1".repeat(33)), TS),
        line("long-fraction", "+1", "2025-01-15T10:00:00.0000000001Z"),
        line(
            &"m".repeat(256),
            &format!("+{}", "1".repeat(32)),
            "2025-01-15T10:00:00.000000001Z",
        ),
    ]
    .join("\n");
    let mut report = Vec::new();
    let summary = hookbox::cli::import(
        &mut store,
        Box::new(std::io::Cursor::new(input.into_bytes())),
        65536,
        &mut report,
    );
    let report = String::from_utf8(report).unwrap();
    assert_eq!((summary.created, summary.invalid), (2, 3), "{report}");
    assert_eq!(summary.first_invalid, [2, 3, 4]);
    assert_eq!(report.matches("string_too_long").count(), 3, "{report}");
}
