//! Relay throughput vs a raw producer, and commit-to-ack latency with NOTIFY vs polling.
//!
//! Run with: make bench NAME=outbox
//!
//! - `outbox_throughput/relay`: BATCH rows committed in one transaction (bulk `INSERT … SELECT`,
//!   bypassing the writer so only the relay is measured) until all are acknowledged by Kafka and
//!   deleted, with a relay already running (woken by NOTIFY).
//! - `outbox_throughput/raw_producer_before` and `raw_producer`: the same BATCH records (same
//!   keys, headers, payloads, producer settings) sent from memory by a bare rdkafka
//!   `FutureProducer`, awaiting every ack; measured before the relay configurations and after
//!   them (the broker then holds more records), and the ratios use the mean time of both.
//! - Paired bursts: inside each relay configuration, every relay burst is preceded by the same
//!   burst from the raw producer, timed apart from criterion's samples; the paired ratio compares
//!   the two over the same seconds and the same broker state.
//! - `outbox_throughput/raw_producer_stop_and_wait_500`: the same, but awaiting the acks of every
//!   500 records before sending the next 500, as a relay claiming 500 rows does: its round-trip floor.
//! - Latency: one event committed every 10 ms for a few seconds; the relay records insert-to-ack
//!   per event. Once with LISTEN/NOTIFY, once polling every 500 ms.
//! - `outbox_claim_after_deletes`: one 5,000-row claim (rolled back after each iteration) over a
//!   table where 1M rows were published (deleted) since the last vacuum, as between two
//!   autovacuum visits of a busy outbox: `from_floor` with the relay's scan floor,
//!   `from_start` reading from the lowest id (what every claim did before the floor).

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use event_envelope::Envelope;
use harness::{TestDatabase, TestKafka};
use outbox::{NewEvent, Relay, RelayHandle, ScanFloor, TopicRoute, WakeMode, enqueue};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Events per measured iteration.
const BATCH: u64 = 10_000;
/// Aggregates the events are spread over.
const AGGREGATES: u64 = 500;
const PARTITIONS: i32 = 6;
/// The raw producer awaiting each 500-record chunk's acks before sending the next.
const RAW_STOP_AND_WAIT: &str = "raw_producer_stop_and_wait_500";
/// The raw producer measured before the relay configurations, and after them.
const RAW_BEFORE: &str = "raw_producer_before";
const RAW_AFTER: &str = "raw_producer";
/// Relay configurations measured: (claim loops per relay, rows per claim). The first is the
/// default configuration.
const CONFIGS: [(usize, usize); 4] = [(1, 5000), (1, 10_000), (1, 2000), (1, 500)];

fn relay_id((workers, batch): (usize, usize)) -> String {
    format!("relay_{workers}w_{batch}b")
}

struct World {
    pg: TestDatabase,
    /// The writers' own connection, as an application's pool would be: the relay's pool (the
    /// database's) serves the relay only, and a profile tells the two sides apart by backend.
    writer: sqlx::PgPool,
    kafka: TestKafka,
    topic: String,
}

async fn world() -> anyhow::Result<World> {
    let pg = harness::postgres().await?;
    outbox::migrate(pg.pool()).await?;
    let kafka = harness::kafka().await?;
    let topic = kafka.create_topic("outbox-bench", PARTITIONS).await?;
    let writer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(pg.url())
        .await?;
    Ok(World {
        pg,
        writer,
        kafka,
        topic,
    })
}

fn producer_config(kafka: &TestKafka) -> ClientConfig {
    let mut config = kafka.producer_config();
    // Same as the relay's defaults, so both sides batch and send alike.
    config
        .set("linger.ms", "1")
        .set("socket.nagle.disable", "true");
    config
}

/// Commits BATCH rows in one transaction; `round` keeps sequences unique across iterations.
async fn fill(w: &World, round: i64) -> anyhow::Result<()> {
    insert_burst(&w.writer, BATCH, round).await
}

