//! Failure handling: crashes in the duplicate window, Kafka outages, lost Postgres sessions,
//! permanently rejected records.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outbox::{FailPoint, NewEvent, RelayError, discard_parked, enqueue, list_parked};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_crash_between_publish_and_commit_duplicates_but_never_loses_or_reorders()
-> anyhow::Result<()> {
    let env = common::env().await?;
    for a in 0..5 {
        env.write(&format!("c{a}"), 10).await?;
    }
    // The second batch is acknowledged by Kafka, then the relay "dies" before deleting it.
    let batches = Arc::new(AtomicUsize::new(0));
    let counter = batches.clone();
    let doomed = env
        .relay()
        .batch_size(common::n(15))
        .fail_point(move |point| {
            point == FailPoint::AfterPublishBeforeCommit
                && counter.fetch_add(1, Ordering::SeqCst) == 1
        })
        .build()?;
    let crashed = doomed.run(CancellationToken::new()).await;
    assert!(matches!(
        crashed,
        Err(RelayError::Crashed(FailPoint::AfterPublishBeforeCommit))
    ));
    assert_eq!(
        doomed.metrics().published,
        15,
        "only the first batch was committed"
    );
    assert_eq!(
        env.outbox_rows().await?,
        35,
        "the crashed batch is still in the outbox"
    );

    let successor = env.relay().build()?.spawn(CancellationToken::new());
    let seen = env.read(50, Duration::from_secs(30)).await?;
    env.drained(Duration::from_secs(10)).await?;
    successor.shutdown().await?;
    let report = seen.audit.report();
    assert_eq!(report.unique, 50, "nothing lost");
    assert_eq!(
        report.duplicates, 15,
        "the crashed batch was published twice"
    );
    assert_eq!(
        report.violations, 0,
        "the replay started at each aggregate's head"
    );
    Ok(())
}

#[tokio::test]
async fn while_kafka_is_unreachable_rows_stay_and_the_relay_resumes_when_it_returns()
-> anyhow::Result<()> {
    let env = common::env().await?;
    // The proxy sits on the bootstrap address. Refusing every connection from the start means
    // the client never learns the real broker address, so Kafka is fully unreachable for it.
    let proxy = harness::FaultProxy::start(env.kafka.server_addr()).await?;
    proxy.refuse_new();
    let mut kafka = env.kafka.producer_config();
    kafka.set("bootstrap.servers", proxy.addr().to_string());
    let relay = outbox::Relay::builder(
        env.pool().clone(),
        kafka,
        outbox::TopicRoute::Fixed(env.topic.clone()),
    )
    .publish_timeout(Duration::from_millis(500))
    .backoff(Duration::from_millis(50), Duration::from_millis(400))
    .build()?
    .spawn(CancellationToken::new());
    env.write("k1", 5).await?;
    env.write("k2", 5).await?;
    let during = harness::eventually(Duration::from_secs(20), || async {
        let m = relay.metrics();
        (m.failed >= 10 && m.backlog == 10).then_some(m)
    })
    .await?;
    assert_eq!(during.published, 0);
    assert!(
        during.oldest_unpublished_age.is_some(),
        "lag is exported while Kafka is down"
    );
    assert_eq!(
        env.outbox_rows().await?,
        10,
        "nothing is deleted without an ack"
    );

    proxy.heal();
    let seen = env.read(10, Duration::from_secs(30)).await?;
    env.drained(Duration::from_secs(10)).await?;
    relay.shutdown().await?;
    assert_eq!(seen.audit.report().violations, 0);
    Ok(())
}

#[tokio::test]
async fn shutdown_while_kafka_is_unreachable_leaves_rows_and_exits_within_the_publish_timeout()
-> anyhow::Result<()> {
    let env = common::env().await?;
    let proxy = harness::FaultProxy::start(env.kafka.server_addr()).await?;
    proxy.refuse_new();
    let mut kafka = env.kafka.producer_config();
    kafka.set("bootstrap.servers", proxy.addr().to_string());
    let relay = outbox::Relay::builder(
        env.pool().clone(),
        kafka,
        outbox::TopicRoute::Fixed(env.topic.clone()),
    )
    .publish_timeout(Duration::from_secs(1))
    .build()?
    .spawn(CancellationToken::new());
    env.write("s", 3).await?;
    harness::eventually(Duration::from_secs(10), || async {
        (relay.metrics().failed > 0).then_some(())
    })
    .await?;
    let start = Instant::now();
    relay.shutdown().await?;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        start.elapsed()
    );
    assert_eq!(env.outbox_rows().await?, 3);
    Ok(())
}

