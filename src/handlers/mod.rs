//! Request handlers: plain functions from `(context, request)` to a response or an error.
//!
//! Handlers never see tiny_http, never touch SQL (that is `db`'s job), and never write logs or
//! metrics themselves: the worker does that once per request, from what the handler returns and
//! from the note the webhook handler leaves in the context.

pub mod health;
pub mod messages;
pub mod stats;
pub mod webhook;

use crate::config::Config;
use crate::db::Db;
use crate::error::Error;
use crate::http::{Request, Response};
use crate::metrics::{Metrics, WebhookResult};

/// Every handler has this shape, so the router can hand one back as a plain `fn` pointer.
pub type Handler = fn(&mut Context<'_>, &Request) -> Result<Response, Error>;

/// What a handler may use: shared settings and metrics, and the worker's own connection.
pub struct Context<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub db: &'a mut Db,
    /// Set by the webhook handler: what the log line and `webhook_requests_total` report.
    pub webhook: Option<WebhookNote>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookNote {
    pub message_id: Option<String>,
    pub result: WebhookResult,
}
