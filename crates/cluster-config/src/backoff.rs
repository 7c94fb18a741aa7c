//! The one exponential backoff of the workspace: every retry loop paces itself with it, so that a
//! delay curve is defined (and tested) in one place.

use std::time::Duration;

use crate::settings::RetryConfig;

/// Exponential backoff: `initial_delay`, then each delay `multiplier` times the one before, never more
/// than `max_delay`. Pure arithmetic, without jitter and without overflow whatever the numbers.
///
/// Built from a [`RetryConfig`] (`Backoff::from(config.retry())`) or from explicit values. Ask for the
/// delay before a given retry with [`Backoff::delay`], or walk the curve with [`Backoff::next_delay`]
/// (or as an endless iterator).
///
/// ```
/// use std::time::Duration;
/// use cluster_config::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), 2, Duration::from_millis(500));
/// let delays: Vec<u128> = backoff.by_ref().take(5).map(|d| d.as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 500, 500]);
/// assert_eq!(backoff.delay(2), Duration::from_millis(200)); // retry 2, whatever was walked
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial_delay: Duration,
    multiplier: u32,
    max_delay: Duration,
    /// Retries already handed out by `next_delay`.
    retries: u32,
}

impl Backoff {
    /// A backoff from `initial_delay`, times `multiplier` per retry (0 and 1 keep the delay constant),
    /// capped at `max_delay`.
    pub fn new(initial_delay: Duration, multiplier: u32, max_delay: Duration) -> Backoff {
        Backoff {
            initial_delay,
            multiplier: multiplier.max(1),
            max_delay,
            retries: 0,
        }
    }

    /// The delay before retry number `retry` (1 for the first; 0 counts as 1):
    /// `min(max_delay, initial_delay × multiplier^(retry − 1))`.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = self.multiplier.saturating_pow(retry.saturating_sub(1));
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// [`Backoff::delay`] with "equal jitter": a uniformly random point between half the delay and the
    /// whole of it. Many clients that hit the same transient error at once (a failover, a slot
    /// migration) then spread their retries instead of arriving together, while none waits longer than
    /// the curve says, and none retries at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cluster_config::Backoff;
    ///
    /// let backoff = Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(3));
    /// let pause = backoff.jittered(2);
    /// assert!(pause >= Duration::from_millis(100) && pause <= Duration::from_millis(200));
    /// ```
    pub fn jittered(&self, retry: u32) -> Duration {
        let delay = self.delay(retry);
        let half = delay / 2;
        // `mul_f64` cannot overflow here: the factor is at most 1 and `delay - half` is a Duration.
        half + (delay - half).mul_f64(fastrand::f64())
    }

    /// The delay before the next retry, counting it.
    pub fn next_delay(&mut self) -> Duration {
        self.retries = self.retries.saturating_add(1);
        self.delay(self.retries)
    }

    /// Starts the curve again from `initial_delay`, as after a success.
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// Retries handed out by [`Backoff::next_delay`] since the start or the last reset.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

impl From<&RetryConfig> for Backoff {
    fn from(retry: &RetryConfig) -> Backoff {
        Backoff::new(retry.initial_delay, retry.backoff_multiplier, retry.max_delay)
    }
}

/// Endless: a backoff always has a next delay; bound the retries with `take` or a deadline.
impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(initial_ms: u64, multiplier: u32, max_ms: u64, retry: u32, want: Duration) {
        let backoff = Backoff::new(
            Duration::from_millis(initial_ms),
            multiplier,
            Duration::from_millis(max_ms),
        );
        assert_eq!(
            backoff.delay(retry),
            want,
            "{initial_ms} ms x{multiplier} max {max_ms} ms, retry {retry}"
        );
    }

    #[test]
    fn delays_grow_and_stay_bounded() {
        let ms = Duration::from_millis;
        check(100, 2, 3000, 0, ms(100));
        check(100, 2, 3000, 1, ms(100));
        check(100, 2, 3000, 2, ms(200));
        check(100, 2, 3000, 6, ms(3000));
        check(100, 2, 3000, u32::MAX, ms(3000));
        check(100, 1, 3000, 50, ms(100));
        check(100, 0, 3000, 50, ms(100));
        check(100, 3, 3000, 3, ms(900));
        check(5000, 2, 3000, 1, ms(3000));
        check(u64::MAX, u32::MAX, u64::MAX, u32::MAX, ms(u64::MAX));
        assert_eq!(
            Backoff::new(Duration::MAX, 2, Duration::from_secs(30)).delay(u32::MAX),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_delay() {
        let ms = Duration::from_millis;
        let backoff = Backoff::new(ms(100), 2, ms(3000));
        let pauses: Vec<Duration> = (0..2000).map(|_| backoff.jittered(3)).collect();
        assert!(
            pauses.iter().all(|p| (ms(200)..=ms(400)).contains(p)),
            "{pauses:?}"
        );
        // Spread, not one value: both halves of the range are used.
        assert!(pauses.iter().any(|p| *p < ms(300)) && pauses.iter().any(|p| *p > ms(300)));
        let zero = Backoff::new(Duration::ZERO, 2, ms(10));
        assert_eq!(zero.jittered(5), Duration::ZERO);
        let huge = Backoff::new(Duration::MAX, u32::MAX, Duration::MAX);
        assert!(huge.jittered(u32::MAX) >= Duration::MAX / 2);
    }

    #[test]
    fn walking_the_curve_counts_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(1), 10, Duration::from_secs(1));
        let walked: Vec<Duration> = backoff.by_ref().take(5).collect();
        assert_eq!(walked, [1, 10, 100, 1000, 1000].map(Duration::from_millis));
        assert_eq!(backoff.retries(), 5);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(1));
        assert_eq!(backoff.retries(), 1);
    }
}
