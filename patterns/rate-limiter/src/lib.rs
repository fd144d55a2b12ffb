//! Rate limiting: six algorithms over one integer-time core, in process and on Redis.
//!
//! # The problem
//! A service must cap how often a client (an IP, an API key, a route) may call it: to share
//! capacity fairly, to protect a fragile dependency, to bill by quota. In one process that is a
//! counter and a clock. Across N instances it is a distributed-systems problem: the instances
//! must agree on one count (here: atomic Lua scripts on Redis, on the Redis clock), the shared
//! store can be slow or down (a timeout and a [`FailurePolicy`]), and an abusive hot key must not
//! turn every request into a Redis round trip (a local deny cache).
//!
//! # Guarantees
//! * **Never more than the quota, plus the algorithm's documented burst** — for every span of
//!   time, proven by property tests on the core (`src/algorithm/tests.rs`) and, across several
//!   instances on one Redis key, by `tests/redis_quota.rs`. Per algorithm:
//!   [`Gcra`], [`TokenBucket`], [`LeakyBucket`]: ≤ `burst + ⌊W / interval⌋` in any span `W`;
//!   [`SlidingLog`]: ≤ `limit` in any span of one period; [`FixedWindow`], [`SlidingCounter`]:
//!   ≤ `limit` per aligned window, ≤ `2 × limit` in an arbitrary span of one period.
//! * **`retry_after` is exact and never early**: a retry at `now + retry_after` is admitted, one
//!   microsecond earlier is not (integer µs; HTTP `Retry-After` seconds are rounded up).
//! * **Rust and Lua agree bit for bit**: all time is integer µs, every value stays below 2^53
//!   ([`MAX_PRODUCT_MICROS`]); `tests/redis_parity.rs` replays random sequences through both.
//! * **Bounded latency when Redis is not**: every Redis call is bounded by a timeout, after which
//!   the [`FailurePolicy`] decides; the outage is logged once per transition.
//! * **Bounded memory**: in process at most `max_keys` keys, idle ones swept; in Redis every
//!   key has a TTL at which its state would be idle anyway.
//! * **No panics, typed config errors**: zero rate, zero burst, zero window, sub-µs rates and
//!   quotas past the exact-integer range are rejected by [`Quota`] with a [`ConfigError`].
//!
//! # Not guaranteed
//! * During a Redis outage the limit is the policy's: fail-open admits everything, a local
//!   fallback admits up to `instances × share` (exact only if the instance count is right).
//! * Redis replication is asynchronous: after a failover the replica may have lost the last
//!   writes, so a key may briefly get part of its quota again.
//! * Fairness between keys, queueing, or smoothing: a denied request is rejected, not delayed.
//! * The client IP behind a proxy: [`KeyExtractor::ClientIp`] uses the TCP peer.
//!
//! # Failure modes
//! | failure | behaviour | test |
//! |---|---|---|
//! | Redis black-holed (hangs) | each call gives up after the timeout; policy decides | `tests/failure_policy.rs` |
//! | Redis refuses connections | calls fail fast; policy decides | `tests/failure_policy.rs` |
//! | Redis restarted, scripts flushed | `NOSCRIPT` → script reloaded, call retried once | `tests/script_cache.rs` |
//! | hot key hammering a denied quota | answered from the local deny cache | `tests/failure_policy.rs` |
//! | key-space flood in process | new keys denied once `max_keys` active keys are tracked | `tests/keyed.rs` |
//!
//! # Layout
//! - `quota.rs`: [`Quota`], the validated configuration and the 2^53 bound.
//! - `decision.rs`: [`Decision`]: allowed, remaining, reset, `retry_after`.
//! - `clock.rs`: [`Clock`], [`MonotonicClock`] (TSC), [`ManualClock`] (tests).
//! - `algorithm/`: the pure core, one file per algorithm, plus the shared property tests.
//! - `local/`: [`GcraLimiter`] (one `AtomicU64`) and [`KeyedLimiter`] (sharded, bounded).
//! - `redis_backend/`: [`RedisLimiter`] and the Lua scripts in `lua/`.
//! - `distributed/`: [`DistributedLimiter`]: timeout, [`FailurePolicy`], deny cache, health.
//! - `middleware/`: [`RateLimitLayer`] / [`RateLimitService`], [`KeyExtractor`], headers.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use rate_limiter::{Algorithm, Gcra, Quota};
//! # fn main() -> Result<(), rate_limiter::ConfigError> {
//! let gcra = Gcra::new(Quota::new(2, Duration::from_secs(1))?);
//! let mut tat = 0; // the whole per-key state: one timestamp
//! assert!(gcra.check(&mut tat, 0).is_allowed());
//! assert!(gcra.check(&mut tat, 0).is_allowed());
//! let denied = gcra.check(&mut tat, 0);
//! assert_eq!(denied.retry_after(), Some(Duration::from_millis(500)));
//! assert!(gcra.check(&mut tat, 500_000).is_allowed());
//! # Ok(()) }
//! ```

pub mod algorithm;
mod clock;
mod decision;
mod distributed;
mod error;
mod local;
mod middleware;
mod quota;
mod redis_backend;

pub use algorithm::{
    Algorithm, AlgorithmKind, FixedWindow, Gcra, LeakyBucket, SlidingCounter, SlidingLog,
    TokenBucket,
};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decision::Decision;
pub use distributed::{
    DistributedLimiter, DistributedLimiterBuilder, FailurePolicy, HealthSnapshot,
};
pub use error::{ConfigError, RedisLimitError};
pub use local::{GcraLimiter, KeyedLimiter, KeyedLimiterBuilder};
pub use middleware::{
    KeyExtractor, MAX_CLIENT_KEY_LEN, RateLimit, RateLimitLayer, RateLimitService, ResponseFuture,
    headers,
};
pub use quota::{MAX_PRODUCT_MICROS, Quota};
pub use redis_backend::RedisLimiter;
