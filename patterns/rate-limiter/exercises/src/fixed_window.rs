//! Exercise step 1 — the fixed window (see `exercises/step1.md`).
//!
//! Implement `check` and `is_idle`: count requests per period-aligned window, admit while the
//! count is below the limit, and tell a denied client exactly when the window ends.
#![allow(
    clippy::todo,
    unused_variables,
    reason = "workshop stub: the learner replaces each todo!() with the implementation"
)]

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
        // 1. The window containing `now` starts at now - now % period.
        // 2. A different window than the stored one starts with a count of 0.
        // 3. Below the limit: count it, Decision::allowed(limit, remaining, µs to window end).
        // 4. Otherwise Decision::denied(limit, reset, retry) with both = µs to window end.
        todo!("step 1: fixed window check")
    }

    fn is_idle(&self, state: &FixedWindowState, now: u64) -> bool {
        todo!("step 1: idle once the stored window has ended")
    }
}
