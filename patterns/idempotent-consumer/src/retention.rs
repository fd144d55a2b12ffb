//! Inbox retention: how long dedupe keys are kept, and how they are pruned.
//!
//! # The trade-off
//! A key only protects against redeliveries that happen while it exists. The horizon must
//! therefore exceed the longest time a message can come back: Kafka retention of the source
//! topic (a group reset to `earliest`), the longest outage after which a consumer resumes from
//! an old committed offset, and the age of anything that may be replayed from the DLQ. Past the
//! horizon, an envelope event is still caught by its aggregate's sequence (`aggregate_version`
//! is never pruned; it holds one row per aggregate, not per event), but a plain record without
//! a sequence would be applied again.
//!
//! Pruning uses small batched deletes rather than time-partitioning the table: a partitioned
//! table's primary key must include the partition column (`processed_at`), so Postgres could
//! no longer enforce "this key exists once" across partitions — the very constraint the inbox
//! is made of. Batched deletes keep each transaction short, let autovacuum reclaim space as it
//! goes, and keep the table at a steady size (rows/s × horizon). At very high rates, where
//! delete-and-vacuum cost dominates, partitioning by time with a dedupe check over the live
//! partitions is the next step.

use std::num::NonZeroU32;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Inbox;

/// How long inbox keys live and how pruning runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keys older than this are deleted.
    pub horizon: Duration,
    /// Time between pruning passes.
    pub interval: Duration,
    /// Rows per delete statement.
    pub batch: NonZeroU32,
}

impl Retention {
    /// Keeps keys for `horizon`; prunes every minute, 1 000 rows per statement.
    pub fn new(horizon: Duration) -> Self {
        Self {
            horizon,
            interval: Duration::from_secs(60),
            batch: NonZeroU32::new(1_000).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// Sets the time between pruning passes.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the rows per delete statement.
    #[must_use]
    pub fn with_batch(mut self, batch: NonZeroU32) -> Self {
        self.batch = batch;
        self
    }

    /// Prunes every `interval` until `shutdown`. Failures are logged and retried next pass:
    /// pruning late only costs space.
    pub(crate) async fn run(self, inbox: Inbox, pool: PgPool, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match inbox
                .prune(&pool, self.horizon, i64::from(self.batch.get()))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned inbox"),
                Err(e) => tracing::warn!(error = %e, "inbox pruning failed"),
            }
        }
    }
}
