//! Shared set-up for the integration tests: a fresh database with the outbox schema, a fresh
//! topic, relays pointed at both, and a reader that audits what reached the topic.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset of these helpers

use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use event_envelope::Envelope;
use harness::{TestDatabase, TestKafka};
use outbox::{
    Claim, NewEvent, Outcome, Relay, RelayBuilder, SequenceAudit, Settlement, TopicRoute, enqueue,
    settle,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// `v` as a batch size or claim limit.
pub fn n(v: usize) -> NonZeroUsize {
    NonZeroUsize::new(v).expect("non-zero")
}

/// `(aggregate id, sequence)` of every row a claim holds, in claim order.
pub fn taken(claim: &Claim) -> Vec<(&str, i64)> {
    claim
        .rows()
        .iter()
        .map(|r| (r.aggregate_id.as_str(), r.sequence))
        .collect()
}

/// The settlement of a claim whose every row Kafka acknowledged: delete them all.
pub fn all_acked(claim: &Claim) -> Settlement {
    settle(claim.rows(), &vec![Outcome::Acked; claim.rows().len()])
}

/// Partitions of every test topic: more than one, so keying by aggregate matters.
pub const PARTITIONS: i32 = 3;

/// One test's world.
pub struct Env {
    /// Fresh database with the outbox schema applied.
    pub pg: TestDatabase,
    /// The Kafka cluster.
    pub kafka: TestKafka,
    /// Fresh topic the relays publish to.
    pub topic: String,
}

/// Fresh database (migrated) and topic.
pub async fn env() -> anyhow::Result<Env> {
    harness::telemetry::init_test();
    let pg = harness::postgres().await.context("postgres")?;
    outbox::migrate(pg.pool()).await.context("migrate")?;
    let kafka = harness::kafka().await.context("kafka")?;
    let topic = kafka
        .create_topic("outbox", PARTITIONS)
        .await
        .context("topic")?;
    Ok(Env { pg, kafka, topic })
}

impl Env {
    pub fn pool(&self) -> &PgPool {
        self.pg.pool()
    }

    /// A relay builder with test-friendly timings.
    pub fn relay(&self) -> RelayBuilder {
        self.relay_on(self.pool().clone())
    }

    /// Same, on a specific pool (e.g. one with a recognisable `application_name`).
    pub fn relay_on(&self, pool: PgPool) -> RelayBuilder {
        Relay::builder(
            pool,
            self.kafka.producer_config(),
            TopicRoute::Fixed(self.topic.clone()),
        )
        .poll_interval(Duration::from_millis(250))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .publish_timeout(Duration::from_secs(5))
    }

    /// A pool whose connections carry `application_name`, so a test can find and kill them.
    pub async fn named_pool(&self, application_name: &str) -> anyhow::Result<PgPool> {
        let options = PgConnectOptions::from_str(self.pg.url())?.application_name(application_name);
        Ok(PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?)
    }

    /// Commits one event per call for `aggregate`, `n` times.
    pub async fn write(&self, aggregate: &str, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let mut tx = self.pool().begin().await?;
            let event = NewEvent::new(
                "order",
                aggregate,
                "OrderChanged",
                serde_json::json!({ "i": i }),
            );
            enqueue(&mut tx, &event).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Rows still in the outbox (published rows are deleted).
    pub async fn outbox_rows(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(self.pool())
            .await?)
    }

    /// Waits until the outbox is empty.
    pub async fn drained(&self, within: Duration) -> anyhow::Result<()> {
        harness::eventually(within, || async {
            matches!(self.outbox_rows().await, Ok(0)).then_some(())
        })
        .await
        .context("outbox never drained")
    }

    /// Reads the topic from the beginning until `unique` distinct events have arrived, plus
    /// whatever else arrives within `settle` after that (late duplicates).
    pub async fn read(&self, unique: u64, within: Duration) -> anyhow::Result<Consumed> {
        read_topic(&self.kafka, &self.topic, unique, within).await
    }
}

/// What a reader saw.
pub struct Consumed {
    /// Envelopes in arrival order.
    pub envelopes: Vec<Envelope>,
    /// Record keys in arrival order.
    pub keys: Vec<String>,
    /// The audit of the sequence numbers.
    pub audit: SequenceAudit,
}

/// Reads every partition of `topic` from the beginning until `unique` distinct events arrived
/// in order, plus whatever else arrives shortly after (late duplicates).
pub async fn read_topic(
    kafka: &TestKafka,
    topic: &str,
    unique: u64,
    within: Duration,
) -> anyhow::Result<Consumed> {
    read_until(kafka, topic, within, |seen| {
        seen.audit.report().unique >= unique
    })
    .await
}

/// Reads every partition of `topic` from the beginning (assigned, no group join) until `done`
/// holds, then keeps listening briefly so late duplicates are counted too.
pub async fn read_until(
    kafka: &TestKafka,
    topic: &str,
    within: Duration,
    done: impl Fn(&Consumed) -> bool,
) -> anyhow::Result<Consumed> {
    let consumer: StreamConsumer = kafka.consumer_config(&kafka.group_id("audit")).create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = Consumed {
        envelopes: Vec::new(),
        keys: Vec::new(),
        audit: SequenceAudit::default(),
    };
    let deadline = tokio::time::Instant::now() + within;
    let tail = Duration::from_millis(500);
    loop {
        let finished = done(&seen);
        let wait_until = if finished {
            tokio::time::Instant::now() + tail
        } else {
            deadline
        };
        match tokio::time::timeout_at(wait_until, consumer.recv()).await {
            Ok(message) => {
                let message = message?;
                let envelope = Envelope::from_message(&message)?;
                let key = rdkafka::Message::key(&message)
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                seen.audit.observe(&key, envelope.sequence);
                seen.keys.push(key);
                seen.envelopes.push(envelope);
            }
            Err(_) if finished => return Ok(seen),
            Err(_) => anyhow::bail!(
                "expected records did not arrive within {within:?} ({} unique so far)",
                seen.audit.report().unique
            ),
        }
    }
}

/// Terminates every backend of this database whose `application_name` matches.
pub async fn terminate_backends(pool: &PgPool, application_name: &str) -> anyhow::Result<i64> {
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(application_name)
    .fetch_one(pool)
    .await?;
    Ok(killed)
}