#[tokio::test]
async fn terminated_postgres_sessions_are_survived_without_loss_or_reordering() -> anyhow::Result<()>
{
    let env = common::env().await?;
    let app = format!("outbox-relay-{}", env.pg.name());
    let relay_pool = env.named_pool(&app).await?;
    // A long poll interval: after the kills, only a reconnected LISTEN or the retry path can
    // pick the rows up promptly.
    let relay = env
        .relay_on(relay_pool)
        .batch_size(common::n(8))
        .poll_interval(Duration::from_secs(30))
        .build()?
        .spawn(CancellationToken::new());
    let killer = {
        let (pool, app) = (env.pool().clone(), app.clone());
        tokio::spawn(async move {
            let mut killed = 0;
            for _ in 0..15 {
                killed += common::terminate_backends(&pool, &app).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(killed)
        })
    };
    for a in 0..6 {
        env.write(&format!("p{a}"), 20).await?;
    }
    let killed = killer.await??;
    env.write("after", 1).await?;
    let seen = env.read(121, Duration::from_secs(60)).await?;
    env.drained(Duration::from_secs(10)).await?;
    relay.shutdown().await?;
    assert!(
        killed > 0,
        "the test must actually have terminated relay sessions"
    );
    let report = seen.audit.report();
    assert_eq!(report.unique, 121, "nothing lost");
    assert_eq!(report.violations, 0);
    Ok(())
}

#[tokio::test]
async fn an_oversized_event_is_parked_and_blocks_only_its_own_aggregate() -> anyhow::Result<()> {
    let env = common::env().await?;
    // Larger than librdkafka's default message.max.bytes (1 MB): rejected for good.
    let huge = serde_json::json!({ "blob": "x".repeat(1_200_000) });
    let mut tx = env.pool().begin().await?;
    enqueue(&mut tx, &NewEvent::new("order", "big", "OrderPlaced", huge)).await?;
    enqueue(
        &mut tx,
        &NewEvent::new("order", "big", "OrderPaid", serde_json::json!({})),
    )
    .await?;
    tx.commit().await?;
    env.write("small", 3).await?;

    let relay = env.relay().build()?.spawn(CancellationToken::new());
    let seen = env.read(3, Duration::from_secs(20)).await?;
    let parked = harness::eventually(Duration::from_secs(10), || async {
        list_parked(env.pool()).await.ok().filter(|p| !p.is_empty())
    })
    .await?;
    assert!(
        seen.keys.iter().all(|k| k == "small"),
        "the other aggregate flowed"
    );
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].aggregate_id.as_str(), parked[0].sequence),
        ("big", 1)
    );
    assert!(
        parked[0]
            .park_reason
            .as_deref()
            .is_some_and(|r| r.to_lowercase().contains("large"))
    );
    assert_eq!(relay.metrics().parked, 1);
    assert_eq!(
        env.outbox_rows().await?,
        2,
        "event 2 of `big` waits behind the parked event 1"
    );

    // The operator accepts the loss of event 1; event 2 then flows (consumers see the gap).
    discard_parked(env.pool(), parked[0].id).await?;
    env.drained(Duration::from_secs(10)).await?;
    relay.shutdown().await?;
    let after = common::read_until(&env.kafka, &env.topic, Duration::from_secs(20), |seen| {
        seen.envelopes
            .iter()
            .any(|e| e.aggregate_id == "big" && e.sequence == 2)
    })
    .await?;
    assert_eq!(
        after.audit.report().violations,
        1,
        "the discarded event shows as a gap"
    );
    Ok(())
}

#[tokio::test]
async fn retrying_a_parked_event_attempts_it_again_and_unknown_ids_are_refused()
-> anyhow::Result<()> {
    let env = common::env().await?;
    let huge = serde_json::json!({ "blob": "x".repeat(1_200_000) });
    let mut tx = env.pool().begin().await?;
    enqueue(&mut tx, &NewEvent::new("order", "big", "OrderPlaced", huge)).await?;
    tx.commit().await?;
    let relay = env.relay().build()?.spawn(CancellationToken::new());
    let parked = harness::eventually(Duration::from_secs(10), || async {
        list_parked(env.pool()).await.ok().filter(|p| !p.is_empty())
    })
    .await?;
    outbox::retry_parked(env.pool(), parked[0].id).await?;
    // Still too large: the relay tries again (woken by the retry's NOTIFY) and parks it again.
    harness::eventually(Duration::from_secs(10), || async {
        (relay.metrics().parked == 2).then_some(())
    })
    .await?;
    relay.shutdown().await?;
    assert_eq!(list_parked(env.pool()).await?.len(), 1);
    let unknown = outbox::retry_parked(env.pool(), -1).await;
    assert!(matches!(unknown, Err(outbox::OutboxError::NotParked(-1))));
    Ok(())
}

