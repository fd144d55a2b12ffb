//! The consumer loop: poll a batch, process it in one transaction, commit offsets after.
//!
//! # Why offsets are committed after the database commit, and what each crash does
//!
//! | crash point                                   | Postgres            | Kafka offset  | on restart                                  |
//! |-----------------------------------------------|---------------------|---------------|---------------------------------------------|
//! | while processing / before `COMMIT`            | rolled back         | not moved     | redelivered, applied once                   |
//! | after `COMMIT`, before the offset commit      | effects + inbox rows | not moved    | redelivered, inbox says duplicate, skipped  |
//! | after the offset commit                       | committed           | moved         | nothing redelivered                         |
//!
//! Every row ends in "applied exactly once". The reverse order (offsets first) turns the
//! middle row into "offset moved, effect rolled back": a lost message, which no consumer can
//! detect afterwards. Duplicates are recoverable (the inbox exists for them); losses are not.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchError, Processor};
use crate::context::GroupContext;
use crate::{ConsumerError, Handler, Metrics, Retention};

/// An idempotent Kafka consumer writing effects to Postgres. Build with
/// [`Consumer::builder`](crate::Consumer::builder), start with [`Consumer::run`] or
/// [`Consumer::spawn`].
pub struct Consumer<H> {
    /// The group member; `Arc` so offset commits can run on a blocking thread.
    pub(crate) kafka: Arc<StreamConsumer<GroupContext>>,
    /// Applies batches.
    pub(crate) processor: Processor<H>,
    /// Records per transaction at most.
    pub(crate) batch_size: usize,
    /// How long to wait for a batch to fill once its first record arrived.
    pub(crate) batch_linger: Duration,
    /// Inbox pruning, if configured.
    pub(crate) retention: Option<Retention>,
}

impl<H: Handler> Consumer<H> {
    /// Counters of this consumer; clones stay live while it runs.
    pub fn metrics(&self) -> Metrics {
        self.processor.metrics.clone()
    }

