//! Twilio's `X-Twilio-Signature`: base64 of HMAC-SHA1 under the auth token, over the full URL
//! Twilio called followed by every POST parameter's name and value, sorted by name, with no
//! separators (<https://www.twilio.com/docs/usage/security#validating-requests>).
//!
//! As Twilio's own `RequestValidator` does, the URL is tried as given, with the scheme's default
//! port added, and with it removed: Twilio may have signed either form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::config::{KeySlot, Keys};

/// True when `header` is the signature of `url` and `params` under one of `keys`.
pub fn verify(
    keys: &Keys,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Option<KeySlot> {
    let provided = BASE64.decode(header?.trim()).ok()?;
    let urls = url_forms(url);
    keys.find(|key| {
        urls.iter().fold(false, |matched, url| {
            bool::from(digest(key, url, params).as_slice().ct_eq(&provided)) | matched
        })
    })
}

/// The `X-Twilio-Signature` value for `url` and `params` under `key`.
pub fn sign(key: &[u8], url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(digest(key, url, params))
}

fn digest(key: &[u8], url: &str, params: &[(String, String)]) -> [u8; 20] {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // By name, a repeated name's values in order too, and a pair sent twice counted once: as
    // Twilio's `RequestValidator` does (`sorted(set(values))`).
    sorted.sort();
    sorted.dedup();
    let mut mac = hmac::Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// `url` as given, with the default port of its scheme, and without any port.
fn url_forms(url: &str) -> Vec<String> {
    let mut forms = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return forms;
    };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return forms,
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    for form in [
        format!("{scheme}://{host}{tail}"),
        format!("{scheme}://{host}:{default_port}{tail}"),
    ] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in order: `+` is a space,
/// `%XX` a byte. `None` when a name or value is not UTF-8.
pub fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let decode = |raw: &str| {
        let spaced = raw.replace('+', " ");
        String::from_utf8(crate::http::percent_decode(&spaced)).ok()
    };
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documented_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    #[test]
    fn twilios_documented_example_verifies() {
        assert_eq!(sign(b"12345", URL, &documented_params()), SIGNATURE);
        let keys = Keys::new("12345", None);
        let mut shuffled = documented_params();
        shuffled.reverse();
        assert_eq!(
            verify(&keys, URL, &shuffled, Some(SIGNATURE)),
            Some(KeySlot::Current)
        );
    }

    #[test]
    fn anything_changed_is_refused() {
        let keys = Keys::new("12345", None);
        let params = documented_params();
        assert_eq!(verify(&keys, URL, &params, None), None);
        assert_eq!(verify(&keys, URL, &params, Some("not base64!")), None);
        assert_eq!(
            verify(&Keys::new("54321", None), URL, &params, Some(SIGNATURE)),
            None
        );
        let other_url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert_eq!(verify(&keys, other_url, &params, Some(SIGNATURE)), None);
        let mut changed = params.clone();
        changed[2].1 = "1235".to_owned();
        assert_eq!(verify(&keys, URL, &changed, Some(SIGNATURE)), None);
        let rotating = Keys::new("new", Some(b"12345".to_vec()));
        assert_eq!(
            verify(&rotating, URL, &params, Some(SIGNATURE)),
            Some(KeySlot::Previous)
        );
    }

    #[test]
    fn a_url_signed_with_or_without_its_default_port_verifies() {
        let keys = Keys::new("12345", None);
        let params = documented_params();
        let with_port = sign(
            b"12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
        );
        assert_eq!(
            verify(&keys, URL, &params, Some(&with_port)),
            Some(KeySlot::Current)
        );
        assert_eq!(
            verify(
                &keys,
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &params,
                Some(SIGNATURE)
            ),
            Some(KeySlot::Current)
        );
        let other_port = sign(
            b"12345",
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            &params,
        );
        assert_eq!(verify(&keys, URL, &params, Some(&other_port)), None);
    }

    #[test]
    fn form_bodies_decode_plus_and_escapes() {
        let pairs =
            form_pairs(b"From=whatsapp%3A%2B14155550100&Body=Hello+there%21&Empty=&Flag").unwrap();
        let expect = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        assert_eq!(
            pairs,
            vec![
                expect("From", "whatsapp:+14155550100"),
                expect("Body", "Hello there!"),
                expect("Empty", ""),
                expect("Flag", ""),
            ]
        );
        assert_eq!(form_pairs(b"Body=%ff"), None);
    }
}
