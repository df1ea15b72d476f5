//! UTC timestamps: parsing the `ts` of a message and formatting the clock for log lines.
//!
//! Messages keep `ts` exactly as received. Beside it we store a *sort key* that orders by instant:
//! `YYYY-MM-DDTHH:MM:SS` followed, when the fraction is not zero, by `.` and the fraction with its
//! trailing zeros removed. Every key has the same fixed-width prefix, so comparing keys as strings
//! compares instants exactly, at any precision: `…:00` < `…:00.05` < `…:00.5`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Validates `raw` as `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, a real UTC instant, and returns its sort key.
pub fn sort_key(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.len() < 20 || bytes[bytes.len() - 1] != b'Z' {
        return None;
    }
    let shape_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !shape_ok {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    let valid = year >= 1
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour <= 23
        && minute <= 59
        && second <= 59;
    if !valid {
        return None;
    }

    let fraction = &bytes[19..bytes.len() - 1];
    let mut key = raw[..19].to_owned();
    if !fraction.is_empty() {
        let fraction_digits = fraction.strip_prefix(b".")?;
        if fraction_digits.is_empty() || !fraction_digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let significant = raw[20..raw.len() - 1].trim_end_matches('0');
        if !significant.is_empty() {
            key.push('.');
            key.push_str(significant);
        }
    }
    Some(key)
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn is_leap_year(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`, for log lines.
pub fn now_utc() -> String {
    format_utc(SystemTime::now())
}

pub fn format_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn accepts_whole_and_fractional_seconds() {
        assert_eq!(
            sort_key("2025-01-15T10:00:00Z").unwrap(),
            "2025-01-15T10:00:00"
        );
        assert_eq!(
            sort_key("2025-01-15T10:00:00.500Z").unwrap(),
            "2025-01-15T10:00:00.5"
        );
        assert_eq!(
            sort_key("2025-01-15T10:00:00.000Z").unwrap(),
            "2025-01-15T10:00:00"
        );
        assert_eq!(
            sort_key("2024-02-29T23:59:59.123456789123Z").unwrap(),
            "2024-02-29T23:59:59.123456789123"
        );
    }

    #[test]
    fn keys_order_by_instant() {
        let mut keys: Vec<String> = [
            "2025-01-15T10:00:00.5Z",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.05Z",
            "2025-01-15T09:59:59.999Z",
            "2025-01-15T10:00:01Z",
        ]
        .iter()
        .map(|raw| sort_key(raw).unwrap())
        .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "2025-01-15T09:59:59.999",
                "2025-01-15T10:00:00",
                "2025-01-15T10:00:00.05",
                "2025-01-15T10:00:00.5",
                "2025-01-15T10:00:01",
            ]
        );
    }

    #[test]
    fn rejects_impossible_or_malformed_instants() {
        for bad in [
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15T10:60:00Z",
            "2025-01-15T10:00:60Z",
            "0000-01-01T00:00:00Z",
            "2025-01-15T10:00:00",
            "2025-01-15T10:00:00z",
            "2025-01-15 10:00:00Z",
            "2025-01-15T10:00:00+00:00",
            "2025-01-15T10:00:00.Z",
            "2025-01-15T10:00:00.1aZ",
            "2025-1-15T10:00:00Z",
            "+2025-01-15T10:00:0Z",
            "2025-01-15T10:00:00Z\n",
            "２０２５-01-15T10:00:00Z",
            "",
        ] {
            assert_eq!(sort_key(bad), None, "{bad:?} should be rejected");
        }
        assert!(sort_key("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let time = UNIX_EPOCH + Duration::from_millis(1_736_935_200_123);
        assert_eq!(format_utc(time), "2025-01-15T10:00:00.123Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_utc(leap_day), "2000-02-29T00:00:00.000Z");
    }
}
