//! Bodies that reach validation: invalid UTF-8, nesting bombs, lone surrogates, absurd numbers.

use serde_json::{Value, json};

use super::{VALID, assert_survived, problem_types};
use crate::support::TestServer;

#[test]
fn invalid_utf8_in_a_signed_body_is_422_and_nothing_stored() {
    let server = TestServer::start();
    let bodies: [&[u8]; 4] = [
        b"{\"message_id\":\"m\xff\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\"}",
        b"{\"message_id\":\"m1\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\",\"text\":\"\xc3\x28\"}",
        // An overlong encoding of '/', and a UTF-8-encoded surrogate half.
        b"{\"message_id\":\"m\xc0\xaf\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\"}",
        b"{\"message_id\":\"m\xed\xa0\x80\",\"from\":\"+1\",\"to\":\"+2\",\"ts\":\"2025-01-15T10:00:00Z\"}",
    ];
    for body in bodies {
        let resp = server.post_webhook(body);
        assert_eq!(resp.status, 422, "{:?}: {}", body, resp.text());
        assert!(resp.json()["detail"].is_array());
    }
    assert_survived(&server, 0);
}

#[test]
fn json_nesting_bombs_are_422_without_crashing() {
    let server = TestServer::start();
    let arrays = "[".repeat(10_000);
    let closed_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = "{\"a\":".repeat(10_000);
    let inside_a_field = format!(
        r#"{{"message_id":"m1","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","x":{}}}"#,
        "[".repeat(5_000) + &"]".repeat(5_000)
    );
    for body in [&arrays, &closed_arrays, &objects, &inside_a_field] {
        let resp = server.post_webhook(body.as_bytes());
        assert_eq!(problem_types(&resp), ["json_invalid"], "{}", resp.text());
    }
    assert_survived(&server, 0);
}

#[test]
fn lone_surrogate_escapes_are_422() {
    let server = TestServer::start();
    for (field, escaped) in [
        ("message_id", r#""\ud800""#),
        ("message_id", r#""m\udfff""#),
        ("text", r#""\ud800""#),
        ("text", r#""\udc00\ud800""#),
        ("text", r#""a\ud83d""#),
    ] {
        let mut fields: serde_json::Map<String, Value> = serde_json::from_str(VALID).unwrap();
        fields.insert(field.to_owned(), json!("PLACEHOLDER"));
        let body = serde_json::to_string(&fields)
            .unwrap()
            .replace(r#""PLACEHOLDER""#, escaped);
        let resp = server.post_webhook(body.as_bytes());
        assert_eq!(resp.status, 422, "{body}: {}", resp.text());
    }
    assert_survived(&server, 0);
}

#[test]
fn absurd_numbers_as_field_values_are_422() {
    let server = TestServer::start();
    for (field, number) in [
        ("message_id", "1e999999"),
        ("text", "1e999999"),
        ("text", "-1e999999"),
        ("from", "1e-999999"),
        ("ts", "123456789012345678901234567890"),
        ("to", "-0"),
    ] {
        let mut fields: serde_json::Map<String, Value> = serde_json::from_str(VALID).unwrap();
        fields.insert(field.to_owned(), json!("PLACEHOLDER"));
        let body = serde_json::to_string(&fields)
            .unwrap()
            .replace(r#""PLACEHOLDER""#, number);
        let resp = server.post_webhook(body.as_bytes());
        assert_eq!(resp.status, 422, "{body}: {}", resp.text());
    }
    assert_survived(&server, 0);
}
