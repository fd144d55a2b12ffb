//! An orders service publishes through the transactional outbox; a billing service consumes the
//! events with the idempotent consumer. Between them sits a relay that crashes in its worst
//! possible moment (Kafka has acknowledged a batch, the outbox delete is not committed), so the
//! batch is published twice. End to end, every order event must still take effect exactly once,
//! in per-order sequence.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idempotent_consumer::{Consumer, Event, Handler, HandlerError};
use outbox::{FailPoint, Relay, RelayError, TopicRoute};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

const ORDERS: usize = 40;
const EVENTS_PER_ORDER: usize = 3;

/// Billing's effect: one ledger row per event, and the order's version, which must advance by
/// exactly one per event.
struct Billing;

impl Handler for Billing {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
        let Some(envelope) = event.envelope() else {
            return Err(HandlerError::permanent("billing expects outbox envelopes"));
        };
        sqlx::query("INSERT INTO ledger (event_id, order_id, sequence) VALUES ($1, $2, $3)")
            .bind(envelope.event_id)
            .bind(&envelope.aggregate_id)
            .bind(envelope.sequence)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO order_version (order_id, version) VALUES ($1, 1)
             ON CONFLICT (order_id) DO UPDATE SET version = order_version.version + 1",
        )
        .bind(&envelope.aggregate_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_relay_crash_between_ack_and_commit_still_bills_every_event_once_in_order()
-> anyhow::Result<()> {
    harness::telemetry::init_test();
    let (orders_db, billing_db) = tokio::try_join!(harness::postgres(), harness::postgres())?;
    let kafka = harness::kafka().await?;
    let topic = kafka.create_topic("orders", 3).await?;
    outbox::migrate(orders_db.pool()).await?;
    idempotent_consumer::migrate(billing_db.pool()).await?;
    sqlx::raw_sql(
        "CREATE TABLE ledger (applied bigserial, event_id uuid PRIMARY KEY, order_id text NOT NULL, sequence bigint NOT NULL);
         CREATE TABLE order_version (order_id text PRIMARY KEY, version bigint NOT NULL);",
    )
    .execute(billing_db.pool())
    .await?;

    // The orders service: each order is placed, then advanced twice (three events, seq 1..=3).
    let mut ids = Vec::new();
    for n in 0..ORDERS {
        let id = outbox::place_order(orders_db.pool(), &format!("c{n}"), 100, None).await?;
        ids.push(id);
    }
    for id in &ids {
        outbox::advance_order(orders_db.pool(), *id, outbox::OrderStatus::Paid).await?;
        outbox::advance_order(orders_db.pool(), *id, outbox::OrderStatus::Shipped).await?;
    }
    let route = TopicRoute::Fixed(topic.clone());

    // A relay that crashes after Kafka acknowledged its second batch, before deleting it.
    let batches = Arc::new(AtomicUsize::new(0));
    let counter = batches.clone();
    let doomed = Relay::builder(
        orders_db.pool().clone(),
        kafka.producer_config(),
        route.clone(),
    )
    .batch_size(NonZeroUsize::new(25).expect("non-zero"))
    .fail_point(move |point| {
        point == FailPoint::AfterPublishBeforeCommit && counter.fetch_add(1, Ordering::SeqCst) == 1
    })
    .build()?;
    let crashed = doomed.run(CancellationToken::new()).await;
    assert!(
        matches!(crashed, Err(RelayError::Crashed(_))),
        "got {crashed:?}"
    );

    // Its successor re-publishes the unacknowledged-in-Postgres batch: duplicates on the topic.
    let relay = Relay::builder(orders_db.pool().clone(), kafka.producer_config(), route)
        .build()?
        .spawn(CancellationToken::new());

    let billing = Consumer::builder("billing", billing_db.pool().clone(), Billing)
        .kafka(kafka.consumer_config(&kafka.group_id("billing")))
        .producer(kafka.producer_config())
        .topics([topic.as_str()])
        .dead_letter_topic(kafka.create_topic("orders-dlq", 1).await?)
        .build()?
        .spawn();

    let total = (ORDERS * EVENTS_PER_ORDER) as i64;
    let metrics = billing.metrics();
    harness::eventually(Duration::from_secs(60), || async {
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
            .fetch_one(billing_db.pool())
            .await
            .ok()?;
        let snapshot = metrics.snapshot();
        (applied >= total && snapshot.duplicates + snapshot.stale >= 25).then_some(())
    })
    .await?;
    relay.shutdown().await?;
    billing.shutdown().await?;

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(billing_db.pool())
        .await?;
    assert_eq!(applied, total, "every event billed exactly once");
    let wrong_versions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_version WHERE version <> $1")
            .bind(EVENTS_PER_ORDER as i64)
            .fetch_one(billing_db.pool())
            .await?;
    assert_eq!(wrong_versions, 0, "each order advanced once per event");
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT sequence, row_number() OVER (PARTITION BY order_id ORDER BY applied) AS n
             FROM ledger
         ) s WHERE sequence <> n",
    )
    .fetch_one(billing_db.pool())
    .await?;
    assert_eq!(out_of_order, 0, "per-order sequence preserved");
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.dead_lettered, 0);
    assert!(
        snapshot.duplicates + snapshot.stale >= 25,
        "the crashed batch arrived twice: {snapshot:?}"
    );
    Ok(())
}
