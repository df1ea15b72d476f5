//! `/webhook/whatsapp`: Meta's WhatsApp Cloud API.
//!
//! `GET` is the subscription handshake: the challenge is echoed when the verify token matches.
//! `POST` is verified (`X-Hub-Signature-256` over the raw bytes) before anything is parsed, then
//! every message of every entry and change is mapped to our five fields and validated exactly
//! as `/webhook` validates, and all of them go to the writer as one ticket: one commit, one 200.
//!
//! Statuses, other fields and message types we do not map are acknowledged and counted, never
//! stored. A well-signed payload we cannot read is a 200 too, counted `invalid` and logged with
//! the reason, with nothing of it stored: Meta retries every non-2xx for days, and retrying a
//! payload that will never parse only fills its queue and our logs.

use serde_json::{Map, Value, json};

use super::webhook::{self, mapped};
use super::{Context, Decision, Intake, Reply, Verdict, WebhookNote};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::message::Message;
use crate::metrics::{EventKind, Source, WebhookResult};
use crate::signature;
use crate::timestamp;

/// `GET /webhook/whatsapp?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C` → `C`.
pub fn verify(ctx: &mut Context<'_>, request: &Request) -> Result<Reply, Error> {
    let Some(token) = &ctx.config.senders.whatsapp_verify_token else {
        return Err(Error::Unavailable("whatsapp not configured"));
    };
    let param = |name| request.query_param(name).ok().flatten();
    let mode = param("hub.mode");
    let given = param("hub.verify_token").unwrap_or_default();
    let matches = signature::same_secret(token.expose(), given.as_bytes());
    match param("hub.challenge") {
        Some(challenge) if matches && mode.as_deref() == Some("subscribe") => Ok(Reply::Now(
            Response::text(200, "text/plain; charset=utf-8", challenge.into_bytes()),
        )),
        _ => Err(Error::Forbidden("verification failed")),
    }
}

/// `POST /webhook/whatsapp`.
pub fn post(ctx: &Intake<'_>, request: &Request) -> Verdict {
    let mut note = WebhookNote::new(Source::WhatsApp, WebhookResult::Error);
    let decision = match check(ctx, request, &mut note) {
        Ok(Read::Messages(messages)) => Ok(Decision::Store(messages)),
        Ok(Read::Nothing) => {
            note.result = WebhookResult::Acknowledged;
            Ok(Decision::Answer(webhook::ok(Source::WhatsApp)))
        }
        Ok(Read::Invalid(reason)) => {
            ctx.metrics
                .observe_event(Source::WhatsApp, EventKind::Invalid);
            note.result = WebhookResult::ValidationError;
            note.reason = Some(reason);
            Ok(Decision::Answer(webhook::ok(Source::WhatsApp)))
        }
        Err(error) => Err(error),
    };
    Verdict { note, decision }
}

/// What a verified payload held.
enum Read {
    Messages(Vec<Message>),
    /// Only what is counted (statuses, other fields, unmapped types), or nothing at all.
    Nothing,
    /// Well signed but unreadable: the reason, for the log line.
    Invalid(String),
}

fn check(ctx: &Intake<'_>, request: &Request, note: &mut WebhookNote) -> Result<Read, Error> {
    let Some(keys) = &ctx.config.senders.whatsapp_app_secret else {
        return Err(Error::Unavailable("whatsapp not configured"));
    };
    let body = request.body()?;
    note.key = signature::verify_hub(keys, body, request.header("x-hub-signature-256"));
    if note.key.is_none() {
        return Err(Error::Unauthorized);
    }
    let mut events = Vec::new();
    let messages = match read(body, &mut events) {
        Ok(messages) => messages,
        Err(reason) => return Ok(Read::Invalid(reason)),
    };
    // Counted only once the whole payload has been read: an invalid one counts once, as invalid.
    for kind in events {
        ctx.metrics.observe_event(Source::WhatsApp, kind);
    }
    note.message_id = messages.first().map(|message| message.message_id.clone());
    note.messages = (messages.len() > 1).then_some(messages.len());
    Ok(if messages.is_empty() {
        Read::Nothing
    } else {
        Read::Messages(messages)
    })
}

