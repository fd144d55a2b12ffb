//! Redis slow or down → the configured policy, within the timeout, logged once per outage.

use std::time::{Duration, Instant};

use harness::{FaultProxy, TestRedis};
use rate_limiter::{AlgorithmKind, DistributedLimiter, FailurePolicy, Quota, RedisLimiter};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

const TIMEOUT: Duration = Duration::from_millis(100);
/// Scheduling slack on a shared 2-core machine.
const MARGIN: Duration = Duration::from_millis(150);

struct Setup {
    /// Keeps the prefix alive (and cleans it up).
    _redis: TestRedis,
    proxy: FaultProxy,
    limiter: DistributedLimiter,
}

async fn setup(quota: Quota, policy: FailurePolicy) -> Setup {
    harness::telemetry::init_test();
    let redis = harness::redis().await.expect("redis available");
    let proxy = FaultProxy::start(redis.server_addr()).await.expect("proxy");
    let client = redis::Client::open(redis.url_via(proxy.addr())).expect("valid url");
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_number_of_retries(1);
    let conn = ConnectionManager::new_with_config(client, config)
        .await
        .expect("connect through the proxy");
    let redis_limiter = RedisLimiter::new(conn, AlgorithmKind::Gcra, quota, redis.prefix());
    let limiter = DistributedLimiter::builder(redis_limiter)
        .timeout(TIMEOUT)
        .policy(policy)
        .build()
        .expect("valid config");
    Setup {
        _redis: redis,
        proxy,
        limiter,
    }
}

fn quota() -> Quota {
    Quota::new(100, Duration::from_secs(3600)).expect("valid quota")
}

/// Sends `n` requests for distinct keys; asserts each is bounded by the timeout; returns how
/// many were admitted.
async fn burst(limiter: &DistributedLimiter, n: usize) -> usize {
    let mut admitted = 0;
    for i in 0..n {
        let started = Instant::now();
        let d = limiter.check(&format!("client-{i}")).await;
        let took = started.elapsed();
        assert!(took <= TIMEOUT + MARGIN, "request took {took:?}");
        admitted += usize::from(d.is_allowed());
    }
    admitted
}

#[tokio::test]
async fn fail_open_admits_everything_within_the_timeout_when_redis_is_blackholed() {
    let s = setup(quota(), FailurePolicy::FailOpen).await;
    assert!(s.limiter.check("warm-up").await.is_allowed());
    s.proxy.blackhole();
    assert_eq!(burst(&s.limiter, 10).await, 10);
    let h = s.limiter.health();
    assert!(!h.redis_up);
    assert_eq!(h.outages, 1, "one outage, however many requests it hit");
    assert_eq!(h.redis_errors, 10);
    assert_eq!(h.policy_decisions, 10);
    s.proxy.heal();
    harness::eventually(Duration::from_secs(10), || async {
        let _ = s.limiter.check("after-heal").await;
        s.limiter.health().redis_up.then_some(())
    })
    .await
    .expect("the limiter recovers once Redis is reachable");
    assert_eq!(s.limiter.health().recoveries, 1);
}

#[tokio::test]
async fn fail_closed_denies_everything_when_redis_refuses_connections() {
    let s = setup(quota(), FailurePolicy::FailClosed).await;
    assert!(s.limiter.check("warm-up").await.is_allowed());
    s.proxy.refuse_new();
    s.proxy.reset_all();
    assert_eq!(burst(&s.limiter, 10).await, 0);
    let h = s.limiter.health();
    assert_eq!(h.outages, 1);
    assert_eq!(h.policy_decisions, 10);
}

#[tokio::test]
async fn local_fallback_enforces_a_share_of_the_global_quota() {
    let global = Quota::new(40, Duration::from_secs(3600)).expect("valid quota");
    let policy = FailurePolicy::local_share(&global, 4).expect("valid share");
    let s = setup(global, policy).await;
    assert!(s.limiter.check("warm-up").await.is_allowed());
    s.proxy.blackhole();
    let mut admitted = 0;
    for _ in 0..15 {
        let started = Instant::now();
        admitted += usize::from(s.limiter.check("one-client").await.is_allowed());
        assert!(started.elapsed() <= TIMEOUT + MARGIN);
    }
    assert_eq!(
        admitted, 10,
        "40 per hour over 4 instances is 10 per instance"
    );
    assert_eq!(s.limiter.health().outages, 1);
}

