//! GET /stats: totals, top senders, first/last instants (SPEC "GET /stats").

use serde_json::{Value, json};

use crate::support::TestServer;

fn stats(server: &TestServer) -> Value {
    let resp = server.get("/stats");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn post(server: &TestServer, id: &str, from: &str, ts: &str) {
    let resp = server.post_message(id, from, ts, Some("hi"));
    assert_eq!(resp.status, 200, "{id}: {}", resp.text());
}

/// `count` messages from `from`, ids `{from}-0`, `{from}-1`, ….
fn post_many(server: &TestServer, from: &str, count: usize) {
    for i in 0..count {
        post(server, &format!("{from}-{i}"), from, "2025-01-15T10:00:00Z");
    }
}

#[test]
fn empty_store_has_zero_counts_no_senders_and_null_first_and_last() {
    let server = TestServer::start();
    assert_eq!(
        stats(&server),
        json!({
            "total_messages": 0,
            "senders_count": 0,
            "messages_per_sender": [],
            "first_message_ts": null,
            "last_message_ts": null,
        })
    );
}

#[test]
fn stats_report_exactly_the_documented_values_for_a_small_store() {
    let server = TestServer::start();
    post(&server, "a", "+919876543210", "2025-01-15T10:00:00Z");
    post(&server, "b", "+919876543210", "2025-01-10T09:00:00Z");
    post(&server, "c", "+911234567890", "2025-01-12T00:00:00Z");
    assert_eq!(
        stats(&server),
        json!({
            "total_messages": 3,
            "senders_count": 2,
            "messages_per_sender": [
                {"from": "+919876543210", "count": 2},
                {"from": "+911234567890", "count": 1},
            ],
            "first_message_ts": "2025-01-10T09:00:00Z",
            "last_message_ts": "2025-01-15T10:00:00Z",
        })
    );
}

#[test]
fn duplicates_and_rejected_requests_are_not_counted() {
    let server = TestServer::start();
    post(&server, "a", "+1", "2025-01-15T10:00:00Z");
    post(&server, "a", "+2", "2025-01-16T10:00:00Z");
    assert_eq!(
        server
            .send("POST", "/webhook", &[], br#"{"message_id":"x"}"#)
            .status,
        401
    );
    assert_eq!(server.post_webhook(br#"{"message_id":"y"}"#).status, 422);
    let body = stats(&server);
    assert_eq!(body["total_messages"], 1);
    assert_eq!(body["senders_count"], 1);
    assert_eq!(
        body["messages_per_sender"],
        json!([{"from": "+1", "count": 1}])
    );
    assert_eq!(body["last_message_ts"], "2025-01-15T10:00:00Z");
}

#[test]
fn top_ten_senders_by_count_descending_with_ties_by_from_ascending() {
    let server = TestServer::start();
    // 12 senders; counts chosen so that ties straddle the cut after the tenth.
    let senders = [
        ("+15", 5),
        ("+14", 4),
        ("+13", 4),
        ("+1200", 3),
        ("+12", 3),
        ("+3", 2),
        ("+21", 2),
        ("+20", 2),
        ("+9", 1),
        ("+8", 1),
        ("+7", 1),
        ("+10", 1),
    ];
    for (from, count) in senders {
        post_many(&server, from, count);
    }
    let body = stats(&server);
    assert_eq!(body["total_messages"], 29);
    assert_eq!(body["senders_count"], 12);
    assert_eq!(
        body["messages_per_sender"],
        json!([
            {"from": "+15", "count": 5},
            {"from": "+13", "count": 4},
            {"from": "+14", "count": 4},
            {"from": "+12", "count": 3},
            {"from": "+1200", "count": 3},
            {"from": "+20", "count": 2},
            {"from": "+21", "count": 2},
            {"from": "+3", "count": 2},
            {"from": "+10", "count": 1},
            {"from": "+7", "count": 1},
        ])
    );
}

#[test]
fn sender_counts_sum_to_the_total_when_there_are_at_most_ten_senders() {
    let server = TestServer::start();
    for (i, count) in [3, 1, 4, 1, 5, 9, 2, 6, 5, 3].into_iter().enumerate() {
        post_many(&server, &format!("+4{i}"), count);
    }
    let body = stats(&server);
    let per_sender = body["messages_per_sender"].as_array().unwrap();
    assert_eq!(per_sender.len(), 10);
    let sum: i64 = per_sender
        .iter()
        .map(|s| s["count"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 39);
    assert_eq!(body["total_messages"], 39);
    assert_eq!(body["senders_count"], 10);
}

#[test]
fn first_and_last_are_earliest_and_latest_instants_returned_as_received() {
    let server = TestServer::start();
    // As strings, "…09:00:00.5Z" sorts before "…09:00:00Z" and "…10:00:00Z" after "…10:00:00.5Z".
    post(&server, "a", "+1", "2025-01-15T09:00:00.5Z");
    post(&server, "b", "+1", "2025-01-15T09:00:00Z");
    post(&server, "c", "+1", "2025-01-15T10:00:00Z");
    post(&server, "d", "+1", "2025-01-15T10:00:00.5Z");
    post(&server, "e", "+1", "2025-01-15T09:30:00.250Z");
    let body = stats(&server);
    assert_eq!(body["first_message_ts"], "2025-01-15T09:00:00Z");
    assert_eq!(body["last_message_ts"], "2025-01-15T10:00:00.5Z");
}

#[test]
fn first_and_last_keep_the_ts_spelling_that_was_stored() {
    let server = TestServer::start();
    post(&server, "a", "+1", "2025-01-15T08:00:00.000Z");
    post(&server, "b", "+1", "2025-01-15T11:00:00.1230Z");
    post(&server, "c", "+1", "2025-01-15T09:00:00Z");
    let body = stats(&server);
    assert_eq!(body["first_message_ts"], "2025-01-15T08:00:00.000Z");
    assert_eq!(body["last_message_ts"], "2025-01-15T11:00:00.1230Z");
}
