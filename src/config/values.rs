//! Scalar values read from one variable each: whole numbers within a range, the listening
//! address and the log level. Every failure is a `ConfigError` naming its variable.

use std::fmt;
use std::net::IpAddr;

use log::LevelFilter;

use super::ConfigError;

/// Parses an unsigned integer variable within `range`, or returns `default` when unset.
pub(super) fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = get(variable) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ConfigError {
            variable,
            reason: format!(
                "{raw:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// `HOST` is an IP address literal, v4 or v6, written as it is (no brackets, no port, no
/// spaces). Names such as `localhost` are refused: what a name resolves to (127.0.0.1, ::1, or
/// both) depends on the machine, and the address the server listens on should not.
pub(super) fn parse_host(raw: &str) -> Result<String, String> {
    match raw.parse::<IpAddr>() {
        Ok(_) => Ok(raw.to_owned()),
        Err(_) if raw == "localhost" => {
            Err("\"localhost\" is a name, not an address; use 127.0.0.1 (or ::1)".to_owned())
        }
        Err(_) => Err(format!(
            "{raw:?} is not an IP address such as 0.0.0.0, 127.0.0.1 or :: (no port, no brackets)"
        )),
    }
}

pub(super) fn parse_log_level(raw: &str) -> Option<LevelFilter> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "ERROR" => Some(LevelFilter::Error),
        "WARN" | "WARNING" => Some(LevelFilter::Warn),
        "INFO" => Some(LevelFilter::Info),
        "DEBUG" => Some(LevelFilter::Debug),
        _ => None,
    }
}
