//! Logs: one JSON object per line on stdout, for every record — startup, requests, shutdown.
//!
//! A small `log::Log` of our own rather than `simplelog`: simplelog writes text lines, and the
//! contract is that every stdout line is a JSON object with typed fields (`status` a number,
//! `dup` a boolean). Structured fields travel as `log` key-values and become JSON fields here.

use std::fmt::Write as _;
use std::io::Write;

use log::kv::{self, VisitSource, VisitValue};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::KeySlot;
use crate::metrics::{Source, WebhookResult};
use crate::timestamp;

struct JsonLogger;

/// Installs the JSON logger for the whole process. Call once, from `main`. The level can be
/// changed later with `log::set_max_level` (main does, once the config is read): the logger
/// filters by that one global level and keeps none of its own.
pub fn init(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    log::set_boxed_logger(Box::new(JsonLogger))?;
    log::set_max_level(level);
    Ok(())
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record);
        // A closed stdout must not take the server down; there is nowhere else to report it.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

/// `{"ts":…,"level":…,"msg":…, …key-values}` and a newline. Written straight into one buffer:
/// one log line per request is on every request's path, so no field allocates on its own.
fn format_line(record: &Record<'_>) -> String {
    let mut line = String::with_capacity(320);
    line.push_str("{\"ts\":\"");
    line.push_str(&timestamp::now_utc());
    line.push_str("\",\"level\":\"");
    line.push_str(record.level().as_str());
    line.push_str("\",\"msg\":");
    match record.args().as_str() {
        Some(message) => push_json_string(&mut line, message),
        None => push_json_string(&mut line, &record.args().to_string()),
    }
    let _ = record.key_values().visit(&mut FieldWriter(&mut line));
    line.push_str("}\n");
    line
}

/// Appends `text` as a JSON string (RFC 8259 escapes: quote, backslash, control characters).
fn push_json_string(line: &mut String, text: &str) {
    line.push('"');
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        line.push_str(&text[plain..at]);
        if escape.is_empty() {
            let _ = write!(line, "\\u{byte:04x}");
        } else {
            line.push_str(escape);
        }
        plain = at + 1;
    }
    line.push_str(&text[plain..]);
    line.push('"');
}

/// Appends each key-value as a JSON field; `None` values are left out.
struct FieldWriter<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for FieldWriter<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let before = self.0.len();
        self.0.push(',');
        push_json_string(self.0, key.as_str());
        self.0.push(':');
        let field_start = self.0.len();
        value.visit(ValueWriter(self.0))?;
        // A `None` wrote nothing: take its key back out.
        if self.0.len() == field_start {
            self.0.truncate(before);
        }
        Ok(())
    }
}

struct ValueWriter<'a>(&'a mut String);

impl<'v> VisitValue<'v> for ValueWriter<'_> {
    fn visit_any(&mut self, value: kv::Value<'_>) -> Result<(), kv::Error> {
        push_json_string(self.0, &value.to_string());
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), kv::Error> {
        Ok(())
    }
    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        let _ = write!(self.0, "{value}");
        Ok(())
    }
    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        let _ = write!(self.0, "{value}");
        Ok(())
    }
    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        // JSON has no NaN or infinity; a finite f64 prints as a JSON number.
        if value.is_finite() {
            let _ = write!(self.0, "{value:?}");
        } else {
            self.0.push_str("null");
        }
        Ok(())
    }
    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.0.push_str(if value { "true" } else { "false" });
        Ok(())
    }
    fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
        push_json_string(self.0, value);
        Ok(())
    }
}

/// Everything the per-request log line says.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    /// Empty for a head that could not be parsed.
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    /// Set on `/webhook` lines only.
    pub webhook: Option<WebhookFields<'a>>,
    /// Why a 5xx happened; never shown to the client.
    pub error: Option<String>,
}

