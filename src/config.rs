//! Configuration, read from the environment in exactly one place.
//!
//! Raw strings become validated values here; nothing else in the crate looks at the environment.
//! `Config::from_lookup` takes any lookup function so tests can build configs without touching
//! the process environment, which is global and racy under parallel tests.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

/// Everything the server needs to start, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which store, and where (from `DATABASE_URL`).
    pub database: Database,
    /// HMAC key for `/webhook`; `None` when unset or empty.
    pub webhook_secret: Option<Secret>,
    /// Most verbose level written to stdout.
    pub log_level: LevelFilter,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 lets the OS choose (tests use this).
    pub port: u16,
    /// Number of worker threads, each with its own SQLite connection.
    pub workers: usize,
    /// Requests waiting for a worker beyond this many are shed with 503.
    pub queue_capacity: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a connection waits for a SQLite lock before the request fails with 503.
    pub busy_timeout: Duration,
    /// Idle keep-alive connections close after this; a request must arrive within it.
    pub read_timeout: Duration,
    /// When a commit counts as done: synced to disk (`Full`) or handed to the OS (`Normal`).
    pub durability: Durability,
    /// Accepted messages waiting for the writer beyond this many are shed with 503.
    pub write_queue_capacity: usize,
    /// Most messages the writer commits in one transaction (one fsync).
    pub max_batch: usize,
    /// Upper bound on the database file size in MiB; at the cap writes answer 503. 0: no cap.
    pub max_db_mib: u64,
    /// After SIGTERM, in-flight work gets this long before the process exits anyway (code 1).
    pub shutdown_grace: Duration,
    /// The whole request head (request line and headers) must arrive within this.
    pub header_timeout: Duration,
    /// The whole answer must be taken by the client within this, or the connection is closed.
    pub write_timeout: Duration,
    /// Open connections at most; beyond this new ones are refused at once with a 503.
    pub max_connections: usize,
    /// Budget of one read query (`/messages`, `/stats`); past it the read answers 503.
    pub query_timeout: Duration,
    /// Reads are refused (503) while answers of more than this many bytes wait for clients that
    /// are not reading them.
    pub max_held_answer_bytes: usize,
    /// Whether `q` is served by a full-text index (disk for speed) or by scanning the rows.
    pub text_index: bool,
    /// Whether the writer adds new rows to SQLite's text index between commits. Always on in
    /// service (no variable sets it); tests turn it off to hold rows in the tail, which `q` must
    /// find all the same.
    pub text_index_catch_up: bool,
    /// Keep only the newest this many messages by arrival; 0: no limit.
    pub retain_messages: u64,
    /// Drop messages that arrived more than this many days ago; 0: keep them forever.
    pub retain_days: u64,
}

/// The store `DATABASE_URL` names.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (the embedded default): one box, one file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`), kept as given: several
    /// hookbox instances may share the database it names.
    Postgres(String),
}

impl Database {
    /// What the logs may say about the store: the file, or the URL with any password hidden.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact_url(url),
        }
    }
}

/// `Debug` never shows a password, so a logged config cannot leak it.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

/// SQLite's `synchronous` setting for every connection (see the README's trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each commit returns after the WAL is fsynced: a 200 survives power loss.
    Full,
    /// Commits are fsynced only at checkpoints: a 200 survives a crash of hookbox, but the last
    /// moments before a power loss or kernel crash may be lost.
    Normal,
}

