//! The Lua scripts decide exactly as the Rust core, request by request.
//!
//! Random quotas and random timestamp sequences (µs since the Unix epoch, so values are as
//! large as real Redis `TIME` readings) go through both the in-memory algorithm and the script
//! (with the script's explicit test clock), and every decision must be equal: allowed,
//! remaining, reset and retry_after, to the microsecond.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rate_limiter::{
    Algorithm, AlgorithmKind, Decision, FixedWindow, Gcra, LeakyBucket, Quota, RedisLimiter,
    SlidingCounter, SlidingLog, TokenBucket,
};

fn run<A: Algorithm>(alg: &A, times: &[u64]) -> Vec<Decision> {
    let mut state = A::State::default();
    times.iter().map(|&t| alg.check(&mut state, t)).collect()
}

fn rust_decisions(kind: AlgorithmKind, q: Quota, times: &[u64]) -> Vec<Decision> {
    match kind {
        AlgorithmKind::Gcra => run(&Gcra::new(q), times),
        AlgorithmKind::TokenBucket => run(&TokenBucket::new(q), times),
        AlgorithmKind::LeakyBucket => run(&LeakyBucket::new(q), times),
        AlgorithmKind::FixedWindow => run(&FixedWindow::new(q), times),
        AlgorithmKind::SlidingLog => run(&SlidingLog::new(q), times),
        AlgorithmKind::SlidingCounter => run(&SlidingCounter::new(q), times),
    }
}

fn scenario() -> impl Strategy<Value = (usize, Quota, Vec<u64>)> {
    let quota = (
        1u64..=10,
        prop_oneof![20u64..=5_000, 1_000_000u64..=3_600_000_000],
        1u64..=10,
    )
        .prop_map(|(limit, period, burst)| {
            Quota::new(limit, Duration::from_micros(period))
                .and_then(|q| q.with_burst(burst))
                .expect("generated quotas are valid")
        });
    (0usize..6, quota).prop_flat_map(|(kind, q)| {
        let step = q.interval_micros();
        let gap = prop_oneof![2 => Just(0u64), 4 => 0..=step * 2, 1 => 0..=q.period_micros() * 2];
        let start = 1_600_000_000_000_000u64..1_900_000_000_000_000;
        let times = (start, prop::collection::vec(gap, 1..60)).prop_map(|(start, gaps)| {
            gaps.iter()
                .scan(start, |t, g| {
                    *t += g;
                    Some(*t)
                })
                .collect::<Vec<u64>>()
        });
        (Just(kind), Just(q), times)
    })
}

static CASE: AtomicU64 = AtomicU64::new(0);

#[test]
fn lua_scripts_decide_exactly_like_the_rust_core() {
    harness::telemetry::init_test();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let redis = rt.block_on(harness::redis()).expect("redis available");
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let result = runner.run(&scenario(), |(kind, quota, times)| {
        let kind = AlgorithmKind::ALL[kind];
        let case = CASE.fetch_add(1, Ordering::Relaxed);
        let limiter = RedisLimiter::new(redis.connection(), kind, quota, redis.prefix());
        // Every other case sends one script call per decision (GCRA's uncoalesced path).
        let limiter = if case.is_multiple_of(2) {
            limiter
        } else {
            limiter.max_batch(std::num::NonZeroUsize::MIN)
        };
        let key = format!("case-{case}");
        let expected = rust_decisions(kind, quota, &times);
        rt.block_on(async {
            for (i, (&now, want)) in times.iter().zip(&expected).enumerate() {
                let got = limiter
                    .check_at(&key, now)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, *want, "{:?} request #{} at {}", kind, i, now);
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("Rust and Lua disagree: {e}");
    }
}

#[tokio::test]
async fn lua_division_is_exact_near_two_to_the_fifty_third() {
    // Timestamps near 2^52 µs and the largest allowed products: the double division in Lua
    // would be off by one here without idiv's correction.
    let redis = harness::redis().await.expect("redis available");
    let quota = Quota::new(7, Duration::from_micros((1u64 << 51) / 7)).expect("largest quota");
    for kind in AlgorithmKind::ALL {
        let limiter = RedisLimiter::new(redis.connection(), kind, quota, redis.prefix());
        let times: Vec<u64> = (0..12)
            .map(|i| (1u64 << 52) - 1_000_003 + i * 999_983)
            .collect();
        let expected = rust_decisions(kind, quota, &times);
        for (&now, want) in times.iter().zip(&expected) {
            let got = limiter.check_at("edge", now).await.expect("script runs");
            assert_eq!(got, *want, "{kind:?} at {now}");
        }
    }
}

/// Requests arriving together, as `(key index, µs since the previous group)` per group.
fn concurrent_groups() -> impl Strategy<Value = (Quota, Vec<(u64, Vec<usize>)>)> {
    let quota = (1u64..=10, 20u64..=5_000, 1u64..=10).prop_map(|(limit, period, burst)| {
        Quota::new(limit, Duration::from_micros(period))
            .and_then(|q| q.with_burst(burst))
            .expect("generated quotas are valid")
    });
    let group = (0u64..=3_000, prop::collection::vec(0usize..3, 1..40));
    (quota, prop::collection::vec(group, 1..20))
}

/// GCRA requests queued at the same moment are coalesced into one script call; the script
/// must decide them exactly as the Rust core decides the same requests one by one, including
/// a key that appears several times in one call.
#[test]
fn coalesced_gcra_calls_decide_exactly_like_one_by_one() {
    harness::telemetry::init_test();
    // One thread: every future of a group is queued before the coalescing tasks run, so each
    // group is one script call per lane, each key's requests in submission order (a key always
    // takes the same lane; spread over lanes, a key's decisions could come back reordered).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis = rt.block_on(harness::redis()).expect("redis available");
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let result = runner.run(&concurrent_groups(), |(quota, groups)| {
        let limiter = RedisLimiter::new(
            redis.connection(),
            AlgorithmKind::Gcra,
            quota,
            redis.prefix(),
        );
        let case = CASE.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<String> = (0..3).map(|k| format!("batch-{case}-{k}")).collect();
        let gcra = Gcra::new(quota);
        let mut states = [0u64; 3];
        let mut now = 1_700_000_000_000_000u64;
        rt.block_on(async {
            for (gap, group) in &groups {
                now += gap;
                let want: Vec<Decision> = group
                    .iter()
                    .map(|&k| gcra.check(&mut states[k], now))
                    .collect();
                let calls = group.iter().map(|&k| limiter.check_at(&keys[k], now));
                let got: Vec<Decision> = futures::future::join_all(calls)
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, want, "group at {} of keys {:?}", now, group);
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("a coalesced call disagrees with one-by-one decisions: {e}");
    }
}
