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
