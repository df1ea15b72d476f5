//! `hookbox import [FILE|-]`: NDJSON messages into the store, each line validated exactly as
//! `/webhook` validates a body (`message::parse`) and stored through the same exactly-once
//! `insert_batch`, many per transaction. So `export | import` into an empty store, then
//! `export` again, gives the same bytes.
//!
//! A line is read with a bounded reader: one longer than `HOOKBOX_MAX_BODY_BYTES` is an invalid
//! line, never an allocation of its size. A UTF-8 byte order mark at the start and lines of only
//! whitespace are skipped. Problems and progress go to stderr, each invalid line quoted in at most
//! `QUOTE_CHARS` characters, and the summary is always the last line — also when the store fails
//! partway, when it says what was stored before the failure.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use super::CliError;
use crate::config::Config;
use crate::message::{self, Message};
use crate::problem::Problem;
use crate::store::{Inserted, Moment, Retention, Store, Upkeep};
use crate::timestamp;

/// Messages per import transaction: large enough that the commit's fsync is noise, small enough
/// that a batch's messages (and the write lock) are held for a fraction of a second.
const IMPORT_BATCH: usize = 10_000;
/// A batch is also committed once its lines hold this many bytes, so long lines cannot make a
/// batch's memory grow with `IMPORT_BATCH` × the line limit.
const IMPORT_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// How often a long import reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Invalid lines reported one by one on stderr (and by number in the summary); beyond this
/// only counted.
const INVALID_SHOWN: usize = 10;
/// An invalid line is quoted on stderr in at most this many characters.
const QUOTE_CHARS: usize = 200;
const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(super) fn run(config: &Config, path: Option<&str>) -> Result<ImportSummary, CliError> {
    let input: Box<dyn BufRead> = match path {
        None => Box::new(io::stdin().lock()),
        Some(path) => Box::new(io::BufReader::with_capacity(
            256 * 1024,
            std::fs::File::open(path)
                .map_err(|error| CliError::Failed(format!("{path}: {error}")))?,
        )),
    };
    let failed = |error: crate::store::StoreError| CliError::Failed(error.to_string());
    let mut store = Store::open(&config.store_options()).map_err(failed)?;
    // A live server may be using this database: only a new one gets a schema (and the text
    // index as HOOKBOX_TEXT_INDEX says); an existing one is used as it is.
    store.prepare_for_tool(config.text_index).map_err(failed)?;
    let mut stderr = io::stderr();
    let summary = import(&mut store, input, config.max_body_bytes, &mut stderr);
    store.close();
    if let Some(stopped) = &summary.stopped {
        eprintln!("hookbox import: stopped early: {stopped}");
    }
    eprintln!("{summary}");
    Ok(summary)
}

/// What an import did, line by line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub lines: u64,
    pub created: u64,
    pub duplicate: u64,
    pub invalid: u64,
    /// 1-based numbers of the first invalid lines (at most `INVALID_SHOWN`).
    pub first_invalid: Vec<u64>,
    /// Why the import stopped before the end of its input (the store or the input failed);
    /// `created` and `duplicate` then count what was committed before.
    pub stopped: Option<String>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numbers: Vec<String> = self.first_invalid.iter().map(u64::to_string).collect();
        write!(
            f,
            "import: lines={} created={} duplicate={} invalid={} first_invalid_lines={}",
            self.lines,
            self.created,
            self.duplicate,
            self.invalid,
            numbers.join(",")
        )
    }
}

/// One line from a bounded read.
enum Line {
    /// The line (without its `\n`) is in the buffer.
    Whole,
    /// Longer than the limit: the buffer holds its first `limit` bytes, the rest was skipped.
    TooLong,
    End,
}

/// Reads one line into `line`, keeping at most `limit` bytes plus a `\r`; the rest of a longer
/// line is read and dropped, so memory never holds more than the limit.
fn read_line(input: &mut dyn BufRead, limit: usize, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, found_end) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        let room = (limit + 1).saturating_sub(line.len());
        if chunk.len() > room {
            too_long = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len() + usize::from(found_end);
        input.consume(used);
        if found_end {
            break;
        }
    }
    if !any {
        return Ok(Line::End);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if too_long || line.len() > limit {
        line.truncate(limit);
        return Ok(Line::TooLong);
    }
    Ok(Line::Whole)
}

