//! `DATABASE_URL`: which store, and where. Exactly five spellings are accepted, so a value can
//! never be read two ways: `sqlite:///relative.db`, `sqlite:////absolute.db`, a plain path (no
//! scheme: no `:` before the first `/`), `postgres://…` and `postgresql://…` (with a database
//! name). Anything else — `file:x.db`, `postgres:x`, a libpq keyword string, a value padded with
//! spaces — is refused with a reason, never guessed at.

use std::fmt;
use std::path::PathBuf;

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

/// libpq's connection keywords: a value starting `keyword=` is a keyword string (`host=db
/// dbname=x`), which hookbox does not read; it would otherwise pass for a file name.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
];

/// `postgres://…` or `postgresql://…` → PostgreSQL (the URL must parse as a libpq connection
/// URL and name a database); `sqlite:////abs/path.db` → `/abs/path.db`; `sqlite:///rel.db` →
/// `rel.db` (relative to the working directory); a plain path is taken as it is. Anything else is
/// an error whose text never quotes a password.
pub fn parse_database_url(url: &str) -> Result<Database, String> {
    if url.trim() != url {
        return Err(format!(
            "{:?} has leading or trailing spaces; write the value without them",
            redact_url(url)
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return parse_postgres(url);
    }
    if let Some(rest) = url.strip_prefix("sqlite:///") {
        return sqlite_path(url, rest);
    }
    if url.starts_with("sqlite:") {
        return Err(format!(
            "{url:?} is not sqlite:///relative/path.db or sqlite:////absolute/path.db"
        ));
    }
    let first_word = url.split_whitespace().next().unwrap_or_default();
    let keyword = first_word
        .split_once('=')
        .map(|(key, _)| key.to_ascii_lowercase());
    if keyword.is_some_and(|key| LIBPQ_KEYWORDS.contains(&key.as_str())) {
        return Err(
            "a libpq keyword string (host=… dbname=…) is not accepted; use the URL form \
             postgres://user:password@host:port/dbname"
                .to_owned(),
        );
    }
    // A plain path has no scheme: a `:` before the first `/` (or anywhere, without a `/`) would
    // make `file:x.db`, `postgres:x` or `C:x` a file of that odd name in the working directory.
    let scheme_like = match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if scheme_like {
        if url == ":memory:" {
            return Err(
                "an in-memory database cannot be shared between workers; name a file".to_owned(),
            );
        }
        return Err(format!(
            "{:?} is not sqlite:///path, sqlite:////absolute/path, a plain path, postgres://… \
             or postgresql://…",
            redact_url(url)
        ));
    }
    sqlite_path(url, url)
}

fn sqlite_path(url: &str, path: &str) -> Result<Database, String> {
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

#[cfg(not(feature = "postgres"))]
fn parse_postgres(url: &str) -> Result<Database, String> {
    Err(format!(
        "{}: {}",
        redact_url(url),
        crate::store::NO_POSTGRES
    ))
}

/// `sslmode`/`sslrootcert` are checked with libpq's meanings (see `store::postgres::tls`), the
/// rest as the client library parses it.
#[cfg(feature = "postgres")]
fn parse_postgres(url: &str) -> Result<Database, String> {
    match crate::store::postgres::parse_url(url) {
        // Without a name libpq (and the client) would pick the user's name: a database the
        // operator never chose. Say so instead.
        Ok(config) if config.get_dbname().is_none_or(str::is_empty) => Err(format!(
            "{} names no database; add it after the host: postgres://user@host:5432/DBNAME",
            redact_url(url)
        )),
        // PostgreSQL's startup message is NUL-terminated strings: a NUL in one of them is never
        // sent (the connection failed as if the server were silent, retried for ever), so refuse
        // it here, once.
        Ok(config)
            if [
                config.get_user().map(str::as_bytes),
                config.get_password(),
                config.get_dbname().map(str::as_bytes),
                config.get_application_name().map(str::as_bytes),
                config.get_options().map(str::as_bytes),
            ]
            .into_iter()
            .flatten()
            .any(|value| value.contains(&0)) =>
        {
            Err(format!(
                "{} holds a NUL (%00) in its user, password, database name or options, which \
                 PostgreSQL cannot take",
                redact_url(url)
            ))
        }
        Ok(_) => Ok(Database::Postgres(url.to_owned())),
        // The parser's message never quotes the URL back, so no password reaches the log.
        Err(error) => Err(format!("{}: {error}", redact_url(url))),
    }
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
        out = format!("{head}{}", redact_password_pairs(query, '&'));
    }
    // A keyword string's password (`password=x host=…`) is hidden too.
    if !url.contains("://") && url.contains("password=") {
        out = redact_password_pairs(&out, ' ');
    }
    out
}

/// `key=value` pairs joined by `separator`, with the value of any `password` key hidden.
fn redact_password_pairs(pairs: &str, separator: char) -> String {
    pairs
        .split(separator)
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=<redacted>"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_accepted_spellings() {
        let sqlite = |path: &str| Database::Sqlite(PathBuf::from(path));
        assert_eq!(
            parse_database_url("sqlite:////data/app.db").unwrap(),
            sqlite("/data/app.db")
        );
        assert_eq!(
            parse_database_url("sqlite:///x.db").unwrap(),
            sqlite("x.db")
        );
        for plain in [
            "data/x.db",
            "x.db",
            "/var/lib/hookbox/x.db",
            "./a:b.db",
            "my data/x.db",
        ] {
            assert_eq!(parse_database_url(plain).unwrap(), sqlite(plain));
        }
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
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        for (bad, says) in [
            ("postgres://u@h/db?no_such_option=1", ""),
            ("postgres://u@h:port/db", ""),
            ("postgres://u@h", "names no database"),
            ("postgres://u@h:5432/", "names no database"),
            ("postgresql://u:hunter2@h", "names no database"),
            ("mysql://u@h/db", "is not sqlite"),
            ("sqlite://x.db", "sqlite:///"),
            ("sqlite:x.db", "sqlite:///"),
            ("sqlite:///", "does not name"),
            ("sqlite:///:memory:", "in-memory"),
            (":memory:", "in-memory"),
            ("sqlite:///x.db?mode=ro", "parameters"),
            ("file:x.db", "is not sqlite"),
            ("file:///x.db", "is not sqlite"),
            ("postgres:x", "is not sqlite"),
            ("C:x.db", "is not sqlite"),
            ("host=db dbname=hookbox", "URL form"),
            ("dbname=hookbox", "URL form"),
            ("password=hunter2 host=db", "URL form"),
            (" x.db", "spaces"),
            ("x.db ", "spaces"),
            ("\tsqlite:///x.db", "spaces"),
            (" postgres://u:hunter2@h/db", "spaces"),
            ("postgres://u:hunter2@h/db?sslmode=verify_full", "sslmode"),
            ("postgres://u@h/db?sslmode=allow", "sslmode"),
            (
                "postgres://u@h/db?sslmode=require&sslrootcert=system",
                "verify-full",
            ),
            ("postgres://u:hunter2@h/d%00b", "NUL"),
            ("postgres://u%00:hunter2@h/db", "NUL"),
            ("postgres://u:hunt%00er2@h/db", "NUL"),
            ("postgres://u:hunter2@h/db?application_name=a%00", "NUL"),
        ] {
            if cfg!(not(feature = "postgres")) && bad.starts_with("postgres") {
                continue; // Refused as a build without PostgreSQL, tested below.
            }
            let error = parse_database_url(bad).expect_err(bad);
            assert!(error.contains(says), "{bad:?}: {error}");
            assert!(!error.contains("hunter2"), "{bad:?}: {error}");
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_build_without_postgres_names_the_missing_feature() {
        let error = parse_database_url("postgres://u:hunter2@h/db").unwrap_err();
        assert!(error.contains("cargo feature `postgres`"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
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
            if let Ok(database) = parse_database_url(url) {
                assert!(!format!("{database:?}").contains("hunter2"));
                assert!(!database.describe().contains("hunter2"));
            }
        }
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:<redacted>@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