/// Commits `rows` events over AGGREGATES aggregates in one transaction, bypassing the writer.
/// Burst number `round` of equal bursts: each aggregate's sequences continue where the previous
/// burst's ended.
async fn insert_burst(pool: &sqlx::PgPool, rows: u64, round: i64) -> anyhow::Result<()> {
    let per_aggregate = i64::try_from(rows / AGGREGATES)?;
    sqlx::query(
        "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type, payload)
         SELECT gen_random_uuid(), 'order', 'agg-' || (g % $2), $3 * $4 + g / $2 + 1, 'OrderPlaced',
                jsonb_build_object('n', g, 'note', repeat('x', 200))
         FROM generate_series(0, $1 - 1) AS g
         ORDER BY g",
    )
    .bind(i64::try_from(rows)?)
    .bind(i64::try_from(AGGREGATES)?)
    .bind(round)
    .bind(per_aggregate)
    .execute(pool)
    .await?;
    Ok(())
}

async fn wait_published(relay: &RelayHandle, target: u64) {
    // Woken by the claim that gets there, as the raw producer's loop is by its last ack:
    // polling every millisecond added 1-2 ms (the timer's resolution) to every relay sample.
    relay.published_reaches(target).await;
}

fn in_memory_records() -> Vec<RawRecord> {
    (0..BATCH)
        .filter_map(|g| {
            let payload = serde_json::json!({ "n": g, "note": "x".repeat(200) });
            let e = Envelope::new(
                "order",
                format!("agg-{}", g % AGGREGATES),
                1,
                "OrderPlaced",
                payload,
            );
            e.encode().ok().map(|r| (r.key, r.payload, r.headers))
        })
        .collect()
}

fn throughput(c: &mut Criterion, rt: &Runtime, w: &World) -> anyhow::Result<()> {
    let raw: FutureProducer = producer_config(&w.kafka).create()?;
    let records = in_memory_records();
    let round = AtomicI64::new(0);
    let mut group = c.benchmark_group("outbox_throughput");
    group
        .throughput(Throughput::Elements(BATCH))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    // One untimed burst first, as for each relay configuration below: the producer's connection
    // and first metadata fetch are start-up. With them in criterion's warm-up it took 10 samples
    // of one burst each instead of a few hundred bursts.
    rt.block_on(send_and_ack(&raw, &w.topic, &records, records.len()));
    bench_raw(&mut group, RAW_BEFORE, rt, &raw, &records, &w.topic);
    for config in CONFIGS {
        let (workers, batch) = config;
        // Each configuration starts from a vacuumed table, as autovacuum leaves a production
        // outbox between bursts, not from the previous configuration's dead rows.
        rt.block_on(sqlx::query("VACUUM outbox").execute(w.pg.pool()))?;
        let relay = Relay::builder(
            w.pg.pool().clone(),
            producer_config(&w.kafka),
            TopicRoute::Fixed(w.topic.clone()),
        )
        .workers(NonZeroUsize::new(workers).ok_or_else(|| anyhow::anyhow!("zero workers"))?)
        .batch_size(NonZeroUsize::new(batch).ok_or_else(|| anyhow::anyhow!("zero batch"))?)
        .build()?;
        let relay = rt.block_on(async { relay.spawn(CancellationToken::new()) });
        // One untimed burst first: the producer's connection and first metadata fetch are
        // start-up, not throughput, and criterion sizes its sampling from the warm-up (with
        // the start-up in it, it took 10 samples of one burst each instead of about 150).
        rt.block_on(async {
            let target = relay.published() + BATCH;
            fill(w, round.fetch_add(1, Ordering::Relaxed)).await?;
            wait_published(&relay, target).await;
            anyhow::Ok(())
        })?;
        let paired = Mutex::new(Paired::default());
        group.bench_function(relay_id(config), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (relay, round, paired) = (&relay, &round, &paired);
                let (raw, records) = (&raw, &records);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // The same burst from memory first, untimed for criterion: its pair.
                        let raw_start = Instant::now();
                        send_and_ack(raw, &w.topic, records, records.len()).await;
                        let raw_time = raw_start.elapsed();
                        let target = relay.published() + BATCH;
                        fill(w, round.fetch_add(1, Ordering::Relaxed))
                            .await
                            .expect("fill the outbox");
                        // The clock starts at commit: the relay cannot see the rows before it.
                        let start = Instant::now();
                        wait_published(relay, target).await;
                        let relay_time = start.elapsed();
                        total += relay_time;
                        paired
                            .lock()
                            .expect("no benchmark thread panicked")
                            .add(relay_time, raw_time);
                    }
                    total
                }
            });
        });
        let paired = paired.into_inner().expect("no benchmark thread panicked");
        paired.report(config);
        let m = relay.metrics();
        let per_event = |d: Duration| d.as_secs_f64() * 1e6 / m.published.max(1) as f64;
        println!(
            "{}: per event claim {:.2} µs, publish {:.2} µs, delete+commit {:.2} µs ({} events)",
            relay_id(config),
            per_event(m.phase_times.claim),
            per_event(m.phase_times.publish),
            per_event(m.phase_times.complete),
            m.published,
        );
        rt.block_on(relay.shutdown())?;
    }
    // The baseline again, after the relay runs: the broker has stored more records since the
    // first measurement, and the ratio uses the mean of both.
    bench_raw(&mut group, RAW_AFTER, rt, &raw, &records, &w.topic);
    // Stop-and-wait per 500 records, like a relay claiming 500 rows at a time: the floor such a
    // relay, deleting only acknowledged rows (and so awaiting a batch's acks before claiming the
    // same aggregates again), pays for broker round trips, with zero database work.
    group.bench_function(RAW_STOP_AND_WAIT, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (raw, records, topic) = (&raw, &records, &w.topic);
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    send_and_ack(raw, topic, records, 500).await;
                }
                start.elapsed()
            }
        });
    });
    group.finish();
    Ok(())
}

