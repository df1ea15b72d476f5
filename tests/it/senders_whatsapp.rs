//! `/webhook/whatsapp` over real HTTP, with payloads shaped like Meta's documented ones: the
//! handshake, several messages in one POST (one commit, one 200), statuses only, a duplicate,
//! a bad signature, a well-signed malformed payload (200, counted, nothing stored).

use hookbox::config::Keys;
use serde_json::{Value, json};

use crate::support::{Resp, TestServer};

pub const APP_SECRET: &str = "whatsapp-app-secret";
const VERIFY_TOKEN: &str = "verify-me";

fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.senders.whatsapp_app_secret = Some(Keys::new(APP_SECRET, None));
        config.senders.whatsapp_verify_token = Some(hookbox::config::Secret::new(VERIFY_TOKEN));
    })
}

/// Meta's `messages` change as documented, holding `messages` and `statuses`.
pub fn change(messages: Value, statuses: Value) -> Value {
    json!({
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16505551234"}],
            "messages": messages,
            "statuses": statuses
        }
    })
}

pub fn text_message(id: &str, timestamp: u64, body: &str) -> Value {
    json!({"from": "16505551234", "id": id, "timestamp": timestamp.to_string(), "type": "text",
           "text": {"body": body}})
}

pub fn payload(changes: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": changes}]
    }))
    .unwrap()
}

pub fn post_signed(server: &TestServer, secret: &str, body: &[u8]) -> Resp {
    let signature = format!(
        "sha256={}",
        hookbox::signature::sign_hex(secret.as_bytes(), body)
    );
    server.send(
        "POST",
        "/webhook/whatsapp",
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    )
}

fn post(server: &TestServer, body: &[u8]) -> Resp {
    post_signed(server, APP_SECRET, body)
}

fn stored(server: &TestServer) -> Vec<Value> {
    let page = server.get("/messages?limit=100").json();
    page["data"].as_array().unwrap().clone()
}

fn metric(server: &TestServer, series: &str) -> f64 {
    server.metric(series).unwrap_or(0.0)
}

#[test]
fn the_handshake_echoes_the_challenge_only_for_the_verify_token() {
    let server = server();
    let good = server.get(
        "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444",
    );
    assert_eq!(good.status, 200);
    assert_eq!(good.body, b"1158201444");
    assert!(
        good.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    for target in [
        "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=verify-m&hub.challenge=1",
        "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me2&hub.challenge=1",
        "/webhook/whatsapp?hub.mode=unsubscribe&hub.verify_token=verify-me&hub.challenge=1",
        "/webhook/whatsapp?hub.mode=subscribe&hub.challenge=1",
        "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me",
        "/webhook/whatsapp",
    ] {
        let refused = server.get(target);
        assert_eq!(refused.status, 403, "{target}");
        assert_eq!(refused.json(), json!({"detail": "verification failed"}));
    }
}

#[test]
fn several_messages_in_one_post_are_stored_in_one_commit_with_one_200() {
    let server = server();
    let batches = metric(&server, "hookbox_commit_batch_size_count");
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "1", "changes": [change(json!([
                text_message("wamid.A", 1749416383, "Hello"),
                {"from": "16505551234", "id": "wamid.B", "timestamp": "1749416384", "type": "image",
                 "image": {"caption": "a cat", "mime_type": "image/jpeg", "sha256": "x", "id": "9"}}
            ]), json!(null))]},
            {"id": "2", "changes": [change(json!([text_message("wamid.C", 1749416385, "Bye")]),
                                    json!(null))]}
        ]
    }))
    .unwrap();
    let answer = post(&server, &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"status": "ok"}));
    assert_eq!(
        stored(&server),
        vec![
            json!({"message_id": "wamid.A", "from": "+16505551234", "to": "+15550783881",
                   "ts": "2025-06-08T20:59:43Z", "text": "Hello"}),
            json!({"message_id": "wamid.B", "from": "+16505551234", "to": "+15550783881",
                   "ts": "2025-06-08T20:59:44Z", "text": "a cat"}),
            json!({"message_id": "wamid.C", "from": "+16505551234", "to": "+15550783881",
                   "ts": "2025-06-08T20:59:45Z", "text": "Bye"}),
        ]
    );
    // One commit held all three (nothing else was written meanwhile).
    assert_eq!(
        metric(&server, "hookbox_commit_batch_size_count") - batches,
        1.0
    );
    assert_eq!(metric(&server, "hookbox_commit_batch_size_sum"), 3.0);
    assert_eq!(
        metric(
            &server,
            r#"hookbox_webhook_requests_total{result="created",source="whatsapp"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &server,
            r#"http_requests_total{path="/webhook/whatsapp",status="200"}"#
        ),
        1.0
    );
}

