//! Leaky bucket as a meter (ITU-T I.371 "continuous-state leaky bucket").
//!
//! The bucket holds *time*: each admitted request pours in one interval's worth of µs, and the
//! bucket drains one µs per µs. A request that would overflow the capacity (burst × interval)
//! is denied and pours nothing. This is the dual of [`Gcra`](super::Gcra): `level = TAT − now`,
//! so the two admit exactly the same sequences; the meter form stores the level and the time of
//! the last conforming request instead of one timestamp. (The *queue* form of the leaky bucket
//! delays requests instead of rejecting them; a rate limiter that answers 429 is the meter.)
//!
//! Bound: over any span of `W` µs it admits at most `burst + ⌊W / interval⌋` requests.

use super::Algorithm;
use crate::{Decision, Quota};

/// Leaky bucket (meter) over a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakyBucket {
    /// The validated quota.
    quota: Quota,
}

impl LeakyBucket {
    /// A bucket of capacity `burst × interval` µs, draining 1 µs per µs.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self { quota }
    }
}

/// Leaky bucket state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakyBucketState {
    /// Bucket content in µs at `last`.
    pub level: u64,
    /// Time of the last update, µs.
    pub last: u64,
}

impl Algorithm for LeakyBucket {
    type State = LeakyBucketState;

    fn quota(&self) -> &Quota {
        &self.quota
    }

    fn check(&self, state: &mut LeakyBucketState, now: u64) -> Decision {
        let interval = self.quota.interval_micros();
        let capacity = self.quota.tolerance_micros();
        let level = state.level.saturating_sub(now.saturating_sub(state.last));
        let poured = level + interval;
        if poured > capacity {
            return Decision::denied(self.quota.limit(), level, poured - capacity);
        }
        state.level = poured;
        state.last = state.last.max(now);
        Decision::allowed(self.quota.limit(), (capacity - poured) / interval, poured)
    }

    fn is_idle(&self, state: &LeakyBucketState, now: u64) -> bool {
        state.last.saturating_add(state.level) <= now
    }
}
