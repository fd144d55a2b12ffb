//! Consumed-and-applied messages per second: the idempotent consumer (inbox + sequence check +
//! a counter upsert, one transaction per batch) against a raw consumer that reads and commits
//! the same records with the same batch size and no database. Run with
//! `make bench NAME=idempotent-consumer`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use event_envelope::Envelope;
use idempotent_consumer::{Consumer, Event, Handler, HandlerError};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgConnection;

const MESSAGES: u64 = 20_000;
const BATCH: usize = 1_000;
const GROUP: &str = "idempotent-consumer";

/// The trivial effect: one counter per aggregate, upserted once per batch.
struct Counters;

impl Handler for Counters {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
        self.handle_batch(conn, &[event]).await
    }

    async fn handle_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&Event],
    ) -> Result<(), HandlerError> {
        // Pre-aggregate: one row per aggregate, since ON CONFLICT DO UPDATE may not touch a
        // row twice in one statement.
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for e in events {
            let id = e
                .envelope()
                .map_or("plain", |env| env.aggregate_id.as_str());
            *counts.entry(id).or_default() += 1;
        }
        let (ids, ns): (Vec<&str>, Vec<i64>) = counts.into_iter().unzip();
        sqlx::query(
            "INSERT INTO counters (id, n) SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET n = counters.n + EXCLUDED.n",
        )
        .bind(&ids)
        .bind(&ns)
        .execute(conn)
        .await?;
        Ok(())
    }
}

struct Setup {
    pg: harness::TestDatabase,
    kafka: harness::TestKafka,
    topic: String,
    dlq: String,
}

async fn setup() -> anyhow::Result<Setup> {
    let pg = harness::postgres().await?;
    idempotent_consumer::migrate(pg.pool()).await?;
    sqlx::query("CREATE TABLE counters (id text PRIMARY KEY, n bigint NOT NULL)")
        .execute(pg.pool())
        .await?;
    let kafka = harness::kafka().await?;
    let topic = kafka.create_topic("bench", 4).await?;
    let dlq = kafka.create_topic("bench-dlq", 1).await?;
    let producer: FutureProducer = kafka.producer_config().create()?;
    let mut pending = Vec::new();
    for i in 0..MESSAGES {
        let agg = format!("acc-{}", i % 200);
        let e = Envelope::new(
            "account",
            agg,
            i64::try_from(i / 200 + 1)?,
            "Deposited",
            serde_json::json!({"amount": 1}),
        );
        let r = e.encode()?;
        let rec = FutureRecord::to(&topic)
            .key(&r.key)
            .payload(&r.payload)
            .headers(r.headers);
        pending.push(producer.send_result(rec).map_err(|(e, _)| e)?);
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(Setup {
        pg,
        kafka,
        topic,
        dlq,
    })
}

/// Time for one fresh consumer (new group, new inbox namespace) to apply every message,
/// measured from its first committed batch (group join excluded) and scaled to all messages.
async fn candidate_once(s: &Setup) -> anyhow::Result<Duration> {
    let name = format!("bench-{}", uuid::Uuid::new_v4());
    let consumer = Consumer::builder(name, s.pg.pool().clone(), Counters)
        .kafka(s.kafka.consumer_config(&s.kafka.group_id(GROUP)))
        .producer(s.kafka.producer_config())
        .topics([s.topic.clone()])
        .dead_letter_topic(s.dlq.clone())
        .batch_size(NonZeroUsize::new(BATCH).unwrap_or(NonZeroUsize::MIN))
        .build()?
        .spawn();
    let m = consumer.metrics();
    let (start, at_start) = watch(Duration::from_secs(60), || {
        let s = m.snapshot();
        (s.batches > 0).then(|| (Instant::now(), s.applied))
    })
    .await?;
    watch(Duration::from_secs(120), || {
        (m.snapshot().applied >= MESSAGES).then_some(())
    })
    .await?;
    let elapsed = start.elapsed();
    consumer.shutdown().await?;
    Ok(scale(elapsed, MESSAGES - at_start))
}

/// Checks `done` every millisecond until it returns `Some`.
///
/// Not `harness::eventually`, which checks every 20 ms: that is fine for a test but not for a
/// clock. The candidate's window then opened up to 20 ms after its first commit (counting the
/// batches committed meanwhile as done before the start, and scaling the rest up) and closed up
/// to 20 ms after its last — a bias of several percent on a ~250 ms run, all of it against the
/// candidate, since the baseline reads its own clock at its first and last commit. The counters
/// are atomics, so checking them this often costs nothing measurable.
async fn watch<T>(within: Duration, mut done: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = done() {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "not done within {within:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The same records read by a bare `StreamConsumer` that commits each batch's offsets.
async fn baseline_once(s: &Setup) -> anyhow::Result<Duration> {
    let c: StreamConsumer = s.kafka.consumer_config(&s.kafka.group_id(GROUP)).create()?;
    c.subscribe(&[&s.topic])?;
    let c = std::sync::Arc::new(c);
    let mut seen = 0u64;
    let mut start = None;
    let mut at_start = 0;
    while seen < MESSAGES {
        let mut batch = vec![c.recv().await?.detach()];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, c.recv()).await {
                Ok(m) => batch.push(m?.detach()),
                Err(_) => break,
            }
        }
        let mut tpl = TopicPartitionList::new();
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for m in &batch {
            let e = next
                .entry((m.topic().to_owned(), m.partition()))
                .or_default();
            *e = (*e).max(m.offset() + 1);
        }
        for ((t, p), o) in next {
            tpl.add_partition_offset(&t, p, Offset::Offset(o))?;
        }
        let committer = std::sync::Arc::clone(&c);
        tokio::task::spawn_blocking(move || committer.commit(&tpl, CommitMode::Sync)).await??;
        seen += batch.len() as u64;
        if start.is_none() {
            start = Some(Instant::now());
            at_start = seen;
        }
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    Ok(scale(elapsed, MESSAGES - at_start))
}

fn scale(elapsed: Duration, measured: u64) -> Duration {
    if measured == 0 {
        return elapsed;
    }
    elapsed.mul_f64(MESSAGES as f64 / measured as f64)
}

fn main() -> anyhow::Result<()> {
    harness::telemetry::init_test();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let s = rt.block_on(setup())?;
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    {
        let mut g = c.benchmark_group("consume");
        g.throughput(Throughput::Elements(MESSAGES));
        // Flat: one consumer run per sample; linear sampling would run 55 of them.
        g.sampling_mode(SamplingMode::Flat);
        g.bench_function("idempotent_consumer", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        rt.block_on(candidate_once(&s))
                            .expect("candidate iteration")
                    })
                    .sum()
            })
        });
        g.bench_function("raw_consumer", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(baseline_once(&s)).expect("baseline iteration"))
                    .sum()
            })
        });
        g.finish();
    }
    c.final_summary();
    let per_sec = |id: &str| {
        harness::bench::criterion_mean_ns("consume", id).map(|ns| MESSAGES as f64 / (ns / 1e9))
    };
    if let (Some(candidate), Some(baseline)) =
        (per_sec("idempotent_consumer"), per_sec("raw_consumer"))
    {
        println!("idempotent consumer: {candidate:.0} msgs/s; raw consumer: {baseline:.0} msgs/s");
        harness::bench::print_ratio(
            "idempotent-consumer msgs/s vs raw consumer",
            candidate,
            baseline,
            true,
        );
    }
    Ok(())
}
