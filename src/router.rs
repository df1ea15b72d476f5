//! The router: one `match` on method and path segments.
//!
//! It returns the `Route` (whose label is the `path` of metrics and logs, and whose lane decides
//! which workers may serve it) beside either the handler to call or the error to answer with, so
//! even a 404, a 405 or a panic is labelled correctly.

use crate::error::Error;
use crate::handlers::{self, Handler, Ingest};
use crate::http::{Request, Response};
use crate::metrics::Source;

/// Every route the service knows, and one for every path it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Webhook,
    /// `POST /webhook/whatsapp` (and any other method but GET, answered 405).
    WhatsApp,
    /// `GET /webhook/whatsapp`: Meta's subscription handshake, not a webhook request.
    WhatsAppVerify,
    Twilio,
    OpenApi,
    Messages,
    Feed,
    Stats,
    Live,
    Ready,
    Metrics,
    /// Every path that matches no route, so unknown URLs cannot grow the metric series.
    Unmatched,
}

/// What serves a route.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A handler that needs a worker (its store connection).
    Worker(Handler),
    /// A sender's handler: run on the connection's own thread, whose messages go straight to
    /// the writer.
    Ingest(Ingest),
    /// A handler that needs nothing but the request: run on the connection's own thread.
    Here(fn(&Request) -> Response),
}

/// Which worker queue a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Webhooks, probes, metrics: short, and never queued behind reads.
    Fast,
    /// `/messages`, `/feed` and `/stats`: reads that may take up to the query budget.
    Query,
}

impl Route {
    /// The `path` label of metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Route::Webhook => "/webhook",
            Route::WhatsApp | Route::WhatsAppVerify => "/webhook/whatsapp",
            Route::Twilio => "/webhook/twilio",
            Route::OpenApi => "/openapi.json",
            Route::Messages => "/messages",
            Route::Feed => "/feed",
            Route::Stats => "/stats",
            Route::Live => "/health/live",
            Route::Ready => "/health/ready",
            Route::Metrics => "/metrics",
            Route::Unmatched => UNMATCHED,
        }
    }

    /// The sender whose requests this route takes: its lines and metrics are a webhook's.
    pub fn source(self) -> Option<Source> {
        match self {
            Route::Webhook => Some(Source::Webhook),
            Route::WhatsApp => Some(Source::WhatsApp),
            Route::Twilio => Some(Source::Twilio),
            _ => None,
        }
    }

    /// Whether the route reads what hookbox stored or how it runs, and so needs the admin token
    /// when one is configured (`auth::check`). Health probes and webhooks stay open.
    pub fn needs_admin(self) -> bool {
        match self {
            Route::Messages | Route::Feed | Route::Stats | Route::Metrics => true,
            Route::Webhook
            | Route::WhatsApp
            | Route::WhatsAppVerify
            | Route::Twilio
            | Route::OpenApi
            | Route::Live
            | Route::Ready
            | Route::Unmatched => false,
        }
    }

    /// Whether the route's answer may wait for the writer's commit, and so is bounded by
    /// `HOOKBOX_COMMIT_TIMEOUT_SECS` (then 503: not acknowledged, a retry is safe).
    pub fn waits_for_commit(self) -> bool {
        match self {
            Route::Webhook | Route::WhatsApp | Route::Twilio => true,
            Route::WhatsAppVerify
            | Route::OpenApi
            | Route::Messages
            | Route::Feed
            | Route::Stats
            | Route::Live
            | Route::Ready
            | Route::Metrics
            | Route::Unmatched => false,
        }
    }

    pub fn lane(self) -> Lane {
        match self {
            Route::Messages | Route::Feed | Route::Stats => Lane::Query,
            _ => Lane::Fast,
        }
    }
}

/// Label for every path that matches no route.
pub const UNMATCHED: &str = "unmatched";

const GET: &str = "GET, HEAD";
const POST: &str = "POST";
const GET_POST: &str = "GET, HEAD, POST";

