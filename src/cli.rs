//! `hookbox export` and `hookbox import`: moving messages out of and into the store as NDJSON.
//!
//! Export writes one compact JSON object per line (`message_id, from, to, ts, text`, in that
//! order) in `/messages` order, streaming from one read snapshot in constant memory. Import reads
//! such lines, validates each exactly as `/webhook` does (`message::parse`) and stores them
//! through the same exactly-once `insert_batch`, many per transaction. So `export | import` into
//! an empty store, then `export` again, gives the same bytes.
//!
//! Both talk to the store named by `DATABASE_URL` directly, not to a running server. Data goes to
//! stdout (export); progress, problems and the summary go to stderr.

use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::Error;
use crate::message::{self, Message};
use crate::store::{ExportFilter, Inserted, Store, StoredMessage};
use crate::timestamp;

/// Messages per import transaction: large enough that the commit's fsync is noise, small enough
/// that a batch's messages (and the write lock) are held for a fraction of a second.
const IMPORT_BATCH: usize = 10_000;
/// How often a long import reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Invalid lines reported one by one on stderr (and by number in the summary); beyond this
/// only counted.
const INVALID_SHOWN: usize = 10;

/// Why a subcommand failed.
#[derive(Debug)]
pub enum CliError {
    /// The arguments are wrong (exit code 2).
    Usage(String),
    /// The store or the input/output failed (exit code 1).
    Failed(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "usage: {message}"),
            CliError::Failed(message) => f.write_str(message),
        }
    }
}

/// Runs `hookbox export …` or `hookbox import …` and turns the outcome into the exit code:
/// 0 on success (import: every line valid), 1 on failure or invalid lines, 2 on bad arguments.
pub fn run(config: &Config, command: &str, args: &[String]) -> ExitCode {
    let result = match command {
        "export" if crate::follow::asked(args) => {
            crate::follow::command(config, args).map(|()| true)
        }
        "export" => export_command(config, args).map(|()| true),
        "import" => import_command(config, args).map(|summary| summary.invalid == 0),
        other => Err(CliError::Usage(format!("unknown subcommand {other:?}"))),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("hookbox {command}: {error}");
            ExitCode::from(match error {
                CliError::Usage(_) => 2,
                CliError::Failed(_) => 1,
            })
        }
    }
}

fn export_command(config: &Config, args: &[String]) -> Result<(), CliError> {
    let mut filter = ExportFilter::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| CliError::Usage(format!("{name} needs a value")))
        };
        match name {
            "--since" => {
                let since = value()?;
                let key = timestamp::sort_key(&since).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--since {since:?} is not YYYY-MM-DDTHH:MM:SS[.fff]Z"
                    ))
                })?;
                filter.since_key = Some(key);
            }
            "--from" => filter.from = Some(value()?),
            other => {
                return Err(CliError::Usage(format!(
                    "hookbox export [--since TS] [--from SENDER] (unknown argument {other:?})"
                )));
            }
        }
    }
    let mut store = Store::open(config).map_err(|error| CliError::Failed(error.to_string()))?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    export(&mut store, &filter, &mut out)?;
    out.flush()
        .map_err(|error| CliError::Failed(format!("writing stdout: {error}")))
}

/// Writes every message `filter` selects to `out`, one compact JSON object per line.
pub fn export(
    store: &mut Store,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    store
        .export(filter, &mut |message: &StoredMessage| {
            serde_json::to_writer(&mut *out, message)?;
            out.write_all(b"\n")
        })
        .map_err(|error| CliError::Failed(error.to_string()))
}

fn import_command(config: &Config, args: &[String]) -> Result<ImportSummary, CliError> {
    let input: Box<dyn BufRead> = match args {
        [] => Box::new(io::stdin().lock()),
        [dash] if dash == "-" => Box::new(io::stdin().lock()),
        [path] => Box::new(io::BufReader::with_capacity(
            256 * 1024,
            std::fs::File::open(path)
                .map_err(|error| CliError::Failed(format!("{path}: {error}")))?,
        )),
        _ => return Err(CliError::Usage("hookbox import [FILE|-]".to_owned())),
    };
    let mut store = Store::open(config).map_err(|error| CliError::Failed(error.to_string()))?;
    store
        .migrate()
        .map_err(|error| CliError::Failed(error.to_string()))?;
    let summary = import(&mut store, input, &mut io::stderr())?;
    store.close();
    eprintln!("{summary}");
    Ok(summary)
}

/// What an import did, line by line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub lines: u64,
    pub created: u64,
    pub duplicate: u64,
    pub invalid: u64,
    /// 1-based numbers of the first invalid lines (at most `INVALID_SHOWN`).
    pub first_invalid: Vec<u64>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "import: lines={} created={} duplicate={} invalid={}",
            self.lines, self.created, self.duplicate, self.invalid
        )?;
        if !self.first_invalid.is_empty() {
            let numbers: Vec<String> = self.first_invalid.iter().map(u64::to_string).collect();
            write!(f, " first_invalid_lines={}", numbers.join(","))?;
        }
        Ok(())
    }
}

/// Reads NDJSON from `input`, storing every valid line; problems and progress go to `report`.
/// Empty lines are skipped. Valid lines are stored even when others are invalid.
pub fn import(
    store: &mut Store,
    mut input: Box<dyn BufRead + '_>,
    report: &mut dyn Write,
) -> Result<ImportSummary, CliError> {
    let mut summary = ImportSummary::default();
    let mut batch: Vec<Message> = Vec::with_capacity(IMPORT_BATCH);
    let mut line = Vec::new();
    let started = Instant::now();
    let mut last_report = started;
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(|error| CliError::Failed(format!("reading input: {error}")))?;
        if read == 0 {
            break;
        }
        summary.lines += 1;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.is_empty() {
            continue;
        }
        match message::parse(body).result {
            Ok(message) => batch.push(message),
            Err(error) => {
                summary.invalid += 1;
                if summary.first_invalid.len() < INVALID_SHOWN {
                    summary.first_invalid.push(summary.lines);
                    let _ = writeln!(report, "line {}: {}", summary.lines, problem(&error));
                }
            }
        }
        if batch.len() == IMPORT_BATCH {
            store_batch(store, &mut batch, &mut summary)?;
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
    store_batch(store, &mut batch, &mut summary)?;
    Ok(summary)
}

fn store_batch(
    store: &mut Store,
    batch: &mut Vec<Message>,
    summary: &mut ImportSummary,
) -> Result<(), CliError> {
    if batch.is_empty() {
        return Ok(());
    }
    let results = store
        .insert_batch(batch, &timestamp::now_utc())
        .map_err(|error| CliError::Failed(error.to_string()))?;
    for inserted in results {
        match inserted {
            Inserted::Created => summary.created += 1,
            Inserted::Duplicate => summary.duplicate += 1,
        }
    }
    store.after_commit();
    batch.clear();
    Ok(())
}

/// The validation problems of a line, as `/webhook` would answer them.
fn problem(error: &Error) -> String {
    match error {
        Error::Unprocessable(problems) => serde_json::to_string(problems).unwrap_or_default(),
        other => other.to_string(),
    }
}
