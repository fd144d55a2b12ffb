//! The loop's handling of a revocation that lands while a batch is being collected.
//!
//! A real rebalance cannot be timed to fall between two `recv` calls of one batch (and the
//! test broker's group coordinator is not reliable enough to try), so these tests drive the
//! loop's own steps — [`Consumer::next_batch`], then [`Consumer::settle`] — on a member whose
//! partitions are assigned by hand, against real Postgres and Kafka. The revocation is what
//! librdkafka does inside `poll`: the assignment shrinks and the rebalance callback notes the
//! change. What is checked is what persists: effects in Postgres and the group's committed
//! offsets.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context as _;
use event_envelope::Envelope;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::{Consumer, Event, Handler, HandlerError};

/// Records one `effects` row per applied event, with the partition it came from.
struct Effects;

impl Handler for Effects {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (message_key, partition) VALUES ($1, $2)")
            .bind(event.id.to_key())
            .bind(event.position.partition)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// One test's database, topic (two partitions) and group.
struct World {
    pg: harness::TestDatabase,
    kafka: harness::TestKafka,
    topic: String,
    dlq: String,
    group: String,
}

impl World {
    async fn new() -> anyhow::Result<Self> {
        harness::telemetry::init_test();
        let pg = harness::postgres().await.context("postgres")?;
        crate::migrate(pg.pool()).await.context("migrate")?;
        sqlx::query("CREATE TABLE effects (message_key text NOT NULL, partition int NOT NULL)")
            .execute(pg.pool())
            .await?;
        let kafka = harness::kafka().await.context("kafka")?;
        let topic = kafka.create_topic("revoked", 2).await?;
        let dlq = kafka.create_topic("revoked-dlq", 1).await?;
        let group = kafka.group_id("g");
        Ok(Self {
            pg,
            kafka,
            topic,
            dlq,
            group,
        })
    }

    /// Publishes `n` events of one aggregate to `partition`, one record per producer batch
    /// (the test broker cannot serve a fetch that starts inside a batch).
    async fn publish(&self, partition: i32, aggregate: &str, n: i64) -> anyhow::Result<()> {
        let mut config = self.kafka.producer_config();
        config.set("batch.num.messages", "1").set("linger.ms", "0");
        let producer: FutureProducer = config.create()?;
        for sequence in 1..=n {
            let env = Envelope::new(
                "account",
                aggregate,
                sequence,
                "Deposited",
                serde_json::json!({}),
            );
            let r = env.encode()?;
            let record = FutureRecord::to(&self.topic)
                .partition(partition)
                .key(&r.key)
                .payload(&r.payload)
                .headers(r.headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// A group member that owns `partitions` by manual assignment, from their committed
    /// offsets (the beginning when nothing is committed). It never joins the group, so no
    /// rebalance happens unless the test makes one.
    fn member(&self, partitions: &[i32], linger: Duration) -> anyhow::Result<Consumer<Effects>> {
        let (member, _) = Consumer::builder("ledger", self.pg.pool().clone(), Effects)
            .kafka(self.kafka.consumer_config(&self.group))
            .producer(self.kafka.producer_config())
            .topics([self.topic.clone()])
            .dead_letter_topic(self.dlq.clone())
            .batch_size(NonZeroUsize::new(6).context("non-zero")?)
            .batch_linger(linger)
            .assemble()?;
        member.kafka.assign(&self.partitions(partitions)?)?;
        Ok(member)
    }

    fn partitions(&self, partitions: &[i32]) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Stored)?;
        }
        Ok(tpl)
    }

    /// Effect rows per partition.
    async fn effects(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        let rows: Vec<(i32, i64)> =
            sqlx::query_as("SELECT partition, count(*) FROM effects GROUP BY partition")
                .fetch_all(self.pg.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// The group's committed offset per partition (absent: nothing committed).
    async fn committed(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        Ok(self
            .kafka
            .committed_offsets(&self.group, &self.topic, &[0, 1])
            .await?)
    }
}

#[tokio::test]
async fn records_of_a_partition_revoked_while_their_batch_is_collected_are_abandoned_uncommitted()
-> anyhow::Result<()> {
    let w = World::new().await?;
    w.publish(0, "kept", 3).await?;
    w.publish(1, "revoked", 3).await?;
    let shutdown = CancellationToken::new();

    // The batch fills with all six records (three per partition) well before the linger.
    let first = w.member(&[0, 1], Duration::from_secs(30))?;
    let batch = within(first.next_batch(&shutdown)).await?;
    let mut per_partition = BTreeMap::new();
    for m in &batch {
        *per_partition.entry(m.partition()).or_insert(0) += 1;
    }
    assert_eq!(per_partition, BTreeMap::from([(0, 3), (1, 3)]));

    // Partition 1 is revoked after its records were polled, before they are processed.
    first.kafka.assign(&w.partitions(&[0])?)?;
    first.kafka.context().assignment_changed();
    assert!(first.settle(batch, &shutdown).await?.is_continue());

    assert_eq!(
        w.effects().await?,
        BTreeMap::from([(0, 3)]),
        "only the records of the partition still owned are applied"
    );
    assert_eq!(
        w.committed().await?,
        BTreeMap::from([(0, 3)]),
        "no offset is committed for the revoked partition"
    );
    assert_eq!(first.metrics().snapshot().abandoned, 3);

    // Partition 1's next owner starts from its committed offset — the beginning — and applies
    // the abandoned records, once each.
    let next = w.member(&[1], Duration::from_millis(500))?;
    let batch = within(next.next_batch(&shutdown)).await?;
    assert_eq!(batch.len(), 3);
    assert!(next.settle(batch, &shutdown).await?.is_continue());
    assert_eq!(w.effects().await?, BTreeMap::from([(0, 3), (1, 3)]));
    assert_eq!(w.committed().await?, BTreeMap::from([(0, 3), (1, 3)]));
    Ok(())
}

/// A collected batch, or an error if none arrives in time (never shut down here).
async fn within(
    batch: impl Future<Output = Option<Vec<OwnedMessage>>>,
) -> anyhow::Result<Vec<OwnedMessage>> {
    tokio::time::timeout(Duration::from_secs(60), batch)
        .await
        .context("no record arrived")?
        .context("not shut down")
}
