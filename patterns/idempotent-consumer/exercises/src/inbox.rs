//! Exercise (steps 1 and 2): the inbox — processed-message keys written in the same
//! transaction as the effect.
//!
//! Implement [`Inbox::claim`] (step 1) and [`Inbox::claim_many`] (step 2) against the `inbox`
//! table (see `migrations/`). `Inbox::new` and `prune` are given, in `src/inbox_table.rs`. Run `make exercise NAME=idempotent-consumer
//! STEP=1` and read `exercises/step1.md` for hints.
#![allow(
    clippy::todo,
    unused_variables,
    reason = "workshop stubs: the learner replaces each todo!() body"
)]

use sqlx::PgConnection;

use crate::{Claim, Inbox};

impl Inbox {
    /// Step 1: records one key inside the caller's transaction; `Duplicate` if it was there.
    ///
    /// # Errors
    /// The database error.
    pub async fn claim(&self, conn: &mut PgConnection, key: &str) -> Result<Claim, sqlx::Error> {
        todo!(
            "INSERT … VALUES (inbox_consumer_id($1), $2) ON CONFLICT DO NOTHING; \
             rows_affected() tells fresh from duplicate"
        )
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
            "INSERT … SELECT (SELECT inbox_consumer_id($1)), k FROM unnest($2::text[]) \
             ON CONFLICT DO NOTHING RETURNING message_key"
        )
    }
}
