//! Workshop copy of `src/backoff.rs`: implement the bodies marked `todo!()`.
//!
//! Run `make exercise NAME=template STEP=1` (then `STEP=2`); the tests that turn green are listed
//! in `exercises/step1.md` and `exercises/step2.md`. The signatures and the error type are given:
//! the tests depend on them.

// The bodies are the exercise: `todo!()` marks what to write, and the parameters are unused
// until it is written.
#![allow(clippy::todo, unused_variables)]

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
    /// Step 1: validate (`ZeroBase`, `CapBelowBase`) and build.
    ///
    /// # Errors
    /// [`BackoffError::ZeroBase`] or [`BackoffError::CapBelowBase`].
    pub fn new(base: Duration, cap: Duration) -> Result<Self, BackoffError> {
        todo!("step 1: reject a zero base and a cap below the base")
    }

    /// Step 1: `min(cap, base * 2^attempt)`, without overflowing for any `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        todo!("step 1: doubling ceiling, saturating at the cap")
    }

    /// Step 2: a delay drawn uniformly from `[0, ceiling(attempt)]` (full jitter).
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        todo!("step 2: full jitter below the ceiling")
    }
}
