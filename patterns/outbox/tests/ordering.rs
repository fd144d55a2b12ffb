//! Per-aggregate order with several relays, and no deadlocks under concurrent writers.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{n, taken};
use outbox::{NewEvent, Outcome, claim, enqueue, settle};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_second_claim_skips_every_aggregate_the_first_one_holds() -> anyhow::Result<()> {
    let env = common::env().await?;
    for a in ["a", "b", "c", "d"] {
        env.write(a, 3).await?;
    }
    // The six oldest rows: the first claim owns aggregates a and b and their whole backlog.
    let first = claim(env.pool(), n(6)).await?;
    let second = claim(env.pool(), n(100)).await?;
    let held: HashSet<&str> = first
        .rows()
        .iter()
        .map(|r| r.aggregate_id.as_str())
        .collect();
    let other: HashSet<&str> = second
        .rows()
        .iter()
        .map(|r| r.aggregate_id.as_str())
        .collect();
    assert_eq!(held.len(), 2);
    assert!(
        held.is_disjoint(&other),
        "two relays must never hold the same aggregate"
    );
    assert_eq!(other.len(), 2, "the free aggregates are still claimable");
    for r in second.rows() {
        assert!(r.sequence >= 1);
    }
    assert_eq!(
        second.rows().len(),
        6,
        "a claim takes the whole backlog of its aggregates"
    );
    Ok(())
}

#[tokio::test]
async fn an_aggregate_whose_head_is_claimed_is_skipped_even_if_later_rows_are_not()
-> anyhow::Result<()> {
    let env = common::env().await?;
    env.write("a", 5).await?;
    // A claim of ONE row takes the head only; rows 2..5 stay unlocked but unreachable.
    let first = claim(env.pool(), n(1)).await?;
    assert_eq!(
        first.rows().iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1]
    );
    let second = claim(env.pool(), n(100)).await?;
    assert!(
        second.rows().is_empty(),
        "row 2 must not be published while row 1 is in flight"
    );
    drop(second);
    first.release().await?;
    let third = claim(env.pool(), n(100)).await?;
    assert_eq!(
        third.rows().iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    Ok(())
}

#[tokio::test]
async fn a_claim_looks_past_windows_whose_aggregates_other_relays_hold() -> anyhow::Result<()> {
    let env = common::env().await?;
    env.write("a", 10).await?;
    env.write("b", 1).await?;
    let first = claim(env.pool(), n(5)).await?;
    assert_eq!(
        first.rows().iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // The oldest five rows belong to `a` (held); the next five are `a` again, whose head is
    // still in flight; only the third window has an aggregate this claim can own.
    let second = claim(env.pool(), n(5)).await?;
    assert_eq!(taken(&second), vec![("b", 1)]);
    Ok(())
}

#[tokio::test]
async fn rows_after_a_parked_head_are_not_claimable() -> anyhow::Result<()> {
    let env = common::env().await?;
    env.write("a", 3).await?;
    env.write("b", 1).await?;
    let batch = claim(env.pool(), n(100)).await?;
    let outcomes: Vec<Outcome> = batch
        .rows()
        .iter()
        .map(|r| {
            if (r.aggregate_id.as_str(), r.sequence) == ("a", 1) {
                Outcome::Rejected("too large".into())
            } else {
                Outcome::Acked
            }
        })
        .collect();
    let plan = settle(batch.rows(), &outcomes);
    batch.complete(&plan).await?;
    // a:1 is parked; a:2 and a:3 are unparked, unlocked, and the oldest rows the claim reads.
    let next = claim(env.pool(), n(100)).await?;
    assert!(
        next.rows().is_empty(),
        "a:2 must wait behind the parked a:1, got {:?}",
        taken(&next)
    );
    Ok(())
}

#[tokio::test]
async fn three_relays_publish_every_aggregate_in_sequence_order() -> anyhow::Result<()> {
    let env = common::env().await?;
    let relays: Vec<_> = (0..3)
        .map(|_| {
            env.relay()
                .batch_size(n(16))
                .workers(n(2))
                .build()
                .map(|r| r.spawn(CancellationToken::new()))
        })
        .collect::<Result<_, _>>()?;
    // Write while the relays run: 20 aggregates x 25 events, from 5 concurrent writers.
    let mut writers = Vec::new();
    for w in 0..5 {
        let pool = env.pool().clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let aggregate = format!("agg-{}", (w * 4) + (i % 4));
                let mut tx = pool.begin().await?;
                enqueue(
                    &mut tx,
                    &NewEvent::new("order", aggregate, "E", serde_json::json!({"i": i})),
                )
                .await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let seen = env.read(500, Duration::from_secs(60)).await?;
    env.drained(Duration::from_secs(10)).await?;
    let published: u64 = relays.iter().map(|r| r.metrics().published).sum();
    for relay in relays {
        relay.shutdown().await?;
    }
    let report = seen.audit.report();
    assert_eq!(report.unique, 500, "nothing lost");
    assert_eq!(
        report.violations, 0,
        "per-aggregate order held across three relays"
    );
    assert_eq!(published, 500, "each row was deleted by exactly one relay");
    assert!(seen.audit.highest().values().all(|&h| h == 25));
    Ok(())
}

#[tokio::test]
async fn concurrent_writers_across_many_aggregates_never_deadlock_the_relays() -> anyhow::Result<()>
{
    let env = common::env().await?;
    let relays: Vec<_> = (0..2)
        .map(|_| {
            env.relay()
                .batch_size(n(50))
                .build()
                .map(|r| r.spawn(CancellationToken::new()))
        })
        .collect::<Result<_, _>>()?;
    let mut writers = Vec::new();
    for w in 0..12u64 {
        let pool = env.pool().clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100u64 {
                // Each transaction touches two aggregates, in a consistent (sorted) order, the
                // way a business service must to avoid deadlocking its OWN writers.
                let mut ids = [(w * 31 + i * 7) % 150, (w * 17 + i * 13) % 150];
                ids.sort_unstable();
                let mut tx = pool.begin().await?;
                for id in ids {
                    enqueue(
                        &mut tx,
                        &NewEvent::new("order", format!("o{id}"), "E", serde_json::json!({})),
                    )
                    .await?;
                }
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let seen = env.read(2400, Duration::from_secs(90)).await?;
    env.drained(Duration::from_secs(10)).await?;
    let errors: u64 = relays.iter().map(|r| r.metrics().database_errors).sum();
    for relay in relays {
        relay.shutdown().await?;
    }
    assert_eq!(errors, 0, "no claim failed (a deadlock would abort one)");
    assert_eq!(seen.audit.report().violations, 0);
    Ok(())
}
