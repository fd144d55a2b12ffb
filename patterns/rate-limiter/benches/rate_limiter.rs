//! Benchmarks, each candidate beside its baseline in the same run (`make bench NAME=rate-limiter`):
//!
//! 1. in-process GCRA decision vs the `governor` crate on the same quota;
//! 2. the keyed limiter, 2 threads on distinct keys vs 1 thread and vs one global mutex
//!    (scaling, not serialising);
//! 3. Redis GCRA decisions at 64 concurrent tasks vs a no-op `EVALSHA` on the same connection,
//!    with the bare GCRA `EVALSHA` between them to split client from server cost, and the
//!    limiter and the no-op again on a current-thread runtime (no wake-up crosses a core);
//! 4. an axum hello-world with the layer vs without it.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use rate_limiter::algorithm::gcra;
use rate_limiter::{
    AlgorithmKind, Clock, Gcra, GcraLimiter, KeyExtractor, KeyedLimiter, MonotonicClock, Quota,
    RateLimitLayer, RedisLimiter,
};
use tower::ServiceExt;

const TASKS: u64 = 64;

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10);
    group
}

fn gcra_vs_governor(c: &mut Criterion) {
    let ours = GcraLimiter::new(Quota::per_second(1_000_000).expect("valid quota"));
    let per_second = NonZeroU32::new(1_000_000).expect("non-zero");
    let theirs = governor::RateLimiter::direct(governor::Quota::per_second(per_second));
    let mut group = configure(c, "gcra_decision");
    group.bench_function("rate_limiter", |b| {
        b.iter(|| black_box(ours.check().is_allowed()))
    });
    group.bench_function("governor", |b| b.iter(|| black_box(theirs.check().is_ok())));
    group.finish();
}

/// `threads` threads, each on its own key, `iters` decisions each; time per decision.
fn keyed_run(limiter: &KeyedLimiter<String, Gcra>, threads: u64, iters: u64) -> Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let limiter = limiter.clone();
            s.spawn(move || {
                let key = format!("tenant-{t}");
                for _ in 0..iters {
                    black_box(limiter.check(key.as_str()).is_allowed());
                }
            });
        }
    });
    // Wall time per decision across all threads: halves if two threads truly run in parallel.
    started.elapsed() / u32::try_from(threads).unwrap_or(1)
}

/// The serialising baseline: the same GCRA step behind one process-wide mutex.
fn mutex_run(
    map: &Mutex<HashMap<String, u64>>,
    quota: &Quota,
    threads: u64,
    iters: u64,
) -> Duration {
    let clock = MonotonicClock::new();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let clock = clock.clone();
            s.spawn(move || {
                let key = format!("tenant-{t}");
                let lock = || map.lock().unwrap_or_else(PoisonError::into_inner);
                lock().entry(key.clone()).or_insert(0);
                for _ in 0..iters {
                    let now = clock.now_micros();
                    let mut guard = lock();
                    if let Some(tat) = guard.get_mut(key.as_str()) {
                        let (d, new_tat) = gcra::decide(quota, *tat, now);
                        if let Some(new_tat) = new_tat {
                            *tat = new_tat;
                        }
                        black_box(d.is_allowed());
                    }
                }
            });
        }
    });
    started.elapsed() / u32::try_from(threads).unwrap_or(1)
}

fn keyed_scaling(c: &mut Criterion) {
    let quota = Quota::per_second(1_000_000).expect("valid quota");
    let limiter = KeyedLimiter::builder(Gcra::new(quota))
        .build()
        .expect("valid config");
    let mut group = configure(c, "keyed_distinct_keys");
    group.bench_function("two_threads", |b| {
        b.iter_custom(|n| keyed_run(&limiter, 2, n))
    });
    group.bench_function("one_thread", |b| {
        b.iter_custom(|n| keyed_run(&limiter, 1, n))
    });
    let map = Mutex::new(HashMap::new());
    group.bench_function("two_threads_one_mutex", |b| {
        b.iter_custom(|n| mutex_run(&map, &quota, 2, n));
    });
    group.finish();
}

