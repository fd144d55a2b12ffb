//! Many tasks across several limiter instances hammering one key admit exactly the quota.

use std::time::Duration;

use rate_limiter::{AlgorithmKind, Quota, RedisLimiter};
use redis::aio::ConnectionManager;

const INSTANCES: usize = 3;
const TASKS_PER_INSTANCE: usize = 16;
const REQUESTS_PER_TASK: usize = 10;

async fn server_micros(conn: &mut ConnectionManager) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .expect("TIME works");
    secs * 1_000_000 + micros
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_admit_exactly_the_quota_for_every_algorithm() {
    harness::telemetry::init_test();
    let redis = harness::redis().await.expect("redis available");
    // 100 per hour (burst 100): the test runs for well under one 36 s refill interval, so the
    // exact answer is 100 admitted out of 480.
    let quota = Quota::new(100, Duration::from_secs(3600)).expect("valid quota");
    for kind in AlgorithmKind::ALL {
        let mut instances = Vec::new();
        for _ in 0..INSTANCES {
            // A connection per instance, as separate processes would have.
            let conn = ConnectionManager::new(redis.client().clone())
                .await
                .expect("connect");
            instances.push(RedisLimiter::new(conn, kind, quota, redis.prefix()));
        }
        let mut time_conn = redis.connection();
        let before = server_micros(&mut time_conn).await;
        let mut tasks = tokio::task::JoinSet::new();
        for limiter in &instances {
            for _ in 0..TASKS_PER_INSTANCE {
                let limiter = limiter.clone();
                tasks.spawn(async move {
                    let mut admitted = 0u64;
                    for _ in 0..REQUESTS_PER_TASK {
                        let d = limiter.check("hot-key").await.expect("redis answers");
                        admitted += u64::from(d.is_allowed());
                    }
                    admitted
                });
            }
        }
        let admitted: u64 = tasks.join_all().await.into_iter().sum();
        let after = server_micros(&mut time_conn).await;
        let period = quota.period_micros();
        if before / period == after / period {
            assert_eq!(admitted, 100, "{kind:?} admitted {admitted} of 480");
        } else {
            // The run straddled an hour boundary: window algorithms may admit a second window.
            assert!(admitted <= 200, "{kind:?} admitted {admitted}");
        }
    }
}

#[tokio::test]
async fn a_denied_request_is_admitted_after_its_retry_after() {
    let redis = harness::redis().await.expect("redis available");
    let quota = Quota::new(2, Duration::from_millis(200)).expect("valid quota");
    for kind in AlgorithmKind::ALL {
        let limiter = RedisLimiter::new(redis.connection(), kind, quota, redis.prefix());
        let key = format!("retry-{}", kind.name());
        let mut denied = None;
        for _ in 0..10 {
            let d = limiter.check(&key).await.expect("redis answers");
            if !d.is_allowed() {
                denied = Some(d);
                break;
            }
        }
        let denied = denied.expect("a third request within 200 ms is denied");
        let wait = denied.retry_after().expect("denials carry retry_after");
        // At most two periods (the sliding counter may wait out the next window's weight).
        assert!(
            wait <= 2 * quota.period(),
            "{kind:?} asked to wait {wait:?}"
        );
        tokio::time::sleep(wait).await;
        let retry = limiter.check(&key).await.expect("redis answers");
        assert!(retry.is_allowed(), "{kind:?} denied again after {wait:?}");
    }
}

#[tokio::test]
async fn idle_keys_expire_from_redis() {
    let redis = harness::redis().await.expect("redis available");
    let quota = Quota::new(5, Duration::from_millis(100)).expect("valid quota");
    let limiter = RedisLimiter::new(
        redis.connection(),
        AlgorithmKind::Gcra,
        quota,
        redis.prefix(),
    );
    limiter.check("short-lived").await.expect("redis answers");
    let key = format!("{}:{{short-lived}}:gcra", redis.prefix());
    let mut conn = redis.connection();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    // The key lives at most until the end of the second its TAT (now + 20 ms) falls in.
    assert!((1..=1_020).contains(&ttl), "TTL {ttl} ms");
    harness::eventually(Duration::from_secs(3), || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .ok()?;
            (!exists).then_some(())
        }
    })
    .await
    .expect("the key expires once idle");
}

/// The GCRA script keeps a key's expiry from moving on every decision (`KEEPTTL` while the TAT
/// stays within one second) but must never let the key expire before its TAT, or an expiry
/// would forget a debt and admit an extra burst. A burst of 30 with a 100 ms interval pushes
/// the TAT 3 s ahead one decision at a time, across at least two second boundaries; after every
/// admitted decision the key must expire no earlier than its TAT and at most a second after
/// it. Fails if the expiry is kept when the TAT enters a new second, or never set.
#[tokio::test]
async fn a_gcra_keys_expiry_follows_its_tat_across_seconds() {
    let redis = harness::redis().await.expect("redis available");
    let quota = Quota::new(30, Duration::from_secs(3)).expect("valid quota");
    let limiter = RedisLimiter::new(
        redis.connection(),
        AlgorithmKind::Gcra,
        quota,
        redis.prefix(),
    );
    let key = format!("{}:{{debtor}}:gcra", redis.prefix());
    let mut conn = redis.connection();
    let mut seconds = std::collections::BTreeSet::new();
    let mut admitted = 0;
    while limiter
        .check("debtor")
        .await
        .expect("redis answers")
        .is_allowed()
    {
        admitted += 1;
        let (tat, expires_ms): (u64, i64) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PEXPIRETIME")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET and PEXPIRETIME");
        let expires = u64::try_from(expires_ms).expect("the key has an expiry") * 1_000;
        assert!(
            expires >= tat,
            "decision {admitted}: the key expires at {expires} µs, before its TAT {tat} µs"
        );
        assert!(
            expires <= tat + 1_000_000,
            "decision {admitted}: the key outlives its TAT {tat} µs until {expires} µs"
        );
        seconds.insert(tat / 1_000_000);
    }
    assert!(admitted >= 29, "only {admitted} of the burst admitted");
    assert!(
        seconds.len() >= 3,
        "the TAT crossed {} second boundaries",
        seconds.len() - 1
    );
}
