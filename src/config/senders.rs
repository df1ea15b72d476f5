//! The senders of SPEC Part 3 (WhatsApp Cloud API, Twilio, Standard Webhooks) and secret
//! rotation: every `…_PREVIOUS` is accepted beside its current secret while it is set. A sender
//! whose variables are unset is `None` (it answers 503); a half-configured one (a previous
//! without a current, a Twilio token without `HOOKBOX_PUBLIC_URL`, a `whsec_` that is not
//! base64) is a startup error naming the variable.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Secret, values::number};

/// Which of a sender's keys verified a request: said in logs and metrics, never the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    Current,
    /// The `…_PREVIOUS` variable, accepted while it is set (during a rotation).
    Previous,
}

impl KeySlot {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySlot::Current => "current",
            KeySlot::Previous => "previous",
        }
    }
}

/// A sender's key and, during a rotation, its previous one. `Debug` never shows either.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl Keys {
    pub fn new(current: impl Into<Vec<u8>>, previous: Option<Vec<u8>>) -> Keys {
        Keys {
            current: current.into(),
            previous,
        }
    }

    /// The first key (current, then previous) for which `verifies` holds.
    pub fn find(&self, verifies: impl Fn(&[u8]) -> bool) -> Option<KeySlot> {
        if verifies(&self.current) {
            return Some(KeySlot::Current);
        }
        self.previous
            .as_deref()
            .filter(|key| verifies(key))
            .map(|_| KeySlot::Previous)
    }

    /// The key a sender signs with now (`hookbox sign`).
    pub fn current(&self) -> &[u8] {
        &self.current
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous = if self.previous.is_some() {
            "set"
        } else {
            "unset"
        };
        write!(f, "Keys(<redacted>, previous {previous})")
    }
}

/// What the senders of SPEC Part 3 are configured with. `None`: that sender answers 503.
#[derive(Debug, Clone)]
pub struct Senders {
    /// `HOOKBOX_WEBHOOK_SECRET_PREVIOUS`: also accepted on `/webhook` while set.
    pub webhook_previous: Option<Secret>,
    /// `HOOKBOX_WHATSAPP_VERIFY_TOKEN`: the subscription handshake (`GET /webhook/whatsapp`).
    pub whatsapp_verify_token: Option<Secret>,
    /// `HOOKBOX_WHATSAPP_APP_SECRET` (`_PREVIOUS`): `X-Hub-Signature-256`.
    pub whatsapp_app_secret: Option<Keys>,
    /// `HOOKBOX_TWILIO_AUTH_TOKEN` (`_PREVIOUS`) and `HOOKBOX_PUBLIC_URL`.
    pub twilio: Option<Twilio>,
    /// `HOOKBOX_STANDARD_WEBHOOKS_SECRET` (`_PREVIOUS`), base64-decoded (`whsec_` dropped).
    pub standard: Option<Keys>,
    /// `HOOKBOX_SIGNATURE_TOLERANCE_SECS`: how far a Standard Webhooks timestamp may be from now.
    pub tolerance: Duration,
}

#[derive(Debug, Clone)]
pub struct Twilio {
    pub auth_token: Keys,
    /// The scheme and host Twilio calls (`https://hooks.example.com`), without a trailing `/`:
    /// behind a TLS proxy hookbox cannot know it, and the signature covers it.
    pub public_url: String,
}

pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Senders, ConfigError> {
    let webhook_previous = get("HOOKBOX_WEBHOOK_SECRET_PREVIOUS").map(Secret::new);
    if webhook_previous.is_some() && get("WEBHOOK_SECRET").is_none() {
        return Err(previous_without_current("HOOKBOX_WEBHOOK_SECRET_PREVIOUS"));
    }
    let raw = |name: &'static str| Ok(get(name).map(String::into_bytes));
    let whatsapp_app_secret = keys(
        [
            "HOOKBOX_WHATSAPP_APP_SECRET",
            "HOOKBOX_WHATSAPP_APP_SECRET_PREVIOUS",
        ],
        raw,
    )?;
    let auth_token = keys(
        [
            "HOOKBOX_TWILIO_AUTH_TOKEN",
            "HOOKBOX_TWILIO_AUTH_TOKEN_PREVIOUS",
        ],
        raw,
    )?;
    let public_url = get("HOOKBOX_PUBLIC_URL")
        .map(|url| {
            let url = url.trim().trim_end_matches('/').to_owned();
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            match host {
                Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(url),
                _ => Err(ConfigError {
                    variable: "HOOKBOX_PUBLIC_URL",
                    reason: format!("{url:?} is not an http:// or https:// URL"),
                }),
            }
        })
        .transpose()?;
    let twilio = match (auth_token, public_url) {
        (Some(auth_token), Some(public_url)) => Some(Twilio {
            auth_token,
            public_url,
        }),
        (Some(_), None) => {
            return Err(ConfigError {
                variable: "HOOKBOX_PUBLIC_URL",
                reason: "HOOKBOX_TWILIO_AUTH_TOKEN is set: Twilio signs the public URL it \
                         calls, so give it (e.g. https://hooks.example.com)"
                    .to_owned(),
            });
        }
        (None, _) => None,
    };
    let standard = keys(
        [
            "HOOKBOX_STANDARD_WEBHOOKS_SECRET",
            "HOOKBOX_STANDARD_WEBHOOKS_SECRET_PREVIOUS",
        ],
        |name| {
            get(name)
                .map(|value| {
                    standard_secret(&value).ok_or_else(|| ConfigError {
                        variable: name,
                        reason: "is not whsec_ followed by base64".to_owned(),
                    })
                })
                .transpose()
        },
    )?;
    Ok(Senders {
        webhook_previous,
        whatsapp_verify_token: get("HOOKBOX_WHATSAPP_VERIFY_TOKEN").map(Secret::new),
        whatsapp_app_secret,
        twilio,
        standard,
        tolerance: Duration::from_secs(number(
            get,
            "HOOKBOX_SIGNATURE_TOLERANCE_SECS",
            300,
            1..=86_400,
        )?),
    })
}

