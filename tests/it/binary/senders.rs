//! The senders as the built binary logs them: every webhook line says which sender spoke
//! (`source`) and which key verified it (`key`: `current`, `previous`, never the key); a
//! WhatsApp POST of several messages is one line with the first id and their number; a
//! well-signed payload acknowledged without storing says why, without its text. And `hookbox
//! sign` prints what the server accepts.

use serde_json::{Value, json};

use super::harness::*;
use crate::support::{TempDir, message, sign};

const OLD_SECRET: &str = "the-old-webhook-secret";
const APP_SECRET: &str = "whatsapp-app-secret-for-logs";

fn whatsapp(messages: Value) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1"},
            "messages": messages}}]}]})
    .to_string()
}

fn hub_signature(body: &str) -> String {
    format!(
        "sha256={}",
        hookbox::signature::sign_hex(APP_SECRET.as_bytes(), body.as_bytes())
    )
}

#[test]
fn webhook_lines_say_the_source_and_the_key_never_the_secret_or_the_text() {
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path())
        .env("HOOKBOX_WEBHOOK_SECRET_PREVIOUS", OLD_SECRET)
        .env("HOOKBOX_WHATSAPP_APP_SECRET", APP_SECRET)
        .start();

    let body = message("old-key-1", FROM, TS, Some("signed the old way"));
    let old = hookbox::signature::sign_hex(OLD_SECRET.as_bytes(), body.as_bytes());
    let answer = send_to(
        addr,
        "POST",
        "/webhook",
        &[("X-Signature", &old), ("X-Request-ID", "rid-old")],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());

    let two = whatsapp(json!([
        {"from": "16505551234", "id": "wamid.L1", "timestamp": "1749416383", "type": "text",
         "text": {"body": "first secret words"}},
        {"from": "16505551234", "id": "wamid.L2", "timestamp": "1749416384", "type": "text",
         "text": {"body": "second secret words"}}
    ]));
    let answer = send_to(
        addr,
        "POST",
        "/webhook/whatsapp",
        &[
            ("X-Hub-Signature-256", &hub_signature(&two)),
            ("X-Request-ID", "rid-wa"),
        ],
        two.as_bytes(),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());

    let bad = whatsapp(json!([
        {"from": "not digits", "id": "wamid.L3", "timestamp": "1749416385", "type": "text",
         "text": {"body": "never logged words"}}
    ]));
    let answer = send_to(
        addr,
        "POST",
        "/webhook/whatsapp",
        &[
            ("X-Hub-Signature-256", &hub_signature(&bad)),
            ("X-Request-ID", "rid-wa-bad"),
        ],
        bad.as_bytes(),
    );
    assert_eq!(
        answer.status, 200,
        "Meta would retry anything else for days"
    );

    let finished = proc.stop("TERM");
    let lines = finished.json_lines();
    let line = |rid: &str| {
        lines
            .iter()
            .find(|line| line["request_id"] == rid)
            .unwrap_or_else(|| panic!("no line for {rid}: {}", finished.describe()))
            .clone()
    };
    let old_line = line("rid-old");
    assert_eq!(
        (&old_line["source"], &old_line["key"], &old_line["result"]),
        (&json!("webhook"), &json!("previous"), &json!("created"))
    );
    let wa = line("rid-wa");
    assert_eq!(wa["source"], "whatsapp");
    assert_eq!(wa["key"], "current");
    assert_eq!(wa["path"], "/webhook/whatsapp");
    assert_eq!(wa["message_id"], "wamid.L1");
    assert_eq!(wa["messages"], 2);
    assert_eq!(wa["result"], "created");
    let bad_line = line("rid-wa-bad");
    assert_eq!(bad_line["status"], 200);
    assert_eq!(bad_line["result"], "validation_error");
    let reason = bad_line["reason"].as_str().unwrap();
    assert!(
        reason.contains("messages[0]") && reason.contains("from"),
        "{reason}"
    );

    let everything = format!("{}{}", finished.stdout.join("\n"), finished.stderr);
    for secret in [OLD_SECRET, APP_SECRET, "secret words", "never logged"] {
        assert!(
            !everything.contains(secret),
            "{secret:?} reached the output"
        );
    }
}

#[test]
fn sign_prints_the_x_signature_and_fails_without_a_secret() {
    let dir = TempDir::new();
    let launch = Launch::new(dir.path());
    let body = message("signed-1", FROM, TS, None);
    let output = launch.run_args(&["sign"], body.as_bytes());
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, format!("{}\n", sign(body.as_bytes())));
    let unset = launch
        .clone_with("WEBHOOK_SECRET", "")
        .run_args(&["sign", "-"], b"{}");
    assert_eq!(unset.status.code(), Some(1));
    assert!(unset.stdout.is_empty());
    let usage = launch.run_args(&["sign", "a", "b"], b"");
    assert_eq!(usage.status.code(), Some(2));
}

/// The careless operator: an empty body is signed (it is a body), a directory or a missing file
/// is exit 1 naming it, and two names for the body are exit 2 rather than one picked silently.
#[test]
fn sign_refuses_a_directory_a_missing_file_and_two_bodies() {
    let dir = TempDir::new();
    let launch = Launch::new(dir.path());
    let empty = launch.run_args(&["sign"], b"");
    assert!(empty.status.success(), "{empty:?}");
    assert_eq!(
        String::from_utf8(empty.stdout).unwrap(),
        format!("{}\n", sign(b""))
    );
    let folder = dir.path().to_str().unwrap().to_owned();
    let missing = dir.path().join("absent.json");
    let missing = missing.to_str().unwrap();
    for (args, code, named) in [
        (vec!["sign", folder.as_str()], 1, folder.as_str()),
        (vec!["sign", missing], 1, missing),
        (vec!["sign", "-", "-"], 2, "\"-\""),
        (vec!["sign", "-", missing], 2, missing),
    ] {
        let output = launch.run_args(&args, b"{}");
        assert_eq!(output.status.code(), Some(code), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
