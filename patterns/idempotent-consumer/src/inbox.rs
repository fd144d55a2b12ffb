//! The inbox: processed-message keys, written in the same transaction as the effect.
//!
//! Why the same transaction: if the key were recorded in its own transaction before the
//! effect, a crash in between would mark a message processed whose effect never happened
//! (lost). Recorded after, a crash in between applies the effect without the key and the
//! redelivery applies it again (doubled). Only one transaction for both makes "applied" and
//! "recorded as applied" the same fact.

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::{Claim, Inbox};

impl Inbox {
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
}