impl Durability {
    pub fn as_pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// The webhook secret. `Debug` never shows it, so a logged config cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A variable whose value could not be used. Always names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_DATABASE_URL: &str = "sqlite:///hookbox.db";

/// Each open connection costs one thread (a 64 KiB stack, of which a few KiB are touched), one
/// descriptor and its buffers: about 16 KiB of RSS when idle. 2048 of them stay well inside a
/// 256 MiB box together with the database cache, and inside a common `ulimit -n` of 4096.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any name → value lookup. An empty value counts as unset, so
    /// `FOO: ${FOO}` in a compose file with `FOO` unset falls back to the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let database = parse_database_url(&database_url).map_err(|reason| ConfigError {
            variable: "DATABASE_URL",
            reason,
        })?;
        let log_level = match get("LOG_LEVEL") {
            None => LevelFilter::Info,
            Some(raw) => parse_log_level(&raw).ok_or_else(|| ConfigError {
                variable: "LOG_LEVEL",
                reason: format!("{raw:?} is not one of ERROR, WARN, INFO, DEBUG"),
            })?,
        };
        let host = get("HOST").unwrap_or_else(|| "0.0.0.0".to_owned());

        Ok(Config {
            database,
            webhook_secret: get("WEBHOOK_SECRET").map(Secret),
            log_level,
            host,
            port: number(&get, "PORT", 8000, 0..=65535)?,
            workers: number(&get, "HOOKBOX_WORKERS", 4, 1..=256)?,
            queue_capacity: number(&get, "HOOKBOX_QUEUE_CAPACITY", 512, 1..=65536)?,
            max_body_bytes: number(&get, "HOOKBOX_MAX_BODY_BYTES", 65536, 1..=16 * 1024 * 1024)?,
            busy_timeout: Duration::from_millis(number(
                &get,
                "HOOKBOX_BUSY_TIMEOUT_MS",
                5000,
                0..=600_000,
            )?),
            read_timeout: Duration::from_secs(number(
                &get,
                "HOOKBOX_READ_TIMEOUT_SECS",
                10,
                1..=3600,
            )?),
            durability: match get("HOOKBOX_SYNCHRONOUS") {
                None => Durability::Full,
                Some(raw) => match raw.trim().to_ascii_uppercase().as_str() {
                    "FULL" => Durability::Full,
                    "NORMAL" => Durability::Normal,
                    _ => {
                        return Err(ConfigError {
                            variable: "HOOKBOX_SYNCHRONOUS",
                            reason: format!("{raw:?} is not FULL or NORMAL"),
                        });
                    }
                },
            },
            write_queue_capacity: number(&get, "HOOKBOX_WRITE_QUEUE_CAPACITY", 1024, 1..=65536)?,
            max_batch: number(&get, "HOOKBOX_MAX_BATCH", 256, 1..=4096)?,
            max_db_mib: number(&get, "HOOKBOX_MAX_DB_MIB", 0, 0..=u64::from(u32::MAX))?,
            shutdown_grace: Duration::from_secs(number(
                &get,
                "HOOKBOX_SHUTDOWN_GRACE_SECS",
                15,
                1..=3600,
            )?),
            header_timeout: Duration::from_secs(number(
                &get,
                "HOOKBOX_HEADER_TIMEOUT_SECS",
                10,
                1..=3600,
            )?),
            write_timeout: Duration::from_secs(number(
                &get,
                "HOOKBOX_WRITE_TIMEOUT_SECS",
                10,
                1..=3600,
            )?),
            max_connections: number(
                &get,
                "HOOKBOX_MAX_CONNECTIONS",
                DEFAULT_MAX_CONNECTIONS,
                1..=1_000_000,
            )?,
            query_timeout: Duration::from_millis(number(
                &get,
                "HOOKBOX_QUERY_TIMEOUT_MS",
                2000,
                1..=3_600_000,
            )?),
            max_held_answer_bytes: number(&get, "HOOKBOX_MAX_HELD_ANSWERS_MIB", 8, 0..=4096)?
                * 1024
                * 1024,
            text_index: match get("HOOKBOX_TEXT_INDEX") {
                None => true,
                Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(ConfigError {
                            variable: "HOOKBOX_TEXT_INDEX",
                            reason: format!("{raw:?} is not on or off"),
                        });
                    }
                },
            },
            text_index_catch_up: true,
            retain_messages: number(&get, "HOOKBOX_RETAIN_MESSAGES", 0, 0..=i64::MAX as u64)?,
            // 100 years: beyond that "forever" (0) says it better, and the cutoff stays a date.
            retain_days: number(&get, "HOOKBOX_RETAIN_DAYS", 0, 0..=36_500)?,
        })
    }

    /// A config for tests and embedding: the given SQLite file, loopback on an OS-chosen port,
    /// everything else at its default.
    pub fn for_database(database_path: impl Into<PathBuf>, secret: Option<&str>) -> Config {
        Config::for_store(Database::Sqlite(database_path.into()), secret)
    }

    /// Like `for_database`, on the PostgreSQL database that `url` names.
    pub fn for_postgres(url: impl Into<String>, secret: Option<&str>) -> Config {
        Config::for_store(Database::Postgres(url.into()), secret)
    }

    /// Like `for_database`, on any store.
    pub fn for_store(database: Database, secret: Option<&str>) -> Config {
        let mut config = Config::from_lookup(|_| None).expect("defaults are valid");
        config.database = database;
        config.webhook_secret = secret.filter(|s| !s.is_empty()).map(Secret::new);
        config.host = "127.0.0.1".to_owned();
        config.port = 0;
        config
    }
}

