//! A careless or hostile client against the senders (WhatsApp, Twilio, Standard Webhooks) on
//! whichever store the suite runs: NUL, invalid UTF-8 and odd numbers in every field never reach
//! a 5xx, never fail another sender's message, and what is stored reads back exactly as sent.

use std::time::{SystemTime, UNIX_EPOCH};

use hookbox::config::{Keys, Twilio, standard_secret};
use hookbox::signature::standard;
use serde_json::{Value, json};

use crate::senders_standard::post_standard;
use crate::senders_twilio::{self, PUBLIC_URL, TOKEN};
use crate::senders_whatsapp::{self, APP_SECRET, change, payload, text_message};
use crate::support::{Resp, TestServer, sign};

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn server_with(max_body_bytes: usize) -> TestServer {
    TestServer::start_with(|config| {
        config.max_body_bytes = max_body_bytes;
        config.senders.whatsapp_app_secret = Some(Keys::new(APP_SECRET, None));
        config.senders.twilio = Some(Twilio {
            auth_token: Keys::new(TOKEN, None),
            public_url: PUBLIC_URL.to_owned(),
        });
        config.senders.standard = Some(Keys::new(standard_secret(WHSEC).unwrap(), None));
    })
}

fn server() -> TestServer {
    server_with(65536)
}

fn stored(server: &TestServer) -> Vec<Value> {
    let page = server.get("/messages?limit=100");
    assert_eq!(page.status, 200, "{}", page.text());
    page.json()["data"].as_array().unwrap().clone()
}

fn ids(server: &TestServer) -> Vec<String> {
    let mut ids: Vec<String> = stored(server)
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn no_5xx(resp: &Resp, what: &str) {
    assert!(resp.status < 500, "{what}: {} {}", resp.status, resp.text());
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn nul_in_every_whatsapp_field_is_stored_exactly_or_refused_never_a_5xx() {
    let server = server();
    let nul_text = json!({"from": "16505551234", "id": "wamid.\u{0}text", "timestamp": "1749416383",
        "type": "text", "text": {"body": "a\u{0}b\u{1}c"}});
    let nul_caption = json!({"from": "16505551234", "id": "wamid.\u{0}", "timestamp": "1749416384",
        "type": "image", "image": {"caption": "\u{0}", "id": "1"}});
    let resp = senders_whatsapp::post_signed(
        &server,
        APP_SECRET,
        &payload(vec![change(json!([nul_text, nul_caption]), json!([]))]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut got: Vec<(String, Value)> = stored(&server)
        .iter()
        .map(|m| {
            (
                m["message_id"].as_str().unwrap().to_owned(),
                m["text"].clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("wamid.\u{0}".to_owned(), json!("\u{0}")),
            ("wamid.\u{0}text".to_owned(), json!("a\u{0}b\u{1}c")),
        ]
    );
    // NUL where a number or a phone number belongs: well signed, so 200 and counted invalid.
    for bad in [
        json!({"from": "1650\u{0}", "id": "w1", "timestamp": "1749416383", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w2", "timestamp": "17494\u{0}16383", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w3", "timestamp": "99999999999999999999", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w4", "timestamp": -1, "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w5", "timestamp": 1749416383.5, "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w6", "timestamp": "253402300800", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w7", "timestamp": 1e300, "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "x".repeat(257), "timestamp": "1", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1".repeat(33), "id": "w8", "timestamp": "1", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": ["w9"], "timestamp": "1", "type": "text", "text": {"body": "x"}}),
        json!({"from": "1650", "id": "w10", "timestamp": "1", "type": "text", "text": {"body": {"deep": 1}}}),
        json!({"from": "1650", "id": "w11", "timestamp": "1", "type": ["text"], "text": {"body": "x"}}),
    ] {
        let resp = senders_whatsapp::post_signed(
            &server,
            APP_SECRET,
            &payload(vec![change(json!([bad]), json!([]))]),
        );
        no_5xx(&resp, &bad.to_string());
    }
    // The display number: spaces, dashes, a plus and a NUL are not digits and are dropped.
    let mut odd_display = change(
        json!([text_message("w.display", 1749416383, "x")]),
        json!([]),
    );
    odd_display["value"]["metadata"]["display_phone_number"] = json!("+1 555-078\u{0}3881");
    let resp = senders_whatsapp::post_signed(&server, APP_SECRET, &payload(vec![odd_display]));
    assert_eq!(resp.status, 200);
    let display = stored(&server)
        .into_iter()
        .find(|m| m["message_id"] == "w.display")
        .expect("stored");
    assert_eq!(display["to"], "+15550783881");
    // The year 9999 is the last a `ts` holds; the first second of 10000 is not a message.
    assert_eq!(ids(&server).len(), 3, "only the three good messages");
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn empty_deep_and_duplicate_key_whatsapp_payloads_are_acknowledged_never_a_5xx() {
    let server = server();
    let deep = format!(
        r#"{{"object":"whatsapp_business_account","entry":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    for body in [
        b"".to_vec(),
        b"{}".to_vec(),
        br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec(),
        br#"{"object":"whatsapp_business_account","entry":[{"changes":[]}]}"#.to_vec(),
        payload(vec![change(json!([]), json!([]))]),
        deep.into_bytes(),
        b"\xff\xfe{}".to_vec(),
        br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"\ud800"}]}}]}]}"#.to_vec(),
    ] {
        let resp = senders_whatsapp::post_signed(&server, APP_SECRET, &body);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body[..body.len().min(80)]));
    }
    // A duplicate key: JSON's last value wins, as serde_json reads it; one message, once.
    let dup = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"display_phone_number":"1"},"messages":[{"id":"first","id":"last","from":"2","timestamp":"1749416383","type":"text","text":{"body":"x"}}]}}]}]}"#;
    let resp = senders_whatsapp::post_signed(&server, APP_SECRET, dup);
    assert_eq!(resp.status, 200);
    assert_eq!(ids(&server), vec!["last".to_owned()]);
}

