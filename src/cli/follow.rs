//! `hookbox export --follow [--after TOKEN] [--print-position]`: the feed as NDJSON on stdout, in
//! arrival order, from the store itself (`DATABASE_URL`), continuing as messages arrive.
//!
//! It reads the same pages as `GET /feed` (up to `PAGE` rows, then the next page after the last
//! one), so memory stays constant; on SQLite it is one more WAL reader beside a running server,
//! on PostgreSQL one more connection. With nothing new it looks again every `POLL_EVERY`. It
//! stops with exit 0 at SIGINT/SIGTERM (after writing out the page in hand) or when stdout is
//! closed (noticed at the next write). `--print-position` writes `position <token>` to stderr
//! after the rows it covers are flushed (at most once a second, and at the end): restarting
//! with `--after <token>` continues exactly after them.

use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{CliError, UsageError};
use crate::config::Config;
use crate::handlers::feed::{decode_token, encode_token};
use crate::store::feed::{FeedQuery, FeedStart};
use crate::store::{Store, StoreError};

/// Rows per read.
const PAGE: u32 = 1000;
/// How often an idle follower looks for new rows (there is no server to wake it).
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How often `--print-position` reports at most.
const POSITION_EVERY: Duration = Duration::from_secs(1);
/// Pause before reading again after the store failed in a way a retry may cure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What `export --follow` was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowArgs {
    /// The store id and position of `--after TOKEN`; `None`: from the oldest message.
    pub after: Option<(String, i64)>,
    pub print_position: bool,
}

/// Whether `args` (after `export`) ask for the follower.
pub fn asked(args: &[String]) -> bool {
    args.iter().any(|arg| arg == "--follow")
}

/// `--follow`, `--after TOKEN` (or `--after=TOKEN`), `--print-position`.
pub fn parse_args(args: &[String]) -> Result<FollowArgs, UsageError> {
    let mut parsed = FollowArgs::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = super::option(arg);
        match (name, inline) {
            ("--follow", None) => {}
            ("--print-position", None) => parsed.print_position = true,
            ("--after", inline) => {
                let token = inline.or_else(|| args.next().cloned()).ok_or_else(|| {
                    UsageError("`hookbox export --follow --after` needs a value".to_owned())
                })?;
                parsed.after = Some(decode_token(&token).ok_or_else(|| {
                    UsageError(format!(
                        "--after {token:?} is not a position token (a feed's `next`, or a \
                         `position` line of --print-position)"
                    ))
                })?);
            }
            _ => {
                return Err(UsageError(format!(
                    "unexpected argument {arg:?} to `hookbox export --follow …` \
                     (--since and --from are for the one-shot export)"
                )));
            }
        }
    }
    Ok(parsed)
}

/// Follows the feed until a signal or a closed stdout (both: `Ok`).
pub fn run(config: &Config, args: &FollowArgs) -> Result<(), CliError> {
    let print_position = args.print_position;
    let mut position = args.after.clone();
    let usage = |problem: String| CliError::Usage(problem);
    let signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|error| CliError::Failed(format!("cannot handle signals: {error}")))?;
    let signal_handle = signals.handle();
    let (stop_sender, stop) = crossbeam_channel::bounded(1);
    let mut signals = signals;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_sender.send(());
        }
    });

    // Read-only, like export: nothing is created or changed (SQLite: one more WAL reader).
    let mut store = Store::open_read_only(&config.store_options())
        .map_err(|error| CliError::Failed(error.to_string()))?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut reported: Option<(Instant, i64)> = None;
    let result = loop {
        if stop.try_recv().is_ok() {
            break Ok(());
        }
        let start = match &position {
            None => FeedStart::Oldest,
            Some((_, after)) => FeedStart::After(*after),
        };
        let query = FeedQuery {
            start,
            limit: PAGE,
            from: None,
        };
        let page = match store.feed(&query) {
            Ok(page) => page,
            Err(StoreError::Unavailable(why)) => {
                eprintln!("hookbox export --follow: store unavailable, retrying: {why}");
                if stop.recv_timeout(RETRY_AFTER).is_ok() {
                    break Ok(());
                }
                continue;
            }
            Err(error) => break Err(CliError::Failed(error.to_string())),
        };
        if let Some((expected, _)) = &position {
            if *expected != page.store_id {
                break Err(usage(
                    "--after is a token of another store's feed".to_owned(),
                ));
            }
        }
        if page.gap {
            eprintln!(
                "hookbox export --follow: retention purged messages after the position given"
            );
        }
        let written = page.rows.iter().try_for_each(|message| {
            serde_json::to_writer(&mut out, message)?;
            out.write_all(b"\n")
        });
        if written.and_then(|()| out.flush()).is_err() {
            // stdout was closed (a pipe whose reader is gone): the consumer is done.
            break Ok(());
        }
        if print_position
            && reported.is_none_or(|(at, last)| last != page.next && at.elapsed() >= POSITION_EVERY)
        {
            eprintln!("position {}", encode_token(&page.store_id, page.next));
            reported = Some((Instant::now(), page.next));
        }
        position = Some((page.store_id, page.next));
        if page.at_end && stop.recv_timeout(POLL_EVERY).is_ok() {
            break Ok(());
        }
    };
    signal_handle.close();
    if let (true, Some((id, next))) = (print_position, &position) {
        if reported.is_none_or(|(_, last)| last != *next) {
            eprintln!("position {}", encode_token(id, *next));
        }
    }
    drop(store);
    result
}
