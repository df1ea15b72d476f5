//! `GET /openapi.json` serves the committed `docs/openapi.json` byte for byte, and that document
//! describes exactly the routes the router has: every documented operation routes to a handler
//! under its own path label, and every route is documented.

use std::collections::BTreeSet;

use hookbox::router::{self, Route};
use serde_json::Value;

use crate::support::TestServer;

fn committed() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap()
}

#[test]
fn the_served_document_is_the_committed_one() {
    let server = TestServer::start();
    let answer = server.get("/openapi.json");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(
        answer.body == committed(),
        "GET /openapi.json differs from docs/openapi.json"
    );
    let document: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
}

/// The operations each route serves, as the document names them. The `match` is exhaustive:
/// a new route does not compile here until it is listed (and then documented).
fn operations(route: Route) -> &'static [(&'static str, &'static str)] {
    match route {
        Route::Webhook => &[("post", "/webhook")],
        Route::WhatsApp => &[("post", "/webhook/whatsapp")],
        Route::WhatsAppVerify => &[("get", "/webhook/whatsapp")],
        Route::Twilio => &[("post", "/webhook/twilio")],
        Route::OpenApi => &[("get", "/openapi.json")],
        Route::Messages => &[("get", "/messages")],
        Route::Feed => &[("get", "/feed")],
        Route::Stats => &[("get", "/stats")],
        Route::Live => &[("get", "/health/live")],
        Route::Ready => &[("get", "/health/ready")],
        Route::Metrics => &[("get", "/metrics")],
        Route::Unmatched => &[],
    }
}

const ROUTES: [Route; 12] = [
    Route::Webhook,
    Route::WhatsApp,
    Route::WhatsAppVerify,
    Route::Twilio,
    Route::OpenApi,
    Route::Messages,
    Route::Feed,
    Route::Stats,
    Route::Live,
    Route::Ready,
    Route::Metrics,
    Route::Unmatched,
];

#[test]
fn every_route_is_documented_and_every_documented_operation_routes() {
    let document: Value = serde_json::from_slice(&committed()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let (route, target) = router::route(&method.to_ascii_uppercase(), path);
            assert!(
                target.is_ok(),
                "{method} {path} does not route to a handler"
            );
            assert_eq!(route.label(), path, "{method} {path}");
            assert!(
                operations(route).contains(&(method.as_str(), path.as_str())),
                "{method} {path} routes to {route:?}"
            );
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|route| operations(*route))
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, routed, "documented operations vs routes");
}

/// Every route that `Route::needs_admin` locks says so in the document: a security requirement
/// naming a `bearer` HTTP scheme (or none, for the open default), and its 401. Every other route
/// needs nothing.
#[test]
fn the_locked_routes_and_only_they_document_the_bearer_token_and_its_401() {
    let document: Value = serde_json::from_slice(&committed()).unwrap();
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    let bearer: Vec<&String> = schemes
        .iter()
        .filter(|(_, scheme)| scheme["type"] == "http" && scheme["scheme"] == "bearer")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(bearer.len(), 1, "one bearer scheme: {schemes:?}");
    let bearer = bearer[0];
    for route in ROUTES {
        for (method, path) in operations(route) {
            let operation = &document["paths"][*path][*method];
            let security = operation["security"].as_array();
            let names_bearer = security.is_some_and(|requirements| {
                requirements
                    .iter()
                    .any(|requirement| requirement.get(bearer).is_some())
            });
            let has_401 = operation["responses"].get("401").is_some();
            if route.needs_admin() {
                assert!(names_bearer, "{method} {path} must name {bearer}");
                let unauthorized = &operation["responses"]["401"];
                assert!(has_401, "{method} {path} must document its 401");
                assert!(
                    unauthorized["headers"].get("WWW-Authenticate").is_some(),
                    "{method} {path}: the 401 carries WWW-Authenticate"
                );
            } else {
                assert!(!names_bearer, "{method} {path} needs no token");
            }
        }
    }
}

/// The 422 caps (SPEC Part 3) are in the request schema: `message_id` at most 256 bytes (which
/// JSON Schema cannot count, so at most 256 characters and said in bytes), `from`/`to` at most 32
/// digits, a `ts` fraction of at most 9 digits. What the schema accepts, the server accepts, at
/// the edges.
#[test]
fn the_message_schema_states_the_caps_the_server_enforces() {
    let document: Value = serde_json::from_slice(&committed()).unwrap();
    let message = &document["components"]["schemas"]["Message"]["properties"];
    assert_eq!(message["message_id"]["maxLength"], 256);
    assert!(
        message["message_id"]["description"]
            .as_str()
            .is_some_and(|text| text.contains("bytes")),
        "message_id says its cap is in bytes: {}",
        message["message_id"]
    );
    for field in ["from", "to"] {
        assert_eq!(message[field]["pattern"], "^\\+\\d{1,32}$", "{field}");
    }
    assert_eq!(
        message["ts"]["pattern"],
        "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?Z$"
    );
    let server = TestServer::start();
    let at_caps = serde_json::json!({
        "message_id": "m".repeat(256),
        "from": format!("+{}", "1".repeat(32)),
        "to": format!("+{}", "2".repeat(32)),
        "ts": "2025-01-15T10:00:00.123456789Z",
    });
    let resp = server.post_webhook(at_caps.to_string().as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
}
