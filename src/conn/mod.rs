//! The connection layer: the only code that touches a client's socket.
//!
//! Each connection gets a thread of its own (small, named `conn`), which does all of that
//! connection's socket I/O: it reads the whole head within a total deadline, the whole body
//! within another, calls the handler with both in memory, writes the answer the handler returns
//! within a third deadline, and only then reads the next request. So the handler never touches a
//! socket, one connection has at most one request in the handler at a time, and pipelined
//! requests are answered in order. Every deadline is total: each read or write is armed with what
//! is left of it, so a byte that arrives does not restart the clock.
//!
//! - `accept`: the accept loop, the connection limit, starting and stopping.
//! - `connection`: one connection's read/answer loop and its deadlines.
//! - `body`: reading a body (`Content-Length` or chunked) against its limit and the budget.
//! - `budget`: the process-wide budget for buffered request bodies.
//! - `parse`: the request head and its framing (pure functions, unit-tested).
//! - `replay`: reading a request from bytes in memory with the same functions (for fuzzing).
//! - `write`: writing an answer, the reason phrases, the `Date` header.
//!
//! Why this is our own code and not tiny_http's: README "Design decisions".

mod accept;
mod body;
mod budget;
mod connection;
mod parse;
mod replay;
mod write;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use accept::{Serving, serve};
pub use budget::BodyBudget;
pub use replay::{Replayed, replay};
pub use write::{plain, reason_phrase};

/// The bounds every connection is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long an open connection may wait for the first byte of its next request.
    pub idle_timeout: Duration,
    /// From its first byte, the whole request head must arrive within this.
    pub header_timeout: Duration,
    /// From the end of the head, the whole body must arrive within this (else 408 and close).
    pub body_timeout: Duration,
    /// The whole answer must be taken by the client within this (else the connection closes).
    pub write_timeout: Duration,
    /// Largest body read into memory; a larger one is not read (`Body::TooLarge`).
    pub max_body: usize,
    /// Largest request head (request line and headers) in bytes, else 431.
    pub max_head_bytes: usize,
    /// Most header lines in one request, else 431.
    pub max_headers: usize,
    /// Open connections at most; beyond this a new connection gets a canned 503 and is closed.
    pub max_connections: usize,
    /// Bytes of request bodies all connections together may hold in memory (`Body::OverBudget`).
    pub body_budget: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 1024,
            body_budget: 16 * 1024 * 1024,
        }
    }
}

/// A request with its head and body in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub method: String,
    /// The request target as sent (path and query).
    pub url: String,
    /// (major, minor): 1.0 or 1.1.
    pub version: (u8, u8),
    /// Header names and values as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub remote_addr: Option<SocketAddr>,
    /// When the request's first byte was read (when the read that brought it returned; for a
    /// request pipelined behind another, when the answer before it was written).
    pub received: Instant,
}

/// What a connection hands the application: a request read whole, or a head that could not be
/// parsed, which the application answers too (so it is counted and logged like any answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    Request(Incoming),
    /// A head refused before any handler could see it: malformed (400), too large or too many
    /// headers (431), an expectation we do not meet (417), an HTTP version we do not speak
    /// (505). The connection closes after the answer.
    Refused {
        status: u16,
        received: Instant,
    },
}

impl Incoming {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What became of a request's body. Anything but `Complete` closes the connection after the
/// answer: the rest of the bytes on it cannot be trusted to start a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The whole body (empty when none was announced).
    Complete(Vec<u8>),
    /// More than `max_body` bytes were announced or sent; the rest was not read.
    TooLarge,
    /// Buffering it would take the bodies held by all connections over `body_budget`; the rest
    /// was not read.
    OverBudget,
    /// The whole body did not arrive within `body_timeout`.
    TimedOut,
    /// The body's end cannot be known: a `Content-Length` that is not all digits, several that
    /// disagree, one beside `Transfer-Encoding`, broken chunked encoding, or the peer closed early.
    Malformed(&'static str),
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding,
}

/// An answer to write: the connection thread adds `Content-Length`, `Date` and, when the
/// connection is closing, `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this answer.
    pub close: bool,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed it, or asked to (`Connection: close`, HTTP/1.0).
    Client,
    /// No request started within `idle_timeout`.
    Idle,
    /// A request head did not complete within `header_timeout`.
    HeaderTimeout,
    /// A body did not complete within `body_timeout` (answered 408).
    BodyTimeout,
    /// The client did not take an answer within `write_timeout`.
    WriteTimeout,
    /// A malformed or oversized head, or a body whose end is unknown or that was not read.
    Refused,
    /// The server is shutting down.
    Shutdown,
    /// A socket error.
    Error,
}

impl CloseReason {
    /// A stable label, e.g. for a metric.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::Refused => "refused",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error => "error",
        }
    }
}

/// What the server tells the application about its connections (for metrics and logs).
pub trait Observer: Send + Sync {
    /// A connection was accepted and given a thread.
    fn opened(&self) {}
    /// A connection was refused: `max_connections` were open.
    fn refused(&self) {}
    /// A connection was accepted but no thread could be started for it; it was closed.
    fn spawn_failed(&self, _error: &io::Error) {}
    /// A connection ended.
    fn closed(&self, _reason: CloseReason) {}
    /// `accept` failed; the loop backs off and goes on.
    fn accept_failed(&self, _error: &io::Error) {}
    /// The handler's answer with a body of `body_bytes` was written, or failed to be: the
    /// connection no longer holds it.
    fn answered(&self, _body_bytes: usize) {}
    /// Bytes reserved for buffered request bodies changed by `delta` (see `BodyBudget`).
    fn body_buffer_changed(&self, _delta: i64) {}
    /// The accept loop ended unexpectedly (a panic): no more connections will be accepted.
    fn stopped_accepting(&self, _why: &str) {}
}

/// The application's side: turns a request (or a refused head) into its answer. Runs on the
/// connection's thread, so it may block (for example waiting for a worker pool) without holding
/// anyone else up.
pub type Handler = Arc<dyn Fn(Arrival) -> Outgoing + Send + Sync>;
