//! `hookbox export` and `hookbox import`, run as the built binary: NDJSON out in `/messages`
//! order with exactly the five keys; in through the webhook's validation and exactly-once path;
//! export → import into an empty store → export is byte-identical; exit codes and the summary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use hookbox::message::Message;
use hookbox::store::Store;

use crate::support::TestDb;

/// Runs `hookbox args…` on the store `db` with `stdin` fed in, and waits for it to exit.
pub fn hookbox(db: &TestDb, args: &[&str], stdin: &[u8]) -> Output {
    hookbox_with(db, &[], args, stdin)
}

/// `hookbox`, with the variables `env` set too.
pub fn hookbox_with(db: &TestDb, env: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbox"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", db.url())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hookbox binary starts");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A separate writer, so a large input cannot deadlock against the output pipes.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A store at `db` holding awkward messages: Unicode, escapes, null and empty text, fractional
/// and equal instants, arriving out of order.
pub fn filled(db: &TestDb) {
    let config = db.config(None);
    let mut store = Store::open(&config.store_options()).unwrap();
    store.migrate().unwrap();
    let texts: [Option<&str>; 8] = [
        Some("Hello"),
        None,
        Some(""),
        Some("quote \" backslash \\ tab \t newline \n"),
        Some("ünïcödé 😀 \u{2028} </script>"),
        Some("100% _literal_ *"),
        Some("\u{0}control\u{1f}"),
        Some("plain"),
    ];
    let messages: Vec<Message> = (0..200)
        .map(|i| {
            let ts = match i % 4 {
                0 => format!("2025-01-{:02}T10:00:00Z", 28 - i % 28),
                1 => format!("2025-01-{:02}T10:00:00.5Z", 1 + i % 28),
                2 => format!("2025-01-{:02}T10:00:00.500Z", 1 + i % 28),
                _ => "2025-01-15T10:00:00Z".to_owned(),
            };
            Message {
                message_id: format!("id-{}", (i * 37) % 200),
                from: format!("+91{}", i % 5),
                to: "+14155550100".to_owned(),
                ts_key: hookbox::timestamp::sort_key(&ts).unwrap(),
                ts,
                text: texts[i % texts.len()].map(str::to_owned),
            }
        })
        .collect();
    store
        .insert_batch(&messages, "2025-02-01T00:00:00.000Z")
        .unwrap();
    store.close();
}

#[test]
fn export_then_import_into_an_empty_store_then_export_is_byte_identical() {
    let (first, second) = (TestDb::new(), TestDb::new());
    filled(&first);
    let exported = hookbox(&first, &["export"], b"");
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines: Vec<&[u8]> = exported.stdout.split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 201, "200 lines, each ending in a newline");
    assert!(lines[200].is_empty());
    for line in &lines[..200] {
        let value: serde_json::Value = serde_json::from_slice(line).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5);
        // Compact, in exactly this key order.
        let line = std::str::from_utf8(line).unwrap();
        assert!(line.starts_with("{\"message_id\":"), "{line}");
        let order =
            ["\"from\":", "\"to\":", "\"ts\":", "\"text\":"].map(|key| line.find(key).unwrap());
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{line}");
    }

    let imported = hookbox(&second, &["import"], &exported.stdout);
    let stderr = text(&imported.stderr);
    assert!(imported.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("lines=200 created=200 duplicate=0 invalid=0"),
        "{stderr}"
    );
    let again = hookbox(&second, &["export"], b"");
    assert!(again.status.success());
    assert!(again.stdout == exported.stdout, "the second export differs");

    // Importing the same file again stores nothing new: every line is a duplicate.
    let file = second.path().join("dump.ndjson");
    std::fs::write(&file, &exported.stdout).unwrap();
    let repeat = hookbox(&second, &["import", file.to_str().unwrap()], b"");
    assert!(repeat.status.success());
    assert!(text(&repeat.stderr).contains("created=0 duplicate=200 invalid=0"));
}

#[test]
fn export_filters_keep_the_messages_order() {
    let db = TestDb::new();
    filled(&db);
    let ids = |args: &[&str]| -> Vec<(String, String, String)> {
        let out = hookbox(&db, args, b"");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let key = hookbox::timestamp::sort_key(v["ts"].as_str().unwrap()).unwrap();
                (
                    key,
                    v["message_id"].as_str().unwrap().to_owned(),
                    v["from"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let all = ids(&["export"]);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "in (instant, message_id) order");
    let since_key = hookbox::timestamp::sort_key("2025-01-15T10:00:00Z").unwrap();
    let expected: Vec<_> = all
        .iter()
        .filter(|(key, _, from)| *key >= since_key && from == "+912")
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        ids(&[
            "export",
            "--since",
            "2025-01-15T10:00:00Z",
            "--from",
            "+912"
        ]),
        expected
    );
    assert_eq!(
        ids(&["export", "--from=+912", "--since=2025-01-15T10:00:00Z"]),
        expected
    );
    for bad in [
        &["export", "--since", "yesterday"][..],
        &["export", "--from"],
        &["export", "--nope"],
    ] {
        let out = hookbox(&db, bad, b"");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn import_stores_the_valid_lines_reports_the_invalid_ones_and_exits_1() {
    let db = TestDb::new();
    let input = [
        r#"{"message_id":"a","from":"+91","to":"+1","ts":"2025-01-15T10:00:00Z","text":"ok"}"#,
        r#"{"message_id":"b","from":"91","to":"+1","ts":"2025-01-15T10:00:00Z"}"#,
        "not json",
        "",
        r#"{"message_id":"a","from":"+92","to":"+1","ts":"2025-01-16T10:00:00Z","text":"dup"}"#,
        r#"{"message_id":"c","from":"+91","to":"+1","ts":"2025-02-30T10:00:00Z"}"#,
        r#"{"message_id":"d","from":"+91","to":"+1","ts":"2025-01-15T10:00:00.25Z","text":null,"extra":1}"#,
    ]
    .join("\n");
    let out = hookbox(&db, &["import", "-"], input.as_bytes());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .ends_with("lines=7 created=2 duplicate=1 invalid=3 first_invalid_lines=2,3,6"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 2:") && stderr.contains("\"from\""),
        "{stderr}"
    );
    let exported = hookbox(&db, &["export"], b"");
    assert_eq!(
        text(&exported.stdout),
        concat!(
            r#"{"message_id":"a","from":"+91","to":"+1","ts":"2025-01-15T10:00:00Z","text":"ok"}"#,
            "\n",
            r#"{"message_id":"d","from":"+91","to":"+1","ts":"2025-01-15T10:00:00.25Z","text":null}"#,
            "\n",
        )
    );
    let missing = hookbox(&db, &["import", "/no/such/file.ndjson"], b"");
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        hookbox(&db, &["import", "a", "b"], b"").status.code(),
        Some(2)
    );
}
