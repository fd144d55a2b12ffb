//! Capped exponential backoff with full jitter.

use std::time::Duration;

use rand::Rng;

use crate::error::BackoffError;

/// A retry schedule: the ceiling doubles per attempt up to a cap; the delay is random below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay (attempt 0).
    base: Duration,
    /// No ceiling grows beyond this.
    cap: Duration,
}

impl Backoff {
    /// A schedule starting at `base` and never exceeding `cap`.
    ///
    /// # Errors
    /// [`BackoffError::ZeroBase`] or [`BackoffError::CapBelowBase`].
    pub fn new(base: Duration, cap: Duration) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if cap < base {
            return Err(BackoffError::CapBelowBase { base, cap });
        }
        Ok(Self { base, cap })
    }

    /// The largest delay attempt `attempt` may wait: `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // checked_* so that a huge attempt number saturates at the cap instead of overflowing.
        2u32.checked_pow(attempt)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`.
    ///
    /// Full jitter (rather than `ceiling/2 + random/2`) spreads clients the most; the AWS
    /// architecture blog's "Exponential Backoff And Jitter" measures why.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_delay_exceeds_its_ceiling_or_the_cap(
            base_ms in 1u64..1_000, extra_ms in 0u64..100_000, attempt in any::<u32>(), seed in any::<u64>()
        ) {
            use rand::SeedableRng;
            let b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(base_ms + extra_ms))
                .expect("valid by construction");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = b.delay(attempt, &mut rng);
            prop_assert!(d <= b.ceiling(attempt));
            prop_assert!(b.ceiling(attempt) <= Duration::from_millis(base_ms + extra_ms));
        }
    }
}
