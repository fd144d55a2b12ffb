//! Sliding-window log: the timestamp of every admitted request in the last period.
//!
//! Exact — at most `limit` in *any* span of one period — at the price of O(limit) memory per
//! key (a Redis sorted set with one member per admitted request).

use std::collections::VecDeque;

use super::Algorithm;
use crate::{Decision, Quota};

/// Sliding-window log over a [`Quota`] (`burst` is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingLog {
    /// The validated quota.
    quota: Quota,
}

impl SlidingLog {
    /// At most `quota.limit()` requests in any span of `quota.period()`.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }
}

/// Sliding-log state: admitted timestamps, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLogState {
    /// Timestamps (µs) of admitted requests still inside the window, non-decreasing.
    pub log: VecDeque<u64>,
}

impl Algorithm for SlidingLog {
    type State = SlidingLogState;

    fn quota(&self) -> &Quota {
        &self.quota
    }

    fn check(&self, state: &mut SlidingLogState, now: u64) -> Decision {
        let period = self.quota.period_micros();
        let limit = self.quota.limit();
        // Clamp to the newest entry so the log stays sorted if the clock steps back.
        let now = state.log.back().map_or(now, |&newest| now.max(newest));
        // An entry at t counts while t + period > now.
        while state
            .log
            .front()
            .is_some_and(|&t| t.saturating_add(period) <= now)
        {
            state.log.pop_front();
        }
        let count = state.log.len() as u64;
        if count < limit {
            state.log.push_back(now);
            return Decision::allowed(limit, limit - count - 1, period);
        }
        // Non-empty: count >= limit >= 1.
        let oldest = state.log.front().copied().unwrap_or(now);
        let newest = state.log.back().copied().unwrap_or(now);
        Decision::denied(
            limit,
            newest.saturating_add(period) - now,
            oldest.saturating_add(period) - now,
        )
    }

    fn is_idle(&self, state: &SlidingLogState, now: u64) -> bool {
        state
            .log
            .back()
            .is_none_or(|&t| t.saturating_add(self.quota.period_micros()) <= now)
    }
}
