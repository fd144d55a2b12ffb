//! Consumer-group lag: how many records of a topic the group has not committed yet.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::ConsumerError;

/// Sum over partitions of `high watermark − committed offset` for `config`'s `group.id`
/// (a partition with no commit counts from its low watermark).
///
/// Runs librdkafka's blocking admin calls on a blocking thread.
///
/// # Errors
/// [`ConsumerError::Kafka`] if metadata, watermarks or committed offsets cannot be fetched.
pub async fn consumer_lag(config: &ClientConfig, topic: &str) -> Result<i64, ConsumerError> {
    let config = config.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || blocking_lag(&config, &topic))
        .await
        .map_err(|e| ConsumerError::Stopped(e.to_string()))?
}

fn blocking_lag(config: &ClientConfig, topic: &str) -> Result<i64, ConsumerError> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut lag = 0;
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        let position = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lag += (high - position).max(0);
    }
    Ok(lag)
}
