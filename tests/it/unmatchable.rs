//! Filters no stored row can match never reach a store error, on either store: a `from` or `q`
//! holding U+0000 (PostgreSQL's text cannot carry it), an `offset` at or past the total, and a
//! cursor whose sort key was forged. Each is an ordinary answer, never a 500.

use hookbox::cursor::encode as encode_cursor;
use hookbox::store::{ListQuery, Position};

use crate::support::TestServer;

fn seeded() -> TestServer {
    let server = TestServer::start();
    for i in 0..3 {
        let id = format!("m{i}");
        let resp = server.post_message(&id, "+15550001", "2025-01-15T10:00:00Z", Some("hello"));
        assert_eq!(resp.status, 200);
    }
    server
}

#[test]
fn a_from_or_q_holding_nul_is_an_empty_page() {
    let server = seeded();
    for target in [
        "/messages?from=%00",
        "/messages?from=%2B1555%000001",
        "/messages?q=%00",
        "/messages?q=hel%00lo",
        "/messages?from=%00&q=hello",
    ] {
        let resp = server.get(target);
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        let body = resp.json();
        assert_eq!(body["total"], 0, "{target}: {body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 0, "{target}");
    }
}

#[test]
fn an_offset_at_or_past_the_total_is_an_empty_page_with_the_total() {
    let server = seeded();
    for offset in ["3", "4", "1000000", "9223372036854775807"] {
        let body = server.get(&format!("/messages?offset={offset}")).json();
        assert_eq!(body["total"], 3, "offset={offset}: {body}");
        assert!(
            body["data"].as_array().unwrap().is_empty(),
            "offset={offset}"
        );
    }
    let body = server.get("/messages?from=%2B15550001&offset=3").json();
    assert_eq!(
        (
            body["total"].as_i64(),
            body["data"].as_array().map(Vec::len)
        ),
        (Some(3), Some(0))
    );
}

#[test]
fn a_cursor_with_a_forged_sort_key_never_reaches_a_store_error() {
    let server = seeded();
    for ts_key in ["\u{0}", "x\u{0}y", "\u{1}", "", "~~~~"] {
        // Made for the query it is sent with (`/messages`: the default limit of 50).
        let query = ListQuery {
            limit: 50,
            ..ListQuery::default()
        };
        let position = Position {
            ts_key: ts_key.to_owned(),
            message_id: "m0".to_owned(),
        };
        let cursor = encode_cursor(&position, &query);
        let resp = server.get(&format!("/messages?cursor={cursor}"));
        assert!(
            resp.status == 200 || resp.status == 422,
            "ts_key {ts_key:?}: {} {}",
            resp.status,
            resp.text()
        );
    }
}
