//! Exercise (steps 1 and 2): the inbox — processed-message keys written in the same
//! transaction as the effect.
//!
//! Implement [`Inbox::claim`] (step 1) and [`Inbox::claim_many`] (step 2) against the `inbox`
//! table (see `migrations/`). `prune` is given. Run `make exercise NAME=idempotent-consumer
//! STEP=1` and read `exercises/step1.md` for hints.
#![allow(
    clippy::todo,
    unused_variables,
    reason = "workshop stubs: the learner replaces each todo!() body"
)]

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

/// Dedupe keys of one consumer.
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

    /// Step 1: records one key inside the caller's transaction; `Duplicate` if it was there.
    ///
    /// # Errors
    /// The database error.
    pub async fn claim(&self, conn: &mut PgConnection, key: &str) -> Result<Claim, sqlx::Error> {
        todo!("INSERT … ON CONFLICT DO NOTHING; rows_affected() tells fresh from duplicate")
    }

    /// Step 2: records many keys with one statement; the result is in the order of `keys`, and
    /// a key repeated within `keys` is `Fresh` at its first position only.
    ///
    /// # Errors
    /// The database error.
    pub async fn claim_many(
        &self,
        conn: &mut PgConnection,
        keys: &[String],
    ) -> Result<Vec<Claim>, sqlx::Error> {
        todo!(
            "INSERT … SELECT FROM unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_key"
        )
    }

    /// Given: deletes keys older than `horizon`, `batch` rows per statement.
    ///
    /// # Errors
    /// The database error of the failing batch.
    pub async fn prune(
        &self,
        pool: &PgPool,
        horizon: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
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
