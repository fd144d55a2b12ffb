//! Exactly-once effect under redelivery and across the commit window.

mod support;

use idempotent_consumer::{ConsumerError, FaultPoint};
use support::{TestHandler, WITHIN, World, events};

#[tokio::test]
async fn duplicate_records_of_one_event_are_applied_once() -> anyhow::Result<()> {
    let w = World::new(3).await?;
    let evs: Vec<_> = (0..6)
        .flat_map(|a| events(&format!("acc-{a}"), 5))
        .collect();
    w.publish(&evs).await?;
    w.publish(&evs[..10]).await?; // the producer retried: same event ids, new records

    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async {
        (m.snapshot().applied + m.snapshot().duplicates >= 40).then_some(())
    })
    .await?;
    c.shutdown().await?;

    assert_eq!(w.effects().await, 30);
    assert_eq!(w.max_copies().await, 1);
    assert_eq!(m.snapshot().duplicates, 10);
    Ok(())
}

#[tokio::test]
async fn a_full_redelivery_after_an_offset_reset_applies_nothing_twice() -> anyhow::Result<()> {
    let w = World::new(2).await?;
    let evs: Vec<_> = (0..4)
        .flat_map(|a| events(&format!("acc-{a}"), 5))
        .collect();
    w.publish(&evs).await?;

    let first = w
        .consumer("ledger", &w.kafka.group_id("g1"), TestHandler::default())
        .build()?
        .spawn();
    let m1 = first.metrics();
    harness::eventually(WITHIN, || async {
        (m1.snapshot().applied == 20).then_some(())
    })
    .await?;
    first.shutdown().await?;

    // A new group starts from `earliest`: every record is delivered again.
    let again = w
        .consumer("ledger", &w.kafka.group_id("g2"), TestHandler::default())
        .build()?
        .spawn();
    let m2 = again.metrics();
    harness::eventually(WITHIN, || async {
        (m2.snapshot().duplicates == 20).then_some(())
    })
    .await?;
    again.shutdown().await?;

    assert_eq!(m2.snapshot().applied, 0);
    assert_eq!(w.effects().await, 20);
    assert_eq!(w.max_copies().await, 1);
    Ok(())
}

#[tokio::test]
async fn a_crash_after_the_db_commit_and_before_the_offset_commit_is_absorbed_by_the_inbox()
-> anyhow::Result<()> {
    let w = World::new(2).await?;
    let evs: Vec<_> = (0..8)
        .flat_map(|a| events(&format!("acc-{a}"), 5))
        .collect();
    w.publish(&evs).await?;
    let group = w.kafka.group_id("g");

    let crashed = w
        .consumer("ledger", &group, TestHandler::default())
        .batch_size(std::num::NonZeroUsize::new(10).expect("non-zero")) // crash mid-stream
        .fault(FaultPoint::AfterDbCommit)
        .build()?
        .spawn();
    let err = crashed
        .join()
        .await
        .expect_err("must stop at the fault point");
    assert!(matches!(
        err,
        ConsumerError::InjectedFault(FaultPoint::AfterDbCommit)
    ));
    let committed_before_crash = w.effects().await;
    assert!(
        committed_before_crash > 0,
        "the first batch was committed to Postgres"
    );

    let restarted = w
        .consumer("ledger", &group, TestHandler::default())
        .build()?
        .spawn();
    let m = restarted.metrics();
    // Every record comes back (no offset was committed): each is applied or skipped.
    harness::eventually(WITHIN, || async {
        let s = m.snapshot();
        (s.applied + s.duplicates == 40).then_some(())
    })
    .await?;
    restarted.shutdown().await?;

    assert_eq!(w.effects().await, 40, "each event applied exactly once");
    assert_eq!(w.max_copies().await, 1);
    assert_eq!(
        m.snapshot().duplicates,
        u64::try_from(committed_before_crash)?,
        "the redelivered first batch was recognised by the inbox"
    );
    Ok(())
}

#[tokio::test]
async fn a_crash_before_the_db_commit_persists_nothing_and_the_restart_applies_once()
-> anyhow::Result<()> {
    let w = World::new(2).await?;
    let evs: Vec<_> = (0..8)
        .flat_map(|a| events(&format!("acc-{a}"), 5))
        .collect();
    w.publish(&evs).await?;
    let group = w.kafka.group_id("g");

    let crashed = w
        .consumer("ledger", &group, TestHandler::default())
        .fault(FaultPoint::BeforeDbCommit)
        .build()?
        .spawn();
    let err = crashed
        .join()
        .await
        .expect_err("must stop at the fault point");
    assert!(matches!(
        err,
        ConsumerError::InjectedFault(FaultPoint::BeforeDbCommit)
    ));
    assert_eq!(w.effects().await, 0, "the rolled-back batch left no effect");
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(w.pg.pool())
        .await?;
    assert_eq!(inbox, 0, "and no inbox key");

    let restarted = w
        .consumer("ledger", &group, TestHandler::default())
        .build()?
        .spawn();
    let m = restarted.metrics();
    harness::eventually(WITHIN, || async {
        (m.snapshot().applied == 40).then_some(())
    })
    .await?;
    restarted.shutdown().await?;

    assert_eq!(w.effects().await, 40);
    assert_eq!(w.max_copies().await, 1);
    assert_eq!(m.snapshot().duplicates, 0);
    Ok(())
}

#[tokio::test]
async fn offsets_are_committed_so_a_restart_does_not_reread_processed_records() -> anyhow::Result<()>
{
    let w = World::new(2).await?;
    w.publish(&events("acc", 10)).await?;
    let group = w.kafka.group_id("g");
    let first = w
        .consumer("ledger", &group, TestHandler::default())
        .build()?
        .spawn();
    let m1 = first.metrics();
    harness::eventually(WITHIN, || async {
        (m1.snapshot().applied == 10).then_some(())
    })
    .await?;
    first.shutdown().await?;

    let lag = idempotent_consumer::consumer_lag(&w.kafka.consumer_config(&group), &w.topic).await?;
    assert_eq!(lag, 0);
    w.publish(&events("other", 3)).await?;
    let second = w
        .consumer("ledger", &group, TestHandler::default())
        .build()?
        .spawn();
    let m2 = second.metrics();
    harness::eventually(WITHIN, || async {
        (m2.snapshot().applied == 3).then_some(())
    })
    .await?;
    second.shutdown().await?;
    assert_eq!(
        m2.snapshot().duplicates,
        0,
        "nothing before the committed offset came back"
    );
    Ok(())
}
