//! `hookbox export`: the stored messages as NDJSON on stdout, one compact JSON object per line
//! (`message_id, from, to, ts, text`, in that order) in `/messages` order, streamed from one read
//! snapshot in constant memory.
//!
//! It behaves like `cat`: the store is opened read-only (a missing file is "no such database" and
//! nothing is created), a reader that goes away (`| head -1`) ends it quietly with exit 0, and an
//! output that fails (`> /dev/full`) is an output error, never blamed on the store.

use std::io::{self, BufWriter, Write};

use super::CliError;
use crate::config::{Config, Database};
use crate::message;
use crate::store::{ExportFilter, Store, StoreError, StoredMessage};
use crate::timestamp;

/// What `export` was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportArgs {
    pub filter: ExportFilter,
}

/// `--since TS`, `--from SENDER` (or `--name=value`), each checked as `/messages` checks them.
pub(super) fn parse_args(args: &[String]) -> Result<ExportArgs, super::UsageError> {
    let usage = |message: String| super::UsageError(message);
    let mut parsed = ExportArgs::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = super::option(arg);
        if !matches!(name, "--since" | "--from") {
            return Err(super::unexpected(arg, "export "));
        }
        let value = inline
            .or_else(|| args.next().cloned())
            .ok_or_else(|| usage(format!("`hookbox export {name}` needs a value")))?;
        if name == "--since" {
            let key = timestamp::sort_key(&value).ok_or_else(|| {
                usage(format!(
                    "--since {value:?} is not a UTC timestamp like 2025-01-15T10:00:00Z"
                ))
            })?;
            parsed.filter.since_key = Some(key);
        } else {
            // Only what the webhook's validation lets in is ever stored as a sender: anything
            // else would silently export nothing (a forgotten `+` most of all), so it is refused.
            if !message::is_msisdn(&value) || value.len() > 1 + message::MAX_MSISDN_DIGITS {
                return Err(usage(format!(
                    "--from {value:?} is not a sender like +919876543210 (+ and at most {} digits)",
                    message::MAX_MSISDN_DIGITS
                )));
            }
            parsed.filter.from = Some(value);
        }
    }
    Ok(parsed)
}

pub(super) fn run(config: &Config, args: &ExportArgs) -> Result<(), CliError> {
    match &config.database {
        Database::Sqlite(path) if !path.exists() => {
            return Err(CliError::Failed(format!(
                "no such database: {}",
                path.display()
            )));
        }
        _ => {}
    }
    let mut store = Store::open_read_only(&config.store_options()).map_err(store_failed)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let written = export(&mut store, &args.filter, &mut out).and_then(|()| {
        out.flush()
            .map_err(|error| Outcome::Output(error.to_string(), error.kind()))
    });
    match written {
        Ok(()) => Ok(()),
        // The reader has all it wanted (`| head`): as for `cat`, that is success.
        Err(Outcome::Output(_, io::ErrorKind::BrokenPipe)) => Ok(()),
        Err(Outcome::Output(error, _)) => Err(CliError::Failed(format!("writing stdout: {error}"))),
        Err(Outcome::Store(error)) => Err(store_failed(error)),
    }
}

fn store_failed(error: StoreError) -> CliError {
    CliError::Failed(error.to_string())
}

/// Why an export stopped.
#[derive(Debug)]
pub enum Outcome {
    /// Writing the output failed (the message, and its kind: `BrokenPipe` is a reader gone).
    Output(String, io::ErrorKind),
    Store(StoreError),
}

/// Writes every message `filter` selects to `out`, one compact JSON object per line. An output
/// error is told apart from a store error even though it surfaces through the store's loop.
pub fn export(
    store: &mut Store,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<(), Outcome> {
    let mut output_error: Option<io::Error> = None;
    let result = store.export(filter, &mut |message: &StoredMessage| {
        let written = serde_json::to_writer(&mut *out, message)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        written.map_err(|error| {
            let kind = error.kind();
            output_error = Some(error);
            io::Error::from(kind)
        })
    });
    match (output_error, result) {
        (Some(error), _) => Err(Outcome::Output(error.to_string(), error.kind())),
        (None, Err(error)) => Err(Outcome::Store(error)),
        (None, Ok(())) => Ok(()),
    }
}
