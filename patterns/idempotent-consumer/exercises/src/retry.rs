//! Exercise (step 3): bounded retries with exponential backoff and full jitter, then the
//! dead-letter queue.
//!
//! Implement [`RetryPolicy::ceiling`], [`RetryPolicy::max_total_delay`] and
//! [`RetryPolicy::decide`]. The constructor is given. Run `make exercise
//! NAME=idempotent-consumer STEP=3` and read `exercises/step3.md` for hints.
#![allow(
    clippy::todo,
    unused_variables,
    reason = "workshop stubs: the learner replaces each todo!() body"
)]

use std::num::NonZeroU32;
use std::time::Duration;

use crate::{ConfigError, HandlerError};

/// How often and how patiently a failing message is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first.
    max_attempts: NonZeroU32,
    /// Ceiling of the first retry's delay; doubles per attempt.
    base: Duration,
    /// Upper bound of any single delay.
    cap: Duration,
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
    /// 5 attempts, 50 ms base, 1 s cap.
    fn default() -> Self {
        Self {
            max_attempts: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// Given: a policy of `max_attempts` attempts.
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

    /// Given: attempts in total, including the first.
    pub fn max_attempts(&self) -> NonZeroU32 {
        self.max_attempts
    }

    /// `min(cap, base · 2^(attempt-1))` for failed attempt number `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        todo!("double per attempt without overflowing, then cap")
    }

    /// Sum of the ceilings of every retry a message can get.
    pub fn max_total_delay(&self) -> Duration {
        todo!("attempts 1..max_attempts are followed by a retry")
    }

    /// Decides after failed attempt `attempt`; `random` is uniform in `[0, 1)`.
    pub fn decide(&self, attempt: u32, error: &HandlerError, random: f64) -> Decision {
        todo!("permanent or out of attempts → DeadLetter; else Retry after ceiling × random")
    }
}
