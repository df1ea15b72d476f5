//! GET /messages: paging, filters, order and the exact response shape (SPEC "GET /messages").

use serde_json::{Value, json};

use crate::support::{Resp, TestServer};

/// Stores each `(message_id, from, ts, text)`, asserting every one is accepted.
fn seed(server: &TestServer, rows: &[(&str, &str, &str, Option<&str>)]) {
    for (id, from, ts, text) in rows {
        let resp = server.post_message(id, from, ts, *text);
        assert_eq!(resp.status, 200, "seeding {id}: {}", resp.text());
    }
}

/// `count` messages `m000`, `m001`, … one second apart, all from `+1`.
fn seed_numbered(server: &TestServer, count: usize) {
    for i in 0..count {
        let ts = format!("2025-01-15T10:{:02}:{:02}Z", i / 60, i % 60);
        let resp = server.post_message(&format!("m{i:03}"), "+1", &ts, Some("x"));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

fn page(server: &TestServer, target: &str) -> Value {
    let resp = server.get(target);
    assert_eq!(resp.status, 200, "{target}: {}", resp.text());
    resp.json()
}

/// The message ids of the page answered for `target`, in order.
fn ids(server: &TestServer, target: &str) -> Vec<String> {
    page(server, target)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a FastAPI-shaped 422 with one problem at `["query", name]`; returns the problem.
fn query_problem(resp: &Resp, name: &str) -> Value {
    assert_eq!(resp.status, 422, "{}", resp.text());
    let body = resp.json();
    let detail = body["detail"].as_array().expect("detail is a list");
    assert_eq!(detail.len(), 1, "{body}");
    let problem = &detail[0];
    for key in ["type", "loc", "msg", "input"] {
        assert!(problem.get(key).is_some(), "{key} missing in {problem}");
    }
    assert!(problem["msg"].as_str().is_some_and(|msg| !msg.is_empty()));
    assert_eq!(problem["loc"], json!(["query", name]), "{problem}");
    problem.clone()
}

// ---- shape -------------------------------------------------------------------------------------

#[test]
fn empty_store_answers_an_empty_page_with_default_paging() {
    let server = TestServer::start();
    assert_eq!(
        page(&server, "/messages"),
        json!({"data": [], "total": 0, "limit": 50, "offset": 0})
    );
}

#[test]
fn response_has_exactly_data_total_limit_offset_and_items_exactly_five_keys_with_ts_verbatim() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            (
                "m1",
                "+919876543210",
                "2025-01-15T10:00:00.500Z",
                Some("Hello"),
            ),
            ("m2", "+911234567890", "2025-01-15T09:00:00Z", None),
        ],
    );
    let body = page(&server, "/messages");
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["data", "limit", "offset", "total"]);
    assert_eq!(
        body["data"],
        json!([
            {"message_id": "m2", "from": "+911234567890", "to": "+14155550100",
             "ts": "2025-01-15T09:00:00Z", "text": null},
            {"message_id": "m1", "from": "+919876543210", "to": "+14155550100",
             "ts": "2025-01-15T10:00:00.500Z", "text": "Hello"},
        ])
    );
    for item in body["data"].as_array().unwrap() {
        assert_eq!(item.as_object().unwrap().len(), 5, "{item}");
    }
}

// ---- paging ------------------------------------------------------------------------------------

#[test]
fn default_limit_is_50_and_total_counts_every_match() {
    let server = TestServer::start();
    seed_numbered(&server, 55);
    let body = page(&server, "/messages");
    assert_eq!(body["data"].as_array().unwrap().len(), 50);
    assert_eq!(
        (&body["total"], &body["limit"], &body["offset"]),
        (&json!(55), &json!(50), &json!(0))
    );
    assert_eq!(body["data"][49]["message_id"], "m049");
}

