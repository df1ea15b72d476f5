//! Pipelining: requests sent in one write are answered in order, each answer matching its
//! request, while other clients are served.

use std::time::{Duration, Instant};

use super::{Bounded, ask, body_of, request, signed_webhook, stored_total};
use crate::support::{BOUND, Conn, Resp, Seen};

/// The packet from issue 7 that once hung the server for good: one write holding a signed webhook
/// and eight GETs. All nine are answered in order, another client is served meanwhile, and the
/// server still shuts down promptly.
#[test]
fn one_write_with_a_webhook_and_eight_gets_is_answered_in_order() {
    let mut server = Bounded::start(|_| {});
    let mut bytes = signed_webhook(&body_of("pipe-1"), "rid-0");
    for i in 1..=8 {
        bytes.extend(request(
            "GET",
            "/health/live",
            &[("X-Request-ID", &format!("rid-{i}"))],
            b"",
        ));
    }
    let mut pipelined = Conn::open(server.addr);
    assert!(pipelined.send(&bytes), "the server refused the packet");

    // Another client, meanwhile.
    let (other, other_took) = ask(
        server.addr,
        &signed_webhook(&body_of("other-1"), "rid-other"),
        Duration::from_secs(2),
    );

    let mut answers = Vec::new();
    let deadline = Instant::now() + BOUND;
    for _ in 0..9 {
        let left = deadline.saturating_duration_since(Instant::now());
        match pipelined.next(left) {
            Seen::Answered(resp) => answers.push(resp),
            other => {
                answers.push(Resp {
                    status: 0,
                    headers: vec![("x-seen".to_owned(), format!("{other:?}"))],
                    body: Vec::new(),
                });
                break;
            }
        }
    }
    let seen: Vec<(u16, Option<&str>)> = answers
        .iter()
        .map(|resp| (resp.status, resp.header("x-request-id")))
        .collect();
    let wanted: Vec<(u16, Option<String>)> =
        (0..9).map(|i| (200, Some(format!("rid-{i}")))).collect();
    let wanted: Vec<(u16, Option<&str>)> = wanted
        .iter()
        .map(|(status, id)| (*status, id.as_deref()))
        .collect();
    assert_eq!(
        other.status(),
        Some(200),
        "another client was not served within 2 s ({other_took:?}) while the pipeline waited: {other:?}"
    );
    assert_eq!(seen, wanted, "pipelined answers (status, X-Request-ID)");
    assert_eq!(answers[0].json(), serde_json::json!({"status": "ok"}));
    drop(pipelined);
    let took = server.stop_within(BOUND);
    assert!(took.is_some(), "shutdown did not return within {BOUND:?}");
}

/// A mixed pipeline on one connection: every answer is the one for its request, in order, and
/// each request sees the effects of the ones before it (the GET /stats after the webhook counts it).
#[test]
fn a_mixed_pipeline_is_answered_in_order_each_answer_matching_its_request() {
    let server = Bounded::start(|_| {});
    let body = body_of("mixed-1");
    let mut bytes = request("GET", "/messages", &[("X-Request-ID", "mix-1")], b"");
    bytes.extend(request(
        "POST",
        "/webhook",
        &[("X-Signature", &"0".repeat(64)), ("X-Request-ID", "mix-2")],
        &body,
    ));
    bytes.extend(signed_webhook(&body, "mix-3"));
    bytes.extend(signed_webhook(&body, "mix-4"));
    bytes.extend(request("GET", "/stats", &[("X-Request-ID", "mix-5")], b""));
    bytes.extend(request("GET", "/nope", &[("X-Request-ID", "mix-6")], b""));
    let mut conn = Conn::open(server.addr);
    assert!(conn.send(&bytes));
    let expected = [
        ("mix-1", 200),
        ("mix-2", 401),
        ("mix-3", 200),
        ("mix-4", 200),
        ("mix-5", 200),
        ("mix-6", 404),
    ];
    let mut answers = Vec::new();
    for (id, status) in expected {
        let resp = conn.next(BOUND).resp(&format!("answer for {id}"));
        assert_eq!(
            (resp.status, resp.header("x-request-id")),
            (status, Some(id)),
            "answer out of order or mismatched: {}",
            resp.text()
        );
        answers.push(resp);
    }
    assert_eq!(answers[0].json()["total"], 0, "{}", answers[0].text());
    assert_eq!(
        answers[1].json(),
        serde_json::json!({"detail": "invalid signature"})
    );
    assert_eq!(answers[2].json(), serde_json::json!({"status": "ok"}));
    assert_eq!(answers[3].json(), serde_json::json!({"status": "ok"}));
    assert_eq!(
        answers[4].json()["total_messages"],
        1,
        "GET /stats ran before the webhook ahead of it was stored: {}",
        answers[4].text()
    );
    assert!(answers[5].json()["detail"].is_string());
    assert_eq!(stored_total(server.addr), 1);
}