/// Commits one event at a time, round-robin over `aggregates`, until `stop` is cancelled.
/// Returns how many events each aggregate got (its highest sequence).
async fn write_continuously(
    pool: sqlx::PgPool,
    aggregates: usize,
    stop: CancellationToken,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut written = vec![0i64; aggregates];
    let mut i = 0usize;
    while !stop.is_cancelled() {
        let slot = i % aggregates;
        let mut tx = pool.begin().await?;
        let event = NewEvent::new(
            "order",
            format!("m{slot}"),
            "OrderChanged",
            serde_json::json!({ "i": i }),
        );
        enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        written[slot] += 1;
        i += 1;
        // A steady stream, not a flood: the backlog should grow visibly during the outage.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(written
        .into_iter()
        .enumerate()
        .map(|(slot, n)| (format!("m{slot}"), n))
        .collect())
}

#[tokio::test]
async fn a_broker_outage_mid_stream_keeps_the_backlog_and_everything_is_published_after_it()
-> anyhow::Result<()> {
    harness::telemetry::init_test();
    // A broker of this test's own: every client connection to it runs through a fault proxy,
    // so taking it down is a real outage, not just a refused bootstrap.
    let broker = harness::PrivateKafka::start().await?;
    let pg = harness::postgres().await?;
    outbox::migrate(pg.pool()).await?;
    let topic = broker
        .kafka()
        .create_topic("outage", common::PARTITIONS)
        .await?;
    let mut kafka = broker.kafka().producer_config();
    // Reconnect quickly once the broker is back, so the test does not wait out long backoffs.
    kafka.set("reconnect.backoff.max.ms", "200");
    let relay = outbox::Relay::builder(
        pg.pool().clone(),
        kafka,
        outbox::TopicRoute::Fixed(topic.clone()),
    )
    .batch_size(common::n(20))
    .poll_interval(Duration::from_millis(250))
    .publish_timeout(Duration::from_millis(1_000))
    .backoff(Duration::from_millis(50), Duration::from_millis(400))
    .build()?
    .spawn(CancellationToken::new());

    let stop_writing = CancellationToken::new();
    let writer = tokio::spawn(write_continuously(
        pg.pool().clone(),
        12,
        stop_writing.clone(),
    ));
    // The stream is flowing: events are published while more are being committed.
    harness::eventually(Duration::from_secs(30), || async {
        (relay.metrics().published >= 50).then_some(())
    })
    .await?;

    broker.go_down();
    // Kafka is gone: sends fail, the relay backs off, nothing it could not deliver is deleted.
    let failing = harness::eventually(Duration::from_secs(20), || async {
        let m = relay.metrics();
        (m.failed > 0).then_some(m)
    })
    .await?;
    let rows_at_failure: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pg.pool())
        .await?;
    // Let the outage last a few publish timeouts while the writers keep committing.
    let during = harness::eventually(Duration::from_secs(20), || async {
        let m = relay.metrics();
        (m.failed >= failing.failed + 20 && m.backlog > 0 && m.oldest_unpublished_age.is_some())
            .then_some(m)
    })
    .await?;
    let rows_during: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pg.pool())
        .await?;
    assert_eq!(
        during.published, failing.published,
        "nothing is deleted while Kafka is down"
    );
    assert!(
        rows_during > rows_at_failure,
        "the backlog stays and grows during the outage ({rows_at_failure} -> {rows_during})"
    );
    assert!(
        during.batches > failing.batches,
        "the relay keeps retrying (with backoff) during the outage"
    );

    broker.come_back();
    // Publishing resumes while the writers are still committing.
    harness::eventually(Duration::from_secs(60), || async {
        (relay.metrics().published > during.published + 50).then_some(())
    })
    .await?;
    stop_writing.cancel();
    let written = writer.await??;
    let total: i64 = written.iter().map(|(_, n)| n).sum();

    let seen = common::read_topic(
        broker.kafka(),
        &topic,
        u64::try_from(total)?,
        Duration::from_secs(60),
    )
    .await?;
    harness::eventually(Duration::from_secs(30), || async {
        let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(pg.pool())
            .await
            .ok();
        (rows == Some(0)).then_some(())
    })
    .await?;
    assert!(!relay.is_finished(), "the relay survived the outage");
    let report = seen.audit.report();
    let highest = seen.audit.highest();
    for (aggregate, n) in &written {
        assert_eq!(
            highest.get(aggregate.as_str()).copied().unwrap_or(0),
            *n,
            "aggregate {aggregate}: every committed event arrived, in order"
        );
    }
    assert_eq!(report.unique, u64::try_from(total)?, "lost = 0");
    assert_eq!(report.violations, 0, "per-aggregate order intact");
    relay.shutdown().await?;
    Ok(())
}

