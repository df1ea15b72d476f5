//! `POST /webhook`: verify, validate, store exactly once.
//!
//! The order is fixed by the contract and each step refuses before the next runs:
//! secret configured (503) → body within the limit (413) → signature over the raw bytes (401)
//! → JSON object with valid fields (422) → insert keyed by `message_id` (200 created/duplicate).

use serde_json::json;

use super::{Context, WebhookNote};
use crate::db::Inserted;
use crate::error::Error;
use crate::http::{Request, Response};
use crate::metrics::WebhookResult;
use crate::{message, signature, timestamp};

pub fn post(ctx: &mut Context<'_>, request: &Request) -> Result<Response, Error> {
    let mut message_id = None;
    let outcome = ingest(ctx, request, &mut message_id);
    let result = match &outcome {
        Ok(Inserted::Created) => WebhookResult::Created,
        Ok(Inserted::Duplicate) => WebhookResult::Duplicate,
        Err(error) => result_of(error),
    };
    ctx.webhook = Some(WebhookNote { message_id, result });
    outcome.map(|_| Response::json(200, &json!({"status": "ok"})))
}

fn ingest(
    ctx: &mut Context<'_>,
    request: &Request,
    message_id: &mut Option<String>,
) -> Result<Inserted, Error> {
    let Some(secret) = &ctx.config.webhook_secret else {
        return Err(Error::Unavailable("webhook secret not configured"));
    };
    let body = request.body()?;
    if !signature::verify(secret.expose(), body, request.header("x-signature")) {
        return Err(Error::Unauthorized);
    }
    let parsed = message::parse(body);
    *message_id = parsed.message_id;
    let message = parsed.result?;
    Ok(ctx.db.insert(&message, &timestamp::now_utc())?)
}

/// The outcome a failed `/webhook` request is counted and logged under.
pub fn result_of(error: &Error) -> WebhookResult {
    match error {
        Error::Unauthorized => WebhookResult::InvalidSignature,
        Error::Unprocessable(_) => WebhookResult::ValidationError,
        Error::PayloadTooLarge { .. } => WebhookResult::TooLarge,
        Error::BadRequest(_) | Error::RequestTimeout => WebhookResult::BadRequest,
        Error::MethodNotAllowed(_) => WebhookResult::MethodNotAllowed,
        Error::Unavailable(_) | Error::StorageUnavailable(_) => WebhookResult::Unavailable,
        Error::NotFound | Error::Internal(_) => WebhookResult::Error,
    }
}
