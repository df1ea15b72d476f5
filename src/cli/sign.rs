//! `hookbox sign [--standard] [FILE|-]`: the signature headers for a body, so a curl user needs
//! no openssl (parsed and dispatched by `cli`). Reads the body (a file, or stdin when there is none or `-`) and prints, on stdout:
//!
//! - by default the `X-Signature` value (hex HMAC-SHA256 under `WEBHOOK_SECRET`), alone on its
//!   line: `curl -H "X-Signature: $(hookbox sign body.json)" --data-binary @body.json …`;
//! - with `--standard`, the three Standard Webhooks headers under
//!   `HOOKBOX_STANDARD_WEBHOOKS_SECRET`, with a fresh id and the current time, one `name: value`
//!   per line: `hookbox sign --standard body.json > h; curl -H @h --data-binary @body.json …`.
//!
//! The body is signed as read, byte for byte: send it with `--data-binary`, never `-d` (which
//! drops newlines).

use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::CliError;
use crate::config::Config;
use crate::signature::{self, standard};

/// What `hookbox sign` was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignArgs {
    /// `--standard`: the three Standard Webhooks headers instead of `X-Signature`.
    pub standard: bool,
    /// The body's file; `None` (or `-`) reads stdin.
    pub file: Option<String>,
}

/// Reads the arguments after `sign`; the offending one when they cannot be run.
pub fn parse_args(args: &[String]) -> Result<SignArgs, String> {
    let mut parsed = SignArgs::default();
    // Whether the body was named already (`-` or a file): a second name is refused, not chosen.
    let mut named = false;
    for arg in args {
        match arg.as_str() {
            "--standard" if !parsed.standard => parsed.standard = true,
            "-" if !named => named = true,
            file if !file.starts_with('-') && !named => {
                named = true;
                parsed.file = Some(file.to_owned());
            }
            _ => return Err(arg.clone()),
        }
    }
    Ok(parsed)
}

pub const HELP: &str = "\
Usage: hookbox sign [--standard] [FILE|-]

Prints the signature of a body (FILE, or stdin without FILE or with -) so that curl needs no
openssl. The body is signed byte for byte as read: send it with --data-binary, not -d.

  (default)     the X-Signature value: hex HMAC-SHA256 under WEBHOOK_SECRET
                  curl -H \"X-Signature: $(hookbox sign m.json)\" --data-binary @m.json URL
  --standard    the three Standard Webhooks headers under HOOKBOX_STANDARD_WEBHOOKS_SECRET,
                with a fresh webhook-id and the current time, one `name: value` per line
                  hookbox sign --standard m.json > h && curl -H @h --data-binary @m.json URL
  -h, --help    this help

Exit codes: 0 printed, 1 the secret is not set or the body cannot be read, 2 bad arguments.
";

/// Prints the signature lines for the body `args` names.
pub fn run(config: &Config, args: &SignArgs) -> Result<(), CliError> {
    let lines = sign(config, args)?;
    let mut out = io::stdout().lock();
    out.write_all(lines.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| CliError::Failed(format!("writing stdout: {error}")))
}