/// Parses an unsigned integer variable within `range`, or returns `default` when unset.
fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = get(variable) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ConfigError {
            variable,
            reason: format!(
                "{raw:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

fn parse_log_level(raw: &str) -> Option<LevelFilter> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "ERROR" => Some(LevelFilter::Error),
        "WARN" | "WARNING" => Some(LevelFilter::Warn),
        "INFO" => Some(LevelFilter::Info),
        "DEBUG" => Some(LevelFilter::Debug),
        _ => None,
    }
}

/// `postgres://…` or `postgresql://…` → PostgreSQL (the URL must parse as a libpq connection
/// URL); `sqlite:////abs/path.db` → `/abs/path.db`; `sqlite:///rel.db` → `rel.db` (relative to
/// the working directory); a bare path is taken as it is. Anything else is an error.
pub fn parse_database_url(url: &str) -> Result<Database, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        let checked = crate::store::postgres::check_url(url);
        #[cfg(not(feature = "postgres"))]
        let checked = Err(crate::store::NO_POSTGRES.to_owned());
        return match checked {
            Ok(()) => Ok(Database::Postgres(url.to_owned())),
            // The parser's message never quotes the URL back, so no password reaches the log.
            Err(error) => Err(format!("{}: {error}", redact_url(url))),
        };
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite:///") {
        rest
    } else if url.starts_with("sqlite:") {
        return Err(format!(
            "{url:?} is not sqlite:///relative/path.db or sqlite:////absolute/path.db"
        ));
    } else if url.contains("://") {
        return Err(format!(
            "{:?}: only sqlite:// and postgres:// URLs are supported",
            redact_url(url)
        ));
    } else {
        url
    };
    if path.is_empty() || path.ends_with('/') {
        return Err(format!("{url:?} does not name a database file"));
    }
    if path.contains('?') {
        return Err(format!("{url:?}: URL parameters are not supported"));
    }
    if path == ":memory:" {
        return Err(
            "an in-memory database cannot be shared between workers; name a file".to_owned(),
        );
    }
    Ok(Database::Sqlite(PathBuf::from(path)))
}

