//! Per-aggregate sequence checking.
//!
//! The outbox numbers each aggregate's events 1, 2, 3, … without gaps, and all events of an
//! aggregate share a key and so a partition, so a healthy stream delivers them in order. The
//! consumer remembers the highest sequence it applied per aggregate (`aggregate_version`,
//! updated in the effect's transaction) and classifies each new event against it.

use std::collections::HashMap;

use sqlx::PgConnection;

/// What to do with an event whose predecessors never arrived.
///
/// A gap means something upstream lost or diverted events (a predecessor sits in the
/// dead-letter queue, a producer bypassed the outbox, a topic was truncated). There is no
/// universally right answer, so the choice is explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GapPolicy {
    /// Treat the gap as transient: retry with backoff (the missing event may still arrive, e.g.
    /// replayed from the dead-letter queue) and dead-letter the event when retries run out.
    /// The aggregate then stops advancing until an operator replays the missing events in
    /// order — later events of that aggregate are dead-lettered too, other aggregates carry on.
    /// Right when effects depend on order (balances, state machines).
    #[default]
    Hold,
    /// Apply the event, jump the aggregate's version to it and count the gap. A predecessor
    /// that arrives later is then stale and skipped. Right for last-writer-wins projections
    /// where the newest state is all that matters.
    Apply,
}

/// The classification of one event against its aggregate's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `sequence == last + 1` (or the first event seen): apply.
    InOrder,
    /// `sequence <= last`: already applied (under another id) or superseded: skip.
    Stale {
        /// The aggregate's version.
        last: i64,
    },
    /// `sequence > last + 1`: predecessors missing.
    Gap {
        /// The sequence that was expected.
        expected: i64,
    },
}

/// Classifies `sequence` against `last` (`None`: nothing applied yet for the aggregate).
///
/// An aggregate first seen at a sequence above 1 is *not* a gap: a consumer that starts
/// reading a topic mid-stream (retention, a new service) must be able to begin somewhere.
pub fn classify(last: Option<i64>, sequence: i64) -> Verdict {
    match last {
        None => Verdict::InOrder,
        Some(last) if sequence <= last => Verdict::Stale { last },
        Some(last) if sequence == last + 1 => Verdict::InOrder,
        Some(last) => Verdict::Gap { expected: last + 1 },
    }
}

/// Aggregate identity: (type, id), borrowed from the batch's events.
pub(crate) type AggregateKey<'a> = (&'a str, &'a str);

/// Loads the current versions of `aggregates`, locking their rows for the transaction so two
/// consumers that briefly overlap during a rebalance serialise on them.
///
/// Rows come back as positions in `aggregates` rather than as names: nothing to decode or
/// allocate per aggregate, and the map borrows the caller's keys.
pub(crate) async fn load<'a>(
    conn: &mut PgConnection,
    consumer: &str,
    aggregates: &[AggregateKey<'a>],
) -> Result<HashMap<AggregateKey<'a>, i64>, sqlx::Error> {
    if aggregates.is_empty() {
        return Ok(HashMap::new());
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = aggregates.iter().copied().unzip();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT a.n, v.last_sequence \
         FROM aggregate_version v \
         JOIN unnest($2::text[], $3::text[]) WITH ORDINALITY AS a(t, i, n) \
           ON v.aggregate_type = a.t AND v.aggregate_id = a.i \
         WHERE v.consumer_name = $1 \
         ORDER BY v.aggregate_type, v.aggregate_id \
         FOR UPDATE OF v",
    )
    .bind(consumer)
    .bind(&types)
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(n, last)| {
            let at = usize::try_from(n).ok()?.checked_sub(1)?; // ordinality counts from 1
            Some((*aggregates.get(at)?, last))
        })
        .collect())
}

/// Stores new versions (one statement for the whole batch).
pub(crate) async fn store(
    conn: &mut PgConnection,
    consumer: &str,
    versions: &HashMap<AggregateKey<'_>, i64>,
) -> Result<(), sqlx::Error> {
    if versions.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(versions.len());
    let mut ids = Vec::with_capacity(versions.len());
    let mut seqs = Vec::with_capacity(versions.len());
    for (&(t, i), &s) in versions {
        types.push(t);
        ids.push(i);
        seqs.push(s);
    }
    sqlx::query(
        "INSERT INTO aggregate_version (consumer_name, aggregate_type, aggregate_id, last_sequence) \
         SELECT $1, t, i, s FROM unnest($2::text[], $3::text[], $4::bigint[]) AS a(t, i, s) \
         ON CONFLICT (consumer_name, aggregate_type, aggregate_id) DO UPDATE \
         SET last_sequence = EXCLUDED.last_sequence, updated_at = now()",
    )
    .bind(consumer)
    .bind(&types)
    .bind(&ids)
    .bind(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_next_sequence_is_in_order_and_a_repeat_is_stale() {
        assert_eq!(classify(None, 7), Verdict::InOrder);
        assert_eq!(classify(Some(3), 4), Verdict::InOrder);
        assert_eq!(classify(Some(3), 3), Verdict::Stale { last: 3 });
        assert_eq!(classify(Some(3), 9), Verdict::Gap { expected: 4 });
    }

    proptest! {
        /// Replaying any delivery order through `classify` (advancing only on in-order events)
        /// applies each sequence at most once and never applies one out of order.
        #[test]
        fn classify_never_applies_a_sequence_twice_or_out_of_order(
            deliveries in proptest::collection::vec(1i64..12, 0..60)
        ) {
            let mut last = Some(0);
            let mut applied = Vec::new();
            for s in deliveries {
                if classify(last, s) == Verdict::InOrder {
                    applied.push(s);
                    last = Some(s);
                }
            }
            let expected: Vec<i64> = (1..=applied.len() as i64).collect();
            prop_assert_eq!(applied, expected);
        }
    }
}