/// What to print.
fn sign(config: &Config, args: &SignArgs) -> Result<String, CliError> {
    let body = read_body(args.file.as_deref())?;
    if !args.standard {
        let Some(secret) = &config.webhook_secret else {
            return Err(CliError::Failed("WEBHOOK_SECRET is not set".to_owned()));
        };
        return Ok(format!("{}\n", signature::sign_hex(secret.expose(), &body)));
    }
    let Some(keys) = &config.senders.standard else {
        return Err(CliError::Failed(
            "HOOKBOX_STANDARD_WEBHOOKS_SECRET is not set".to_owned(),
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let id = fresh_id(now.as_nanos());
    let timestamp = now.as_secs() as i64;
    let value = standard::sign(keys.current(), &id, timestamp, &body);
    Ok(format!(
        "webhook-id: {id}\nwebhook-timestamp: {timestamp}\nwebhook-signature: {value}\n"
    ))
}

fn read_body(file: Option<&str>) -> Result<Vec<u8>, CliError> {
    match file {
        None => {
            let mut body = Vec::new();
            io::stdin()
                .read_to_end(&mut body)
                .map_err(|error| CliError::Failed(format!("reading stdin: {error}")))?;
            Ok(body)
        }
        Some(path) => {
            std::fs::read(path).map_err(|error| CliError::Failed(format!("{path}: {error}")))
        }
    }
}

/// `msg_` and 32 hex digits: unique per call without a random-number crate (std's hasher keys
/// are random per process; the clock and pid make calls and processes differ).
fn fresh_id(nanos: u128) -> String {
    let state = RandomState::new();
    let high = state.hash_one((nanos, std::process::id()));
    let low = state.hash_one((high, nanos));
    format!("msg_{high:016x}{low:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Keys, standard_secret};

    fn config() -> Config {
        let mut config = Config::for_database("unused.db", Some("testsecret"));
        let key = standard_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        config.senders.standard = Some(Keys::new(key, None));
        config
    }

    /// A temporary file holding `body`, removed on drop.
    struct BodyFile(std::path::PathBuf);

    impl BodyFile {
        fn new(body: &[u8]) -> BodyFile {
            let path = std::env::temp_dir().join(format!(
                "hookbox-sign-{}-{}",
                std::process::id(),
                fresh_id(0)
            ));
            std::fs::write(&path, body).unwrap();
            BodyFile(path)
        }

        fn args(&self, standard: bool) -> SignArgs {
            SignArgs {
                standard,
                file: Some(self.0.display().to_string()),
            }
        }
    }

    impl Drop for BodyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn prints_the_x_signature_of_the_file_as_read() {
        let body = b"{\"message_id\":\"m1\"}\n";
        let file = BodyFile::new(body);
        let printed = sign(&config(), &file.args(false)).unwrap();
        let expected = signature::sign_hex(b"testsecret", body);
        assert_eq!(printed, format!("{expected}\n"));
    }

    #[test]
    fn standard_prints_three_headers_that_verify() {
        let body = b"{}";
        let file = BodyFile::new(body);
        let printed = sign(&config(), &file.args(true)).unwrap();
        let header = |name: &str| {
            printed
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .unwrap()
                .to_owned()
        };
        let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        let headers = standard::Headers {
            id: &id,
            timestamp: &timestamp,
            signature: &header("webhook-signature"),
        };
        let keys = config().senders.standard.unwrap();
        let now = timestamp.parse().unwrap();
        let tolerance = std::time::Duration::from_secs(1);
        assert!(standard::verify(&keys, &headers, body, now, tolerance).is_ok());
        assert_ne!(fresh_id(1), fresh_id(1), "ids are fresh");
    }

    #[test]
    fn a_missing_secret_or_file_fails_and_bad_arguments_are_refused() {
        let mut unset = config();
        unset.webhook_secret = None;
        let file = BodyFile::new(b"{}");
        assert!(matches!(
            sign(&unset, &file.args(false)),
            Err(CliError::Failed(_))
        ));
        unset.senders.standard = None;
        assert!(matches!(
            sign(&unset, &file.args(true)),
            Err(CliError::Failed(_))
        ));
        let missing = SignArgs {
            standard: false,
            file: Some("/no/such/file".to_owned()),
        };
        assert!(matches!(
            sign(&config(), &missing),
            Err(CliError::Failed(_))
        ));
        let args =
            |list: &[&str]| parse_args(&list.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&[]), Ok(SignArgs::default()));
        assert_eq!(args(&["-"]), Ok(SignArgs::default()));
        assert_eq!(
            args(&["--standard", "m.json"]),
            Ok(SignArgs {
                standard: true,
                file: Some("m.json".to_owned())
            })
        );
        assert_eq!(args(&["a", "b"]), Err("b".to_owned()));
        assert_eq!(args(&["--hex"]), Err("--hex".to_owned()));
        // One body only, however it is named: stdin twice, or stdin and a file, is ambiguous.
        assert_eq!(args(&["-", "-"]), Err("-".to_owned()));
        assert_eq!(args(&["-", "m.json"]), Err("m.json".to_owned()));
        assert_eq!(args(&["m.json", "-"]), Err("-".to_owned()));
        assert_eq!(
            args(&["--standard", "--standard"]),
            Err("--standard".to_owned())
        );
    }
}
