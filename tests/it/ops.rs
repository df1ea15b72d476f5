//! Operations: health probes, /metrics, error bodies (404/405/413), X-Request-ID and HEAD
//! (SPEC "Health", "GET /metrics", "Errors for everything else", "Logs" request ids).

use std::collections::{BTreeMap, HashSet};

use serde_json::json;

use crate::support::{Resp, TestServer, metric_value, sign};

const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

fn assert_json_detail(resp: &Resp) -> String {
    let body = resp.json();
    let object = body.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "only `detail`: {body}");
    let detail = body["detail"].as_str().expect("detail is a string");
    assert!(!detail.is_empty());
    detail.to_owned()
}

fn allowed(resp: &Resp) -> Vec<String> {
    let allow = resp.header("allow").expect("405 carries Allow");
    allow
        .split(',')
        .map(|method| method.trim().to_owned())
        .collect()
}

/// Every `http_requests_total` sample, keyed by its label set.
fn http_requests(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("http_requests_total"))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once(' ').unwrap();
            (labels.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn is_generated_looking(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

// ---- health ------------------------------------------------------------------------------------

#[test]
fn health_live_is_200() {
    let server = TestServer::start();
    let resp = server.get("/health/live");
    assert_eq!(resp.status, 200);
    assert!(resp.json().is_object());
}

#[test]
fn health_ready_is_200_when_database_schema_and_secret_are_fine() {
    let server = TestServer::start();
    let resp = server.get("/health/ready");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.json().is_object());
}

#[test]
fn health_ready_is_503_with_a_json_reason_when_the_secret_is_unset() {
    let server = TestServer::start_with(|config| config.webhook_secret = None);
    let resp = server.get("/health/ready");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.json()["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(server.get("/health/live").status, 200);
}

#[test]
fn health_ready_is_503_when_the_schema_is_not_the_one_this_build_applies() {
    let server = TestServer::start();
    server.set_schema_version(99);
    let resp = server.get("/health/ready");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.json()["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );

    server.set_schema_version(crate::support::schema_version());
    assert_eq!(server.get("/health/ready").status, 200);
}

// ---- error bodies ------------------------------------------------------------------------------

#[test]
fn unknown_paths_are_404_not_found_json() {
    let server = TestServer::start();
    for (method, target) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/health"),
        ("GET", "/webhook/extra"),
        ("POST", "/messages/1"),
        ("DELETE", "/anything?x=1"),
    ] {
        let resp = server.send(method, target, &[], b"");
        assert_eq!(resp.status, 404, "{method} {target}");
        assert_eq!(
            resp.json(),
            json!({"detail": "Not Found"}),
            "{method} {target}"
        );
        assert!(
            resp.header("content-type")
                .is_some_and(|value| value.starts_with("application/json"))
        );
    }
}

#[test]
fn wrong_method_is_405_with_allow_and_a_json_detail() {
    let server = TestServer::start();
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let resp = server.send(method, "/webhook", &[], b"");
        assert_eq!(resp.status, 405, "{method} /webhook");
        assert_eq!(allowed(&resp), ["POST"]);
        assert_json_detail(&resp);
    }
    for target in [
        "/messages",
        "/stats",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        for method in ["POST", "PUT", "DELETE"] {
            let resp = server.send(method, target, &[], b"");
            assert_eq!(resp.status, 405, "{method} {target}");
            assert!(
                allowed(&resp).contains(&"GET".to_owned()),
                "{method} {target}"
            );
            assert!(!allowed(&resp).contains(&method.to_owned()));
            assert_json_detail(&resp);
        }
    }
    // A 405 stores nothing even when the body is a valid signed message.
    let body = VALID.as_bytes();
    let resp = server.send("PUT", "/webhook", &[("X-Signature", &sign(body))], body);
    assert_eq!(resp.status, 405);
    assert_eq!(server.get("/messages").json()["total"], 0);
}

#[test]
fn too_large_is_413_with_a_json_detail() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 10);
    let body = VALID.as_bytes();
    let resp = server.send("POST", "/webhook", &[("X-Signature", &sign(body))], body);
    assert_eq!(resp.status, 413);
    assert_json_detail(&resp);
}

#[test]
fn head_on_get_routes_answers_the_status_and_headers_without_a_body() {
    let server = TestServer::start();
    for target in [
        "/messages",
        "/messages?limit=1",
        "/stats",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        let resp = server.send("HEAD", target, &[], b"");
        assert_eq!(resp.status, 200, "HEAD {target}");
        assert!(resp.body.is_empty(), "HEAD {target} sent {:?}", resp.text());
        assert!(resp.header("x-request-id").is_some());
    }
    let resp = server.send("HEAD", "/messages?limit=0", &[], b"");
    assert_eq!(resp.status, 422);
    assert!(resp.body.is_empty());
    let resp = server.send("HEAD", "/webhook", &[], b"");
    assert_eq!(resp.status, 405);
    assert_eq!(allowed(&resp), ["POST"]);
    assert_eq!(server.send("HEAD", "/nope", &[], b"").status, 404);
}

