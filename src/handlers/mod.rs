//! Request handlers: plain functions from `(context, request)` to a response or an error.
//!
//! Handlers never see a socket or `conn`'s types, never touch SQL (that is the store's job), and
//! never write logs or metrics themselves: the worker does that once per request, from what the
//! handler returns and from the note the webhook handler leaves in the context.

pub mod feed;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod stats;
pub mod twilio;
pub mod webhook;
pub mod whatsapp;

use crate::config::{Config, KeySlot};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::message::Message;
use crate::metrics::{Metrics, Source, WebhookResult};
use crate::state::StorageHealth;
use crate::store::{Store, StoreError};

/// Every handler has this shape, so the router can hand one back as a plain `fn` pointer.
pub type Handler = fn(&mut Context<'_>, &Request) -> Result<Reply, Error>;

/// What a handler asks the worker to do.
#[derive(Debug)]
pub enum Reply {
    /// Send this response now.
    Now(Response),
    /// Store these messages, all in one commit; the writer answers once it is durable.
    Store(Delivery),
    /// Nothing to answer yet: the connection thread waits for a commit, then asks again.
    Wait(Box<feed::Wait>),
}

/// Verified, validated messages, and what their answer and log line say about the request.
#[derive(Debug)]
pub struct Delivery {
    pub messages: Vec<Message>,
    pub source: Source,
    pub key: Option<KeySlot>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Now(response)
    }
}

/// What a handler may use: shared settings and metrics, and the worker's own connection.
pub struct Context<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub storage: &'a StorageHealth,
    pub store: &'a mut Store,
    /// What a long-polling feed waits on (its generation is taken before the read).
    pub feed: &'a crate::feed::Notifier,
    /// Set by the webhook handler when it refuses a request: what the log line and
    /// `webhook_requests_total` report. (Stored messages are reported by the writer.)
    pub webhook: Option<WebhookNote>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookNote {
    pub message_id: Option<String>,
    pub result: WebhookResult,
    pub source: Source,
    /// Which key verified the signature, once one did.
    pub key: Option<KeySlot>,
    /// How many messages the request carried, when it carried several.
    pub messages: Option<usize>,
    /// Why a well-signed payload was acknowledged without storing anything.
    pub reason: Option<String>,
}

impl WebhookNote {
    pub fn new(source: Source, result: WebhookResult) -> WebhookNote {
        WebhookNote {
            message_id: None,
            result,
            source,
            key: None,
            messages: None,
            reason: None,
        }
    }
}

/// A store read's failure as the handler's error; a read stopped at the query timeout is counted
/// in `hookbox_query_timeouts_total`.
pub fn read<T>(metrics: &Metrics, result: Result<T, StoreError>) -> Result<T, Error> {
    result.map_err(|error| {
        if matches!(error, StoreError::QueryTimeout) {
            metrics.query_timeouts.inc();
        }
        Error::from(error)
    })
}
