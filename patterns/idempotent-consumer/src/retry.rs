//! Bounded retries: exponential backoff with full jitter, then the dead-letter queue.

use std::time::Duration;

use crate::{Decision, HandlerError, RetryPolicy};

impl RetryPolicy {
    /// The largest delay the jitter may pick after failed attempt number `attempt` (1-based):
    /// `min(cap, base · 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Upper bound of all delays a single message can accumulate.
    pub fn max_total_delay(&self) -> Duration {
        (1..self.max_attempts.get()).map(|a| self.ceiling(a)).sum()
    }

    /// Decides after failed attempt number `attempt` (1-based); `random` is uniform in `[0, 1)`.
    ///
    /// Full jitter (a uniform pick in `[0, ceiling]`, not `ceiling ± x`): consumers that failed
    /// together on the same outage then retry spread out instead of in synchronized waves
    /// that knock the recovering dependency over again.
    pub fn decide(&self, attempt: u32, error: &HandlerError, random: f64) -> Decision {
        if !error.is_transient() || attempt >= self.max_attempts.get() {
            return Decision::DeadLetter;
        }
        let after = self.ceiling(attempt).mul_f64(random.clamp(0.0, 1.0));
        Decision::Retry { after }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::ConfigError;
    use proptest::prelude::*;

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy::new(
            NonZeroU32::new(attempts).expect("non-zero"),
            Duration::from_millis(10),
            Duration::from_millis(200),
        )
        .expect("valid")
    }

    #[test]
    fn a_permanent_error_is_dead_lettered_on_the_first_attempt() {
        let d = policy(5).decide(1, &HandlerError::permanent("bad"), 0.5);
        assert_eq!(d, Decision::DeadLetter);
    }

    #[test]
    fn a_transient_error_is_dead_lettered_once_attempts_run_out() {
        let p = policy(3);
        let e = HandlerError::transient("busy");
        assert!(matches!(p.decide(1, &e, 0.5), Decision::Retry { .. }));
        assert!(matches!(p.decide(2, &e, 0.5), Decision::Retry { .. }));
        assert_eq!(p.decide(3, &e, 0.5), Decision::DeadLetter);
    }

    #[test]
    fn an_invalid_backoff_is_rejected() {
        let one = NonZeroU32::MIN;
        assert_eq!(
            RetryPolicy::new(one, Duration::ZERO, Duration::from_secs(1)),
            Err(ConfigError::InvalidBackoff)
        );
        assert_eq!(
            RetryPolicy::new(one, Duration::from_secs(2), Duration::from_secs(1)),
            Err(ConfigError::InvalidBackoff)
        );
    }

    proptest! {
        #[test]
        fn delays_stay_within_the_doubling_ceiling_and_the_cap(
            attempt in 1u32..64, random in 0.0f64..1.0
        ) {
            let p = policy(64);
            let Decision::Retry { after } = p.decide(attempt, &HandlerError::transient("x"), random)
            else {
                return Err(TestCaseError::fail("transient below max attempts must retry"));
            };
            prop_assert!(after <= p.ceiling(attempt));
            prop_assert!(p.ceiling(attempt) <= Duration::from_millis(200));
            prop_assert!(p.ceiling(attempt) <= p.ceiling(attempt + 1));
        }
    }
}
