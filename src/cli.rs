//! The command line: which command to run, its help, and how each outcome becomes an exit code.
//!
//! `hookbox` alone serves HTTP; `healthcheck`, `export` and `import` are one-shot commands that
//! behave like the Unix tools operators know: `--help` and `--version` print to stdout and exit
//! 0, a wrong argument is exit 2 with a one-line hint on stderr, data goes to stdout and
//! everything else to stderr. Configuration still comes from the environment only (`config`).
//!
//! Exit codes: 0 success; 1 the work failed (store, input, output, a server that is not ready,
//! invalid import lines); 2 bad arguments or configuration.

mod export;
mod follow;
mod import;
mod sign;

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use crate::config::Config;

pub use export::{ExportArgs, export};
pub use import::{ImportSummary, import};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// No arguments: serve HTTP until a signal.
    Serve,
    /// `--help`, `-h`, `help [COMMAND]`, `COMMAND --help`.
    Help(Topic),
    /// `--version`, `-V`.
    Version,
    Healthcheck,
    Export(ExportArgs),
    /// `export --follow …`: the feed, continuing as messages arrive.
    Follow(follow::FollowArgs),
    /// `import [FILE|-]`: `None` or `-` reads stdin.
    Import(Option<String>),
    /// `sign [--standard] [FILE|-]` (see `sign`).
    Sign(sign::SignArgs),
}

/// Whose help to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Main,
    Healthcheck,
    Export,
    Import,
    Sign,
}

/// Arguments that cannot be run: exit 2, with this one line on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a one-shot command failed.
#[derive(Debug)]
pub enum CliError {
    /// The arguments are wrong (exit code 2).
    Usage(String),
    /// The store, the input or the output failed (exit code 1).
    Failed(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) | CliError::Failed(message) => f.write_str(message),
        }
    }
}

fn is_help(arg: &str) -> bool {
    arg == "--help" || arg == "-h"
}

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let args: Vec<String> = args
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| UsageError(format!("argument {arg:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let Some((first, rest)) = args.split_first() else {
        return Ok(Command::Serve);
    };
    let topic = |name: &str| match name {
        "healthcheck" => Some(Topic::Healthcheck),
        "export" => Some(Topic::Export),
        "import" => Some(Topic::Import),
        "sign" => Some(Topic::Sign),
        _ => None,
    };
    match first.as_str() {
        "--help" | "-h" | "help" => match rest {
            [] => Ok(Command::Help(Topic::Main)),
            [name] if first == "help" => topic(name)
                .map(Command::Help)
                .ok_or_else(|| UsageError(format!("no help for {name:?}: not a command"))),
            [extra, ..] => Err(unexpected(extra, "")),
        },
        "--version" | "-V" => match rest {
            [] => Ok(Command::Version),
            [extra, ..] => Err(unexpected(extra, "")),
        },
        name @ ("healthcheck" | "export" | "import" | "sign")
            if rest.iter().any(|arg| is_help(arg)) =>
        {
            Ok(Command::Help(topic(name).unwrap_or(Topic::Main)))
        }
        "healthcheck" => match rest {
            [] => Ok(Command::Healthcheck),
            [extra, ..] => Err(unexpected(extra, "healthcheck ")),
        },
        "export" if follow::asked(rest) => follow::parse_args(rest).map(Command::Follow),
        "export" => export::parse_args(rest).map(Command::Export),
        "import" => match rest {
            [] => Ok(Command::Import(None)),
            [path] if path == "-" => Ok(Command::Import(None)),
            [path] if path.starts_with('-') => Err(unexpected(path, "import ")),
            [path] => Ok(Command::Import(Some(path.clone()))),
            [_, extra, ..] => Err(unexpected(extra, "import ")),
        },
        "sign" => sign::parse_args(rest)
            .map(Command::Sign)
            .map_err(|arg| unexpected(&arg, "sign ")),
        other => Err(unexpected(other, "")),
    }
}

/// An option as given: `--name=value` is the name and its inline value; anything else is itself,
/// with the value (if it takes one) in the next argument.
fn option(arg: &str) -> (&str, Option<String>) {
    match arg.split_once('=') {
        Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
        _ => (arg, None),
    }
}

