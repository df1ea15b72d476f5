//! Configuration, read from the environment in exactly one place.
//!
//! Raw strings become validated values here; nothing else in the crate looks at the environment.
//! `Config::from_lookup` takes any lookup function so tests can build configs without touching
//! the process environment, which is global and racy under parallel tests.

mod database;
mod senders;
mod size;
mod values;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use size::{DEFAULT_MAX_BODY_BUFFER_MIB, MAX_BODY_BUFFER_MIB, mebibytes};
use values::{number, parse_host, parse_log_level};

pub use crate::store::Durability;
use crate::store::{PostgresOptions, SqliteOptions, StoreOptions};
pub use database::{Database, parse_database_url, redact_url};
pub use senders::{KeySlot, Keys, Senders, Twilio, standard_secret};

/// Everything the server needs to start, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which store, and where (from `DATABASE_URL`).
    pub database: Database,
    /// HMAC key for `/webhook`; `None` when unset or empty.
    pub webhook_secret: Option<Secret>,
    /// Most verbose level written to stdout.
    pub log_level: LevelFilter,
    /// Address to listen on: an IP address literal (checked here; names are refused).
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
    pub max_held_answer_bytes: u64,
    /// Request bodies all connections may hold in memory, in bytes; over it a body gets 503.
    pub max_body_buffer_bytes: u64,
    /// Whether `q` is served by a full-text index (disk for speed) or by scanning the rows.
    pub text_index: bool,
    /// Whether the writer adds new rows to SQLite's text index between commits. Always on in
    /// service (no variable sets it); tests turn it off to hold rows in the tail, which `q` must
    /// find all the same.
    pub text_index_catch_up: bool,
    /// How often, while feeds wait, the store is read for commits made elsewhere (another
    /// instance, another process). No variable sets it; tests make it long to show that this
    /// instance's own commits wake waiters without it.
    pub feed_watch_every: Duration,
    /// Keep only the newest this many messages by arrival; 0: no limit.
    pub retain_messages: u64,
    /// Drop messages that arrived more than this many days ago; 0: keep them forever.
    pub retain_days: u64,
    /// The senders beyond `/webhook`'s own dialect, and every secret's previous value.
    pub senders: Senders,
    /// `HOOKBOX_ADMIN_TOKEN`: when set, the read routes (`Route::needs_admin`) need
    /// `Authorization: Bearer <token>`; `None` leaves them open.
    pub admin_token: Option<Secret>,
    /// `HOOKBOX_COMMIT_TIMEOUT_SECS`: no webhook waits longer than this for its commit; past it
    /// the answer is 503 (not acknowledged, a retry is safe).
    pub commit_timeout: Duration,
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

/// How often, while a `/feed` waits, the feed's watcher reads the newest position another
/// instance may have committed (a short poll: the cross-instance wake-up is at most this late).
pub const FEED_WATCH_EVERY: Duration = Duration::from_millis(200);

pub const DEFAULT_DATABASE_URL: &str = "sqlite:///hookbox.db";

