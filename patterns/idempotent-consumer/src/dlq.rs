//! The dead-letter queue: where messages that cannot succeed go, with everything needed to
//! understand and replay them.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Header names the consumer adds to a dead-lettered record (original headers are kept).
pub mod dlq_header {
    /// The error that made the message fail, as text.
    pub const ERROR: &str = "dlq-error";
    /// How many attempts were made.
    pub const ATTEMPTS: &str = "dlq-attempts";
    /// Topic the message was read from (and is replayed to).
    pub const SOURCE_TOPIC: &str = "dlq-source-topic";
    /// Partition it was read from.
    pub const SOURCE_PARTITION: &str = "dlq-source-partition";
    /// Offset it was read from.
    pub const SOURCE_OFFSET: &str = "dlq-source-offset";
    /// When it was dead-lettered, RFC 3339 UTC.
    pub const FAILED_AT: &str = "dlq-failed-at";
    /// Name of the consumer that gave up on it.
    pub const CONSUMER: &str = "dlq-consumer";
    /// Prefix shared by all of the above; stripped on replay.
    pub const PREFIX: &str = "dlq-";
}

/// Writes failed messages to the dead-letter topic.
#[derive(Clone)]
pub(crate) struct DeadLetterQueue {
    /// Shared producer (cheap to clone, thread-safe).
    pub(crate) producer: FutureProducer,
    /// Destination topic.
    pub(crate) topic: String,
    /// Written into `dlq-consumer`.
    pub(crate) consumer: String,
}

impl DeadLetterQueue {
    /// Publishes `record` with its original key, value and headers plus the `dlq-*` context,
    /// and waits for the broker's acknowledgement: the source offset may only be committed
    /// once the dead letter is durable, or a crash would lose the message entirely.
    pub(crate) async fn send(
        &self,
        record: &OwnedMessage,
        error: &str,
        attempts: u32,
    ) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = record.headers() {
            for h in original.iter() {
                // A replayed message that fails again gets fresh context, not two sets.
                if !h.key.starts_with(dlq_header::PREFIX) {
                    headers = headers.insert(Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
        }
        let context = [
            (dlq_header::ERROR, error.to_owned()),
            (dlq_header::ATTEMPTS, attempts.to_string()),
            (dlq_header::SOURCE_TOPIC, record.topic().to_owned()),
            (dlq_header::SOURCE_PARTITION, record.partition().to_string()),
            (dlq_header::SOURCE_OFFSET, record.offset().to_string()),
            (
                dlq_header::FAILED_AT,
                Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            (dlq_header::CONSUMER, self.consumer.clone()),
        ];
        for (key, value) in &context {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = record.key() {
            out = out.key(key);
        }
        if let Some(payload) = record.payload() {
            out = out.payload(payload);
        }
        self.producer
            .send(out, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

/// A record read back from the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Original record key.
    pub key: Option<Vec<u8>>,
    /// Original record value, byte for byte.
    pub payload: Option<Vec<u8>>,
    /// Original headers (without the `dlq-*` ones), in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// `dlq-error`.
    pub error: String,
    /// `dlq-attempts`.
    pub attempts: u32,
    /// `dlq-source-topic`.
    pub source_topic: String,
    /// `dlq-source-partition`.
    pub source_partition: i32,
    /// `dlq-source-offset`.
    pub source_offset: i64,
    /// `dlq-failed-at` as written.
    pub failed_at: String,
    /// `dlq-consumer`.
    pub consumer: String,
    /// Partition of the dead-letter topic this record sits in.
    pub dlq_partition: i32,
    /// Offset in the dead-letter topic.
    pub dlq_offset: i64,
}

impl DeadLetter {
    /// Parses a record of the dead-letter topic; `None` if it lacks the `dlq-*` context.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Option<Self> {
        let mut headers = Vec::new();
        let mut ctx = std::collections::HashMap::new();
        if let Some(hs) = message.headers() {
            for h in hs.iter() {
                if h.key.starts_with(dlq_header::PREFIX) {
                    let v = h.value.and_then(|v| std::str::from_utf8(v).ok());
                    ctx.insert(h.key.to_owned(), v.unwrap_or_default().to_owned());
                } else {
                    headers.push((h.key.to_owned(), h.value.map(<[u8]>::to_vec)));
                }
            }
        }
        let get = |k: &str| ctx.get(k).cloned();
        Some(Self {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            error: get(dlq_header::ERROR)?,
            attempts: get(dlq_header::ATTEMPTS)?.parse().ok()?,
            source_topic: get(dlq_header::SOURCE_TOPIC)?,
            source_partition: get(dlq_header::SOURCE_PARTITION)?.parse().ok()?,
            source_offset: get(dlq_header::SOURCE_OFFSET)?.parse().ok()?,
            failed_at: get(dlq_header::FAILED_AT)?,
            consumer: get(dlq_header::CONSUMER)?,
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
        })
    }

    /// The original `event-id` header, if the message had a parseable one.
    pub fn event_id(&self) -> Option<uuid::Uuid> {
        self.headers
            .iter()
            .find(|(k, _)| k == event_envelope::header::EVENT_ID)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
    }
}
