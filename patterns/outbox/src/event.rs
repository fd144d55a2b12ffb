//! The event a caller appends, and what the outbox stored for it.
//!
//! Kept apart from `writer.rs` so that the workshop copy of the writer (`exercises/src/writer.rs`)
//! only has to provide `enqueue`: both copies share these types and their validation.

use std::collections::BTreeMap;

use event_envelope::header;
use uuid::Uuid;

use crate::OutboxError;

/// An event to append to the outbox. Sequence, id and time are assigned by [`enqueue`](crate::enqueue).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Kind of aggregate, e.g. `order`; also selects the topic when routing by type.
    pub aggregate_type: String,
    /// Aggregate instance; becomes the Kafka key so one aggregate stays in one partition.
    pub aggregate_id: String,
    /// Name of the event, e.g. `OrderPlaced`.
    pub event_type: String,
    /// Business payload, stored as `json` and published as the record value.
    pub payload: serde_json::Value,
    /// W3C `traceparent` of the writing request, so the trace continues in consumers.
    pub traceparent: Option<String>,
    /// Extra record headers. Names used by the envelope (`event-id`, `sequence`, …) are reserved.
    pub headers: BTreeMap<String, String>,
}

impl NewEvent {
    /// A new event without trace context or extra headers.
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload,
            traceparent: None,
            headers: BTreeMap::new(),
        }
    }

    /// Attaches the W3C `traceparent` of the current request.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Adds one extra record header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    // Under the `exercise` feature only the learner's `enqueue` calls these, once written.
    #[cfg_attr(feature = "exercise", allow(dead_code))]
    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        if self.aggregate_type.is_empty() {
            return Err(OutboxError::InvalidEvent("aggregate_type is empty"));
        }
        if self.aggregate_id.is_empty() {
            return Err(OutboxError::InvalidEvent("aggregate_id is empty"));
        }
        if self.event_type.is_empty() {
            return Err(OutboxError::InvalidEvent("event_type is empty"));
        }
        if self.headers.keys().any(|k| is_reserved(k)) {
            return Err(OutboxError::InvalidEvent(
                "extra header uses a reserved envelope header name",
            ));
        }
        Ok(())
    }

    /// Headers as stored in the `headers` column: the extras plus `traceparent`.
    #[cfg_attr(feature = "exercise", allow(dead_code))]
    pub(crate) fn stored_headers(&self) -> serde_json::Value {
        let mut map: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        if let Some(tp) = &self.traceparent {
            map.insert(header::TRACEPARENT.to_owned(), tp.clone().into());
        }
        serde_json::Value::Object(map)
    }
}

#[cfg_attr(feature = "exercise", allow(dead_code))]
fn is_reserved(name: &str) -> bool {
    header::ALL.contains(&name)
}

/// What [`enqueue`](crate::enqueue) stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueuedEvent {
    /// Row id in `outbox` (insertion order, used for fair claiming).
    pub id: i64,
    /// Unique event id (UUID v7), the consumer's dedupe key.
    pub event_id: Uuid,
    /// Position within the aggregate: 1, 2, 3, … without gaps.
    pub sequence: i64,
}
