//! Query strings: bad escapes, invalid UTF-8, overflowing integers, SQL as text.

use serde_json::{Value, json};

use super::assert_survived;
use crate::support::TestServer;

fn seed(server: &TestServer, rows: &[(&str, &str)]) {
    for (i, (id, text)) in rows.iter().enumerate() {
        let ts = format!("2025-01-15T10:00:{i:02}Z");
        let resp = server.post_message(id, "+919876543210", &ts, Some(text));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

/// The ids listed for `target`, which must answer 200.
fn listed(server: &TestServer, target: &str) -> Vec<String> {
    let resp = server.get(target);
    assert_eq!(resp.status, 200, "{target}: {}", resp.text());
    let page = resp.json();
    let ids: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page["total"], ids.len(), "{target}: {page}");
    ids
}

fn query_problem_locs(server: &TestServer, target: &str) -> Vec<Value> {
    let resp = server.get(target);
    assert_eq!(resp.status, 422, "{target}: {}", resp.text());
    resp.json()["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["loc"].clone())
        .collect()
}

#[test]
fn bad_percent_escapes_in_the_query_are_taken_literally() {
    let server = TestServer::start();
    seed(
        &server,
        &[
            ("zz", "a %zz b"),
            ("pct", "50% off"),
            ("plain", "plain"),
            ("euro", "5 €"),
        ],
    );
    assert_eq!(listed(&server, "/messages?q=%zz"), ["zz"]);
    assert_eq!(listed(&server, "/messages?q=%"), ["zz", "pct"]);
    assert_eq!(listed(&server, "/messages?q=%25"), ["zz", "pct"]);
    assert_eq!(listed(&server, "/messages?q=0%"), ["pct"]);
    assert!(listed(&server, "/messages?from=%").is_empty());
    assert!(listed(&server, "/messages?q=%zz&from=%").is_empty());
    assert!(listed(&server, "/messages?q=%2").is_empty());
    // A well-formed escape still decodes.
    assert_eq!(listed(&server, "/messages?q=%e2%82%ac"), ["euro"]);
    assert_survived(&server, 4);
}

#[test]
fn escapes_that_decode_to_invalid_utf8_are_422_at_their_parameter() {
    let server = TestServer::start();
    assert_eq!(
        query_problem_locs(&server, "/messages?q=%ff"),
        [json!(["query", "q"])]
    );
    assert_eq!(
        query_problem_locs(&server, "/messages?from=%C3%28"),
        [json!(["query", "from"])]
    );
    assert_eq!(
        query_problem_locs(&server, "/messages?since=%ed%a0%80"),
        [json!(["query", "since"])]
    );
    assert_survived(&server, 0);
}

#[test]
fn integer_overflow_in_limit_and_offset_is_422() {
    let server = TestServer::start();
    seed(&server, &[("only", "x")]);
    for (target, name) in [
        ("/messages?limit=99999999999999999999", "limit"),
        ("/messages?limit=-9223372036854775809", "limit"),
        ("/messages?limit=18446744073709551617", "limit"),
        ("/messages?offset=-9223372036854775809", "offset"),
        ("/messages?offset=9223372036854775808", "offset"),
        ("/messages?offset=99999999999999999999", "offset"),
        ("/messages?offset=1e3", "offset"),
    ] {
        assert_eq!(
            query_problem_locs(&server, target),
            [json!(["query", name])],
            "{target}"
        );
    }
    // The largest offset that fits is served (an empty page), not an error.
    let resp = server.get("/messages?offset=9223372036854775807");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let page = resp.json();
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["total"], 1);
    assert_eq!(page["offset"], json!(9223372036854775807u64));
    assert_survived(&server, 1);
}

#[test]
fn sql_in_query_parameters_and_bodies_is_just_text() {
    let server = TestServer::start();
    seed(
        &server,
        &[("a", "hello"), ("b", "world"), ("c", "x' OR 1=1 --y")],
    );
    // ' OR 1=1 --     matches only the message that literally contains it.
    assert_eq!(listed(&server, "/messages?q=%27%20OR%201%3D1%20--"), ["c"]);
    for target in [
        // %'; DROP TABLE messages; --
        "/messages?q=%25%27%3B%20DROP%20TABLE%20messages%3B%20--",
        "/messages?q=%';DROP%20TABLE%20messages;--",
        "/messages?q=%22)%20OR%20(%221%22%3D%221",
        // ' OR '1'='1
        "/messages?from=%27%20OR%20%271%27%3D%271",
        "/messages?from=%2B1%27%20OR%201%3D1%20--",
    ] {
        assert!(listed(&server, target).is_empty(), "{target} matched rows");
    }
    assert_eq!(
        query_problem_locs(
            &server,
            "/messages?since=2025-01-01T00:00:00Z%27%20OR%201%3D1"
        ),
        [json!(["query", "since"])]
    );
    // In a body, too: stored verbatim as an id, the table intact.
    let id = "x'); DROP TABLE messages; --";
    let resp = server.post_message(
        id,
        "+1",
        "2025-01-16T00:00:00Z",
        Some("'; DELETE FROM messages"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let stored = listed(&server, "/messages?limit=100");
    assert_eq!(stored, ["a", "b", "c", id]);
    assert_eq!(server.get("/stats").json()["total_messages"], 4);
    assert_eq!(server.get("/health/ready").status, 200);
    assert_survived(&server, 4);
}
