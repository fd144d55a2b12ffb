//! The event envelope: how one domain event travels as one Kafka record.
//!
//! The outbox relay writes records in this shape and the idempotent consumer reads them, so both
//! patterns agree on a single definition instead of two that drift apart.
//!
//! | part of the record | holds                                                             |
//! |--------------------|-------------------------------------------------------------------|
//! | key                | the aggregate id: every event of one aggregate lands in one partition, in order |
//! | value              | the business payload, as JSON (the part a handler deserialises)   |
//! | headers            | [`header`] names: event id, aggregate type and id, per-aggregate sequence, event type, time, W3C `traceparent` |
//!
//! Metadata lives in headers rather than wrapped around the payload so that tooling (and consumers
//! that only care about the body) can read the value as-is, and so routing and dedupe never have to
//! parse the body.
//!
//! # Decoding is strict about metadata, lenient about the body
//! [`Envelope::decode`] fails with a typed [`EnvelopeError`] naming the header that is missing or
//! malformed, and with [`EnvelopeError::Payload`] when the value is not JSON. It never panics, so a
//! consumer can dead-letter the record with the reason instead of stopping.
//!
//! # Example
//! ```
//! use event_envelope::Envelope;
//!
//! let event = Envelope::new("order", "order-42", 1, "OrderPlaced", serde_json::json!({"total": 99}));
//! let record = event.encode()?;
//! let back = Envelope::decode(Some(record.key.as_bytes()), Some(&record.payload), record.header_pairs())?;
//! assert_eq!(back, event);
//! # Ok::<(), event_envelope::EnvelopeError>(())
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use uuid::Uuid;

/// Header names, lower-case and hyphenated like HTTP headers.
pub mod header {
    /// Unique id of the event (UUID); the consumer's dedupe key.
    pub const EVENT_ID: &str = "event-id";
    /// Kind of aggregate the event belongs to, e.g. `order`.
    pub const AGGREGATE_TYPE: &str = "aggregate-type";
    /// Id of the aggregate; also the record key.
    pub const AGGREGATE_ID: &str = "aggregate-id";
    /// Per-aggregate sequence number, starting at 1, gap-free as written by the outbox.
    pub const SEQUENCE: &str = "sequence";
    /// Name of the event, e.g. `OrderPlaced`.
    pub const EVENT_TYPE: &str = "event-type";
    /// When the event was written, RFC 3339 with microseconds, UTC.
    pub const OCCURRED_AT: &str = "occurred-at";
    /// W3C trace context of the transaction that wrote the event (optional).
    pub const TRACEPARENT: &str = "traceparent";
    /// Always `application/json` for the value.
    pub const CONTENT_TYPE: &str = "content-type";

    /// The headers [`Envelope::decode`](crate::Envelope::decode) requires: a record carrying any
    /// of them claims to be an envelope.
    pub const REQUIRED: [&str; 6] = [
        EVENT_ID,
        AGGREGATE_TYPE,
        AGGREGATE_ID,
        SEQUENCE,
        EVENT_TYPE,
        OCCURRED_AT,
    ];

    /// Every header the envelope writes; producers must not set these themselves.
    pub const ALL: [&str; 8] = [
        EVENT_ID,
        AGGREGATE_TYPE,
        AGGREGATE_ID,
        SEQUENCE,
        EVENT_TYPE,
        OCCURRED_AT,
        TRACEPARENT,
        CONTENT_TYPE,
    ];
}

/// Why a record is not a valid envelope.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("header `{0}` is missing")]
    MissingHeader(&'static str),
    /// A header is present but its value does not parse.
    #[error("header `{name}` is malformed: {reason}")]
    MalformedHeader {
        /// Which header.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The record has no value (a tombstone) where an event was expected.
    #[error("record has no value")]
    MissingPayload,
    /// The value is not valid JSON.
    #[error("payload is not valid JSON: {0}")]
    Payload(String),
    /// The payload could not be serialised (only when encoding).
    #[error("payload could not be serialised: {0}")]
    Serialise(String),
}

/// One domain event with the metadata needed to route, order, dedupe and trace it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// Kind of aggregate, e.g. `order`.
    pub aggregate_type: String,
    /// Id of the aggregate instance; the Kafka key.
    pub aggregate_id: String,
    /// Position of the event within its aggregate, starting at 1.
    pub sequence: i64,
    /// Name of the event, e.g. `OrderPlaced`.
    pub event_type: String,
    /// When the event was written (microsecond precision survives the round trip).
    pub occurred_at: DateTime<Utc>,
    /// W3C `traceparent` of the writer, if it was traced.
    pub traceparent: Option<String>,
    /// The business payload.
    pub payload: serde_json::Value,
}

