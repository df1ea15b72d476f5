//! A careless client's query strings on every read route, on whichever store the suite runs:
//! NUL, invalid UTF-8, lone surrogates, huge and negative numbers in every parameter give a 200 or
//! a 4xx, never a 5xx, and never break the store for the next request.

use crate::support::TestServer;

const ROUTES: [&str; 4] = ["/messages", "/stats", "/feed", "/webhook/whatsapp"];
const PARAMS: [&str; 12] = [
    "from",
    "since",
    "q",
    "limit",
    "offset",
    "cursor",
    "after",
    "wait",
    "hub.mode",
    "hub.verify_token",
    "hub.challenge",
    "%00",
];
const VALUES: [&str; 22] = [
    "%00",
    "a%00b",
    "%2B1%00",
    "%2B%00",
    "%ff",
    "%ED%A0%80",
    "%C0%80",
    "%",
    "%zz",
    "%2",
    "99999999999999999999999",
    "-1",
    "-9223372036854775808",
    "1.5",
    "1e3",
    "%2B",
    "2025-01-15T10:00:00Z%00",
    "2025-01-15T10:00:00.1234567890Z",
    "9999-12-31T23:59:59.999999999Z",
    "0000-01-01T00:00:00Z",
    "now",
    "",
];

#[test]
fn every_parameter_of_every_read_route_is_never_a_5xx() {
    let server = TestServer::start_with(|config| {
        config.senders.whatsapp_verify_token = Some(hookbox::config::Secret::new("v"));
    });
    assert_eq!(
        server
            .post_message("m\u{0}1", "+1", "2025-01-15T10:00:00Z", Some("a\u{0}b"))
            .status,
        200
    );
    let mut failures = Vec::new();
    for route in ROUTES {
        for param in PARAMS {
            for value in VALUES {
                let target = format!("{route}?{param}={value}");
                let resp = server.get(&target);
                if resp.status >= 500 {
                    failures.push(format!("{target}: {} {}", resp.status, resp.text()));
                }
            }
        }
    }
    // Several at once, and a parameter given twice.
    for target in [
        "/messages?from=%00&since=%00&q=%00&limit=%00&offset=%00",
        "/messages?q=%00&q=b",
        "/messages?from=%2B1&from=%00",
        "/feed?from=%00&after=%00&wait=0",
    ] {
        let resp = server.get(target);
        if resp.status >= 500 {
            failures.push(format!("{target}: {} {}", resp.status, resp.text()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The NUL row is still found by what it holds, and the store still serves.
    let page = server.get("/messages?q=%00").json();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(server.get("/health/ready").status, 200);
}
