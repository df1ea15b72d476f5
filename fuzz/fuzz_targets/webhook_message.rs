//! Webhook validation: a body (JSON) to a message (`hookbox::message::parse`), what `/webhook`
//! and `hookbox import` both run.
//!
//! Checked, besides "no panic":
//! - an accepted message keeps the documented caps: `message_id` 1..=256 bytes; `from` and `to`
//!   a `+` and 1..=32 ASCII digits; `ts` a valid instant with at most 9 fraction digits whose
//!   sort key is `ts_key`; `text` at most 4,096 characters;
//! - it is exactly what the body said (each field equal to the JSON's), and written back as JSON
//!   it validates to the same message;
//! - a refused body has at least one problem, each with a `loc` starting at `body`, and the id
//!   kept for the log is at most 256 bytes;
//! - for generated bodies, the verdict is what the caps say: accepted exactly when every field is
//!   within them, and each field over its cap is reported `string_too_long` at its own `loc`.
#![no_main]

use hookbox::message::{
    self, MAX_FRACTION_DIGITS, MAX_MESSAGE_ID_BYTES, MAX_MSISDN_DIGITS, MAX_TEXT_CHARS, Message,
};
use hookbox::timestamp;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => {
            let _ = generated(&mut Unstructured::new(rest));
        }
        _ => {
            let _ = check(data);
        }
    }
});

fn is_capped_msisdn(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (1..=MAX_MSISDN_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Parses `body` and checks what any verdict must satisfy; returns the verdict.
fn check(body: &[u8]) -> Result<Message, Vec<Value>> {
    let parsed = message::parse(body);
    if let Some(id) = &parsed.message_id {
        assert!(id.len() <= MAX_MESSAGE_ID_BYTES, "a log id over the cap");
    }
    match parsed.result {
        Ok(message) => {
            assert!(!message.message_id.is_empty());
            assert!(message.message_id.len() <= MAX_MESSAGE_ID_BYTES);
            assert!(is_capped_msisdn(&message.from), "from {:?}", message.from);
            assert!(is_capped_msisdn(&message.to), "to {:?}", message.to);
            assert_eq!(
                timestamp::sort_key(&message.ts).as_ref(),
                Some(&message.ts_key)
            );
            let fraction = message
                .ts
                .split_once('.')
                .map_or(0, |(_, f)| f.len().saturating_sub(1));
            assert!(fraction <= MAX_FRACTION_DIGITS, "ts {:?}", message.ts);
            if let Some(text) = &message.text {
                assert!(text.chars().count() <= MAX_TEXT_CHARS);
            }
            assert_eq!(parsed.message_id.as_ref(), Some(&message.message_id));
            // Exactly what the body said.
            let value: Value = serde_json::from_slice(body).expect("accepted bodies are JSON");
            assert_eq!(value["message_id"], json!(message.message_id));
            assert_eq!(value["from"], json!(message.from));
            assert_eq!(value["to"], json!(message.to));
            assert_eq!(value["ts"], json!(message.ts));
            assert_eq!(
                value.get("text").cloned().unwrap_or(Value::Null),
                json!(message.text)
            );
            // Written back, it is the same message.
            let again = json!({
                "message_id": message.message_id,
                "from": message.from,
                "to": message.to,
                "ts": message.ts,
                "text": message.text,
            });
            let again = message::parse(again.to_string().as_bytes()).result;
            assert_eq!(again.as_ref().ok(), Some(&message));
            Ok(message)
        }
        Err(invalid) => {
            assert!(!invalid.0.is_empty(), "refused without a problem");
            let problems: Vec<Value> = invalid
                .0
                .iter()
                .map(|problem| serde_json::to_value(problem).unwrap())
                .collect();
            for problem in &problems {
                assert_eq!(problem["loc"][0], json!("body"), "{problem}");
            }
            Err(problems)
        }
    }
}

/// A string of a kind the field often holds, or anything.
fn field(
    u: &mut Unstructured<'_>,
    kind: fn(&mut Unstructured<'_>) -> Result<String>,
) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<u32>()?),
        2 => json!(u.arbitrary::<String>()?),
        _ => json!(kind(u)?),
    })
}

