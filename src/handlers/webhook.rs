//! `POST /webhook`: verify, validate, store exactly once.
//!
//! The order is fixed by the contract and each step refuses before the next runs:
//! secret configured (503) → body within the limit (413) → signature over the raw bytes (401)
//! → JSON object with valid fields (422) → handed to the writer, which inserts it keyed by
//! `message_id` and answers 200 (created or duplicate) once the commit is durable.

use serde_json::json;

use super::{Context, Reply, WebhookNote};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::message::{self, Message};
use crate::metrics::WebhookResult;
use crate::signature;
use crate::store::Inserted;

pub fn post(ctx: &mut Context<'_>, request: &Request) -> Result<Reply, Error> {
    let mut message_id = None;
    let checked = check(ctx, request, &mut message_id);
    if let Err(error) = &checked {
        ctx.webhook = Some(WebhookNote {
            message_id,
            result: result_of(error),
        });
    }
    checked.map(Reply::Store)
}

fn check(
    ctx: &Context<'_>,
    request: &Request,
    message_id: &mut Option<String>,
) -> Result<Message, Error> {
    let Some(secret) = &ctx.config.webhook_secret else {
        return Err(Error::Unavailable("webhook secret not configured"));
    };
    let body = request.body()?;
    if !signature::verify(secret.expose(), body, request.header("x-signature")) {
        return Err(Error::Unauthorized);
    }
    let parsed = message::parse(body);
    *message_id = parsed.message_id;
    parsed.result.map_err(Error::from)
}

/// The answer for a message once the writer has committed it, or failed to.
pub fn answer(stored: Result<Inserted, Error>) -> (WebhookResult, Result<Response, Error>) {
    match stored {
        Ok(inserted) => (
            match inserted {
                Inserted::Created => WebhookResult::Created,
                Inserted::Duplicate => WebhookResult::Duplicate,
            },
            Ok(Response::json(200, &json!({"status": "ok"}))),
        ),
        Err(error) => (result_of(&error), Err(error)),
    }
}

/// The outcome a failed `/webhook` request is counted and logged under.
pub fn result_of(error: &Error) -> WebhookResult {
    match error {
        Error::Unauthorized => WebhookResult::InvalidSignature,
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
