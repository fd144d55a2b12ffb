//! Consumer-group behaviour: instances share partitions; a killed instance loses nothing and
//! double-applies nothing.

mod support;

use std::num::NonZeroUsize;
use std::time::Duration;

use support::{TestHandler, WITHIN, World, events};

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
