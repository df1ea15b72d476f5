//! `GET /feed`: stored messages in arrival (commit) order after a position, with an opaque `next`
//! token to continue from, and an optional long poll (`wait`).
//!
//! When the page is empty, nothing is left to examine and `wait` > 0, the handler does not wait:
//! it returns `Reply::Wait`, and the request's connection thread waits for the next commit
//! (`answer::Pipeline::dispatch`), then hands the request back to a worker, continuing after
//! the same `next`.
//! Waiting never holds a worker.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::messages::{collect, integer};
use super::{Context, Reply, read};
use crate::error::Error;
use crate::http::{Request, Response, percent_decode};
use crate::problem::Problem;
use crate::store::StoredMessage;
use crate::store::feed::{FeedQuery, FeedStart};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
/// Longest `wait`, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

#[derive(Serialize)]
struct Page {
    data: Vec<StoredMessage>,
    next: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    gap: bool,
}

/// What the connection thread needs to wait for the next commit and then ask again.
#[derive(Debug)]
pub struct Wait {
    /// The notifier's generation taken before the read that found nothing.
    pub seen: u64,
    /// `wait` as asked, counted from when the request was read.
    pub wait: Duration,
    /// The answer when the wait ends with nothing new: the empty page.
    pub empty: Response,
    /// The request's query string continuing after the empty page's `next`.
    pub retry_query: String,
}

pub fn get(ctx: &mut Context<'_>, request: &Request) -> Result<Reply, Error> {
    // Before the read: a commit the read misses moves the generation after this (crate::feed).
    let seen = ctx.feed.generation();
    let (query, asked, wait) = parse_query(request)?;
    let page = read(ctx.metrics, ctx.store.feed(&query))?;
    if let Some((store_id, _)) = &asked {
        if *store_id != page.store_id {
            return Err(bad_token(
                "Input should be a position token from this store's feed",
                asked.map(|(id, position)| encode_token(&id, position)),
            ));
        }
    }
    let next = encode_token(&page.store_id, page.next);
    let waits = page.rows.is_empty() && page.at_end && !wait.is_zero();
    let body = Page {
        data: page.rows,
        gap: page.gap,
        next: next.clone(),
    };
    let response = Response::json(200, &body);
    if !waits {
        return Ok(response.into());
    }
    Ok(Reply::Wait(Box::new(Wait {
        seen,
        wait,
        empty: response,
        retry_query: continue_after(request.query.as_deref().unwrap_or(""), &next),
    })))
}

/// `query` with its `after` parameters replaced by `after=next`.
fn continue_after(query: &str, next: &str) -> String {
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            !pair.is_empty() && percent_decode(key) != b"after"
        })
        .collect();
    let after = format!("after={next}");
    kept.push(&after);
    kept.join("&")
}

/// The page asked for, the token's store and position when one was given, and the wait.
pub type Asked = (FeedQuery, Option<(String, i64)>, Duration);

/// Reads and checks every parameter. (Public for the fuzz targets.)
pub fn parse_query(request: &Request) -> Result<Asked, Error> {
    let mut problems = Vec::new();
    let limit = integer(request, "limit", 1, MAX_LIMIT.into(), &mut problems)
        .map_or(DEFAULT_LIMIT, |limit| limit as u32);
    let wait = integer(request, "wait", 0, MAX_WAIT_SECS as i64, &mut problems)
        .map_or(Duration::ZERO, |secs| Duration::from_secs(secs as u64));
    let from = collect(request.query_param("from"), &mut problems).flatten();
    let after = collect(request.query_param("after"), &mut problems).flatten();
    let (start, asked) = match after.as_deref() {
        None => (FeedStart::Oldest, None),
        Some("now") => (FeedStart::End, None),
        Some(token) => match decode_token(token) {
            Some((store_id, position)) => (FeedStart::After(position), Some((store_id, position))),
            None => {
                let Error::Unprocessable(found) = bad_token(
                    "Input should be `now` or a `next` token from this service's feed",
                    after.clone(),
                ) else {
                    unreachable!("bad_token is a 422")
                };
                problems.extend(found);
                (FeedStart::Oldest, None)
            }
        },
    };
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    Ok((FeedQuery { start, limit, from }, asked, wait))
}

fn bad_token(message: &str, token: Option<String>) -> Error {
    Error::Unprocessable(vec![Problem::new(
        "value_error",
        &["query", "after"],
        message,
        json!(token),
    )])
}

/// Marks the token format; a new format changes it, so old tokens are refused cleanly.
const TOKEN_VERSION: &str = "f1";
/// Hex digits of SHA-256 that end a token: a garbled token fails them.
const TOKEN_CHECK: usize = 12;

/// `<store id>.<position>.<check>`: opaque to clients, not a secret (a forged token is only a
/// position), but a typo or a truncation is caught by the check.
pub fn encode_token(store_id: &str, position: i64) -> String {
    format!("{store_id}.{position}.{}", check(store_id, position))
}

/// The store id and position of a token of ours, or `None` for anything else.
pub fn decode_token(token: &str) -> Option<(String, i64)> {
    let mut parts = token.split('.');
    let (store_id, position, given) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || store_id.is_empty()
        || !store_id.bytes().all(|byte| byte.is_ascii_hexdigit())
        || !position.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    let position: i64 = position.parse().ok()?;
    (encode_token(store_id, position) == token && given.len() == TOKEN_CHECK)
        .then(|| (store_id.to_owned(), position))
}

fn check(store_id: &str, position: i64) -> String {
    let digest = Sha256::digest(format!("{TOKEN_VERSION}\n{store_id}\n{position}"));
    digest
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()[..TOKEN_CHECK]
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_anything_else_is_refused() {
        let token = encode_token("0123456789abcdef", 42);
        assert_eq!(
            decode_token(&token),
            Some(("0123456789abcdef".to_owned(), 42))
        );
        let garbled = [
            token.replace(".42.", ".43."),
            token.replace(".42.", ".042."),
            token.replace(".42.", ".-42."),
            token.replace(".42.", ".+42."),
            token[..token.len() - 1].to_owned(),
            format!("{token}.0"),
            format!("x{token}"),
            "now2".to_owned(),
            String::new(),
            "..".to_owned(),
            "0123456789abcdef.99999999999999999999.abc".to_owned(),
        ];
        for bad in garbled {
            assert_eq!(decode_token(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_retry_continues_after_the_empty_pages_next_and_keeps_the_rest() {
        assert_eq!(
            continue_after("limit=5&after=old&from=%2B91&%61fter=x&wait=3", "t.1.c"),
            "limit=5&from=%2B91&wait=3&after=t.1.c"
        );
        assert_eq!(continue_after("", "t.1.c"), "after=t.1.c");
    }

    #[test]
    fn limits_and_waits_are_bounded() {
        let parse = |target: &str| parse_query(&Request::new("GET", target, b""));
        let (query, asked, wait) = parse("/feed").unwrap();
        assert_eq!(
            (query.limit, query.start, asked, wait),
            (100, FeedStart::Oldest, None, Duration::ZERO)
        );
        assert_eq!(parse("/feed?after=now").unwrap().0.start, FeedStart::End);
        assert_eq!(
            parse("/feed?limit=1000&wait=60").unwrap().2,
            Duration::from_secs(60)
        );
        for bad in [
            "/feed?limit=0",
            "/feed?limit=1001",
            "/feed?wait=61",
            "/feed?wait=-1",
            "/feed?after=zz",
        ] {
            assert!(matches!(parse(bad), Err(Error::Unprocessable(_))), "{bad}");
        }
    }
}
