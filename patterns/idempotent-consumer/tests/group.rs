//! Consumer-group behaviour: instances share partitions; a killed instance loses nothing and
//! double-applies nothing; a revocation during an in-flight batch never lets the committed
//! offset pass a record whose effect is not in Postgres.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use support::{Gate, TestHandler, WITHIN, World, events};

#[tokio::test]
async fn two_instances_share_the_work_and_a_killed_one_loses_and_doubles_nothing()
-> anyhow::Result<()> {
    let w = World::new(4).await?;
    let group = w.kafka.group_id("g");
    // A slow effect (5 ms per event) keeps both members busy long enough to kill one
    // mid-stream: 400 events take seconds, the group settles in about one.
    let slow = TestHandler {
        delay: Some(Duration::from_millis(5)),
        ..TestHandler::default()
    };
    let evs: Vec<_> = (0..40)
        .flat_map(|a| events(&format!("acc-{a}"), 10))
        .collect();
    w.publish(&evs).await?;

    let ten = NonZeroUsize::new(10).expect("non-zero");
    let a = w
        .consumer("ledger", &group, slow.clone())
        .batch_size(ten)
        .build()?
        .spawn();
    let b = w
        .consumer("ledger", &group, slow.clone())
        .batch_size(ten)
        .build()?
        .spawn();
    let (ma, mb) = (a.metrics(), b.metrics());
    harness::eventually(WITHIN, || async {
        (ma.snapshot().applied > 0 && mb.snapshot().applied > 0).then_some(())
    })
    .await?;
    let applied_when_killed = w.effects().await;
    assert!(applied_when_killed < 400, "the kill must happen mid-stream");

    a.kill(); // no graceful shutdown: an open batch is dropped uncommitted
    harness::eventually(WITHIN, || async {
        (w.distinct_effects().await == 400).then_some(())
    })
    .await?;
    b.shutdown().await?;

    assert_eq!(w.effects().await, 400, "every event applied, none twice");
    assert_eq!(w.max_copies().await, 1);
    Ok(())
}

/// Publishes events and returns where each landed: `(partition, offset) → inbox key`.
async fn publish_mapped(
    w: &World,
    events: &[event_envelope::Envelope],
) -> anyhow::Result<BTreeMap<(i32, i64), String>> {
    let landed = w.publish(events).await?;
    Ok(landed
        .into_iter()
        .zip(events)
        .map(|(at, e)| (at, format!("event:{}", e.event_id)))
        .collect())
}

/// The group's committed offset per partition (absent: nothing committed).
async fn committed(w: &World, group: &str, partitions: i32) -> anyhow::Result<BTreeMap<i32, i64>> {
    let partitions: Vec<i32> = (0..partitions).collect();
    Ok(w.kafka
        .committed_offsets(group, &w.topic, &partitions)
        .await?)
}

async fn applied_keys(w: &World) -> anyhow::Result<HashSet<String>> {
    let keys: Vec<String> = sqlx::query_scalar("SELECT message_key FROM effects")
        .fetch_all(w.pg.pool())
        .await?;
    Ok(keys.into_iter().collect())
}

/// The guarantee under test: below every committed offset, every record's effect is applied.
/// Offsets are read first: effects only grow, so a commit past an unapplied record stays
/// visible as a missing key.
async fn assert_offsets_behind_effects(
    w: &World,
    group: &str,
    at: &BTreeMap<(i32, i64), String>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let offsets = committed(w, group, 4).await?;
    let applied = applied_keys(w).await?;
    for (&partition, &next) in &offsets {
        for ((_, offset), key) in at.range((partition, 0)..(partition, next)) {
            assert!(
                applied.contains(key),
                "offset {next} committed on partition {partition}, but the record at {offset} \
                 ({key}) has no effect"
            );
        }
    }
    Ok(offsets)
}