/// `HOOKBOX_ADMIN_TOKEN`. Whitespace around it is refused rather than kept: `auth` trims what a
/// client presents (as RFC 9110 allows around a header value), so a token ending in a space,
/// often a stray one from an env file, could never be presented and would lock the reads for good.
pub(super) fn admin_token(raw: Option<String>) -> Result<Option<Secret>, ConfigError> {
    match raw {
        Some(token) if token.trim() != token => Err(ConfigError {
            variable: "HOOKBOX_ADMIN_TOKEN",
            reason: "has leading or trailing whitespace, which no Authorization header can carry"
                .to_owned(),
        }),
        other => Ok(other.map(Secret::new)),
    }
}

/// A key and its `_PREVIOUS`, each read by `read` (which names the variable in its error).
fn keys(
    [name, previous_name]: [&'static str; 2],
    read: impl Fn(&'static str) -> Result<Option<Vec<u8>>, ConfigError>,
) -> Result<Option<Keys>, ConfigError> {
    match (read(name)?, read(previous_name)?) {
        (Some(current), previous) => Ok(Some(Keys::new(current, previous))),
        (None, Some(_)) => Err(previous_without_current(previous_name)),
        (None, None) => Ok(None),
    }
}

fn previous_without_current(variable: &'static str) -> ConfigError {
    ConfigError {
        variable,
        reason: "is set but the current secret is not; set both during a rotation".to_owned(),
    }
}

/// A Standard Webhooks secret: `whsec_` and the base64 of the key (the prefix is optional, as
/// in the official libraries).
pub fn standard_secret(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let encoded = value.trim();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    #[test]
    fn senders_are_configured_only_when_their_variables_are_set() {
        let none = config(&[]).unwrap().senders;
        assert!(none.whatsapp_app_secret.is_none() && none.twilio.is_none());
        assert!(none.standard.is_none() && none.whatsapp_verify_token.is_none());
        assert_eq!(none.tolerance, Duration::from_secs(300));
        let all = config(&[
            ("WEBHOOK_SECRET", "s"),
            ("HOOKBOX_WEBHOOK_SECRET_PREVIOUS", "old-s"),
            ("HOOKBOX_WHATSAPP_APP_SECRET", "app-secret"),
            ("HOOKBOX_TWILIO_AUTH_TOKEN", "token"),
            ("HOOKBOX_TWILIO_AUTH_TOKEN_PREVIOUS", "old-token"),
            ("HOOKBOX_PUBLIC_URL", "https://hooks.example.com/"),
            (
                "HOOKBOX_STANDARD_WEBHOOKS_SECRET",
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            ),
        ])
        .unwrap()
        .senders;
        let twilio = all.twilio.as_ref().unwrap();
        assert_eq!(twilio.public_url, "https://hooks.example.com");
        assert_eq!(
            twilio.auth_token.find(|key| key == b"old-token"),
            Some(KeySlot::Previous)
        );
        assert_eq!(all.standard.as_ref().unwrap().current().len(), 24);
        let shown = format!("{all:?}");
        for secret in ["old-s", "app-secret", "old-token", "C2FVsBQ"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        // Twilio signs the URL it calls: without it, the token alone is a startup error.
        let error = config(&[("HOOKBOX_TWILIO_AUTH_TOKEN", "t")]).unwrap_err();
        assert_eq!(error.variable, "HOOKBOX_PUBLIC_URL");
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (variable, value) in [
            ("HOOKBOX_SIGNATURE_TOLERANCE_SECS", "0"),
            ("HOOKBOX_STANDARD_WEBHOOKS_SECRET", "whsec_!!!"),
            ("HOOKBOX_PUBLIC_URL", "hooks.example.com"),
            ("HOOKBOX_WEBHOOK_SECRET_PREVIOUS", "old"),
            ("HOOKBOX_TWILIO_AUTH_TOKEN_PREVIOUS", "old"),
            ("HOOKBOX_ADMIN_TOKEN", "token "),
            ("HOOKBOX_ADMIN_TOKEN", " token"),
            ("HOOKBOX_ADMIN_TOKEN", " "),
            ("HOOKBOX_ADMIN_TOKEN", "token\n"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable);
        }
    }
}
