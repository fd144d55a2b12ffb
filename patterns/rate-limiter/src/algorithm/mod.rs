//! The algorithm core: six rate-limiting algorithms as pure functions of (state, now).
//!
//! No I/O, no clock reads, no locks: each algorithm maps the key's state and an integer
//! timestamp to a [`Decision`] and the next state. The in-process limiters add a clock and
//! storage; the Redis scripts in `src/redis_backend/lua/` are line-by-line translations of these files,
//! and a property test requires both to decide identically.

use crate::{Decision, Quota};

#[cfg(not(feature = "exercise"))]
mod fixed_window;
#[cfg(feature = "exercise")]
#[path = "../../exercises/src/fixed_window.rs"]
mod fixed_window;

#[cfg(not(feature = "exercise"))]
mod token_bucket;
#[cfg(feature = "exercise")]
#[path = "../../exercises/src/token_bucket.rs"]
mod token_bucket;

pub mod gcra;
mod leaky_bucket;
mod sliding_counter;
mod sliding_log;

#[cfg(test)]
mod tests;

pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::Gcra;
pub use leaky_bucket::{LeakyBucket, LeakyBucketState};
pub use sliding_counter::{SlidingCounter, SlidingCounterState};
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use token_bucket::{TokenBucket, TokenBucketState};

/// A rate-limiting algorithm: pure logic over an injected integer clock.
///
/// `State::default()` must behave as a key never seen before, so storage can create state
/// lazily and drop idle state without changing any decision.
pub trait Algorithm: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Per-key state.
    type State: Default + std::fmt::Debug + Send + Sync + 'static;

    /// The quota this instance enforces.
    fn quota(&self) -> &Quota;

    /// Decides one request arriving at `now` (µs) and updates `state`.
    ///
    /// Never panics, for any `state` it produced and any `now` (including a clock that steps
    /// backwards, which is treated as no time having passed).
    fn check(&self, state: &mut Self::State, now: u64) -> Decision;

    /// `true` when `state` is indistinguishable from `State::default()` at `now`, so it can be
    /// evicted.
    fn is_idle(&self, state: &Self::State, now: u64) -> bool;
}

/// Which algorithm, as a value: selects the Lua script of a [`RedisLimiter`](crate::RedisLimiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgorithmKind {
    /// [`TokenBucket`].
    TokenBucket,
    /// [`LeakyBucket`].
    LeakyBucket,
    /// [`FixedWindow`].
    FixedWindow,
    /// [`SlidingLog`].
    SlidingLog,
    /// [`SlidingCounter`].
    SlidingCounter,
    /// [`Gcra`].
    Gcra,
}

impl AlgorithmKind {
    /// Every algorithm, for tests and demos that cover them all.
    pub const ALL: [Self; 6] = [
        Self::TokenBucket,
        Self::LeakyBucket,
        Self::FixedWindow,
        Self::SlidingLog,
        Self::SlidingCounter,
        Self::Gcra,
    ];

    /// A short stable name, used in Redis key suffixes and metrics labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::TokenBucket => "tb",
            Self::LeakyBucket => "lb",
            Self::FixedWindow => "fw",
            Self::SlidingLog => "sl",
            Self::SlidingCounter => "sc",
            Self::Gcra => "gcra",
        }
    }
}
