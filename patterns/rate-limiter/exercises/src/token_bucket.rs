//! Exercise step 2 — the token bucket (see `exercises/step2.md`).
//!
//! Implement `check` and `is_idle` with integer arithmetic only: whole elapsed intervals become
//! tokens, and `last` advances by exactly that many intervals so no fraction is lost.
#![allow(
    clippy::todo,
    unused_variables,
    reason = "workshop stub: the learner replaces each todo!() with the implementation"
)]

use super::Algorithm;
use crate::{Decision, Quota};

/// Token bucket over a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// The validated quota.
    quota: Quota,
}

impl TokenBucket {
    /// A token bucket holding `quota.burst()` tokens, refilled one per `quota.interval()`.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }
}

/// Token bucket state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucketState {
    /// Tokens spent and not yet refilled (0 = full bucket).
    pub used: u64,
    /// When the next token's refill period started, µs.
    pub last: u64,
}

impl Algorithm for TokenBucket {
    type State = TokenBucketState;

    fn quota(&self) -> &Quota {
        &self.quota
    }

    fn check(&self, state: &mut TokenBucketState, now: u64) -> Decision {
        // 1. Refill: tokens = (now - last) / interval; if that covers `used`, the bucket is
        //    full (used = 0, last = now); else used -= tokens, last += tokens * interval.
        // 2. used < burst: spend one; remaining = burst - used; reset = last + used*interval - now.
        // 3. Otherwise denied; the next token arrives at last + interval.
        todo!("step 2: token bucket check")
    }

    fn is_idle(&self, state: &TokenBucketState, now: u64) -> bool {
        todo!("step 2: idle once every used token has been refilled")
    }
}
