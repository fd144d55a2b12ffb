//! One claimed outbox row and how it becomes an [`Envelope`].

use chrono::{DateTime, Utc};
use event_envelope::{EncodedRecord, Envelope, EnvelopeError, header};
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::value::RawValue;
use uuid::Uuid;

/// An unpublished event as the relay reads it from `outbox`.
#[derive(Debug, Clone, sqlx::FromRow)]
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
    /// Business payload, the JSON text stored in the `json` column. It is published as it is,
    /// never parsed: building a `serde_json::Value` for every row and writing it out again cost
    /// the relay about a microsecond per event.
    pub payload: sqlx::types::Json<Box<RawValue>>,
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
    ///
    /// # Errors
    /// [`EnvelopeError::Payload`] if the stored payload is not valid JSON (Postgres validates
    /// a `json` column on insert, so only a row written around it could be).
    pub fn to_envelope(&self) -> Result<Envelope, EnvelopeError> {
        let payload = serde_json::from_str(self.payload.get())
            .map_err(|e| EnvelopeError::Payload(e.to_string()))?;
        Ok(self.envelope_with(payload))
    }

    /// The envelope's metadata from this row, carrying `payload`.
    fn envelope_with(&self, payload: serde_json::Value) -> Envelope {
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
            payload,
        }
    }

    /// Key, value and headers as [`Envelope::encode`] builds them, plus the row's extra headers
    /// appended (the envelope has no slot for caller-defined headers, so they are added here
    /// rather than changing the shared format). The value is the stored JSON text itself: the
    /// same JSON as the envelope's, spelled as it was stored (through [`enqueue`](crate::enqueue),
    /// the way Postgres prints `jsonb`: `{"a": 1}`). Nothing is serialised, so nothing can
    /// fail.
    pub fn encode(&self) -> EncodedRecord {
        EncodedRecord {
            key: self.aggregate_id.clone(),
            payload: self.payload_bytes().to_vec(),
            headers: self.record_headers(),
        }
    }

    /// The record value: the stored JSON text, borrowed (see [`encode`](Self::encode)).
    pub(crate) fn payload_bytes(&self) -> &[u8] {
        self.payload.get().as_bytes()
    }

    /// The record headers of [`encode`](Self::encode): the envelope's, then the row's extra
    /// string headers. The relay sends key and value borrowed from the row and builds only these.
    pub(crate) fn record_headers(&self) -> OwnedHeaders {
        let mut headers = self.envelope_with(serde_json::Value::Null).headers();
        if let Some(extra) = self.headers.as_object() {
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
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_a_row_matches_the_shared_envelope_encoding_plus_extra_headers() {
        let row = OutboxRow {
            id: 7,
            event_id: Uuid::now_v7(),
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            sequence: 3,
            event_type: "OrderPaid".into(),
            payload: sqlx::types::Json(
                RawValue::from_string(r#"{"cents": 1200, "note": "x"}"#.to_owned())
                    .expect("valid JSON"),
            ),
            headers: sqlx::types::Json(serde_json::json!({
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tenant": "acme",
            })),
            created_at: DateTime::UNIX_EPOCH,
        };
        let reference = row
            .to_envelope()
            .expect("valid payload")
            .encode()
            .expect("reference encoding");
        let record = row.encode();
        assert_eq!(record.key, reference.key);
        let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).expect("JSON");
        assert_eq!(json(&record.payload), json(&reference.payload));
        let mut expected = reference.header_pairs();
        expected.push(("tenant", Some(b"acme".as_slice())));
        assert_eq!(record.header_pairs(), expected);
    }
}
