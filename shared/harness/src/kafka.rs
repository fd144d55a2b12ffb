//! Kafka for tests: uniquely named topics and consumer groups, and client settings that make
//! group joins and rebalances settle in seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::OnceCell;

use crate::HarnessError;
use crate::discovery::{Endpoint, ServiceSpec, Source, discover, start_reusable};

const SPEC: ServiceSpec = ServiceSpec {
    service: "Kafka",
    env_var: "PATTERNS_KAFKA_BROKERS",
    example: "127.0.0.1:9092",
    image: "apache/kafka",
    default_addr: "127.0.0.1:9092",
    default_url: "127.0.0.1:9092",
};

/// How long a new topic gets to appear in the cluster metadata.
const TOPIC_VISIBLE_WITHIN: Duration = Duration::from_secs(20);
/// How long a committed-offsets lookup may take.
const COMMITTED_WITHIN: Duration = Duration::from_secs(10);

static SERVER: OnceCell<Endpoint> = OnceCell::const_new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A Kafka cluster and the topics this test created on it.
#[derive(Debug)]
pub struct TestKafka {
    /// Bootstrap broker list.
    brokers: String,
    /// Address of the first bootstrap broker.
    server: SocketAddr,
    /// How the cluster was found.
    source: Source,
    /// Topics created through this handle, deleted (best effort) on drop.
    topics: Mutex<Vec<String>>,
}

/// Finds the Kafka cluster the harness can reach.
///
/// # Errors
/// [`HarnessError::Unavailable`] when none is found, [`HarnessError::EnvUnreachable`] when
/// `PATTERNS_KAFKA_BROKERS` points at nothing.
pub async fn kafka() -> Result<TestKafka, HarnessError> {
    let server = SERVER
        .get_or_try_init(|| discover(&SPEC, first_broker, start_container))
        .await?;
    Ok(TestKafka {
        brokers: server.url.clone(),
        server: server.addr,
        source: server.source,
        topics: Mutex::new(Vec::new()),
    })
}

impl TestKafka {
    /// A handle on a cluster at `brokers` that the caller started itself (see
    /// [`crate::PrivateKafka`]).
    pub(crate) fn at(brokers: String, server: SocketAddr, source: Source) -> Self {
        Self {
            brokers,
            server,
            source,
            topics: Mutex::new(Vec::new()),
        }
    }

    /// Bootstrap broker list, for `bootstrap.servers`.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// How the harness found the cluster.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Address of the first bootstrap broker.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// Creates a topic named after `hint` plus a unique suffix, with `partitions` partitions, and
    /// waits until the cluster metadata shows all of them.
    ///
    /// # Errors
    /// [`HarnessError::Kafka`] if the broker refuses, [`HarnessError::Timeout`] if the topic does
    /// not become visible in time, [`HarnessError::Invalid`] if `partitions < 1`.
    pub async fn create_topic(&self, hint: &str, partitions: i32) -> Result<String, HarnessError> {
        if partitions < 1 {
            return Err(HarnessError::Invalid {
                what: "partition count",
                reason: format!("{partitions} (must be at least 1)"),
            });
        }
        let name = unique_name(hint);
        let admin: AdminClient<DefaultClientContext> = self.base_config().create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
        for result in admin.create_topics([&topic], &options).await? {
            result.map_err(|(topic, code)| {
                HarnessError::Kafka(rdkafka::error::KafkaError::AdminOp(code)).context_topic(&topic)
            })?;
        }
        if let Ok(mut topics) = self.topics.lock() {
            topics.push(name.clone());
        }
        self.wait_until_visible(&name, partitions).await?;
        Ok(name)
    }