/// A relay configuration's bursts, each timed beside a raw-producer burst sent just before it.
///
/// The broker's speed drifts as it stores more records (tansu keeps them all in memory), and the
/// machine's with whatever else runs on it, so two measurements minutes apart compare two
/// machines as much as two producers. A pair runs within a few hundred milliseconds, on the same
/// broker state.
#[derive(Default)]
struct Paired {
    relay: Duration,
    raw: Duration,
    bursts: u32,
}

impl Paired {
    fn add(&mut self, relay: Duration, raw: Duration) {
        self.relay += relay;
        self.raw += raw;
        self.bursts += 1;
    }

    fn report(&self, config: (usize, usize)) {
        if self.bursts == 0 {
            return;
        }
        let per_sec = |total: Duration| BATCH as f64 * f64::from(self.bursts) / total.as_secs_f64();
        let (workers, batch) = config;
        println!(
            "relay, {workers} worker(s), batch {batch}, paired: {:>9.0} events/s against the raw producer's {:>9.0} ({} bursts each)",
            per_sec(self.relay),
            per_sec(self.raw),
            self.bursts,
        );
        harness::bench::print_ratio(
            &format!(
                "outbox relay ({workers} workers, batch {batch}) vs raw producer, paired bursts, events/s"
            ),
            per_sec(self.relay),
            per_sec(self.raw),
            true,
        );
    }
}

/// One record as the raw producer sends it: key, payload, headers.
type RawRecord = (String, Vec<u8>, rdkafka::message::OwnedHeaders);

/// The fully pipelined raw producer: every record enqueued before any ack is awaited (the
/// ideal producer), measured as `id`.
fn bench_raw(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    rt: &Runtime,
    raw: &FutureProducer,
    records: &[RawRecord],
    topic: &str,
) {
    group.bench_function(id, |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                send_and_ack(raw, topic, records, records.len()).await;
            }
            start.elapsed()
        });
    });
}