// ---- X-Request-ID ------------------------------------------------------------------------------

#[test]
fn sane_x_request_id_is_echoed_back() {
    let server = TestServer::start();
    for id in [
        "abc-123",
        "req_42.a:b",
        "550e8400-e29b-41d4-a716-446655440000",
    ] {
        let resp = server.send("GET", "/health/live", &[("X-Request-ID", id)], b"");
        assert_eq!(resp.header("x-request-id"), Some(id));
        let resp = server.send("GET", "/nope", &[("x-request-id", id)], b"");
        assert_eq!(resp.header("x-request-id"), Some(id));
    }
}

#[test]
fn insane_x_request_id_is_replaced_by_a_generated_one() {
    let server = TestServer::start();
    let long = "a".repeat(200);
    for id in [r#"a"b"#, long.as_str(), "a b", "<script>", "a;b=c", "a/b"] {
        let resp = server.send("GET", "/health/live", &[("X-Request-ID", id)], b"");
        assert_eq!(resp.status, 200);
        let echoed = resp.header("x-request-id").expect("a generated id");
        assert_ne!(echoed, id.trim());
        assert!(is_generated_looking(echoed), "{echoed:?}");
    }
}

#[test]
fn every_response_carries_a_unique_x_request_id() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 200);
    let unconfigured = TestServer::start_with(|config| config.webhook_secret = None);
    let body = VALID.as_bytes();
    let responses = [
        server.get("/health/live"),
        server.post_webhook(body),
        server.send("POST", "/webhook", &[], body),
        server.post_webhook(b"[]"),
        server.get("/nope"),
        server.get("/webhook"),
        server.post_webhook(&[b' '; 201]),
        server.get("/messages?limit=0"),
        server.get("/metrics"),
        unconfigured.post_webhook(body),
    ];
    let statuses: Vec<u16> = responses.iter().map(|resp| resp.status).collect();
    assert_eq!(statuses, [200, 200, 401, 422, 404, 405, 413, 422, 200, 503]);
    let ids: Vec<&str> = responses
        .iter()
        .map(|resp| {
            resp.header("x-request-id")
                .expect("X-Request-ID on every response")
        })
        .collect();
    assert!(ids.iter().all(|id| is_generated_looking(id)), "{ids:?}");
    let distinct: HashSet<&&str> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
}

// ---- metrics -----------------------------------------------------------------------------------

#[test]
fn metrics_are_prometheus_text_with_the_documented_families() {
    let server = TestServer::start_with(|config| config.workers = 1);
    assert_eq!(server.get("/health/live").status, 200);
    let resp = server.get("/metrics");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|value| value.starts_with("text/plain")),
        "{:?}",
        resp.header("content-type")
    );
    let text = resp.text();
    for family in [
        "# TYPE http_requests_total counter",
        "# TYPE webhook_requests_total counter",
        "# TYPE request_latency_ms histogram",
    ] {
        assert!(
            text.lines().any(|line| line == family),
            "{family} missing:\n{text}"
        );
    }
    for line in text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        let (_, value) = line.rsplit_once(' ').expect("`series value`");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}

/// ACCEPTANCE.md step 7 reads `curl /metrics | head`: after the walk's requests, both families
/// the seed names must show sample lines within those ten lines.
#[test]
fn the_first_ten_lines_of_metrics_show_both_request_families() {
    let server = TestServer::start();
    assert_eq!(server.get("/health/live").status, 200);
    assert_eq!(server.post_webhook(VALID.as_bytes()).status, 200);
    assert_eq!(server.get("/messages").status, 200);
    let text = server.get("/metrics").text();
    let head: Vec<&str> = text.lines().take(10).collect();
    for family in ["http_requests_total{", "webhook_requests_total{"] {
        assert!(
            head.iter().any(|line| line.starts_with(family)),
            "no {family} sample in `| head`:\n{}",
            head.join("\n")
        );
    }
}

#[test]
fn the_four_webhook_result_series_exist_at_zero_from_startup() {
    let server = TestServer::start();
    let text = server.get("/metrics").text();
    for result in [
        "created",
        "duplicate",
        "invalid_signature",
        "validation_error",
    ] {
        let series = format!("webhook_requests_total{{result=\"{result}\"}}");
        assert_eq!(metric_value(&text, &series), Some(0.0), "{series}:\n{text}");
    }
    assert_eq!(metric_value(&text, "request_latency_ms_count"), Some(0.0));
}

