//! Counters a consumer exposes, readable from tests and demos while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Cheap-`Clone` handle to one consumer's counters; clones share them.
///
/// Outcome counters (applied, duplicates, …) move only after the batch's transaction has
/// committed, so they describe what Postgres holds, not what was attempted.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    gaps: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    abandoned: AtomicU64,
    batches: AtomicU64,
    offset_commit_failures: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Events whose effect was applied.
    pub applied: u64,
    /// Messages skipped because their key was already in the inbox.
    pub duplicates: u64,
    /// Events skipped because their aggregate had already passed their sequence number.
    pub stale: u64,
    /// Events applied although earlier sequence numbers of their aggregate were missing
    /// ([`GapPolicy::Apply`](crate::GapPolicy::Apply)).
    pub gaps: u64,
    /// Handler attempts that failed transiently and were retried.
    pub retries: u64,
    /// Messages written to the dead-letter queue.
    pub dead_lettered: u64,
    /// Polled messages dropped unprocessed because their partition was revoked.
    pub abandoned: u64,
    /// Batches committed to Postgres.
    pub batches: u64,
    /// Offset commits Kafka rejected (e.g. during a rebalance); the messages are redelivered
    /// and deduplicated.
    pub offset_commit_failures: u64,
}

/// What one committed batch did; added to [`Metrics`] after the commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BatchTally {
    pub(crate) applied: u64,
    pub(crate) duplicates: u64,
    pub(crate) stale: u64,
    pub(crate) gaps: u64,
    pub(crate) dead_lettered: u64,
}

impl BatchTally {
    pub(crate) fn add(&mut self, o: Self) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.stale += o.stale;
        self.gaps += o.gaps;
        self.dead_lettered += o.dead_lettered;
    }
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            applied: get(&c.applied),
            duplicates: get(&c.duplicates),
            stale: get(&c.stale),
            gaps: get(&c.gaps),
            retries: get(&c.retries),
            dead_lettered: get(&c.dead_lettered),
            abandoned: get(&c.abandoned),
            batches: get(&c.batches),
            offset_commit_failures: get(&c.offset_commit_failures),
        }
    }

    pub(crate) fn add_batch(&self, t: BatchTally) {
        let c = &self.0;
        c.applied.fetch_add(t.applied, Ordering::Relaxed);
        c.duplicates.fetch_add(t.duplicates, Ordering::Relaxed);
        c.stale.fetch_add(t.stale, Ordering::Relaxed);
        c.gaps.fetch_add(t.gaps, Ordering::Relaxed);
        c.dead_lettered
            .fetch_add(t.dead_lettered, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.0.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn abandoned(&self, n: u64) {
        self.0.abandoned.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn offset_commit_failed(&self) {
        self.0
            .offset_commit_failures
            .fetch_add(1, Ordering::Relaxed);
    }
}
