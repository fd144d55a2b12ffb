//! Errors a caller branches on.

use std::time::Duration;

/// A quota or limiter configuration that cannot be honoured, rejected at construction.
///
/// Every limit in this crate is validated once, when it is built, so the request path has no
/// error to handle and no input that can panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `limit` was zero: a limiter that admits nothing is a kill switch, not a rate limit.
    #[error("rate limit must admit at least one request per period")]
    ZeroLimit,
    /// The period (window) was zero: a rate needs a duration.
    #[error("rate limit period must be longer than zero")]
    ZeroPeriod,
    /// The burst capacity was zero: a bucket of size zero never admits anything.
    #[error("burst capacity must be at least one request")]
    ZeroBurst,
    /// `limit` exceeds the number of microseconds in the period, so one request would be
    /// allowed in less than the one-microsecond resolution of the integer clock.
    #[error("{limit} requests per {period:?} is finer than the 1 µs clock resolution")]
    TooFine {
        /// The requested number of requests per period.
        limit: u64,
        /// The requested period.
        period: Duration,
    },
    /// A product of the configured values (limit × period or burst × interval, in µs) would
    /// exceed 2^51, beyond which Redis Lua doubles stop being exact integers.
    #[error("quota too large for exact integer arithmetic in Redis Lua (limit × period > 2^51 µs)")]
    TooLarge,
    /// `max_keys` was zero: an in-process keyed limiter must be able to track at least one key.
    #[error("a keyed limiter must be able to track at least one key")]
    ZeroKeys,
    /// A Redis call timeout of zero would fail every call.
    #[error("Redis call timeout must be longer than zero")]
    ZeroTimeout,
    /// The local fallback share must be a positive number of instances.
    #[error("the local fallback must divide the quota among at least one instance")]
    ZeroInstances,
}

/// A Redis-backed decision could not be made.
///
/// Returned by [`RedisLimiter`](crate::RedisLimiter); the
/// [`DistributedLimiter`](crate::DistributedLimiter) turns it into a decision through its
/// [`FailurePolicy`](crate::FailurePolicy).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisLimitError {
    /// The call did not complete within the configured timeout.
    #[error("Redis call timed out after {0:?}")]
    Timeout(Duration),
    /// Redis (or the connection to it) returned an error.
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script returned something other than the reply it promises.
    #[error("unexpected script reply: {0}")]
    BadReply(String),
    /// The limiter's coalescing task cannot run: the call was not made inside a Tokio runtime,
    /// or the runtime that started the task has shut down (a limiter is used within one
    /// runtime).
    #[error(
        "the rate limiter's background task is not running (no Tokio runtime, or it shut down)"
    )]
    Stopped,
}
