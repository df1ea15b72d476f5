//! Prometheus metrics, one registry per server so tests can run several servers in one process.
//!
//! Labels are bounded: `path` is a route name from the router (never a raw URL), `status` an HTTP
//! status code, `result` one of the webhook outcomes listed in `WebhookResult`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::config::KeySlot;

/// How one `/webhook` request ended, as counted in `webhook_requests_total{result}` and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    Created,
    Duplicate,
    InvalidSignature,
    ValidationError,
    /// Body over the size limit (413).
    TooLarge,
    /// Body could not be read (400).
    BadRequest,
    /// Not a POST (405).
    MethodNotAllowed,
    /// Secret not configured, store failing, or shedding load (503).
    Unavailable,
    /// Well signed and answered 200, but nothing in it to store (only statuses, say).
    Acknowledged,
    /// Refused with 403 (a Twilio signature, as Twilio's own libraries do).
    Forbidden,
    /// The commit did not finish within `HOOKBOX_COMMIT_TIMEOUT_SECS` (503): not acknowledged.
    /// It may still land, and then the sender's retry is a duplicate.
    CommitTimeout,
    /// A bug (500).
    Error,
}

impl WebhookResult {
    /// The outcomes whose series exist from startup (value 0), as the contract requires.
    pub const ALWAYS_EXPORTED: [WebhookResult; 4] = [
        WebhookResult::Created,
        WebhookResult::Duplicate,
        WebhookResult::InvalidSignature,
        WebhookResult::ValidationError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Created => "created",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::InvalidSignature => "invalid_signature",
            WebhookResult::ValidationError => "validation_error",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::BadRequest => "bad_request",
            WebhookResult::MethodNotAllowed => "method_not_allowed",
            WebhookResult::Unavailable => "unavailable",
            WebhookResult::Acknowledged => "acknowledged",
            WebhookResult::Forbidden => "forbidden",
            WebhookResult::CommitTimeout => "commit_timeout",
            WebhookResult::Error => "error",
        }
    }
}

/// Which sender's dialect a webhook request spoke: the `source` label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// hookbox's own: `X-Signature` over our JSON, on `/webhook`.
    Webhook,
    /// Meta's WhatsApp Cloud API, on `/webhook/whatsapp`.
    WhatsApp,
    /// Twilio Messaging, on `/webhook/twilio`.
    Twilio,
    /// Standard Webhooks v1 headers, on `/webhook`.
    Standard,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Webhook,
        Source::WhatsApp,
        Source::Twilio,
        Source::Standard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::WhatsApp => "whatsapp",
            Source::Twilio => "twilio",
            Source::Standard => "standard",
        }
    }
}

/// What a sender told us that is not a message to store, counted in
/// `hookbox_sender_events_total{source,kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A delivery status (WhatsApp `statuses`, a Twilio status callback).
    Status,
    /// A WhatsApp change whose `field` is not `messages`.
    OtherField,
    /// A WhatsApp message of a type we do not map (location, reaction, …).
    UnmappedType,
    /// A well-signed payload we could not read: acknowledged (200), logged, nothing stored.
    Invalid,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::OtherField => "other_field",
            EventKind::UnmappedType => "unmapped_type",
            EventKind::Invalid => "invalid",
        }
    }
}

/// Upper bounds of the latency histogram, in milliseconds. 100 and 500 are required by the spec.
const LATENCY_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    webhook_requests: IntCounterVec,
    /// `webhook_requests_total` by `source` too (that one keeps the contract's exact series).
    source_requests: IntCounterVec,
    /// Verified signatures by sender and key (`current`, `previous`): is a rotation done?
    signature_keys: IntCounterVec,
    sender_events: IntCounterVec,
    latency_ms: Histogram,
    /// Requests (reads, readiness, metrics) queued for a worker and not yet picked up.
    pub queue_depth: IntGauge,
    /// Validated messages waiting for the writer.
    pub write_queue_depth: IntGauge,
    /// Requests answered 503 without processing, by the queue that was full.
    shed: IntCounterVec,
    commit_batch_size: Histogram,
    commit_duration: Histogram,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Bytes of request bodies held in memory (reserved in HOOKBOX_MAX_BODY_BUFFER_MIB).
    pub body_buffer_bytes: IntGauge,
    /// Connections refused at once for being over `HOOKBOX_MAX_CONNECTIONS`.
    pub connections_refused: IntCounter,
    connections_closed: IntCounterVec,
    /// Reads stopped at `HOOKBOX_QUERY_TIMEOUT_MS` (answered 503).
    pub query_timeouts: IntCounter,
    /// Messages deleted by retention.
    pub purged_messages: IntCounter,
    /// `GET /feed` requests waiting for a commit on their connection threads.
    pub feed_waiters: IntGauge,
}

