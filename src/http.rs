//! Our own owned `Request` and `Response`, and the edge that converts to and from the connection
//! layer's `Incoming`/`Outgoing`.
//!
//! Only this module, `answer` and the server touch `conn`'s types. Handlers see a `Request` whose body
//! the connection thread has already read (up to the limit) and return a `Response` of plain bytes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::problem::Problem;
pub use crate::response::Response;

/// A request as handlers see it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string, as sent (not percent-decoded).
    pub path: String,
    /// The raw query string after `?`, if any.
    pub query: Option<String>,
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Result<Vec<u8>, BodyError>,
    pub request_id: String,
}

/// Why the body is not available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit, by `Content-Length` or as read.
    TooLarge { limit: usize },
    /// The connection failed, or the body was malformed (bad chunked encoding, cut short).
    Unreadable(String),
    /// The client did not send the whole body within the read timeout.
    TimedOut,
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding,
    /// Buffering it would take all bodies held in memory over `HOOKBOX_MAX_BODY_BUFFER_MIB`.
    OverBudget,
}

impl Request {
    /// Builds a request for tests and tools without a socket.
    pub fn new(method: &str, target: &str, body: &[u8]) -> Request {
        let (path, query) = split_target(target);
        Request {
            method: method.to_owned(),
            path,
            query,
            headers: Vec::new(),
            body: Ok(body.to_vec()),
            request_id: next_request_id(),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body bytes, or the HTTP error that explains why there are none.
    pub fn body(&self) -> Result<&[u8], Error> {
        match &self.body {
            Ok(bytes) => Ok(bytes),
            Err(BodyError::TooLarge { limit }) => Err(Error::PayloadTooLarge { limit: *limit }),
            Err(BodyError::Unreadable(why)) => Err(Error::BadRequest(format!(
                "could not read the request body: {why}"
            ))),
            Err(BodyError::TimedOut) => Err(Error::RequestTimeout),
            Err(BodyError::UnsupportedEncoding) => Err(Error::NotImplemented),
            Err(BodyError::OverBudget) => Err(Error::Unavailable(
                "too many request bodies in memory, retry later",
            )),
        }
    }

    /// The last value given for query parameter `name`, percent-decoded. `+` stays a plus sign
    /// (so `?from=+91…` means `+91…`, as typed). A value that decodes to invalid UTF-8 is a 422.
    pub fn query_param(&self, name: &str) -> Result<Option<String>, Error> {
        let Some(query) = &self.query else {
            return Ok(None);
        };
        let raw = query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name.as_bytes()).then_some(value)
            })
            .next_back();
        match raw {
            None => Ok(None),
            Some(raw) => String::from_utf8(percent_decode(raw))
                .map(Some)
                .map_err(|_| {
                    Error::Unprocessable(vec![Problem::new(
                        "string_unicode",
                        &["query", name],
                        "Input should be a valid string, unable to parse raw data as a unicode string",
                        raw.into(),
                    )])
                }),
        }
    }
}

fn split_target(target: &str) -> (String, Option<String>) {
    match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    }
}

/// Decodes `%XX` escapes. A `%` not followed by two hex digits is kept as a literal `%`, so a
/// search typed as `?q=100%` means what it says.
pub fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex_digit(*high).zip(hex_digit(*low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

// ---- request ids ---------------------------------------------------------------------------

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh id: a per-process random prefix and a counter, so ids never repeat within a run and
/// almost surely not across runs.
pub fn next_request_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32);
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:08x}-{n:012x}")
}

/// An incoming `X-Request-ID` is reused only when it is short and plain (letters, digits, and
/// `-_.:`), so it can neither bloat nor break a log line or a response header.
pub fn sane_request_id(incoming: Option<&str>) -> Option<String> {
    let id = incoming?.trim();
    let plain = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then(|| id.to_owned())
}

// ---- the connection layer's edge ------------------------------------------------------------

/// Copies a request that the connection thread has read whole into our own.
pub fn from_incoming(incoming: crate::conn::Incoming, max_body: usize) -> Request {
    use crate::conn::Body;
    let (path, query) = split_target(&incoming.url);
    let request_id =
        sane_request_id(incoming.header("x-request-id")).unwrap_or_else(next_request_id);
    let body = match incoming.body {
        Body::Complete(bytes) => Ok(bytes),
        Body::TooLarge => Err(BodyError::TooLarge { limit: max_body }),
        Body::TimedOut => Err(BodyError::TimedOut),
        Body::Malformed(why) => Err(BodyError::Unreadable(why.to_owned())),
        Body::UnsupportedEncoding => Err(BodyError::UnsupportedEncoding),
        Body::OverBudget => Err(BodyError::OverBudget),
    };
    let headers = incoming
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    Request {
        method: incoming.method,
        path,
        query,
        headers,
        body,
        request_id,
    }
}

/// Converts our response for the connection thread, adding the request id header.
pub fn into_outgoing(response: Response, request_id: &str) -> crate::conn::Outgoing {
    let mut headers: Vec<(String, String)> = response
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    headers.push(("X-Request-ID".to_owned(), request_id.to_owned()));
    crate::conn::Outgoing {
        status: response.status,
        headers,
        body: response.body,
        close: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_literal_and_escapes_decode() {
        let request = Request::new("GET", "/messages?from=+919876543210&q=a%20b", b"");
        assert_eq!(
            request.query_param("from").unwrap().as_deref(),
            Some("+919876543210")
        );
        assert_eq!(request.query_param("q").unwrap().as_deref(), Some("a b"));
        let encoded = Request::new("GET", "/messages?from=%2B919876543210", b"");
        assert_eq!(
            encoded.query_param("from").unwrap().as_deref(),
            Some("+919876543210")
        );
    }

    #[test]
    fn bad_escapes_stay_literal() {
        assert_eq!(percent_decode("%"), b"%");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%25%5f"), b"%_");
        assert_eq!(percent_decode("%e2%82%ac"), "€".as_bytes());
    }

    #[test]
    fn last_value_wins_and_missing_is_none() {
        let request = Request::new("GET", "/messages?limit=1&limit=2&flag", b"");
        assert_eq!(request.query_param("limit").unwrap().as_deref(), Some("2"));
        assert_eq!(request.query_param("flag").unwrap().as_deref(), Some(""));
        assert_eq!(request.query_param("offset").unwrap(), None);
    }

    #[test]
    fn invalid_utf8_is_422() {
        let request = Request::new("GET", "/messages?q=%ff", b"");
        assert!(matches!(
            request.query_param("q"),
            Err(Error::Unprocessable(_))
        ));
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            sane_request_id(Some("abc-123_x.y:z")).as_deref(),
            Some("abc-123_x.y:z")
        );
        assert_eq!(sane_request_id(Some("a\"b")), None);
        assert_eq!(sane_request_id(Some("a\nb")), None);
        assert_eq!(sane_request_id(Some(&"a".repeat(129))), None);
        assert_eq!(sane_request_id(Some("")), None);
        assert_ne!(next_request_id(), next_request_id());
    }
}