/// Closing a claim was refused because its rows were not the ones it read.
fn assert_mismatch(result: Result<(), outbox::OutboxError>) {
    assert!(
        matches!(result, Err(outbox::OutboxError::ClaimMismatch(_))),
        "expected a mismatch, got {result:?}"
    );
}

#[tokio::test]
async fn a_claim_whose_row_vanished_deletes_nothing() -> anyhow::Result<()> {
    let env = common::env().await?;
    env.write("a", 3).await?;
    env.write("b", 2).await?;
    let batch = outbox::claim(env.pool(), common::n(100)).await?;
    assert_eq!(batch.rows().len(), 5);
    // An operator deletes a:2 by hand while the claim is open: only heads are locked, so
    // nothing stops it. The claim's delete by location must notice it did not find every row.
    sqlx::query("DELETE FROM outbox WHERE aggregate_id = 'a' AND sequence = 2")
        .execute(env.pool())
        .await?;
    let plan = common::all_acked(&batch);
    assert_mismatch(batch.complete(&plan).await);
    assert_eq!(
        env.outbox_rows().await?,
        4,
        "the claim rolled back: every row but the hand-deleted one is still there"
    );
    Ok(())
}

#[tokio::test]
async fn a_settlement_naming_a_row_outside_the_claim_deletes_nothing() -> anyhow::Result<()> {
    let env = common::env().await?;
    env.write("a", 2).await?;
    env.write("b", 2).await?;
    // The first claim takes a:1 and a:2; b is left for the second.
    let first = outbox::claim(env.pool(), common::n(2)).await?;
    let second = outbox::claim(env.pool(), common::n(100)).await?;
    assert_eq!(second.rows().len(), 2);
    let mut plan = common::all_acked(&first);
    plan.delete.push(second.rows()[0].id);
    assert_mismatch(first.complete(&plan).await);
    second.release().await?;
    assert_eq!(env.outbox_rows().await?, 4, "nothing was deleted");
    Ok(())
}

#[tokio::test]
async fn a_window_read_ahead_never_passes_a_row_the_claim_before_it_parked() -> anyhow::Result<()> {
    let env = common::env().await?;
    let huge = serde_json::json!({ "blob": "x".repeat(1_200_000) });
    // Claims of two rows: the first holds `big` 1 and the oversized `big` 2, so while it
    // publishes, the relay reads the next window (`big` 3 and 4) ahead. Those must wait behind
    // the parked event 2 like any other row of its aggregate.
    let mut tx = env.pool().begin().await?;
    for (event, payload) in [
        ("OrderPlaced", serde_json::json!({})),
        ("OrderPaid", huge),
        ("OrderShipped", serde_json::json!({})),
        ("OrderDelivered", serde_json::json!({})),
    ] {
        enqueue(&mut tx, &NewEvent::new("order", "big", event, payload)).await?;
    }
    tx.commit().await?;
    let relay = env
        .relay()
        .batch_size(common::n(2))
        .build()?
        .spawn(CancellationToken::new());
    harness::eventually(Duration::from_secs(20), || async {
        (relay.metrics().parked == 1).then_some(())
    })
    .await?;
    // Other aggregates keep flowing, through windows read ahead as well.
    env.write("small", 12).await?;
    let seen = env.read(13, Duration::from_secs(20)).await?;
    let m = relay.metrics();
    relay.shutdown().await?;

    assert!(
        m.read_ahead_claims >= 1,
        "no claim came from a window read ahead"
    );
    let big: Vec<i64> = seen
        .envelopes
        .iter()
        .filter(|e| e.aggregate_id == "big")
        .map(|e| e.sequence)
        .collect();
    assert!(
        big.iter().all(|&s| s == 1),
        "`big` published past its parked event 2: {big:?}"
    );
    assert_eq!(
        env.outbox_rows().await?,
        3,
        "`big` 2 (parked), 3 and 4 stay in the outbox"
    );
    assert_eq!(seen.audit.report().violations, 0);
    Ok(())
}
