//! The durations the public API accepts, checked before anything is sent.
//!
//! A timeout of zero used to mean different things on each path (fail at once here, no timeout at all
//! in `WAIT n 0`, which blocks for ever), `Duration::MAX` panicked in `Instant + Duration`, and
//! `as_millis() as i64` wrapped. So every timeout is checked against one range, and a TTL against an
//! upper bound, with [`Error::InvalidDuration`] saying what would be accepted.

use std::time::Duration;

use crate::Error;

/// The shortest call or `WAIT` timeout: Redis counts `WAIT` timeouts in whole milliseconds, and a
/// zero there means "block for ever".
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The longest call or `WAIT` timeout: `u32::MAX` milliseconds (about 49.7 days), the bound
/// `REDIS_COMMAND_TIMEOUT_MS` has too.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(u32::MAX as u64);

/// The longest TTL: 100 years. Redis refuses an expiry whose absolute time overflows, so a larger TTL
/// could only fail on the server.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `value` if it is a usable timeout (from [`MIN_TIMEOUT`] to [`MAX_TIMEOUT`]).
pub(crate) fn timeout(what: &'static str, value: Duration) -> Result<Duration, Error> {
    if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&value) {
        Ok(value)
    } else {
        Err(Error::InvalidDuration {
            what,
            value,
            allowed: format!(
                "use {MIN_TIMEOUT:?} to {MAX_TIMEOUT:?} (whole milliseconds count; zero would mean no timeout)"
            ),
        })
    }
}

/// A timeout in whole milliseconds (at least 1) for the server.
pub(crate) fn timeout_ms(what: &'static str, value: Duration) -> Result<i64, Error> {
    let value = timeout(what, value)?;
    Ok(i64::try_from(value.as_millis()).unwrap_or(i64::MAX).max(1))
}

/// A TTL as `PX` milliseconds. Below a millisecond (zero included) it rounds up to 1 ms, as `PX 0` is
/// an error; above [`MAX_TTL`] it is refused.
pub(crate) fn ttl_ms(what: &'static str, value: Duration) -> Result<i64, Error> {
    if value > MAX_TTL {
        return Err(Error::InvalidDuration {
            what,
            value,
            allowed: format!(
                "use at most {} days; for a key that never expires give no TTL",
                MAX_TTL.as_secs() / 86_400
            ),
        });
    }
    Ok(i64::try_from(value.as_millis()).unwrap_or(i64::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Duration, timeout_expected: Option<i64>, ttl_expected: Option<i64>) {
        assert_eq!(
            timeout_ms("timeout", value).ok(),
            timeout_expected,
            "timeout {value:?}"
        );
        assert_eq!(ttl_ms("ttl", value).ok(), ttl_expected, "ttl {value:?}");
    }

    #[test]
    fn durations_at_the_edges() {
        check(Duration::ZERO, None, Some(1));
        check(Duration::from_nanos(1), None, Some(1));
        check(Duration::from_micros(999), None, Some(1));
        check(Duration::from_millis(1), Some(1), Some(1));
        check(Duration::from_millis(1_500), Some(1_500), Some(1_500));
        check(MAX_TIMEOUT, Some(i64::from(u32::MAX)), Some(i64::from(u32::MAX)));
        check(
            MAX_TIMEOUT + Duration::from_millis(1),
            None,
            Some(i64::from(u32::MAX) + 1),
        );
        check(MAX_TTL + Duration::from_nanos(1), None, None);
        check(Duration::MAX, None, None);
    }

    #[test]
    fn the_message_says_what_is_accepted() {
        let message = timeout("CallOptions::timeout", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("CallOptions::timeout of 0ns is out of range: use 1ms to"),
            "{message}"
        );
    }
}