fn unexpected(arg: &str, command: &str) -> UsageError {
    UsageError(format!(
        "unexpected argument {arg:?} to `hookbox {command}…`"
    ))
}

/// The version line: the crate's version and the schema each store is brought to.
pub fn version() -> String {
    #[cfg(feature = "postgres")]
    let postgres = format!("PostgreSQL {}", crate::store::postgres::SCHEMA_VERSION);
    #[cfg(not(feature = "postgres"))]
    let postgres = "no PostgreSQL in this build".to_owned();
    format!(
        "hookbox {} (schema version: SQLite {}, {postgres})\n",
        env!("CARGO_PKG_VERSION"),
        crate::store::sqlite::SCHEMA_VERSION,
    )
}

/// The help text for `topic`.
pub fn help(topic: Topic) -> &'static str {
    match topic {
        Topic::Main => MAIN_HELP,
        Topic::Healthcheck => HEALTHCHECK_HELP,
        Topic::Export => EXPORT_HELP,
        Topic::Import => IMPORT_HELP,
        Topic::Sign => sign::HELP,
    }
}

const MAIN_HELP: &str = "\
hookbox: a webhook ingestion server (HMAC-checked messages, stored exactly once)

Usage:
  hookbox                        serve HTTP on HOST:PORT until SIGTERM, SIGINT or SIGHUP
  hookbox healthcheck            exit 0 if the server on HOST:PORT is ready
  hookbox export [OPTIONS]       write the stored messages to stdout as NDJSON
  hookbox import [FILE|-]        store NDJSON messages from FILE or stdin
  hookbox sign [--standard] [FILE|-]  print the signature headers of a body (for curl)
  hookbox help [COMMAND]         this help, or a command's (also: COMMAND --help)
  hookbox --version              the version and the schema versions it uses

