//! The harness's one error type.

use std::time::Duration;

/// Why the harness could not hand out a service, or a helper failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No source provided the service. The message lists every way to provide it.
    #[error(
        "no {service} found.\n  tried: {tried}\n  provide one of:\n    1. set {env_var} (e.g. {example})\n    2. start a Docker engine (the harness then runs the `{image}` image via testcontainers)\n    3. run {service} locally on {default_addr} (or `make up` with Docker Compose)"
    )]
    Unavailable {
        /// `Postgres`, `Redis` or `Kafka`.
        service: &'static str,
        /// What was tried, in order, and why each failed.
        tried: String,
        /// The variable that points the harness at a running server.
        env_var: &'static str,
        /// An example value of that variable.
        example: &'static str,
        /// The image testcontainers would run.
        image: &'static str,
        /// The default local address probed.
        default_addr: &'static str,
    },
    /// The service named by an environment variable does not answer. The harness does not fall
    /// back to other sources in that case: an explicit setting that is wrong must be fixed.
    #[error("{env_var}={value} is set, but nothing answers at {addr}: {reason}")]
    EnvUnreachable {
        /// The variable.
        env_var: &'static str,
        /// Its value.
        value: String,
        /// The address that was tried.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A value (URL, address) could not be understood.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A Postgres command failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A Kafka admin or client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Starting a container failed.
    #[error("docker: {0}")]
    Docker(String),
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Something did not happen within its deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
}
