//! `POST /webhook`: verify, validate, store exactly once. The sender routes
//! (`whatsapp`, `twilio`) end in the same `answer`, and a Standard Webhooks request takes the
//! same steps with its own signature check.
//!
//! The order is fixed by the contract and each step refuses before the next runs:
//! secret configured (503) → body within the limit (413) → signature over the raw bytes (401)
//! → JSON object with valid fields (422) → handed to the writer, which inserts it keyed by
//! `message_id`; 200 (created or duplicate) once the commit is durable.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Decision, Intake, Verdict, WebhookNote};
use crate::config::KeySlot;
use crate::error::Error;
use crate::http::{Request, Response};
use crate::message::{self, Message};
use crate::metrics::{Source, WebhookResult};
use crate::signature::{self, standard};
use crate::store::Inserted;

/// `POST /webhook`: our own `X-Signature`, or Standard Webhooks v1 when its three headers come
/// without one.
pub fn post(ctx: &Intake<'_>, request: &Request) -> Verdict {
    let standard_headers = match request.header("x-signature") {
        Some(_) => None,
        None => standard_headers(request),
    };
    let source = match standard_headers {
        Some(_) => Source::Standard,
        None => Source::Webhook,
    };
    let mut note = WebhookNote::new(source, WebhookResult::Error);
    let checked = match &standard_headers {
        Some(headers) => check_standard(ctx, request, headers, &mut note),
        None => check(ctx, request, &mut note),
    };
    Verdict {
        note,
        decision: checked.map(|message| Decision::Store(vec![message])),
    }
}

fn check(ctx: &Intake<'_>, request: &Request, note: &mut WebhookNote) -> Result<Message, Error> {
    let Some(secret) = &ctx.config.webhook_secret else {
        return Err(Error::Unavailable("webhook secret not configured"));
    };
    let body = request.body()?;
    let header = request.header("x-signature");
    note.key = if signature::verify(secret.expose(), body, header) {
        Some(KeySlot::Current)
    } else {
        let previous = ctx.config.senders.webhook_previous.as_ref();
        previous
            .filter(|previous| signature::verify(previous.expose(), body, header))
            .map(|_| KeySlot::Previous)
    };
    if note.key.is_none() {
        return Err(Error::Unauthorized);
    }
    parse(body, note)
}

/// The Standard Webhooks headers, when any of the three came. One that is missing is empty, and
/// so refused by `standard::verify` (401): a Standard sender that lost a header is told its
/// request is bad, not sent to our own scheme, which without `WEBHOOK_SECRET` answers 503 (a
/// retry signal for a request that can never succeed).
fn standard_headers(request: &Request) -> Option<standard::Headers<'_>> {
    let [id, timestamp, signature] =
        ["webhook-id", "webhook-timestamp", "webhook-signature"].map(|name| request.header(name));
    if id.is_none() && timestamp.is_none() && signature.is_none() {
        return None;
    }
    Some(standard::Headers {
        id: id.unwrap_or_default(),
        timestamp: timestamp.unwrap_or_default(),
        signature: signature.unwrap_or_default(),
    })
}

fn check_standard(
    ctx: &Intake<'_>,
    request: &Request,
    headers: &standard::Headers<'_>,
    note: &mut WebhookNote,
) -> Result<Message, Error> {
    let Some(keys) = &ctx.config.senders.standard else {
        return Err(Error::Unavailable("standard webhooks not configured"));
    };
    let body = request.body()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    match standard::verify(keys, headers, body, now, ctx.config.senders.tolerance) {
        Ok(key) => note.key = Some(key),
        Err(refusal) => {
            note.reason = Some(refusal.as_str().to_owned());
            return Err(Error::Unauthorized);
        }
    }
    parse(body, note)
}

/// A sender's message mapped to our five fields, validated exactly as a `/webhook` body.
pub fn mapped(fields: &serde_json::Value) -> Result<Message, Error> {
    let body = serde_json::to_vec(fields).expect("a JSON value serializes");
    message::parse(&body).result.map_err(Error::from)
}

/// A validation failure in a line for the log: where and what, never the value sent.
pub fn reason(error: &Error) -> String {
    match error {
        Error::Unprocessable(problems) => problems
            .iter()
            .map(|problem| {
                let loc: Vec<String> = problem
                    .loc
                    .iter()
                    .map(|part| {
                        part.as_str()
                            .map_or_else(|| part.to_string(), str::to_owned)
                    })
                    .collect();
                format!("{}: {}", loc.join("."), problem.msg)
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn parse(body: &[u8], note: &mut WebhookNote) -> Result<Message, Error> {
    let parsed = message::parse(body);
    note.message_id = parsed.message_id;
    parsed.result.map_err(Error::from)
}

/// The outcome of a request whose messages were committed: `created` when at least one is
/// new, else `duplicate`.
pub fn stored(inserted: &[Inserted]) -> WebhookResult {
    if inserted.contains(&Inserted::Created) {
        WebhookResult::Created
    } else {
        WebhookResult::Duplicate
    }
}

/// The 200 a sender gets for what it sent, stored or only acknowledged.
pub fn ok(source: Source) -> Response {
    match source {
        Source::Twilio => super::twilio::twiml(),
        _ => Response::json(200, &json!({"status": "ok"})),
    }
}

/// The outcome a failed `/webhook` request is counted and logged under.
pub fn result_of(error: &Error) -> WebhookResult {
    match error {
        Error::Unauthorized => WebhookResult::InvalidSignature,
        Error::Forbidden(_) => WebhookResult::Forbidden,
        Error::Unprocessable(_) => WebhookResult::ValidationError,
        Error::PayloadTooLarge { .. } => WebhookResult::TooLarge,
        Error::BadRequest(_) | Error::RequestTimeout | Error::NotImplemented => {
            WebhookResult::BadRequest
        }
        Error::MethodNotAllowed(_) => WebhookResult::MethodNotAllowed,
        Error::Unavailable(_) | Error::StorageUnavailable(_) | Error::QueryTimeout => {
            WebhookResult::Unavailable
        }
        Error::CommitTimeout => WebhookResult::CommitTimeout,
        // The webhook needs no admin token: not reached.
        Error::NotFound | Error::BearerRequired | Error::Internal(_) => WebhookResult::Error,
    }
}
