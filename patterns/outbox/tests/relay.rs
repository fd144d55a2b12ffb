//! The relay's happy path: envelopes on the topic, rows deleted, NOTIFY wake-ups, clean shutdown.

mod common;

use std::time::{Duration, Instant};

use outbox::{NewEvent, WakeMode, enqueue};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn committed_events_are_published_as_envelopes_keyed_by_aggregate_then_deleted()
-> anyhow::Result<()> {
    let env = common::env().await?;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut tx = env.pool().begin().await?;
    let first = NewEvent::new(
        "order",
        "o-1",
        "OrderPlaced",
        serde_json::json!({"total": 99}),
    )
    .with_traceparent(tp)
    .with_header("tenant", "acme");
    let stored = enqueue(&mut tx, &first).await?;
    enqueue(
        &mut tx,
        &NewEvent::new("order", "o-1", "OrderPaid", serde_json::json!({})),
    )
    .await?;
    enqueue(
        &mut tx,
        &NewEvent::new("order", "o-2", "OrderPlaced", serde_json::json!({})),
    )
    .await?;
    tx.commit().await?;

    let relay = env.relay().build()?.spawn(CancellationToken::new());
    let seen = env.read(3, Duration::from_secs(20)).await?;
    env.drained(Duration::from_secs(10)).await?;
    relay.shutdown().await?;

    let e = seen
        .envelopes
        .iter()
        .find(|e| e.event_id == stored.event_id)
        .expect("the first event was published");
    assert_eq!(
        (e.aggregate_id.as_str(), e.sequence, e.event_type.as_str()),
        ("o-1", 1, "OrderPlaced")
    );
    assert_eq!(e.traceparent.as_deref(), Some(tp));
    assert_eq!(e.payload, serde_json::json!({"total": 99}));
    for (key, envelope) in seen.keys.iter().zip(&seen.envelopes) {
        assert_eq!(
            key, &envelope.aggregate_id,
            "the record key is the aggregate id"
        );
    }
    let report = seen.audit.report();
    assert_eq!((report.unique, report.violations), (3, 0));
    Ok(())
}

#[tokio::test]
async fn a_rollback_publishes_nothing_while_the_next_commit_is_published() -> anyhow::Result<()> {
    let env = common::env().await?;
    let relay = env.relay().build()?.spawn(CancellationToken::new());
    let mut tx = env.pool().begin().await?;
    enqueue(
        &mut tx,
        &NewEvent::new("order", "gone", "OrderPlaced", serde_json::json!({})),
    )
    .await?;
    tx.rollback().await?;
    env.write("kept", 1).await?;
    let seen = env.read(1, Duration::from_secs(20)).await?;
    relay.shutdown().await?;
    assert_eq!(
        seen.keys,
        vec!["kept".to_owned()],
        "only the committed event may reach Kafka"
    );
    Ok(())
}

#[tokio::test]
async fn notify_wakes_an_idle_relay_in_milliseconds_without_polling() -> anyhow::Result<()> {
    let env = common::env().await?;
    let relay = env
        .relay()
        .wake(WakeMode::Notify)
        .poll_interval(Duration::from_secs(600))
        .build()?
        .spawn(CancellationToken::new());
    // Wait until the relay has done its first (empty) claim and is asleep.
    harness::eventually(Duration::from_secs(10), || async {
        (relay.metrics().batches >= 1).then_some(())
    })
    .await?;
    let start = Instant::now();
    env.write("wake", 1).await?;
    env.drained(Duration::from_secs(5)).await?;
    let elapsed = start.elapsed();
    relay.shutdown().await?;
    assert!(
        elapsed < Duration::from_secs(5),
        "published after {elapsed:?}; the poll interval is 600 s"
    );
    Ok(())
}

#[tokio::test]
async fn the_relay_reports_published_count_and_commit_to_ack_latency() -> anyhow::Result<()> {
    let env = common::env().await?;
    for a in 0..5 {
        env.write(&format!("a{a}"), 4).await?;
    }
    let relay = env.relay().build()?.spawn(CancellationToken::new());
    env.drained(Duration::from_secs(20)).await?;
    let metrics = harness::eventually(Duration::from_secs(5), || async {
        let m = relay.metrics();
        (m.published == 20).then_some(m)
    })
    .await?;
    relay.shutdown().await?;
    assert_eq!((metrics.parked, metrics.latency_samples), (0, 20));
    assert!(metrics.latency_p99.is_some());
    Ok(())
}

#[tokio::test]
async fn shutdown_returns_promptly_after_the_batch_in_hand() -> anyhow::Result<()> {
    let env = common::env().await?;
    let relay = env.relay().build()?.spawn(CancellationToken::new());
    env.write("x", 10).await?;
    env.drained(Duration::from_secs(20)).await?;
    let start = Instant::now();
    relay.shutdown().await?;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn waiting_for_published_events_returns_once_they_are_deleted() -> anyhow::Result<()> {
    let env = common::env().await?;
    let relay = env.relay().build()?.spawn(CancellationToken::new());
    // Nothing is published yet, so a wait for one event must not return.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), relay.published_reaches(1))
            .await
            .is_err(),
        "returned before anything was published"
    );
    env.write("counted", 5).await?;
    tokio::time::timeout(Duration::from_secs(20), relay.published_reaches(5))
        .await
        .map_err(|_| anyhow::anyhow!("5 events not published within 20 s"))?;
    // Published means acknowledged AND deleted: the claim that got there has committed.
    assert_eq!(env.outbox_rows().await?, 0);
    assert!(relay.published() >= 5);
    relay.shutdown().await?;
    Ok(())
}
