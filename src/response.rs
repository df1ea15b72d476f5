//! Our own response: a status, extra headers and the body bytes, built by handlers and errors.
//!
//! It sits below both `http` (requests) and `error` (which turns into a response), so neither
//! has to name the other.

use serde::Serialize;

/// A response from a handler: status, extra headers, body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        let body = serde_json::to_vec(value).expect("our response types always serialize");
        Response {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body,
        }
    }

    pub fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body,
        }
    }
}
