//! `/webhook/twilio` over real HTTP with Twilio's documented form parameters: a `whatsapp:`
//! address, a duplicate, a status callback, a bad signature, the documented example's
//! parameters and token, and the URL Twilio signs (`HOOKBOX_PUBLIC_URL` + path + query).

use hookbox::config::{Keys, Twilio};
use serde_json::{Value, json};

use crate::support::{Resp, TestServer};

pub const TOKEN: &str = "12345";
pub const PUBLIC_URL: &str = "https://mycompany.com";
const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.senders.twilio = Some(Twilio {
            auth_token: Keys::new(TOKEN, None),
            public_url: PUBLIC_URL.to_owned(),
        });
    })
}

/// Form-encodes `params` the way Twilio does (`+` and `:` escaped).
pub fn form(params: &[(&str, &str)]) -> Vec<u8> {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

pub fn post_signed(
    server: &TestServer,
    token: &str,
    target: &str,
    params: &[(&str, &str)],
) -> Resp {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let url = format!("{PUBLIC_URL}{target}");
    let signature = hookbox::signature::twilio::sign(token.as_bytes(), &url, &owned);
    server.send(
        "POST",
        target,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &signature),
        ],
        &form(params),
    )
}

/// An incoming WhatsApp message as Twilio posts it.
pub fn whatsapp_message(sid: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SmsMessageSid", sid.to_owned()),
        ("NumMedia", "0".to_owned()),
        ("ProfileName", "Kerry".to_owned()),
        ("SmsSid", sid.to_owned()),
        ("WaId", "14155550100".to_owned()),
        ("SmsStatus", "received".to_owned()),
        ("Body", body.to_owned()),
        ("To", "whatsapp:+14155238886".to_owned()),
        ("NumSegments", "1".to_owned()),
        ("MessageSid", sid.to_owned()),
        (
            "AccountSid",
            "AC00000000000000000000000000000000".to_owned(),
        ),
        ("From", "whatsapp:+14155550100".to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
    ]
}

fn borrowed<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

fn stored(server: &TestServer) -> Vec<Value> {
    server.get("/messages?limit=100").json()["data"]
        .as_array()
        .unwrap()
        .clone()
}

fn assert_twiml(answer: &Resp) {
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("text/xml"));
    assert_eq!(answer.text(), TWIML);
}

#[test]
fn a_whatsapp_message_is_stored_without_the_prefix_at_its_arrival_time_and_answered_in_twiml() {
    let server = server();
    let before = hookbox::timestamp::now_utc();
    let params = whatsapp_message("SM0123456789abcdef0123456789abcdef", "Hello there + 100%");
    let answer = post_signed(&server, TOKEN, "/webhook/twilio", &borrowed(&params));
    assert_twiml(&answer);
    let after = hookbox::timestamp::now_utc();
    let rows = stored(&server);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["message_id"], "SM0123456789abcdef0123456789abcdef");
    assert_eq!(row["from"], "+14155550100");
    assert_eq!(row["to"], "+14155238886");
    assert_eq!(row["text"], "Hello there + 100%");
    // Twilio sends no timestamp: the arrival time, between our two readings of the clock.
    let ts = row["ts"].as_str().unwrap();
    assert!(
        before.as_str() <= ts && ts <= after.as_str(),
        "{before} <= {ts} <= {after}"
    );
    assert_eq!(
        server.metric(r#"hookbox_webhook_requests_total{result="created",source="twilio"}"#),
        Some(1.0)
    );

    // The same message again (Twilio retries): the same TwiML, the first row kept.
    let again = whatsapp_message("SM0123456789abcdef0123456789abcdef", "changed");
    assert_twiml(&post_signed(
        &server,
        TOKEN,
        "/webhook/twilio",
        &borrowed(&again),
    ));
    let rows = stored(&server);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["text"], "Hello there + 100%");
    assert_eq!(
        server.metric(r#"hookbox_webhook_requests_total{result="duplicate",source="twilio"}"#),
        Some(1.0)
    );
}

#[test]
fn the_documented_example_verifies_with_its_query_string() {
    let server = server();
    // Twilio's documented parameters and token, on our path and with its query: the signature
    // verifies (a call is no message, so validation answers next, with 422).
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];
    let answer = post_signed(&server, TOKEN, "/webhook/twilio?foo=1&bar=2", &params);
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(
        answer.json()["detail"][0]["loc"],
        json!(["body", "message_id"])
    );
    // The same signature presented for another query is refused.
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let signature = hookbox::signature::twilio::sign(
        TOKEN.as_bytes(),
        "https://mycompany.com/webhook/twilio?foo=1&bar=2",
        &owned,
    );
    let moved = server.send(
        "POST",
        "/webhook/twilio?foo=1&bar=3",
        &[("X-Twilio-Signature", &signature)],
        &form(&params),
    );
    assert_eq!(moved.status, 403);
}

#[test]
fn a_bad_or_missing_signature_is_a_403_and_nothing_is_stored() {
    let server = server();
    let params = whatsapp_message("SMbad", "hi");
    let wrong = post_signed(&server, "54321", "/webhook/twilio", &borrowed(&params));
    assert_eq!(wrong.status, 403);
    assert_eq!(wrong.json(), json!({"detail": "invalid signature"}));
    let unsigned = server.send("POST", "/webhook/twilio", &[], &form(&borrowed(&params)));
    assert_eq!(unsigned.status, 403);
    assert!(stored(&server).is_empty());
    assert_eq!(
        server.metric(r#"hookbox_webhook_requests_total{result="forbidden",source="twilio"}"#),
        Some(2.0)
    );
}

#[test]
fn a_status_callback_is_acknowledged_and_counted_not_stored() {
    let server = server();
    let params = [
        ("MessageSid", "SM0000000000000000000000000000dd01"),
        ("MessageStatus", "delivered"),
        ("SmsStatus", "delivered"),
        ("To", "whatsapp:+14155550100"),
        ("From", "whatsapp:+14155238886"),
        ("AccountSid", "AC00000000000000000000000000000000"),
    ];
    assert_twiml(&post_signed(&server, TOKEN, "/webhook/twilio", &params));
    assert!(stored(&server).is_empty());
    assert_eq!(
        server.metric(r#"hookbox_sender_events_total{kind="status",source="twilio"}"#),
        Some(1.0)
    );
}