/// Every message of the payload, mapped and validated; the events beside them go to `events`.
/// Any problem makes the whole payload invalid (its reason), so none of it is stored half.
fn read(body: &[u8], events: &mut Vec<EventKind>) -> Result<Vec<Message>, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|error| format!("not JSON: {error}"))?;
    if payload.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        return Err("object is not \"whatsapp_business_account\"".to_owned());
    }
    let mut messages = Vec::new();
    for (e, entry) in array(&payload, "entry", "")?.iter().enumerate() {
        let at = format!("entry[{e}]");
        for (c, change) in array(entry, "changes", &at)?.iter().enumerate() {
            let at = format!("{at}.changes[{c}]");
            if change.get("field").and_then(Value::as_str) != Some("messages") {
                events.push(EventKind::OtherField);
                continue;
            }
            let value = change
                .get("value")
                .filter(|value| value.is_object())
                .ok_or_else(|| format!("{at}.value is not an object"))?;
            for _ in optional_array(value, "statuses", &at)? {
                events.push(EventKind::Status);
            }
            let incoming = optional_array(value, "messages", &at)?;
            if incoming.is_empty() {
                continue;
            }
            let display = value
                .pointer("/metadata/display_phone_number")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.value.metadata.display_phone_number is missing"))?;
            let to = format!(
                "+{}",
                display
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
            );
            for (m, message) in incoming.iter().enumerate() {
                let at = format!("{at}.value.messages[{m}]");
                match map(message, &to).map_err(|why| format!("{at}: {why}"))? {
                    Some(message) => messages.push(message),
                    None => events.push(EventKind::UnmappedType),
                }
            }
        }
    }
    Ok(messages)
}

/// Message types whose text we take: `text.body`, or the media's `caption` (else null).
const MEDIA: [&str; 5] = ["image", "video", "document", "audio", "sticker"];

/// One WhatsApp message as ours, validated as `/webhook` validates; `None` for a type we do
/// not map.
fn map(message: &Value, to: &str) -> Result<Option<Message>, String> {
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("");
    let text = match kind {
        "text" => message.pointer("/text/body").cloned(),
        media if MEDIA.contains(&media) => {
            message.get(media).and_then(|m| m.get("caption")).cloned()
        }
        _ => return Ok(None),
    };
    let field = |name: &str| message.get(name).cloned().unwrap_or(Value::Null);
    let from = match field("from") {
        Value::String(from) => json!(format!("+{from}")),
        other => other,
    };
    let mut fields = Map::new();
    fields.insert("message_id".to_owned(), field("id"));
    fields.insert("from".to_owned(), from);
    fields.insert("to".to_owned(), json!(to));
    fields.insert("ts".to_owned(), unix_ts(&field("timestamp"))?);
    fields.insert("text".to_owned(), text.unwrap_or(Value::Null));
    mapped(&Value::Object(fields))
        .map(Some)
        .map_err(|error| webhook::reason(&error))
}

/// Meta's `timestamp` (unix seconds, as a string or a number) as `YYYY-MM-DDTHH:MM:SSZ`.
fn unix_ts(value: &Value) -> Result<Value, String> {
    let seconds = match value {
        Value::String(text) => text.parse::<u64>().ok(),
        Value::Number(number) => number.as_u64(),
        _ => None,
    };
    // Up to the year 9999: beyond, the date has more than four digits and no `ts` can hold it.
    let seconds = seconds
        .filter(|seconds| *seconds < 253_402_300_800)
        .ok_or("timestamp is not unix seconds")?;
    let formatted =
        timestamp::format_utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds));
    Ok(json!(format!("{}Z", &formatted[..19])))
}

fn array<'v>(value: &'v Value, name: &str, at: &str) -> Result<&'v Vec<Value>, String> {
    value.get(name).and_then(Value::as_array).ok_or_else(|| {
        format!(
            "{at}{}{name} is not an array",
            if at.is_empty() { "" } else { "." }
        )
    })
}

