//! Property-style tests of the pure parsers, with a fixed-seed PRNG (no extra dependencies):
//! thousands of generated inputs each, checked against simple independent oracles. A failure
//! prints the offending input; the seed makes every run identical.

use serde_json::{Value, json};

use hookbox::http::{Request, percent_decode};
use hookbox::message::{self, MAX_TEXT_CHARS};
use hookbox::signature::{sign_hex, verify};
use hookbox::timestamp::sort_key;

use crate::support::Rng;

const CASES: usize = 4000;

// ---- timestamps --------------------------------------------------------------------------------

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn month_length(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A generated instant and how it is written. `fraction` holds up to 12 digits as written.
#[derive(Debug, Clone)]
struct Instant {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    fraction: String,
}

impl Instant {
    fn random(rng: &mut Rng) -> Instant {
        // Cluster half of the values so that pairs often share a prefix and differ late.
        let clustered = rng.chance(2);
        let year = if clustered {
            rng.range(2024, 2025)
        } else {
            rng.range(1, 9999)
        };
        let month = rng.range(1, 12);
        let day = rng.range(1, month_length(year, month));
        let (hour, minute, second) = if clustered {
            (rng.range(9, 10), rng.range(0, 1), rng.range(58, 59))
        } else {
            (rng.range(0, 23), rng.range(0, 59), rng.range(0, 59))
        };
        let digits = rng.below(13);
        let fraction = (0..digits)
            .map(|_| *rng.pick(&['0', '0', '0', '5', '1', '9', '2']))
            .collect();
        Instant {
            year,
            month,
            day,
            hour,
            minute,
            second,
            fraction,
        }
    }

    fn write(&self) -> String {
        let mut text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if !self.fraction.is_empty() {
            text.push('.');
            text.push_str(&self.fraction);
        }
        text.push('Z');
        text
    }

    /// The oracle: an integer tuple, the fraction as picoseconds.
    fn tuple(&self) -> (u32, u32, u32, u32, u32, u32, u64) {
        let picos = format!("{:0<12}", self.fraction).parse().unwrap();
        (
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            picos,
        )
    }
}

#[test]
fn sort_key_never_panics_on_arbitrary_strings() {
    let mut rng = Rng::new(1);
    let alphabet: Vec<char> = "0123456789-T:.Z+ zt\n\u{0}é€２😀".chars().collect();
    let valid = "2025-01-15T10:00:00.5Z";
    for _ in 0..CASES * 4 {
        let input = match rng.below(3) {
            0 => rng.string_from(&alphabet, 30),
            1 => String::from_utf8_lossy(&rng.bytes(30)).into_owned(),
            _ => {
                // One or two characters of a valid timestamp replaced.
                let mut chars: Vec<char> = valid.chars().collect();
                for _ in 0..rng.range(1, 2) {
                    let at = rng.below(chars.len());
                    chars[at] = *rng.pick(&alphabet);
                }
                if rng.chance(4) {
                    chars.truncate(rng.below(chars.len()));
                }
                chars.into_iter().collect()
            }
        };
        if let Some(key) = sort_key(&input) {
            // Anything accepted has the contract's shape.
            assert!(input.ends_with('Z') && input.is_ascii(), "{input:?}");
            assert!(key.starts_with(&input[..19]), "{input:?} -> {key:?}");
        }
    }
}

#[test]
fn sort_key_orders_exactly_as_the_instants_do() {
    let mut rng = Rng::new(2);
    let instants: Vec<Instant> = (0..CASES).map(|_| Instant::random(&mut rng)).collect();
    let keys: Vec<String> = instants
        .iter()
        .map(|instant| {
            sort_key(&instant.write()).unwrap_or_else(|| panic!("{} rejected", instant.write()))
        })
        .collect();
    for _ in 0..CASES * 4 {
        let (a, b) = (rng.below(CASES), rng.below(CASES));
        let by_key = keys[a].cmp(&keys[b]);
        let by_instant = instants[a].tuple().cmp(&instants[b].tuple());
        assert_eq!(
            by_key,
            by_instant,
            "{} vs {}: keys {:?} {:?}",
            instants[a].write(),
            instants[b].write(),
            keys[a],
            keys[b]
        );
    }
    // The same instant written with more trailing zeros has the same key.
    for instant in instants.iter().take(500) {
        let mut padded = instant.clone();
        if padded.fraction.is_empty() {
            padded.fraction.push('0');
        }
        padded.fraction.push_str("000");
        assert_eq!(
            sort_key(&padded.write()),
            sort_key(&instant.write()),
            "{} vs {}",
            padded.write(),
            instant.write()
        );
    }
}

#[test]
fn sort_key_rejects_every_impossible_calendar_field() {
    let mut rng = Rng::new(3);
    for _ in 0..CASES {
        let mut instant = Instant::random(&mut rng);
        match rng.below(7) {
            0 => instant.month = *rng.pick(&[0, 13, 19, 99]),
            1 => instant.day = month_length(instant.year, instant.month) + rng.range(1, 68),
            2 => instant.day = 0,
            3 => instant.hour = rng.range(24, 99),
            4 => instant.minute = rng.range(60, 99),
            5 => instant.second = rng.range(60, 99),
            _ => instant.year = 0,
        }
        // Two-digit fields only; a wider value would be a shape error, also rejected.
        instant.day = instant.day.min(99);
        assert_eq!(sort_key(&instant.write()), None, "{}", instant.write());
    }
}

// ---- message bodies ----------------------------------------------------------------------------

const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

/// The oracle: the contract's rules, written independently of `message.rs`.
fn acceptable(body: &[u8]) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let msisdn = |value: Option<&Value>| {
        value.and_then(Value::as_str).is_some_and(|s| {
            (2..=33).contains(&s.len())
                && s.starts_with('+')
                && s[1..].bytes().all(|b| b.is_ascii_digit())
        })
    };
    fields
        .get("message_id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty() && id.len() <= 256)
        && msisdn(fields.get("from"))
        && msisdn(fields.get("to"))
        && fields.get("ts").and_then(Value::as_str).is_some_and(|ts| {
            let fraction = ts
                .split_once('.')
                .map_or(0, |(_, rest)| rest.len().saturating_sub(1));
            sort_key(ts).is_some() && fraction <= 9
        })
        && match fields.get("text") {
            None | Some(Value::Null) => true,
            Some(Value::String(text)) => text.chars().count() <= MAX_TEXT_CHARS,
            Some(_) => false,
        }
}

/// Checks one body: no panic, the verdict matches the oracle, and an accepted message carries
/// exactly the fields of the JSON it came from.
fn check_body(body: &[u8]) {
    let parsed = message::parse(body);
    let expected = acceptable(body);
    match parsed.result {
        Ok(message) => {
            assert!(expected, "accepted: {:?}", String::from_utf8_lossy(body));
            let value: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(value["message_id"], json!(message.message_id));
            assert_eq!(value["from"], json!(message.from));
            assert_eq!(value["to"], json!(message.to));
            assert_eq!(value["ts"], json!(message.ts));
            assert_eq!(
                value.get("text").cloned().unwrap_or(Value::Null),
                json!(message.text)
            );
            assert_eq!(sort_key(&message.ts).as_ref(), Some(&message.ts_key));
            assert_eq!(
                parsed.message_id.as_deref(),
                Some(message.message_id.as_str())
            );
        }
        Err(hookbox::message::Invalid(problems)) => {
            assert!(!expected, "rejected: {:?}", String::from_utf8_lossy(body));
            assert!(!problems.is_empty());
            for problem in &problems {
                assert!(problem.loc[0] == "body", "{problem:?}");
                assert!(!problem.kind.is_empty());
            }
        }
    }
}

#[test]
fn message_parse_never_panics_on_arbitrary_bytes() {
    let mut rng = Rng::new(4);
    let json_bits: [&[u8]; 16] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\u0000",
        b"\\ud800",
        b"null",
        b"1e999",
        b"\"message_id\"",
        b"\"ts\"",
        b"\xff",
        b"\xc3",
        b" ",
    ];
    for _ in 0..CASES {
        let body = if rng.chance(2) {
            rng.bytes(64)
        } else {
            (0..rng.below(24))
                .flat_map(|_| rng.pick(&json_bits).to_vec())
                .collect()
        };
        check_body(&body);
    }
}

