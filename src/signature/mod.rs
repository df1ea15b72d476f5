//! Request signatures, each sender's way, always over the bytes as received.
//!
//! The sender signs the bytes it sends; we verify those same bytes before parsing anything, so a
//! body with odd spacing or a trailing newline verifies exactly as signed. Every comparison is
//! constant-time in the digest: timing tells an attacker nothing about how close a guess was.
//! Here: hookbox's own `X-Signature` (hex HMAC-SHA256) and Meta's `X-Hub-Signature-256` (the
//! same, after `sha256=`); `standard` is Standard Webhooks v1, `twilio` Twilio's HMAC-SHA1.
//! Each takes `Keys` (current, and previous during a rotation) and says which one matched.

pub mod standard;
pub mod twilio;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{KeySlot, Keys};

type HmacSha256 = hmac::Hmac<Sha256>;

/// True when `header` is the hex HMAC-SHA256 of `body` under `secret`. Upper- and lower-case hex
/// are both accepted; surrounding whitespace is ignored; anything else is a mismatch.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(provided) = header.and_then(|value| decode_hex_32(value.trim())) else {
        return false;
    };
    let expected = digest(secret, body);
    expected.ct_eq(&provided).into()
}

/// Whether `given` is the shared secret `expected` (an admin or verify token), in constant time:
/// SHA-256 digests are compared, so neither the bytes nor the length of the secret show in how
/// long a refusal takes (comparing the slices directly stops at a length mismatch).
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    Sha256::digest(expected)
        .ct_eq(&Sha256::digest(given))
        .into()
}

/// `verify` with each key of a rotation; which one matched.
pub fn verify_keys(keys: &Keys, body: &[u8], header: Option<&str>) -> Option<KeySlot> {
    keys.find(|key| verify(key, body, header))
}

/// Meta's `X-Hub-Signature-256: sha256=<hex>` (WhatsApp Cloud API), under either key.
pub fn verify_hub(keys: &Keys, body: &[u8], header: Option<&str>) -> Option<KeySlot> {
    let hex = header?.trim().strip_prefix("sha256=")?;
    verify_keys(keys, body, Some(hex))
}

/// The lowercase hex signature of `body` — what a sender puts in `X-Signature`.
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    digest(secret, body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn digest(secret: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_is_exact_at_any_length() {
        assert!(same_secret(b"verify-me", b"verify-me"));
        for given in [
            &b""[..],
            b"verify-m",
            b"verify-me ",
            b"VERIFY-ME",
            b"verify-me\0",
        ] {
            assert!(!same_secret(b"verify-me", given), "{given:?}");
        }
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_raw_bytes_exactly() {
        let body = b"{\"message_id\": \"m1\",\n  \"from\":\"+1\"}\n";
        let good = sign_hex(b"s", body);
        assert!(verify(b"s", body, Some(&good)));
        assert!(verify(b"s", body, Some(&good.to_uppercase())));
        assert!(verify(b"s", body, Some(&format!(" {good} "))));
        assert!(!verify(b"s", &body[..body.len() - 1], Some(&good)));
        assert!(!verify(b"t", body, Some(&good)));
        assert!(!verify(b"s", body, None));
        assert!(!verify(b"s", body, Some("123")));
        assert!(!verify(b"s", body, Some(&good[..63])));
        assert!(!verify(b"s", body, Some(&format!("{}g", &good[..63]))));
        assert!(!verify(b"s", body, Some(&format!("sha256={good}"))));
    }

    #[test]
    fn rotation_says_which_key_matched_and_only_while_the_previous_is_set() {
        let body = b"{}";
        let old = sign_hex(b"old", body);
        let new = sign_hex(b"new", body);
        let rotating = Keys::new("new", Some(b"old".to_vec()));
        assert_eq!(
            verify_keys(&rotating, body, Some(&new)),
            Some(KeySlot::Current)
        );
        assert_eq!(
            verify_keys(&rotating, body, Some(&old)),
            Some(KeySlot::Previous)
        );
        let done = Keys::new("new", None);
        assert_eq!(verify_keys(&done, body, Some(&old)), None);
        assert_eq!(
            verify_keys(&rotating, body, Some(&sign_hex(b"x", body))),
            None
        );
    }

    #[test]
    fn hub_signatures_carry_the_sha256_prefix() {
        let keys = Keys::new("app-secret", None);
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let hex = sign_hex(b"app-secret", body);
        let header = format!("sha256={hex}");
        assert_eq!(
            verify_hub(&keys, body, Some(&header)),
            Some(KeySlot::Current)
        );
        assert_eq!(verify_hub(&keys, body, Some(&hex)), None);
        assert_eq!(verify_hub(&keys, body, Some("sha1=00")), None);
        assert_eq!(verify_hub(&keys, body, None), None);
    }
}
