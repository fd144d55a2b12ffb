//! The retry policy's configuration and its validation.
//!
//! The backoff arithmetic and the retry-or-dead-letter decision live in `retry.rs`, which the
//! workshop replaces with `exercises/src/retry.rs`; this file is shared by both copies.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::ConfigError;

/// How often and how patiently a failing message is retried.
///
/// While a message is retried, later messages of the *same partition* wait: per-partition
/// order is what the per-aggregate sequence relies on. Other partitions are not delayed by
/// the backoff itself but share the consumer's loop, so the total delay is bounded
/// ([`RetryPolicy::max_total_delay`]) and should stay well below `max.poll.interval.ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first.
    pub(crate) max_attempts: NonZeroU32,
    /// Ceiling of the first retry's delay; doubles per attempt.
    pub(crate) base: Duration,
    /// Upper bound of any single delay.
    pub(crate) cap: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Roll back to the message's savepoint, sleep, try again.
    Retry {
        /// How long to wait first.
        after: Duration,
    },
    /// Give up: write the message to the dead-letter queue and move on.
    DeadLetter,
}

impl Default for RetryPolicy {
    /// 5 attempts, 50 ms base, 1 s cap: at most ~1.75 s of waiting per message.
    fn default() -> Self {
        Self {
            max_attempts: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts with delays drawn from `[0, min(cap, base·2ⁿ⁻¹)]`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidBackoff`] if `base` is zero or larger than `cap`.
    pub fn new(
        max_attempts: NonZeroU32,
        base: Duration,
        cap: Duration,
    ) -> Result<Self, ConfigError> {
        if base.is_zero() || base > cap {
            return Err(ConfigError::InvalidBackoff);
        }
        Ok(Self {
            max_attempts,
            base,
            cap,
        })
    }

    /// Attempts in total, including the first.
    pub fn max_attempts(&self) -> NonZeroU32 {
        self.max_attempts
    }
}
