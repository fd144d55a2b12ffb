//! Claiming a batch: which rows a relay may publish right now, and closing the claim.
//!
//! # Why `FOR UPDATE SKIP LOCKED`
//! The claim is a row lock held by an open transaction. Another relay's claim skips locked rows
//! instead of queueing behind them, so several relays never wait for each other and never publish
//! the same row concurrently. If a relay dies, Postgres drops its connection, the transaction
//! aborts and the locks vanish: the rows are simply claimable again. No lease column, no timeout
//! to tune, no reaper.
//!
//! # Why claim whole aggregates, through their head row
//! Locking rows alone does not preserve order: relay A locks event 1 of an order, relay B skips it
//! and happily takes event 2. So a relay locks only HEAD rows, the lowest unpublished sequence of
//! an aggregate, and then reads the rest of that aggregate's backlog under the head's protection.
//! Another relay can only ever reach an aggregate through its head, which is locked, so each
//! aggregate has at most one publisher at a time, and it publishes in sequence order.
//!
//! Cost of the choice: one aggregate's events are published by one relay at a time, so a single
//! very hot aggregate does not get faster with more relays (a second relay helps only with other
//! aggregates). The head probe is an index lookup per candidate row on
//! `(aggregate_type, aggregate_id, sequence)`.
//!
//! Why this is sound under READ COMMITTED: writers of one aggregate commit in sequence order (the
//! sequence row lock is held until commit), so a snapshot that sees event n also sees every event
//! before it; a relay with an older snapshot that still sees already-deleted rows only ever finds
//! them as deleted or locked heads, which it skips.
//!
//! # Why delete in the claiming transaction
//! The rows are deleted (or parked) in the same transaction that locked them, only after Kafka
//! acknowledged them. A crash anywhere before that commit rolls the delete back: the events are
//! published again by the next claim (a duplicate, never a loss), and again from the head, so the
//! replay is in order.

use std::num::NonZeroUsize;

use sqlx::{PgPool, Postgres, Transaction};

use crate::{OutboxRow, Settlement};

/// Lock up to `$1` heads (oldest first), then return up to `$2` rows of the aggregates they head,
/// grouped by aggregate in sequence order.
///
/// Each locked aggregate contributes at most its fair share (`$2 / heads`, rounded up) of rows,
/// and the row limit is filled round-robin (every head first, then every second event, …): so
/// every locked aggregate gets at least its head into the batch (none is locked for nothing),
/// what is taken of each aggregate is always a prefix of its backlog, and the query touches about
/// `$2` rows however long the backlog is.
///
/// The heads are returned as locked (all columns), and only the events *after* a head are
/// fetched per aggregate: when the fair share is one row (as many heads as the batch holds) the
/// per-aggregate `LIMIT 0` is never executed, which saves an index probe per row (measured: 3.5 ms
/// -> 2.6 ms per 500-row claim).
const CLAIM: &str = "
WITH heads AS (
    SELECT o.id, o.event_id, o.aggregate_type, o.aggregate_id, o.sequence, o.event_type,
           o.payload, o.headers, o.created_at
    FROM outbox o
    WHERE o.parked_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM outbox earlier
          WHERE earlier.aggregate_type = o.aggregate_type
            AND earlier.aggregate_id = o.aggregate_id
            AND earlier.sequence < o.sequence)
    ORDER BY o.id
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
),
followers AS (
    SELECT ceil($2::numeric / greatest(count(*), 1))::bigint - 1 AS per_aggregate FROM heads
),
runs AS (
    SELECT h.*, h.id AS head_id, 1::bigint AS rank_in_aggregate FROM heads h
    UNION ALL
    SELECT r.id, r.event_id, r.aggregate_type, r.aggregate_id, r.sequence, r.event_type,
           r.payload, r.headers, r.created_at, h.id,
           1 + row_number() OVER (PARTITION BY h.id ORDER BY r.sequence)
    FROM heads h
    CROSS JOIN followers f
    CROSS JOIN LATERAL (
        SELECT * FROM outbox r
        WHERE r.aggregate_type = h.aggregate_type
          AND r.aggregate_id = h.aggregate_id
          AND r.sequence > h.sequence
          AND r.parked_at IS NULL
        ORDER BY r.sequence
        LIMIT f.per_aggregate
    ) r
),
picked AS (
    SELECT * FROM runs ORDER BY rank_in_aggregate, head_id LIMIT $2
)
SELECT id, event_id, aggregate_type, aggregate_id, sequence, event_type, payload, headers, created_at
FROM picked
ORDER BY head_id, sequence";

/// Rows locked by one relay, inside the transaction that will delete them.
///
/// Dropping a `Claim` without [`complete`](Claim::complete) rolls the transaction back: every
/// row stays in the outbox and is claimed again (that is also what a crash does).
#[derive(Debug)]
pub struct Claim {
    /// The open transaction holding the head-row locks.
    tx: Transaction<'static, Postgres>,
    /// The claimed rows, each aggregate's in ascending sequence order.
    rows: Vec<OutboxRow>,
}

/// Claims up to `limit` rows, skipping aggregates another relay holds.
///
/// An empty claim is normal (nothing to do); release it or let it drop.
///
/// # Errors
/// Any database error; nothing is locked afterwards.
pub async fn claim(pool: &PgPool, limit: NonZeroUsize) -> Result<Claim, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The outbox is a queue table: empty most of the time, then a burst. Its statistics are
    // therefore almost always stale, and with "a few rows" estimates the planner picks a seq scan
    // plus sort, reading the WHOLE backlog on every claim. The right plan is always the same: walk
    // the primary key in id order and stop after `limit` heads. Forbid the seq scan for this
    // transaction only (measured: 41 ms -> 9 ms per 500-row claim over a 10k backlog).
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    let limit = i64::try_from(limit.get()).unwrap_or(i64::MAX);
    let rows = sqlx::query_as::<_, OutboxRow>(CLAIM)
        .bind(limit)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    Ok(Claim { tx, rows })
}

impl Claim {
    /// The claimed rows, each aggregate's in ascending sequence order.
    pub fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    /// Deletes the published rows, parks the rejected ones and commits, releasing the claim.
    ///
    /// # Errors
    /// Any database error. The transaction is then rolled back, so the rows are published
    /// again later: duplicates, never loss.
    pub async fn complete(mut self, settlement: &Settlement) -> Result<(), sqlx::Error> {
        if !settlement.delete.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
                .bind(&settlement.delete)
                .execute(&mut *self.tx)
                .await?;
        }
        if !settlement.park.is_empty() {
            let (ids, reasons): (Vec<i64>, Vec<String>) = settlement.park.iter().cloned().unzip();
            sqlx::query(
                "UPDATE outbox SET parked_at = clock_timestamp(), park_reason = p.reason
                 FROM unnest($1::bigint[], $2::text[]) AS p(id, reason)
                 WHERE outbox.id = p.id",
            )
            .bind(&ids)
            .bind(&reasons)
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await
    }

    /// Gives the rows back unpublished (rolls the claim back).
    ///
    /// # Errors
    /// Any database error; the locks are released when the connection closes anyway.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}