#[test]
fn limit_and_offset_page_through_in_order_and_are_echoed_while_total_ignores_them() {
    let server = TestServer::start();
    seed_numbered(&server, 7);
    let body = page(&server, "/messages?limit=3&offset=2");
    assert_eq!(
        (&body["total"], &body["limit"], &body["offset"]),
        (&json!(7), &json!(3), &json!(2))
    );
    assert_eq!(
        ids(&server, "/messages?limit=3&offset=2"),
        ["m002", "m003", "m004"]
    );
    assert_eq!(ids(&server, "/messages?offset=5&limit=3"), ["m005", "m006"]);
    assert_eq!(ids(&server, "/messages?limit=1"), ["m000"]);
    assert_eq!(ids(&server, "/messages?limit=100").len(), 7);
    let past_the_end = page(&server, "/messages?offset=7");
    assert_eq!(past_the_end["data"], json!([]));
    assert_eq!(past_the_end["total"], 7);
    assert_eq!(past_the_end["offset"], 7);
}

#[test]
fn limit_100_returns_up_to_100_rows() {
    let server = TestServer::start();
    seed_numbered(&server, 101);
    let body = page(&server, "/messages?limit=100");
    assert_eq!(body["data"].as_array().unwrap().len(), 100);
    assert_eq!((&body["total"], &body["limit"]), (&json!(101), &json!(100)));
}

#[test]
fn limit_out_of_range_or_unparsable_is_422_at_query_limit() {
    let server = TestServer::start();
    for (value, kind) in [
        ("0", "greater_than_equal"),
        ("-1", "greater_than_equal"),
        ("101", "less_than_equal"),
        ("abc", "int_parsing"),
        ("", "int_parsing"),
        ("1.5", "int_parsing"),
        ("99999999999999999999999", "int_parsing"),
    ] {
        let resp = server.get(&format!("/messages?limit={value}"));
        let problem = query_problem(&resp, "limit");
        assert_eq!(problem["type"], kind, "limit={value}");
        assert_eq!(problem["input"], value);
    }
}

#[test]
fn offset_negative_or_unparsable_or_overflowing_is_422_at_query_offset() {
    let server = TestServer::start();
    for (value, kind) in [
        ("-1", "greater_than_equal"),
        ("abc", "int_parsing"),
        ("", "int_parsing"),
        ("99999999999999999999999", "int_parsing"),
        ("18446744073709551616", "int_parsing"),
    ] {
        let resp = server.get(&format!("/messages?offset={value}"));
        let problem = query_problem(&resp, "offset");
        assert_eq!(problem["type"], kind, "offset={value}");
    }
}

#[test]
fn largest_representable_offset_is_accepted_and_echoed() {
    let server = TestServer::start();
    seed_numbered(&server, 2);
    let body = page(&server, "/messages?offset=9223372036854775807");
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["total"], 2);
    assert_eq!(body["offset"], json!(9_223_372_036_854_775_807u64));
}

#[test]
fn several_bad_parameters_are_reported_together() {
    let server = TestServer::start();
    let resp = server.get("/messages?limit=0&offset=-1&since=yesterday");
    assert_eq!(resp.status, 422);
    let mut locs: Vec<String> = resp.json()["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["loc"].to_string())
        .collect();
    locs.sort();
    assert_eq!(
        locs,
        [
            r#"["query","limit"]"#,
            r#"["query","offset"]"#,
            r#"["query","since"]"#
        ]
    );
}

// ---- filters -----------------------------------------------------------------------------------

#[test]
fn from_matches_with_the_plus_sent_unencoded_or_percent_encoded() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("a", "+919876543210", "2025-01-15T10:00:00Z", None),
            ("b", "+911234567890", "2025-01-15T10:00:01Z", None),
            ("c", "+919876543210", "2025-01-15T10:00:02Z", None),
        ],
    );
    assert_eq!(ids(&server, "/messages?from=+919876543210"), ["a", "c"]);
    assert_eq!(ids(&server, "/messages?from=%2B919876543210"), ["a", "c"]);
    assert_eq!(ids(&server, "/messages?from=%2b911234567890"), ["b"]);
    assert_eq!(page(&server, "/messages?from=+919876543210")["total"], 2);
}