#[test]
fn message_parse_matches_the_rules_on_mutated_valid_bodies() {
    let mut rng = Rng::new(5);
    let interesting: &[u8] = b"\"\\{}[]:,0123456789+-.TZ ae\xff\xc3\x00\n";
    let values = [
        json!(""),
        json!("+"),
        json!("+1"),
        json!("+١"),
        json!("2024-02-29T23:59:59.999Z"),
        json!("2023-02-29T00:00:00Z"),
        json!(null),
        json!(1),
        json!([]),
        json!("x".repeat(MAX_TEXT_CHARS)),
        json!("é".repeat(MAX_TEXT_CHARS + 1)),
        // At and past the caps: 256 bytes of id, 32 digits of number, 9 of fraction.
        json!("é".repeat(128)),
        json!("x".repeat(257)),
        json!(format!("+{}", "1".repeat(32))),
        json!(format!("+{}", "1".repeat(33))),
        json!("2025-01-15T10:00:00.123456789Z"),
        json!("2025-01-15T10:00:00.1234567890Z"),
    ];
    let fields = ["message_id", "from", "to", "ts", "text", "extra"];
    let mut accepted = 0;
    for _ in 0..CASES {
        let body: Vec<u8> = if rng.chance(2) {
            // Structured: valid JSON with some fields replaced or removed.
            let mut object: serde_json::Map<String, Value> = serde_json::from_str(VALID).unwrap();
            for _ in 0..rng.range(0, 2) {
                let field = *rng.pick(&fields);
                if rng.chance(4) {
                    object.remove(field);
                } else {
                    object.insert(field.to_owned(), rng.pick(&values).clone());
                }
            }
            serde_json::to_vec(&object).unwrap()
        } else {
            // Byte-level: replace, insert, delete, truncate.
            let mut bytes = VALID.as_bytes().to_vec();
            for _ in 0..rng.range(1, 3) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(4) {
                    0 if at < bytes.len() => bytes[at] = *rng.pick(interesting),
                    1 => bytes.insert(at, *rng.pick(interesting)),
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            bytes
        };
        if acceptable(&body) {
            accepted += 1;
        }
        check_body(&body);
    }
    // The generator exercises both verdicts, so the oracle comparison means something.
    assert!(
        accepted > CASES / 10,
        "only {accepted} generated bodies were valid"
    );
    assert!(
        accepted < CASES * 9 / 10,
        "{accepted} generated bodies were valid"
    );
}

// ---- percent decoding --------------------------------------------------------------------------

#[test]
fn percent_decode_never_panics_and_keeps_what_is_not_an_escape() {
    let mut rng = Rng::new(6);
    let alphabet: Vec<char> = "%%%0123456789abcdefABCDEFgzZ+&=é€😀 ".chars().collect();
    for _ in 0..CASES * 4 {
        let input = rng.string_from(&alphabet, 16);
        let decoded = percent_decode(&input);
        assert!(decoded.len() <= input.len(), "{input:?}");
        if !input.contains('%') {
            assert_eq!(decoded, input.as_bytes(), "{input:?}");
        }
        // The full query path never panics either, and only ever fails as a 422.
        let request = Request::new("GET", &format!("/messages?{input}"), b"");
        for name in ["q", "from", "", "%"] {
            match request.query_param(name) {
                Ok(_) | Err(hookbox::error::Error::Unprocessable(_)) => {}
                Err(other) => panic!("{input:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn percent_decode_round_trips_percent_encoded_arbitrary_bytes() {
    let mut rng = Rng::new(7);
    for _ in 0..CASES {
        let original = rng.bytes(40);
        let mut encoded = String::new();
        for &byte in &original {
            let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
            if unreserved && rng.chance(2) {
                encoded.push(byte as char);
            } else if rng.chance(2) {
                encoded.push_str(&format!("%{byte:02X}"));
            } else {
                encoded.push_str(&format!("%{byte:02x}"));
            }
        }
        assert_eq!(percent_decode(&encoded), original, "{encoded}");
        // And through a query: valid UTF-8 comes back as the string, anything else is a 422.
        let request = Request::new("GET", &format!("/messages?q={encoded}"), b"");
        match (
            String::from_utf8(original.clone()),
            request.query_param("q"),
        ) {
            (Ok(text), Ok(Some(got))) => assert_eq!(got, text),
            (Err(_), Err(hookbox::error::Error::Unprocessable(_))) => {}
            (expected, got) => panic!("{encoded}: expected {expected:?}, got {got:?}"),
        }
    }
}

// ---- signatures --------------------------------------------------------------------------------

#[test]
fn signature_accepts_exactly_the_right_hex_and_rejects_every_one_character_change() {
    let mut rng = Rng::new(8);
    let substitutes: Vec<char> = "0123456789abcdefABCDEFgxzG =-+é\u{0}".chars().collect();
    let mut rejected = 0;
    for _ in 0..40 {
        let secret = rng.bytes(48);
        let body = rng.bytes(200);
        let good = sign_hex(&secret, &body);
        assert_eq!(good.len(), 64);
        assert!(good.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(verify(&secret, &body, Some(&good)));
        assert!(verify(&secret, &body, Some(&good.to_uppercase())));

        for at in 0..good.len() {
            let original = good.as_bytes()[at] as char;
            for &substitute in &substitutes {
                // Changing only the case of a hex letter names the same digest: allowed.
                if substitute.eq_ignore_ascii_case(&original) {
                    continue;
                }
                let mut mutated: Vec<char> = good.chars().collect();
                mutated[at] = substitute;
                let mutated: String = mutated.into_iter().collect();
                assert!(
                    !verify(&secret, &body, Some(&mutated)),
                    "accepted {mutated:?} (right: {good})"
                );
                rejected += 1;
            }
            // Dropping or doubling one character changes the length.
            let dropped = format!("{}{}", &good[..at], &good[at + 1..]);
            let doubled = format!("{}{}", &good[..=at], &good[at..]);
            assert!(!verify(&secret, &body, Some(&dropped)), "{dropped}");
            assert!(!verify(&secret, &body, Some(&doubled)), "{doubled}");
        }

        // The signature of any other body, or under any other secret, is rejected.
        if !body.is_empty() {
            let mut other = body.clone();
            let at = rng.below(other.len());
            other[at] ^= 1 << rng.below(8);
            assert!(!verify(&secret, &other, Some(&good)));
        }
        let mut other_secret = secret.clone();
        // (Not a zero byte: HMAC pads short keys with zeros, so `k` and `k\0` are one key.)
        other_secret.push(rng.next() as u8 | 1);
        assert!(!verify(&other_secret, &body, Some(&good)));
        assert!(!verify(&secret, &body, None));
        assert!(!verify(&secret, &body, Some("")));
    }
    assert!(rejected > 40 * 64 * 20);
}