/// Reads NDJSON from `input`, storing every valid line; problems and progress go to `report`.
/// Never fails as a whole: a store or input failure ends the import and is kept in `stopped`,
/// with the counts of what was stored before it.
pub fn import(
    store: &mut Store,
    mut input: Box<dyn BufRead + '_>,
    max_line_bytes: usize,
    report: &mut dyn Write,
) -> ImportSummary {
    let mut summary = ImportSummary::default();
    let mut batch: Vec<Message> = Vec::with_capacity(1024);
    let mut batch_bytes = 0;
    let mut line = Vec::new();
    let started = Instant::now();
    let mut last_report = started;
    loop {
        let read = match read_line(&mut input, max_line_bytes, &mut line) {
            Ok(read) => read,
            Err(error) => {
                summary.stopped = Some(format!("reading line {}: {error}", summary.lines + 1));
                break;
            }
        };
        let problem = match read {
            Line::End => break,
            Line::TooLong => Some(format!(
                "longer than HOOKBOX_MAX_BODY_BYTES ({max_line_bytes} bytes)"
            )),
            Line::Whole => None,
        };
        summary.lines += 1;
        let body = match line.strip_prefix(BOM) {
            Some(rest) if summary.lines == 1 => rest,
            _ => &line[..],
        };
        if problem.is_none() && body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let problem = problem.map(Err).unwrap_or_else(|| {
            message::parse(body)
                .result
                .map_err(|invalid| describe(&invalid.0))
        });
        match problem {
            Ok(message) => {
                batch_bytes += body.len();
                batch.push(message);
            }
            Err(reason) => {
                summary.invalid += 1;
                if summary.first_invalid.len() < INVALID_SHOWN {
                    summary.first_invalid.push(summary.lines);
                    let _ = writeln!(report, "line {}: {reason}: {}", summary.lines, quote(body));
                }
            }
        }
        if batch.len() == IMPORT_BATCH || batch_bytes >= IMPORT_BATCH_BYTES {
            batch_bytes = 0;
            if let Err(error) = store_batch(store, &mut batch, &mut summary) {
                summary.stopped = Some(error);
                return summary;
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                let rate = summary.lines as f64 / started.elapsed().as_secs_f64();
                let _ = writeln!(
                    report,
                    "import: {} lines so far ({rate:.0} lines/s)",
                    summary.lines
                );
            }
        }
    }
    if let Err(error) = store_batch(store, &mut batch, &mut summary) {
        summary.stopped = Some(error);
    }
    summary
}

/// Commits `batch`; on failure nothing of it is stored and the counts stay as they were.
fn store_batch(
    store: &mut Store,
    batch: &mut Vec<Message>,
    summary: &mut ImportSummary,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let results = store
        .insert_batch(batch, &timestamp::now_utc())
        .map_err(|error| {
            format!(
                "{error} (the {} valid lines read since the last commit were not stored)",
                batch.len()
            )
        })?;
    for inserted in results {
        match inserted {
            Inserted::Created => summary.created += 1,
            Inserted::Duplicate => summary.duplicate += 1,
        }
    }
    // Upkeep between batches, as the writer does between commits (SQLite: checkpoints, and the
    // text index if the database has one); retention is the server's.
    store.maintain(&Upkeep {
        moment: Moment::AfterCommit,
        retention: Retention::default(),
        work_waiting: &|| false,
    });
    batch.clear();
    Ok(())
}

/// The validation problems of a line, one `where: what` each (without the inputs, which the
/// quote shows).
fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| {
            let place: Vec<String> = problem
                .loc
                .iter()
                .map(|part| match part {
                    serde_json::Value::String(name) => name.clone(),
                    other => other.to_string(),
                })
                .collect();
            format!("{}: {} ({})", place.join("."), problem.msg, problem.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The line as text, cut to `QUOTE_CHARS` characters (`…` marks a cut), control characters
/// escaped so a quote can never move the terminal's cursor.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::new();
    for (index, c) in text.chars().enumerate() {
        if index == QUOTE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<(&'static str, Vec<u8>)> {
        let mut reader = io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            match read_line(&mut reader, limit, &mut line).unwrap() {
                Line::End => return out,
                Line::Whole => out.push(("whole", line.clone())),
                Line::TooLong => out.push(("long", line.clone())),
            }
        }
    }

    #[test]
    fn a_line_is_read_within_its_bound() {
        assert_eq!(
            lines(b"ab\r\n\ncdefgh\nxyz", 5),
            vec![
                ("whole", b"ab".to_vec()),
                ("whole", b"".to_vec()),
                ("long", b"cdefg".to_vec()),
                ("whole", b"xyz".to_vec()),
            ]
        );
        assert_eq!(lines(b"abcde\r\n", 5), vec![("whole", b"abcde".to_vec())]);
        assert_eq!(lines(b"abcdef\r\n", 5), vec![("long", b"abcde".to_vec())]);
        assert!(lines(b"", 5).is_empty());
    }

    #[test]
    fn quotes_are_short_and_inert() {
        let long = "é".repeat(500);
        let quoted = quote(long.as_bytes());
        assert_eq!(quoted.chars().count(), QUOTE_CHARS + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(quote(b"a\x1b[2Jb"), "a\\u{1b}[2Jb");
    }

    #[test]
    fn the_summary_always_lists_the_invalid_lines() {
        let summary = ImportSummary::default();
        assert!(summary.to_string().ends_with(" first_invalid_lines="));
    }
}
