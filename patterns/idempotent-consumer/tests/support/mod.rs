//! Shared test fixtures: a database with the schema, topics, a scriptable handler, producers.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use event_envelope::Envelope;
use idempotent_consumer::{
    Consumer, ConsumerBuilder, DeadLetter, Event, Handler, HandlerError, RetryPolicy,
};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgConnection;

/// Generous bound for anything involving a consumer-group join.
pub const WITHIN: Duration = Duration::from_secs(60);

/// One test's world: its own database, source topic, DLQ topic and producer.
pub struct World {
    pub pg: harness::TestDatabase,
    pub kafka: harness::TestKafka,
    pub topic: String,
    pub dlq: String,
    pub producer: FutureProducer,
}

impl World {
    pub async fn new(partitions: i32) -> anyhow::Result<Self> {
        harness::telemetry::init_test();
        let pg = harness::postgres().await.context("postgres")?;
        idempotent_consumer::migrate(pg.pool())
            .await
            .context("migrate")?;
        sqlx::query(
            "CREATE TABLE effects (message_key text NOT NULL, aggregate_id text, \
             sequence bigint, amount bigint NOT NULL)",
        )
        .execute(pg.pool())
        .await?;
        let kafka = harness::kafka().await.context("kafka")?;
        let topic = kafka.create_topic("events", partitions).await?;
        let dlq = kafka.create_topic("events-dlq", 1).await?;
        let producer = one_record_per_batch(kafka.producer_config())
            .create()
            .context("producer")?;
        Ok(Self {
            pg,
            kafka,
            topic,
            dlq,
            producer,
        })
    }

    /// A consumer builder wired to this world, with fast retries.
    pub fn consumer(
        &self,
        name: &str,
        group: &str,
        handler: TestHandler,
    ) -> ConsumerBuilder<TestHandler> {
        Consumer::builder(name, self.pg.pool().clone(), handler)
            .kafka(self.kafka.consumer_config(group))
            .producer(one_record_per_batch(self.kafka.producer_config()))
            .topics([self.topic.clone()])
            .dead_letter_topic(self.dlq.clone())
            .retry(fast_retry(3))
            .batch_size(NonZeroUsize::new(50).expect("non-zero"))
    }

    /// Publishes all events (pipelined, in order), waits for every acknowledgement and returns
    /// where each landed, `(partition, offset)`, in the order of `events`.
    pub async fn publish(&self, events: &[Envelope]) -> anyhow::Result<Vec<(i32, i64)>> {
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let r = e.encode()?;
            let rec = FutureRecord::to(&self.topic)
                .key(&r.key)
                .payload(&r.payload)
                .headers(r.headers);
            pending.push(
                self.producer
                    .send_result(rec)
                    .map_err(|(e, _)| e)
                    .context("enqueue")?,
            );
        }
        let mut landed = Vec::with_capacity(pending.len());
        for p in pending {
            let delivery = p.await?.map_err(|(e, _)| e).context("produce")?;
            landed.push((delivery.partition, delivery.offset));
        }
        Ok(landed)
    }

    pub async fn send(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> anyhow::Result<()> {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(p) = payload {
            rec = rec.payload(p);
        }
        if let Some(h) = headers {
            rec = rec.headers(h);
        }
        self.producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .context("produce")?;
        Ok(())
    }

    /// Number of effect rows.
    pub async fn effects(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects")
            .fetch_one(self.pg.pool())
            .await
            .unwrap_or(-1)
    }

    /// Highest number of effect rows any single message produced (1 = exactly once).
    pub async fn max_copies(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(max(c), 0) FROM (SELECT count(*) c FROM effects GROUP BY message_key) x",
        )
        .fetch_one(self.pg.pool())
        .await
        .unwrap_or(-1)
    }

    pub async fn distinct_effects(&self) -> i64 {
        sqlx::query_scalar("SELECT count(DISTINCT message_key) FROM effects")
            .fetch_one(self.pg.pool())
            .await
            .unwrap_or(-1)
    }

    /// Reads the DLQ until `n` records arrived.
    pub async fn dead_letters(&self, n: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let reader: StreamConsumer = self
            .kafka
            .consumer_config(&self.kafka.group_id("dlq-reader"))
            .create()?;
        reader.subscribe(&[&self.dlq])?;
        let mut out = Vec::new();
        while out.len() < n {
            let m = tokio::time::timeout(WITHIN, reader.recv())
                .await
                .with_context(|| format!("only {} of {n} dead letters arrived", out.len()))??;
            out.push(DeadLetter::from_message(&m).context("DLQ record without context")?);
            let _ = m.offset();
        }
        Ok(out)
    }
}

