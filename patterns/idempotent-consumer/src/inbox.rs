//! The inbox: processed-message keys, written in the same transaction as the effect.
//!
//! Why the same transaction: if the key were recorded in its own transaction before the
//! effect, a crash in between would mark a message processed whose effect never happened
//! (lost). Recorded after, a crash in between applies the effect without the key and the
//! redelivery applies it again (doubled). Only one transaction for both makes "applied" and
//! "recorded as applied" the same fact.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

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
    /// The namespace, stored in `inbox.consumer_name`.
    consumer: Arc<str>,
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

    /// Records one key inside the caller's transaction.
    ///
    /// `INSERT … ON CONFLICT DO NOTHING` rather than "SELECT then INSERT": the check and the
    /// write are one atomic statement, and a concurrent transaction inserting the same key
    /// makes this one wait on the unique index until it commits (then `Duplicate`) or rolls
    /// back (then `Fresh`). No race window exists between "not seen" and "recorded".
    ///
    /// # Errors
    /// The database error; the caller's transaction is then unusable.
    pub async fn claim(&self, conn: &mut PgConnection, key: &str) -> Result<Claim, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO inbox (consumer_name, message_key) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&*self.consumer)
        .bind(key)
        .execute(conn)
        .await?;
        Ok(if done.rows_affected() == 1 {
            Claim::Fresh
        } else {
            Claim::Duplicate
        })
    }

    /// Records many keys with one statement; the result is in the order of `keys`.
    ///
    /// One round trip for a whole batch is what lets a batching consumer approach the speed of
    /// a raw one. A key repeated within `keys` is `Fresh` at its first position only.
    ///
    /// # Errors
    /// The database error; the caller's transaction is then unusable.
    pub async fn claim_many(
        &self,
        conn: &mut PgConnection,
        keys: &[String],
    ) -> Result<Vec<Claim>, sqlx::Error> {
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO inbox (consumer_name, message_key) \
             SELECT $1, k FROM unnest($2::text[]) AS k \
             ON CONFLICT DO NOTHING RETURNING message_key",
        )
        .bind(&*self.consumer)
        .bind(keys)
        .fetch_all(conn)
        .await?;
        let mut fresh: HashSet<String> = inserted.into_iter().collect();
        // `remove` hands out each inserted key once: a second occurrence in the same batch is
        // a duplicate of the first.
        Ok(keys
            .iter()
            .map(|k| {
                if fresh.remove(k) {
                    Claim::Fresh
                } else {
                    Claim::Duplicate
                }
            })
            .collect())
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
            let deleted = sqlx::query(
                "DELETE FROM inbox WHERE consumer_name = $1 AND message_key IN ( \
                   SELECT message_key FROM inbox \
                   WHERE consumer_name = $1 \
                     AND processed_at < now() - make_interval(secs => $2) \
                   ORDER BY processed_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
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
