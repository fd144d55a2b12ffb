//! An emptied script cache (Redis restarted, failed over, or `SCRIPT FLUSH`) costs no decision.
//!
//! Every call is an `EVALSHA`; a server that no longer has the script answers `NOSCRIPT`, and
//! the limiter must load the script and retry instead of failing (which, behind a fail-closed
//! policy, would shed all traffic until something else reloaded the script).

use std::time::Duration;

use rate_limiter::{AlgorithmKind, DistributedLimiter, FailurePolicy, Quota, RedisLimiter};
use redis::aio::ConnectionManager;

/// Held by each test from its first flush to its last assertion: the tests in this file must not
/// flush the cache in the middle of each other's load-and-retry.
static FLUSHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Empties the server's script cache.
///
/// Safe while other tests run in parallel on the same server: it touches only the script
/// cache, never a key, and every Lua client in this workspace (this crate's limiters and the
/// redis crate's `Script`) reloads its script on `NOSCRIPT`. `SYNC` so the cache is empty when
/// the command returns.
async fn flush_script_cache(conn: &mut ConnectionManager) {
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .arg("SYNC")
        .query_async(conn)
        .await
        .expect("SCRIPT FLUSH");
}

async fn script_cached(conn: &mut ConnectionManager, source: &str) -> bool {
    let sha = redis::Script::new(source).get_hash().to_owned();
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(sha)
        .query_async(conn)
        .await
        .expect("SCRIPT EXISTS");
    exists == [true]
}

#[tokio::test]
async fn every_algorithm_keeps_deciding_correctly_after_the_script_cache_is_flushed() {
    harness::telemetry::init_test();
    let redis = harness::redis().await.expect("redis available");
    let mut admin = redis.connection();
    let _serial = FLUSHING.lock().await;
    // Two per hour: the third request is denied whatever the algorithm (no window boundary or
    // refill can fall inside the few milliseconds this test takes).
    let quota = Quota::new(2, Duration::from_secs(3600)).expect("valid quota");
    for kind in AlgorithmKind::ALL {
        let redis_limiter = RedisLimiter::new(redis.connection(), kind, quota, redis.prefix());
        let source = redis_limiter.script_source();
        // Fail-closed: had any call surfaced NOSCRIPT, the policy would deny and count it.
        let limiter = DistributedLimiter::builder(redis_limiter)
            .timeout(Duration::from_secs(5))
            .policy(FailurePolicy::FailClosed)
            .build()
            .expect("valid config");

        assert!(limiter.check("k").await.is_allowed(), "{kind:?}: first");
        flush_script_cache(&mut admin).await;
        assert!(limiter.check("k").await.is_allowed(), "{kind:?}: second");
        // Denied by Redis itself: the state written before the flush is still counted.
        assert!(!limiter.check("k").await.is_allowed(), "{kind:?}: third");

        let health = limiter.health();
        assert_eq!(health.redis_errors, 0, "{kind:?}: {health:?}");
        assert_eq!(health.policy_decisions, 0, "{kind:?}: {health:?}");
        assert!(
            script_cached(&mut admin, source).await,
            "{kind:?}: script reloaded"
        );
    }
}

#[tokio::test]
async fn a_bare_redis_limiter_reloads_its_script_on_noscript() {
    harness::telemetry::init_test();
    let redis = harness::redis().await.expect("redis available");
    let mut admin = redis.connection();
    let _serial = FLUSHING.lock().await;
    let quota = Quota::new(1, Duration::from_secs(3600)).expect("valid quota");
    let limiter = RedisLimiter::new(
        redis.connection(),
        AlgorithmKind::Gcra,
        quota,
        redis.prefix(),
    );

    flush_script_cache(&mut admin).await;
    let first = limiter
        .check("k")
        .await
        .expect("NOSCRIPT is handled, not returned");
    assert!(first.is_allowed());
    assert!(script_cached(&mut admin, limiter.script_source()).await);
    let second = limiter.check("k").await.expect("redis answers");
    assert!(!second.is_allowed());
    // The TAT written by the first call survived: the retry is about an hour away.
    assert_eq!(second.retry_after_secs_ceil(), Some(3600));
}