/// A producer that writes every record as its own batch.
///
/// Why: the Kafka-compatible broker these tests run against in CI (tansu) cannot serve a fetch
/// that starts *inside* a record batch — a consumer resuming from a committed offset in the
/// middle of a batch gets nothing, or the next batch. Real Kafka returns the enclosing batch
/// and the client skips the records before the offset. Group tests resume mid-stream all the
/// time, so they need batch boundaries at every offset.
pub fn one_record_per_batch(mut config: rdkafka::ClientConfig) -> rdkafka::ClientConfig {
    config.set("batch.num.messages", "1").set("linger.ms", "0");
    config
}

pub fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(
        NonZeroU32::new(attempts).expect("non-zero"),
        Duration::from_millis(5),
        Duration::from_millis(20),
    )
    .expect("valid policy")
}

/// `n` events of one aggregate, sequences 1..=n, payload `{"amount": 1}`.
pub fn events(aggregate: &str, n: i64) -> Vec<Envelope> {
    (1..=n)
        .map(|s| {
            Envelope::new(
                "account",
                aggregate,
                s,
                "Deposited",
                serde_json::json!({"amount": 1}),
            )
        })
        .collect()
}

/// Payload the handler understands; other fields script failures.
#[derive(serde::Deserialize)]
struct Deposit {
    amount: i64,
    #[serde(default)]
    poison: Option<String>,
    #[serde(default)]
    fail_first: u32,
    #[serde(default)]
    breakable: bool,
}

/// Inserts one `effects` row per event; payload fields make it fail on purpose:
/// `poison: "permanent" | "transient"`, `fail_first: n` (transient n times), `breakable: true`
/// (permanent while [`TestHandler::broken`] is set).
#[derive(Clone, Default)]
pub struct TestHandler {
    pub attempts: Arc<Mutex<HashMap<String, u32>>>,
    pub broken: Arc<AtomicBool>,
    pub delay: Option<Duration>,
    /// While closed, every call waits here before writing its effect.
    pub gate: Option<Gate>,
}

/// A gate a handler waits at: lets a test hold a batch in flight (its transaction open) for
/// as long as it needs, then release it.
#[derive(Clone, Default)]
pub struct Gate {
    open: Arc<AtomicBool>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    notify: Arc<tokio::sync::Notify>,
}

impl Gate {
    /// Whether a handler call has reached the closed gate (a batch is in flight).
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    async fn pass(&self) {
        while !self.open.load(Ordering::SeqCst) {
            let notified = self.notify.notified();
            // Registered before the re-check, so an `open` in between is not missed.
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if !self.open.load(Ordering::SeqCst) {
                notified.await;
            }
        }
    }
}

impl Handler for TestHandler {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
        let d: Deposit = event.decode()?;
        let key = event.id.to_key();
        let attempt = {
            let mut a = self
                .attempts
                .lock()
                .map_err(|_| HandlerError::permanent("poisoned lock"))?;
            let n = a.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        match d.poison.as_deref() {
            Some("permanent") => {
                return Err(HandlerError::permanent("poison: rejected by business rule"));
            }
            Some("transient") => {
                return Err(HandlerError::transient("poison: dependency always busy"));
            }
            _ => {}
        }
        if attempt <= d.fail_first {
            return Err(HandlerError::transient(format!("flaky, attempt {attempt}")));
        }
        if d.breakable && self.broken.load(Ordering::SeqCst) {
            return Err(HandlerError::permanent("broken until fixed"));
        }
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let env = event.envelope();
        sqlx::query("INSERT INTO effects (message_key, aggregate_id, sequence, amount) VALUES ($1, $2, $3, $4)")
            .bind(&key)
            .bind(env.map(|e| e.aggregate_id.clone()))
            .bind(env.map(|e| e.sequence))
            .bind(d.amount)
            .execute(conn)
            .await?;
        Ok(())
    }
}
