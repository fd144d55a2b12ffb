//! Run with: make demo NAME=idempotent-consumer
//!
//! Publishes events (with deliberate duplicates, poison and malformed records), runs two
//! consumer instances in one group, kills one mid-stream, then prints what reached Postgres:
//! effects applied = distinct events, duplicates skipped, dead letters, final lag. Finally the
//! "bug" behind the poison messages is fixed and the dead letters are replayed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use event_envelope::Envelope;
use idempotent_consumer::{
    Consumer, Event, Handler, HandlerError, ReplaySelection, consumer_lag, replay,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgConnection;

const ACCOUNTS: i64 = 50;
const PER_ACCOUNT: i64 = 40; // 2 000 distinct events
const DUPLICATES: usize = 300;
const POISON: usize = 3;

/// Books deposits; rejects negative amounts while `strict` (the "bug" fixed before replay).
#[derive(Clone)]
struct Ledger {
    strict: Arc<AtomicBool>,
}

#[derive(serde::Deserialize)]
struct Deposited {
    amount: i64,
}

impl Handler for Ledger {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
        let d: Deposited = event.decode()?;
        if d.amount < 0 && self.strict.load(Ordering::SeqCst) {
            return Err(HandlerError::permanent("negative deposit rejected"));
        }
        let account = event.envelope().map(|e| e.aggregate_id.clone());
        sqlx::query("INSERT INTO ledger (event_key, account, amount) VALUES ($1, $2, $3)")
            .bind(event.id.to_key())
            .bind(account)
            .bind(d.amount)
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::telemetry::init();
    let pg = harness::postgres().await?;
    idempotent_consumer::migrate(pg.pool()).await?;
    sqlx::query(
        "CREATE TABLE ledger (event_key text NOT NULL, account text, amount bigint NOT NULL)",
    )
    .execute(pg.pool())
    .await?;
    let kafka = harness::kafka().await?;
    let topic = kafka.create_topic("deposits", 4).await?;
    let dlq = kafka.create_topic("deposits-dlq", 1).await?;
    // One record per batch: the local broker used in CI (tansu) cannot serve a fetch that starts
    // inside a record batch, and the survivor resumes mid-stream from the killed one's offsets.
    let producer: FutureProducer = kafka
        .producer_config()
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()?;

    let distinct = publish(&producer, &topic).await?;
    println!(
        "published {distinct} distinct events + {DUPLICATES} duplicate records + {POISON} poison + 2 malformed"
    );

    let group = kafka.group_id("ledger");
    let ledger = Ledger {
        strict: Arc::new(AtomicBool::new(true)),
    };
    let build = |handler: Ledger| {
        Consumer::builder("ledger", pg.pool().clone(), handler)
            .kafka(kafka.consumer_config(&group))
            .producer(kafka.producer_config())
            .topics([topic.clone()])
            .dead_letter_topic(dlq.clone())
            .batch_size(std::num::NonZeroUsize::new(100).context("non-zero")?)
            .build()
            .context("build consumer")
    };
    let started = Instant::now();
    let a = build(ledger.clone())?.spawn();
    let b = build(ledger.clone())?.spawn();
    let (ma, mb) = (a.metrics(), b.metrics());
    harness::eventually(Duration::from_secs(60), || async {
        (ma.snapshot().applied >= distinct / 4).then_some(())
    })
    .await?;
    a.kill();
    println!(
        "killed instance A after it applied {} events (no graceful shutdown)",
        ma.snapshot().applied
    );

    let lag_cfg = kafka.consumer_config(&group);
    harness::eventually(Duration::from_secs(60), || async {
        let lag = consumer_lag(&lag_cfg, &topic).await.ok()?;
        (lag == 0).then_some(())
    })
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(pg.pool())
        .await?;
    let max_copies: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(c), 0) FROM (SELECT count(*) c FROM ledger GROUP BY event_key) x",
    )
    .fetch_one(pg.pool())
    .await?;
    let (sa, sb) = (ma.snapshot(), mb.snapshot());
    println!("after {:.1?}:", started.elapsed());
    println!(
        "  effects applied      = {rows} (distinct events {distinct}, max copies per event {max_copies})"
    );
    println!("  applied by A / B     = {} / {}", sa.applied, sb.applied);
    println!(
        "  duplicates skipped   = {} ({DUPLICATES} producer duplicates, {} redelivered after the kill)",
        sa.duplicates + sb.duplicates,
        (sa.duplicates + sb.duplicates).saturating_sub(DUPLICATES as u64)
    );
    println!(
        "  dead-lettered        = {}",
        sa.dead_lettered + sb.dead_lettered
    );
    println!("  retries              = {}", sa.retries + sb.retries);
    println!(
        "  lag at the end       = {}",
        consumer_lag(&lag_cfg, &topic).await?
    );

    // The negative-deposit rule was a bug: fix it and replay the poison messages.
    ledger.strict.store(false, Ordering::SeqCst);
    let report = replay(
        &kafka.consumer_config(&kafka.group_id("replay")),
        &producer,
        &dlq,
        &ReplaySelection::All,
    )
    .await?;
    harness::eventually(Duration::from_secs(30), || async {
        (mb.snapshot().applied >= sb.applied + POISON as u64).then_some(())
    })
    .await?;
    b.shutdown().await?;
    let rows_after: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(pg.pool())
        .await?;
    println!(
        "replayed {} of {} dead letters; poison now applied, malformed dead-lettered again; effects = {rows_after}",
        report.replayed, report.scanned
    );
    let lost = distinct as i64 - rows;
    println!(
        "lost = {lost}, applied twice = {}",
        i64::from(max_copies > 1)
    );
    anyhow::ensure!(lost == 0 && max_copies == 1, "exactly-once effect violated");
    Ok(())
}

/// Publishes the events, duplicates of some, poison and malformed records; returns the number
/// of distinct valid events.
async fn publish(producer: &FutureProducer, topic: &str) -> anyhow::Result<u64> {
    let mut events = Vec::new();
    for a in 0..ACCOUNTS {
        for s in 1..=PER_ACCOUNT {
            events.push(Envelope::new(
                "account",
                format!("acc-{a}"),
                s,
                "Deposited",
                serde_json::json!({"amount": 1}),
            ));
        }
    }
    let mut seen = HashSet::new();
    let mut pending = Vec::new();
    let duplicates = events
        .iter()
        .step_by(events.len() / DUPLICATES)
        .take(DUPLICATES);
    let poison: Vec<Envelope> = (0..POISON)
        .map(|p| {
            Envelope::new(
                "account",
                format!("poison-{p}"),
                1,
                "Deposited",
                serde_json::json!({"amount": -5}),
            )
        })
        .collect();
    for e in events.iter().chain(duplicates).chain(&poison) {
        let r = e.encode()?;
        let record = FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.payload)
            .headers(r.headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        seen.insert(e.event_id);
    }
    for garbage in [&b"{not json"[..], &b"\xff\xfe"[..]] {
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).key("junk").payload(garbage);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    let distinct = seen.len() - POISON;
    Ok(distinct as u64)
}
