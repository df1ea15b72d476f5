//! The `/messages` cursor: where the next page starts, and which query it continues.
//!
//! A cursor is the hex of `c2`, a tag of the query (filters and limit), the last row's position
//! (`ts_key \n message_id`) and a check over all of it. It is opaque to clients and not a secret:
//! a forged cursor is only a position. So `decode` accepts exactly what `encode` writes: the
//! check holds, the tag is the query's it is sent with, the position is one a page can end on
//! (a real sort key), and re-encoding gives the same string. Anything else is refused, never
//! passed to a store (PostgreSQL refuses a U+0000 that a forged `ts_key` could carry).

use sha2::{Digest, Sha256};

use crate::store::{ListQuery, Position};
use crate::timestamp;

/// Marks the cursor format; a change of format changes it, so old cursors are refused cleanly.
/// (`c1` cursors carried no query tag.)
const CURSOR_VERSION: &[u8] = b"c2";
/// Bytes of the query tag inside a cursor.
const CURSOR_TAG: usize = 8;
/// Bytes of SHA-256 over the payload that end a cursor: garbled cursors fail it.
const CURSOR_CHECK: usize = 8;

/// Why a `cursor` parameter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not one of ours: not hex, garbled, another format, or a position no page ends on.
    NotOurs,
    /// One of ours, made for a query with another `from`, `since`, `q` or `limit`.
    OtherQuery,
}

impl Refused {
    /// What the 422 says at `["query","cursor"]`.
    pub fn message(self) -> &'static str {
        match self {
            Refused::NotOurs => "Input should be a cursor from a Link header of this service",
            Refused::OtherQuery => {
                "This cursor continues another query: keep the from, since, q and limit of the \
                 Link it came from"
            }
        }
    }
}

/// Hex of `c2`, the query's tag, `ts_key \n message_id`, and a check over all of it. Opaque to
/// clients; not a secret: a forged cursor is only a position, and is refused unless it is one a
/// page could end on, for the query it is sent with.
pub fn encode(position: &Position, query: &ListQuery) -> String {
    let mut bytes = cursor_payload(position, &query_tag(query));
    let check = Sha256::digest(&bytes);
    bytes.extend_from_slice(&check[..CURSOR_CHECK]);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The position in a cursor of ours made for `query` (whose `after` is ignored).
pub fn decode(cursor: &str, query: &ListQuery) -> Result<Position, Refused> {
    let not_ours = Refused::NotOurs;
    if cursor.len() % 2 != 0 || !cursor.is_ascii() {
        return Err(not_ours);
    }
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).ok())
        .collect::<Option<_>>()
        .ok_or(not_ours)?;
    let split = bytes.len().checked_sub(CURSOR_CHECK).ok_or(not_ours)?;
    let (payload, check) = bytes.split_at(split);
    if Sha256::digest(payload)[..CURSOR_CHECK] != *check {
        return Err(not_ours);
    }
    let rest = payload.strip_prefix(CURSOR_VERSION).ok_or(not_ours)?;
    if rest.len() < CURSOR_TAG {
        return Err(not_ours);
    }
    let (tag, rest) = rest.split_at(CURSOR_TAG);
    if *tag != query_tag(query) {
        return Err(Refused::OtherQuery);
    }
    let split = rest
        .iter()
        .position(|&byte| byte == b'\n')
        .ok_or(not_ours)?;
    let position = Position {
        ts_key: String::from_utf8(rest[..split].to_vec()).map_err(|_| not_ours)?,
        message_id: String::from_utf8(rest[split + 1..].to_vec()).map_err(|_| not_ours)?,
    };
    // Only a sort key as `timestamp::sort_key` writes it (no `Z`, no trailing zeros, no U+0000)
    // is a position a page can end on; and only our own spelling of it (lowercase hex) is ours.
    let is_sort_key = timestamp::sort_key(&format!("{}Z", position.ts_key))
        .is_some_and(|key| key == position.ts_key);
    if !is_sort_key || encode(&position, query) != cursor {
        return Err(not_ours);
    }
    Ok(position)
}

fn cursor_payload(position: &Position, tag: &[u8; CURSOR_TAG]) -> Vec<u8> {
    let mut bytes = CURSOR_VERSION.to_vec();
    bytes.extend_from_slice(tag);
    bytes.extend_from_slice(position.ts_key.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(position.message_id.as_bytes());
    bytes
}

/// What binds a cursor to its query: SHA-256 over the filters and limit (`since` as its sort key,
/// so two spellings of one instant are one query), each field length-prefixed so no two queries
/// share an encoding. The same on every instance and store, so a next link from one instance is
/// followed on another.
fn query_tag(query: &ListQuery) -> [u8; CURSOR_TAG] {
    let mut hash = Sha256::new();
    hash.update(b"hookbox /messages cursor scope\n");
    for field in [&query.from, &query.since_key, &query.text] {
        match field {
            None => hash.update([0]),
            Some(value) => {
                hash.update([1]);
                hash.update((value.len() as u64).to_be_bytes());
                hash.update(value.as_bytes());
            }
        }
    }
    hash.update(query.limit.to_be_bytes());
    let mut tag = [0; CURSOR_TAG];
    tag.copy_from_slice(&hash.finalize()[..CURSOR_TAG]);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        from: Option<&str>,
        since_key: Option<&str>,
        text: Option<&str>,
        limit: u32,
    ) -> ListQuery {
        ListQuery {
            limit,
            from: from.map(str::to_owned),
            since_key: since_key.map(str::to_owned),
            text: text.map(str::to_owned),
            ..ListQuery::default()
        }
    }

    #[test]
    fn decode_takes_exactly_what_encode_writes_for_the_same_query() {
        let position = Position {
            ts_key: "2025-01-15T10:00:00.5".to_owned(),
            message_id: "m\n\u{0}é".to_owned(),
        };
        let made_for = query(Some("+1"), Some("2025-01-15T09:00:00"), Some("a"), 2);
        let cursor = encode(&position, &made_for);
        assert_eq!(decode(&cursor, &made_for), Ok(position.clone()));
        // A page after a cursor page: `after` is no part of the query's identity.
        let next_page = ListQuery {
            after: Some(position.clone()),
            ..made_for.clone()
        };
        assert_eq!(decode(&cursor, &next_page), Ok(position.clone()));
        for other in [
            query(Some("+1"), Some("2025-01-15T09:00:00"), Some("a"), 3),
            query(Some("+2"), Some("2025-01-15T09:00:00"), Some("a"), 2),
            query(None, Some("2025-01-15T09:00:00"), Some("a"), 2),
            query(Some("+1"), None, Some("a"), 2),
            query(Some("+1"), Some("2025-01-15T09:00:00"), None, 2),
            query(Some("+1"), Some("2025-01-15T09:00:00"), Some(""), 2),
            // The same bytes in other fields are another query.
            query(Some("a"), Some("2025-01-15T09:00:00"), Some("+1"), 2),
            query(None, Some("2025-01-15T09:00:00"), Some("+1a"), 2),
        ] {
            assert_eq!(
                decode(&cursor, &other),
                Err(Refused::OtherQuery),
                "{other:?}"
            );
        }
    }
}