#[test]
fn metrics_count_a_known_sequence_of_requests_exactly() {
    // One worker answers requests strictly one after another, so each is counted before the next.
    let server = TestServer::start_with(|config| config.workers = 1);
    let valid = |id: &str| VALID.replace("\"m1\"", &format!("\"{id}\""));
    assert_eq!(server.post_webhook(valid("m1").as_bytes()).status, 200);
    assert_eq!(server.post_webhook(valid("m1").as_bytes()).status, 200);
    assert_eq!(server.post_webhook(valid("m2").as_bytes()).status, 200);
    assert_eq!(
        server
            .send("POST", "/webhook", &[], VALID.as_bytes())
            .status,
        401
    );
    let wrong = [("X-Signature", "0".repeat(64))];
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        server
            .send("POST", "/webhook", &wrong, VALID.as_bytes())
            .status,
        401
    );
    assert_eq!(server.post_webhook(br#"{"message_id":""}"#).status, 422);
    assert_eq!(server.post_webhook(b"not json").status, 422);
    assert_eq!(server.get("/messages").status, 200);
    assert_eq!(server.get("/messages?limit=0").status, 422);
    assert_eq!(server.get("/stats").status, 200);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.get("/webhook").status, 405);
    assert_eq!(server.get("/health/live").status, 200);

    let text = server.get("/metrics").text();
    let expected: BTreeMap<String, f64> = [
        (r#"{path="/health/live",status="200"}"#, 1.0),
        (r#"{path="/messages",status="200"}"#, 1.0),
        (r#"{path="/messages",status="422"}"#, 1.0),
        (r#"{path="/stats",status="200"}"#, 1.0),
        (r#"{path="/webhook",status="200"}"#, 3.0),
        (r#"{path="/webhook",status="401"}"#, 2.0),
        (r#"{path="/webhook",status="405"}"#, 1.0),
        (r#"{path="/webhook",status="422"}"#, 2.0),
        (r#"{path="unmatched",status="404"}"#, 1.0),
    ]
    .into_iter()
    .map(|(labels, value)| (labels.to_owned(), value))
    .collect();
    assert_eq!(http_requests(&text), expected, "\n{text}");
    for (result, count) in [
        ("created", 2.0),
        ("duplicate", 1.0),
        ("invalid_signature", 2.0),
        ("validation_error", 2.0),
    ] {
        let series = format!("webhook_requests_total{{result=\"{result}\"}}");
        assert_eq!(metric_value(&text, &series), Some(count), "{series}");
    }
    assert_eq!(metric_value(&text, "request_latency_ms_count"), Some(13.0));
    assert_eq!(
        metric_value(&text, r#"request_latency_ms_bucket{le="+Inf"}"#),
        Some(13.0)
    );

    // The scrape itself is counted once it has been answered.
    let text = server.get("/metrics").text();
    assert_eq!(
        metric_value(
            &text,
            r#"http_requests_total{path="/metrics",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric_value(&text, "request_latency_ms_count"), Some(14.0));
}

#[test]
fn latency_histogram_has_100_500_and_inf_buckets_consistent_with_its_count() {
    let server = TestServer::start_with(|config| config.workers = 1);
    for _ in 0..5 {
        assert_eq!(server.get("/health/live").status, 200);
    }
    let text = server.get("/metrics").text();
    let bucket = |le: &str| {
        metric_value(&text, &format!("request_latency_ms_bucket{{le=\"{le}\"}}"))
            .unwrap_or_else(|| panic!("bucket le={le} missing:\n{text}"))
    };
    let (le_100, le_500, le_inf) = (bucket("100"), bucket("500"), bucket("+Inf"));
    let count = metric_value(&text, "request_latency_ms_count").unwrap();
    assert_eq!(count, 5.0);
    assert_eq!(le_inf, count);
    assert!(
        le_100 <= le_500 && le_500 <= le_inf,
        "{le_100} {le_500} {le_inf}"
    );
    assert!(metric_value(&text, "request_latency_ms_sum").is_some_and(|sum| sum >= 0.0));
}

#[test]
fn unknown_paths_share_one_label_and_never_appear_raw_in_metrics() {
    let server = TestServer::start_with(|config| config.workers = 1);
    assert_eq!(server.get("/nope-alpha").status, 404);
    assert_eq!(server.get("/nope-beta/deeper?x=1").status, 404);
    assert_eq!(server.send("POST", "/nope-gamma", &[], b"{}").status, 404);
    assert_eq!(server.get("/health").status, 404);
    let text = server.get("/metrics").text();
    assert_eq!(
        metric_value(
            &text,
            r#"http_requests_total{path="unmatched",status="404"}"#
        ),
        Some(4.0),
        "\n{text}"
    );
    assert!(
        !text.contains("nope"),
        "raw URL leaked into metrics:\n{text}"
    );
    assert!(!text.contains(r#"path="/health""#));
}

#[test]
fn path_label_is_the_route_not_the_raw_url() {
    let server = TestServer::start_with(|config| config.workers = 1);
    assert_eq!(server.get("/messages?limit=1&q=secret-ish").status, 200);
    assert_eq!(server.get("/messages/").status, 200);
    assert_eq!(server.get("/messages?from=+1").status, 200);
    let text = server.get("/metrics").text();
    assert_eq!(
        metric_value(
            &text,
            r#"http_requests_total{path="/messages",status="200"}"#
        ),
        Some(3.0),
        "\n{text}"
    );
    assert!(
        !text.contains("secret-ish") && !text.contains("limit="),
        "\n{text}"
    );
}
