//! The inbound message: parsing a webhook body and validating it field by field.
//!
//! Problems are reported the way FastAPI (pydantic v2) reports them — one entry per problem with
//! `type`, `loc`, `msg` and `input` — because senders and tooling written against the original
//! service already parse that shape.
//!
//! Validation knows nothing of HTTP: it returns `Invalid`, which the webhook answers with a 422
//! and `hookbox import` prints as a line's problems.
//!
//! Besides the contract's rules, every field has a cap that keeps any one message a small, storable
//! row on both stores (a 4,000-byte id broke PostgreSQL's index row limit and failed its whole
//! group commit): past it, the field is `string_too_long`.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::problem::Problem;
use crate::timestamp;

/// Longest `text` accepted, in Unicode code points (what Python's `len` counts).
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest `message_id` accepted, in UTF-8 bytes: far above any provider's ids (WhatsApp's are
/// about 60), far below PostgreSQL's btree row limit (about 2,700 bytes).
pub const MAX_MESSAGE_ID_BYTES: usize = 256;
/// Most digits after the `+` of `from` and `to`: E.164 allows 15; 32 leaves room for
/// extensions and test numbers.
pub const MAX_MSISDN_DIGITS: usize = 32;
/// Most digits in the fraction of a second of `ts`: nanoseconds, the finest any clock writes.
pub const MAX_FRACTION_DIGITS: usize = 9;

/// Why a body is not a valid message: every problem found, in FastAPI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid(pub Vec<Problem>);

/// The problems as the 422's `detail` list would give them (one JSON array).
impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(&self.0) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{} validation problem(s)", self.0.len()),
        }
    }
}

impl std::error::Error for Invalid {}

/// A message that passed validation, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    pub from: String,
    pub to: String,
    /// Exactly as received.
    pub ts: String,
    /// Sort key of `ts` (see `timestamp::sort_key`).
    pub ts_key: String,
    pub text: Option<String>,
}

/// What the webhook learned from a body, even when validation failed: the id, for the log line.
pub struct Parsed {
    pub message_id: Option<String>,
    pub result: Result<Message, Invalid>,
}

/// Parses and validates a raw body. Extra fields are ignored.
pub fn parse(body: &[u8]) -> Parsed {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return Parsed {
                message_id: None,
                result: Err(Invalid(vec![Problem {
                    loc: vec![json!("body"), json!(error.column())],
                    ..Problem::new("json_invalid", &[], "JSON decode error", json!({}))
                        .with_ctx(json!({"error": error.to_string()}))
                }])),
            };
        }
    };
    let Value::Object(fields) = value else {
        return Parsed {
            message_id: None,
            result: Err(Invalid(vec![Problem::new(
                "model_attributes_type",
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                value,
            )])),
        };
    };
    validate(&fields)
}

fn validate(fields: &Map<String, Value>) -> Parsed {
    let mut problems = Vec::new();
    let message_id = required_string(fields, "message_id", &mut problems);
    if message_id.as_deref() == Some("") {
        problems.push(
            Problem::new(
                "string_too_short",
                &["body", "message_id"],
                "String should have at least 1 character",
                json!(""),
            )
            .with_ctx(json!({"min_length": 1})),
        );
    }
    if let Some(id) = message_id.as_deref() {
        if id.len() > MAX_MESSAGE_ID_BYTES {
            problems.push(too_long(
                "message_id",
                format!("String should have at most {MAX_MESSAGE_ID_BYTES} bytes"),
                id,
                MAX_MESSAGE_ID_BYTES,
            ));
        }
    }
    let from = required_string(fields, "from", &mut problems);
    check_msisdn("from", from.as_deref(), &mut problems);
    let to = required_string(fields, "to", &mut problems);
    check_msisdn("to", to.as_deref(), &mut problems);
    let ts = required_string(fields, "ts", &mut problems);
    let ts_key = ts.as_deref().and_then(|raw| {
        let key = instant_key(raw, &["body", "ts"], &mut problems)?;
        if fraction_digits(raw) > MAX_FRACTION_DIGITS {
            problems.push(too_long(
                "ts",
                format!(
                    "The fraction of a second should have at most {MAX_FRACTION_DIGITS} digits"
                ),
                raw,
                MAX_FRACTION_DIGITS,
            ));
            return None;
        }
        Some(key)
    });
    let text = match fields.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            if text.chars().count() > MAX_TEXT_CHARS {
                problems.push(
                    Problem::new(
                        "string_too_long",
                        &["body", "text"],
                        format!("String should have at most {MAX_TEXT_CHARS} characters"),
                        json!(text),
                    )
                    .with_ctx(json!({"max_length": MAX_TEXT_CHARS})),
                );
            }
            Some(text.clone())
        }
        Some(other) => {
            problems.push(not_a_string("text", other));
            None
        }
    };

    // An id past its cap is logged cut to it: the log line stays small whatever was sent.
    let message_id_for_log = message_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .map(|id| cut_to(id, MAX_MESSAGE_ID_BYTES).to_owned());
    let result = match (message_id, from, to, ts, ts_key) {
        (Some(message_id), Some(from), Some(to), Some(ts), Some(ts_key)) if problems.is_empty() => {
            Ok(Message {
                message_id,
                from,
                to,
                ts,
                ts_key,
                text,
            })
        }
        _ => Err(Invalid(problems)),
    };
    Parsed {
        message_id: message_id_for_log,
        result,
    }
}

