//! POST /webhook: size limit → signature → JSON → validation → exactly-once store (SPEC "POST /webhook").

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Resp, TestServer, read_response_by_length, sign};

const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

fn valid_fields() -> serde_json::Map<String, Value> {
    match serde_json::from_str(VALID).unwrap() {
        Value::Object(fields) => fields,
        _ => unreachable!(),
    }
}

/// The valid body with each `(field, value)` of `changes` set.
fn body_with_all(changes: &[(&str, Value)]) -> Vec<u8> {
    let mut fields = valid_fields();
    for (field, value) in changes {
        fields.insert((*field).to_owned(), value.clone());
    }
    serde_json::to_vec(&fields).unwrap()
}

/// The valid body with `field` set to `value`.
fn body_with(field: &str, value: Value) -> Vec<u8> {
    body_with_all(&[(field, value)])
}

/// The valid body without `field`.
fn body_without(field: &str) -> Vec<u8> {
    let mut fields = valid_fields();
    fields.remove(field);
    serde_json::to_vec(&fields).unwrap()
}

fn stored(server: &TestServer) -> Vec<Value> {
    let page = server.get("/messages?limit=100").json();
    page["data"].as_array().unwrap().clone()
}

fn assert_nothing_stored(server: &TestServer) {
    let page = server.get("/messages").json();
    assert_eq!(page["total"], 0, "expected an empty store, got {page}");
}

fn assert_ok(resp: &Resp) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({"status": "ok"}));
}

fn assert_invalid_signature(resp: &Resp) {
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.json(), json!({"detail": "invalid signature"}));
}

