//! Request handlers: plain functions from `(context, request)` to a response or an error.
//!
//! Handlers never see a socket or `conn`'s types, never touch SQL (that is the store's job), and
//! never write logs or per-request metrics themselves: `answer::finish` does that once per
//! request, from what the handler returns. A sender's handler (`Ingest`) returns its `Verdict`:
//! the note its log line and metrics carry beside what to do.

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

/// A handler run by a worker (it needs the worker's store connection). Every handler has a
/// plain `fn` shape, so the router can hand one back as a pointer.
pub type Handler = fn(&mut Context<'_>, &Request) -> Result<Reply, Error>;

/// A sender's handler: verifies and validates a webhook with nothing but the settings, so it runs
/// on the connection's own thread, which then hands the messages straight to the writer.
pub type Ingest = fn(&Intake<'_>, &Request) -> Verdict;

/// What a worker's handler asks for.
#[derive(Debug)]
pub enum Reply {
    /// Send this response now.
    Now(Response),
    /// Nothing new yet (a long-polling feed): the connection thread waits for a commit, then
    /// asks again.
    Wait(Box<feed::Wait>),
}

/// What a sender's handler needs: the settings, and the metrics of what it was told.
pub struct Intake<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
}

/// A sender's handler's decision, and what the request's log line and webhook metrics say.
/// `note.result` is the handler's for an answer it makes itself (`Decision::Answer`); after a
/// commit it is the commit's (created or duplicate), and for an error the error's
/// (`webhook::result_of`), both set in `answer`.
#[derive(Debug)]
pub struct Verdict {
    pub note: WebhookNote,
    pub decision: Result<Decision, Error>,
}

#[derive(Debug)]
pub enum Decision {
    /// Store these verified, valid messages, all in one commit; 200 once it is durable.
    Store(Vec<Message>),
    /// Answer this now (acknowledged without storing anything).
    Answer(Response),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Now(response)
    }
}

/// What a worker's handler may use: shared settings and metrics, and the worker's own connection.
pub struct Context<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub storage: &'a StorageHealth,
    pub store: &'a mut Store,
    /// What a long-polling feed waits on (its generation is taken before the read).
    pub feed: &'a crate::feed::Notifier,
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
