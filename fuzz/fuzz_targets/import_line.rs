//! `hookbox import`: NDJSON lines read with its bounded line reader (through a buffer of a size
//! the input chooses, so lines cross buffer edges anywhere), validated, and stored in a real
//! SQLite store (a temporary file, started afresh every few thousand runs).
//!
//! Checked, besides "no panic":
//! - the store never fails: whatever the lines say, the import is not `stopped`;
//! - the summary agrees with an independent reading of the same bytes: lines counted, a line
//!   over the limit invalid, blank lines and a leading BOM skipped, and each other line valid
//!   exactly when `message::parse` accepts it;
//! - valid lines are stored or found already stored: the store grows by `created`;
//! - the invalid lines listed are the first ones, by number, at most ten.
#![no_main]

use std::cell::RefCell;
use std::io::{BufReader, Cursor};
use std::path::PathBuf;

use hookbox::Config;
use hookbox::cli::import;
use hookbox::message;
use hookbox::store::Store;
use libfuzzer_sys::fuzz_target;

/// Runs on one store before it is replaced by an empty one, so it stays small.
const RUNS_PER_STORE: u32 = 5000;

struct Open {
    store: Store,
    path: PathBuf,
    runs: u32,
}

thread_local! {
    static STORE: RefCell<Option<Open>> = const { RefCell::new(None) };
}

fn fresh_store() -> Open {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("hookbox-fuzz-import-{}.db", std::process::id()));
    remove(&path);
    let mut store = Store::open(&Config::for_database(&path, None).store_options()).expect("a temporary store");
    store.prepare_for_tool(false).expect("a schema");
    Open {
        store,
        path,
        runs: 0,
    }
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[capacity, limit], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let capacity = usize::from(capacity % 64) + 1;
    // Small limits reach the over-long path; 255 stands for the default body limit.
    let limit = if limit == 255 {
        64 * 1024
    } else {
        usize::from(limit) * 2
    };
    let expected = expect(input, limit);

    STORE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell
            .as_ref()
            .is_some_and(|open| open.runs >= RUNS_PER_STORE)
        {
            let old = cell.take().unwrap();
            old.store.close();
            remove(&old.path);
        }
        let open = cell.get_or_insert_with(fresh_store);
        open.runs += 1;
        let before = open.store.stats().expect("stats").total_messages;
        let reader = BufReader::with_capacity(capacity, Cursor::new(input));
        let mut report = Vec::new();
        let summary = import(&mut open.store, Box::new(reader), limit, &mut report);
        assert_eq!(summary.stopped, None, "the store failed on valid lines");
        assert_eq!(summary.lines, expected.lines, "lines");
        assert_eq!(
            summary.invalid,
            expected.invalid.len() as u64,
            "invalid lines"
        );
        assert_eq!(
            summary.created + summary.duplicate,
            expected.valid,
            "valid lines"
        );
        let shown = expected.invalid.len().min(10);
        assert_eq!(
            summary.first_invalid,
            expected.invalid[..shown],
            "invalid lines listed"
        );
        let after = open.store.stats().expect("stats").total_messages;
        assert_eq!(after - before, summary.created as i64, "stored rows");
    });
});

struct Expected {
    lines: u64,
    valid: u64,
    /// 1-based numbers of the invalid lines.
    invalid: Vec<u64>,
}

/// What the import must make of `input`, read all at once.
fn expect(input: &[u8], limit: usize) -> Expected {
    let mut expected = Expected {
        lines: 0,
        valid: 0,
        invalid: Vec::new(),
    };
    if input.is_empty() {
        return expected;
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        expected.lines += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > limit {
            expected.invalid.push(expected.lines);
            continue;
        }
        let line = match line.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) if index == 0 => rest,
            _ => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if message::parse(line).result.is_ok() {
            expected.valid += 1;
        } else {
            expected.invalid.push(expected.lines);
        }
    }
    expected
}
