//! Retries, dead letters, malformed records and replay.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use event_envelope::{Envelope, header};
use idempotent_consumer::{ReplaySelection, replay};
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::json;
use support::{TestHandler, WITHIN, World};

fn deposit(aggregate: &str, sequence: i64, payload: serde_json::Value) -> Envelope {
    Envelope::new("account", aggregate, sequence, "Deposited", payload)
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_with_full_context_and_the_partition_moves_on()
-> anyhow::Result<()> {
    let w = World::new(1).await?;
    let mut evs: Vec<Envelope> = (1..=10)
        .map(|s| deposit(&format!("a{s}"), 1, json!({"amount": s})))
        .collect();
    evs[3] = deposit("a4", 1, json!({"amount": 4, "poison": "transient"}));
    evs[6] = deposit("a7", 1, json!({"amount": 7, "poison": "permanent"}));
    evs[8] = deposit("a9", 1, json!({"amount": 9, "fail_first": 2})); // recovers on retry
    w.publish(&evs).await?;

    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async {
        (m.snapshot().applied == 8).then_some(())
    })
    .await?;
    assert!(!c.is_finished(), "the consumer keeps running");
    c.shutdown().await?;

    let mut dead = w.dead_letters(2).await?;
    dead.sort_by_key(|d| d.source_offset);
    let (transient, permanent) = (&dead[0], &dead[1]);
    assert_eq!(
        transient.attempts, 3,
        "transient: all configured attempts were made"
    );
    assert_eq!(permanent.attempts, 1, "permanent: straight to the DLQ");
    assert!(transient.error.contains("dependency always busy"));
    assert!(permanent.error.contains("rejected by business rule"));
    for (d, original, offset) in [(transient, &evs[3], 3), (permanent, &evs[6], 6)] {
        let encoded = original.encode()?;
        assert_eq!(
            d.key.as_deref(),
            Some(encoded.key.as_bytes()),
            "original key"
        );
        assert_eq!(
            d.payload.as_deref(),
            Some(&encoded.payload[..]),
            "original payload"
        );
        assert_eq!(d.event_id(), Some(original.event_id), "original headers");
        assert_eq!(
            (d.source_topic.as_str(), d.source_partition, d.source_offset),
            (w.topic.as_str(), 0, offset)
        );
        assert_eq!(d.consumer, "ledger");
        assert!(chrono::DateTime::parse_from_rfc3339(&d.failed_at).is_ok());
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT amount FROM effects ORDER BY amount")
        .fetch_all(w.pg.pool())
        .await?;
    assert_eq!(
        applied,
        vec![1, 2, 3, 5, 6, 8, 9, 10],
        "messages after the poison were processed"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_records_are_dead_lettered_with_the_parse_error_and_never_stop_the_consumer()
-> anyhow::Result<()> {
    let w = World::new(1).await?;
    let good = deposit("ok", 1, json!({"amount": 1}));
    // 1. not JSON, no envelope
    w.send(Some(b"k"), Some(b"\x00\xffnot json"), None).await?;
    // 2. envelope headers, body not JSON
    let e = deposit("x", 1, json!({}));
    w.send(Some(b"x"), Some(b"{truncated"), Some(e.headers()))
        .await?;
    // 3. envelope missing its sequence header
    let partial = OwnedHeaders::new()
        .insert(Header {
            key: header::EVENT_ID,
            value: Some(&uuid::Uuid::now_v7().to_string()),
        })
        .insert(Header {
            key: header::AGGREGATE_TYPE,
            value: Some("account"),
        })
        .insert(Header {
            key: header::AGGREGATE_ID,
            value: Some("y"),
        });
    w.send(Some(b"y"), Some(b"{\"amount\":1}"), Some(partial))
        .await?;
    // 4. valid envelope, payload of the wrong type
    w.publish(&[deposit("z", 1, json!({"amount": "ten"}))])
        .await?;
    // 5. tombstone (no value)
    w.send(Some(b"t"), None, None).await?;
    w.publish(std::slice::from_ref(&good)).await?;

    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async {
        (m.snapshot().applied == 1).then_some(())
    })
    .await?;
    assert!(!c.is_finished());
    c.shutdown().await?;

    let mut dead = w.dead_letters(5).await?;
    dead.sort_by_key(|d| d.source_offset);
    let errors: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
    assert!(errors[0].contains("not valid JSON"), "{}", errors[0]);
    assert!(errors[1].contains("not valid JSON"), "{}", errors[1]);
    assert!(errors[2].contains("`sequence` is missing"), "{}", errors[2]);
    assert!(errors[3].contains("invalid type"), "{}", errors[3]);
    assert!(errors[4].contains("no value"), "{}", errors[4]);
    assert_eq!(
        dead[0].payload.as_deref(),
        Some(&b"\x00\xffnot json"[..]),
        "bytes kept as they were"
    );
    assert_eq!(w.effects().await, 1);
    Ok(())
}

#[tokio::test]
async fn replay_republishes_selected_dead_letters_and_they_apply_exactly_once() -> anyhow::Result<()>
{
    let w = World::new(2).await?;
    let broken = deposit("b1", 1, json!({"amount": 1, "breakable": true}));
    let other = deposit("b2", 1, json!({"amount": 2, "breakable": true}));
    w.publish(&[broken.clone(), other.clone()]).await?;

    let handler = TestHandler::default();
    handler.broken.store(true, Ordering::SeqCst);
    let c = w
        .consumer("ledger", &w.kafka.group_id("g"), handler.clone())
        .build()?
        .spawn();
    let m = c.metrics();
    harness::eventually(WITHIN, || async {
        (m.snapshot().dead_lettered == 2).then_some(())
    })
    .await?;

    handler.broken.store(false, Ordering::SeqCst); // the bug is fixed
    let only_first = ReplaySelection::EventIds(HashSet::from([broken.event_id]));
    let consumer_cfg = w.kafka.consumer_config(&w.kafka.group_id("replay"));
    let report = replay(&consumer_cfg, &w.producer, &w.dlq, &only_first).await?;
    assert_eq!((report.scanned, report.replayed), (2, 1));
    harness::eventually(WITHIN, || async {
        (m.snapshot().applied == 1).then_some(())
    })
    .await?;

    // Replaying the same dead letter again is harmless: the inbox knows its event id.
    replay(&consumer_cfg, &w.producer, &w.dlq, &only_first).await?;
    harness::eventually(WITHIN, || async {
        (m.snapshot().duplicates == 1).then_some(())
    })
    .await?;
    c.shutdown().await?;

    let keys: Vec<String> = sqlx::query_scalar("SELECT message_key FROM effects")
        .fetch_all(w.pg.pool())
        .await?;
    assert_eq!(keys, vec![format!("event:{}", broken.event_id)]);
    Ok(())
}
