//! Writing events: inside the caller's transaction, never beside it.
//!
//! The dual-write problem is "update the database, then publish to Kafka": a crash between the
//! two loses the event, and publishing first can announce a change that then rolls back. The
//! outbox removes the second write from the request path: the event is one more row in the same
//! transaction as the business change, so both commit or neither does. Publishing happens later,
//! in the relay, from committed rows only.
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

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
    event.validate()?;
    let event_id = Uuid::now_v7();
    let (id, sequence): (i64, i64) = sqlx::query_as(ENQUEUE)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event_id)
        .bind(&event.event_type)
        .bind(sqlx::types::Json(&event.payload))
        .bind(sqlx::types::Json(event.stored_headers()))
        .fetch_one(&mut **tx)
        .await?;
    Ok(EnqueuedEvent {
        id,
        event_id,
        sequence,
    })
}