    async fn wait_until_visible(&self, topic: &str, partitions: i32) -> Result<(), HarnessError> {
        let consumer: BaseConsumer = self.base_config().create()?;
        let consumer = std::sync::Arc::new(consumer);
        let visible = crate::eventually(TOPIC_VISIBLE_WITHIN, || {
            let (consumer, topic) = (consumer.clone(), topic.to_owned());
            async move {
                // fetch_metadata blocks; keep it off the async worker.
                let seen = tokio::task::spawn_blocking(move || {
                    consumer
                        .fetch_metadata(Some(&topic), Duration::from_secs(2))
                        .ok()
                        .and_then(|m| {
                            m.topics()
                                .first()
                                .map(|t| (t.error(), t.partitions().len()))
                        })
                })
                .await
                .ok()
                .flatten();
                matches!(seen, Some((None, n)) if n == usize::try_from(partitions).unwrap_or(0))
                    .then_some(())
            }
        })
        .await;
        visible.map_err(|_| HarnessError::Timeout {
            what: format!("topic {topic} with {partitions} partitions to appear"),
            after: TOPIC_VISIBLE_WITHIN,
        })
    }

    /// A consumer group id named after `hint` plus a unique suffix.
    pub fn group_id(&self, hint: &str) -> String {
        unique_name(hint)
    }

    /// `group`'s committed offset per partition of `topic`, read without joining the group;
    /// a partition with nothing committed is absent.
    ///
    /// # Errors
    /// [`HarnessError::Kafka`] if the broker does not answer within 10 s.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, HarnessError> {
        let reader: BaseConsumer = self.consumer_config(group).create()?;
        let mut tpl = TopicPartitionList::new();
        for &partition in partitions {
            tpl.add_partition(topic, partition);
        }
        // `committed_offsets` blocks; keep it off the async worker.
        let tpl =
            tokio::task::spawn_blocking(move || reader.committed_offsets(tpl, COMMITTED_WITHIN))
                .await
                .map_err(std::io::Error::from)??;
        Ok(tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// Producer settings: all in-sync replicas acknowledge, idempotence on (no duplicates or
    /// reordering from the producer's own retries), and a short linger for low latency.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        config
    }

    /// Consumer settings for tests: read from the earliest offset, commit explicitly, and use
    /// short session and poll timeouts so that joins and rebalances settle in seconds, not the
    /// default tens of seconds.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("group.id", group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("max.poll.interval.ms", "10000")
            .set("fetch.wait.max.ms", "100");
        config
    }

    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("topic.metadata.refresh.interval.ms", "1000");
        config
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        let topics = self
            .topics
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        if topics.is_empty() {
            return;
        }
        let config = self.base_config();
        // Best effort, off the caller's thread: the admin client drives its own polling thread,
        // so a plain executor can wait on its future.
        crate::clean_up_in_background("harness-topic-cleanup", move || {
            let Ok(admin) = config.create::<AdminClient<DefaultClientContext>>() else {
                return;
            };
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
            let _ = futures::executor::block_on(admin.delete_topics(&names, &options));
        });
    }
}

trait ContextTopic {
    fn context_topic(self, topic: &str) -> HarnessError;
}

impl ContextTopic for HarnessError {
    fn context_topic(self, topic: &str) -> HarnessError {
        HarnessError::Invalid {
            what: "topic creation",
            reason: format!("{topic}: {self}"),
        }
    }
}

/// `pp-<hint>-<pid>-<counter>-<random>`, restricted to the characters Kafka accepts.
fn unique_name(hint: &str) -> String {
    let clean: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "pp-{clean}-{}-{n}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

fn first_broker(brokers: &str) -> Result<String, HarnessError> {
    let first = brokers.split(',').next().map(str::trim).unwrap_or_default();
    let first = first.rsplit_once("://").map_or(first, |(_, rest)| rest);
    if first.is_empty() {
        return Err(HarnessError::Invalid {
            what: "broker list",
            reason: format!("`{brokers}` names no broker"),
        });
    }
    Ok(if first.contains(':') {
        first.to_owned()
    } else {
        format!("{first}:9092")
    })
}

async fn start_container() -> Result<String, HarnessError> {
    use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};
    let port = start_reusable(Kafka::default(), "production-patterns-kafka", KAFKA_PORT).await?;
    Ok(format!("127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_legal() {
        let a = unique_name("orders/v1 events");
        let b = unique_name("orders/v1 events");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn the_first_broker_is_probed() {
        assert_eq!(first_broker("a:1,b:2").expect("ok"), "a:1");
        assert_eq!(first_broker("PLAINTEXT://a:1").expect("ok"), "a:1");
        assert_eq!(first_broker("a").expect("ok"), "a:9092");
        assert!(first_broker("").is_err());
    }
}
