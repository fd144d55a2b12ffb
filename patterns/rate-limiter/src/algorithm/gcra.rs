//! GCRA, the generic cell rate algorithm (ITU-T I.371 "virtual scheduling").
//!
//! One number of state per key: the theoretical arrival time (TAT) — when the key would be
//! fully idle again if requests kept arriving at exactly the quota's rate. A request is
//! admitted if, after adding its interval to the TAT, the TAT is no more than τ = burst ×
//! interval ahead of now. One integer makes it the cheapest algorithm to store (one Redis
//! string) and to update atomically in process (one `AtomicU64`, see
//! [`GcraLimiter`](crate::GcraLimiter)).
//!
//! Bound: over any span of `W` µs it admits at most `burst + ⌊W / interval⌋` requests.

use super::Algorithm;
use crate::{Decision, Quota};

/// GCRA over a [`Quota`]: one request per interval, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// The validated quota.
    quota: Quota,
}

impl Gcra {
    /// GCRA for `quota`.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }
}

/// The pure GCRA step: the decision, and the new TAT to store when admitted.
///
/// Shared by the `&mut` state form and the lock-free CAS loop so both stay identical (and
/// identical to `lua/gcra.lua`).
#[inline]
#[must_use]
pub fn decide(quota: &Quota, stored_tat: u64, now: u64) -> (Decision, Option<u64>) {
    decide_with(
        quota.limit(),
        quota.interval_micros(),
        quota.tolerance_micros(),
        stored_tat,
        now,
    )
}

/// [`decide`] with the quota's derived values passed in, so a hot loop computes them once.
#[inline]
#[must_use]
pub fn decide_with(
    limit: u64,
    interval: u64,
    tau: u64,
    stored_tat: u64,
    now: u64,
) -> (Decision, Option<u64>) {
    // Denial is decided from the stored TAT alone: if stored ≤ now the request always
    // conforms (interval ≤ τ because burst ≥ 1), so `max(stored, now)` is only needed on the
    // admit path. Same decisions as lua/gcra.lua, two instructions fewer on the hot path.
    let allow_at = stored_tat.saturating_add(interval).saturating_sub(tau);
    if now < allow_at {
        return (
            Decision::denied(limit, stored_tat - now, allow_at - now),
            None,
        );
    }
    let new_tat = stored_tat.max(now).saturating_add(interval);
    let remaining = (tau - (new_tat - now)) / interval;
    (
        Decision::allowed(limit, remaining, new_tat - now),
        Some(new_tat),
    )
}

impl Algorithm for Gcra {
    /// The theoretical arrival time in µs (0 = never seen, which behaves as idle).
    type State = u64;

    fn quota(&self) -> &Quota {
        &self.quota
    }

    fn check(&self, state: &mut u64, now: u64) -> Decision {
        let (decision, new_tat) = decide(&self.quota, *state, now);
        if let Some(tat) = new_tat {
            *state = tat;
        }
        decision
    }

    fn is_idle(&self, state: &u64, now: u64) -> bool {
        *state <= now
    }
}
