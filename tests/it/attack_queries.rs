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

/// Next links over rows whose ids and texts hold U+0000 and U+0001, with a `q` of U+0000: every
/// row once, in the order offset paging gives, on both stores (PostgreSQL stores them escaped).
#[test]
fn next_links_walk_nul_ids_and_a_nul_search_exactly_once() {
    let server = TestServer::start();
    let ids = ["\u{0}", "\u{0}\u{0}", "\u{1}", "a\u{0}", "a\u{1}", "a"];
    for id in ids {
        // One instant for all: the order is by message_id alone, where NUL sorts first.
        let resp = server.post_message(id, "+1", "2025-01-15T10:00:00Z", Some("x\u{0}y"));
        assert_eq!(resp.status, 200, "{id:?}");
    }
    let by_offset: Vec<String> = (0..ids.len())
        .map(|offset| {
            let page = server.get(&format!("/messages?q=%00&limit=1&offset={offset}"));
            page.json()["data"][0]["message_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut expected: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let mut by_link = Vec::new();
    let mut target = "/messages?q=%00&limit=1".to_owned();
    loop {
        let page = server.get(&target);
        assert_eq!(page.status, 200, "{target}: {}", page.text());
        let next = page.header("link").map(|link| {
            link.trim_start_matches('<')
                .split_once('>')
                .unwrap()
                .0
                .to_owned()
        });
        for row in page.json()["data"].as_array().unwrap() {
            by_link.push(row["message_id"].as_str().unwrap().to_owned());
        }
        match next {
            Some(next) => target = next,
            None => break,
        }
        assert!(by_link.len() <= ids.len(), "{by_link:?}");
    }
    assert_eq!(by_offset.len(), ids.len());
    assert_eq!(by_link, by_offset);
    let mut sorted = by_link.clone();
    sorted.sort();
    let mut all = expected.clone();
    all.sort();
    assert_eq!(sorted, all);
}
