//! `GET /messages`: one page of stored messages, filtered, in (instant, message_id) order.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Context, Reply};
use crate::error::Error;
use crate::http::{Request, Response};
use crate::message;
use crate::store::{ListQuery, StoredMessage};

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
    let query = parse_query(request)?;
    let found = ctx.store.list(&query)?;
    let page = Page {
        data: found.rows,
        total: found.total,
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Response::json(200, &page).into())
}

/// Reads and checks every parameter, reporting all problems at once (FastAPI's way).
fn parse_query(request: &Request) -> Result<ListQuery, Error> {
    let mut problems = Vec::new();
    let limit = integer(request, "limit", 1, MAX_LIMIT.into(), &mut problems)
        .map_or(DEFAULT_LIMIT, |limit| limit as u32);
    let offset = integer(request, "offset", 0, i64::MAX, &mut problems).map_or(0, |n| n as u64);
    let from = collect(request.query_param("from"), &mut problems).flatten();
    let since = collect(request.query_param("since"), &mut problems).flatten();
    let since_key =
        since.and_then(|since| message::instant_key(&since, &["query", "since"], &mut problems));
    let text = collect(request.query_param("q"), &mut problems).flatten();
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    Ok(ListQuery {
        limit,
        offset,
        from,
        since_key,
        text,
        after: None,
    })
}

/// Moves the problems of a failed `query_param` into `problems`.
fn collect<T>(result: Result<T, Error>, problems: &mut Vec<Value>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(Error::Unprocessable(found)) => {
            problems.extend(found);
            None
        }
        Err(other) => {
            problems.push(json!(other.to_string()));
            None
        }
    }
}

/// An optional integer parameter within `min..=max`; `None` when absent or invalid.
fn integer(
    request: &Request,
    name: &str,
    min: i64,
    max: i64,
    problems: &mut Vec<Value>,
) -> Option<i64> {
    let raw = collect(request.query_param(name), problems).flatten()?;
    let loc = ["query", name];
    match raw.parse::<i64>() {
        Err(_) => problems.push(Error::invalid(
            "int_parsing",
            &loc,
            "Input should be a valid integer, unable to parse string as an integer",
            json!(raw),
        )),
        Ok(n) if n < min => problems.push(json!({
            "type": "greater_than_equal",
            "loc": loc,
            "msg": format!("Input should be greater than or equal to {min}"),
            "input": raw,
            "ctx": {"ge": min},
        })),
        Ok(n) if n > max => problems.push(json!({
            "type": "less_than_equal",
            "loc": loc,
            "msg": format!("Input should be less than or equal to {max}"),
            "input": raw,
            "ctx": {"le": max},
        })),
        Ok(n) => return Some(n),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(target: &str) -> Result<ListQuery, Vec<Value>> {
        parse_query(&Request::new("GET", target, b"")).map_err(|error| match error {
            Error::Unprocessable(problems) => problems,
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
}
