//! `hookbox import` as a Unix filter: a byte order mark and blank lines are skipped, a line is
//! bounded by `HOOKBOX_MAX_BODY_BYTES`, an invalid line is quoted briefly, and the summary is
//! always the last line — also when the store fails partway, when it counts what was stored.
//!
//! These run on the suite's store (`HOOKBOX_TEST_STORE`), so `make test-postgres` runs them too.

use super::export::ndjson;
use super::harness::*;
use crate::support::{TestDb, sqlite_only};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The binary on `db`, whichever store it is.
fn on(db: &TestDb) -> Launch {
    Launch::new(db.path()).env("DATABASE_URL", &db.url())
}

fn exported_lines(launch: &Launch) -> usize {
    let out = launch.run_args(&["export"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).lines().count()
}

#[test]
fn a_byte_order_mark_and_blank_lines_are_skipped() {
    let db = TestDb::new();
    let launch = on(&db);
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend_from_slice(ndjson(2).replace('\n', "\n   \n\t\r\n").as_bytes());
    let out = launch.run_args(&["import", "-"], &input);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("import: lines=6 created=2 duplicate=0 invalid=0 first_invalid_lines="),
        "{stderr}"
    );
    assert_eq!(exported_lines(&launch), 2);
}

#[test]
fn an_invalid_line_is_quoted_in_at_most_200_characters() {
    let db = TestDb::new();
    let launch = on(&db);
    let long_text = "ü".repeat(5000);
    let input = format!(
        "{{\"message_id\":\"long\",\"from\":\"+91\",\"to\":\"+1\",\"ts\":\"{TS}\",\"text\":\"{long_text}\"}}\n\
         {{\"message_id\":\"bad\",\"from\":\"91\",\"to\":\"+1\",\"ts\":\"{TS}\"}}\n"
    );
    let out = launch.run_args(&["import"], input.as_bytes());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line1 = stderr.lines().find(|line| line.starts_with("line 1:"));
    let line1 = line1.unwrap_or_else(|| panic!("line 1 not reported: {stderr}"));
    assert!(line1.contains("text"), "says which field: {line1}");
    assert!(
        line1.chars().count() < 200 + 120,
        "quoted at length ({} characters): {line1}",
        line1.chars().count()
    );
    assert!(
        stderr.contains("line 2:") && stderr.contains("from"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("invalid=2 first_invalid_lines=1,2\n"),
        "{stderr}"
    );
}

#[test]
fn a_line_longer_than_the_body_limit_is_invalid_and_the_rest_is_stored() {
    let db = TestDb::new();
    let launch = on(&db).env("HOOKBOX_MAX_BODY_BYTES", "1000");
    // Valid as a message (an extra field is ignored), but longer than any webhook body may be.
    let padded = format!(
        "{{\"message_id\":\"padded\",\"from\":\"+91\",\"to\":\"+1\",\"ts\":\"{TS}\",\"pad\":\"{}\"}}\n",
        "x".repeat(4 * 1024 * 1024)
    );
    let input = format!("{}{padded}{}", ndjson(1), ndjson(2).lines().nth(1).unwrap());
    let out = launch.run_args(&["import"], input.as_bytes());
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.contains("line 2: longer than HOOKBOX_MAX_BODY_BYTES (1000 bytes)"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.len() < 2000,
        "the long line was echoed: {} bytes",
        stderr.len()
    );
    assert!(
        stderr.ends_with("lines=3 created=2 duplicate=0 invalid=1 first_invalid_lines=2\n"),
        "{stderr}"
    );
    assert_eq!(exported_lines(&launch), 2);
}

#[test]
fn when_the_store_fails_partway_the_summary_says_what_was_stored() {
    if !sqlite_only("HOOKBOX_MAX_DB_MIB is SQLite's page cap") {
        return;
    }
    let dir = crate::support::TempDir::new();
    // A 4 MiB cap: the first 10,000-message transaction fits, a later one does not.
    let launch = Launch::new(dir.path()).env("HOOKBOX_MAX_DB_MIB", "4");
    let out = launch.run_args(&["import"], ndjson(60_000).as_bytes());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped early"), "{stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    let created: usize = summary
        .split(' ')
        .find_map(|field| field.strip_prefix("created="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    assert!(
        created > 0 && created < 60_000 && created % 10_000 == 0,
        "{summary}"
    );
    assert!(summary.contains("first_invalid_lines="), "{summary}");
    assert_eq!(exported_lines(&launch), created, "{summary}");
}