/// The sort key of a `ts`-format instant, or `None` with a problem reported at `loc`.
/// Shared by the webhook body (`ts`) and the `/messages` query (`since`).
pub fn instant_key(raw: &str, loc: &[&str], problems: &mut Vec<Problem>) -> Option<String> {
    let key = timestamp::sort_key(raw);
    if key.is_none() {
        problems.push(Problem::new(
            "datetime_format",
            loc,
            "Input should be a UTC timestamp like 2025-01-15T10:00:00Z \
             (YYYY-MM-DDTHH:MM:SS, optional .fraction, trailing Z)",
            json!(raw),
        ));
    }
    key
}

fn required_string(
    fields: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match fields.get(name) {
        Some(Value::String(value)) => Some(value.clone()),
        Some(other) => {
            problems.push(not_a_string(name, other));
            None
        }
        None => {
            problems.push(Problem::new(
                "missing",
                &["body", name],
                "Field required",
                Value::Object(fields.clone()),
            ));
            None
        }
    }
}

fn not_a_string(name: &str, input: &Value) -> Problem {
    Problem::new(
        "string_type",
        &["body", name],
        "Input should be a valid string",
        input.clone(),
    )
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut_to(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Digits after the `.` of a valid `ts` (0 without a fraction).
fn fraction_digits(ts: &str) -> usize {
    // A valid `ts` is `YYYY-MM-DDTHH:MM:SS` (19 bytes), then `.digits` or nothing, then `Z`.
    ts.len().saturating_sub(19 + 1 + 1)
}

fn too_long(name: &str, msg: String, input: &str, max: usize) -> Problem {
    Problem::new("string_too_long", &["body", name], msg, json!(input))
        .with_ctx(json!({"max_length": max}))
}

/// Whether `value` is `^\+\d+$` with ASCII digits: a plus sign, then at least one digit, nothing
/// else. Also what a `/messages` `from` must be to match any stored row.
pub fn is_msisdn(value: &str) -> bool {
    value
        .strip_prefix('+')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// `^\+\d+$`, with at most `MAX_MSISDN_DIGITS` digits.
fn check_msisdn(name: &str, value: Option<&str>, problems: &mut Vec<Problem>) {
    let Some(value) = value else { return };
    if is_msisdn(value) && value.len() > 1 + MAX_MSISDN_DIGITS {
        problems.push(too_long(
            name,
            format!("String should have at most {MAX_MSISDN_DIGITS} digits after the +"),
            value,
            MAX_MSISDN_DIGITS,
        ));
    }
    if !is_msisdn(value) {
        problems.push(
            Problem::new(
                "string_pattern_mismatch",
                &["body", name],
                "String should match pattern '^\\+\\d+$'",
                json!(value),
            )
            .with_ctx(json!({"pattern": "^\\+\\d+$"})),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems as the client sees them (serialized).
    fn problems(body: &str) -> Vec<Value> {
        match parse(body.as_bytes()).result {
            Err(Invalid(problems)) => problems
                .iter()
                .map(|problem| serde_json::to_value(problem).unwrap())
                .collect(),
            other => panic!("expected 422 for {body}, got {other:?}"),
        }
    }

    fn locs(body: &str) -> Vec<String> {
        problems(body)
            .iter()
            .map(|p| p["loc"][1].as_str().unwrap_or("").to_owned())
            .collect()
    }

    const VALID: &str = r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

    #[test]
    fn valid_message_parses() {
        let message = parse(VALID.as_bytes()).result.unwrap();
        assert_eq!(message.message_id, "m1");
        assert_eq!(message.ts_key, "2025-01-15T10:00:00");
        assert_eq!(message.text.as_deref(), Some("Hello"));
    }

    #[test]
    fn text_is_optional_nullable_and_extras_are_ignored() {
        let body = r#"{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","text":null,"extra":[1]}"#;
        assert_eq!(parse(body.as_bytes()).result.unwrap().text, None);
        let body = r#"{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}"#;
        assert_eq!(parse(body.as_bytes()).result.unwrap().text, None);
    }

    #[test]
    fn each_problem_is_reported_once() {
        assert_eq!(
            locs(
                r#"{"message_id":"","from":"919","to":"+1 2","ts":"2025-02-30T00:00:00Z","text":5}"#
            ),
            ["message_id", "from", "to", "ts", "text"]
        );
        assert_eq!(locs("{}"), ["message_id", "from", "to", "ts"]);
        assert_eq!(problems("{}")[0]["type"], "missing");
    }

    #[test]
    fn wrong_types_are_rejected() {
        let body = r#"{"message_id":1,"from":["+1"],"to":null,"ts":20250115,"text":"x"}"#;
        let found = problems(body);
        assert_eq!(found.len(), 4);
        assert!(found.iter().all(|p| p["type"] == "string_type"));
    }

    #[test]
    fn msisdn_rules() {
        for bad in ["", "+", "919876543210", "+91 98", "+91\n", "++91", "+٩١"] {
            let body = format!(
                r#"{{"message_id":"m","from":{},"to":"+1","ts":"2025-01-15T10:00:00Z"}}"#,
                serde_json::to_string(bad).unwrap()
            );
            assert_eq!(locs(&body), ["from"], "{bad:?}");
        }
    }

    #[test]
    fn text_length_counts_code_points() {
        let at_limit = "é".repeat(MAX_TEXT_CHARS);
        let body = |text: &str| {
            format!(
                r#"{{"message_id":"m","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z","text":"{text}"}}"#
            )
        };
        assert!(parse(body(&at_limit).as_bytes()).result.is_ok());
        let over = format!("{at_limit}é");
        assert_eq!(problems(&body(&over))[0]["type"], "string_too_long");
    }

    #[test]
    fn caps_are_string_too_long_at_one_past_and_fine_at_them() {
        let body = |id: &str, from: &str, ts: &str| {
            json!({"message_id": id, "from": from, "to": "+1", "ts": ts}).to_string()
        };
        let id_at_cap = "é".repeat(MAX_MESSAGE_ID_BYTES / 2);
        let from_at_cap = format!("+{}", "1".repeat(MAX_MSISDN_DIGITS));
        let ts_at_cap = "2025-01-15T10:00:00.123456780Z";
        assert!(
            parse(body(&id_at_cap, &from_at_cap, ts_at_cap).as_bytes())
                .result
                .is_ok()
        );
        for (bad, field) in [
            (
                body(&format!("{id_at_cap}x"), "+1", ts_at_cap),
                "message_id",
            ),
            (body("m", &format!("{from_at_cap}1"), ts_at_cap), "from"),
            (body("m", "+1", "2025-01-15T10:00:00.1234567800Z"), "ts"),
        ] {
            let found = problems(&bad);
            assert_eq!(found.len(), 1, "{bad}");
            assert_eq!(found[0]["type"], "string_too_long", "{bad}");
            assert_eq!(found[0]["loc"], json!(["body", field]), "{bad}");
        }
        // Too long and malformed at once is one problem: the pattern's.
        let found = problems(&body("m", &format!("{from_at_cap}x"), ts_at_cap));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["type"], "string_pattern_mismatch");
    }

    #[test]
    fn non_objects_and_bad_json() {
        assert_eq!(problems("[1]")[0]["type"], "model_attributes_type");
        assert_eq!(problems("\"m1\"")[0]["type"], "model_attributes_type");
        assert_eq!(problems("{\"message_id\":")[0]["type"], "json_invalid");
        assert_eq!(problems("")[0]["type"], "json_invalid");
        let not_utf8 = parse(b"{\"message_id\":\"\xff\"}");
        assert!(matches!(not_utf8.result, Err(Invalid(_))));
        assert_eq!(problems(r#"{"a":"\ud800"}"#)[0]["type"], "json_invalid");
        assert_eq!(
            problems(&format!("{}1{}", "[".repeat(200), "]".repeat(200)))[0]["type"],
            "json_invalid"
        );
    }

    #[test]
    fn id_is_kept_for_the_log_even_when_invalid() {
        let parsed = parse(br#"{"message_id":"m9","from":"bad"}"#);
        assert_eq!(parsed.message_id.as_deref(), Some("m9"));
        assert!(parsed.result.is_err());
        let long = format!("{}é", "m".repeat(MAX_MESSAGE_ID_BYTES - 1));
        let parsed = parse(json!({ "message_id": long }).to_string().as_bytes());
        assert_eq!(
            parsed.message_id.as_deref(),
            Some("m".repeat(MAX_MESSAGE_ID_BYTES - 1).as_str())
        );
    }
}