/// Each open connection costs one thread (a 128 KiB stack reserved, of which a few KiB are
/// touched), one descriptor and its buffers: about 18 KiB of RSS when idle (1,500 keep-alive
/// connections on a release build: 7 MiB → 34 MiB). 2048 of them stay well inside a
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
        let host = match get("HOST") {
            None => "0.0.0.0".to_owned(),
            Some(raw) => parse_host(&raw).map_err(|reason| ConfigError {
                variable: "HOST",
                reason,
            })?,
        };

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
            max_held_answer_bytes: mebibytes(&get, "HOOKBOX_MAX_HELD_ANSWERS_MIB", 8, 0..=4096)?,
            max_body_buffer_bytes: mebibytes(
                &get,
                "HOOKBOX_MAX_BODY_BUFFER_MIB",
                DEFAULT_MAX_BODY_BUFFER_MIB,
                1..=MAX_BODY_BUFFER_MIB,
            )?,
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
            feed_watch_every: FEED_WATCH_EVERY,
            retain_messages: number(&get, "HOOKBOX_RETAIN_MESSAGES", 0, 0..=i64::MAX as u64)?,
            // 100 years: beyond that "forever" (0) says it better, and the cutoff stays a date.
            retain_days: number(&get, "HOOKBOX_RETAIN_DAYS", 0, 0..=36_500)?,
            senders: senders::from_lookup(&get)?,
            admin_token: senders::admin_token(get("HOOKBOX_ADMIN_TOKEN"))?,
            commit_timeout: Duration::from_secs(number(
                &get,
                "HOOKBOX_COMMIT_TIMEOUT_SECS",
                5,
                1..=3600,
            )?),
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

    /// The one place the configuration becomes the store's own settings.
    pub fn store_options(&self) -> StoreOptions {
        match &self.database {
            Database::Sqlite(path) => StoreOptions::Sqlite(SqliteOptions {
                path: path.clone(),
                busy_timeout: self.busy_timeout,
                durability: self.durability,
                max_db_mib: self.max_db_mib,
                query_timeout: self.query_timeout,
                index_upkeep: self.text_index_catch_up,
            }),
            Database::Postgres(url) => StoreOptions::Postgres(PostgresOptions {
                url: url.clone(),
                query_timeout: self.query_timeout,
                lock_timeout: self.busy_timeout,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A config from exactly these variables (the tests of `config/` use it too).
    pub(crate) fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
    fn a_database_password_never_shows_in_the_config_or_its_errors() {
        for url in [
            "postgres://hookbox:hunter2@db.example:5432/hookbox",
            "postgres://hookbox:hunter2@db:port/hookbox",
            "postgres://hookbox:hunter2@db",
        ] {
            match config(&[("DATABASE_URL", url)]) {
                Ok(config) => {
                    assert!(!format!("{config:?}").contains("hunter2"));
                    assert!(!config.database.describe().contains("hunter2"));
                }
                Err(error) => assert!(!error.to_string().contains("hunter2"), "{error}"),
            }
        }
    }

    #[test]
    fn host_is_an_ip_address_written_plainly() {
        for good in ["0.0.0.0", "127.0.0.1", "::", "::1", "fe80::1"] {
            assert_eq!(config(&[("HOST", good)]).unwrap().host, good);
        }
        for bad in [
            "abc",
            "localhost",
            "127.0.0.1:80",
            "[::1]",
            " 127.0.0.1",
            "127.0.0.1 ",
            "256.0.0.1",
        ] {
            let error = config(&[("HOST", bad)]).unwrap_err();
            assert_eq!(error.variable, "HOST", "{bad:?}");
        }
    }

    #[test]
    fn the_admin_token_is_redacted_and_the_commit_timeout_bounded() {
        let config = config(&[
            ("HOOKBOX_ADMIN_TOKEN", "s3cret-token"),
            ("HOOKBOX_COMMIT_TIMEOUT_SECS", "3600"),
        ])
        .unwrap();
        assert_eq!(
            config.admin_token.as_ref().unwrap().expose(),
            b"s3cret-token"
        );
        assert!(!format!("{config:?}").contains("s3cret-token"));
        assert_eq!(config.commit_timeout, Duration::from_secs(3600));
        let defaults = super::tests::config(&[("HOOKBOX_ADMIN_TOKEN", "")]).unwrap();
        assert_eq!(defaults.admin_token, None);
        assert_eq!(defaults.commit_timeout, Duration::from_secs(5));
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
            ("HOOKBOX_MAX_BODY_BUFFER_MIB", "0"),
            ("HOOKBOX_MAX_BODY_BUFFER_MIB", "65537"),
            ("HOOKBOX_TEXT_INDEX", "yes"),
            ("HOOKBOX_RETAIN_MESSAGES", "-1"),
            ("HOOKBOX_RETAIN_DAYS", "1.5"),
            ("HOOKBOX_COMMIT_TIMEOUT_SECS", "0"),
            ("HOOKBOX_COMMIT_TIMEOUT_SECS", "3601"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "file:x.db"),
            ("DATABASE_URL", "host=db dbname=x"),
            ("DATABASE_URL", "postgres://u@h"),
            ("HOST", "abc"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.to_string().contains(variable));
        }
    }
}
