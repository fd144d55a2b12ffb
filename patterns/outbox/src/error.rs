//! Errors of the writer, the claim, the schema and the operator functions.

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The event is malformed before it ever reaches the database.
    #[error("invalid event: {0}")]
    InvalidEvent(&'static str),
    /// A database call failed; the caller's transaction should be rolled back.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Closing a claim found that its rows were not the ones it read: the settlement named a
    /// row outside the claim, or a row was no longer at its location. The claim was rolled
    /// back, so its rows are published again (duplicates, never loss).
    #[error("claim does not match the outbox: {0}")]
    ClaimMismatch(String),
    /// No parked event has this id.
    #[error("no parked event with id {0}")]
    NotParked(i64),
}
