//! The Redis backend: each algorithm as one atomic Lua script on the server's clock.

mod scripts;

use std::sync::Arc;

use redis::Script;
use redis::aio::ConnectionManager;

use crate::{AlgorithmKind, Decision, Quota, RedisLimitError};

/// A rate limiter whose state lives in Redis, shared by every instance that uses the same
/// `namespace`, algorithm and quota.
///
/// * **Atomic**: each decision is one Lua script (read, decide, write), so concurrent instances
///   never interleave inside a decision. Calls go out as `EVALSHA`; on `NOSCRIPT` (a restarted
///   or failed-over server) the script is loaded and the call retried, transparently.
/// * **One clock**: the script reads Redis `TIME`, so instance clock skew does not matter.
/// * **One slot**: keys are `namespace:{key}:<algorithm>` — the braces are a cluster hash tag,
///   so every key a script touches hashes to one slot (and `namespace:*` finds them all).
/// * **Bounded memory**: every write sets a TTL at which the state would be idle anyway.
/// * **Exact**: all arithmetic is on integers below 2^53 (see [`Quota`]).
///
/// Clones share one [`ConnectionManager`] (a multiplexed connection): concurrent calls are
/// pipelined on one socket.
///
/// This type reports Redis failures as errors; [`DistributedLimiter`](crate::DistributedLimiter)
/// adds the timeout and the failure policy.
#[derive(Clone)]
pub struct RedisLimiter {
    /// Shared configuration and script.
    inner: Arc<Inner>,
    /// The multiplexed connection (itself a cheap clone).
    conn: ConnectionManager,
}

struct Inner {
    /// Which algorithm's script runs.
    kind: AlgorithmKind,
    /// The quota passed to the script on every call.
    quota: Quota,
    /// Prefix before the hash tag, separating applications and tests sharing a server.
    namespace: String,
    /// The script (source + SHA1).
    script: Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("kind", &self.inner.kind)
            .field("quota", &self.inner.quota)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// A limiter running `kind` with `quota` on keys under `namespace`.
    #[must_use]
    pub fn new(
        conn: ConnectionManager,
        kind: AlgorithmKind,
        quota: Quota,
        namespace: impl Into<String>,
    ) -> Self {
        let inner = Inner {
            kind,
            quota,
            namespace: namespace.into(),
            script: scripts::script(kind),
        };
        Self {
            inner: Arc::new(inner),
            conn,
        }
    }

    /// Decides one request for `key` on the Redis server's clock.
    ///
    /// # Errors
    /// [`RedisLimitError::Redis`] when Redis or the connection fails, and
    /// [`RedisLimitError::BadReply`] when the script returns something unexpected. No timeout
    /// is applied here.
    pub async fn check(&self, key: &str) -> Result<Decision, RedisLimitError> {
        self.invoke(key, None).await
    }

    /// Decides one request for `key` as if the server clock read `now_us` µs.
    ///
    /// For tests that replay the same timestamps through the Rust core and the script; keys
    /// written this way keep a 10-minute TTL because virtual time says nothing about expiry.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub async fn check_at(&self, key: &str, now_us: u64) -> Result<Decision, RedisLimitError> {
        self.invoke(key, Some(now_us)).await
    }

    async fn invoke(&self, key: &str, now: Option<u64>) -> Result<Decision, RedisLimitError> {
        let inner = &*self.inner;
        let q = &inner.quota;
        let tag = format!("{}:{{{}}}:{}", inner.namespace, key, inner.kind.name());
        let mut call = inner.script.prepare_invoke();
        call.key(&tag);
        if inner.kind == AlgorithmKind::SlidingLog {
            call.key(format!("{tag}:seq"));
        }
        call.arg(now.map_or_else(String::new, |n| n.to_string()))
            .arg(q.limit())
            .arg(q.period_micros())
            .arg(q.burst())
            .arg(q.interval_micros());
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = call.invoke_async(&mut conn).await?;
        parse(q.limit(), &reply)
    }

    /// The algorithm this limiter runs.
    #[must_use]
    pub fn kind(&self) -> AlgorithmKind {
        self.inner.kind
    }

    /// The quota enforced.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.inner.quota
    }

    /// The Lua source of the script this limiter runs (for review and for `SCRIPT LOAD`).
    #[must_use]
    pub fn script_source(&self) -> &'static str {
        scripts::source(self.inner.kind)
    }
}

/// `{allowed, remaining, reset_after_us, retry_after_us}` → [`Decision`], through the same
/// constructors the Rust core uses, so both normalise identically.
fn parse(limit: u64, reply: &[i64]) -> Result<Decision, RedisLimitError> {
    let bad = || RedisLimitError::BadReply(format!("{reply:?}"));
    let [allowed, remaining, reset, retry] = reply else {
        return Err(bad());
    };
    let u = |v: &i64| u64::try_from(*v).map_err(|_| bad());
    Ok(match allowed {
        1 => Decision::allowed(limit, u(remaining)?, u(reset)?),
        0 => Decision::denied(limit, u(reset)?, u(retry)?),
        _ => return Err(bad()),
    })
}
