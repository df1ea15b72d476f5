//! Standard Webhooks v1 on `/webhook` over real HTTP (a fresh timestamp, a stale one, several
//! signatures), and secret rotation for every sender: the previous secret is accepted while it
//! is set, metrics say which key matched, and once it is unset it is refused.

use std::time::{SystemTime, UNIX_EPOCH};

use hookbox::config::{Keys, Secret, Twilio, standard_secret};
use hookbox::signature::standard;
use serde_json::json;

use crate::senders_twilio;
use crate::senders_whatsapp;
use crate::support::{Resp, SECRET, TestServer, message};

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OLD_WHSEC: &str = "whsec_b2xkIGtleSBmb3IgdGhlIHJvdGF0aW9uIHRlc3Q=";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn key(whsec: &str) -> Vec<u8> {
    standard_secret(whsec).unwrap()
}

fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.senders.standard = Some(Keys::new(key(WHSEC), None));
    })
}

/// POSTs `body` to `/webhook` with the three Standard Webhooks headers (any timestamp text).
pub fn post_standard(
    server: &TestServer,
    id: &str,
    timestamp: impl std::fmt::Display,
    signature: &str,
    body: &[u8],
) -> Resp {
    server.send(
        "POST",
        "/webhook",
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body,
    )
}

fn total(server: &TestServer) -> u64 {
    server.get("/messages").json()["total"].as_u64().unwrap()
}

#[test]
fn a_signed_message_is_stored_once_and_counted_as_standard() {
    let server = server();
    let body = message("sw-1", "+14155550100", "2025-01-15T10:00:00Z", Some("hi"));
    let at = now();
    let signature = standard::sign(&key(WHSEC), "msg_1", at, body.as_bytes());
    let answer = post_standard(&server, "msg_1", at, &signature, body.as_bytes());
    assert_eq!(
        (answer.status, answer.json()),
        (200, json!({"status": "ok"}))
    );
    let again = post_standard(&server, "msg_1", at, &signature, body.as_bytes());
    assert_eq!(again.status, 200);
    assert_eq!(total(&server), 1);
    let series = |result: &str| {
        server.metric(&format!(
            r#"hookbox_webhook_requests_total{{result="{result}",source="standard"}}"#
        ))
    };
    assert_eq!(
        (series("created"), series("duplicate")),
        (Some(1.0), Some(1.0))
    );
    // The body is still validated as a message.
    let not_a_message = br#"{"email":"test@example.com","username":"test_user"}"#;
    let signature = standard::sign(&key(WHSEC), "msg_2", at, not_a_message);
    assert_eq!(
        post_standard(&server, "msg_2", at, &signature, not_a_message).status,
        422
    );
}

#[test]
fn a_stale_or_future_timestamp_is_a_401_even_when_well_signed() {
    let server = server();
    let body = message("sw-stale", "+14155550100", "2025-01-15T10:00:00Z", None);
    for at in [now() - 600, now() + 600] {
        let signature = standard::sign(&key(WHSEC), "msg_s", at, body.as_bytes());
        let answer = post_standard(&server, "msg_s", at, &signature, body.as_bytes());
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json(), json!({"detail": "invalid signature"}));
    }
    assert_eq!(total(&server), 0);
}

#[test]
fn any_one_of_several_signatures_accepts_and_a_wrong_one_alone_is_a_401() {
    let server = server();
    let body = message("sw-multi", "+14155550100", "2025-01-15T10:00:00Z", None);
    let at = now();
    let wrong = standard::sign(b"some other key", "msg_m", at, body.as_bytes());
    let right = standard::sign(&key(WHSEC), "msg_m", at, body.as_bytes());
    let alone = post_standard(&server, "msg_m", at, &wrong, body.as_bytes());
    assert_eq!(alone.status, 401);
    let both = format!("{wrong} {right}");
    assert_eq!(
        post_standard(&server, "msg_m", at, &both, body.as_bytes()).status,
        200
    );
    assert_eq!(total(&server), 1);
}

#[test]
fn x_signature_wins_over_standard_headers() {
    let server = server();
    let body = message("sw-x", "+14155550100", "2025-01-15T10:00:00Z", None);
    let at = now();
    let standard_signature = standard::sign(&key(WHSEC), "msg_x", at, body.as_bytes());
    let answer = server.send(
        "POST",
        "/webhook",
        &[
            ("X-Signature", "00"),
            ("webhook-id", "msg_x"),
            ("webhook-timestamp", &at.to_string()),
            ("webhook-signature", &standard_signature),
        ],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 401);
}

/// Every sender accepts its previous secret while `…_PREVIOUS` is set, and says so.
#[test]
fn rotation_accepts_the_previous_secret_only_while_it_is_set() {
    let rotating = |previous: bool| {
        TestServer::start_with(|config| {
            let old = |value: &[u8]| previous.then(|| value.to_vec());
            config.webhook_secret = Some(Secret::new("new-webhook-secret"));
            config.senders.webhook_previous = previous.then(|| Secret::new(SECRET));
            config.senders.whatsapp_app_secret = Some(Keys::new(
                "new-app-secret",
                old(senders_whatsapp::APP_SECRET.as_bytes()),
            ));
            config.senders.twilio = Some(Twilio {
                auth_token: Keys::new("new-token", old(senders_twilio::TOKEN.as_bytes())),
                public_url: senders_twilio::PUBLIC_URL.to_owned(),
            });
            config.senders.standard = Some(Keys::new(key(WHSEC), old(&key(OLD_WHSEC))));
        })
    };
    // Each sender signs with the old secret.
    let send_all = |server: &TestServer, round: &str| -> Vec<u16> {
        let webhook =
            server.post_message(&format!("{round}-w"), "+1", "2025-01-15T10:00:00Z", None);
        let body = senders_whatsapp::payload(vec![senders_whatsapp::change(
            json!([senders_whatsapp::text_message(
                &format!("{round}-wa"),
                1749416383,
                "x"
            )]),
            json!(null),
        )]);
        let whatsapp = senders_whatsapp::post_signed(server, senders_whatsapp::APP_SECRET, &body);
        let params = senders_twilio::whatsapp_message(&format!("{round}-tw"), "x");
        let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let twilio =
            senders_twilio::post_signed(server, senders_twilio::TOKEN, "/webhook/twilio", &params);
        let body = message(&format!("{round}-sw"), "+1", "2025-01-15T10:00:00Z", None);
        let at = now();
        let signature = standard::sign(&key(OLD_WHSEC), "msg_r", at, body.as_bytes());
        let standard = post_standard(server, "msg_r", at, &signature, body.as_bytes());
        vec![
            webhook.status,
            whatsapp.status,
            twilio.status,
            standard.status,
        ]
    };
    let during = rotating(true);
    assert_eq!(send_all(&during, "during"), vec![200, 200, 200, 200]);
    for source in ["webhook", "whatsapp", "twilio", "standard"] {
        let previous =
            format!(r#"hookbox_signature_keys_total{{key="previous",source="{source}"}}"#);
        assert_eq!(during.metric(&previous), Some(1.0), "{source}");
        let current = format!(r#"hookbox_signature_keys_total{{key="current",source="{source}"}}"#);
        assert_eq!(during.metric(&current), None, "{source}");
    }
    assert_eq!(total(&during), 4);
    drop(during);

    let after = rotating(false);
    assert_eq!(send_all(&after, "after"), vec![401, 401, 403, 401]);
    assert_eq!(total(&after), 0);
}