/// An envelope turned into the three parts of a Kafka record.
#[derive(Debug)]
pub struct EncodedRecord {
    /// Record key: the aggregate id.
    pub key: String,
    /// Record value: the JSON payload.
    pub payload: Vec<u8>,
    /// Record headers.
    pub headers: OwnedHeaders,
}

impl EncodedRecord {
    /// The headers as `(name, value)` pairs, the shape [`Envelope::decode`] takes.
    pub fn header_pairs(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers.iter().map(|h| (h.key, h.value)).collect()
    }
}

impl Envelope {
    /// A new event with a fresh time-ordered id (UUID v7) and the current time.
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        sequence: i64,
        event_type: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        let now = Utc::now();
        // Truncate to microseconds: that is what Postgres `timestamptz` and the header keep,
        // so an envelope compares equal to itself after a round trip.
        let occurred_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        Self {
            event_id: Uuid::now_v7(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            sequence,
            event_type: event_type.into(),
            occurred_at,
            traceparent: None,
            payload,
        }
    }

    /// Splits the envelope into key, JSON value and headers.
    ///
    /// # Errors
    /// [`EnvelopeError::Serialise`] if the payload cannot be written as JSON (in practice
    /// never for a `serde_json::Value`).
    pub fn encode(&self) -> Result<EncodedRecord, EnvelopeError> {
        let payload = serde_json::to_vec(&self.payload)
            .map_err(|e| EnvelopeError::Serialise(e.to_string()))?;
        Ok(EncodedRecord {
            key: self.aggregate_id.clone(),
            payload,
            headers: self.headers(),
        })
    }

    /// The record headers for this envelope.
    pub fn headers(&self) -> OwnedHeaders {
        let event_id = self.event_id.to_string();
        let sequence = self.sequence.to_string();
        let occurred_at = self
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut headers = OwnedHeaders::new_with_capacity(8)
            .insert(h(header::EVENT_ID, &event_id))
            .insert(h(header::AGGREGATE_TYPE, &self.aggregate_type))
            .insert(h(header::AGGREGATE_ID, &self.aggregate_id))
            .insert(h(header::SEQUENCE, &sequence))
            .insert(h(header::EVENT_TYPE, &self.event_type))
            .insert(h(header::OCCURRED_AT, &occurred_at))
            .insert(h(header::CONTENT_TYPE, "application/json"));
        if let Some(tp) = &self.traceparent {
            headers = headers.insert(h(header::TRACEPARENT, tp));
        }
        headers
    }

    /// Rebuilds an envelope from a record's parts.
    ///
    /// `headers` yields `(name, value)` pairs; a header that appears twice takes its last value.
    ///
    /// # Errors
    /// A typed [`EnvelopeError`] naming the first problem found. Never panics.
    pub fn decode<'a>(
        _key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Self, EnvelopeError> {
        let meta = Metadata::from_pairs(headers);
        let payload = payload.ok_or(EnvelopeError::MissingPayload)?;
        let payload: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
        Ok(Self {
            event_id: meta
                .event_id
                .ok_or(EnvelopeError::MissingHeader(header::EVENT_ID))??,
            aggregate_type: required_text(meta.aggregate_type, header::AGGREGATE_TYPE)?,
            aggregate_id: required_text(meta.aggregate_id, header::AGGREGATE_ID)?,
            sequence: meta
                .sequence
                .ok_or(EnvelopeError::MissingHeader(header::SEQUENCE))??,
            event_type: required_text(meta.event_type, header::EVENT_TYPE)?,
            occurred_at: meta
                .occurred_at
                .ok_or(EnvelopeError::MissingHeader(header::OCCURRED_AT))??,
            traceparent: meta.traceparent.transpose()?,
            payload,
        })
    }

    /// Decodes a message received from rdkafka.
    ///
    /// # Errors
    /// As [`Envelope::decode`].
    pub fn from_message(message: &BorrowedMessage<'_>) -> Result<Self, EnvelopeError> {
        Self::decode(message.key(), message.payload(), header_pairs(message))
    }
}

/// The `(name, value)` pairs of a received message's headers, ready for [`Envelope::decode`] or
/// [`Metadata::from_pairs`].
pub fn header_pairs<'a>(message: &'a BorrowedMessage<'_>) -> Vec<(&'a str, Option<&'a [u8]>)> {
    message
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default()
}

/// Envelope metadata parsed field by field, each independently present or broken.
///
/// A consumer uses this when it must act on a record whose envelope is incomplete, for example
/// to dedupe by `event-id` even though the payload is poison, or to fall back to
/// topic/partition/offset when a producer sent no id at all.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Metadata {
    /// `event-id`, if present: parsed or the parse error.
    pub event_id: Option<Result<Uuid, EnvelopeError>>,
    /// `aggregate-type`, if present.
    pub aggregate_type: Option<Result<String, EnvelopeError>>,
    /// `aggregate-id`, if present.
    pub aggregate_id: Option<Result<String, EnvelopeError>>,
    /// `sequence`, if present.
    pub sequence: Option<Result<i64, EnvelopeError>>,
    /// `event-type`, if present.
    pub event_type: Option<Result<String, EnvelopeError>>,
    /// `occurred-at`, if present.
    pub occurred_at: Option<Result<DateTime<Utc>, EnvelopeError>>,
    /// `traceparent`, if present.
    pub traceparent: Option<Result<String, EnvelopeError>>,
}

