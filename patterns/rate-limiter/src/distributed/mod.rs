//! Redis plus a timeout, a failure policy and a local deny cache.

mod deny_cache;
mod health;
mod policy;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use health::HealthSnapshot;
pub use policy::FailurePolicy;

use self::deny_cache::DenyCache;
use self::health::Health;
use crate::{
    Clock, ConfigError, Decision, Gcra, KeyedLimiter, MonotonicClock, Quota, RedisLimitError,
    RedisLimiter,
};

/// A [`RedisLimiter`] made safe for the request path.
///
/// * Every Redis call is bounded by a timeout, so Redis trouble adds at most that much latency
///   to a request.
/// * When a call fails or times out, the [`FailurePolicy`] decides. The outage is logged once
///   on the transition and counted in [`health`](Self::health), not logged per request.
/// * A key Redis denied is answered locally until its `retry_after`: a blocked hot key costs no
///   Redis round trip.
///
/// Clones share everything (connection, deny cache, fallback state, counters).
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use rate_limiter::{AlgorithmKind, DistributedLimiter, FailurePolicy, Quota, RedisLimiter};
/// # async fn f(conn: redis::aio::ConnectionManager) -> Result<(), Box<dyn std::error::Error>> {
/// let quota = Quota::per_second(100)?;
/// let redis = RedisLimiter::new(conn, AlgorithmKind::Gcra, quota, "api");
/// let limiter = DistributedLimiter::builder(redis)
///     .timeout(Duration::from_millis(50))
///     .policy(FailurePolicy::local_share(&quota, 4)?)
///     .build()?;
/// let decision = limiter.check("client-42").await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DistributedLimiter {
    /// Shared state.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The shared limit.
    redis: RedisLimiter,
    /// Upper bound on one Redis call.
    timeout: Duration,
    /// What to decide without Redis.
    policy: FailurePolicy,
    /// The in-process limiter used by [`FailurePolicy::LocalFallback`].
    fallback: Option<KeyedLimiter<String, Gcra>>,
    /// Keys denied until a known time.
    denied: DenyCache,
    /// Clock for the deny cache (local: it only measures the `retry_after` durations).
    clock: MonotonicClock,
    /// Availability counters.
    health: Health,
}

/// Builds a [`DistributedLimiter`].
#[derive(Debug)]
pub struct DistributedLimiterBuilder {
    /// The Redis limiter to wrap.
    redis: RedisLimiter,
    /// Per-call timeout (default 50 ms).
    timeout: Duration,
    /// Failure policy (default fail-open).
    policy: FailurePolicy,
    /// Deny-cache capacity (default 100 000 keys; 0 disables it).
    deny_cache: usize,
    /// Keys the local fallback tracks (default 100 000).
    fallback_keys: usize,
}

impl DistributedLimiterBuilder {
    /// Bounds every Redis call (default 50 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The decision when Redis is unavailable (default [`FailurePolicy::FailOpen`]).
    #[must_use]
    pub fn policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many denied keys to remember locally (default 100 000; 0 disables the cache).
    #[must_use]
    pub fn deny_cache_capacity(mut self, keys: usize) -> Self {
        self.deny_cache = keys;
        self
    }

    /// How many keys the local fallback may track (default 100 000).
    #[must_use]
    pub fn fallback_keys(mut self, keys: usize) -> Self {
        self.fallback_keys = keys;
        self
    }

    /// The limiter.
    ///
    /// # Errors
    /// [`ConfigError::ZeroTimeout`], or [`ConfigError::ZeroKeys`] for a zero fallback size.
    pub fn build(self) -> Result<DistributedLimiter, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let fallback = match self.policy {
            FailurePolicy::LocalFallback(quota) => Some(
                KeyedLimiter::builder(Gcra::new(quota))
                    .max_keys(self.fallback_keys)
                    .build()?,
            ),
            FailurePolicy::FailOpen | FailurePolicy::FailClosed => None,
        };
        let inner = Inner {
            redis: self.redis,
            timeout: self.timeout,
            policy: self.policy,
            fallback,
            denied: DenyCache::new(self.deny_cache),
            clock: MonotonicClock::new(),
            health: Health::new(),
        };
        Ok(DistributedLimiter {
            inner: Arc::new(inner),
        })
    }
}

impl DistributedLimiter {
    /// Starts building a limiter around `redis`.
    #[must_use]
    pub fn builder(redis: RedisLimiter) -> DistributedLimiterBuilder {
        DistributedLimiterBuilder {
            redis,
            timeout: Duration::from_millis(50),
            policy: FailurePolicy::FailOpen,
            deny_cache: 100_000,
            fallback_keys: 100_000,
        }
    }

    /// Decides one request for `key`: deny cache, then Redis within the timeout, then policy.
    pub async fn check(&self, key: &str) -> Decision {
        let inner = &*self.inner;
        let limit = inner.redis.quota().limit();
        let now = inner.clock.now_micros();
        if let Some(wait) = inner.denied.remaining(key, now) {
            inner.health.deny_cache_hits.fetch_add(1, Ordering::Relaxed);
            return Decision::denied(limit, wait, wait);
        }
        let result = match tokio::time::timeout(inner.timeout, inner.redis.check(key)).await {
            Ok(result) => result,
            Err(_) => Err(RedisLimitError::Timeout(inner.timeout)),
        };
        match result {
            Ok(decision) => {
                inner.health.mark_up();
                if !decision.is_allowed() {
                    let until = inner.clock.now_micros() + decision.retry_after_micros();
                    inner.denied.insert(key, until, now);
                }
                decision
            }
            Err(error) => {
                inner.health.mark_down(&error, inner.policy.name());
                self.decide_without_redis(key)
            }
        }
    }

    /// The failure policy's decision.
    fn decide_without_redis(&self, key: &str) -> Decision {
        let inner = &*self.inner;
        inner
            .health
            .policy_decisions
            .fetch_add(1, Ordering::Relaxed);
        let quota = inner.redis.quota();
        match (&inner.policy, &inner.fallback) {
            (FailurePolicy::LocalFallback(_), Some(local)) => local.check(key),
            (FailurePolicy::FailClosed, _) => {
                // Ask for a retry in a second (or one interval, if longer): an outage is not over in
                // microseconds, and a tighter loop of retries only adds load.
                let wait = quota.interval_micros().max(1_000_000);
                Decision::denied(quota.limit(), wait, wait)
            }
            _ => Decision::allowed(quota.limit(), 0, 0),
        }
    }

    /// Availability counters since construction.
    #[must_use]
    pub fn health(&self) -> HealthSnapshot {
        self.inner.health.snapshot()
    }

    /// The global quota.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        self.inner.redis.quota()
    }

    /// The failure policy.
    #[must_use]
    pub fn policy(&self) -> &FailurePolicy {
        &self.inner.policy
    }
}
