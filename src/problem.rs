//! One validation problem in FastAPI's shape, the item type of a 422's `detail` list:
//! `{"type":…,"loc":["body","from"],"msg":…,"input":…}`, plus `ctx` where FastAPI gives one.
//! The shape is said once, here; validators only fill it in.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// FastAPI's (pydantic's) error type, e.g. `missing`, `string_type`, `int_parsing`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where: `["body", field]` or `["query", parameter]` (a JSON error gives a column number).
    pub loc: Vec<Value>,
    pub msg: String,
    /// What was sent there.
    pub input: Value,
    /// The rule's parameters, e.g. `{"ge": 1}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl Problem {
    pub fn new(kind: &'static str, loc: &[&str], msg: impl Into<String>, input: Value) -> Problem {
        Problem {
            kind,
            loc: loc.iter().map(|part| Value::from(*part)).collect(),
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    pub fn with_ctx(mut self, ctx: Value) -> Problem {
        self.ctx = Some(ctx);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_in_fastapis_shape() {
        let problem = Problem::new(
            "greater_than_equal",
            &["query", "limit"],
            "too small",
            json!("0"),
        )
        .with_ctx(json!({"ge": 1}));
        assert_eq!(
            serde_json::to_value(&problem).unwrap(),
            json!({"type": "greater_than_equal", "loc": ["query", "limit"], "msg": "too small",
                   "input": "0", "ctx": {"ge": 1}})
        );
        let plain = Problem::new("missing", &["body", "to"], "Field required", json!({}));
        assert!(serde_json::to_value(&plain).unwrap().get("ctx").is_none());
    }
}
