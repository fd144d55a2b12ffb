//! Operator tools for parked rows: list, retry, discard.
//!
//! A parked row stays the head of its aggregate, so later events of that aggregate wait behind
//! it (publishing them would show consumers a gap, or an order they cannot undo). Other
//! aggregates are unaffected. An operator decides: fix the cause and [`retry_parked`], or accept
//! the gap and [`discard_parked`].

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::OutboxError;

/// A row Kafka rejected permanently.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ParkedEvent {
    /// Row id.
    pub id: i64,
    /// Kind of aggregate.
    pub aggregate_type: String,
    /// The aggregate now blocked behind this row.
    pub aggregate_id: String,
    /// Position within the aggregate.
    pub sequence: i64,
    /// Name of the event.
    pub event_type: String,
    /// Why Kafka refused it.
    pub park_reason: Option<String>,
    /// When it was parked.
    pub parked_at: Option<DateTime<Utc>>,
}

/// Parked rows, oldest first.
///
/// # Errors
/// Any database error.
pub async fn list_parked(pool: &PgPool) -> Result<Vec<ParkedEvent>, OutboxError> {
    Ok(sqlx::query_as(
        "SELECT id, aggregate_type, aggregate_id, sequence, event_type, park_reason, parked_at
         FROM outbox WHERE parked_at IS NOT NULL ORDER BY parked_at, id",
    )
    .fetch_all(pool)
    .await?)
}

/// Makes a parked row claimable again (after the cause was fixed, e.g. the topic's size limit).
///
/// # Errors
/// [`OutboxError::NotParked`] if no parked row has this id.
pub async fn retry_parked(pool: &PgPool, id: i64) -> Result<(), OutboxError> {
    let done = sqlx::query(
        "UPDATE outbox SET parked_at = NULL, park_reason = NULL
         WHERE id = $1 AND parked_at IS NOT NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(OutboxError::NotParked(id));
    }
    sqlx::query("SELECT pg_notify('outbox', '')")
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes a parked row for good, unblocking its aggregate. Consumers will see a gap in that
/// aggregate's sequence, which is the honest signal that an event was dropped on purpose.
///
/// # Errors
/// [`OutboxError::NotParked`] if no parked row has this id.
pub async fn discard_parked(pool: &PgPool, id: i64) -> Result<(), OutboxError> {
    let done = sqlx::query("DELETE FROM outbox WHERE id = $1 AND parked_at IS NOT NULL")
        .bind(id)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(OutboxError::NotParked(id));
    }
    sqlx::query("SELECT pg_notify('outbox', '')")
        .execute(pool)
        .await?;
    Ok(())
}
