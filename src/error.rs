//! The one error type handlers return, named by HTTP meaning.
//!
//! Status codes are mapped in one exhaustive `match` and errors become JSON responses in one place
//! (`Error::into_response`). Detail for 5xx goes to the log, never to the client.

use std::fmt;

use serde_json::json;

use crate::message::Invalid;
use crate::problem::Problem;
use crate::response::Response;
use crate::store::StoreError;

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The path matches no route.
    NotFound,
    /// The path exists but not for this method; carries the `Allow` header value.
    MethodNotAllowed(&'static str),
    /// The body is larger than `HOOKBOX_MAX_BODY_BYTES` (by `Content-Length` or as read).
    PayloadTooLarge { limit: usize },
    /// The `X-Signature` header is missing or does not match the body.
    Unauthorized,
    /// A sender's verification failed where its own libraries answer 403 (a Twilio signature,
    /// the WhatsApp subscription handshake); carries the detail shown.
    Forbidden(&'static str),
    /// A route that needs the admin token (`Route::needs_admin`) was asked without
    /// `Authorization: Bearer <HOOKBOX_ADMIN_TOKEN>`, or with another token.
    BearerRequired,
    /// The body could not be read: malformed chunked encoding, or the connection failed.
    BadRequest(String),
    /// The client did not send its whole body within `HOOKBOX_READ_TIMEOUT_SECS`.
    RequestTimeout,
    /// A `Transfer-Encoding` other than `chunked`: the body cannot be read.
    NotImplemented,
    /// The body or query failed validation; each entry is a FastAPI-shaped problem.
    Unprocessable(Vec<Problem>),
    /// The service cannot take this request now (queue full, not configured, shutting down);
    /// the sender should retry. The reason is shown to the client.
    Unavailable(&'static str),
    /// The store could not serve the request (busy past the timeout, disk full, read-only, I/O);
    /// the sender should retry. The cause is logged; the client sees a generic reason.
    StorageUnavailable(String),
    /// A webhook's commit did not finish within `HOOKBOX_COMMIT_TIMEOUT_SECS`: the message is not
    /// acknowledged; it may still be stored, so a retry is safe (at worst a duplicate).
    CommitTimeout,
    /// A read ran past `HOOKBOX_QUERY_TIMEOUT_MS` and was stopped; the client may retry (perhaps
    /// with narrower filters).
    QueryTimeout,
    /// A bug or an unexpected store error. The detail is logged, the client sees a generic body.
    Internal(String),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::PayloadTooLarge { .. } => 413,
            Error::Unauthorized | Error::BearerRequired => 401,
            Error::Forbidden(_) => 403,
            Error::BadRequest(_) => 400,
            Error::RequestTimeout => 408,
            Error::NotImplemented => 501,
            Error::Unprocessable(_) => 422,
            Error::Unavailable(_)
            | Error::StorageUnavailable(_)
            | Error::CommitTimeout
            | Error::QueryTimeout => 503,
            Error::Internal(_) => 500,
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let detail = match self {
            Error::NotFound => json!("Not Found"),
            Error::MethodNotAllowed(_) => json!("Method Not Allowed"),
            Error::PayloadTooLarge { limit } => {
                json!(format!("request body is larger than {limit} bytes"))
            }
            Error::Unauthorized => json!("invalid signature"),
            Error::Forbidden(detail) => json!(detail),
            Error::BearerRequired => json!("unauthorized"),
            Error::BadRequest(ref message) => json!(message),
            Error::RequestTimeout => json!("request body not received in time"),
            Error::NotImplemented => json!("only the chunked transfer encoding is supported"),
            Error::Unprocessable(ref problems) => json!(problems),
            Error::Unavailable(reason) => json!(reason),
            Error::StorageUnavailable(_) => json!("storage unavailable, retry later"),
            Error::CommitTimeout => {
                json!("the store did not confirm the commit in time: not acknowledged, retry later")
            }
            Error::QueryTimeout => json!("query took too long, retry later or narrow the filters"),
            Error::Internal(_) => json!("internal server error"),
        };
        let mut response = Response::json(status, &json!({ "detail": detail }));
        match self {
            Error::MethodNotAllowed(allow) => response.headers.push(("Allow", allow.to_owned())),
            Error::BearerRequired => response
                .headers
                .push(("WWW-Authenticate", "Bearer".to_owned())),
            Error::Unavailable(_)
            | Error::StorageUnavailable(_)
            | Error::CommitTimeout
            | Error::QueryTimeout => response
                .headers
                .push(("Retry-After", RETRY_AFTER_SECONDS.to_string())),
            _ => {}
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::MethodNotAllowed(allow) => write!(f, "method not allowed (allow: {allow})"),
            Error::PayloadTooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            Error::Unauthorized => f.write_str("invalid signature"),
            Error::Forbidden(detail) => write!(f, "forbidden: {detail}"),
            Error::BearerRequired => f.write_str("admin token missing or wrong"),
            Error::BadRequest(message) => write!(f, "bad request: {message}"),
            Error::RequestTimeout => f.write_str("request body not received in time"),
            Error::NotImplemented => f.write_str("unsupported transfer encoding"),
            Error::Unprocessable(problems) => write!(f, "{} validation problem(s)", problems.len()),
            Error::Unavailable(reason) => write!(f, "unavailable: {reason}"),
            Error::StorageUnavailable(cause) => write!(f, "storage unavailable: {cause}"),
            Error::CommitTimeout => f.write_str("commit not finished at the commit timeout"),
            Error::QueryTimeout => f.write_str("query stopped at the query timeout"),
            Error::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Invalid> for Error {
    /// A body that is not a valid message: 422 with every problem.
    fn from(invalid: Invalid) -> Error {
        Error::Unprocessable(invalid.0)
    }
}

impl From<StoreError> for Error {
    /// Conditions a sender can wait out become 503 + `Retry-After`; anything else is a 500.
    fn from(error: StoreError) -> Error {
        match error {
            StoreError::Unavailable(cause) => Error::StorageUnavailable(cause),
            StoreError::QueryTimeout => Error::QueryTimeout,
            StoreError::Internal(cause) => Error::Internal(format!("storage: {cause}")),
            // What the sender sent is what cannot be stored: theirs to change, not to retry.
            StoreError::Refused(cause) => Error::Unprocessable(vec![Problem::new(
                "value_error",
                &["body"],
                format!("the store cannot hold this message: {cause}"),
                serde_json::Value::Null,
            )]),
        }
    }
}
