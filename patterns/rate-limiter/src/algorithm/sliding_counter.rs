//! Sliding-window counter: the two-counter approximation of a sliding window.
//!
//! Keeps the counts of the current and the previous aligned window and estimates the count in
//! the last period as `previous × (period − elapsed) / period + current`, i.e. it assumes the
//! previous window's requests were spread evenly. Admits when `estimate + 1 ≤ limit`, computed
//! without division as `previous × (period − elapsed) + (current + 1) × period ≤ limit × period`
//! so Rust and Lua agree exactly.
//!
//! Bound: at most `limit` per aligned window; in an arbitrary span of one period the estimate
//! can undercount a previous window whose requests were bunched at its end, so the hard bound
//! is `2 × limit` (in practice far closer to `limit`; the sliding log is the exact variant).

use super::Algorithm;
use crate::{Decision, Quota};

/// Sliding-window counter over a [`Quota`] (`burst` is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingCounter {
    /// The validated quota.
    quota: Quota,
}

impl SlidingCounter {
    /// About `quota.limit()` requests per sliding `quota.period()`, two counters per key.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }
}

/// Sliding-counter state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingCounterState {
    /// Start of the current window, µs.
    pub window: u64,
    /// Requests admitted in the window before `window`.
    pub previous: u64,
    /// Requests admitted in the current window.
    pub current: u64,
}

impl Algorithm for SlidingCounter {
    type State = SlidingCounterState;

    fn quota(&self) -> &Quota {
        &self.quota
    }

    fn check(&self, state: &mut SlidingCounterState, now: u64) -> Decision {
        let (p, limit) = (self.quota.period_micros(), self.quota.limit());
        let now = now.max(state.window);
        roll(state, now - now % p, p);
        let (start, prev, cur) = (state.window, state.previous, state.current);
        let elapsed = now - start;
        if prev * (p - elapsed) + (cur + 1) * p <= limit * p {
            state.current += 1;
            let remaining = (limit * p - prev * (p - elapsed) - state.current * p) / p;
            return Decision::allowed(limit, remaining, start.saturating_add(2 * p) - now);
        }
        let horizon = if cur > 0 { 2 * p } else { p };
        let reset = start.saturating_add(horizon) - now;
        let earliest = earliest_admission(start, prev, cur, limit, p);
        let retry = earliest.max(now.saturating_add(1)) - now;
        Decision::denied(limit, reset, retry)
    }

    fn is_idle(&self, state: &SlidingCounterState, now: u64) -> bool {
        let p = self.quota.period_micros();
        let horizon = if state.current > 0 { 2 * p } else { p };
        (state.previous == 0 && state.current == 0) || state.window.saturating_add(horizon) <= now
    }
}

/// Moves the state into the window starting at `start`.
fn roll(state: &mut SlidingCounterState, start: u64, period: u64) {
    if start == state.window {
        return;
    }
    state.previous = if start == state.window.saturating_add(period) {
        state.current
    } else {
        0
    };
    state.current = 0;
    state.window = start;
}

/// The first instant at which one more request is admitted, given no other traffic.
///
/// Within the current window the previous count's weight falls as `elapsed` grows: admission
/// needs `prev × (p − e) ≤ (limit − cur − 1) × p`, i.e. `e ≥ p − ⌊(limit − cur − 1) × p / prev⌋`.
/// If that is not reached before the window ends, the current count becomes the previous one
/// and the same formula applies with `cur = 0`.
fn earliest_admission(start: u64, prev: u64, cur: u64, limit: u64, p: u64) -> u64 {
    if cur < limit && prev > 0 {
        let e = p.saturating_sub((limit - cur - 1) * p / prev);
        if e < p {
            return start.saturating_add(e);
        }
    }
    if cur == 0 {
        return start.saturating_add(p);
    }
    let e = p.saturating_sub((limit - 1) * p / cur);
    start.saturating_add(p + e)
}
