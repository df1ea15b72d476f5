//! The query strings of `/messages` and `/feed`: `http::percent_decode`, `Request::query_param`
//! and each handler's own `parse_query`, which turns it into validated parameters.
//!
//! Checked, besides "no panic":
//! - any query string gives validated parameters or a 422, never another error (no 500 from a
//!   query), on both endpoints;
//! - `/feed`: `limit` in 1..=1000, `wait` at most 60 s, `from` as given, and `after` either
//!   absent (oldest), `now` (end), or a token that decodes and re-encodes to itself;
//! - an accepted query holds what an independent parse of the string says (last value wins, `+`
//!   literal, `%XX` decoded, a bad `%` kept): `from`, `q`, `since` (as its sort key), `limit` in
//!   1..=100 (default 50), `offset`, and a cursor only with offset 0;
//! - `percent_decode` never grows its input, and undoes percent-encoding of any bytes;
//! - the `Link` a full page would carry (`next_link`) parses back to the same query, continuing
//!   after the page's last row.
#![no_main]

use hookbox::error::Error;
use hookbox::handlers::feed;
use hookbox::handlers::messages::{DEFAULT_LIMIT, MAX_LIMIT, next_link, parse_query};
use hookbox::http::{Request, percent_decode};
use hookbox::store::feed::FeedStart;
use hookbox::store::{Position, StoredMessage};
use hookbox::timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The connection layer hands over only UTF-8 heads.
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = percent_decode(query);
    assert!(decoded.len() <= query.len());
    assert_eq!(
        decoded,
        decode(query),
        "percent_decode disagrees with the oracle"
    );
    assert_eq!(
        percent_decode(&encode(data)),
        data,
        "encoding is not undone"
    );

    check_feed(query);
    let request = Request::new("GET", &format!("/messages?{query}"), b"");
    let (parsed, since) = match parse_query(&request) {
        Ok(parsed) => parsed,
        Err(Error::Unprocessable(problems)) => {
            assert!(!problems.is_empty());
            return;
        }
        Err(other) => panic!("a query string gave {other:?}"),
    };
    let param = |name: &str| last_value(query, name);
    assert_eq!(parsed.from, param("from"));
    assert_eq!(parsed.text, param("q"));
    assert_eq!(since, param("since"));
    assert_eq!(
        parsed.since_key,
        since.as_deref().and_then(timestamp::sort_key)
    );
    assert_eq!(parsed.since_key.is_some(), since.is_some());
    assert!((1..=MAX_LIMIT).contains(&parsed.limit));
    let limit = param("limit").map_or(DEFAULT_LIMIT, |l| {
        l.parse::<i64>().expect("accepted limit") as u32
    });
    assert_eq!(parsed.limit, limit);
    // Read as the handler reads it: a signed integer (so `-0` is 0), then at least 0.
    let offset = param("offset").map_or(0, |o| o.parse::<i64>().expect("accepted offset") as u64);
    assert_eq!(parsed.offset, offset);
    assert!(parsed.offset <= i64::MAX as u64);
    assert_eq!(parsed.after.is_some(), param("cursor").is_some());
    if parsed.after.is_some() {
        assert_eq!(parsed.offset, 0);
    }

    // A full page's next link, followed, is the same query after the page's last row.
    let last = StoredMessage {
        message_id: raw_value(query, "id").unwrap_or_else(|| "m-1".to_owned()),
        from: "+1".to_owned(),
        to: "+2".to_owned(),
        ts: since
            .clone()
            .filter(|_| parsed.since_key.is_some())
            .unwrap_or_else(|| "2025-01-15T10:00:00Z".to_owned()),
        text: None,
    };
    let link = next_link(&parsed, since.as_deref(), &last).expect("a valid ts makes a link");
    let target = link.strip_prefix("/messages?").expect("a /messages link");
    assert!(
        target.bytes().all(|b| b.is_ascii_graphic()),
        "link {link:?}"
    );
    let (followed, followed_since) = parse_query(&Request::new("GET", &link, b""))
        .unwrap_or_else(|error| panic!("the next link {link:?} is refused: {error:?}"));
    assert_eq!(followed_since, since);
    assert_eq!(followed.from, parsed.from);
    assert_eq!(followed.text, parsed.text);
    assert_eq!(followed.since_key, parsed.since_key);
    assert_eq!(followed.limit, parsed.limit);
    assert_eq!(followed.offset, 0);
    let position = Position {
        ts_key: timestamp::sort_key(&last.ts).unwrap(),
        message_id: last.message_id,
    };
    assert_eq!(followed.after, Some(position));
});

fn check_feed(query: &str) {
    let request = Request::new("GET", &format!("/feed?{query}"), b"");
    let (parsed, asked, wait) = match feed::parse_query(&request) {
        Ok(parsed) => parsed,
        Err(Error::Unprocessable(problems)) => {
            assert!(!problems.is_empty());
            return;
        }
        Err(other) => panic!("a /feed query string gave {other:?}"),
    };
    let param = |name: &str| last_value(query, name);
    assert!((1..=feed::MAX_LIMIT).contains(&parsed.limit));
    assert!(wait.as_secs() <= feed::MAX_WAIT_SECS);
    assert_eq!(parsed.from, param("from"));
    match (param("after").as_deref(), parsed.start) {
        (None, FeedStart::Oldest) | (Some("now"), FeedStart::End) => assert!(asked.is_none()),
        (Some(token), FeedStart::After(position)) => {
            let (store_id, at) = asked.expect("a token's store");
            assert_eq!(at, position);
            assert_eq!(feed::encode_token(&store_id, position), token);
        }
        (after, start) => panic!("after={after:?} gave {start:?}"),
    }
}

/// `%XX` decoded (either case), anything else as is.
fn decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02x}")).collect()
}

/// The last value of `name` in `query`, percent-decoded; `None` if absent.
fn decoded_value(query: &str, name: &str) -> Option<Vec<u8>> {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name.as_bytes()).then(|| decode(value))
        })
        .next_back()
}

/// Any parameter's last value, as text.
fn raw_value(query: &str, name: &str) -> Option<String> {
    decoded_value(query, name).map(|value| String::from_utf8_lossy(&value).into_owned())
}

/// A parameter the handler reads: one that is not UTF-8 after decoding was refused with a 422
/// before this is asked.
fn last_value(query: &str, name: &str) -> Option<String> {
    decoded_value(query, name)
        .map(|value| String::from_utf8(value).expect("accepted values are UTF-8"))
}
