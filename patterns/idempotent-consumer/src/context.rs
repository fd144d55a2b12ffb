//! Rebalance awareness: the consumer-group callbacks.

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

/// Consumer context that notes when the assignment changed.
///
/// Why so little happens here: librdkafka runs these callbacks inside `poll`, and the consumer
/// only polls *between* batches — a batch is processed, committed to Postgres and its offsets
/// committed to Kafka before the next poll. So when a revocation arrives there is no in-flight
/// work to finish and nothing processed but uncommitted. What can exist is a batch being
/// *collected* across several polls; the flag tells the loop to drop the records of partitions
/// it no longer owns (abandon them: not processed, not committed, the new owner reads them).
/// If a batch outlives the membership (processing longer than `max.poll.interval.ms`), the
/// group moves on without this member; the batch still finishes (its transaction commits), and
/// its offset commit is rejected by Kafka (the member was fenced) — or accepted by a lenient
/// broker, which is harmless too: it only covers records whose effects are committed. The new
/// owner's redelivery of those records is absorbed by the inbox.
#[derive(Debug, Default)]
pub(crate) struct GroupContext {
    /// Set on every assignment change; cleared by the loop when it re-reads the assignment.
    pub(crate) changed: AtomicBool,
    /// For logs.
    pub(crate) consumer: String,
}

impl GroupContext {
    /// Notes an assignment change; the loop re-reads the assignment before its next batch.
    pub(crate) fn assignment_changed(&self) {
        self.changed.store(true, Ordering::SeqCst);
    }

    /// Whether the assignment changed since the last call; clears the note.
    pub(crate) fn take_change(&self) -> bool {
        self.changed.swap(false, Ordering::SeqCst)
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(consumer = %self.consumer, partitions = %describe(tpl), "partitions revoked");
                self.assignment_changed();
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(consumer = %self.consumer, partitions = %describe(tpl), "partitions assigned");
                self.assignment_changed();
            }
            Rebalance::Error(e) => {
                tracing::warn!(consumer = %self.consumer, error = %e, "rebalance error")
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}
