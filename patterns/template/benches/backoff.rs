//! Cost of one jittered delay against the raw arithmetic it wraps (`make bench NAME=template`).

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use rand::SeedableRng;
use template::Backoff;

fn bench(c: &mut Criterion) {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
        .expect("valid configuration");
    let mut group = c.benchmark_group("backoff");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    group.bench_function("delay", |b| {
        b.iter(|| backoff.delay(black_box(7), &mut rng))
    });
    // Baseline: the unchecked formula with the same random draw, no validation or saturation.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    group.bench_function("raw_formula", |b| {
        b.iter(|| {
            let ceiling = (100_000_000u64 << black_box(7u32)).min(30_000_000_000);
            Duration::from_nanos(rand::Rng::random_range(&mut rng, 0..=ceiling))
        })
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    if let (Some(candidate), Some(baseline)) = (
        harness::bench::criterion_mean_ns("backoff", "delay"),
        harness::bench::criterion_mean_ns("backoff", "raw_formula"),
    ) {
        harness::bench::print_ratio(
            "backoff delay ns vs raw formula",
            candidate,
            baseline,
            false,
        );
    }
}