/// Checks one entry of a FastAPI-shaped 422 `detail` list.
fn assert_fastapi_problem(problem: &Value) {
    let entry = problem.as_object().expect("each problem is an object");
    for key in ["type", "loc", "msg", "input"] {
        assert!(entry.contains_key(key), "{key} missing in {problem}");
    }
    assert!(problem["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(problem["msg"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(problem["loc"].is_array());
}

/// The problems of a FastAPI-shaped 422 answer.
fn problems(resp: &Resp) -> Vec<Value> {
    assert_eq!(resp.status, 422, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "only `detail`: {body}");
    let detail = body["detail"].as_array().expect("detail is a list").clone();
    assert!(!detail.is_empty());
    detail.iter().for_each(assert_fastapi_problem);
    detail
}

/// Asserts a 422 with exactly one problem, located at `["body", field]`, and returns it.
fn single_problem(resp: &Resp, field: &str) -> Value {
    let detail = problems(resp);
    assert_eq!(detail.len(), 1, "{detail:?}");
    assert_eq!(detail[0]["loc"], json!(["body", field]), "{}", detail[0]);
    detail[0].clone()
}

fn send_signed_chunked(server: &TestServer, chunks: &[&[u8]], signature: &str) -> Resp {
    let mut raw = format!(
        "POST /webhook HTTP/1.1\r\nHost: {}\r\nX-Signature: {signature}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for chunk in chunks {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut stream = server.connect();
    stream.write_all(&raw).unwrap();
    read_response_by_length(&mut stream)
}

/// A valid message body padded (with an ignored extra field) to exactly `size` bytes.
fn valid_body_of_size(size: usize) -> Vec<u8> {
    let base = body_with("pad", json!("")).len();
    assert!(size >= base, "size {size} is below the minimum {base}");
    body_with("pad", json!("x".repeat(size - base)))
}

// ---- success and exactly-once ------------------------------------------------------------------

#[test]
fn valid_message_is_answered_exactly_status_ok_and_stored_as_sent() {
    let server = TestServer::start();
    let resp = server.post_webhook(VALID.as_bytes());
    assert_ok(&resp);
    assert!(
        resp.header("content-type")
            .is_some_and(|value| value.starts_with("application/json"))
    );
    assert_eq!(
        stored(&server),
        [serde_json::from_str::<Value>(VALID).unwrap()]
    );
}

#[test]
fn duplicate_message_id_answers_ok_and_keeps_the_first_row_untouched() {
    let server = TestServer::start();
    assert_ok(&server.post_message("m1", "+111", "2025-01-15T10:00:00Z", Some("first")));
    let second = json!({
        "message_id": "m1",
        "from": "+222",
        "to": "+333",
        "ts": "2026-06-06T06:06:06Z",
        "text": "second",
    });
    assert_ok(&server.post_webhook(second.to_string().as_bytes()));
    assert_ok(&server.post_message("m1", "+111", "2025-01-15T10:00:00Z", None));

    let page = server.get("/messages").json();
    assert_eq!(page["total"], 1);
    assert_eq!(
        page["data"],
        json!([{
            "message_id": "m1",
            "from": "+111",
            "to": "+14155550100",
            "ts": "2025-01-15T10:00:00Z",
            "text": "first",
        }])
    );
}

#[test]
fn accepted_message_is_still_there_after_a_restart() {
    let server = TestServer::start();
    assert_ok(&server.post_message("m1", "+1", "2025-01-15T10:00:00Z", Some("kept")));
    let config = server.config();
    let dir = server.stop();

    let restarted = TestServer::start_in(dir, config);
    assert_eq!(stored(&restarted)[0]["text"], "kept");
    // And the id is still taken: a resend is a duplicate, not a second row.
    assert_ok(&restarted.post_message("m1", "+1", "2025-01-15T10:00:00Z", Some("again")));
    assert_eq!(stored(&restarted).len(), 1);
    assert_eq!(stored(&restarted)[0]["text"], "kept");
}

// ---- signature ---------------------------------------------------------------------------------

#[test]
fn signature_over_the_raw_bytes_accepts_a_body_with_newlines_and_odd_spacing() {
    let server = TestServer::start();
    let body = b"{ \"message_id\" :\"m1\",\n  \"from\":   \"+919876543210\",\r\n\t\"to\":\"+14155550100\" ,\"ts\":\"2025-01-15T10:00:00Z\",\n\"text\":\"a  b\"}\n";
    assert_ok(&server.post_webhook(body));
    let rows = stored(&server);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["message_id"], "m1");
    assert_eq!(rows[0]["text"], "a  b");
}

#[test]
fn signature_of_the_reserialised_json_is_rejected_and_nothing_stored() {
    let server = TestServer::start();
    let sent = b"{\"message_id\": \"m1\", \"from\": \"+919876543210\",\n \"to\": \"+14155550100\", \"ts\": \"2025-01-15T10:00:00Z\"}";
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(sent).unwrap()).unwrap();
    assert_ne!(reserialised.as_slice(), sent.as_slice());
    let resp = server.send(
        "POST",
        "/webhook",
        &[("X-Signature", &sign(&reserialised))],
        sent,
    );
    assert_invalid_signature(&resp);
    assert_nothing_stored(&server);
}

#[test]
fn missing_signature_is_401_invalid_signature_and_nothing_stored() {
    let server = TestServer::start();
    assert_invalid_signature(&server.send("POST", "/webhook", &[], VALID.as_bytes()));
    assert_nothing_stored(&server);
}

#[test]
fn wrong_signatures_are_401_invalid_signature_and_nothing_stored() {
    let server = TestServer::start();
    let body = VALID.as_bytes();
    let good = sign(body);
    let other_key = hookbox::signature::sign_hex(b"not-the-secret", body);
    let other_body = sign(b"{}");
    let mut flipped = good.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for signature in [
        other_key.as_str(),
        other_body.as_str(),
        flipped.as_str(),
        &good[..63],
        &good[..32],
        "",
        "not-hex",
    ] {
        let resp = server.send("POST", "/webhook", &[("X-Signature", signature)], body);
        assert_invalid_signature(&resp);
    }
    assert_nothing_stored(&server);
}

#[test]
fn uppercase_hex_signature_is_accepted() {
    let server = TestServer::start();
    let body = VALID.as_bytes();
    let upper = sign(body).to_uppercase();
    assert_ok(&server.send("POST", "/webhook", &[("X-Signature", &upper)], body));
    assert_eq!(stored(&server).len(), 1);
}

#[test]
fn badly_signed_invalid_body_is_401_not_422() {
    let server = TestServer::start();
    for body in [&b"not json"[..], b"[1]", b"{\"message_id\":\"\"}"] {
        let resp = server.send("POST", "/webhook", &[("X-Signature", &sign(b"x"))], body);
        assert_invalid_signature(&resp);
        assert_invalid_signature(&server.send("POST", "/webhook", &[], body));
    }
}

#[test]
fn secret_unset_makes_webhook_503_secret_not_configured_and_stores_nothing() {
    let server = TestServer::start_with(|config| config.webhook_secret = None);
    let resp = server.post_webhook(VALID.as_bytes());
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"detail": "webhook secret not configured"})
    );
    assert_eq!(server.get("/health/ready").status, 503);
    // The operator can still inspect the store.
    assert_eq!(server.get("/health/live").status, 200);
    assert_nothing_stored(&server);
}

