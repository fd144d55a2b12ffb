//! Replaying dead letters: re-publishing selected DLQ records to the topic they came from.
//!
//! A replayed record is a new record (new offset) carrying the original key, value and
//! headers, so it lands in the same partition as its aggregate and, if it has an `event-id`,
//! is deduplicated by it: replaying the same dead letter twice applies it once.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::{ConsumerError, DeadLetter};

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every record in the DLQ.
    All,
    /// Records at these offsets of one DLQ partition.
    Offsets {
        /// DLQ partition.
        partition: i32,
        /// Offsets, inclusive.
        range: RangeInclusive<i64>,
    },
    /// Records whose original `event-id` is one of these.
    EventIds(HashSet<Uuid>),
}

impl ReplaySelection {
    fn matches(&self, letter: &DeadLetter) -> bool {
        match self {
            Self::All => true,
            Self::Offsets { partition, range } => {
                letter.dlq_partition == *partition && range.contains(&letter.dlq_offset)
            }
            Self::EventIds(ids) => letter.event_id().is_some_and(|id| ids.contains(&id)),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// DLQ records read.
    pub scanned: u64,
    /// Records re-published to their source topic.
    pub replayed: u64,
}

/// Reads `dlq_topic` from the beginning up to its current end and re-publishes the selected
/// records to their `dlq-source-topic`, with original key and headers (the `dlq-*` context is
/// stripped so a renewed failure gets fresh context).
///
/// `consumer` needs `bootstrap.servers` (a `group.id` is allowed; nothing is committed);
/// `producer` is used as-is.
///
/// # Errors
/// [`ConsumerError::Kafka`] if the DLQ cannot be read or a record cannot be published; records
/// published before the error stay published (replaying again is safe for enveloped events).
pub async fn replay(
    consumer: &ClientConfig,
    producer: &FutureProducer,
    dlq_topic: &str,
    selection: &ReplaySelection,
) -> Result<ReplayReport, ConsumerError> {
    let mut config = consumer.clone();
    config
        .set("enable.auto.commit", "false")
        .set("group.id", format!("dlq-replay-{}", Uuid::new_v4()));
    let reader: StreamConsumer = config.create()?;
    let ends = assign_all(&reader, dlq_topic)?;
    // Read each non-empty partition up to the end it had when the replay started: records
    // dead-lettered meanwhile (e.g. a replayed record failing again) are left for next time.
    let mut remaining: HashSet<i32> = ends
        .iter()
        .filter(|(_, low, high)| high > low)
        .map(|(p, _, _)| *p)
        .collect();
    let mut report = ReplayReport::default();
    while !remaining.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(10), reader.recv())
            .await
            .map_err(|_| {
                rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                )
            })??;
        let partition = rdkafka::Message::partition(&message);
        let offset = rdkafka::Message::offset(&message);
        if ends
            .iter()
            .any(|(p, _, high)| *p == partition && offset + 1 >= *high)
        {
            remaining.remove(&partition);
        }
        report.scanned += 1;
        let Some(letter) = DeadLetter::from_message(&message) else {
            continue;
        };
        if selection.matches(&letter) {
            republish(producer, &letter).await?;
            report.replayed += 1;
        }
    }
    Ok(report)
}

/// Assigns every partition of `topic` from its start; returns (partition, low, high) watermarks.
fn assign_all(reader: &StreamConsumer, topic: &str) -> Result<Vec<(i32, i64, i64)>, ConsumerError> {
    let timeout = Duration::from_secs(10);
    let metadata = reader.fetch_metadata(Some(topic), timeout)?;
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = reader.fetch_watermarks(topic, p.id(), timeout)?;
            ends.push((p.id(), low, high));
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    reader.assign(&tpl)?;
    Ok(ends)
}

async fn republish(producer: &FutureProducer, letter: &DeadLetter) -> Result<(), ConsumerError> {
    let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len());
    for (key, value) in &letter.headers {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&letter.source_topic).headers(headers);
    if let Some(k) = &letter.key {
        record = record.key(k);
    }
    if let Some(p) = &letter.payload {
        record = record.payload(p);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| ConsumerError::Kafka(e))?;
    Ok(())
}