    /// Consumes until `shutdown` is cancelled.
    ///
    /// On shutdown the batch in progress is finished and committed — unless it is waiting for
    /// a retry, in which case it is abandoned uncommitted and will be redelivered.
    ///
    /// # Errors
    /// Only [`ConsumerError::InjectedFault`] in crash tests: all runtime failures (Postgres or
    /// Kafka unavailable, handler errors) are retried or dead-lettered, not returned.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let pruner = self.retention.map(|r| {
            let inbox = self.processor.inbox.clone();
            let pool = self.processor.pool.clone();
            tokio::spawn(r.run(inbox, pool, shutdown.child_token()))
        });
        let result = self.consume(&shutdown).await;
        if let Some(p) = pruner {
            p.abort();
        }
        result
    }

    /// Runs the consumer on a task and returns a handle to stop or kill it.
    pub fn spawn(self) -> ConsumerHandle {
        let shutdown = CancellationToken::new();
        let metrics = self.metrics();
        let task = tokio::spawn(self.run(shutdown.clone()));
        ConsumerHandle {
            task,
            shutdown,
            metrics,
        }
    }

    /// The loop: collect a batch, process it in one transaction, commit its offsets, repeat.
    ///
    /// Deliberately sequential. Overlapping the database work of batch N with collecting batch
    /// N+1 was measured here and bought nothing on a CPU-bound 2-core machine, while it would
    /// let rebalance callbacks (which run inside `poll`) fire with a batch in flight.
    async fn consume(&self, shutdown: &CancellationToken) -> Result<(), ConsumerError> {
        loop {
            let Some(batch) = self.next_batch(shutdown).await else {
                return Ok(());
            };
            if self.settle(batch, shutdown).await?.is_break() {
                return Ok(());
            }
        }
    }

    /// Takes one collected batch to the end: abandons the records of partitions revoked while
    /// it was being collected, applies the rest in one transaction, then commits their
    /// offsets. `Break`: abandoned at shutdown, nothing committed.
    async fn settle(
        &self,
        batch: Vec<OwnedMessage>,
        shutdown: &CancellationToken,
    ) -> Result<ControlFlow<()>, ConsumerError> {
        let batch = self.drop_revoked(batch);
        if batch.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let Some(tally) = self.process(&batch, shutdown).await? else {
            return Ok(ControlFlow::Break(()));
        };
        tracing::debug!(records = batch.len(), ?tally, "batch committed");
        self.processor.metrics.add_batch(tally);
        self.commit_offsets(&batch).await;
        Ok(ControlFlow::Continue(()))
    }

    /// Waits for one record (or shutdown), then gathers more until the batch is full or the
    /// linger time has passed. `recv` is cancellation safe, so the timeouts lose nothing.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let first = tokio::select! {
            () = shutdown.cancelled() => return None,
            m = self.kafka.recv() => m,
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        match first {
            Ok(m) => batch.push(m.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "kafka poll failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some(batch);
            }
        }
        let deadline = Instant::now() + self.batch_linger;
        while batch.len() < self.batch_size {
            match tokio::time::timeout_at(deadline, self.kafka.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka poll failed");
                    break;
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Drops records of partitions revoked while the batch was being collected: neither
    /// applied nor committed (the `abandoned` metric). Their new owner reads them from the last
    /// committed offset; applying them here as well would race it, and committing their
    /// offsets from a member that no longer owns the partition could move its committed
    /// position under the new owner's feet.
    fn drop_revoked(&self, batch: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
        if !self.kafka.context().take_change() {
            return batch;
        }
        let Ok(assignment) = self.kafka.assignment() else {
            return batch;
        };
        let owned: std::collections::HashSet<(String, i32)> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let before = batch.len();
        let kept: Vec<_> = batch
            .into_iter()
            .filter(|m| owned.contains(&(m.topic().to_owned(), m.partition())))
            .collect();
        let dropped = (before - kept.len()) as u64;
        if dropped > 0 {
            tracing::info!(dropped, "abandoned records of revoked partitions");
            self.processor.metrics.abandoned(dropped);
        }
        kept
    }

    /// Processes a batch until it commits. Infrastructure failures (Postgres down, DLQ
    /// unavailable) are retried with capped backoff indefinitely: dead-lettering messages
    /// because a dependency is down would empty the topic into the DLQ during an outage.
    /// `Ok(None)`: abandoned at shutdown.
    async fn process(
        &self,
        batch: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<Option<crate::metrics::BatchTally>, ConsumerError> {
        let mut failures = 0u32;
        loop {
            let error = match self.processor.process(batch, shutdown).await {
                Ok(tally) => return Ok(Some(tally)),
                Err(BatchError::Abandoned) => return Ok(None),
                Err(BatchError::Fault(point)) => return Err(ConsumerError::InjectedFault(point)),
                Err(e) => e,
            };
            failures = failures.saturating_add(1);
            let delay = self.processor.retry.ceiling(failures);
            tracing::warn!(%error, failures, ?delay, "batch failed; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Commits, per partition, the offset after the last record of the batch.
    ///
    /// Runs only after the database commit. A failure (typically: the group rebalanced and
    /// this member lost the partition) is logged, not retried: the effects are safe in
    /// Postgres and the new owner's redelivery is absorbed by the inbox.
    async fn commit_offsets(&self, batch: &[OwnedMessage]) {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for m in batch {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in next {
            if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
                tracing::warn!(error = %e, "invalid offset");
            }
        }
        let kafka = Arc::clone(&self.kafka);
        // A synchronous commit blocks on the broker's answer: keep it off the async workers.
        let result =
            tokio::task::spawn_blocking(move || kafka.commit(&tpl, CommitMode::Sync)).await;
        if !matches!(result, Ok(Ok(()))) {
            tracing::warn!(
                ?result,
                "offset commit failed; records will be redelivered and deduplicated"
            );
            self.processor.metrics.offset_commit_failed();
        }
    }
}

/// A running consumer task.
pub struct ConsumerHandle {
    /// The task running [`Consumer::run`].
    task: JoinHandle<Result<(), ConsumerError>>,
    /// Cancels the task's loop.
    shutdown: CancellationToken,
    /// The consumer's counters.
    metrics: Metrics,
}

impl ConsumerHandle {
    /// The consumer's counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Whether the task has stopped (shut down, killed or crashed at a fault point).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Graceful stop: finishes the current batch, commits, leaves the group.
    ///
    /// # Errors
    /// The consumer's own error, if it stopped with one.
    pub async fn shutdown(self) -> Result<(), ConsumerError> {
        self.shutdown.cancel();
        self.join().await
    }

    /// Waits for the task to end by itself.
    ///
    /// # Errors
    /// The consumer's own error, if it stopped with one.
    pub async fn join(self) -> Result<(), ConsumerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ConsumerError::Stopped(e.to_string())),
        }
    }

    /// Kills the consumer like a crashed process: no batch is finished, nothing more is
    /// committed (an open transaction rolls back when its connection is dropped).
    pub fn kill(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