// ---- size limit --------------------------------------------------------------------------------

#[test]
fn oversized_body_is_413_before_the_signature_is_checked() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 300);
    let body = valid_body_of_size(301);
    let unsigned = server.send("POST", "/webhook", &[], &body);
    assert_eq!(unsigned.status, 413, "{}", unsigned.text());
    assert!(unsigned.json()["detail"].is_string());
    let badly_signed = server.send("POST", "/webhook", &[("X-Signature", "00")], &body);
    assert_eq!(badly_signed.status, 413);
    assert_eq!(server.post_webhook(&body).status, 413);
    assert_nothing_stored(&server);
}

#[test]
fn body_of_exactly_the_limit_is_accepted() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 300);
    let body = valid_body_of_size(300);
    assert_eq!(body.len(), 300);
    assert_ok(&server.post_webhook(&body));
}

#[test]
fn default_limit_is_64_kib_by_content_length_before_any_body_byte() {
    let server = TestServer::start();
    let body = valid_body_of_size(65536);
    assert_ok(&server.post_webhook(&body));

    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {}\r\nContent-Length: 65537\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).unwrap();
    let resp = read_response_by_length(&mut stream);
    drop(stream);
    assert_eq!(resp.status, 413, "{}", resp.text());
}

#[test]
fn content_length_over_the_limit_is_413_without_waiting_for_the_body() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 100);
    let mut stream = server.connect();
    // If the server tried to read the body first, this read would time out.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {}\r\nX-Signature: {}\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n",
        server.addr,
        sign(b"")
    );
    stream.write_all(head.as_bytes()).unwrap();
    let resp = read_response_by_length(&mut stream);
    drop(stream);
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(resp.json()["detail"].is_string());
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 300);
    let body = valid_body_of_size(2000);
    let chunks: Vec<&[u8]> = body.chunks(250).collect();
    let resp = send_signed_chunked(&server, &chunks, &sign(&body));
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_nothing_stored(&server);
}

#[test]
fn chunked_body_within_the_limit_is_verified_and_stored() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 300);
    let body = valid_body_of_size(300);
    let chunks: Vec<&[u8]> = body.chunks(70).collect();
    assert_ok(&send_signed_chunked(&server, &chunks, &sign(&body)));
    assert_eq!(stored(&server).len(), 1);
}

// ---- JSON and validation -----------------------------------------------------------------------

#[test]
fn invalid_json_is_422_json_invalid() {
    let server = TestServer::start();
    for body in [
        &b""[..],
        b"not json",
        b"{\"message_id\":",
        b"{\"message_id\":\"m1\",}",
        b"{\"message_id\":\"\xff\"}",
    ] {
        let detail = problems(&server.post_webhook(body));
        assert_eq!(detail.len(), 1);
        assert_eq!(detail[0]["type"], "json_invalid", "{body:?}");
        assert_eq!(detail[0]["loc"][0], "body");
    }
    assert_nothing_stored(&server);
}

#[test]
fn json_that_is_not_an_object_is_422_at_body() {
    let server = TestServer::start();
    for body in [
        "[1]",
        "\"m1\"",
        "42",
        "null",
        "true",
        format!("[{VALID}]").as_str(),
    ] {
        let detail = problems(&server.post_webhook(body.as_bytes()));
        assert_eq!(detail.len(), 1, "{body}");
        assert_eq!(detail[0]["loc"], json!(["body"]), "{body}");
        assert_eq!(detail[0]["type"], "model_attributes_type", "{body}");
        assert_eq!(
            detail[0]["input"],
            serde_json::from_str::<Value>(body).unwrap()
        );
    }
    assert_nothing_stored(&server);
}

#[test]
fn empty_message_id_is_422() {
    let server = TestServer::start();
    let problem = single_problem(
        &server.post_webhook(&body_with("message_id", json!(""))),
        "message_id",
    );
    assert_eq!(problem["type"], "string_too_short");
    assert_eq!(problem["input"], "");
    assert_nothing_stored(&server);
}

