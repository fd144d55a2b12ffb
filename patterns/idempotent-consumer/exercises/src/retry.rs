//! Exercise (step 3): bounded retries with exponential backoff and full jitter, then the
//! dead-letter queue.
//!
//! Implement [`RetryPolicy::ceiling`], [`RetryPolicy::max_total_delay`] and
//! [`RetryPolicy::decide`]. The type and its constructor are given, in `src/retry_policy.rs`. Run `make exercise
//! NAME=idempotent-consumer STEP=3` and read `exercises/step3.md` for hints.
#![allow(
    clippy::todo,
    unused_variables,
    reason = "workshop stubs: the learner replaces each todo!() body"
)]

use std::time::Duration;

use crate::{Decision, HandlerError, RetryPolicy};

impl RetryPolicy {
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
