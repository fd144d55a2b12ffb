//! Workshop steps: `make exercise NAME=rate-limiter STEP=n` runs `stepN::` against the
//! learner's modules (`--features exercise`); CI runs them against the reference.

mod step1 {
    //! Fixed window (`exercises/src/fixed_window.rs`).
    use std::time::Duration;

    use rate_limiter::algorithm::FixedWindowState;
    use rate_limiter::{Algorithm, FixedWindow, Quota};

    fn limiter() -> FixedWindow {
        FixedWindow::new(Quota::new(3, Duration::from_secs(1)).expect("valid quota"))
    }

    #[test]
    fn admits_the_limit_within_one_window_then_denies() {
        let (fw, mut s) = (limiter(), FixedWindowState::default());
        let admitted = (0..5).filter(|i| fw.check(&mut s, 10_000 + i * 1_000).is_allowed());
        assert_eq!(admitted.count(), 3);
    }

    #[test]
    fn remaining_counts_down_and_reset_points_at_the_window_end() {
        let (fw, mut s) = (limiter(), FixedWindowState::default());
        let d = fw.check(&mut s, 1_250_000);
        assert_eq!(d.remaining(), 2);
        assert_eq!(d.reset_after(), Duration::from_millis(750));
    }

    #[test]
    fn a_denied_request_may_retry_exactly_when_the_window_ends() {
        let (fw, mut s) = (limiter(), FixedWindowState::default());
        for _ in 0..3 {
            assert!(fw.check(&mut s, 1_400_000).is_allowed());
        }
        let d = fw.check(&mut s, 1_400_000);
        assert_eq!(d.retry_after(), Some(Duration::from_millis(600)));
        assert!(!fw.check(&mut s, 1_999_999).is_allowed());
        assert!(fw.check(&mut s, 2_000_000).is_allowed());
    }

    #[test]
    fn a_window_that_has_ended_is_idle() {
        let (fw, mut s) = (limiter(), FixedWindowState::default());
        let _ = fw.check(&mut s, 1_400_000);
        assert!(!fw.is_idle(&s, 1_999_999));
        assert!(fw.is_idle(&s, 2_000_000));
    }
}

mod step2 {
    //! Token bucket (`exercises/src/token_bucket.rs`).
    use std::time::Duration;

    use rate_limiter::algorithm::TokenBucketState;
    use rate_limiter::{Algorithm, Quota, TokenBucket};

    /// 10 per second (one token per 100 ms), bucket of 3.
    fn bucket() -> TokenBucket {
        let q = Quota::per_second(10)
            .and_then(|q| q.with_burst(3))
            .expect("valid quota");
        TokenBucket::new(q)
    }

    #[test]
    fn a_full_bucket_admits_its_burst_at_once() {
        let (tb, mut s) = (bucket(), TokenBucketState::default());
        let admitted = (0..10)
            .filter(|_| tb.check(&mut s, 5_000_000).is_allowed())
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn one_token_returns_per_interval_and_retry_after_says_when() {
        let (tb, mut s) = (bucket(), TokenBucketState::default());
        for _ in 0..3 {
            let _ = tb.check(&mut s, 5_000_000);
        }
        let d = tb.check(&mut s, 5_040_000);
        assert_eq!(d.retry_after(), Some(Duration::from_millis(60)));
        assert!(tb.check(&mut s, 5_100_000).is_allowed());
        assert!(!tb.check(&mut s, 5_100_000).is_allowed());
    }

    #[test]
    fn partial_intervals_are_not_lost_between_checks() {
        let (tb, mut s) = (bucket(), TokenBucketState::default());
        for _ in 0..3 {
            let _ = tb.check(&mut s, 5_000_000);
        }
        // Denied at +50 ms; the token that started refilling at +0 still arrives at +100 ms.
        assert!(!tb.check(&mut s, 5_050_000).is_allowed());
        assert!(tb.check(&mut s, 5_100_000).is_allowed());
    }

    #[test]
    fn the_bucket_is_idle_once_every_token_is_back() {
        let (tb, mut s) = (bucket(), TokenBucketState::default());
        let _ = tb.check(&mut s, 5_000_000);
        let _ = tb.check(&mut s, 5_000_000);
        assert!(!tb.is_idle(&s, 5_199_999));
        assert!(tb.is_idle(&s, 5_200_000));
    }
}

mod step3 {
    //! Sliding-window counter in Lua (`exercises/src/sliding_counter.lua`), against real Redis.
    use std::time::Duration;

    use rate_limiter::algorithm::SlidingCounterState;
    use rate_limiter::{Algorithm, AlgorithmKind, Quota, RedisLimiter, SlidingCounter};

    const T0: u64 = 1_700_000_000_000_000;

    fn quota() -> Quota {
        Quota::new(10, Duration::from_secs(1)).expect("valid quota")
    }

    #[tokio::test]
    async fn the_previous_window_is_weighted_by_its_remaining_overlap() {
        let redis = harness::redis().await.expect("redis available");
        let rl = RedisLimiter::new(
            redis.connection(),
            AlgorithmKind::SlidingCounter,
            quota(),
            redis.prefix(),
        );
        for i in 0..10 {
            let d = rl.check_at("k", T0 + i).await.expect("script runs");
            assert!(d.is_allowed(), "request {i} of the first window");
        }
        // 25 % into the next window, 75 % of the previous 10 still count: 7.5 + 1 ≤ 10 admits
        // two more, not a third.
        let next = T0 + 1_000_000 + 250_000;
        assert!(rl.check_at("k", next).await.expect("runs").is_allowed());
        assert!(rl.check_at("k", next).await.expect("runs").is_allowed());
        let denied = rl.check_at("k", next).await.expect("runs");
        assert!(!denied.is_allowed());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(50)));
    }

    #[tokio::test]
    async fn the_script_decides_exactly_like_the_rust_counter() {
        let redis = harness::redis().await.expect("redis available");
        let rl = RedisLimiter::new(
            redis.connection(),
            AlgorithmKind::SlidingCounter,
            quota(),
            redis.prefix(),
        );
        let alg = SlidingCounter::new(quota());
        let mut state = SlidingCounterState::default();
        let mut now = T0;
        for i in 0..200u64 {
            now += (i * 7_919) % 160_000;
            let want = alg.check(&mut state, now);
            let got = rl.check_at("parity", now).await.expect("script runs");
            assert_eq!(got, want, "request {i} at {now}");
        }
    }

    #[tokio::test]
    async fn the_script_uses_the_server_clock_and_sets_a_ttl() {
        let redis = harness::redis().await.expect("redis available");
        let rl = RedisLimiter::new(
            redis.connection(),
            AlgorithmKind::SlidingCounter,
            quota(),
            redis.prefix(),
        );
        assert!(rl.check("live").await.expect("script runs").is_allowed());
        let key = format!("{}:{{live}}:sc", redis.prefix());
        let mut conn = redis.connection();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!((1..=2_000).contains(&ttl), "TTL {ttl} ms");
    }
}
