//! Exponential backoff between failed claims (broker down, database unreachable).

use std::time::Duration;

/// Doubling delay between `min` and `max`, reset by the first success.
///
/// No jitter: a handful of relays retrying in step is harmless for Postgres and Kafka, and a
/// deterministic schedule keeps the behaviour testable with paused time.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// First delay after a success.
    min: Duration,
    /// Ceiling for the delay.
    max: Duration,
    /// Delay the next failure will wait.
    next: Duration,
}

impl Backoff {
    /// `min <= max` is validated by the relay builder.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; doubles the next one up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// Back to `min` after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_until_the_ceiling_and_reset_on_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds_and_never_shrink(min_ms in 1u64..1_000, extra in 0u64..100_000, n in 1usize..80) {
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(min_ms + extra));
            let mut b = Backoff::new(min, max);
            let mut last = Duration::ZERO;
            for _ in 0..n {
                let d = b.next_delay();
                prop_assert!(d >= min && d <= max && d >= last);
                last = d;
            }
        }
    }
}
