//! Per-aggregate sequence checking: stale events and gaps are detected and handled explicitly.

mod support;

use event_envelope::Envelope;
use idempotent_consumer::GapPolicy;
use serde_json::json;
use support::{TestHandler, WITHIN, World, events};

fn deposit(aggregate: &str, sequence: i64) -> Envelope {
    Envelope::new(
        "account",
        aggregate,
        sequence,
        "Deposited",
        json!({"amount": 1}),
    )
}

#[tokio::test]
async fn an_old_sequence_under_a_new_event_id_is_skipped_as_stale() -> anyhow::Result<()> {
    let w = World::new(1).await?;
    w.publish(&events("acc", 3)).await?;
    w.publish(&[deposit("acc", 2)]).await?; // same position in the aggregate, different id

    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async { (m.snapshot().stale == 1).then_some(()) }).await?;
    c.shutdown().await?;

    assert_eq!(m.snapshot().applied, 3);
    assert_eq!(w.effects().await, 3);
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM aggregate_version WHERE aggregate_id = 'acc'",
    )
    .fetch_one(w.pg.pool())
    .await?;
    assert_eq!(last, 3);
    Ok(())
}

#[tokio::test]
async fn under_the_apply_policy_a_gap_is_applied_counted_and_its_latecomer_is_stale()
-> anyhow::Result<()> {
    let w = World::new(1).await?;
    w.publish(&[deposit("acc", 1), deposit("acc", 3), deposit("acc", 2)])
        .await?;

    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
        .gap_policy(GapPolicy::Apply)
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async { (m.snapshot().stale == 1).then_some(()) }).await?;
    c.shutdown().await?;

    let s = m.snapshot();
    assert_eq!((s.applied, s.gaps, s.stale), (2, 1, 1));
    let applied: Vec<i64> = sqlx::query_scalar("SELECT sequence FROM effects ORDER BY sequence")
        .fetch_all(w.pg.pool())
        .await?;
    assert_eq!(applied, vec![1, 3]);
    Ok(())
}

#[tokio::test]
async fn under_the_hold_policy_a_gap_is_retried_then_dead_lettered_and_other_aggregates_continue()
-> anyhow::Result<()> {
    let w = World::new(1).await?;
    w.publish(&[
        deposit("held", 1),
        deposit("held", 3),
        deposit("free", 1),
        deposit("free", 2),
    ])
    .await?;

    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
        .gap_policy(GapPolicy::Hold)
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async {
        (m.snapshot().applied == 3).then_some(())
    })
    .await?;
    c.shutdown().await?;

    let dead = w.dead_letters(1).await?;
    assert!(dead[0].error.contains("sequence gap"), "{}", dead[0].error);
    assert!(
        dead[0].error.contains("expected 2, got 3"),
        "{}",
        dead[0].error
    );
    assert_eq!(
        dead[0].attempts, 3,
        "retried per the policy before giving up"
    );
    assert_eq!(m.snapshot().dead_lettered, 1);
    assert!(m.snapshot().retries >= 2);
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM aggregate_version WHERE aggregate_id = 'held'",
    )
    .fetch_one(w.pg.pool())
    .await?;
    assert_eq!(last, 1, "the held aggregate did not advance past the gap");
    Ok(())
}
