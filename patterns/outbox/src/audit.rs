//! Checking a consumed stream against the outbox guarantees: nothing lost, order per aggregate.
//!
//! Used by the tests and the demo, and by anyone who wants to verify a topic in production
//! (e.g. a canary consumer). Feed records in the order one consumer saw them; since a key lives in
//! one partition, that is the publish order per aggregate.

use std::collections::{BTreeMap, HashMap};

/// How one observed record relates to what came before for its aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The next sequence (`max seen + 1`): progress in order.
    InOrder,
    /// A sequence already seen: a replay after a crash. Harmless for an idempotent consumer.
    Duplicate,
    /// A new sequence that skips ahead (gap) or fills one late: the order guarantee is broken.
    Violation,
}

/// Running per-aggregate audit of delivered sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct SequenceAudit {
    /// Per aggregate key: highest sequence delivered in order so far.
    highest: HashMap<String, i64>,
    /// Records observed.
    delivered: u64,
    /// Replays of already seen sequences.
    duplicates: u64,
    /// Sequences out of order.
    violations: u64,
}

/// Totals of a [`SequenceAudit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditReport {
    /// Records observed, duplicates included.
    pub delivered: u64,
    /// Distinct events delivered in order.
    pub unique: u64,
    /// Records that repeated an already delivered sequence.
    pub duplicates: u64,
    /// Records that broke per-aggregate order.
    pub violations: u64,
}

impl SequenceAudit {
    /// Records one delivery of `sequence` (starting at 1) for `aggregate`.
    pub fn observe(&mut self, aggregate: &str, sequence: i64) -> Observation {
        self.delivered += 1;
        let highest = self.highest.entry(aggregate.to_owned()).or_insert(0);
        let seen = if sequence == *highest + 1 {
            *highest = sequence;
            Observation::InOrder
        } else if sequence <= *highest {
            Observation::Duplicate
        } else {
            Observation::Violation
        };
        match seen {
            Observation::Duplicate => self.duplicates += 1,
            Observation::Violation => self.violations += 1,
            Observation::InOrder => {}
        }
        seen
    }

    /// Highest in-order sequence per aggregate (for "nothing lost" checks against the writer).
    pub fn highest(&self) -> BTreeMap<&str, i64> {
        self.highest.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    /// Totals so far.
    pub fn report(&self) -> AuditReport {
        AuditReport {
            delivered: self.delivered,
            unique: self
                .highest
                .values()
                .map(|v| u64::try_from(*v).unwrap_or(0))
                .sum(),
            duplicates: self.duplicates,
            violations: self.violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_replay_from_the_head_is_duplicates_not_violations() {
        let mut audit = SequenceAudit::default();
        for s in [1, 2, 3, 1, 2, 3, 4] {
            audit.observe("a", s);
        }
        let r = audit.report();
        assert_eq!(
            (r.delivered, r.unique, r.duplicates, r.violations),
            (7, 4, 3, 0)
        );
    }

    #[test]
    fn a_gap_is_a_violation() {
        let mut audit = SequenceAudit::default();
        assert_eq!(audit.observe("a", 1), Observation::InOrder);
        assert_eq!(audit.observe("a", 3), Observation::Violation);
        assert_eq!(audit.report().violations, 1);
    }

    proptest! {
        /// Any interleaving of two replays of the same ascending run (a crashed relay's late
        /// records and its successor's) is violation-free.
        #[test]
        fn interleaved_replays_never_count_as_violations(
            n in 1i64..30, m in 1i64..30, picks in proptest::collection::vec(any::<bool>(), 0..80)
        ) {
            let (mut a, mut b) = (1..=n, 1..=m.max(n));
            let mut audit = SequenceAudit::default();
            for pick in picks {
                let next = if pick { a.next().or_else(|| b.next()) } else { b.next().or_else(|| a.next()) };
                if let Some(s) = next { audit.observe("x", s); }
            }
            for s in a.chain(b) { audit.observe("x", s); }
            prop_assert_eq!(audit.report().violations, 0);
            prop_assert_eq!(audit.report().unique, u64::try_from(m.max(n)).unwrap_or(0));
        }
    }
}
