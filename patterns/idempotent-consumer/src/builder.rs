//! Configuring a [`Consumer`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::FutureProducer;

use crate::batch::Processor;
use crate::context::GroupContext;
use crate::dlq::DeadLetterQueue;
use crate::{
    ConfigError, Consumer, ConsumerError, FaultPoint, GapPolicy, Handler, Inbox, Metrics,
    Retention, RetryPolicy,
};

/// Builder for [`Consumer`]; see [`Consumer::builder`].
pub struct ConsumerBuilder<H> {
    /// Consumer name: inbox namespace and `dlq-consumer`.
    name: String,
    /// Where effects and the inbox live.
    pool: sqlx::PgPool,
    /// The business effect.
    handler: H,
    /// librdkafka consumer settings (bootstrap servers, `group.id`, timeouts).
    kafka: Option<ClientConfig>,
    /// librdkafka producer settings for the DLQ; derived from `kafka` when absent.
    producer: Option<ClientConfig>,
    /// Topics to subscribe to.
    topics: Vec<String>,
    /// Dead-letter topic.
    dead_letter_topic: Option<String>,
    /// Retry policy for transient handler errors.
    retry: RetryPolicy,
    /// Records per transaction at most.
    batch_size: NonZeroUsize,
    /// Wait for a batch to fill.
    batch_linger: Duration,
    /// What to do about sequence gaps.
    gap_policy: GapPolicy,
    /// Inbox pruning.
    retention: Option<Retention>,
    /// Crash-test hook.
    fault: Option<FaultPoint>,
}

impl<H: Handler> Consumer<H> {
    /// Starts configuring a consumer named `name` (the inbox namespace: keep it stable across
    /// deployments, or every message looks new).
    pub fn builder(name: impl Into<String>, pool: sqlx::PgPool, handler: H) -> ConsumerBuilder<H> {
        ConsumerBuilder {
            name: name.into(),
            pool,
            handler,
            kafka: None,
            producer: None,
            topics: Vec::new(),
            dead_letter_topic: None,
            retry: RetryPolicy::default(),
            batch_size: NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN),
            batch_linger: Duration::from_millis(20),
            gap_policy: GapPolicy::default(),
            retention: None,
            fault: None,
        }
    }
}

impl<H: Handler> ConsumerBuilder<H> {
    /// Kafka consumer settings; must contain `bootstrap.servers` and `group.id`. Auto-commit
    /// and auto offset store are switched off whatever they say: committing offsets is this
    /// crate's job.
    #[must_use]
    pub fn kafka(mut self, config: ClientConfig) -> Self {
        self.kafka = Some(config);
        self
    }

    /// Producer settings for the dead-letter topic (default: the consumer's bootstrap servers,
    /// `acks=all`, idempotence on).
    #[must_use]
    pub fn producer(mut self, config: ClientConfig) -> Self {
        self.producer = Some(config);
        self
    }

    /// Adds topics to subscribe to.
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// The dead-letter topic (must exist).
    #[must_use]
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Retry policy for transient errors (default [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Records per transaction at most (default 500).
    #[must_use]
    pub fn batch_size(mut self, size: NonZeroUsize) -> Self {
        self.batch_size = size;
        self
    }

    /// How long to wait for a batch to fill after its first record (default 20 ms).
    #[must_use]
    pub fn batch_linger(mut self, linger: Duration) -> Self {
        self.batch_linger = linger;
        self
    }

    /// Sequence-gap policy (default [`GapPolicy::Hold`]).
    #[must_use]
    pub fn gap_policy(mut self, policy: GapPolicy) -> Self {
        self.gap_policy = policy;
        self
    }

    /// Prune inbox keys older than the retention's horizon while running (default: never).
    #[must_use]
    pub fn inbox_retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Crash-test hook: stop at `point` on the first batch.
    #[doc(hidden)]
    #[must_use]
    pub fn fault(mut self, point: FaultPoint) -> Self {
        self.fault = Some(point);
        self
    }

    /// Validates the configuration, creates the Kafka clients and subscribes.
    ///
    /// # Errors
    /// [`ConsumerError::Config`] for missing or invalid settings, [`ConsumerError::Kafka`] if
    /// librdkafka rejects the client configuration or the subscription.
    pub fn build(self) -> Result<Consumer<H>, ConsumerError> {
        let (consumer, topics) = self.assemble()?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.kafka.subscribe(&topics)?;
        Ok(consumer)
    }

    /// Everything [`build`](Self::build) does except joining the group: the consumer and the
    /// topics to subscribe to. Tests assign partitions by hand instead, so that no group
    /// protocol runs behind their back.
    pub(crate) fn assemble(self) -> Result<(Consumer<H>, Vec<String>), ConsumerError> {
        if self.name.is_empty() || self.name.contains('\0') {
            return Err(ConfigError::InvalidName.into());
        }
        if self.topics.is_empty() {
            return Err(ConfigError::NoTopics.into());
        }
        let mut kafka_config = self.kafka.ok_or(ConfigError::Missing("kafka"))?;
        let dlq_topic = self
            .dead_letter_topic
            .ok_or(ConfigError::Missing("dead_letter_topic"))?;
        let producer_config = self
            .producer
            .unwrap_or_else(|| default_producer(&kafka_config));
        kafka_config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let context = GroupContext {
            consumer: self.name.clone(),
            ..GroupContext::default()
        };
        let kafka: StreamConsumer<GroupContext> = kafka_config.create_with_context(context)?;
        let producer: FutureProducer = producer_config.create()?;
        let consumer = Consumer {
            kafka: Arc::new(kafka),
            processor: Processor {
                pool: self.pool,
                handler: Arc::new(self.handler),
                inbox: Inbox::new(self.name.clone()),
                dlq: DeadLetterQueue {
                    producer,
                    topic: dlq_topic,
                    consumer: self.name,
                },
                retry: self.retry,
                gap_policy: self.gap_policy,
                metrics: Metrics::default(),
                fault: self.fault,
            },
            batch_size: self.batch_size.get(),
            batch_linger: self.batch_linger,
            retention: self.retention,
        };
        Ok((consumer, self.topics))
    }
}

fn default_producer(consumer: &ClientConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    if let Some(servers) = consumer.get("bootstrap.servers") {
        config.set("bootstrap.servers", servers);
    }
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000");
    config
}