#[tokio::test]
async fn a_denied_hot_key_is_answered_locally_without_a_redis_round_trip() {
    let quota = Quota::new(2, Duration::from_secs(3600)).expect("valid quota");
    let s = setup(quota, FailurePolicy::FailOpen).await;
    assert!(s.limiter.check("abuser").await.is_allowed());
    assert!(s.limiter.check("abuser").await.is_allowed());
    assert!(!s.limiter.check("abuser").await.is_allowed());
    // Were these to reach Redis, each would take the full timeout and fail open.
    s.proxy.blackhole();
    for _ in 0..50 {
        let started = Instant::now();
        let d = s.limiter.check("abuser").await;
        assert!(!d.is_allowed());
        assert!(started.elapsed() < TIMEOUT / 2);
    }
    let h = s.limiter.health();
    assert_eq!(h.deny_cache_hits, 50);
    assert_eq!(h.redis_errors, 0);
    assert!(h.redis_up);
}

/// A bare `RedisLimiter` (no `DistributedLimiter` timeout around it) on a connection with no
/// response timeout, whose calls never answer, still returns: the coalescing task bounds every
/// call, answers its callers with a timeout and frees the slot, so the limiter works again as
/// soon as Redis does.
#[tokio::test]
async fn a_coalesced_call_that_never_answers_times_out_and_frees_its_slot() {
    harness::telemetry::init_test();
    let redis = harness::redis().await.expect("redis available");
    let proxy = FaultProxy::start(redis.server_addr()).await.expect("proxy");
    let client = redis::Client::open(redis.url_via(proxy.addr())).expect("valid url");
    let config = ConnectionManagerConfig::new().set_response_timeout(None);
    let conn = ConnectionManager::new_with_config(client, config)
        .await
        .expect("connect through the proxy");
    let limiter = RedisLimiter::new(conn, AlgorithmKind::Gcra, quota(), redis.prefix());
    assert!(
        limiter
            .check("k")
            .await
            .expect("redis answers")
            .is_allowed()
    );
    proxy.blackhole();
    // More concurrent callers than in-flight slots: all of them get an answer.
    let calls = (0..32).map(|i| {
        let limiter = limiter.clone();
        async move { limiter.check(&format!("k{i}")).await }
    });
    let results = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(calls))
        .await
        .expect("every caller is answered within the call bound");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(rate_limiter::RedisLimitError::Timeout(_)))),
        "{results:?}"
    );
    proxy.heal();
    harness::eventually(Duration::from_secs(10), || async {
        limiter.check("after-heal").await.ok()
    })
    .await
    .expect("the limiter decides again once Redis answers");
}

#[test]
fn a_zero_timeout_is_rejected_at_construction() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let redis = rt.block_on(harness::redis()).expect("redis available");
    let _guard = rt.enter();
    let limiter = RedisLimiter::new(redis.connection(), AlgorithmKind::Gcra, quota(), "x");
    let built = DistributedLimiter::builder(limiter)
        .timeout(Duration::ZERO)
        .build();
    assert!(matches!(built, Err(rate_limiter::ConfigError::ZeroTimeout)));
}

/// The coalescing task needs a Tokio runtime: polled from another executor, a decision is a
/// typed error that the failure policy can handle, not a panic.
#[test]
fn a_check_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let redis = rt.block_on(harness::redis()).expect("redis available");
    let limiter = RedisLimiter::new(
        redis.connection(),
        AlgorithmKind::Gcra,
        quota(),
        redis.prefix(),
    );
    let result = futures::executor::block_on(limiter.check("k"));
    assert!(
        matches!(result, Err(rate_limiter::RedisLimitError::Stopped)),
        "{result:?}"
    );
}