#[test]
fn from_is_an_exact_match_not_a_prefix_or_pattern() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("a", "+919876543210", "2025-01-15T10:00:00Z", None),
            ("b", "+91987654321", "2025-01-15T10:00:01Z", None),
        ],
    );
    assert_eq!(ids(&server, "/messages?from=+91987654321"), ["b"]);
    assert!(ids(&server, "/messages?from=+91").is_empty());
    assert!(ids(&server, "/messages?from=%25").is_empty());
    assert!(ids(&server, "/messages?from=%20919876543210").is_empty());
}

#[test]
fn since_is_inclusive_and_compares_instants_not_strings() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("early", "+1", "2025-01-15T09:59:59.999Z", None),
            ("exact", "+1", "2025-01-15T10:00:00Z", None),
            ("exact-zeros", "+1", "2025-01-15T10:00:00.000Z", None),
            ("tiny", "+1", "2025-01-15T10:00:00.05Z", None),
            ("half", "+1", "2025-01-15T10:00:00.5Z", None),
            ("later", "+1", "2025-01-16T00:00:00Z", None),
        ],
    );
    assert_eq!(
        ids(&server, "/messages?since=2025-01-15T10:00:00Z"),
        ["exact", "exact-zeros", "tiny", "half", "later"]
    );
    assert_eq!(
        ids(&server, "/messages?since=2025-01-15T10:00:00.5Z"),
        ["half", "later"]
    );
    assert_eq!(
        ids(&server, "/messages?since=2025-01-15T10:00:00.500000Z"),
        ["half", "later"]
    );
    assert_eq!(
        ids(&server, "/messages?since=2025-01-15T10:00:00.0001Z"),
        ["tiny", "half", "later"]
    );
    assert_eq!(
        page(&server, "/messages?since=2025-01-15T10:00:00Z")["total"],
        5
    );
    assert!(ids(&server, "/messages?since=2025-01-16T00:00:00.001Z").is_empty());
}

#[test]
fn bad_since_is_422_at_query_since() {
    let server = TestServer::start();
    for value in [
        "2025-01-15",
        "2025-01-15T10:00:00",
        "2025-02-30T10:00:00Z",
        "2025-13-01T10:00:00Z",
        "2025-01-15T24:00:00Z",
        "2025-01-15T10:00:00%2B00:00",
        "yesterday",
        "",
    ] {
        let resp = server.get(&format!("/messages?since={value}"));
        query_problem(&resp, "since");
    }
}

#[test]
fn q_is_a_case_insensitive_substring_of_text() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("a", "+1", "2025-01-15T10:00:00Z", Some("Hello World")),
            ("b", "+1", "2025-01-15T10:00:01Z", Some("say HELLO again")),
            ("c", "+1", "2025-01-15T10:00:02Z", Some("goodbye")),
            ("d", "+1", "2025-01-15T10:00:03Z", None),
            ("e", "+1", "2025-01-15T10:00:04Z", Some("ÄRGER im Büro")),
        ],
    );
    assert_eq!(ids(&server, "/messages?q=hello"), ["a", "b"]);
    assert_eq!(ids(&server, "/messages?q=hElLo%20wORLD"), ["a"]);
    assert_eq!(ids(&server, "/messages?q=BYE"), ["c"]);
    // "ärger", percent-encoded UTF-8.
    assert_eq!(ids(&server, "/messages?q=%C3%A4rger"), ["e"]);
    assert!(ids(&server, "/messages?q=nothing").is_empty());
    assert_eq!(page(&server, "/messages?q=hello&limit=1")["total"], 2);
}