#[test]
fn statuses_only_are_acknowledged_and_counted_but_not_stored() {
    let server = server();
    let statuses = json!([
        {"id": "wamid.X", "status": "sent", "timestamp": "1749416390", "recipient_id": "16505551234"},
        {"id": "wamid.X", "status": "delivered", "timestamp": "1749416391", "recipient_id": "16505551234"}
    ]);
    let other = json!({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}});
    let answer = post(
        &server,
        &payload(vec![change(json!(null), statuses), other]),
    );
    assert_eq!(answer.status, 200);
    assert!(stored(&server).is_empty());
    let events = |kind: &str| {
        metric(
            &server,
            &format!(r#"hookbox_sender_events_total{{kind="{kind}",source="whatsapp"}}"#),
        )
    };
    assert_eq!(events("status"), 2.0);
    assert_eq!(events("other_field"), 1.0);
    assert_eq!(
        metric(
            &server,
            r#"hookbox_webhook_requests_total{result="acknowledged",source="whatsapp"}"#
        ),
        1.0
    );
}

#[test]
fn a_duplicate_post_is_a_200_and_keeps_the_first_row() {
    let server = server();
    let first = payload(vec![change(
        json!([text_message("wamid.D", 1749416383, "first")]),
        json!(null),
    )]);
    let again = payload(vec![change(
        json!([text_message("wamid.D", 1749416399, "second")]),
        json!(null),
    )]);
    assert_eq!(post(&server, &first).status, 200);
    let answer = post(&server, &again);
    assert_eq!(
        (answer.status, answer.json()),
        (200, json!({"status": "ok"}))
    );
    let rows = stored(&server);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["text"], "first");
    assert_eq!(
        metric(
            &server,
            r#"hookbox_webhook_requests_total{result="duplicate",source="whatsapp"}"#
        ),
        1.0
    );
}

#[test]
fn a_bad_or_missing_signature_is_a_401_and_nothing_is_stored() {
    let server = server();
    let body = payload(vec![change(
        json!([text_message("wamid.E", 1749416383, "hi")]),
        json!(null),
    )]);
    assert_eq!(post_signed(&server, "another secret", &body).status, 401);
    let plain_hex = hookbox::signature::sign_hex(APP_SECRET.as_bytes(), &body);
    let without_prefix = server.send(
        "POST",
        "/webhook/whatsapp",
        &[("X-Hub-Signature-256", &plain_hex)],
        &body,
    );
    assert_eq!(without_prefix.status, 401);
    let unsigned = server.send("POST", "/webhook/whatsapp", &[], &body);
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.json(), json!({"detail": "invalid signature"}));
    assert!(stored(&server).is_empty());
    assert_eq!(
        metric(
            &server,
            r#"hookbox_webhook_requests_total{result="invalid_signature",source="whatsapp"}"#
        ),
        3.0
    );
}

#[test]
fn a_well_signed_malformed_payload_is_a_200_counted_invalid_with_nothing_stored() {
    let server = server();
    let half_good = payload(vec![change(
        json!([
            text_message("wamid.F", 1749416383, "fine"),
            {"from": "16505551234", "id": "wamid.G", "timestamp": "yesterday", "type": "text",
             "text": {"body": "bad"}}
        ]),
        json!([{"id": "wamid.X", "status": "read"}]),
    )]);
    for body in [half_good, b"{not json".to_vec(), b"[]".to_vec()] {
        let answer = post(&server, &body);
        assert_eq!(
            answer.status, 200,
            "Meta would retry anything else for days"
        );
    }
    assert!(stored(&server).is_empty(), "never stored half");
    assert_eq!(
        metric(
            &server,
            r#"hookbox_sender_events_total{kind="invalid",source="whatsapp"}"#
        ),
        3.0
    );
    // The statuses of an invalid payload are not counted: it counts once, as invalid.
    assert_eq!(
        metric(
            &server,
            r#"hookbox_sender_events_total{kind="status",source="whatsapp"}"#
        ),
        0.0
    );
}

/// Method, target, headers, the expected detail.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn senders_not_configured_answer_503_with_their_name() {
    let server = TestServer::start();
    let cases: [Case; 4] = [
        ("POST", "/webhook/whatsapp", &[], "whatsapp not configured"),
        (
            "GET",
            "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
            &[],
            "whatsapp not configured",
        ),
        ("POST", "/webhook/twilio", &[], "twilio not configured"),
        (
            "POST",
            "/webhook",
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", "v1,x"),
            ],
            "standard webhooks not configured",
        ),
    ];
    for (method, target, headers, detail) in cases {
        let answer = server.send(method, target, headers, b"{}");
        assert_eq!(answer.status, 503, "{target}");
        assert_eq!(answer.json(), json!({ "detail": detail }));
        assert!(answer.header("retry-after").is_some());
    }
}
