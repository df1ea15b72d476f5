//! Sizes given in MiB: parsed into bytes in `u64`, with checked arithmetic, so every knob's
//! largest value is exact on a 32-bit target too (4096 MiB does not fit a 32-bit `usize`).

use super::ConfigError;

/// Request bodies held in memory at once, all connections together. The contract is 64 MiB RSS
/// under any mix of clients. A release server is 7 MiB idle and 34 MiB with 1,500 idle
/// connections (their threads); 16 MiB of bodies on top leaves room for the answers in flight
/// and the allocator's slack. Measured (docs/BENCHMARKS.md, held bodies): 1,500 clients each
/// sending 64 KiB of a 128 KiB body and stopping, 36 MiB RSS while held, 48.6 MiB at the peak
/// of the flood (without the budget: 148.5 MiB). A quarter of it is kept for bodies of at most
/// 16 KiB, so held large bodies cannot lock out ordinary webhooks.
pub const DEFAULT_MAX_BODY_BUFFER_MIB: u64 = 16;
/// 64 GiB: more is not a budget.
pub(super) const MAX_BODY_BUFFER_MIB: u64 = 65536;

/// Parses a size in MiB within `range` into bytes. In `u64` and checked, so the largest value
/// allowed is exact on a 32-bit target too (4096 MiB does not fit a 32-bit `usize`).
pub(super) fn mebibytes(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    super::values::number(get, variable, default, range)?
        .checked_mul(1024 * 1024)
        .ok_or_else(|| ConfigError {
            variable,
            reason: "too large to count in bytes".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    /// Every MiB knob at its maximum counts its bytes exactly, in `u64` (no `usize` product that
    /// would wrap on a 32-bit target).
    #[test]
    fn mib_knobs_at_their_maximum_do_not_overflow() {
        let top = config(&[
            ("HOOKBOX_MAX_HELD_ANSWERS_MIB", "4096"),
            (
                "HOOKBOX_MAX_BODY_BUFFER_MIB",
                &MAX_BODY_BUFFER_MIB.to_string(),
            ),
            ("HOOKBOX_MAX_DB_MIB", &u32::MAX.to_string()),
        ])
        .unwrap();
        assert_eq!(top.max_held_answer_bytes, 4096 * 1024 * 1024);
        assert_eq!(top.max_body_buffer_bytes, MAX_BODY_BUFFER_MIB << 20);
        // The store multiplies this one itself, in u64.
        assert_eq!(
            top.max_db_mib.checked_mul(1024 * 1024),
            Some(u64::from(u32::MAX) << 20)
        );
        let defaults = config(&[]).unwrap();
        assert_eq!(
            defaults.max_body_buffer_bytes,
            DEFAULT_MAX_BODY_BUFFER_MIB << 20
        );
    }
}
