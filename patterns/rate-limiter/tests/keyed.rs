//! The in-process keyed limiter: per-key budgets, bounded memory, no cross-key serialisation.

use std::time::Duration;

use rate_limiter::{ConfigError, Gcra, KeyedLimiter, ManualClock, Quota, SlidingLog, TokenBucket};

fn quota(limit: u64) -> Quota {
    Quota::new(limit, Duration::from_secs(1)).expect("valid quota")
}

#[test]
fn each_key_gets_its_own_budget_and_clones_share_them() {
    let clock = ManualClock::starting_at(1);
    let limiter = KeyedLimiter::builder(TokenBucket::new(quota(2)))
        .clock(clock)
        .build()
        .expect("valid config");
    let clone = limiter.clone();
    assert!(limiter.check("a").is_allowed());
    assert!(clone.check("a").is_allowed());
    assert!(!limiter.check("a").is_allowed());
    assert!(clone.check("b").is_allowed());
    assert_eq!(limiter.len(), 2);
}

#[test]
fn idle_keys_are_evicted_so_memory_stays_bounded() {
    let clock = ManualClock::starting_at(1);
    let limiter = KeyedLimiter::builder(Gcra::new(quota(10)))
        .clock(clock.clone())
        .max_keys(100)
        .build()
        .expect("valid config");
    for i in 0..100 {
        assert!(limiter.check(&format!("k{i}")).is_allowed());
    }
    assert_eq!(limiter.len(), 100);
    clock.advance(Duration::from_secs(1));
    // The map is full, but every key is idle again: a new key sweeps them and is admitted.
    assert!(limiter.check("newcomer").is_allowed());
    assert_eq!(limiter.len(), 1);
}

#[test]
fn a_map_full_of_active_keys_denies_new_keys_instead_of_growing() {
    let clock = ManualClock::starting_at(1);
    let limiter = KeyedLimiter::builder(SlidingLog::new(quota(10)))
        .clock(clock)
        .max_keys(10)
        .build()
        .expect("valid config");
    for i in 0..10 {
        assert!(limiter.check(&format!("k{i}")).is_allowed());
    }
    let d = limiter.check("one-too-many");
    assert!(!d.is_allowed());
    assert!(d.retry_after().is_some());
    assert_eq!(limiter.len(), 10);
    assert_eq!(limiter.overflow_denials(), 1);
}

#[test]
fn threads_on_distinct_keys_each_get_their_full_quota() {
    let clock = ManualClock::starting_at(1);
    let limiter = KeyedLimiter::builder(Gcra::new(quota(1_000)))
        .clock(clock)
        .build()
        .expect("valid config");
    let admitted: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let limiter = limiter.clone();
                s.spawn(move || {
                    let key = format!("thread-{t}");
                    (0..5_000)
                        .filter(|_| limiter.check(&key).is_allowed())
                        .count()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    assert_eq!(admitted, vec![1_000; 4]);
}

#[test]
fn zero_max_keys_is_rejected() {
    let built: Result<KeyedLimiter<String, _>, _> = KeyedLimiter::builder(Gcra::new(quota(1)))
        .max_keys(0)
        .build();
    assert!(matches!(built, Err(ConfigError::ZeroKeys)));
}

#[tokio::test]
async fn the_background_sweeper_drops_idle_keys_and_stops_on_shutdown() {
    let clock = ManualClock::starting_at(1);
    let limiter = KeyedLimiter::builder(Gcra::new(quota(10)))
        .clock(clock.clone())
        .build()
        .expect("valid config");
    for i in 0..50 {
        let _ = limiter.check(&format!("k{i}"));
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(
        limiter
            .clone()
            .run_sweeper(Duration::from_millis(10), shutdown.clone()),
    );
    clock.advance(Duration::from_secs(1));
    harness::eventually(Duration::from_secs(2), || async {
        limiter.is_empty().then_some(())
    })
    .await
    .expect("idle keys are swept");
    shutdown.cancel();
    sweeper.await.expect("the sweeper exits cleanly");
}
