//! Errors of the writer, the schema and the operator functions.

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
    /// No parked event has this id.
    #[error("no parked event with id {0}")]
    NotParked(i64),
}