Configuration is read from the environment only: DATABASE_URL (default sqlite:///hookbox.db),
WEBHOOK_SECRET, HOST, PORT, LOG_LEVEL and the HOOKBOX_* variables in the README.

Exit codes: 0 success, 1 failure, 2 bad arguments or configuration.
";

const HEALTHCHECK_HELP: &str = "\
Usage: hookbox healthcheck

Asks the server on HOST:PORT (0.0.0.0 and :: mean loopback) for GET /health/ready and exits 0
on a 200, else 1 with the reason on stderr. For container healthchecks: the image has no curl.
Takes no arguments.
";

const EXPORT_HELP: &str = "\
Usage: hookbox export [--since TS] [--from SENDER]
       hookbox export --follow [--after TOKEN] [--print-position]

Writes every stored message in DATABASE_URL to stdout, one compact JSON object per line
(message_id, from, to, ts, text), in /messages order, from one read snapshot. The store is
opened read-only: nothing is created or changed, and a read-only file works.

Options:
  --since TS       only messages with ts at or after TS (2025-01-15T10:00:00Z, as /messages)
  --from SENDER    only messages from SENDER (+ and digits, as stored)
  --follow         instead: every message in arrival order (as GET /feed), then each new one
                   as it is stored, until SIGINT/SIGTERM or a closed stdout (exit 0)
  --after TOKEN    with --follow: start after this position (a feed `next` token)
  --print-position with --follow: print `position TOKEN` on stderr as rows are written (at
                   most once a second, and at the end), to resume with --after
  -h, --help       this help

Exit codes: 0 done (also when stdout is closed early, as by `| head`), 1 the store or stdout
failed, 2 bad arguments or configuration.
";

const IMPORT_HELP: &str = "\
Usage: hookbox import [FILE|-]

Reads NDJSON messages (as export writes them) from FILE, or stdin without FILE or with -, and
stores each valid one through the webhook's validation and exactly-once insert. Empty and
whitespace-only lines are skipped; a UTF-8 byte order mark at the start is skipped; a line
longer than HOOKBOX_MAX_BODY_BYTES is invalid. Problems and progress go to stderr, and the last
line is always the summary:
  import: lines=N created=N duplicate=N invalid=N first_invalid_lines=L1,L2,…

Exit codes: 0 every line valid and stored, 1 invalid lines (the valid ones are stored) or the
store failed (the summary says what was stored before), 2 bad arguments or configuration.
";

/// Writes `text` to stdout. A closed stdout (`hookbox --help | head -1`) is not an error.
pub fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("hookbox: writing stdout: {error}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Runs a one-shot command (`healthcheck`, `export`, `import`) and turns its outcome into the
/// exit code. Problems go to stderr as `hookbox COMMAND: …`.
pub fn run(config: &Config, command: &Command) -> ExitCode {
    let (name, result) = match command {
        Command::Healthcheck => (
            "healthcheck",
            crate::healthcheck::check(config)
                .map(|()| true)
                .map_err(CliError::Failed),
        ),
        Command::Export(args) => ("export", export::run(config, args).map(|()| true)),
        Command::Follow(args) => ("export --follow", follow::run(config, args).map(|()| true)),
        Command::Sign(args) => ("sign", sign::run(config, args).map(|()| true)),
        Command::Import(path) => (
            "import",
            import::run(config, path.as_deref())
                .map(|summary| summary.invalid == 0 && summary.stopped.is_none()),
        ),
        Command::Serve | Command::Help(_) | Command::Version => (
            "",
            Err(CliError::Usage("not a one-shot command".to_owned())),
        ),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("hookbox {name}: {error}");
            ExitCode::from(match error {
                CliError::Usage(_) => 2,
                CliError::Failed(_) => 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn help_and_version_in_every_usual_spelling() {
        for args in [&["--help"][..], &["-h"], &["help"]] {
            assert_eq!(parsed(args), Ok(Command::Help(Topic::Main)), "{args:?}");
        }
        for (args, topic) in [
            (&["export", "--help"][..], Topic::Export),
            (&["export", "--since", "x", "-h"], Topic::Export),
            (&["import", "--help"], Topic::Import),
            (&["healthcheck", "-h"], Topic::Healthcheck),
            (&["help", "import"], Topic::Import),
            (&["sign", "--standard", "-h"], Topic::Sign),
        ] {
            assert_eq!(parsed(args), Ok(Command::Help(topic)), "{args:?}");
        }
        assert_eq!(parsed(&["--version"]), Ok(Command::Version));
        assert_eq!(parsed(&["-V"]), Ok(Command::Version));
        assert!(version().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn anything_unexpected_is_a_usage_error() {
        for args in [
            &["--frobnicate"][..],
            &["serve"],
            &["healthcheck", "now"],
            &["import", "a", "b"],
            &["import", "--since"],
            &["export", "extra"],
            &["export", "--since"],
            &["export", "--since", "2025-02-30T00:00:00Z"],
            &["export", "--from", "919876543210"],
            &["export", "--from", ""],
            &["export", "--from", "+"],
            &["export", "--from", &format!("+{}", "9".repeat(33))],
            &["help", "nothing"],
            &["--help", "extra"],
            &["--version", "extra"],
            &["sign", "a.json", "b.json"],
            &["sign", "--hex"],
        ] {
            let error = parsed(args).expect_err(&format!("{args:?}"));
            assert!(!error.0.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn commands_with_their_arguments() {
        assert_eq!(parsed(&[]), Ok(Command::Serve));
        assert_eq!(parsed(&["healthcheck"]), Ok(Command::Healthcheck));
        assert_eq!(parsed(&["import"]), Ok(Command::Import(None)));
        assert_eq!(parsed(&["import", "-"]), Ok(Command::Import(None)));
        assert_eq!(
            parsed(&["import", "x.ndjson"]),
            Ok(Command::Import(Some("x.ndjson".to_owned())))
        );
        let Ok(Command::Export(args)) = parsed(&[
            "export",
            "--since=2025-01-15T10:00:00.5Z",
            "--from",
            "+919876543210",
        ]) else {
            panic!("export arguments");
        };
        assert_eq!(
            args.filter.since_key.as_deref(),
            Some("2025-01-15T10:00:00.5")
        );
        assert_eq!(args.filter.from.as_deref(), Some("+919876543210"));
    }
}