/// `iters` calls spread over 64 tasks; wall time per call. `task(t, calls)` is task `t`'s
/// whole loop of `calls` calls: whatever a task needs (a limiter or connection handle) is
/// cloned once per task, not per call, so handle refcounts bouncing between cores are not part
/// of what either side measures.
async fn fan_out<F, Fut>(iters: u64, task: F) -> Duration
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let per_task = iters.div_ceil(TASKS);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        tasks.spawn(task(usize::try_from(t).unwrap_or(0), per_task));
    }
    tasks.join_all().await;
    started.elapsed() * u32::try_from(iters).unwrap_or(u32::MAX)
        / u32::try_from(per_task * TASKS).unwrap_or(u32::MAX)
}

/// The Redis group on a multi-thread runtime (Tokio's default: one worker per core), with the
/// breakdown rows (one coalescing lane, coalescing off, the bare script).
fn redis_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    redis_group(c, &rt, "redis_64_tasks", true);
}

/// The limiter and the no-op baseline again, with every task of the client (the 64 callers,
/// the coalescing tasks, the connection's driver) on one current-thread runtime: no wake-up
/// crosses a core, and Redis keeps the other core to itself. Both sides run on the same
/// runtime, so the ratio stays like for like.
fn redis_throughput_one_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    redis_group(c, &rt, "redis_64_tasks_one_thread", false);
}

/// `gcra_script` (the limiter as shipped) and `noop_evalsha` (the baseline) on `rt`; with
/// `breakdown`, also the limiter with one coalescing lane, with coalescing off, and the bare
/// GCRA `EVALSHA`.
fn redis_group(c: &mut Criterion, rt: &tokio::runtime::Runtime, group_name: &str, breakdown: bool) {
    let redis = rt.block_on(harness::redis()).expect("redis available");
    let quota = Quota::per_second(1_000_000).expect("valid quota");
    let limiter = RedisLimiter::new(
        redis.connection(),
        AlgorithmKind::Gcra,
        quota,
        redis.prefix(),
    );
    let noop = redis::Script::new("return 1");
    let conn = redis.connection();
    let mut group = configure(c, group_name);
    // Keys built once, like the raw variant's commands: the benchmark measures the limiter,
    // not the formatting of its input.
    let keys: Vec<String> = (0..TASKS).map(|t| format!("bench-{t}")).collect();
    // The limiter as shipped (coalescing on, two lanes), then with one lane (every caller in one
    // wave), then with coalescing off: one script call per decision, like the baseline.
    let mut limiters = vec![("gcra_script", limiter.clone())];
    if breakdown {
        let one_lane = limiter.clone().lanes(std::num::NonZeroUsize::MIN);
        limiters.push(("gcra_script_one_lane", one_lane));
        let one_by_one = limiter.clone().max_batch(std::num::NonZeroUsize::MIN);
        limiters.push(("gcra_script_unbatched", one_by_one));
    }
    for (name, limiter) in &limiters {
        group.bench_function(*name, |b| {
            b.to_async(rt).iter_custom(|n| {
                fan_out(n, |t, calls| {
                    let (limiter, key) = (limiter.clone(), keys[t].clone());
                    async move {
                        for _ in 0..calls {
                            black_box(limiter.check(&key).await.expect("redis answers"));
                        }
                    }
                })
            });
        });
    }
    if breakdown {
        // The same script with no limiter around it: one pre-built `EVALSHA` per task, reused
        // for every call. Its distance from `gcra_script` is the client-side cost of
        // `RedisLimiter`; its distance from `noop_evalsha` is what the script costs the server.
        let raw = redis::Script::new(limiter.script_source());
        rt.block_on(raw.prepare_invoke().load_async(&mut conn.clone()))
            .expect("script loads");
        let raw_cmds: Vec<redis::Cmd> = (0..TASKS)
            .map(|t| {
                raw_gcra_cmd(
                    &raw,
                    &quota,
                    &format!("{}:{{raw-{t}}}:gcra", redis.prefix()),
                )
            })
            .collect();
        group.bench_function("raw_gcra_evalsha", |b| {
            b.to_async(rt).iter_custom(|n| {
                fan_out(n, |t, calls| {
                    let (mut conn, cmd) = (conn.clone(), raw_cmds[t].clone());
                    async move {
                        for _ in 0..calls {
                            let v: redis::Value =
                                cmd.query_async(&mut conn).await.expect("redis answers");
                            black_box(v);
                        }
                    }
                })
            });
        });
    }
    group.bench_function("noop_evalsha", |b| {
        b.to_async(rt).iter_custom(|n| {
            fan_out(n, |_, calls| {
                let (mut conn, noop) = (conn.clone(), noop.clone());
                async move {
                    for _ in 0..calls {
                        let v: i64 = noop.invoke_async(&mut conn).await.expect("redis answers");
                        black_box(v);
                    }
                }
            })
        });
    });
    group.finish();
}

