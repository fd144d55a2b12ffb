//! What a handler sees: a decoded record with its dedupe identity.
//!
//! Decoding never panics. A record either becomes an [`Event`] or a [`DecodeError`] that the
//! consumer dead-letters with the reason, so one malformed record can never stop a partition.

use event_envelope::{Envelope, EnvelopeError, header};
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::HandlerError;

/// Where a record sits in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Topic the record was read from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// The identity a message is deduplicated by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// The envelope's `event-id`: stable across redeliveries *and* re-publishes (a replay from
    /// the dead-letter queue, a producer retry that wrote the record twice).
    Event(Uuid),
    /// Where no event id exists, the record's position. Stable across redeliveries of the same
    /// record, but a producer that writes the same fact twice creates two identities — which
    /// is why producers should send an id.
    Position(Position),
}

impl MessageId {
    /// The key stored in the inbox table.
    pub fn to_key(&self) -> String {
        match self {
            Self::Event(id) => format!("event:{id}"),
            Self::Position(p) => format!("kafka:{}:{}:{}", p.topic, p.partition, p.offset),
        }
    }
}

/// A record decoded for a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The dedupe identity.
    pub id: MessageId,
    /// Where the record was read from.
    pub position: Position,
    /// Envelope or plain JSON body.
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Envelope(Envelope),
    Plain(serde_json::Value),
}

/// Why a record could not be turned into an [`Event`]; always dead-lettered, never retried.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The record carries envelope headers but they are incomplete or malformed, or its value
    /// is not JSON.
    #[error("invalid envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A text field contains a NUL byte, which Postgres `text` cannot store; left unchecked it
    /// would fail the batch's transaction on every attempt and stall the partition.
    #[error("header `{0}` contains a NUL byte")]
    NulByte(&'static str),
}

impl Event {
    /// Decodes a record read from Kafka.
    ///
    /// A record with any envelope header must be a complete, valid envelope and is
    /// deduplicated by its `event-id`. A record with no envelope headers at all is accepted as
    /// plain JSON and deduplicated by topic/partition/offset.
    ///
    /// # Errors
    /// [`DecodeError`] naming the first problem; never panics.
    pub fn from_record(record: &OwnedMessage) -> Result<Self, DecodeError> {
        let pairs: Vec<(&str, Option<&[u8]>)> = record
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default();
        let position = Position {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
        };
        if pairs.iter().any(|(name, _)| is_envelope_header(name)) {
            let envelope = Envelope::decode(record.key(), record.payload(), pairs)?;
            check_text(&envelope)?;
            return Ok(Self {
                id: MessageId::Event(envelope.event_id),
                position,
                body: Body::Envelope(envelope),
            });
        }
        let payload = record.payload().ok_or(EnvelopeError::MissingPayload)?;
        let value =
            serde_json::from_slice(payload).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
        Ok(Self {
            id: MessageId::Position(position.clone()),
            position,
            body: Body::Plain(value),
        })
    }

    /// The envelope, when the record carried one (and so a per-aggregate sequence).
    pub fn envelope(&self) -> Option<&Envelope> {
        match &self.body {
            Body::Envelope(e) => Some(e),
            Body::Plain(_) => None,
        }
    }

    /// The JSON payload.
    pub fn payload(&self) -> &serde_json::Value {
        match &self.body {
            Body::Envelope(e) => &e.payload,
            Body::Plain(v) => v,
        }
    }

    /// Deserialises the payload into the handler's typed event.
    ///
    /// # Errors
    /// [`HandlerError::Permanent`] with serde's message (missing field, wrong type, …): the
    /// same bytes will never parse differently, so retrying is pointless.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        T::deserialize(self.payload())
            .map_err(|e| HandlerError::permanent(format!("payload does not match schema: {e}")))
    }

    /// Test and bench helper: builds an event without Kafka.
    #[doc(hidden)]
    pub fn from_envelope(envelope: Envelope, position: Position) -> Self {
        Self {
            id: MessageId::Event(envelope.event_id),
            position,
            body: Body::Envelope(envelope),
        }
    }
}

fn is_envelope_header(name: &str) -> bool {
    header::REQUIRED.contains(&name)
}

fn check_text(e: &Envelope) -> Result<(), DecodeError> {
    for (name, value) in [
        (header::AGGREGATE_TYPE, &e.aggregate_type),
        (header::AGGREGATE_ID, &e.aggregate_id),
        (header::EVENT_TYPE, &e.event_type),
    ] {
        if value.contains('\0') {
            return Err(DecodeError::NulByte(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders};

    fn record(payload: &[u8], headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.to_vec()),
            Some(b"k".to_vec()),
            "orders".into(),
            Timestamp::NotAvailable,
            2,
            17,
            headers,
        )
    }

    #[test]
    fn an_envelope_is_deduplicated_by_its_event_id() {
        let env = Envelope::new("order", "o-1", 1, "Placed", serde_json::json!({"n": 1}));
        let enc = env.encode().expect("encodes");
        let event = Event::from_record(&record(&enc.payload, Some(enc.headers))).expect("valid");
        assert_eq!(event.id, MessageId::Event(env.event_id));
        assert_eq!(event.envelope(), Some(&env));
    }

    #[test]
    fn a_plain_json_record_is_deduplicated_by_its_position() {
        let event = Event::from_record(&record(b"{\"a\":1}", None)).expect("plain JSON");
        assert_eq!(event.id.to_key(), "kafka:orders:2:17");
        assert!(event.envelope().is_none());
    }

    #[test]
    fn garbage_and_partial_envelopes_are_typed_errors() {
        assert!(matches!(
            Event::from_record(&record(b"\xff not json", None)),
            Err(DecodeError::Envelope(EnvelopeError::Payload(_)))
        ));
        let partial = OwnedHeaders::new().insert(Header {
            key: header::AGGREGATE_ID,
            value: Some("o-1"),
        });
        assert_eq!(
            Event::from_record(&record(b"{}", Some(partial))),
            Err(DecodeError::Envelope(EnvelopeError::MissingHeader(
                header::EVENT_ID
            )))
        );
    }

    #[test]
    fn a_nul_byte_in_an_aggregate_id_is_rejected_before_postgres_sees_it() {
        let env = Envelope::new("order", "o\0-1", 1, "Placed", serde_json::json!({}));
        let enc = env.encode().expect("encodes");
        assert_eq!(
            Event::from_record(&record(&enc.payload, Some(enc.headers))),
            Err(DecodeError::NulByte(header::AGGREGATE_ID))
        );
    }

    #[test]
    fn a_wrong_payload_type_is_a_permanent_handler_error() {
        #[derive(Debug, serde::Deserialize)]
        struct Deposit {
            #[allow(dead_code, reason = "only the parse matters here")]
            amount: i64,
        }
        let event = Event::from_record(&record(b"{\"amount\":\"ten\"}", None)).expect("JSON");
        let err = event.decode::<Deposit>().expect_err("string is not i64");
        assert!(!err.is_transient(), "{err}");
    }
}