#[test]
fn from_and_to_must_be_a_plus_followed_by_digits() {
    let server = TestServer::start();
    for field in ["from", "to"] {
        for bad in [
            "919876543210",
            "+",
            "",
            "+91 98",
            "++91",
            "+91a",
            " +91",
            "+91-98",
            "0091",
        ] {
            let resp = server.post_webhook(&body_with(field, json!(bad)));
            let problem = single_problem(&resp, field);
            assert_eq!(
                problem["type"], "string_pattern_mismatch",
                "{field}={bad:?}"
            );
            assert_eq!(problem["input"], bad);
        }
    }
    assert_nothing_stored(&server);
    for good in ["+1", "+919876543210", "+0000"] {
        let body =
            json!({"message_id": good, "from": good, "to": good, "ts": "2025-01-15T10:00:00Z"});
        assert_ok(&server.post_webhook(body.to_string().as_bytes()));
    }
}

#[test]
fn ts_must_be_a_real_utc_instant_with_a_trailing_z() {
    let server = TestServer::start();
    for bad in [
        "2025-02-30T10:00:00Z",
        "2023-02-29T10:00:00Z",
        "2025-13-01T10:00:00Z",
        "2025-00-10T10:00:00Z",
        "2025-04-31T10:00:00Z",
        "2025-01-15T24:00:00Z",
        "2025-01-15T10:60:00Z",
        "2025-01-15T10:00:60Z",
        "2025-01-15T10:00:00",
        "2025-01-15T10:00:00+00:00",
        "2025-01-15 10:00:00Z",
        "2025-01-15",
        "2025-01-15T10:00Z",
        "2025-01-15T10:00:00.Z",
        "2025-01-15T10:00:00.5aZ",
        "20250115T100000Z",
        "yesterday",
        "",
    ] {
        let problem = single_problem(&server.post_webhook(&body_with("ts", json!(bad))), "ts");
        assert_eq!(problem["input"], bad);
    }
    assert_nothing_stored(&server);
}

#[test]
fn ts_accepts_fractions_and_leap_days_and_is_stored_verbatim() {
    let server = TestServer::start();
    let good = [
        "2024-02-29T23:59:59Z",
        "2000-02-29T00:00:00Z",
        "2025-01-15T10:00:00.5Z",
        "2025-01-15T10:00:00.500Z",
        "2025-01-15T10:00:00.123456789Z",
        "2025-12-31T23:59:59.999Z",
    ];
    for (i, ts) in good.iter().enumerate() {
        let body = body_with_all(&[("message_id", json!(format!("m{i}"))), ("ts", json!(ts))]);
        assert_ok(&server.post_webhook(&body));
    }
    let mut returned: Vec<String> = stored(&server)
        .iter()
        .map(|row| row["ts"].as_str().unwrap().to_owned())
        .collect();
    returned.sort();
    let mut expected: Vec<String> = good.iter().map(|ts| ts.to_string()).collect();
    expected.sort();
    assert_eq!(returned, expected);
}

#[test]
fn text_of_4096_multibyte_chars_is_accepted_and_4097_is_422() {
    let server = TestServer::start();
    let at_limit = "é".repeat(4096);
    assert_ok(&server.post_webhook(&body_with("text", json!(at_limit))));
    assert_eq!(stored(&server)[0]["text"], at_limit);

    let over = "é".repeat(4097);
    let resp = server.post_webhook(&body_with_all(&[
        ("message_id", json!("m2")),
        ("text", json!(over)),
    ]));
    let problem = single_problem(&resp, "text");
    assert_eq!(problem["type"], "string_too_long");
    assert_eq!(stored(&server).len(), 1);
}

#[test]
fn text_counts_code_points_not_bytes_or_utf16_units() {
    let server = TestServer::start();
    // 4096 astral characters: 16384 UTF-8 bytes, 8192 UTF-16 units, 4096 code points.
    let emoji = "😀".repeat(4096);
    assert_ok(&server.post_webhook(&body_with("text", json!(emoji))));
    assert_eq!(stored(&server)[0]["text"], emoji);
}

#[test]
fn null_text_and_missing_text_are_accepted_and_listed_as_null() {
    let server = TestServer::start();
    let null_text = body_with_all(&[("message_id", json!("null-text")), ("text", Value::Null)]);
    assert_ok(&server.post_webhook(&null_text));
    let mut no_text = valid_fields();
    no_text.insert("message_id".to_owned(), json!("no-text"));
    no_text.remove("text");
    assert_ok(&server.post_webhook(&serde_json::to_vec(&no_text).unwrap()));

    let rows = stored(&server);
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(
            row.as_object().unwrap().get("text"),
            Some(&Value::Null),
            "{row}"
        );
    }
}