/// Picks the handler for `method` on `path` (no query string). Empty segments are ignored, so
/// `/webhook/` is `/webhook`.
pub fn route(method: &str, path: &str) -> (Route, Result<Target, Error>) {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let is_get = matches!(method, "GET" | "HEAD");
    use Target::{Here, Ingest, Worker};
    match (method, segments.as_slice()) {
        ("POST", ["webhook"]) => (Route::Webhook, Ok(Ingest(handlers::webhook::post))),
        (_, ["webhook"]) => (Route::Webhook, Err(Error::MethodNotAllowed(POST))),
        ("POST", ["webhook", "whatsapp"]) => {
            (Route::WhatsApp, Ok(Ingest(handlers::whatsapp::post)))
        }
        (_, ["webhook", "whatsapp"]) if is_get => (
            Route::WhatsAppVerify,
            Ok(Worker(handlers::whatsapp::verify)),
        ),
        (_, ["webhook", "whatsapp"]) => (Route::WhatsApp, Err(Error::MethodNotAllowed(GET_POST))),
        ("POST", ["webhook", "twilio"]) => (Route::Twilio, Ok(Ingest(handlers::twilio::post))),
        (_, ["webhook", "twilio"]) => (Route::Twilio, Err(Error::MethodNotAllowed(POST))),
        (_, ["openapi.json"]) if is_get => (Route::OpenApi, Ok(Here(handlers::openapi::get))),
        (_, ["openapi.json"]) => (Route::OpenApi, Err(Error::MethodNotAllowed(GET))),
        (_, ["messages"]) if is_get => (Route::Messages, Ok(Worker(handlers::messages::list))),
        (_, ["messages"]) => (Route::Messages, Err(Error::MethodNotAllowed(GET))),
        (_, ["feed"]) if is_get => (Route::Feed, Ok(Worker(handlers::feed::get))),
        (_, ["feed"]) => (Route::Feed, Err(Error::MethodNotAllowed(GET))),
        (_, ["stats"]) if is_get => (Route::Stats, Ok(Worker(handlers::stats::get))),
        (_, ["stats"]) => (Route::Stats, Err(Error::MethodNotAllowed(GET))),
        (_, ["health", "live"]) if is_get => (Route::Live, Ok(Here(handlers::health::live))),
        (_, ["health", "live"]) => (Route::Live, Err(Error::MethodNotAllowed(GET))),
        (_, ["health", "ready"]) if is_get => (Route::Ready, Ok(Worker(handlers::health::ready))),
        (_, ["health", "ready"]) => (Route::Ready, Err(Error::MethodNotAllowed(GET))),
        (_, ["metrics"]) if is_get => (Route::Metrics, Ok(Worker(handlers::health::metrics))),
        (_, ["metrics"]) => (Route::Metrics, Err(Error::MethodNotAllowed(GET))),
        _ => (Route::Unmatched, Err(Error::NotFound)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: &str, target: &str) -> (&'static str, u16) {
        let request = Request::new(method, target, b"");
        let (route, result) = route(&request.method, &request.path);
        (
            route.label(),
            result.err().map_or(200, |error| error.status()),
        )
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
        assert_eq!(
            name("POST", "/webhook/whatsapp"),
            ("/webhook/whatsapp", 200)
        );
        assert_eq!(
            name("GET", "/webhook/whatsapp?hub.mode=subscribe"),
            ("/webhook/whatsapp", 200)
        );
        assert_eq!(name("PUT", "/webhook/whatsapp"), ("/webhook/whatsapp", 405));
        assert_eq!(name("POST", "/webhook/twilio"), ("/webhook/twilio", 200));
        assert_eq!(name("GET", "/webhook/twilio"), ("/webhook/twilio", 405));
        assert_eq!(name("GET", "/openapi.json"), ("/openapi.json", 200));
        assert_eq!(name("GET", "/messages/"), ("/messages", 200));
    }

    #[test]
    fn reads_and_metrics_need_the_admin_token_and_nothing_else_does() {
        for (path, locked) in [
            ("/messages", true),
            ("/stats", true),
            ("/metrics", true),
            ("/webhook", false),
            ("/health/live", false),
            ("/health/ready", false),
            ("/nope", false),
        ] {
            assert_eq!(route("GET", path).0.needs_admin(), locked, "{path}");
        }
    }

    #[test]
    fn reads_take_the_query_lane_and_everything_else_the_fast_one() {
        assert_eq!(route("GET", "/messages").0.lane(), Lane::Query);
        assert_eq!(route("GET", "/stats").0.lane(), Lane::Query);
        for path in [
            "/webhook",
            "/health/live",
            "/health/ready",
            "/metrics",
            "/nope",
        ] {
            assert_eq!(route("GET", path).0.lane(), Lane::Fast, "{path}");
        }
    }
}
