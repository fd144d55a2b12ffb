//! Redis availability as seen by one limiter: logged once per transition, counted always.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters describing how a [`DistributedLimiter`](crate::DistributedLimiter) has fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Whether the last Redis call succeeded.
    pub redis_up: bool,
    /// Transitions from up to down (one per outage, however many requests it affected).
    pub outages: u64,
    /// Transitions from down to up.
    pub recoveries: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    /// Decisions taken by the failure policy instead of Redis.
    pub policy_decisions: u64,
    /// Denials answered from the local deny cache without a Redis call.
    pub deny_cache_hits: u64,
}

/// Live counters behind a [`HealthSnapshot`].
#[derive(Debug)]
pub(crate) struct Health {
    /// Last observed state.
    up: AtomicBool,
    /// See [`HealthSnapshot::outages`].
    outages: AtomicU64,
    /// See [`HealthSnapshot::recoveries`].
    recoveries: AtomicU64,
    /// See [`HealthSnapshot::redis_errors`].
    errors: AtomicU64,
    /// See [`HealthSnapshot::policy_decisions`].
    pub(crate) policy_decisions: AtomicU64,
    /// See [`HealthSnapshot::deny_cache_hits`].
    pub(crate) deny_cache_hits: AtomicU64,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            up: AtomicBool::new(true),
            outages: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            policy_decisions: AtomicU64::new(0),
            deny_cache_hits: AtomicU64::new(0),
        }
    }

    /// A call succeeded. Logs only on the down → up edge.
    pub(crate) fn mark_up(&self) {
        // A plain load first: the common case (already up) must not write the cache line.
        if !self.up.load(Ordering::Relaxed) && !self.up.swap(true, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            tracing::info!("Redis rate limiting recovered");
        }
    }

    /// A call failed. Logs only on the up → down edge, so an outage under load is one line.
    pub(crate) fn mark_down(&self, error: &dyn std::error::Error, policy: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.load(Ordering::Relaxed) && self.up.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, policy, "Redis rate limiting unavailable, applying failure policy");
        }
    }

    pub(crate) fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            redis_up: self.up.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            recoveries: self.recoveries.load(Ordering::Relaxed),
            redis_errors: self.errors.load(Ordering::Relaxed),
            policy_decisions: self.policy_decisions.load(Ordering::Relaxed),
            deny_cache_hits: self.deny_cache_hits.load(Ordering::Relaxed),
        }
    }
}