impl Metadata {
    /// Parses whatever envelope headers are present; unknown headers are ignored.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Self {
        let mut meta = Self::default();
        for (name, value) in pairs {
            match name {
                header::EVENT_ID => {
                    meta.event_id = Some(text(header::EVENT_ID, value).and_then(|s| {
                        Uuid::parse_str(&s).map_err(|e| malformed(header::EVENT_ID, e))
                    }));
                }
                header::AGGREGATE_TYPE => {
                    meta.aggregate_type = Some(text(header::AGGREGATE_TYPE, value));
                }
                header::AGGREGATE_ID => meta.aggregate_id = Some(text(header::AGGREGATE_ID, value)),
                header::SEQUENCE => {
                    meta.sequence = Some(text(header::SEQUENCE, value).and_then(|s| {
                        s.parse::<i64>().map_err(|e| malformed(header::SEQUENCE, e))
                    }));
                }
                header::EVENT_TYPE => meta.event_type = Some(text(header::EVENT_TYPE, value)),
                header::OCCURRED_AT => {
                    meta.occurred_at = Some(text(header::OCCURRED_AT, value).and_then(|s| {
                        DateTime::parse_from_rfc3339(&s)
                            .map(|t| t.with_timezone(&Utc))
                            .map_err(|e| malformed(header::OCCURRED_AT, e))
                    }));
                }
                header::TRACEPARENT => meta.traceparent = Some(text(header::TRACEPARENT, value)),
                _ => {}
            }
        }
        meta
    }
}

fn h<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

fn text(name: &'static str, value: Option<&[u8]>) -> Result<String, EnvelopeError> {
    let bytes = value.ok_or_else(|| EnvelopeError::MalformedHeader {
        name,
        reason: "header has no value".into(),
    })?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| malformed(name, e))
}

fn required_text(
    value: Option<Result<String, EnvelopeError>>,
    name: &'static str,
) -> Result<String, EnvelopeError> {
    let s = value.ok_or(EnvelopeError::MissingHeader(name))??;
    if s.is_empty() {
        return Err(EnvelopeError::MalformedHeader {
            name,
            reason: "empty".into(),
        });
    }
    Ok(s)
}

fn malformed(name: &'static str, e: impl std::fmt::Display) -> EnvelopeError {
    EnvelopeError::MalformedHeader {
        name,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(headers: &OwnedHeaders) -> Vec<(&str, Option<&[u8]>)> {
        headers.iter().map(|h| (h.key, h.value)).collect()
    }

    #[test]
    fn an_envelope_survives_a_round_trip() {
        let mut e = Envelope::new(
            "order",
            "o-1",
            7,
            "OrderPlaced",
            serde_json::json!({"n": 1}),
        );
        e.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let r = e.encode().expect("encodes");
        let back = Envelope::decode(Some(r.key.as_bytes()), Some(&r.payload), pairs(&r.headers))
            .expect("decodes");
        assert_eq!(back, e);
    }

    #[test]
    fn a_missing_header_is_named() {
        let e = Envelope::new("order", "o-1", 1, "OrderPlaced", serde_json::json!({}));
        let r = e.encode().expect("encodes");
        let without: Vec<_> = pairs(&r.headers)
            .into_iter()
            .filter(|(k, _)| *k != header::SEQUENCE)
            .collect();
        let err = Envelope::decode(None, Some(&r.payload), without).expect_err("must fail");
        assert_eq!(err, EnvelopeError::MissingHeader(header::SEQUENCE));
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let bad: Vec<(&str, Option<&[u8]>)> = vec![
            (header::EVENT_ID, Some(b"not-a-uuid")),
            (header::SEQUENCE, Some(&[0xff, 0xfe])),
            (header::OCCURRED_AT, None),
        ];
        let meta = Metadata::from_pairs(bad.clone());
        assert!(matches!(
            meta.event_id,
            Some(Err(EnvelopeError::MalformedHeader { .. }))
        ));
        assert!(matches!(
            meta.sequence,
            Some(Err(EnvelopeError::MalformedHeader { .. }))
        ));
        assert!(matches!(
            Envelope::decode(None, Some(b"{not json"), bad),
            Err(EnvelopeError::Payload(_))
        ));
        assert_eq!(
            Envelope::decode(None, None, Vec::new()),
            Err(EnvelopeError::MissingPayload)
        );
    }
}
