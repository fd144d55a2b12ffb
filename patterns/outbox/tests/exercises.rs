//! The workshop steps. `make exercise NAME=outbox STEP=n` runs `stepn::` against the learner's
//! code (`--features exercise`); without the feature they run against the reference.

mod common;

use common::n;

/// Step 1: the event is written in the caller's transaction.
mod step1 {
    use outbox::{NewEvent, enqueue};

    use super::common;

    #[tokio::test]
    async fn a_rolled_back_event_is_never_stored() -> anyhow::Result<()> {
        let env = common::env().await?;
        let mut tx = env.pool().begin().await?;
        enqueue(
            &mut tx,
            &NewEvent::new("order", "a", "OrderPlaced", serde_json::json!({})),
        )
        .await?;
        tx.rollback().await?;
        assert_eq!(env.outbox_rows().await?, 0);
        Ok(())
    }

    #[tokio::test]
    async fn each_aggregate_counts_its_own_sequence_from_one() -> anyhow::Result<()> {
        let env = common::env().await?;
        let mut seen = Vec::new();
        for aggregate in ["a", "b", "a", "a", "b"] {
            let mut tx = env.pool().begin().await?;
            let e = enqueue(
                &mut tx,
                &NewEvent::new("order", aggregate, "E", serde_json::json!({})),
            )
            .await?;
            tx.commit().await?;
            seen.push(e.sequence);
        }
        assert_eq!(seen, vec![1, 1, 2, 3, 2]);
        Ok(())
    }

    #[tokio::test]
    async fn an_event_becomes_visible_only_when_its_transaction_commits() -> anyhow::Result<()> {
        let env = common::env().await?;
        let mut tx = env.pool().begin().await?;
        let stored = enqueue(
            &mut tx,
            &NewEvent::new("order", "a", "E", serde_json::json!({"x": 1})),
        )
        .await?;
        assert_eq!(
            env.outbox_rows().await?,
            0,
            "uncommitted rows are invisible to the relay"
        );
        tx.commit().await?;
        let payload: serde_json::Value =
            sqlx::query_scalar("SELECT payload FROM outbox WHERE event_id = $1")
                .bind(stored.event_id)
                .fetch_one(env.pool())
                .await?;
        assert_eq!(payload, serde_json::json!({"x": 1}));
        Ok(())
    }
}

/// Step 2: claim with `FOR UPDATE SKIP LOCKED`, delete in the claiming transaction.
mod step2 {
    use std::collections::HashSet;
    use std::time::Duration;

    use outbox::{Outcome, claim, settle};
    use tokio_util::sync::CancellationToken;

    use super::{common, n};

    async fn one_event_per_aggregate(env: &common::Env, count: usize) -> anyhow::Result<()> {
        for i in 0..count {
            env.write(&format!("agg-{i}"), 1).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn two_open_claims_never_hold_the_same_row() -> anyhow::Result<()> {
        let env = common::env().await?;
        one_event_per_aggregate(&env, 10).await?;
        let first = claim(env.pool(), n(4)).await?;
        let second = claim(env.pool(), n(100)).await?;
        let a: HashSet<i64> = first.rows().iter().map(|r| r.id).collect();
        let b: HashSet<i64> = second.rows().iter().map(|r| r.id).collect();
        assert_eq!((a.len(), b.len()), (4, 6));
        assert!(
            a.is_disjoint(&b),
            "SKIP LOCKED: the second claim skips what the first holds"
        );
        Ok(())
    }

    #[tokio::test]
    async fn completing_deletes_published_rows_and_dropping_keeps_them() -> anyhow::Result<()> {
        let env = common::env().await?;
        one_event_per_aggregate(&env, 3).await?;
        drop(claim(env.pool(), n(10)).await?); // a crash: nothing changes
        assert_eq!(env.outbox_rows().await?, 3);
        let batch = claim(env.pool(), n(10)).await?;
        let outcomes = vec![Outcome::Acked; batch.rows().len()];
        let plan = settle(batch.rows(), &outcomes);
        batch.complete(&plan).await?;
        assert_eq!(env.outbox_rows().await?, 0);
        Ok(())
    }

    #[tokio::test]
    async fn the_relay_publishes_every_committed_row_and_empties_the_outbox() -> anyhow::Result<()>
    {
        let env = common::env().await?;
        one_event_per_aggregate(&env, 20).await?;
        let relay = env.relay().build()?.spawn(CancellationToken::new());
        let seen = env.read(20, Duration::from_secs(30)).await?;
        env.drained(Duration::from_secs(10)).await?;
        relay.shutdown().await?;
        assert_eq!(seen.audit.report().unique, 20);
        Ok(())
    }
}

/// Step 3: per-aggregate order with several relays.
mod step3 {
    use std::time::Duration;

    use outbox::claim;
    use tokio_util::sync::CancellationToken;

    use super::{common, n};

    #[tokio::test]
    async fn a_claim_returns_each_aggregate_in_sequence_order() -> anyhow::Result<()> {
        let env = common::env().await?;
        env.write("a", 3).await?;
        env.write("b", 3).await?;
        env.write("a", 2).await?;
        let batch = claim(env.pool(), n(100)).await?;
        let a: Vec<i64> = batch
            .rows()
            .iter()
            .filter(|r| r.aggregate_id == "a")
            .map(|r| r.sequence)
            .collect();
        assert_eq!(a, vec![1, 2, 3, 4, 5]);
        Ok(())
    }

    #[tokio::test]
    async fn later_events_are_not_claimable_while_the_head_is_in_flight() -> anyhow::Result<()> {
        let env = common::env().await?;
        env.write("a", 4).await?;
        let first = claim(env.pool(), n(1)).await?;
        assert_eq!(
            first.rows().iter().map(|r| r.sequence).collect::<Vec<_>>(),
            vec![1]
        );
        let second = claim(env.pool(), n(100)).await?;
        assert!(
            second.rows().is_empty(),
            "event 2 must wait until event 1 is published"
        );
        Ok(())
    }

    #[tokio::test]
    async fn two_relays_publish_each_aggregate_in_order() -> anyhow::Result<()> {
        let env = common::env().await?;
        let relays: Vec<_> = (0..2)
            .map(|_| {
                env.relay()
                    .batch_size(n(7))
                    .build()
                    .map(|r| r.spawn(CancellationToken::new()))
            })
            .collect::<Result<_, _>>()?;
        for round in 0..10 {
            for a in 0..6 {
                env.write(&format!("agg-{a}"), 1 + round % 2).await?;
            }
        }
        let seen = env.read(90, Duration::from_secs(30)).await?;
        for relay in relays {
            relay.shutdown().await?;
        }
        assert_eq!(seen.audit.report().violations, 0);
        Ok(())
    }
}