fn optional_array<'v>(value: &'v Value, name: &str, at: &str) -> Result<&'v [Value], String> {
    match value.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(_) => array(value, name, &format!("{at}.value")).map(Vec::as_slice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(value: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
        }))
        .unwrap()
    }

    fn metadata() -> Value {
        json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
    }

    #[test]
    fn maps_text_and_captions_and_counts_the_rest() {
        let body = payload(json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "messages": [
                {"from": "16505551234", "id": "wamid.A", "timestamp": "1749416383", "type": "text",
                 "text": {"body": "Hello"}},
                {"from": "16505551234", "id": "wamid.B", "timestamp": "1749416384", "type": "image",
                 "image": {"caption": "a cat", "mime_type": "image/jpeg", "id": "1"}},
                {"from": "16505551234", "id": "wamid.C", "timestamp": "1749416385", "type": "audio",
                 "audio": {"id": "2"}},
                {"from": "16505551234", "id": "wamid.D", "timestamp": "1749416386", "type": "reaction",
                 "reaction": {"message_id": "wamid.A", "emoji": "👍"}}
            ],
            "statuses": [{"id": "wamid.X", "status": "delivered", "timestamp": "1749416390"}]
        }));
        let mut events = Vec::new();
        let messages = read(&body, &mut events).unwrap();
        let got: Vec<_> = messages
            .iter()
            .map(|m| {
                (
                    m.message_id.as_str(),
                    m.from.as_str(),
                    m.to.as_str(),
                    m.ts.as_str(),
                    m.text.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "wamid.A",
                    "+16505551234",
                    "+15550783881",
                    "2025-06-08T20:59:43Z",
                    Some("Hello")
                ),
                (
                    "wamid.B",
                    "+16505551234",
                    "+15550783881",
                    "2025-06-08T20:59:44Z",
                    Some("a cat")
                ),
                (
                    "wamid.C",
                    "+16505551234",
                    "+15550783881",
                    "2025-06-08T20:59:45Z",
                    None
                ),
            ]
        );
        assert_eq!(events, vec![EventKind::Status, EventKind::UnmappedType]);
    }

    #[test]
    fn one_bad_message_makes_the_whole_payload_invalid() {
        let body = payload(json!({
            "metadata": metadata(),
            "messages": [
                {"from": "16505551234", "id": "wamid.A", "timestamp": "1749416383", "type": "text",
                 "text": {"body": "fine"}},
                {"from": "not digits", "id": "wamid.B", "timestamp": "1749416383", "type": "text",
                 "text": {"body": "bad"}}
            ]
        }));
        let reason = read(&body, &mut Vec::new()).unwrap_err();
        assert!(
            reason.starts_with("entry[0].changes[0].value.messages[1]: "),
            "{reason}"
        );
        assert!(reason.contains("from"), "{reason}");
        assert!(
            !reason.contains("bad"),
            "no message text in the log: {reason}"
        );
        for body in [
            b"not json".to_vec(),
            br#"{"object":"page","entry":[]}"#.to_vec(),
            br#"{"object":"whatsapp_business_account","entry":{}}"#.to_vec(),
            payload(
                json!({"metadata": metadata(), "messages": [{"id": "w", "from": "1",
                "timestamp": "soon", "type": "text", "text": {"body": "x"}}]}),
            ),
            payload(
                json!({"messages": [{"id": "w", "from": "1", "timestamp": "1",
                "type": "text", "text": {"body": "x"}}]}),
            ),
        ] {
            assert!(read(&body, &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn other_fields_are_counted_not_read() {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [
                {"field": "account_update", "value": {"anything": true}},
                {"field": "messages", "value": {"metadata": metadata(),
                    "statuses": [{"id": "a"}, {"id": "b"}]}}
            ]}]
        }))
        .unwrap();
        let mut events = Vec::new();
        assert!(read(&body, &mut events).unwrap().is_empty());
        assert_eq!(
            events,
            vec![EventKind::OtherField, EventKind::Status, EventKind::Status]
        );
    }
}
