//! Exercise steps 2 and 3 — claim a batch with `FOR UPDATE SKIP LOCKED`, then make it
//! preserve per-aggregate order when several relays run.
//!
//! Step 2: [`claim`] locks unpublished rows so that a concurrent claim skips them, and
//! [`Claim::complete`] deletes the published rows in the same transaction before committing.
//! Step 3: change [`claim`] so a relay only takes aggregates whose HEAD row (lowest unpublished
//! sequence) it could lock, plus the rest of their backlog, in sequence order.
//! See `exercises/step2.md` and `exercises/step3.md`.
// The stub compiles warning-free for CI: `todo!()` is the point of an exercise, the unused
// arguments become used once the bodies are written.
#![allow(clippy::todo, unused_variables, dead_code)]

use std::num::NonZeroUsize;

use sqlx::{PgPool, Postgres, Transaction};

use crate::{OutboxError, OutboxRow, Settlement};

/// Rows locked by one relay, inside the transaction that will delete them.
///
/// Dropping a `Claim` without [`complete`](Claim::complete) rolls the transaction back.
#[derive(Debug)]
pub struct Claim {
    /// The open transaction holding the row locks.
    tx: Transaction<'static, Postgres>,
    /// The claimed rows, each aggregate's in ascending sequence order.
    rows: Vec<OutboxRow>,
}

/// Claims up to `limit` rows that no other open claim holds.
///
/// # Errors
/// Any database error.
pub async fn claim(pool: &PgPool, limit: NonZeroUsize) -> Result<Claim, sqlx::Error> {
    // Step 2: begin a transaction, SELECT the columns of `OutboxRow` ... ORDER BY id LIMIT $1
    //         FOR UPDATE SKIP LOCKED, and keep the transaction open inside the Claim.
    // Step 3: only lock rows that have no lower sequence of the same aggregate left in the
    //         table (NOT EXISTS ...), then join back to fetch the rest of those aggregates.
    todo!("steps 2 and 3: claim a batch")
}

impl Claim {
    /// The claimed rows, each aggregate's in ascending sequence order.
    pub fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    /// Deletes `settlement.delete`, parks `settlement.park` (set `parked_at`, `park_reason`)
    /// and commits.
    ///
    /// # Errors
    /// Any database error (`?` turns a `sqlx::Error` into [`OutboxError::Database`]).
    pub async fn complete(self, settlement: &Settlement) -> Result<(), OutboxError> {
        todo!("step 2: delete and park in the claiming transaction, then commit")
    }

    /// Gives the rows back unpublished.
    ///
    /// # Errors
    /// Any database error.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        todo!("step 2: roll the claim back")
    }
}
