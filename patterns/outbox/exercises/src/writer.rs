//! Exercise step 1 — write the event in the caller's transaction.
//!
//! Implement [`enqueue`]: allocate the aggregate's next sequence number and insert the outbox row
//! using the caller's transaction, so the event commits or rolls back with the business change.
//! See `exercises/step1.md`. Run: `make exercise NAME=outbox STEP=1`.
// The stub compiles warning-free for CI: `todo!()` is the point of an exercise, the unused
// argument and the ENQUEUE hint become used once the body is written.
#![allow(clippy::todo, unused_variables, dead_code)]

use sqlx::{Postgres, Transaction};

use crate::{EnqueuedEvent, NewEvent, OutboxError};

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