#[test]
fn q_takes_percent_underscore_backslash_and_star_literally() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("pct", "+1", "2025-01-15T10:00:00Z", Some("100% sure")),
            ("no-pct", "+1", "2025-01-15T10:00:01Z", Some("100 sure")),
            ("under", "+1", "2025-01-15T10:00:02Z", Some("snake_case")),
            ("no-under", "+1", "2025-01-15T10:00:03Z", Some("snakeXcase")),
            ("slash", "+1", "2025-01-15T10:00:04Z", Some(r"C:\temp")),
            ("no-slash", "+1", "2025-01-15T10:00:05Z", Some("C:/temp")),
            ("star", "+1", "2025-01-15T10:00:06Z", Some("a*b")),
            ("no-star", "+1", "2025-01-15T10:00:07Z", Some("ab")),
        ],
    );
    assert_eq!(ids(&server, "/messages?q=%"), ["pct"]);
    assert_eq!(ids(&server, "/messages?q=%25"), ["pct"]);
    assert_eq!(ids(&server, "/messages?q=0%25%20s"), ["pct"]);
    assert_eq!(ids(&server, "/messages?q=_"), ["under"]);
    assert_eq!(ids(&server, "/messages?q=%5F"), ["under"]);
    assert_eq!(ids(&server, "/messages?q=e_c"), ["under"]);
    assert_eq!(ids(&server, r"/messages?q=\"), ["slash"]);
    assert_eq!(ids(&server, "/messages?q=%5C"), ["slash"]);
    assert_eq!(ids(&server, r"/messages?q=:\t"), ["slash"]);
    assert_eq!(ids(&server, "/messages?q=*"), ["star"]);
    assert_eq!(ids(&server, "/messages?q=a*b"), ["star"]);
}

#[test]
fn parameters_that_decode_to_invalid_utf8_are_422_at_their_name() {
    let server = TestServer::start();
    query_problem(&server.get("/messages?q=%FF"), "q");
    query_problem(&server.get("/messages?from=%2B91%C3"), "from");
}

#[test]
fn filters_combine_with_and() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("hit", "+911", "2025-01-15T10:00:00Z", Some("Invoice ready")),
            (
                "wrong-sender",
                "+922",
                "2025-01-15T10:00:00Z",
                Some("invoice ready"),
            ),
            (
                "too-early",
                "+911",
                "2025-01-15T09:00:00Z",
                Some("invoice ready"),
            ),
            ("wrong-text", "+911", "2025-01-15T11:00:00Z", Some("hello")),
            (
                "hit-later",
                "+911",
                "2025-01-15T12:00:00Z",
                Some("the INVOICE"),
            ),
        ],
    );
    let target = "/messages?from=+911&since=2025-01-15T10:00:00Z&q=invoice";
    assert_eq!(ids(&server, target), ["hit", "hit-later"]);
    assert_eq!(page(&server, target)["total"], 2);
    assert_eq!(
        ids(&server, "/messages?from=%2B911&q=invoice"),
        ["too-early", "hit", "hit-later"]
    );
    assert_eq!(
        ids(&server, "/messages?since=2025-01-15T10:00:00Z&q=invoice"),
        ["hit", "wrong-sender", "hit-later"]
    );
}

// ---- order -------------------------------------------------------------------------------------

#[test]
fn order_is_by_ts_instant_then_message_id() {
    let server = TestServer::start();
    // Sent out of order; string order of ts would put ".5Z" before "Z".
    seed(
        &server,
        &[
            ("f", "+1", "2025-01-15T10:00:00.5Z", None),
            ("e", "+1", "2025-01-15T10:00:00Z", None),
            ("d", "+1", "2025-01-15T10:00:00.05Z", None),
            ("c", "+1", "2025-01-15T10:00:00Z", None),
            ("b", "+1", "2025-01-15T10:00:00.50Z", None),
            ("a", "+1", "2025-01-15T10:00:00.000Z", None),
            ("z", "+1", "2025-01-14T23:59:59.999999Z", None),
            ("y", "+1", "2025-01-15T10:00:01Z", None),
        ],
    );
    assert_eq!(
        ids(&server, "/messages"),
        ["z", "a", "c", "e", "d", "b", "f", "y"]
    );
    let ts: Vec<Value> = page(&server, "/messages")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["ts"].clone())
        .collect();
    assert_eq!(
        ts,
        [
            "2025-01-14T23:59:59.999999Z",
            "2025-01-15T10:00:00.000Z",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.05Z",
            "2025-01-15T10:00:00.50Z",
            "2025-01-15T10:00:00.5Z",
            "2025-01-15T10:00:01Z",
        ]
    );
    assert_eq!(ids(&server, "/messages?limit=3&offset=3"), ["e", "d", "b"]);
}
