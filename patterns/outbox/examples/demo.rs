//! Run with: make demo NAME=outbox
//!
//! Writes orders through the outbox while a relay runs as a separate OS process, SIGKILLs that
//! process twice mid-stream and restarts it, then reads the topic back and prints what it proved:
//! events written, delivered, lost (0), duplicates, per-aggregate order violations (0), latency.
//!
//! The same binary is the relay: `demo relay <postgres-url> <brokers> <topic>` runs one until its
//! stdin closes (the parent's way of asking for a clean shutdown; SIGKILL is the unclean way).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use event_envelope::Envelope;
use hdrhistogram::Histogram;
use outbox::{OrderStatus, Relay, SequenceAudit, TopicRoute, advance_order, place_order};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Orders written; each emits OrderPlaced, OrderPaid, OrderShipped.
const ORDERS: u64 = 1_500;
/// Concurrent writers.
const WRITERS: u64 = 4;
/// Pause per order per writer: spreads the writes over ~8 s so the kills land mid-stream.
const PACE: Duration = Duration::from_millis(20);
const PARTITIONS: i32 = 3;

fn main() -> anyhow::Result<()> {
    harness::telemetry::init();
    let runtime = tokio::runtime::Runtime::new()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, url, brokers, topic] if mode == "relay" => {
            runtime.block_on(relay(url, brokers, topic))
        }
        _ => runtime.block_on(orchestrate()),
    }
}

/// The relay process: runs until stdin reaches EOF, then shuts down cleanly.
async fn relay(url: &str, brokers: &str, topic: &str) -> anyhow::Result<()> {
    let pool = PgPool::connect(url).await?;
    let mut kafka = ClientConfig::new();
    kafka.set("bootstrap.servers", brokers);
    let relay = Relay::builder(pool, kafka, TopicRoute::Fixed(topic.to_owned())).build()?;
    let shutdown = CancellationToken::new();
    let running = relay.spawn(shutdown.clone());
    let mut buf = [0u8; 64];
    while tokio::io::stdin().read(&mut buf).await.unwrap_or(0) > 0 {}
    running.shutdown().await?;
    Ok(())
}

fn spawn_relay(url: &str, brokers: &str, topic: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the demo binary")?;
    Command::new(exe)
        .args(["relay", url, brokers, topic])
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the relay process")
}

async fn orchestrate() -> anyhow::Result<()> {
    let pg = harness::postgres().await?;
    outbox::migrate(pg.pool()).await?;
    let kafka = harness::kafka().await?;
    let topic = kafka.create_topic("outbox-demo", PARTITIONS).await?;
    println!(
        "outbox demo: {ORDERS} orders x 3 events, {WRITERS} writers, relay in a child process"
    );

    let mut relay = spawn_relay(pg.url(), kafka.brokers(), &topic)?;
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write_orders(pg.pool().clone(), w, written.clone())))
        .collect();

    let total = ORDERS * 3;
    for (kill, at) in [(1, total / 3), (2, 2 * total / 3)] {
        while written.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relay.kill().await?; // SIGKILL: no flush, no commit, no goodbye
        println!(
            "  SIGKILLed the relay (kill {kill}) after {} events written",
            written.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay = spawn_relay(pg.url(), kafka.brokers(), &topic)?;
        println!("  restarted the relay");
    }
    for w in writers {
        w.await??;
    }
    let written = written.load(Ordering::Relaxed);
    wait_drained(pg.pool(), Duration::from_secs(30)).await?;
    drop(relay.stdin.take()); // EOF: clean shutdown
    let status = relay.wait().await?;
    println!("  relay exited cleanly: {status}");

    let (audit, latency) = read_back(&kafka, &topic, written).await?;
    let report = audit.report();
    println!("events written:            {written}");
    println!(
        "events delivered:          {} ({} records incl. duplicates)",
        report.unique, report.delivered
    );
    println!(
        "lost:                      {}",
        written.saturating_sub(report.unique)
    );
    println!("duplicates:                {}", report.duplicates);
    println!("order violations:          {}", report.violations);
    println!(
        "commit -> publish latency: p50 {} ms, p99 {} ms, max {} ms (record timestamp - commit; includes the two kill/restart gaps)",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max()
    );
    anyhow::ensure!(
        written == report.unique && report.violations == 0,
        "guarantee broken"
    );
    Ok(())
}

async fn write_orders(pool: PgPool, writer: u64, written: Arc<AtomicU64>) -> anyhow::Result<()> {
    for i in 0..ORDERS / WRITERS {
        let id = place_order(
            &pool,
            &format!("customer-{writer}-{i}"),
            1_000 + i64::try_from(i)?,
            None,
        )
        .await?;
        advance_order(&pool, id, OrderStatus::Paid).await?;
        advance_order(&pool, id, OrderStatus::Shipped).await?;
        written.fetch_add(3, Ordering::Relaxed);
        tokio::time::sleep(PACE).await;
    }
    Ok(())
}

async fn wait_drained(pool: &PgPool, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let lag = outbox::lag(pool).await?;
        if lag.backlog == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "outbox still holds {} rows",
            lag.backlog
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the whole topic; latency is Kafka's record timestamp minus the event's commit time.
async fn read_back(
    kafka: &harness::TestKafka,
    topic: &str,
    expected: u64,
) -> anyhow::Result<(SequenceAudit, Histogram<u64>)> {
    let consumer: StreamConsumer = kafka
        .consumer_config(&kafka.group_id("demo-audit"))
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut audit = SequenceAudit::default();
    let mut latency = Histogram::<u64>::new(3)?;
    loop {
        let idle = if audit.report().unique >= expected {
            1
        } else {
            15
        };
        let Ok(message) = tokio::time::timeout(Duration::from_secs(idle), consumer.recv()).await
        else {
            return Ok((audit, latency));
        };
        let message = message?;
        let envelope = Envelope::from_message(&message)?;
        if let Some(ms) = message.timestamp().to_millis() {
            let lat = ms - envelope.occurred_at.timestamp_millis();
            latency.saturating_record(u64::try_from(lat.max(0))?);
        }
        audit.observe(&envelope.aggregate_id, envelope.sequence);
    }
}