/// Sends `records` in chunks of `chunk`, awaiting every ack of a chunk before the next.
async fn send_and_ack(raw: &FutureProducer, topic: &str, records: &[RawRecord], chunk: usize) {
    for part in records.chunks(chunk) {
        let mut acks = Vec::with_capacity(part.len());
        for (key, payload, headers) in part {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            acks.push(
                raw.send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for ack in acks {
            black_box(
                ack.await
                    .expect("delivery")
                    .map_err(|(e, _)| e)
                    .expect("ack"),
            );
        }
    }
}

/// Commits `count` events, one every 10 ms, over 50 aggregates.
async fn commit_events(w: &World, prefix: &str, count: usize) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..count {
        tick.tick().await;
        let mut tx = w.writer.begin().await?;
        let aggregate = format!("{prefix}-{}", i % 50);
        let event = NewEvent::new("order", aggregate, "E", serde_json::json!({ "i": i }));
        enqueue(&mut tx, &event).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Commits one event every 10 ms for `count` events and returns the relay's p50/p99.
async fn latency(w: &World, wake: WakeMode, count: usize) -> anyhow::Result<(Duration, Duration)> {
    // From a vacuumed table, like each throughput configuration: otherwise autovacuum works
    // through the throughput runs' million dead rows while this measures, and its tail shows up
    // in the p99 (26 ms instead of 3-5 ms in back-to-back runs).
    sqlx::query("VACUUM outbox").execute(w.pg.pool()).await?;
    let relay = Relay::builder(
        w.pg.pool().clone(),
        producer_config(&w.kafka),
        TopicRoute::Fixed(w.topic.clone()),
    )
    .wake(wake)
    .poll_interval(Duration::from_millis(500))
    .build()?;
    let running = relay.spawn(CancellationToken::new());
    // Warm up first: the producer's first metadata fetch and connection are start-up costs,
    // not commit-to-ack latency. Their samples are subtracted below.
    commit_events(w, "warm-up", 5).await?;
    wait_published(&running, 5).await;
    let warm_up = relay
        .latency_histogram()
        .ok_or_else(|| anyhow::anyhow!("no histogram"))?;
    let start = running.published();
    commit_events(w, "lat", count).await?;
    wait_published(&running, start + count as u64).await;
    let mut histogram = relay
        .latency_histogram()
        .ok_or_else(|| anyhow::anyhow!("no histogram"))?;
    histogram.subtract(&warm_up)?;
    running.shutdown().await?;
    let q = |q: f64| Duration::from_micros(histogram.value_at_quantile(q));
    Ok((q(0.5), q(0.99)))
}

/// Rows deleted without a vacuum before the claim benchmark, in bursts of DEAD_BURST.
const DEAD_ROWS: u64 = 1_000_000;
const DEAD_BURST: u64 = 100_000;
/// Rows per claim in the claim benchmark (the relay's default batch).
const CLAIM_ROWS: usize = 5000;

/// A claim of CLAIM_ROWS over DEAD_ROWS deleted rows: from the scan floor, and from the start.
fn claim_after_deletes(c: &mut Criterion, rt: &Runtime) -> anyhow::Result<()> {
    let pg = rt.block_on(harness::postgres())?;
    let pool = pg.pool();
    let limit = NonZeroUsize::new(CLAIM_ROWS).ok_or_else(|| anyhow::anyhow!("zero rows"))?;
    let mut floor = ScanFloor::default();
    rt.block_on(async {
        outbox::migrate(pool).await?;
        // Autovacuum would remove the dead rows this benchmark is about.
        sqlx::query("ALTER TABLE outbox SET (autovacuum_enabled = false)")
            .execute(pool)
            .await?;
        // Published rows: inserted, then deleted, a burst at a time (one transaction each).
        for round in 0..DEAD_ROWS / DEAD_BURST {
            insert_burst(pool, DEAD_BURST, i64::try_from(round)?).await?;
            sqlx::query("DELETE FROM outbox").execute(pool).await?;
        }
        // The backlog: CLAIM_ROWS rows, each aggregate's sequences continuing after the deleted
        // ones (as burst number DEAD_ROWS / CLAIM_ROWS of CLAIM_ROWS rows).
        let claim_rows = u64::try_from(CLAIM_ROWS)?;
        insert_burst(pool, claim_rows, i64::try_from(DEAD_ROWS / claim_rows)?).await?;
        // Two claims move the floor: the first takes a candidate, the second settles it.
        for _ in 0..2 {
            outbox::claim_from(pool, limit, &mut floor)
                .await?
                .release()
                .await?;
        }
        anyhow::Ok(())
    })?;
    anyhow::ensure!(floor.get() > 0, "the scan floor did not move");
    let mut group = c.benchmark_group("outbox_claim_after_deletes");
    group
        .throughput(Throughput::Elements(CLAIM_ROWS as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("from_floor", |b| {
        b.to_async(rt).iter(|| {
            let mut floor = floor.clone();
            async move {
                let claim = outbox::claim_from(pool, limit, &mut floor)
                    .await
                    .expect("claim");
                assert_eq!(claim.rows().len(), CLAIM_ROWS);
                claim.release().await.expect("release");
            }
        });
    });
    group.bench_function("from_start", |b| {
        b.to_async(rt).iter(|| async {
            let claim = outbox::claim(pool, limit).await.expect("claim");
            assert_eq!(claim.rows().len(), CLAIM_ROWS);
            claim.release().await.expect("release");
        });
    });
    group.finish();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = Arc::new(Runtime::new()?);
    let w = rt.block_on(world())?;
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c, &rt, &w)?;
    claim_after_deletes(&mut c, &rt)?;
    let (notify_p50, notify_p99) = rt.block_on(latency(&w, WakeMode::Notify, 300))?;
    let (poll_p50, poll_p99) = rt.block_on(latency(&w, WakeMode::PollOnly, 300))?;
    c.final_summary();

    let per_sec = |ns: f64| BATCH as f64 / (ns / 1e9);
    let raw_before = harness::bench::criterion_mean_ns("outbox_throughput", RAW_BEFORE);
    let raw_after = harness::bench::criterion_mean_ns("outbox_throughput", RAW_AFTER);
    let raw = match (raw_before, raw_after) {
        (Some(before), Some(after)) => Some(f64::midpoint(before, after)),
        (one, other) => one.or(other),
    };
    if let Some(raw) = raw {
        for (when, ns) in [("before", raw_before), ("after", raw_after)] {
            if let Some(ns) = ns {
                println!(
                    "raw producer, {when} the relay runs: {:>9.0} events/s (memory -> acked)",
                    per_sec(ns)
                );
            }
        }
        println!(
            "raw producer, mean time of both: {:>9.0} events/s (the baseline of the ratios)",
            per_sec(raw)
        );
        if let Some(stop_and_wait) =
            harness::bench::criterion_mean_ns("outbox_throughput", RAW_STOP_AND_WAIT)
        {
            println!(
                "raw producer, stop-and-wait per 500: {:>9.0} events/s (memory -> acked)",
                per_sec(stop_and_wait)
            );
            harness::bench::print_ratio(
                "raw producer stop-and-wait 500 vs pipelined, events/s",
                per_sec(stop_and_wait),
                per_sec(raw),
                true,
            );
        }
        for config in CONFIGS {
            let Some(relay) =
                harness::bench::criterion_mean_ns("outbox_throughput", &relay_id(config))
            else {
                continue;
            };
            let (workers, batch) = config;
            println!(
                "relay, {workers} worker(s), batch {batch}: {:>9.0} events/s (commit -> acked and deleted)",
                per_sec(relay)
            );
            harness::bench::print_ratio(
                &format!(
                    "outbox relay ({workers} workers, batch {batch}) vs raw producer, events/s"
                ),
                per_sec(relay),
                per_sec(raw),
                true,
            );
        }
    }
    if let (Some(floor), Some(start)) = (
        harness::bench::criterion_mean_ns("outbox_claim_after_deletes", "from_floor"),
        harness::bench::criterion_mean_ns("outbox_claim_after_deletes", "from_start"),
    ) {
        harness::bench::print_ratio(
            "outbox 5,000-row claim after 1M deletes, ms: from the scan floor vs from the start",
            floor / 1e6,
            start / 1e6,
            false,
        );
    }
    println!("commit->ack latency, NOTIFY:         p50 {notify_p50:?}  p99 {notify_p99:?}");
    println!("commit->ack latency, poll 500 ms:    p50 {poll_p50:?}  p99 {poll_p99:?}");
    harness::bench::print_ratio(
        "outbox p99 latency NOTIFY vs poll-only (ms)",
        notify_p99.as_secs_f64() * 1e3,
        poll_p99.as_secs_f64() * 1e3,
        false,
    );
    Ok(())
}