#[test]
fn unknown_extra_fields_are_ignored_and_never_returned() {
    let server = TestServer::start();
    let body = body_with_all(&[
        ("extra", json!({"nested": [1, 2]})),
        ("received_at", json!("1999-01-01T00:00:00Z")),
    ]);
    assert_ok(&server.post_webhook(&body));
    assert_eq!(
        stored(&server),
        [serde_json::from_str::<Value>(VALID).unwrap()]
    );
}

#[test]
fn wrong_types_are_422_one_string_type_entry_per_field() {
    let server = TestServer::start();
    for (field, value) in [
        ("message_id", json!(1)),
        ("message_id", Value::Null),
        ("from", json!(919876543210u64)),
        ("from", json!(["+91"])),
        ("to", Value::Null),
        ("to", json!({"n": "+1"})),
        ("ts", json!(1736935200)),
        ("text", json!(5)),
        ("text", json!(true)),
        ("text", json!(["Hello"])),
    ] {
        let problem = single_problem(
            &server.post_webhook(&body_with(field, value.clone())),
            field,
        );
        assert_eq!(problem["type"], "string_type", "{field}={value}");
        assert_eq!(problem["input"], value);
    }
    assert_nothing_stored(&server);
}

#[test]
fn each_missing_required_field_is_422_missing() {
    let server = TestServer::start();
    for field in ["message_id", "from", "to", "ts"] {
        let problem = single_problem(&server.post_webhook(&body_without(field)), field);
        assert_eq!(problem["type"], "missing");
    }
    let detail = problems(&server.post_webhook(b"{}"));
    let locs: Vec<&Value> = detail.iter().map(|problem| &problem["loc"]).collect();
    assert_eq!(
        locs,
        [
            &json!(["body", "message_id"]),
            &json!(["body", "from"]),
            &json!(["body", "to"]),
            &json!(["body", "ts"]),
        ]
    );
    assert_nothing_stored(&server);
}

#[test]
fn every_problem_in_one_body_gets_its_own_entry() {
    let server = TestServer::start();
    let body = json!({
        "message_id": "",
        "from": "919",
        "to": 12,
        "ts": "2025-02-30T00:00:00Z",
        "text": "x".repeat(4097),
    });
    let detail = problems(&server.post_webhook(body.to_string().as_bytes()));
    let mut fields: Vec<&str> = detail
        .iter()
        .map(|problem| problem["loc"][1].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["from", "message_id", "text", "to", "ts"]);
    assert!(detail.iter().all(|problem| problem["loc"][0] == "body"));
}

// ---- storage trouble ---------------------------------------------------------------------------

#[test]
fn store_locked_past_the_busy_timeout_is_503_with_retry_after_then_retry_succeeds() {
    let server = TestServer::start_with(|config| config.busy_timeout = Duration::from_millis(50));
    let blocker = server.block_writes();

    let resp = server.post_webhook(VALID.as_bytes());
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    assert!(resp.json()["detail"].is_string());

    blocker.release();
    assert_ok(&server.post_webhook(VALID.as_bytes()));
    assert_eq!(stored(&server).len(), 1);
}

#[test]
fn control_characters_in_id_and_text_are_stored_returned_and_searched_exactly() {
    // JSON allows U+0000; PostgreSQL's text does not, so that store escapes it. Either way the
    // sender's bytes come back, order and search are unchanged, and the id stays unique.
    let server = TestServer::start();
    let cases = [
        ("nul\u{0}id", "before\u{0}after"),
        ("nul\u{1}id", "one\u{1}\u{2}two"),
        ("nul", "\u{0}\u{2}"),
    ];
    for (id, text) in cases {
        let body = json!({"message_id": id, "from": "+1", "to": "+2", "ts": "2025-01-15T10:00:00Z", "text": text});
        assert_ok(&server.post_webhook(body.to_string().as_bytes()));
        assert_ok(&server.post_webhook(body.to_string().as_bytes()));
    }
    let rows = stored(&server);
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|m| {
            (
                m["message_id"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    // Same instant: ordered by id bytes ("nul" < "nul\0id" < "nul\u{1}id").
    assert_eq!(got, [cases[2], cases[0], cases[1]]);
    for (needle, want) in [
        ("%00", 2),
        ("%01", 1),
        ("%01%02", 1),
        ("%00%02", 1),
        ("before", 1),
    ] {
        let page = server.get(&format!("/messages?q={needle}")).json();
        assert_eq!(page["total"], want, "q={needle}: {page}");
    }
    assert_eq!(
        server.metric(r#"webhook_requests_total{result="created"}"#),
        Some(3.0)
    );
}
