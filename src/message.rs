//! The inbound message: parsing a webhook body and validating it field by field.
//!
//! Problems are reported the way FastAPI (pydantic v2) reports them — one entry per problem with
//! `type`, `loc`, `msg` and `input` — because senders and tooling written against the original
//! service already parse that shape.

use serde_json::{Map, Value, json};

use crate::problem::Problem;

use crate::error::Error;
use crate::timestamp;

/// Longest `text` accepted, in Unicode code points (what Python's `len` counts).
pub const MAX_TEXT_CHARS: usize = 4096;

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
    pub result: Result<Message, Error>,
}

/// Parses and validates a raw body. Extra fields are ignored.
pub fn parse(body: &[u8]) -> Parsed {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return Parsed {
                message_id: None,
                result: Err(Error::Unprocessable(vec![Problem {
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
            result: Err(Error::Unprocessable(vec![Problem::new(
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
    let from = required_string(fields, "from", &mut problems);
    check_msisdn("from", from.as_deref(), &mut problems);
    let to = required_string(fields, "to", &mut problems);
    check_msisdn("to", to.as_deref(), &mut problems);
    let ts = required_string(fields, "ts", &mut problems);
    let ts_key = ts
        .as_deref()
        .and_then(|raw| instant_key(raw, &["body", "ts"], &mut problems));
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

    let message_id_for_log = message_id.clone().filter(|id| !id.is_empty());
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
        _ => Err(Error::Unprocessable(problems)),
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

/// `^\+\d+$` with ASCII digits: a plus sign, then at least one digit, nothing else.
fn check_msisdn(name: &str, value: Option<&str>, problems: &mut Vec<Problem>) {
    let Some(value) = value else { return };
    let valid = value
        .strip_prefix('+')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
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
            Err(Error::Unprocessable(problems)) => problems
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
    fn non_objects_and_bad_json() {
        assert_eq!(problems("[1]")[0]["type"], "model_attributes_type");
        assert_eq!(problems("\"m1\"")[0]["type"], "model_attributes_type");
        assert_eq!(problems("{\"message_id\":")[0]["type"], "json_invalid");
        assert_eq!(problems("")[0]["type"], "json_invalid");
        let not_utf8 = parse(b"{\"message_id\":\"\xff\"}");
        assert!(matches!(not_utf8.result, Err(Error::Unprocessable(_))));
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
    }
}
