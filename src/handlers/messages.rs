//! `GET /messages`: one page of stored messages, filtered, in (instant, message_id) order.
//!
//! A full page carries `Link: <…>; rel="next"`: the same filters and limit with an opaque `cursor`
//! holding the page's last position, so the next page starts right after it (keyset paging: no
//! row visited twice or skipped when rows arrive between pages, and no cost growing with depth).
//! The cursor codec is store-agnostic: it encodes a `Position`, which both stores order alike.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Context, Reply, read};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::problem::Problem;
use sha2::{Digest, Sha256};

use crate::message;
use crate::store::{ListQuery, Position, StoredMessage};
use crate::timestamp;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

#[derive(Serialize)]
struct Page {
    data: Vec<StoredMessage>,
    total: i64,
    limit: u32,
    offset: u64,
}

pub fn list(ctx: &mut Context<'_>, request: &Request) -> Result<Reply, Error> {
    let (query, since) = parse_query(request)?;
    let found = read(ctx.metrics, ctx.store.list(&query))?;
    let next = (found.rows.len() == query.limit as usize)
        .then(|| {
            found
                .rows
                .last()
                .and_then(|last| next_link(&query, since.as_deref(), last))
        })
        .flatten();
    let page = Page {
        data: found.rows,
        total: found.total,
        limit: query.limit,
        offset: query.offset,
    };
    let mut response = Response::json(200, &page);
    if let Some(next) = next {
        response
            .headers
            .push(("Link", format!("<{next}>; rel=\"next\"")));
    }
    Ok(response.into())
}

