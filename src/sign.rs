//! `hookbox sign [--standard] [FILE|-]`: the signature headers for a body, so a curl user needs
//! no openssl. Reads the body (a file, or stdin when there is none or `-`) and prints, on stdout:
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
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::signature::{self, standard};

/// Runs the subcommand: 0 when printed, 1 when the secret is unset or the body unreadable, 2 on
/// bad arguments.
pub fn run(config: &Config, args: &[String]) -> ExitCode {
    // stdout carries the signature: no log line may land in it.
    log::set_max_level(log::LevelFilter::Off);
    match sign(config, args) {
        Ok(lines) => {
            let mut out = io::stdout().lock();
            match out.write_all(lines.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(1, &format!("writing stdout: {error}")),
            }
        }
        Err((code, message)) => fail(code, &message),
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("hookbox sign: {message}");
    ExitCode::from(code)
}

const USAGE: &str = "usage: hookbox sign [--standard] [FILE|-]";

/// What to print, or the exit code and why not.
fn sign(config: &Config, args: &[String]) -> Result<String, (u8, String)> {
    let standard = args.iter().any(|arg| arg == "--standard");
    let files: Vec<&String> = args.iter().filter(|arg| *arg != "--standard").collect();
    if files.iter().any(|arg| arg.starts_with("--")) || files.len() > 1 {
        return Err((2, USAGE.to_owned()));
    }
    let body = read_body(files.first().map(|file| file.as_str()))?;
    if !standard {
        let Some(secret) = &config.webhook_secret else {
            return Err((1, "WEBHOOK_SECRET is not set".to_owned()));
        };
        return Ok(format!("{}\n", signature::sign_hex(secret.expose(), &body)));
    }
    let Some(keys) = &config.senders.standard else {
        return Err((1, "HOOKBOX_STANDARD_WEBHOOKS_SECRET is not set".to_owned()));
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

fn read_body(file: Option<&str>) -> Result<Vec<u8>, (u8, String)> {
    let mut body = Vec::new();
    match file {
        None | Some("-") => io::stdin()
            .read_to_end(&mut body)
            .map_err(|error| (1, format!("reading stdin: {error}")))?,
        Some(path) => {
            body = std::fs::read(path).map_err(|error| (1, format!("{path}: {error}")))?;
            body.len()
        }
    };
    Ok(body)
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

    fn body_file(body: &[u8]) -> (std::path::PathBuf, Vec<String>) {
        let path = std::env::temp_dir().join(format!(
            "hookbox-sign-{}-{}",
            std::process::id(),
            fresh_id(0)
        ));
        std::fs::write(&path, body).unwrap();
        let arg = path.display().to_string();
        (path, vec![arg])
    }

    #[test]
    fn prints_the_x_signature_of_the_file_as_read() {
        let body = b"{\"message_id\":\"m1\"}\n";
        let (path, args) = body_file(body);
        let printed = sign(&config(), &args).unwrap();
        assert_eq!(
            printed,
            format!("{}\n", signature::sign_hex(b"testsecret", body))
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn standard_prints_three_headers_that_verify() {
        let body = b"{}";
        let (path, mut args) = body_file(body);
        args.insert(0, "--standard".to_owned());
        let printed = sign(&config(), &args).unwrap();
        let _ = std::fs::remove_file(path);
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
    fn a_missing_secret_or_bad_arguments_fail_with_their_code() {
        let mut unset = config();
        unset.webhook_secret = None;
        let (path, args) = body_file(b"{}");
        assert_eq!(sign(&unset, &args).unwrap_err().0, 1);
        let mut two = args.clone();
        two.push("other".to_owned());
        assert_eq!(sign(&config(), &two).unwrap_err().0, 2);
        assert_eq!(sign(&config(), &["--hex".to_owned()]).unwrap_err().0, 2);
        assert_eq!(
            sign(&config(), &["/no/such/file".to_owned()])
                .unwrap_err()
                .0,
            1
        );
        let _ = std::fs::remove_file(path);
    }
}
