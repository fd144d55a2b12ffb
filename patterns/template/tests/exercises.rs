//! The workshop's tests. `make exercise NAME=template STEP=n` runs `stepN::` against the
//! learner's copy; CI runs all of them against the reference implementation.

mod step1 {
    use std::time::Duration;
    use template::{Backoff, BackoffError};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn invalid_configuration_is_rejected() {
        assert_eq!(
            Backoff::new(Duration::ZERO, MS),
            Err(BackoffError::ZeroBase)
        );
        assert!(matches!(
            Backoff::new(10 * MS, MS),
            Err(BackoffError::CapBelowBase { .. })
        ));
    }

    #[test]
    fn the_ceiling_doubles_then_stops_at_the_cap() {
        let b = Backoff::new(100 * MS, 1000 * MS).expect("valid");
        let ceilings: Vec<_> = (0..6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
    }

    #[test]
    fn huge_attempt_numbers_saturate_instead_of_overflowing() {
        let b = Backoff::new(MS, 60_000 * MS).expect("valid");
        assert_eq!(b.ceiling(u32::MAX), 60_000 * MS);
    }
}

mod step2 {
    use rand::SeedableRng;
    use std::time::Duration;
    use template::Backoff;

    #[test]
    fn delays_stay_below_the_ceiling_and_spread_out() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10)).expect("valid");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(4, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= b.ceiling(4)));
        // Full jitter: both halves of [0, ceiling] are used, so clients do not retry in step.
        let low = delays.iter().filter(|d| **d < b.ceiling(4) / 2).count();
        assert!((300..700).contains(&low), "{low} of 1000 in the lower half");
    }
}