/// `EVALSHA` of the GCRA script for `key` on the server clock, arguments as `RedisLimiter` sends them.
fn raw_gcra_cmd(script: &redis::Script, quota: &Quota, key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(1).arg(key).arg("");
    for a in RedisLimiter::script_args(AlgorithmKind::Gcra, quota) {
        cmd.arg(a);
    }
    cmd
}

fn layer_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let quota = Quota::per_second(1_000_000).expect("valid quota");
    let limiter = KeyedLimiter::builder(Gcra::new(quota))
        .build()
        .expect("valid config");
    let bare: Router = Router::new().route("/", get(|| async { "hello" }));
    let limited = bare
        .clone()
        .layer(RateLimitLayer::new(limiter, KeyExtractor::Global));
    let request = || {
        Request::builder()
            .uri("/")
            .body(Body::empty())
            .expect("valid request")
    };
    let mut group = configure(c, "axum_hello");
    group.bench_function("with_layer", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(limited.clone().oneshot(request()).await) });
    });
    group.bench_function("no_layer", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.clone().oneshot(request()).await) });
    });
    group.finish();
}

fn ratio(label: &str, group: &str, candidate: &str, baseline: &str, higher_is_better: bool) {
    let c = harness::bench::criterion_mean_ns(group, candidate);
    let b = harness::bench::criterion_mean_ns(group, baseline);
    if let (Some(c), Some(b)) = (c, b) {
        if higher_is_better {
            // Throughput (decisions/s) from time per decision.
            harness::bench::print_ratio(label, 1e9 / c, 1e9 / b, true);
        } else {
            harness::bench::print_ratio(label, c, b, false);
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    gcra_vs_governor(&mut c);
    keyed_scaling(&mut c);
    redis_throughput(&mut c);
    redis_throughput_one_thread(&mut c);
    layer_overhead(&mut c);
    c.final_summary();
    ratio(
        "GCRA decision ns, rate-limiter vs governor",
        "gcra_decision",
        "rate_limiter",
        "governor",
        false,
    );
    ratio(
        "keyed decisions/s, 2 threads: sharded vs one global mutex",
        "keyed_distinct_keys",
        "two_threads",
        "two_threads_one_mutex",
        true,
    );
    ratio(
        "keyed decisions/s, 2 threads vs 1 thread",
        "keyed_distinct_keys",
        "two_threads",
        "one_thread",
        true,
    );
    ratio(
        "Redis decisions/s, GCRA script vs no-op EVALSHA (64 tasks)",
        "redis_64_tasks",
        "gcra_script",
        "noop_evalsha",
        true,
    );
    ratio(
        "Redis decisions/s, GCRA script vs no-op EVALSHA (64 tasks, current-thread runtime)",
        "redis_64_tasks_one_thread",
        "gcra_script",
        "noop_evalsha",
        true,
    );
    ratio(
        "Redis decisions/s, GCRA script with one coalescing lane vs no-op EVALSHA (64 tasks)",
        "redis_64_tasks",
        "gcra_script_one_lane",
        "noop_evalsha",
        true,
    );
    ratio(
        "Redis decisions/s, GCRA script with coalescing off vs no-op EVALSHA (64 tasks)",
        "redis_64_tasks",
        "gcra_script_unbatched",
        "noop_evalsha",
        true,
    );
    ratio(
        "Redis decisions/s, raw GCRA EVALSHA (no limiter) vs no-op EVALSHA (64 tasks)",
        "redis_64_tasks",
        "raw_gcra_evalsha",
        "noop_evalsha",
        true,
    );
    ratio(
        "Redis decisions/s, GCRA script via RedisLimiter (coalescing off) vs raw GCRA EVALSHA (64 tasks)",
        "redis_64_tasks",
        "gcra_script_unbatched",
        "raw_gcra_evalsha",
        true,
    );
    ratio(
        "axum hello ns, with layer vs without",
        "axum_hello",
        "with_layer",
        "no_layer",
        false,
    );
}
