//! Inbox retention: batched pruning and what still protects after it.

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use idempotent_consumer::{Inbox, Retention};
use support::{TestHandler, WITHIN, World, events};

#[tokio::test]
async fn prune_deletes_only_keys_older_than_the_horizon_in_batches() -> anyhow::Result<()> {
    let w = World::new(1).await?;
    let pool = w.pg.pool();
    sqlx::query(
        "INSERT INTO inbox (consumer_id, message_key, processed_at) \
         SELECT inbox_consumer_id(c), k || g, now() - age \
         FROM (VALUES ('ledger', 'old-', interval '2 hours', 250), ('ledger', 'new-', interval '0', 10), \
                      ('other', 'old-', interval '2 hours', 5)) AS v(c, k, age, n), \
              generate_series(1, n) AS g",
    )
    .execute(pool)
    .await?;

    let deleted = Inbox::new("ledger")
        .prune(pool, Duration::from_secs(3600), 100)
        .await?;

    assert_eq!(deleted, 250);
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.name, count(*) FROM inbox JOIN inbox_consumer c ON c.id = inbox.consumer_id \
         GROUP BY c.name ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    assert_eq!(
        left,
        vec![("ledger".into(), 10), ("other".into(), 5)],
        "recent keys and other consumers untouched"
    );
    Ok(())
}

#[tokio::test]
async fn after_pruning_a_redelivered_envelope_is_still_rejected_by_its_sequence()
-> anyhow::Result<()> {
    let w = World::new(1).await?;
    w.publish(&events("acc", 3)).await?;
    let first = w
        .consumer("ledger", &w.kafka.group_id("g1"), TestHandler::default())
        .inbox_retention(
            Retention::new(Duration::ZERO)
                .with_interval(Duration::from_millis(100))
                .with_batch(NonZeroU32::MIN),
        )
        .build()?
        .spawn();
    let m1 = first.metrics();
    harness::eventually(WITHIN, || async {
        (m1.snapshot().applied == 3).then_some(())
    })
    .await?;
    // The background pruner empties the inbox (horizon zero).
    harness::eventually(WITHIN, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(w.pg.pool())
            .await
            .ok()?;
        (n == 0).then_some(())
    })
    .await?;
    first.shutdown().await?;

    let again = w
        .consumer("ledger", &w.kafka.group_id("g2"), TestHandler::default())
        .build()?
        .spawn();
    let m2 = again.metrics();
    harness::eventually(WITHIN, || async {
        (m2.snapshot().stale == 3).then_some(())
    })
    .await?;
    again.shutdown().await?;
    assert_eq!(
        w.effects().await,
        3,
        "the sequence check caught what the pruned inbox no longer could"
    );
    Ok(())
}
