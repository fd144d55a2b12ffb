//! Configuration errors. Shared by the reference and the workshop copy of `backoff`, so the
//! tests match on one type whichever is compiled.

use std::time::Duration;

/// Why a [`Backoff`](crate::Backoff) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    /// The base delay is zero, so every delay would be zero.
    #[error("base delay must be greater than zero")]
    ZeroBase,
    /// The cap is below the base delay.
    #[error("cap ({cap:?}) must be at least the base delay ({base:?})")]
    CapBelowBase {
        /// The base given.
        base: Duration,
        /// The cap given.
        cap: Duration,
    },
}
