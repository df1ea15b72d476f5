//! U+0000 in PostgreSQL text: JSON allows it in `message_id` and `text`, PostgreSQL's text type
//! cannot hold it.

use std::borrow::Cow;

/// PostgreSQL's text cannot hold U+0000, which JSON allows in `message_id` and `text`. Stored
/// text escapes it reversibly: U+0000 → U+0001 U+0001, U+0001 → U+0001 U+0002. The mapping is
/// one-to-one and keeps byte order (both codes sort below every other character, in their
/// order), so ids stay unique and `/messages` order and cursors are unchanged.
pub fn needs_escape(raw: &str) -> bool {
    raw.contains(['\u{0}', '\u{1}'])
}

pub fn escape_nul(raw: &str) -> Cow<'_, str> {
    if !needs_escape(raw) {
        return Cow::Borrowed(raw);
    }
    let mut escaped = String::with_capacity(raw.len() + 8);
    for ch in raw.chars() {
        match ch {
            '\u{0}' => escaped.push_str("\u{1}\u{1}"),
            '\u{1}' => escaped.push_str("\u{1}\u{2}"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

pub fn unescape_nul(stored: String) -> String {
    if !stored.contains('\u{1}') {
        return stored;
    }
    let mut raw = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(ch) = chars.next() {
        match (ch, ch == '\u{1}') {
            (_, true) => raw.push(match chars.next() {
                Some('\u{1}') => '\u{0}',
                _ => '\u{1}',
            }),
            (other, false) => raw.push(other),
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nul_escape_round_trips_and_keeps_order() {
        let samples = [
            "",
            "\u{0}",
            "\u{1}",
            "\u{2}",
            "\u{0}\u{0}",
            "\u{0}\u{1}",
            "\u{1}\u{0}",
            "a",
            "a\u{0}",
            "a\u{0}b",
            "a\u{1}",
            "a\u{2}",
            "ab",
            "\u{1}\u{1}",
            "é\u{0}",
            "😀",
        ];
        for raw in samples {
            assert_eq!(unescape_nul(escape_nul(raw).into_owned()), raw, "{raw:?}");
            assert!(!escape_nul(raw).contains('\u{0}'));
        }
        for a in samples {
            for b in samples {
                assert_eq!(
                    a.as_bytes().cmp(b.as_bytes()),
                    escape_nul(a).as_bytes().cmp(escape_nul(b).as_bytes()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }
}