pub struct WebhookFields<'a> {
    pub message_id: Option<&'a str>,
    pub result: WebhookResult,
    /// Which sender (`webhook`, `whatsapp`, `twilio`, `standard`).
    pub source: Source,
    /// Which key verified the signature (`current`, `previous`); never the key.
    pub key: Option<KeySlot>,
    /// Messages in the request when it carried several (one commit, one answer).
    pub messages: Option<usize>,
    /// Why a well-signed payload was acknowledged without storing anything.
    pub reason: Option<&'a str>,
}

/// Longest path written to a log line; a 64 KiB URL must not become a 64 KiB log line.
const MAX_LOGGED_PATH: usize = 256;

/// Writes the one log line of a request. 401s and 5xx are errors, other 4xx warnings.
pub fn access(line: &AccessLine<'_>) {
    let level = match line.status {
        401 | 500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    };
    let path = truncate(line.path, MAX_LOGGED_PATH);
    let latency_ms = (line.latency_ms * 1000.0).round() / 1000.0;
    // Cut to the longest id a message may have: a sender's id past the cap (refused, 422)
    // must not become a long log line either.
    let message_id = line
        .webhook
        .as_ref()
        .and_then(|w| w.message_id)
        .map(|id| truncate(id, crate::message::MAX_MESSAGE_ID_BYTES));
    let dup = line
        .webhook
        .as_ref()
        .map(|w| w.result == WebhookResult::Duplicate);
    let result = line.webhook.as_ref().map(|w| w.result.as_str());
    let source = line.webhook.as_ref().map(|w| w.source.as_str());
    let key = line
        .webhook
        .as_ref()
        .and_then(|w| w.key)
        .map(KeySlot::as_str);
    let messages = line.webhook.as_ref().and_then(|w| w.messages);
    let reason = line.webhook.as_ref().and_then(|w| w.reason);
    log::log!(
        target: "hookbox::access",
        level,
        request_id = line.request_id,
        method = line.method,
        path = path,
        status = line.status,
        latency_ms = latency_ms,
        message_id = message_id,
        dup = dup,
        result = result,
        source = source,
        key = key,
        messages = messages,
        reason = reason,
        error = line.error.as_deref();
        "request"
    );
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(record: &Record<'_>) -> serde_json::Value {
        let line = format_line(record);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(&line).expect("every line is JSON")
    }

    #[test]
    fn fields_keep_their_types_and_none_is_left_out() {
        let message_id: Option<&str> = None;
        let kvs: &[(&str, kv::Value<'_>)] = &[
            ("status", kv::Value::from(401u16)),
            ("latency_ms", kv::Value::from(1.25f64)),
            ("dup", kv::Value::from(false)),
            ("path", kv::Value::from("/web\"hook\n")),
            ("message_id", kv::Value::from_any(&message_id)),
        ];
        let args = format_args!("request");
        let record = Record::builder()
            .level(Level::Error)
            .args(args)
            .key_values(&kvs)
            .build();
        let json = render(&record);
        assert_eq!(json["level"], "ERROR");
        assert_eq!(json["msg"], "request");
        assert_eq!(json["status"], 401);
        assert_eq!(json["latency_ms"], 1.25);
        assert_eq!(json["dup"], false);
        assert_eq!(json["path"], "/web\"hook\n");
        assert!(json.get("message_id").is_none());
        assert!(json["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_would() {
        for text in [
            "plain",
            "q\"uote",
            "back\\slash",
            "new\nline\r\t",
            "\u{1}\u{1f}\u{8}\u{c}",
            "é€😀",
            "",
        ] {
            let mut line = String::new();
            push_json_string(&mut line, text);
            assert_eq!(line, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn numbers_are_json_numbers() {
        for value in [0.0, 1.25, 5.695, 1e-7, 123456789.123] {
            let mut line = String::new();
            ValueWriter(&mut line).visit_f64(value).unwrap();
            let parsed: f64 = serde_json::from_str(&line).unwrap();
            assert_eq!(parsed, value, "{line}");
        }
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("éé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
