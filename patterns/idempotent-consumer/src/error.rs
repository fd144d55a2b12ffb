//! Error types: what a handler reports, what configuration rejects, what stops a consumer.

use rdkafka::error::KafkaError;

/// What a [`Handler`](crate::Handler) reports when it cannot apply an event.
///
/// The classification is the handler's promise about the future: a transient error might
/// succeed if the same event is tried again (a lock timeout, a deadlock, a downstream hiccup);
/// a permanent one never will (the payload is malformed, a business rule rejects it). The
/// consumer retries the first kind with backoff and sends the second straight to the
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed on a later attempt.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed for this message.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A transient error with the given description.
    pub fn transient(reason: impl std::fmt::Display) -> Self {
        Self::Transient(reason.to_string())
    }

    /// A permanent error with the given description.
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }

    /// Whether a retry could help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Classifies database errors a handler runs into, so `?` works inside handlers.
///
/// Connection loss, pool exhaustion, serialization failures and deadlocks (SQLSTATE classes
/// `08`, `40`, `53`, `57`) are transient: the same statement can succeed later. Everything
/// else (constraint and data errors, classes `22`, `23`, …) is permanent: retrying the same
/// event produces the same violation.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| ["08", "40", "53", "57"].iter().any(|p| c.starts_with(p))),
            _ => false,
        };
        if transient {
            Self::transient(e)
        } else {
            Self::permanent(e)
        }
    }
}

/// A configuration value was rejected when the consumer or a policy was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required builder field was not set.
    #[error("`{0}` must be set")]
    Missing(&'static str),
    /// The consumer was given no topic to read.
    #[error("at least one topic is required")]
    NoTopics,
    /// The retry policy's base delay is zero or above its cap.
    #[error("retry base delay must be > 0 and <= the cap")]
    InvalidBackoff,
    /// The consumer name is empty or contains a NUL byte (it is stored in Postgres text).
    #[error("consumer name must be non-empty text without NUL bytes")]
    InvalidName,
}

/// Why [`Consumer::run`](crate::Consumer::run) or a helper stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Kafka rejected a client configuration or an operation that cannot be retried.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Postgres failed outside the per-batch retry loop (e.g. during setup).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be installed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The consumer task panicked or was aborted.
    #[error("consumer task stopped: {0}")]
    Stopped(String),
    /// A fault point configured for a crash test was reached; the consumer stopped as if the
    /// process had died there.
    #[doc(hidden)]
    #[error("injected fault at {0:?}")]
    InjectedFault(crate::FaultPoint),
}