#[test]
fn ten_thousand_whatsapp_messages_in_one_post_are_one_commit() {
    let server = server_with(4 * 1024 * 1024);
    // Every id twice in the same payload: one copy stored, and the duplicate does not fail the
    // rest (PostgreSQL refuses to touch a row twice in one statement).
    let messages: Vec<Value> = (0..10_000)
        .map(|i| text_message(&format!("wamid.{}", i % 5_000), 1_749_416_383 + i, "hi"))
        .collect();
    let body = payload(vec![change(Value::Array(messages), json!([]))]);
    assert!(body.len() < 4 * 1024 * 1024);
    let resp = senders_whatsapp::post_signed(&server, APP_SECRET, &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let stats = server.get("/stats").json();
    assert_eq!(stats["total_messages"], 5_000, "{stats}");
    let again = senders_whatsapp::post_signed(&server, APP_SECRET, &body);
    assert_eq!(again.status, 200);
    assert_eq!(server.get("/stats").json()["total_messages"], 5_000);
}

#[test]
fn odd_twilio_forms_are_refused_or_stored_exactly_never_a_5xx() {
    let server = server();
    let target = "/webhook/twilio";
    let good = |sid: &str, body: &str| -> Vec<(String, String)> {
        [
            ("MessageSid", sid),
            ("From", "whatsapp:+14155550100"),
            ("To", "+14155550199"),
            ("Body", body),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    // NUL (%00) in the body and the id is stored exactly.
    let params = good("SM\u{0}1", "a\u{0}b");
    let borrowed: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let resp = senders_twilio::post_signed(&server, TOKEN, target, &borrowed);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let row = stored(&server).pop().unwrap();
    assert_eq!(row["message_id"], "SM\u{0}1");
    assert_eq!(row["text"], "a\u{0}b");
    // NUL in an address, a MessageSid past 256 bytes, a From past 32 digits: a 422, never a 5xx.
    let long_sid = "S".repeat(257);
    for (name, value) in [
        ("From", "+1\u{0}"),
        ("To", "\u{0}"),
        ("MessageSid", long_sid.as_str()),
        ("From", "+123456789012345678901234567890123"),
        ("MessageSid", ""),
    ] {
        let mut params = good("SMok", "x");
        params.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_owned();
        let borrowed: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = senders_twilio::post_signed(&server, TOKEN, target, &borrowed);
        assert_eq!(resp.status, 422, "{name}={value:?}: {}", resp.text());
    }
    // Bytes that are not form-encoded UTF-8 cannot carry Twilio's signature: 403.
    for body in [
        &b"Body=%ff"[..],
        b"Body=\xff",
        b"%zz=%",
        b"MessageSid=%C0%80",
        b"&&&=&=",
    ] {
        let resp = server.send(
            "POST",
            target,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
            ],
            body,
        );
        assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(stored(&server).len(), 1);
}

#[test]
fn standard_webhooks_headers_that_lie_are_401_never_a_5xx() {
    let server = server();
    let key = standard_secret(WHSEC).unwrap();
    let body = crate::support::message("std-1", "+1", "2025-01-15T10:00:00Z", Some("a\u{0}"));
    let body = body.as_bytes();
    let now = now();
    let good = standard::sign(&key, "msg_1", now, body);
    let garbage = "v1,!!!not-base64!!! v1, v1,==== v2,AAAA v1";
    for (id, timestamp, signature) in [
        ("msg_1", now.to_string(), garbage.to_owned()),
        ("msg_1", now.to_string(), good.replace("v1,", "v2,")),
        ("msg_1", now.to_string(), String::new()),
        ("msg_1", "99999999999999999999999".to_owned(), good.clone()),
        ("msg_1", "-9223372036854775808".to_owned(), good.clone()),
        ("msg_1", format!("{now}.0"), good.clone()),
        ("msg_1", format!("0{now}"), good.clone()),
        ("msg_1", format!("+{now}"), good.clone()),
        ("msg_2", now.to_string(), good.clone()),
        (
            "msg_1",
            now.to_string(),
            format!("{garbage} {}", good.replace('=', "")),
        ),
    ] {
        let resp = post_standard(&server, id, &timestamp, &signature, body);
        assert_eq!(resp.status, 401, "{timestamp} {signature}: {}", resp.text());
    }
    // Garbage beside a good entry does not hide it, and a replay of the same id is a duplicate.
    let mixed = format!("{garbage} {good}");
    for _ in 0..2 {
        let resp = post_standard(&server, "msg_1", now, &mixed, body);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // Both signatures at once: our own X-Signature decides, and a Standard one cannot stand in.
    let resp = server.send(
        "POST",
        "/webhook",
        &[
            ("X-Signature", "00"),
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &good),
        ],
        body,
    );
    assert_eq!(resp.status, 401);
    let resp = server.send(
        "POST",
        "/webhook",
        &[
            ("X-Signature", &sign(body)),
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "0"),
            ("webhook-signature", "v1,AAAA"),
        ],
        body,
    );
    // A good X-Signature beside stale Standard headers: ours decides (a duplicate here).
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(ids(&server), vec!["std-1".to_owned()]);
    assert_eq!(stored(&server)[0]["text"], "a\u{0}");
}

/// A Standard Webhooks sender that lost one of its three headers is refused as a Standard
/// request (401, counted `standard`), not sent to our own scheme, which on a server without
/// `WEBHOOK_SECRET` answered 503 "not configured": a retry signal for a request that can never
/// succeed.
#[test]
fn standard_webhooks_with_a_header_missing_is_401_not_503() {
    let server = TestServer::start_with(|config| {
        config.webhook_secret = None;
        config.senders.standard = Some(Keys::new(standard_secret(WHSEC).unwrap(), None));
    });
    let key = standard_secret(WHSEC).unwrap();
    let body = crate::support::message("std-2", "+1", "2025-01-15T10:00:00Z", None);
    let body = body.as_bytes();
    let now = now().to_string();
    let signature = standard::sign(&key, "msg_2", now.parse().unwrap(), body);
    let all = [
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    for missing in 0..all.len() {
        let headers: Vec<(&str, &str)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, header)| *header)
            .collect();
        let resp = server.send("POST", "/webhook", &headers, body);
        assert_eq!(
            resp.status,
            401,
            "without {}: {}",
            all[missing].0,
            resp.text()
        );
    }
    assert_eq!(
        server
            .metric(
                r#"hookbox_webhook_requests_total{result="invalid_signature",source="standard"}"#
            )
            .unwrap_or(0.0),
        3.0
    );
    let resp = server.send("POST", "/webhook", &all, body);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// The URL Twilio signs, spelled the ways an operator and Twilio may disagree on: the default
/// port present on one side only, a query with percent-escapes (signed as sent, not decoded).
/// Each verifies; a query changed by one byte does not.
#[test]
fn twilio_urls_with_and_without_the_default_port_and_an_escaped_query_verify() {
    let params = [
        ("MessageSid", "SMport"),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
    ];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let target = "/webhook/twilio?tag=%41b%20c&x=1";
    for (configured, signed, status) in [
        (
            "https://hooks.example.com:443",
            "https://hooks.example.com",
            200,
        ),
        (
            "https://hooks.example.com",
            "https://hooks.example.com:443",
            200,
        ),
        (
            "http://hooks.example.com:8080",
            "http://hooks.example.com:8080",
            200,
        ),
        (
            "https://hooks.example.com",
            "https://hooks.example.com:8443",
            403,
        ),
        ("https://hooks.example.com", "http://hooks.example.com", 403),
    ] {
        let server = TestServer::start_with(|config| {
            config.senders.twilio = Some(Twilio {
                auth_token: Keys::new(TOKEN, None),
                public_url: configured.to_owned(),
            });
        });
        let signature = hookbox::signature::twilio::sign(
            TOKEN.as_bytes(),
            &format!("{signed}{target}"),
            &owned,
        );
        let body = crate::senders_twilio::form(&params);
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", signature.as_str()),
        ];
        let resp = server.send("POST", target, &headers, &body);
        assert_eq!(
            resp.status,
            status,
            "{configured} vs {signed}: {}",
            resp.text()
        );
        let changed = server.send("POST", "/webhook/twilio?tag=Ab%20c&x=1", &headers, &body);
        assert_eq!(changed.status, 403, "the query is signed as sent");
    }
}
