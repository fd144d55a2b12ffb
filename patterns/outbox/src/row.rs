//! One claimed outbox row and how it becomes an [`Envelope`].

use chrono::{DateTime, Utc};
use event_envelope::{EncodedRecord, Envelope, EnvelopeError, header};
use rdkafka::message::{Header, OwnedHeaders};
use uuid::Uuid;

/// An unpublished event as the relay reads it from `outbox`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxRow {
    /// Row id; claim order within a batch follows it.
    pub id: i64,
    /// Unique event id, published in the `event-id` header.
    pub event_id: Uuid,
    /// Kind of aggregate.
    pub aggregate_type: String,
    /// Aggregate instance; the record key.
    pub aggregate_id: String,
    /// Position within the aggregate.
    pub sequence: i64,
    /// Name of the event.
    pub event_type: String,
    /// Business payload.
    pub payload: sqlx::types::Json<serde_json::Value>,
    /// Extra headers (string values), including `traceparent`.
    pub headers: sqlx::types::Json<serde_json::Value>,
    /// When the row was inserted (server clock).
    pub created_at: DateTime<Utc>,
}

impl OutboxRow {
    /// `(aggregate_type, aggregate_id)`: the unit of ordering.
    pub fn aggregate(&self) -> (&str, &str) {
        (&self.aggregate_type, &self.aggregate_id)
    }

    /// The shared wire envelope for this row.
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            event_id: self.event_id,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            event_type: self.event_type.clone(),
            occurred_at: self.created_at,
            traceparent: self
                .headers
                .get(header::TRACEPARENT)
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            payload: self.payload.0.clone(),
        }
    }

    /// Key, value and headers exactly as [`Envelope::encode`] builds them, plus the row's extra
    /// headers appended (the envelope has no slot for caller-defined headers, so they are added
    /// here rather than changing the shared format).
    ///
    /// # Errors
    /// [`EnvelopeError::Serialise`] if the payload cannot be written as JSON.
    pub fn encode(&self) -> Result<EncodedRecord, EnvelopeError> {
        let mut record = self.to_envelope().encode()?;
        if let Some(extra) = self.headers.as_object() {
            let mut headers: OwnedHeaders = record.headers;
            for (name, value) in extra {
                if name == header::TRACEPARENT {
                    continue;
                }
                if let Some(value) = value.as_str() {
                    headers = headers.insert(Header {
                        key: name.as_str(),
                        value: Some(value),
                    });
                }
            }
            record.headers = headers;
        }
        Ok(record)
    }
}
