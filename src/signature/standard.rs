//! Standard Webhooks v1 (<https://www.standardwebhooks.com/>): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` headers; the signature is the base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under the base64-decoded `whsec_` secret, written `v1,<base64>`,
//! several space-separated (a sender rotating its secret signs with both), any one matching.
//!
//! Our own 40 lines rather than the official `standardwebhooks` crate: it takes an `http::HeaderMap`
//! and brings `http`, `time`, `thiserror`, a second `base64` and a second SHA-256 with it, for
//! what `hmac`, `sha2` and `base64` (already here) do. The spec's vector and the official Python
//! package (`tests/senders/providers.py`) hold this to the same bytes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{KeySlot, Keys};

/// The three headers as received.
pub struct Headers<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// Why a Standard Webhooks request is refused (all 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// One of the three headers is missing or empty.
    MissingHeader,
    /// `webhook-timestamp` is not whole unix seconds.
    BadTimestamp,
    /// The timestamp is further from now than the tolerance, either way: a replay, or a clock
    /// that is off.
    Stale,
    /// No `v1,` entry matches under any key.
    Mismatch,
}

impl Refusal {
    /// The `reason` of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingHeader => "missing_header",
            Refusal::BadTimestamp => "bad_timestamp",
            Refusal::Stale => "timestamp_outside_tolerance",
            Refusal::Mismatch => "no_matching_signature",
        }
    }
}

/// Verifies `body` under `keys`; `now` is unix seconds.
pub fn verify(
    keys: &Keys,
    headers: &Headers<'_>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<KeySlot, Refusal> {
    if [headers.id, headers.timestamp, headers.signature]
        .iter()
        .any(|value| value.trim().is_empty())
    {
        return Err(Refusal::MissingHeader);
    }
    let timestamp: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::BadTimestamp)?;
    if timestamp.abs_diff(now) > tolerance.as_secs() {
        return Err(Refusal::Stale);
    }
    let provided: Vec<Vec<u8>> = headers
        .signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .collect();
    keys.find(|key| {
        let expected = digest(key, headers.id, headers.timestamp.trim(), body);
        // Every entry is compared, so the time taken does not say which one matched.
        provided.iter().fold(false, |matched, candidate| {
            bool::from(expected.as_slice().ct_eq(candidate)) | matched
        })
    })
    .ok_or(Refusal::Mismatch)
}

/// The `webhook-signature` value for one key: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        BASE64.encode(digest(key, id, &timestamp.to_string(), body))
    )
}

fn digest(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::standard_secret;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn keys() -> Keys {
        Keys::new(standard_secret(SECRET).unwrap(), None)
    }

    fn headers(signature: &str) -> Headers<'_> {
        Headers {
            id: ID,
            timestamp: "1649367553",
            signature,
        }
    }

    #[test]
    fn the_spec_vector_verifies() {
        let key = standard_secret(SECRET).unwrap();
        assert_eq!(sign(&key, ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(
            verify(&keys(), &headers(SIGNATURE), BODY, TIMESTAMP, FIVE_MINUTES),
            Ok(KeySlot::Current)
        );
    }

    #[test]
    fn any_one_of_several_signatures_accepts() {
        let other = sign(b"another key", ID, TIMESTAMP, BODY);
        for header in [
            format!("{other} {SIGNATURE}"),
            format!("v1a,abc {SIGNATURE}"),
            format!("{SIGNATURE} v1,!!notbase64"),
        ] {
            assert_eq!(
                verify(&keys(), &headers(&header), BODY, TIMESTAMP, FIVE_MINUTES),
                Ok(KeySlot::Current),
                "{header}"
            );
        }
        assert_eq!(
            verify(&keys(), &headers(&other), BODY, TIMESTAMP, FIVE_MINUTES),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_either_way_are_refused() {
        let check = |now| verify(&keys(), &headers(SIGNATURE), BODY, now, FIVE_MINUTES);
        assert_eq!(check(TIMESTAMP + 300), Ok(KeySlot::Current));
        assert_eq!(check(TIMESTAMP - 300), Ok(KeySlot::Current));
        assert_eq!(check(TIMESTAMP + 301), Err(Refusal::Stale));
        assert_eq!(check(TIMESTAMP - 301), Err(Refusal::Stale));
        let bad = Headers {
            timestamp: "1649367553.0",
            ..headers(SIGNATURE)
        };
        assert_eq!(
            verify(&keys(), &bad, BODY, TIMESTAMP, FIVE_MINUTES),
            Err(Refusal::BadTimestamp)
        );
    }

    #[test]
    fn the_body_id_and_timestamp_are_all_signed() {
        let check = |headers: &Headers<'_>, body: &[u8]| {
            verify(&keys(), headers, body, TIMESTAMP, FIVE_MINUTES)
        };
        assert_eq!(check(&headers(SIGNATURE), b"{}"), Err(Refusal::Mismatch));
        let other_id = Headers {
            id: "msg_other",
            ..headers(SIGNATURE)
        };
        assert_eq!(check(&other_id, BODY), Err(Refusal::Mismatch));
        let other_ts = Headers {
            timestamp: "1649367554",
            ..headers(SIGNATURE)
        };
        assert_eq!(check(&other_ts, BODY), Err(Refusal::Mismatch));
        // An empty id is not the id the sender signed, even with a signature over `.ts.body`.
        let key = standard_secret(SECRET).unwrap();
        let no_id = sign(&key, "", TIMESTAMP, BODY);
        for (id, timestamp, signature) in [
            ("", "1649367553", no_id.as_str()),
            (" ", "1649367553", no_id.as_str()),
            (ID, "", SIGNATURE),
            (ID, "1649367553", ""),
        ] {
            let headers = Headers {
                id,
                timestamp,
                signature,
            };
            assert_eq!(check(&headers, BODY), Err(Refusal::MissingHeader));
        }
    }

    #[test]
    fn the_previous_secret_is_accepted_while_set() {
        let previous = standard_secret(SECRET).unwrap();
        let rotating = Keys::new(b"new key".to_vec(), Some(previous));
        assert_eq!(
            verify(
                &rotating,
                &headers(SIGNATURE),
                BODY,
                TIMESTAMP,
                FIVE_MINUTES
            ),
            Ok(KeySlot::Previous)
        );
    }
}