/// Which bounded queue was full when a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// A lane from the connection threads to the workers (`HOOKBOX_QUEUE_CAPACITY` each).
    Workers,
    /// The connection threads → writer queue (`HOOKBOX_WRITE_QUEUE_CAPACITY`).
    Writes,
    /// Not a queue: answers already held for clients that are not reading (see
    /// `state::MAX_HELD_ANSWER_BYTES`); reads are refused until they drain.
    Answers,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["path", "status"],
        )
        .expect("valid metric");
        let webhook_requests = IntCounterVec::new(
            Opts::new(
                "webhook_requests_total",
                "POST /webhook requests, by outcome.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let source_requests = IntCounterVec::new(
            Opts::new(
                "hookbox_webhook_requests_total",
                "Webhook requests by sender (webhook, whatsapp, twilio, standard) and outcome.",
            ),
            &["source", "result"],
        )
        .expect("valid metric");
        let signature_keys = IntCounterVec::new(
            Opts::new(
                "hookbox_signature_keys_total",
                "Requests whose signature verified, by sender and by key (current, previous).",
            ),
            &["source", "key"],
        )
        .expect("valid metric");
        let sender_events = IntCounterVec::new(
            Opts::new(
                "hookbox_sender_events_total",
                "Acknowledged but not stored, by sender and kind (status, other_field, unmapped_type, invalid).",
            ),
            &["source", "kind"],
        )
        .expect("valid metric");
        let latency_ms = Histogram::with_opts(
            HistogramOpts::new(
                "request_latency_ms",
                "Time from a request's first byte to its answer being handed to its connection to write, in milliseconds.",
            )
            .buckets(LATENCY_BUCKETS_MS.to_vec()),
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "hookbox_queue_depth",
            "Requests waiting for a worker right now.",
        )
        .expect("valid metric");
        let write_queue_depth = IntGauge::new(
            "hookbox_write_queue_depth",
            "Validated messages waiting for the writer right now.",
        )
        .expect("valid metric");
        let shed = IntCounterVec::new(
            Opts::new(
                "hookbox_shed_total",
                "Requests answered 503 without processing because a queue was full, by queue (workers, writes; answers: too many unread answers held).",
            ),
            &["queue"],
        )
        .expect("valid metric");
        let commit_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "hookbox_commit_batch_size",
                "Messages stored per commit (one fsync each under synchronous=FULL).",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid metric");
        let commit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "hookbox_commit_duration_seconds",
                "Time to insert and commit one batch, in seconds.",
            )
            .buckets(LATENCY_BUCKETS_MS.iter().map(|ms| ms / 1000.0).collect()),
        )
        .expect("valid metric");
        let connections_open = IntGauge::new(
            "hookbox_connections_open",
            "Client connections open right now.",
        )
        .expect("valid metric");
        let body_buffer_bytes = IntGauge::new(
            "hookbox_body_buffer_bytes",
            "Bytes of request bodies held in memory right now, against HOOKBOX_MAX_BODY_BUFFER_MIB.",
        )
        .expect("valid metric");
        let connections_refused = IntCounter::new(
            "hookbox_connections_refused_total",
            "Connections refused at once with a 503 because HOOKBOX_MAX_CONNECTIONS were open.",
        )
        .expect("valid metric");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "hookbox_connections_closed_total",
                "Client connections closed, by reason (client, idle, header_timeout, body_timeout, write_timeout, refused, shutdown, error).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let query_timeouts = IntCounter::new(
            "hookbox_query_timeouts_total",
            "Reads stopped at HOOKBOX_QUERY_TIMEOUT_MS and answered 503.",
        )
        .expect("valid metric");
        let purged_messages = IntCounter::new(
            "hookbox_purged_messages_total",
            "Messages deleted by retention (HOOKBOX_RETAIN_MESSAGES, HOOKBOX_RETAIN_DAYS).",
        )
        .expect("valid metric");
        let feed_waiters = IntGauge::new(
            "hookbox_feed_waiters",
            "GET /feed long polls waiting for a commit right now (each on its connection's thread, never a worker).",
        )
        .expect("valid metric");

        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(webhook_requests.clone()),
            Box::new(source_requests.clone()),
            Box::new(signature_keys.clone()),
            Box::new(sender_events.clone()),
            Box::new(latency_ms.clone()),
            Box::new(queue_depth.clone()),
            Box::new(write_queue_depth.clone()),
            Box::new(shed.clone()),
            Box::new(commit_batch_size.clone()),
            Box::new(commit_duration.clone()),
            Box::new(connections_open.clone()),
            Box::new(body_buffer_bytes.clone()),
            Box::new(connections_refused.clone()),
            Box::new(connections_closed.clone()),
            Box::new(query_timeouts.clone()),
            Box::new(purged_messages.clone()),
            Box::new(feed_waiters.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // The four main outcomes exist from startup, so a dashboard sees 0 rather than nothing.
        // The rarer ones appear when they first happen, which keeps the top of the exposition short.
        for result in WebhookResult::ALWAYS_EXPORTED {
            webhook_requests.with_label_values(&[result.as_str()]);
        }
        for queue in ["workers", "writes", "answers"] {
            shed.with_label_values(&[queue]);
        }
        Metrics {
            registry,
            http_requests,
            webhook_requests,
            source_requests,
            signature_keys,
            sender_events,
            latency_ms,
            queue_depth,
            write_queue_depth,
            shed,
            commit_batch_size,
            commit_duration,
            connections_open,
            body_buffer_bytes,
            connections_refused,
            connections_closed,
            query_timeouts,
            purged_messages,
            feed_waiters,
        }
    }

    /// Counts one closed connection; `reason` is one of a fixed set of labels.
    pub fn observe_closed(&self, reason: &'static str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    pub fn observe_shed(&self, queue: Queue) {
        let label = match queue {
            Queue::Workers => "workers",
            Queue::Writes => "writes",
            Queue::Answers => "answers",
        };
        self.shed.with_label_values(&[label]).inc();
    }

    pub fn observe_commit(&self, batch_size: usize, duration: Duration) {
        self.commit_batch_size.observe(batch_size as f64);
        self.commit_duration.observe(duration.as_secs_f64());
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, status: u16, latency_ms: f64) {
        let counted = |status: &str| self.http_requests.with_label_values(&[route, status]).inc();
        // The statuses hookbox answers most, without formatting one per request.
        match status {
            200 => counted("200"),
            401 => counted("401"),
            404 => counted("404"),
            422 => counted("422"),
            503 => counted("503"),
            other => counted(&other.to_string()),
        }
        self.latency_ms.observe(latency_ms);
    }

    /// Counts one webhook request's outcome, and which key verified it (if one did).
    pub fn observe_webhook(&self, source: Source, result: WebhookResult, key: Option<KeySlot>) {
        self.webhook_requests
            .with_label_values(&[result.as_str()])
            .inc();
        self.source_requests
            .with_label_values(&[source.as_str(), result.as_str()])
            .inc();
        if let Some(key) = key {
            self.signature_keys
                .with_label_values(&[source.as_str(), key.as_str()])
                .inc();
        }
    }

    pub fn observe_event(&self, source: Source, kind: EventKind) {
        self.sender_events
            .with_label_values(&[source.as_str(), kind.as_str()])
            .inc();
    }

    /// The Prometheus text exposition of every metric. The two request counters come first, so
    /// `curl /metrics | head` shows them; the rest follow in name order.
    pub fn render(&self) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.sort_by_key(|family| match family.name() {
            "webhook_requests_total" => 0,
            "http_requests_total" => 1,
            _ => 2,
        });
        let mut out = Vec::with_capacity(4096);
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("encoding to a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
