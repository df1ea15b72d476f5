//! `POST /webhook/twilio`: Twilio Messaging's incoming-message webhook.
//!
//! A form-encoded POST signed with `X-Twilio-Signature` over the public URL Twilio called
//! (`HOOKBOX_PUBLIC_URL` + path + query) and the sorted parameters; a mismatch is a 403, as
//! Twilio's own libraries answer. A message is mapped (`MessageSid`, `From`, `To` without a
//! `whatsapp:` prefix, `Body`; Twilio sends no timestamp, so `ts` is the arrival time), validated
//! as `/webhook` validates and stored exactly once; a status callback is counted, not stored.
//! Either way the answer is an empty TwiML document, so Twilio sends no reply.

use serde_json::{Map, Value, json};

use super::webhook::mapped;
use super::{Decision, Intake, Verdict, WebhookNote};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::message::Message;
use crate::metrics::{EventKind, Source, WebhookResult};
use crate::signature::twilio as signature;
use crate::timestamp;

/// The answer Twilio gets for every message it delivered, new or duplicate.
pub fn twiml() -> Response {
    Response::text(
        200,
        "text/xml",
        br#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#.to_vec(),
    )
}

pub fn post(ctx: &Intake<'_>, request: &Request) -> Verdict {
    let mut note = WebhookNote::new(Source::Twilio, WebhookResult::Error);
    let decision = match check(ctx, request, &mut note) {
        Ok(Some(message)) => Ok(Decision::Store(vec![message])),
        Ok(None) => {
            ctx.metrics.observe_event(Source::Twilio, EventKind::Status);
            note.result = WebhookResult::Acknowledged;
            Ok(Decision::Answer(twiml()))
        }
        Err(error) => Err(error),
    };
    Verdict { note, decision }
}

/// The message to store, or `None` for a status callback.
fn check(
    ctx: &Intake<'_>,
    request: &Request,
    note: &mut WebhookNote,
) -> Result<Option<Message>, Error> {
    let Some(twilio) = &ctx.config.senders.twilio else {
        return Err(Error::Unavailable("twilio not configured"));
    };
    let body = request.body()?;
    let invalid = Error::Forbidden("invalid signature");
    // A body that is not form-encoded UTF-8 cannot have been signed by Twilio.
    let params = signature::form_pairs(body).ok_or(invalid.clone())?;
    let url = match &request.query {
        Some(query) => format!("{}{}?{query}", twilio.public_url, request.path),
        None => format!("{}{}", twilio.public_url, request.path),
    };
    let header = request.header("x-twilio-signature");
    note.key = signature::verify(&twilio.auth_token, &url, &params, header);
    if note.key.is_none() {
        return Err(invalid);
    }
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let status = param("MessageStatus").or(param("SmsStatus"));
    if status.is_some_and(|status| status != "received") {
        return Ok(None);
    }
    let mut fields = Map::new();
    let mut field = |ours: &str, value: Option<&str>| {
        if let Some(value) = value {
            fields.insert(ours.to_owned(), json!(value));
        }
    };
    fn address(value: &str) -> &str {
        value.strip_prefix("whatsapp:").unwrap_or(value)
    }
    field("message_id", param("MessageSid"));
    field("from", param("From").map(address));
    field("to", param("To").map(address));
    field("ts", Some(&timestamp::now_utc()));
    field("text", param("Body"));
    note.message_id = param("MessageSid").map(str::to_owned);
    mapped(&Value::Object(fields)).map(Some)
}
