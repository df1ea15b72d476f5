//! The one case fold for text search, shared by every store and by the exact check.
//!
//! `q` is case-insensitive in the Unicode sense: a needle and a text match when the needle's fold
//! is a literal substring of the text's fold. Every place that folds (the handler's needle, the
//! full-text index, the exact check) calls `fold` here, so they can never disagree.

/// The case fold: Unicode lowercase.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// True when `fold(haystack)` contains `needle_folded` literally (no wildcards).
/// ASCII text takes an allocation-free path: this runs for every row of a scan.
pub fn contains_folded(haystack: &str, needle_folded: &str) -> bool {
    if needle_folded.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle_folded.is_ascii() {
        let needle = needle_folded.as_bytes();
        // Cheap first-byte test before the full comparison.
        let (lower, upper) = (needle[0], needle[0].to_ascii_uppercase());
        return haystack.as_bytes().windows(needle.len()).any(|window| {
            (window[0] == lower || window[0] == upper) && window.eq_ignore_ascii_case(needle)
        });
    }
    fold(haystack).contains(needle_folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_search_is_literal_and_case_insensitive() {
        assert!(contains_folded("Hello World", &fold("WORLD")));
        assert!(contains_folded("100% sure", "%"));
        assert!(!contains_folded("100 sure", "%"));
        assert!(!contains_folded("abc", "a_c"));
        assert!(contains_folded("a_c", "a_c"));
        assert!(contains_folded("ÄRGER", &fold("ärger")));
        assert!(contains_folded("anything", ""));
        assert!(!contains_folded("short", "longer needle"));
    }
}
