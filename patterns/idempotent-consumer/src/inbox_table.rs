//! The inbox table's handle: a consumer's namespace of dedupe keys, and pruning.
//!
//! Claiming keys (the heart of the pattern) lives in `inbox.rs`, which the workshop replaces
//! with `exercises/src/inbox.rs`; this file is shared by both copies.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

/// Whether a message is new to this consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key was recorded now: apply the effect in the same transaction.
    Fresh,
    /// The key was already present (or appeared earlier in the same batch): skip.
    Duplicate,
}

/// Dedupe keys of one consumer (a consumer name is a namespace: two services reading the same
/// topic each apply every event once).
#[derive(Debug, Clone)]
pub struct Inbox {
    /// The namespace: `inbox_consumer.name`, whose number prefixes every key in `inbox`.
    pub(crate) consumer: Arc<str>,
}

impl Inbox {
    /// The inbox of the consumer with this name.
    pub fn new(consumer: impl Into<Arc<str>>) -> Self {
        Self {
            consumer: consumer.into(),
        }
    }

    /// The consumer name this inbox belongs to.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Deletes keys older than `horizon`, `batch` rows per statement; returns rows deleted.
    ///
    /// Small batches, each its own short transaction, instead of one big `DELETE`: a huge
    /// delete holds row locks for long, produces one burst of dead tuples that autovacuum
    /// only reclaims later (the table and index bloat meanwhile) and can stall replicas. The
    /// clock is Postgres' `now()`, the same clock that stamped `processed_at`.
    ///
    /// # Errors
    /// The database error of the failing batch; earlier batches stay deleted.
    pub async fn prune(
        &self,
        pool: &PgPool,
        horizon: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            // SKIP LOCKED: never wait behind a consumer transaction that is inserting keys.
            // The oldest rows come off `inbox_processed_at_idx` in order and are deleted by
            // `ctid`: they are locked by this very statement, so their addresses cannot change
            // before the delete, and a TID scan spares the planner a join over all of the
            // consumer's keys (EXPLAIN ANALYZE, 1 000 of 67 000 keys: 1 ms, against 18 ms for
            // the same delete matched on the key).
            // The consumer's number is looked up, not registered: a name without a number has
            // no keys.
            let deleted = sqlx::query(
                "DELETE FROM inbox WHERE ctid = ANY (ARRAY( \
                   SELECT ctid FROM inbox \
                   WHERE consumer_id = (SELECT id FROM inbox_consumer WHERE name = $1) \
                     AND processed_at < now() - make_interval(secs => $2) \
                   ORDER BY processed_at LIMIT $3 FOR UPDATE SKIP LOCKED))",
            )
            .bind(&*self.consumer)
            .bind(horizon.as_secs_f64())
            .bind(batch.max(1))
            .execute(pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < u64::try_from(batch.max(1)).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }
}
