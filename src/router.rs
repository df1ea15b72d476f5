//! The router: one `match` on method and path segments.
//!
//! It returns the route's static name (the `path` label of metrics) beside either the handler to
//! call or the error to answer with, so even a 404, a 405 or a panic is labelled correctly.

use crate::error::Error;
use crate::handlers::{self, Handler};

/// Label for every path that matches no route, so unknown URLs cannot grow the metric series.
pub const UNMATCHED: &str = "unmatched";

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

/// Picks the handler for `method` on `path` (no query string). Empty segments are ignored, so
/// `/webhook/` is `/webhook`.
pub fn route(method: &str, path: &str) -> (&'static str, Result<Handler, Error>) {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let is_get = matches!(method, "GET" | "HEAD");
    match (method, segments.as_slice()) {
        ("POST", ["webhook"]) => ("/webhook", Ok(handlers::webhook::post)),
        (_, ["webhook"]) => ("/webhook", Err(Error::MethodNotAllowed(POST))),
        (_, ["messages"]) if is_get => ("/messages", Ok(handlers::messages::list)),
        (_, ["messages"]) => ("/messages", Err(Error::MethodNotAllowed(GET))),
        (_, ["stats"]) if is_get => ("/stats", Ok(handlers::stats::get)),
        (_, ["stats"]) => ("/stats", Err(Error::MethodNotAllowed(GET))),
        (_, ["health", "live"]) if is_get => ("/health/live", Ok(handlers::health::live)),
        (_, ["health", "live"]) => ("/health/live", Err(Error::MethodNotAllowed(GET))),
        (_, ["health", "ready"]) if is_get => ("/health/ready", Ok(handlers::health::ready)),
        (_, ["health", "ready"]) => ("/health/ready", Err(Error::MethodNotAllowed(GET))),
        (_, ["metrics"]) if is_get => ("/metrics", Ok(handlers::health::metrics)),
        (_, ["metrics"]) => ("/metrics", Err(Error::MethodNotAllowed(GET))),
        _ => (UNMATCHED, Err(Error::NotFound)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;

    fn name(method: &str, target: &str) -> (&'static str, u16) {
        let request = Request::new(method, target, b"");
        let (route, result) = route(&request.method, &request.path);
        (route, result.err().map_or(200, |error| error.status()))
    }

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(name("POST", "/webhook"), ("/webhook", 200));
        assert_eq!(name("GET", "/webhook"), ("/webhook", 405));
        assert_eq!(name("GET", "/messages?limit=1"), ("/messages", 200));
        assert_eq!(name("HEAD", "/stats"), ("/stats", 200));
        assert_eq!(name("DELETE", "/stats"), ("/stats", 405));
        assert_eq!(name("GET", "/health/ready"), ("/health/ready", 200));
        assert_eq!(name("GET", "/health"), (UNMATCHED, 404));
        assert_eq!(name("GET", "/webhook/extra"), (UNMATCHED, 404));
        assert_eq!(name("GET", "/messages/"), ("/messages", 200));
    }
}
