//! `GET /messages`: one page of stored messages, filtered, in (instant, message_id) order.
//!
//! A full page carries `Link: <…>; rel="next"`: the same filters and limit with an opaque `cursor`
//! holding the page's last position, so the next page starts right after it (keyset paging: no
//! row visited twice or skipped when rows arrive between pages, and no cost growing with depth).
//! The cursor (`cursor.rs`) holds a `Position`, which both stores order alike, and a tag of the
//! query it was made for, so it continues only that query.
//!
//! A query no stored row can match (a `from` that is not a storable number) is answered here
//! with an empty page, without asking the store: PostgreSQL refuses such values (U+0000) outright.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Context, Reply, read};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::problem::Problem;

use crate::cursor;
use crate::message;
use crate::store::{self, ListQuery, Position, StoredMessage};
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
    let found = if matches_nothing(&query) {
        store::Page {
            rows: Vec::new(),
            total: 0,
        }
    } else {
        read(ctx.metrics, ctx.store.list(&query))?
    };
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

/// Whether no stored row can match the filters, whatever the store holds: every stored `from`
/// passed the webhook's validation (`+`, then at most `MAX_MSISDN_DIGITS` ASCII digits).
fn matches_nothing(query: &ListQuery) -> bool {
    query.from.as_deref().is_some_and(|from| {
        !message::is_msisdn(from) || from.len() > 1 + message::MAX_MSISDN_DIGITS
    })
}

/// `/messages?…` with the query's filters and limit, continuing after `last`. (Public for the
/// fuzz targets: a link parsed back must be the same query.)
pub fn next_link(query: &ListQuery, since: Option<&str>, last: &StoredMessage) -> Option<String> {
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
    link.push_str(&format!("&cursor={}", cursor::encode(&position, query)));
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

/// Reads and checks every parameter, reporting all problems at once (FastAPI's way). Also
/// returns `since` as given, for the next link. (Public for the fuzz targets.)
pub fn parse_query(request: &Request) -> Result<(ListQuery, Option<String>), Error> {
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
    let mut query = ListQuery {
        limit,
        offset,
        from,
        since_key,
        text,
        after: None,
    };
    if let Some(cursor) = cursor {
        let refused = if offset != 0 {
            Some("A cursor continues a page; it cannot be combined with a non-zero offset")
        } else {
            match cursor::decode(&cursor, &query) {
                Ok(position) => {
                    query.after = Some(position);
                    None
                }
                Err(problem) => Some(problem.message()),
            }
        };
        if let Some(refused) = refused {
            problems.push(Problem::new(
                "value_error",
                &["query", "cursor"],
                refused,
                json!(cursor),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
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
    use crate::cursor::{Refused, decode as decode_cursor, encode as encode_cursor};

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
        let plain = query("/messages").unwrap();
        let cursor = encode_cursor(&position, &plain);
        assert_eq!(decode_cursor(&cursor, &plain), Ok(position.clone()));
        let parsed = query(&format!("/messages?cursor={cursor}&offset=0")).unwrap();
        assert_eq!((parsed.after, parsed.offset), (Some(position.clone()), 0));

        let mut flipped = cursor.clone().into_bytes();
        flipped[5] = if flipped[5] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let forged = |ts_key: &str| {
            let position = Position {
                ts_key: ts_key.to_owned(),
                message_id: "m".to_owned(),
            };
            encode_cursor(&position, &plain)
        };
        for bad in [
            "".to_owned(),
            "x".to_owned(),
            "00".to_owned(),
            "zz".to_owned(),
            flipped,
            cursor[..cursor.len() - 2].to_owned(),
            cursor[2..].to_owned(),
            cursor.to_uppercase(),
            "6331".to_owned(),
            "%C3%A9".to_owned(),
            forged("2025-01-15T10:00:00.50"),
            forged("2025-01-15T10:00:00Z"),
            forged("2025-01-15T10:00:00\u{0}"),
            forged("2025-13-15T10:00:00"),
            forged("\n"),
        ] {
            let problems = query(&format!("/messages?cursor={bad}")).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0]["loc"], json!(["query", "cursor"]), "{bad}");
            assert_eq!(problems[0]["msg"], Refused::NotOurs.message(), "{bad}");
        }
        let problems = query(&format!("/messages?cursor={cursor}&offset=1")).unwrap_err();
        assert_eq!(problems[0]["loc"], json!(["query", "cursor"]));
    }

    #[test]
    fn a_cursor_continues_only_the_query_it_was_made_for() {
        let position = Position {
            ts_key: "2025-01-15T10:00:00".to_owned(),
            message_id: "m".to_owned(),
        };
        let made_for = "limit=2&from=+1&since=2025-01-15T09:00:00Z&q=a";
        let cursor = encode_cursor(&position, &query(&format!("/messages?{made_for}")).unwrap());
        for same in [
            made_for,
            "q=a&since=2025-01-15T09:00:00.000Z&from=%2B1&limit=2",
        ] {
            let parsed = query(&format!("/messages?{same}&cursor={cursor}")).unwrap();
            assert_eq!(parsed.after.as_ref(), Some(&position), "{same}");
        }
        for other in [
            "limit=3&from=+1&since=2025-01-15T09:00:00Z&q=a",
            "limit=2&from=+2&since=2025-01-15T09:00:00Z&q=a",
            "limit=2&since=2025-01-15T09:00:00Z&q=a",
            "limit=2&from=+1&since=2025-01-15T09:00:01Z&q=a",
            "limit=2&from=+1&q=a",
            "limit=2&from=+1&since=2025-01-15T09:00:00Z&q=A",
            "limit=2&from=+1&since=2025-01-15T09:00:00Z&q=",
            "limit=2&from=+1&since=2025-01-15T09:00:00Z",
            // Fields shifted between parameters hash apart too.
            "limit=2&from=+1a&since=2025-01-15T09:00:00Z",
        ] {
            let problems = query(&format!("/messages?{other}&cursor={cursor}")).unwrap_err();
            assert_eq!(problems.len(), 1, "{other}");
            assert_eq!(problems[0]["loc"], json!(["query", "cursor"]), "{other}");
            assert_eq!(problems[0]["msg"], Refused::OtherQuery.message(), "{other}");
        }
    }

    #[test]
    fn a_from_no_stored_row_can_have_matches_nothing() {
        for from in ["+1", "+15550001", &format!("+{}", "9".repeat(32))] {
            let target = format!("/messages?from={}", from.replace('+', "%2B"));
            assert!(!matches_nothing(&query(&target).unwrap()), "{from}");
        }
        for from in [
            "",
            "%00",
            "1",
            "abc",
            "%2B",
            "%2B1%00",
            "%2B%2B1",
            "%2B%D9%A1",
        ] {
            let target = format!("/messages?from={from}");
            assert!(matches_nothing(&query(&target).unwrap()), "{from}");
        }
        let over = format!("/messages?from=%2B{}", "9".repeat(33));
        assert!(matches_nothing(&query(&over).unwrap()));
        assert!(!matches_nothing(&query("/messages?q=%00").unwrap()));
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
        assert_eq!((&again.from, &again.text), (&query.from, &query.text));
        assert!(decode_cursor(cursor, &query).is_ok());
    }
}
