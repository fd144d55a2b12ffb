//! Run with: make demo NAME=rate-limiter
//!
//! Two axum servers share one Redis GCRA limit (through a fault-injection proxy). A bounded load
//! generator hammers both with one API key and shows that the combined admitted count matches
//! the quota; then the proxy black-holes Redis and the local-fallback policy takes over, each
//! request still bounded by the Redis timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::{Router, routing::get};
use harness::FaultProxy;
use rate_limiter::{
    AlgorithmKind, DistributedLimiter, FailurePolicy, KeyExtractor, Quota, RateLimitLayer,
    RedisLimiter,
};
use redis::aio::ConnectionManager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 32;
const TIMEOUT: Duration = Duration::from_millis(50);
/// Each worker sends at most one request per tick: ~1 000 requests/s offered in total, five
/// times the quota, without starving Redis of CPU on a small machine.
const TICK: Duration = Duration::from_millis(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::telemetry::init();
    let redis = harness::redis().await.context("find Redis")?;
    let proxy = FaultProxy::start(redis.server_addr()).await?;
    let quota = Quota::per_second(200)?.with_burst(20)?;
    let shutdown = CancellationToken::new();
    let mut servers = Vec::new();
    let mut limiters = Vec::new();
    for _ in 0..2 {
        let client = redis::Client::open(redis.url_via(proxy.addr()))?;
        let conn = ConnectionManager::new(client).await?;
        let shared = RedisLimiter::new(conn, AlgorithmKind::Gcra, quota, redis.prefix());
        let limiter = DistributedLimiter::builder(shared)
            .timeout(TIMEOUT)
            .policy(FailurePolicy::local_share(&quota, 2)?)
            .build()?;
        limiters.push(limiter.clone());
        servers.push(serve(limiter, shutdown.clone()).await?);
    }
    println!(
        "quota: {} per {:?}, burst {}, two instances at {servers:?}",
        quota.limit(),
        quota.period(),
        quota.burst()
    );

    let healthy = load(&servers, Duration::from_secs(3)).await;
    healthy.report("Redis up", &quota);
    let cached: u64 = limiters.iter().map(|l| l.health().deny_cache_hits).sum();
    let outages: u64 = limiters.iter().map(|l| l.health().outages).sum();
    println!(
        "  {cached} of the 429s were answered from the local deny cache, without Redis; outages: {outages}"
    );

    proxy.blackhole();
    println!(
        "\nRedis black-holed through the proxy; policy = local fallback, quota/2 per instance"
    );
    let outage = load(&servers, Duration::from_secs(2)).await;
    outage.report("Redis down", &quota);
    for (i, l) in limiters.iter().enumerate() {
        let h = l.health();
        println!(
            "  instance {i}: outage transitions logged {}, policy decisions {}, redis errors {}",
            h.outages, h.policy_decisions, h.redis_errors
        );
    }
    println!("  p99 latency {:?} (Redis timeout {TIMEOUT:?})", outage.p99);

    proxy.heal();
    shutdown.cancel();
    Ok(())
}

async fn serve(
    limiter: DistributedLimiter,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let key = KeyExtractor::Header(http::HeaderName::from_static("x-api-key"));
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::new(limiter, key));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "demo server failed");
        }
    });
    Ok(addr)
}

/// What one load phase observed.
struct Outcome {
    ok: u64,
    limited: u64,
    other: u64,
    elapsed: Duration,
    p99: Duration,
}

impl Outcome {
    fn report(&self, phase: &str, quota: &Quota) {
        // GCRA's bound over a span W: burst + W / interval.
        let elapsed_us = u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX);
        let bound = quota.burst() + elapsed_us / quota.interval_micros();
        println!(
            "{phase}: {} requests in {:.2?}: admitted {} (quota allows ≤ {bound}), 429 {}, other {}",
            self.ok + self.limited + self.other,
            self.elapsed,
            self.ok,
            self.limited,
            self.other
        );
    }
}

/// `WORKERS` loops alternating between the servers until `for_how_long` has passed.
async fn load(servers: &[SocketAddr], for_how_long: Duration) -> Outcome {
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (servers, counts) = (servers.to_vec(), Arc::clone(&counts));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = w;
            let mut tick = tokio::time::interval(TICK);
            while started.elapsed() < for_how_long {
                tick.tick().await;
                let t = Instant::now();
                let status = http_get(servers[i % servers.len()]).await.unwrap_or(0);
                latencies.push(t.elapsed());
                let slot = match status {
                    200 => 0,
                    429 => 1,
                    _ => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            latencies
        });
    }
    let mut latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    Outcome {
        ok: counts[0].load(Ordering::Relaxed),
        limited: counts[1].load(Ordering::Relaxed),
        other: counts[2].load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        p99,
    }
}

/// A minimal HTTP/1.1 GET (one connection per request) returning the status code.
async fn http_get(addr: SocketAddr) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let request =
        "GET / HTTP/1.1\r\nhost: demo\r\nx-api-key: tenant-1\r\nconnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let head = String::from_utf8_lossy(&response[..response.len().min(16)]).into_owned();
    let code = head.split(' ').nth(1).context("status line")?;
    Ok(code.parse()?)
}