#[tokio::test]
async fn a_rebalance_during_an_in_flight_batch_finishes_it_and_never_commits_past_unapplied_records()
-> anyhow::Result<()> {
    let w = World::new(4).await?;
    let group = w.kafka.group_id("g");
    let evs: Vec<_> = (0..8)
        .flat_map(|a| events(&format!("acc-{a}"), 5))
        .collect();
    let at = publish_mapped(&w, &evs).await?;
    let five = NonZeroUsize::new(5).expect("non-zero");

    // A takes all four partitions and blocks inside its first batch: transaction open,
    // effects written but not committed.
    let gate_a = Gate::default();
    let handler_a = TestHandler {
        gate: Some(gate_a.clone()),
        ..TestHandler::default()
    };
    let attempted_by_a = handler_a.attempts.clone();
    let a = w
        .consumer("ledger", &group, handler_a)
        .batch_size(five)
        .build()?
        .spawn();
    harness::eventually(WITHIN, || async { gate_a.has_waiters().then_some(()) }).await?;

    // B joins: the group takes partitions away from A while A's batch is in flight. B's
    // handler is gated too, so whatever B is given stays unapplied until we look.
    let gate_b = Gate::default();
    let handler_b = TestHandler {
        gate: Some(gate_b.clone()),
        ..TestHandler::default()
    };
    let b = w
        .consumer("ledger", &group, handler_b)
        .batch_size(five)
        .build()?
        .spawn();
    // A does not poll while its batch is in flight, so it cannot rejoin: once
    // max.poll.interval.ms has passed the group completes without it and B owns every
    // partition. Nothing is committed yet, so B starts at offset 0 and either reaches its own
    // gate or waits on the inbox rows A's open transaction holds.
    harness::eventually(WITHIN, || async {
        (gate_b.has_waiters() || blocked_on_a_lock(&w).await).then_some(())
    })
    .await?;
    assert_eq!(
        applied_keys(&w).await?.len(),
        0,
        "A's batch is still in flight"
    );
    assert_offsets_behind_effects(&w, &group, &at).await?;

    // Release A. Documented behaviour: the in-flight batch is finished — its effects commit,
    // then its offsets (Kafka rejects that commit from a fenced member, some brokers accept
    // it; either way it covers only applied records) — not abandoned halfway.
    let in_flight: Vec<String> = attempted_by_a
        .lock()
        .expect("attempts lock")
        .keys()
        .cloned()
        .collect();
    assert!(!in_flight.is_empty());
    let ma = a.metrics();
    gate_a.open();
    harness::eventually(WITHIN, || async {
        (ma.snapshot().batches >= 1).then_some(())
    })
    .await?;
    a.kill(); // stop A right after its late batch, before B has applied anything
    let sa = ma.snapshot();
    assert!(
        sa.batches >= 1 && sa.applied >= 5,
        "A's in-flight batch was finished: {sa:?}"
    );
    let offsets = assert_offsets_behind_effects(&w, &group, &at).await?;
    let applied = applied_keys(&w).await?;
    for key in &in_flight {
        assert!(
            applied.contains(key),
            "in-flight {key} was abandoned, not finished"
        );
    }
    let committed_records: i64 = offsets.values().sum();
    assert!(
        committed_records <= applied.len() as i64,
        "committed {committed_records} records' offsets with only {} effects",
        applied.len()
    );

    // B finishes, re-reading what A applied (absorbed by the inbox): everything exactly once,
    // offsets at the end of every partition.
    gate_b.open();
    harness::eventually(WITHIN, || async {
        (w.distinct_effects().await == 40).then_some(())
    })
    .await?;
    harness::eventually(WITHIN, || async {
        let offsets = committed(&w, &group, 4).await.ok()?;
        (offsets.values().sum::<i64>() == 40).then_some(())
    })
    .await?;
    assert_offsets_behind_effects(&w, &group, &at).await?;
    b.shutdown().await?;
    assert_eq!(w.effects().await, 40, "every event applied, none twice");
    assert_eq!(w.max_copies().await, 1);
    Ok(())
}

/// Whether a transaction in the test database waits on a row lock — here: B claiming inbox
/// keys that A's open transaction holds.
async fn blocked_on_a_lock(w: &World) -> bool {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(w.pg.pool())
    .await
    .is_ok_and(|n| n > 0)
}