/// The URL with the password of its user part (`user:password@`) and any `password=` parameter
/// replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let start = scheme_end + 3;
        let authority_end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |index| start + index);
        // The last `@` ends the user part: a password may contain an unencoded `@`.
        if let Some(at) = url[start..authority_end].rfind('@') {
            let userinfo = &url[start..start + at];
            if let Some(colon) = userinfo.find(':') {
                out = format!("{}:<redacted>{}", &url[..start + colon], &url[start + at..]);
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                    format!("{key}=<redacted>")
                }
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(
            config.database,
            Database::Sqlite(PathBuf::from("hookbox.db"))
        );
        assert_eq!(config.webhook_secret, None);
        assert_eq!(config.log_level, LevelFilter::Info);
        assert_eq!((config.host.as_str(), config.port), ("0.0.0.0", 8000));
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.durability, Durability::Full);
        assert!(config.text_index);
        assert_eq!((config.retain_messages, config.retain_days), (0, 0));
    }

    #[test]
    fn database_urls() {
        let sqlite = |path: &str| Database::Sqlite(PathBuf::from(path));
        assert_eq!(
            parse_database_url("sqlite:////data/app.db").unwrap(),
            sqlite("/data/app.db")
        );
        assert_eq!(
            parse_database_url("sqlite:///x.db").unwrap(),
            sqlite("x.db")
        );
        assert_eq!(
            parse_database_url("data/x.db").unwrap(),
            sqlite("data/x.db")
        );
        #[cfg(feature = "postgres")]
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@127.0.0.1:5432/db?connect_timeout=5",
            "postgres:///db?host=/run/postgresql",
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://u@h/db?sslmode=disable",
        ] {
            assert_eq!(
                parse_database_url(url).unwrap(),
                Database::Postgres(url.to_owned())
            );
        }
        #[cfg(not(feature = "postgres"))]
        assert!(
            parse_database_url("postgres://u@h/db")
                .unwrap_err()
                .contains("cargo feature `postgres`")
        );
        for bad in [
            "postgres://u@h/db?no_such_option=1",
            "postgres://u@h:port/db",
            "postgres://u:secret@h/db?sslmode=verify_full",
            "postgres://u@h/db?sslmode=allow",
            "mysql://u@h/db",
            "sqlite://x.db",
            "sqlite:x.db",
            "sqlite:///",
            "sqlite:///:memory:",
            "sqlite:///x.db?mode=ro",
        ] {
            assert!(parse_database_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn empty_secret_is_unset_and_secret_is_redacted() {
        assert_eq!(
            config(&[("WEBHOOK_SECRET", "")]).unwrap().webhook_secret,
            None
        );
        let config = config(&[("WEBHOOK_SECRET", "hunter2")]).unwrap();
        assert_eq!(config.webhook_secret.as_ref().unwrap().expose(), b"hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn a_database_password_never_shows() {
        for url in [
            "postgres://hookbox:hunter2@db.example:5432/hookbox",
            "postgresql://hookbox:p@ss:hunter2@db/hookbox?sslmode=disable",
            "postgres://hookbox@db/hookbox?password=hunter2&application_name=x",
            "postgres://hookbox:hunter2@db:port/hookbox",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("<redacted>") && shown.contains("hookbox"),
                "{shown}"
            );
            match config(&[("DATABASE_URL", url)]) {
                Ok(config) => {
                    assert!(!format!("{config:?}").contains("hunter2"));
                    assert!(!config.database.describe().contains("hunter2"));
                }
                Err(error) => assert!(!error.to_string().contains("hunter2"), "{error}"),
            }
        }
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:<redacted>@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn log_levels_are_case_insensitive() {
        assert_eq!(
            config(&[("LOG_LEVEL", "debug")]).unwrap().log_level,
            LevelFilter::Debug
        );
        assert_eq!(
            config(&[("LOG_LEVEL", "Warn")]).unwrap().log_level,
            LevelFilter::Warn
        );
        assert_eq!(
            config(&[("LOG_LEVEL", "loud")]).unwrap_err().variable,
            "LOG_LEVEL"
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (variable, value) in [
            ("PORT", "80000"),
            ("PORT", "http"),
            ("HOOKBOX_WORKERS", "0"),
            ("HOOKBOX_QUEUE_CAPACITY", "-1"),
            ("HOOKBOX_MAX_BODY_BYTES", "1e6"),
            ("HOOKBOX_BUSY_TIMEOUT_MS", "soon"),
            ("HOOKBOX_READ_TIMEOUT_SECS", "0"),
            ("HOOKBOX_SYNCHRONOUS", "OFF"),
            ("HOOKBOX_WRITE_QUEUE_CAPACITY", "0"),
            ("HOOKBOX_MAX_BATCH", "100000"),
            ("HOOKBOX_MAX_DB_MIB", "-5"),
            ("HOOKBOX_SHUTDOWN_GRACE_SECS", "0"),
            ("HOOKBOX_HEADER_TIMEOUT_SECS", "0"),
            ("HOOKBOX_WRITE_TIMEOUT_SECS", "x"),
            ("HOOKBOX_MAX_CONNECTIONS", "0"),
            ("HOOKBOX_QUERY_TIMEOUT_MS", "-1"),
            ("HOOKBOX_MAX_HELD_ANSWERS_MIB", "4097"),
            ("HOOKBOX_TEXT_INDEX", "yes"),
            ("HOOKBOX_RETAIN_MESSAGES", "-1"),
            ("HOOKBOX_RETAIN_DAYS", "1.5"),
            ("DATABASE_URL", "mysql://x"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.to_string().contains(variable));
        }
    }
}
