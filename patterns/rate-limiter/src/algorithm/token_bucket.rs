//! Token bucket: `burst` tokens, one refilled every interval, one spent per request.
//!
//! State is counted as tokens *used* rather than tokens left, so the all-zero default state is
//! a full bucket and an absent Redis hash needs no special case. Refill is exact integer
//! arithmetic: whole intervals elapsed since `last` become tokens and `last` advances by exactly
//! that many intervals, so no fraction of a token is ever lost or invented.
//!
//! Bound: over any span of `W` µs it admits at most `burst + ⌊W / interval⌋` requests.

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
        let interval = self.quota.interval_micros();
        let capacity = self.quota.burst();
        refill(state, now, interval);
        // Time until every used token is back: the bucket's "reset".
        let full_at = |used: u64| state.last.saturating_add(used * interval);
        if state.used < capacity {
            state.used += 1;
            let reset = full_at(state.used).saturating_sub(now);
            return Decision::allowed(self.quota.limit(), capacity - state.used, reset);
        }
        let reset = full_at(state.used).saturating_sub(now);
        let retry = state.last.saturating_add(interval).saturating_sub(now);
        Decision::denied(self.quota.limit(), reset, retry)
    }

    fn is_idle(&self, state: &TokenBucketState, now: u64) -> bool {
        let interval = self.quota.interval_micros();
        state
            .last
            .saturating_add(state.used.saturating_mul(interval))
            <= now
    }
}

/// Turns whole elapsed intervals into tokens. A clock that went backwards refills nothing.
fn refill(state: &mut TokenBucketState, now: u64, interval: u64) {
    if now <= state.last {
        return;
    }
    let tokens = (now - state.last) / interval;
    if tokens >= state.used {
        // Full: restart the refill period at now, or an idle bucket would bank a fraction.
        state.used = 0;
        state.last = now;
    } else {
        state.used -= tokens;
        state.last += tokens * interval;
    }
}
