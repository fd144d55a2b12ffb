//! Property tests shared by all six algorithms: quota bounds, exact `retry_after`, no panics.

use std::fmt::Debug;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// What "never more than the quota" means for an algorithm family.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Any span of W µs: at most burst + ⌊W / interval⌋.
    Bucket,
    /// Any span of one period: at most limit.
    Exact,
    /// Any aligned window: at most limit; any span of one period: at most 2 × limit.
    Windowed,
}

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (1u64..=12, 20u64..=3_000, 1u64..=12).prop_map(|(limit, period, burst)| {
        Quota::new(limit, Duration::from_micros(period))
            .and_then(|q| q.with_burst(burst))
            .expect("generated quotas are valid")
    })
}

/// A quota and a non-decreasing sequence of request times.
fn scenario() -> impl Strategy<Value = (Quota, Vec<u64>)> {
    quota_strategy()
        .prop_flat_map(|q| {
            let max_gap = q.interval_micros() * 3;
            let gaps = prop::collection::vec(
                prop_oneof![3 => Just(0u64), 5 => 0..=max_gap, 1 => 0..=q.period_micros() * 3],
                1..160,
            );
            (Just(q), (0u64..1_000_000_000, gaps))
        })
        .prop_map(|(q, (start, gaps))| {
            let times = gaps
                .iter()
                .scan(start, |t, g| {
                    *t += g;
                    Some(*t)
                })
                .collect();
            (q, times)
        })
}

/// Runs `times` through `alg`, checking every denial's `retry_after` on a copy of the state.
fn run<A>(alg: &A, times: &[u64]) -> Vec<u64>
where
    A: Algorithm,
    A::State: Clone + Debug,
{
    let mut state = A::State::default();
    let mut admitted = Vec::new();
    for &now in times {
        let before = state.clone();
        let decision = alg.check(&mut state, now);
        if decision.is_allowed() {
            admitted.push(now);
            continue;
        }
        let retry = decision.retry_after_micros();
        assert!(retry >= 1, "a denial must never say retry now");
        let mut at_retry = before.clone();
        assert!(
            alg.check(&mut at_retry, now + retry).is_allowed(),
            "retry at now + retry_after must be admitted: {before:?} now={now} {decision:?}"
        );
        let mut too_early = before;
        assert!(
            !alg.check(&mut too_early, now + retry - 1).is_allowed(),
            "retry_after must be the earliest admission, not later: now={now} {decision:?}"
        );
    }
    admitted
}

fn assert_bound(q: &Quota, admitted: &[u64], bound: Bound) {
    let p = q.period_micros();
    for (i, &first) in admitted.iter().enumerate() {
        for (j, &last) in admitted.iter().enumerate().skip(i) {
            let n = (j - i + 1) as u64;
            let span = last - first;
            match bound {
                Bound::Bucket => assert!(n <= q.burst() + span / q.interval_micros()),
                Bound::Exact if span < p => assert!(n <= q.limit(), "{n} in a span of {span}"),
                Bound::Windowed if first / p == last / p => assert!(n <= q.limit()),
                Bound::Windowed if span < p => assert!(n <= 2 * q.limit()),
                _ => {}
            }
        }
    }
}

fn check<A>(alg: &A, times: &[u64], bound: Bound)
where
    A: Algorithm,
    A::State: Clone + Debug,
{
    let admitted = run(alg, times);
    assert_bound(alg.quota(), &admitted, bound);
}

proptest! {
    #[test]
    fn gcra_never_exceeds_burst_plus_rate((q, t) in scenario()) {
        check(&Gcra::new(q), &t, Bound::Bucket);
    }

    #[test]
    fn token_bucket_never_exceeds_burst_plus_rate((q, t) in scenario()) {
        check(&TokenBucket::new(q), &t, Bound::Bucket);
    }

    #[test]
    fn leaky_bucket_never_exceeds_burst_plus_rate((q, t) in scenario()) {
        check(&LeakyBucket::new(q), &t, Bound::Bucket);
    }

    #[test]
    fn sliding_log_never_exceeds_limit_in_any_period((q, t) in scenario()) {
        check(&SlidingLog::new(q), &t, Bound::Exact);
    }

    #[test]
    fn fixed_window_never_exceeds_limit_per_window((q, t) in scenario()) {
        check(&FixedWindow::new(q), &t, Bound::Windowed);
    }

    #[test]
    fn sliding_counter_never_exceeds_limit_per_window((q, t) in scenario()) {
        check(&SlidingCounter::new(q), &t, Bound::Windowed);
    }

    #[test]
    fn leaky_bucket_and_gcra_admit_the_same_requests((q, t) in scenario()) {
        prop_assert_eq!(run(&Gcra::new(q), &t), run(&LeakyBucket::new(q), &t));
    }

    #[test]
    fn no_time_sequence_panics(q in quota_strategy(), times in prop::collection::vec(any::<u64>(), 1..50)) {
        fn go<A: Algorithm>(a: &A, times: &[u64]) {
            let mut s = A::State::default();
            for &t in times {
                let _ = a.check(&mut s, t);
                let _ = a.is_idle(&s, t);
            }
        }
        go(&Gcra::new(q), &times);
        go(&TokenBucket::new(q), &times);
        go(&LeakyBucket::new(q), &times);
        go(&FixedWindow::new(q), &times);
        go(&SlidingLog::new(q), &times);
        go(&SlidingCounter::new(q), &times);
    }
}

#[test]
fn a_fresh_gcra_admits_exactly_its_burst_at_once() {
    let q = Quota::per_second(10)
        .and_then(|q| q.with_burst(3))
        .expect("valid");
    let g = Gcra::new(q);
    let mut tat = 0;
    let admitted = (0..5)
        .filter(|_| g.check(&mut tat, 1_000).is_allowed())
        .count();
    assert_eq!(admitted, 3);
    let denied = g.check(&mut tat, 1_000);
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(100)));
}

#[test]
fn idle_state_is_evictable_and_fresh_state_is_idle() {
    let q = Quota::per_second(2).expect("valid");
    let tb = TokenBucket::new(q);
    let mut s = TokenBucketState::default();
    assert!(tb.is_idle(&s, 0));
    let _ = tb.check(&mut s, 10);
    assert!(!tb.is_idle(&s, 10));
    assert!(tb.is_idle(&s, 10 + 500_000));
}