/// `/messages?…` with the query's filters and limit, continuing after `last`.
fn next_link(query: &ListQuery, since: Option<&str>, last: &StoredMessage) -> Option<String> {
    let position = Position {
        ts_key: timestamp::sort_key(&last.ts)?,
        message_id: last.message_id.clone(),
    };
    let mut link = format!("/messages?limit={}", query.limit);
    for (name, value) in [
        ("from", query.from.as_deref()),
        ("since", since),
        ("q", query.text.as_deref()),
    ] {
        if let Some(value) = value {
            link.push_str(&format!("&{name}={}", percent_encode(value)));
        }
    }
    link.push_str(&format!("&cursor={}", encode_cursor(&position)));
    Some(link)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (so `+` is `%2B`).
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Marks the cursor format; a change of format changes it, so old cursors are refused cleanly.
const CURSOR_VERSION: &[u8] = b"c1";
/// Bytes of SHA-256 over the payload that end a cursor: garbled or foreign cursors fail it.
const CURSOR_CHECK: usize = 8;

/// Hex of `c1 \n ts_key \n message_id` and its check. Opaque to clients; not a secret (a
/// forged cursor is only a position).
pub fn encode_cursor(position: &Position) -> String {
    let mut bytes = cursor_payload(position);
    let check = Sha256::digest(&bytes);
    bytes.extend_from_slice(&check[..CURSOR_CHECK]);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The position in a cursor of ours, or `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<Position> {
    if cursor.len() % 2 != 0 || !cursor.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    let (payload, check) = bytes.split_at(bytes.len().checked_sub(CURSOR_CHECK)?);
    if Sha256::digest(payload)[..CURSOR_CHECK] != *check {
        return None;
    }
    let rest = payload.strip_prefix(CURSOR_VERSION)?.strip_prefix(b"\n")?;
    let split = rest.iter().position(|&byte| byte == b'\n')?;
    let position = Position {
        ts_key: String::from_utf8(rest[..split].to_vec()).ok()?,
        message_id: String::from_utf8(rest[split + 1..].to_vec()).ok()?,
    };
    (cursor_payload(&position) == payload).then_some(position)
}

fn cursor_payload(position: &Position) -> Vec<u8> {
    let mut bytes = CURSOR_VERSION.to_vec();
    bytes.push(b'\n');
    bytes.extend_from_slice(position.ts_key.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(position.message_id.as_bytes());
    bytes
}

/// Reads and checks every parameter, reporting all problems at once (FastAPI's way). Also
/// returns `since` as given, for the next link.
fn parse_query(request: &Request) -> Result<(ListQuery, Option<String>), Error> {
    let mut problems = Vec::new();
    let limit = integer(request, "limit", 1, MAX_LIMIT.into(), &mut problems)
        .map_or(DEFAULT_LIMIT, |limit| limit as u32);
    let offset = integer(request, "offset", 0, i64::MAX, &mut problems).map_or(0, |n| n as u64);
    let from = collect(request.query_param("from"), &mut problems).flatten();
    let since = collect(request.query_param("since"), &mut problems).flatten();
    let since_key = since
        .as_ref()
        .and_then(|since| message::instant_key(since, &["query", "since"], &mut problems));
    let text = collect(request.query_param("q"), &mut problems).flatten();
    let cursor = collect(request.query_param("cursor"), &mut problems).flatten();
    let after = cursor.and_then(|cursor| {
        let problem = if offset != 0 {
            "A cursor continues a page; it cannot be combined with a non-zero offset"
        } else if let Some(position) = decode_cursor(&cursor) {
            return Some(position);
        } else {
            "Input should be a cursor from a Link header of this service"
        };
        problems.push(Problem::new(
            "value_error",
            &["query", "cursor"],
            problem,
            json!(cursor),
        ));
        None
    });
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    let query = ListQuery {
        limit,
        offset,
        from,
        since_key,
        text,
        after,
    };
    Ok((query, since))
}

/// Moves the problems of a failed `query_param` into `problems`.
pub(super) fn collect<T>(result: Result<T, Error>, problems: &mut Vec<Problem>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(Error::Unprocessable(found)) => {
            problems.extend(found);
            None
        }
        Err(other) => {
            problems.push(Problem::new(
                "value_error",
                &["query"],
                other.to_string(),
                Value::Null,
            ));
            None
        }
    }
}

/// An optional integer parameter within `min..=max`; `None` when absent or invalid.
pub(super) fn integer(
    request: &Request,
    name: &str,
    min: i64,
    max: i64,
    problems: &mut Vec<Problem>,
) -> Option<i64> {
    let raw = collect(request.query_param(name), problems).flatten()?;
    let loc = ["query", name];
    match raw.parse::<i64>() {
        Err(_) => problems.push(Problem::new(
            "int_parsing",
            &loc,
            "Input should be a valid integer, unable to parse string as an integer",
            json!(raw),
        )),
        Ok(n) if n < min => problems.push(
            Problem::new(
                "greater_than_equal",
                &loc,
                format!("Input should be greater than or equal to {min}"),
                json!(raw),
            )
            .with_ctx(json!({"ge": min})),
        ),
        Ok(n) if n > max => problems.push(
            Problem::new(
                "less_than_equal",
                &loc,
                format!("Input should be less than or equal to {max}"),
                json!(raw),
            )
            .with_ctx(json!({"le": max})),
        ),
        Ok(n) => return Some(n),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(target: &str) -> Result<ListQuery, Vec<Value>> {
        parse_query(&Request::new("GET", target, b""))
            .map(|(query, _)| query)
            .map_err(|error| match error {
                Error::Unprocessable(problems) => problems
                    .iter()
                    .map(|problem| serde_json::to_value(problem).unwrap())
                    .collect(),
                other => panic!("unexpected {other:?}"),
            })
    }

    #[test]
    fn defaults() {
        let q = query("/messages").unwrap();
        assert_eq!((q.limit, q.offset), (DEFAULT_LIMIT, 0));
        assert_eq!((q.from, q.since_key, q.text), (None, None, None));
    }

    #[test]
    fn bounds_and_parsing() {
        assert_eq!(query("/messages?limit=1").unwrap().limit, 1);
        assert_eq!(query("/messages?limit=100").unwrap().limit, 100);
        for (target, kind) in [
            ("/messages?limit=0", "greater_than_equal"),
            ("/messages?limit=101", "less_than_equal"),
            ("/messages?limit=abc", "int_parsing"),
            ("/messages?limit=", "int_parsing"),
            ("/messages?limit=1.5", "int_parsing"),
            ("/messages?offset=-1", "greater_than_equal"),
            ("/messages?offset=99999999999999999999999", "int_parsing"),
            ("/messages?since=2025-01-15", "datetime_format"),
        ] {
            let problems = query(target).unwrap_err();
            assert_eq!(problems.len(), 1, "{target}");
            assert_eq!(problems[0]["type"], kind, "{target}");
            assert_eq!(problems[0]["loc"][0], "query");
        }
        assert_eq!(query("/messages?limit=0&offset=-1").unwrap_err().len(), 2);
    }

    #[test]
    fn filters() {
        let q = query("/messages?from=+91&since=2025-01-15T09:30:00Z&q=HeLLo").unwrap();
        assert_eq!(q.from.as_deref(), Some("+91"));
        assert_eq!(q.since_key.as_deref(), Some("2025-01-15T09:30:00"));
        assert_eq!(q.text.as_deref(), Some("HeLLo"));
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let position = Position {
            ts_key: "2025-01-15T10:00:00.5".to_owned(),
            message_id: "id with\nnewline, ünïcode & 100%".to_owned(),
        };
        let cursor = encode_cursor(&position);
        assert_eq!(decode_cursor(&cursor), Some(position.clone()));
        let parsed = query(&format!("/messages?cursor={cursor}&offset=0")).unwrap();
        assert_eq!((parsed.after, parsed.offset), (Some(position), 0));

        let mut flipped = cursor.clone().into_bytes();
        flipped[5] = if flipped[5] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            "",
            "x",
            "00",
            "zz",
            flipped.as_str(),
            &cursor[..cursor.len() - 2],
            &cursor[2..],
            "6331",
            "%C3%A9",
        ] {
            let problems = query(&format!("/messages?cursor={bad}")).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0]["loc"], json!(["query", "cursor"]), "{bad}");
        }
        let problems = query(&format!("/messages?cursor={cursor}&offset=1")).unwrap_err();
        assert_eq!(problems[0]["loc"], json!(["query", "cursor"]));
    }

    #[test]
    fn next_links_keep_the_filters_encoded() {
        let (query, since) = parse_query(&Request::new(
            "GET",
            "/messages?limit=2&from=+91&since=2025-01-15T09:30:00Z&q=a%20b%2B%25%26",
            b"",
        ))
        .unwrap();
        let last = StoredMessage {
            message_id: "m9".to_owned(),
            from: "+91".to_owned(),
            to: "+1".to_owned(),
            ts: "2025-01-16T00:00:00Z".to_owned(),
            text: None,
        };
        let link = next_link(&query, since.as_deref(), &last).unwrap();
        let (head, cursor) = link.split_once("&cursor=").unwrap();
        assert_eq!(
            head,
            "/messages?limit=2&from=%2B91&since=2025-01-15T09%3A30%3A00Z&q=a%20b%2B%25%26"
        );
        let (again, _) = parse_query(&Request::new("GET", &link, b"")).unwrap();
        assert_eq!(again.after.unwrap().message_id, "m9");
        assert_eq!((again.from, again.text), (query.from, query.text));
        assert!(decode_cursor(cursor).is_some());
    }
}
