//! Exercise step 1 — write the event in the caller's transaction.
//!
//! Implement [`enqueue`]: allocate the aggregate's next sequence number and insert the outbox row
//! using the caller's transaction, so the event commits or rolls back with the business change.
//! See `exercises/step1.md`. Run: `make exercise NAME=outbox STEP=1`.
// The stub compiles warning-free for CI: `todo!()` is the point of an exercise, the unused
// argument and the helpers become used once the body is written.
#![allow(clippy::todo, unused_variables, dead_code)]

use std::collections::BTreeMap;

use event_envelope::header;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::OutboxError;

/// An event to append to the outbox. Sequence, id and time are assigned by [`enqueue`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Kind of aggregate, e.g. `order`; also selects the topic when routing by type.
    pub aggregate_type: String,
    /// Aggregate instance; becomes the Kafka key so one aggregate stays in one partition.
    pub aggregate_id: String,
    /// Name of the event, e.g. `OrderPlaced`.
    pub event_type: String,
    /// Business payload, stored as `jsonb` and published as the record value.
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

    fn validate(&self) -> Result<(), OutboxError> {
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
    fn stored_headers(&self) -> serde_json::Value {
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

fn is_reserved(name: &str) -> bool {
    [
        header::EVENT_ID,
        header::AGGREGATE_TYPE,
        header::AGGREGATE_ID,
        header::SEQUENCE,
        header::EVENT_TYPE,
        header::OCCURRED_AT,
        header::TRACEPARENT,
        header::CONTENT_TYPE,
    ]
    .contains(&name)
}

/// What [`enqueue`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueuedEvent {
    /// Row id in `outbox` (insertion order, used for fair claiming).
    pub id: i64,
    /// Unique event id (UUID v7), the consumer's dedupe key.
    pub event_id: Uuid,
    /// Position within the aggregate: 1, 2, 3, … without gaps.
    pub sequence: i64,
}

/// Allocate the next sequence of the aggregate and insert the event, in one round trip.
///
/// The upsert takes the `outbox_aggregate` row lock and keeps it until the caller commits:
/// writers of the SAME aggregate queue behind each other (that is what makes sequence order equal
/// commit order, which the relay's head-of-aggregate rule relies on), writers of different
/// aggregates never touch the same row.
const ENQUEUE: &str = "
WITH seq AS (
    INSERT INTO outbox_aggregate (aggregate_type, aggregate_id, last_sequence)
    VALUES ($1, $2, 1)
    ON CONFLICT (aggregate_type, aggregate_id)
    DO UPDATE SET last_sequence = outbox_aggregate.last_sequence + 1
    RETURNING last_sequence
)
INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type, payload, headers)
SELECT $3, $1, $2, seq.last_sequence, $4, $5, $6 FROM seq
RETURNING id, sequence";

/// Appends `event` to the outbox inside the caller's transaction.
///
/// Nothing is published until the transaction commits; a rollback leaves no trace, not even a
/// gap in the aggregate's sequence. Taking `&mut Transaction` (not a pool) makes "write the event
/// beside the business change" impossible to call by accident.
///
/// # Errors
/// [`OutboxError::InvalidEvent`] for empty names or reserved header names;
/// [`OutboxError::Database`] if the insert fails (roll the transaction back).
///
/// # Example
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), outbox::OutboxError> {
/// use outbox::{enqueue, NewEvent};
/// let mut tx = pool.begin().await?;
/// // ... the business change on `&mut *tx` ...
/// let event = NewEvent::new("order", "o-42", "OrderPlaced", serde_json::json!({"total": 99}));
/// let stored = enqueue(&mut tx, &event).await?;
/// tx.commit().await?;
/// assert!(stored.sequence >= 1);
/// # Ok(()) }
/// ```
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    event: &NewEvent,
) -> Result<EnqueuedEvent, OutboxError> {
    // Step 1: validate the event, pick a fresh `Uuid::now_v7()`, then in ONE statement on
    // `&mut **tx`: upsert `outbox_aggregate` (+1, RETURNING last_sequence) and insert the
    // `outbox` row with that sequence. The ENQUEUE constant above is the shape to aim for —
    // delete it and write your own if you prefer.
    todo!("step 1: append the event inside the caller's transaction")
}
