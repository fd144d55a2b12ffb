//! Fixed window: a counter per period-aligned window.
//!
//! Windows are aligned to multiples of the period on the clock's axis (for Redis, the Unix
//! epoch), so every instance and the server agree on where a window starts.
//!
//! Bound: at most `limit` per aligned window, but up to `2 × limit` in a span of one period
//! that straddles a boundary (the end of one window and the start of the next).

use super::Algorithm;
use crate::{Decision, Quota};

/// Fixed window over a [`Quota`] (`burst` is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    /// The validated quota.
    quota: Quota,
}

impl FixedWindow {
    /// `quota.limit()` requests per aligned `quota.period()` window.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }
}

/// Fixed window state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    /// Start of the window `count` belongs to, µs.
    pub window: u64,
    /// Requests admitted in that window.
    pub count: u64,
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    fn quota(&self) -> &Quota {
        &self.quota
    }

    fn check(&self, state: &mut FixedWindowState, now: u64) -> Decision {
        let period = self.quota.period_micros();
        let limit = self.quota.limit();
        // A clock that went backwards stays in the newest window seen.
        let now = now.max(state.window);
        let window = now - now % period;
        if window != state.window {
            state.window = window;
            state.count = 0;
        }
        let reset = window.saturating_add(period) - now;
        if state.count < limit {
            state.count += 1;
            return Decision::allowed(limit, limit - state.count, reset);
        }
        Decision::denied(limit, reset, reset)
    }

    fn is_idle(&self, state: &FixedWindowState, now: u64) -> bool {
        state.window.saturating_add(self.quota.period_micros()) <= now
    }
}
