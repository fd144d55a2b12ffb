//! Deciding what happens to each claimed row once Kafka has answered.
//!
//! Pure logic, kept apart from I/O so its ordering rule can be property-tested: per aggregate,
//! only the acknowledged PREFIX (in sequence order) is deleted. The first row that was not
//! acknowledged stops its aggregate for this batch: if Kafka rejected it permanently it is parked,
//! otherwise it stays; every later row of that aggregate stays too, even if Kafka acknowledged
//! it. Keeping an acknowledged row means it is published again later (a duplicate); deleting it
//! would let it overtake the row it follows. Duplicates are cheap for an idempotent consumer,
//! reordering is not.

use std::collections::HashSet;

use crate::OutboxRow;

/// What Kafka said about one row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker acknowledged the record (acks=all).
    Acked,
    /// The broker or client refused the record for good (e.g. message too large); retrying the
    /// same bytes can never succeed.
    Rejected(String),
    /// A transient failure (broker down, timeout); retrying later may succeed.
    Failed(String),
    /// Not sent because an earlier row of the same aggregate already failed in this batch.
    NotSent,
}

/// The database changes that close a claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Rows to delete: acknowledged and preceded only by acknowledged rows of their aggregate.
    pub delete: Vec<i64>,
    /// Rows to park with the reason: the first permanently rejected row of an aggregate.
    pub park: Vec<(i64, String)>,
    /// Rows left in the outbox to be claimed again.
    pub kept: usize,
    /// Whether any row failed transiently (the relay backs off before its next claim).
    pub transient_failure: bool,
}

/// Applies the prefix rule to `rows` (each aggregate's rows in ascending sequence order, as
/// [`claim`](crate::claim) returns them) and their `outcomes` (same length, same order).
///
/// Rows without an outcome (a shorter `outcomes`) are kept.
pub fn settle(rows: &[OutboxRow], outcomes: &[Outcome]) -> Settlement {
    let mut plan = Settlement::default();
    let mut stopped: HashSet<(&str, &str)> = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let aggregate = row.aggregate();
        let outcome = outcomes.get(i).unwrap_or(&Outcome::NotSent);
        if stopped.contains(&aggregate) {
            plan.kept += 1;
            continue;
        }
        match outcome {
            Outcome::Acked => plan.delete.push(row.id),
            Outcome::Rejected(reason) => {
                plan.park.push((row.id, reason.clone()));
                stopped.insert(aggregate);
            }
            Outcome::Failed(_) | Outcome::NotSent => {
                plan.transient_failure |= matches!(outcome, Outcome::Failed(_));
                plan.kept += 1;
                stopped.insert(aggregate);
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(id: i64, aggregate: &str, sequence: i64) -> OutboxRow {
        OutboxRow {
            id,
            event_id: uuid::Uuid::nil(),
            aggregate_type: "order".into(),
            aggregate_id: aggregate.into(),
            sequence,
            event_type: "E".into(),
            payload: sqlx::types::Json(serde_json::value::to_raw_value(&()).expect("null")),
            headers: sqlx::types::Json(serde_json::json!({})),
            created_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_acked_row_after_a_failed_one_is_kept_not_deleted() {
        let rows = [row(1, "a", 1), row(2, "a", 2), row(3, "a", 3)];
        let outcomes = [
            Outcome::Acked,
            Outcome::Failed("down".into()),
            Outcome::Acked,
        ];
        let plan = settle(&rows, &outcomes);
        assert_eq!(plan.delete, vec![1]);
        assert_eq!(plan.kept, 2);
        assert!(plan.transient_failure);
    }

    #[test]
    fn a_rejected_row_parks_only_its_own_aggregate() {
        let rows = [
            row(1, "a", 1),
            row(2, "b", 1),
            row(3, "a", 2),
            row(4, "b", 2),
        ];
        let outcomes = [
            Outcome::Rejected("too large".into()),
            Outcome::Acked,
            Outcome::Acked,
            Outcome::Acked,
        ];
        let plan = settle(&rows, &outcomes);
        assert_eq!(plan.park, vec![(1, "too large".into())]);
        assert_eq!(plan.delete, vec![2, 4]);
        assert_eq!(plan.kept, 1);
        assert!(!plan.transient_failure);
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            4 => Just(Outcome::Acked),
            1 => Just(Outcome::Rejected("r".into())),
            1 => Just(Outcome::Failed("f".into())),
            1 => Just(Outcome::NotSent),
        ]
    }

    proptest! {
        /// Whatever Kafka answers, the deleted rows of every aggregate are a gap-free prefix of
        /// its batch, and at most one row per aggregate is parked, right after that prefix.
        #[test]
        fn deleted_rows_are_always_an_acked_prefix_per_aggregate(
            spec in proptest::collection::vec((0..4u8, outcome()), 0..40)
        ) {
            let mut next_seq = [0i64; 4];
            let rows: Vec<OutboxRow> = spec.iter().enumerate().map(|(i, (agg, _))| {
                next_seq[usize::from(*agg)] += 1;
                row(i as i64, &agg.to_string(), next_seq[usize::from(*agg)])
            }).collect();
            let outcomes: Vec<Outcome> = spec.iter().map(|(_, o)| o.clone()).collect();
            let plan = settle(&rows, &outcomes);
            prop_assert_eq!(plan.delete.len() + plan.park.len() + plan.kept, rows.len());
            for agg in 0..4u8 {
                let name = agg.to_string();
                let mine: Vec<&OutboxRow> = rows.iter().filter(|r| r.aggregate_id == name).collect();
                let deleted = mine.iter().take_while(|r| plan.delete.contains(&r.id)).count();
                // nothing after the prefix is deleted
                prop_assert!(mine[deleted..].iter().all(|r| !plan.delete.contains(&r.id)));
                // every deleted row was acked
                prop_assert!(mine[..deleted].iter().all(|r| outcomes[r.id as usize] == Outcome::Acked));
                let parked: Vec<_> = mine.iter().filter(|r| plan.park.iter().any(|(id, _)| *id == r.id)).collect();
                prop_assert!(parked.len() <= 1);
                if let Some(p) = parked.first() {
                    prop_assert_eq!(p.id, mine[deleted].id);
                }
            }
        }
    }
}
