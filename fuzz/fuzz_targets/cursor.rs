//! The `/messages` cursor codec (`decode_cursor`, `encode_cursor`).
//!
//! Checked, besides "no panic":
//! - any string that decodes re-encodes to itself, for the query it was decoded with, and its
//!   position is one a page can end on (a real sort key, no U+0000 in it);
//! - a position a page can end on, with any `message_id`, survives encode then decode;
//! - such a cursor with one character changed, cut, or extended is refused; sent with another
//!   query it is refused as another query's.
#![no_main]

use hookbox::cursor::{Refused as CursorProblem, decode as decode_cursor, encode as encode_cursor};
use hookbox::store::{ListQuery, Position};
use hookbox::timestamp;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<u8>() {
        Ok(mode) if mode & 1 == 0 => any_string(&mut u),
        _ => round_trip(&mut u),
    };
});

fn query(u: &mut Unstructured<'_>) -> Result<ListQuery> {
    Ok(ListQuery {
        limit: u.int_in_range(1..=100)?,
        from: u.arbitrary()?,
        since_key: u.arbitrary()?,
        text: u.arbitrary()?,
        ..ListQuery::default()
    })
}

fn check_decoded(cursor: &str, query: &ListQuery) -> Option<Position> {
    let position = decode_cursor(cursor, query).ok()?;
    assert_eq!(
        encode_cursor(&position, query),
        cursor,
        "decodes but does not re-encode to itself"
    );
    assert!(!position.ts_key.contains('\0'));
    let key = timestamp::sort_key(&format!("{}Z", position.ts_key));
    assert_eq!(
        key.as_ref(),
        Some(&position.ts_key),
        "not a sort key: {:?}",
        position.ts_key
    );
    Some(position)
}

fn any_string(u: &mut Unstructured<'_>) -> Result<()> {
    let query = query(u)?;
    let rest = u.bytes(u.len())?;
    let cursor = String::from_utf8_lossy(rest).into_owned();
    check_decoded(&cursor, &query);
    Ok(())
}

fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let query = query(u)?;
    let ts = format!(
        "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
        u.int_in_range(0..=99)?,
        u.int_in_range(1..=12)?,
        u.int_in_range(1..=28)?,
        u.int_in_range(0..=23)?,
        u.int_in_range(0..=59)?,
        u.int_in_range(0..=59)?,
        match u.int_in_range(0..=12)? {
            0 => String::new(),
            n => format!(
                ".{}",
                (0..n)
                    .map(|i| char::from(b'0' + (i * 7 % 10) as u8))
                    .collect::<String>()
            ),
        }
    );
    let Some(ts_key) = timestamp::sort_key(&ts) else {
        return Ok(());
    };
    let position = Position {
        ts_key,
        message_id: u.arbitrary()?,
    };
    let cursor = encode_cursor(&position, &query);
    assert_eq!(check_decoded(&cursor, &query), Some(position));

    // Changed anywhere, it is refused.
    let at = u.choose_index(cursor.len())?;
    let mut changed = cursor.clone().into_bytes();
    changed[at] = *u.choose(b"0123456789abcdefABCDEFxz%")?;
    let changed = String::from_utf8(changed).unwrap();
    if changed != cursor {
        assert!(
            check_decoded(&changed, &query).is_none(),
            "a changed cursor decodes"
        );
    }
    let cut = &cursor[..u.choose_index(cursor.len())?];
    assert!(check_decoded(cut, &query).is_none(), "a cut cursor decodes");
    let longer = format!("{cursor}{}", u.arbitrary::<String>()?);
    if longer != cursor {
        assert!(
            check_decoded(&longer, &query).is_none(),
            "an extended cursor decodes"
        );
    }
    // Another query (one field changed) refuses it as another query's.
    let mut other = query.clone();
    match u.int_in_range(0..=3)? {
        0 => other.limit = if query.limit == 1 { 2 } else { query.limit - 1 },
        1 => other.from = Some(format!("{}x", query.from.as_deref().unwrap_or(""))),
        2 => {
            other.since_key = if query.since_key.is_some() {
                None
            } else {
                Some(String::new())
            }
        }
        _ => {
            other.text = if query.text.is_some() {
                None
            } else {
                Some(String::new())
            }
        }
    }
    assert_eq!(
        decode_cursor(&cursor, &other),
        Err(CursorProblem::OtherQuery)
    );
    Ok(())
}