fn digits(u: &mut Unstructured<'_>, most: usize) -> Result<String> {
    let count = u.int_in_range(0..=most)?;
    (0..count)
        .map(|_| Ok(char::from(b'0' + u.int_in_range(0..=9)?)))
        .collect()
}

fn msisdn(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(format!("+{}", digits(u, MAX_MSISDN_DIGITS + 3)?))
}

fn message_id(u: &mut Unstructured<'_>) -> Result<String> {
    let unit = if u.arbitrary()? { "é" } else { "m" };
    Ok(unit.repeat(u.int_in_range(0..=MAX_MESSAGE_ID_BYTES + 3)?))
}

fn ts(u: &mut Unstructured<'_>) -> Result<String> {
    let fraction = match u.int_in_range(0..=MAX_FRACTION_DIGITS + 3)? {
        0 => String::new(),
        n => format!(".{}", "1".repeat(n)),
    };
    Ok(format!(
        "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
        u.int_in_range(0..=99)?,
        u.int_in_range(1..=12)?,
        u.int_in_range(1..=28)?,
        u.int_in_range(0..=23)?,
        u.int_in_range(0..=59)?,
        u.int_in_range(0..=59)?,
    ))
}

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok("ü".repeat(u.int_in_range(MAX_TEXT_CHARS - 2..=MAX_TEXT_CHARS + 2)?))
}

/// A body of likely fields: the verdict must be what the caps say.
fn generated(u: &mut Unstructured<'_>) -> Result<()> {
    let mut body = serde_json::Map::new();
    for (name, kind) in [
        (
            "message_id",
            message_id as fn(&mut Unstructured<'_>) -> Result<String>,
        ),
        ("from", msisdn),
        ("to", msisdn),
        ("ts", ts),
        ("text", text),
    ] {
        if u.int_in_range(0..=15)? != 0 {
            body.insert(name.to_owned(), field(u, kind)?);
        }
    }
    let string = |name: &str| body.get(name).and_then(Value::as_str);
    let mut too_long = Vec::new();
    let id_ok = string("message_id").is_some_and(|id| {
        if id.len() > MAX_MESSAGE_ID_BYTES {
            too_long.push("message_id");
        }
        !id.is_empty() && id.len() <= MAX_MESSAGE_ID_BYTES
    });
    let mut msisdn_ok = |name| {
        string(name).is_some_and(|value| {
            let digits = value.strip_prefix('+').unwrap_or("");
            if value.starts_with('+')
                && digits.len() > MAX_MSISDN_DIGITS
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                too_long.push(name);
            }
            is_capped_msisdn(value)
        })
    };
    let (from_ok, to_ok) = (msisdn_ok("from"), msisdn_ok("to"));
    let ts_ok = string("ts").is_some_and(|ts| {
        let valid = timestamp::sort_key(ts).is_some();
        let fraction = ts
            .split_once('.')
            .map_or(0, |(_, f)| f.len().saturating_sub(1));
        if valid && fraction > MAX_FRACTION_DIGITS {
            too_long.push("ts");
        }
        valid && fraction <= MAX_FRACTION_DIGITS
    });
    let text_ok = match body.get("text") {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => {
            if text.chars().count() > MAX_TEXT_CHARS {
                too_long.push("text");
            }
            text.chars().count() <= MAX_TEXT_CHARS
        }
        Some(_) => false,
    };
    let expect_ok = id_ok && from_ok && to_ok && ts_ok && text_ok;
    let verdict = check(Value::Object(body.clone()).to_string().as_bytes());
    assert_eq!(verdict.is_ok(), expect_ok, "{body:?}: {verdict:?}");
    if let Err(problems) = verdict {
        for name in too_long {
            assert!(
                problems
                    .iter()
                    .any(|p| p["type"] == "string_too_long" && p["loc"] == json!(["body", name])),
                "{name} over its cap is not string_too_long: {problems:?}"
            );
        }
    }
    Ok(())
}
