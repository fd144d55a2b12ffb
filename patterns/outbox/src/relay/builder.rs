//! Relay configuration, validated once at construction.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use sqlx::PgPool;

use super::{FailPoint, Relay, RelayError, RelayInner};
use crate::publish::{Publisher, TopicRoute};
use crate::relay::metrics::Metrics;
use crate::relay::wake::WakeMode;

/// A test hook called at named points of the relay pipeline; returning `true` makes the relay
/// stop there as if the process had died.
pub(crate) type FailHook = Arc<dyn Fn(FailPoint) -> bool + Send + Sync>;

/// Builds a [`Relay`]. Obtain one with [`Relay::builder`].
#[must_use]
pub struct RelayBuilder {
    /// Pool the relay claims from; its `application_name` identifies the relay's backends.
    pool: PgPool,
    /// Producer settings from the caller (at least `bootstrap.servers`).
    kafka: ClientConfig,
    /// Topic routing.
    topics: TopicRoute,
    /// Max rows per claim.
    batch_size: NonZeroUsize,
    /// Claim loops per relay.
    workers: NonZeroUsize,
    /// Fallback poll interval (the only wake-up source in [`WakeMode::PollOnly`]).
    poll_interval: Duration,
    /// How the relay learns about new rows.
    wake: WakeMode,
    /// First backoff after a failure.
    backoff_min: Duration,
    /// Backoff ceiling.
    backoff_max: Duration,
    /// How long librdkafka may try to deliver one record (`message.timeout.ms`).
    publish_timeout: Duration,
    /// Producer batching delay (`linger.ms`).
    linger: Duration,
    /// Test hook, see [`FailPoint`].
    fail_hook: Option<FailHook>,
}

impl std::fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("topics", &self.topics)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("wake", &self.wake)
            .finish_non_exhaustive()
    }
}

impl RelayBuilder {
    pub(super) fn new(pool: PgPool, kafka: ClientConfig, topics: TopicRoute) -> Self {
        Self {
            pool,
            kafka,
            topics,
            batch_size: NonZeroUsize::new(5_000).unwrap_or(NonZeroUsize::MIN),
            workers: NonZeroUsize::MIN,
            poll_interval: Duration::from_secs(1),
            wake: WakeMode::Notify,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(1),
            fail_hook: None,
        }
    }

    /// Max rows per claim (default 5,000). A claim holds its rows in memory and costs a few
    /// round trips whatever its size, so larger batches publish faster (see the benchmark in the
    /// README) but use more memory with large payloads, hold their aggregates longer and
    /// re-publish more after a crash. Under light load batches are as small as the backlog.
    pub fn batch_size(mut self, rows: NonZeroUsize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Claim loops run side by side in this relay (default 1). Each owns the aggregates it
    /// claimed, so order holds. More workers overlap one claim's database round trips with
    /// another's broker round trips; that pays off when Postgres and Kafka are remote, not when
    /// everything shares a few cores (see the benchmark in the README).
    pub fn workers(mut self, workers: NonZeroUsize) -> Self {
        self.workers = workers;
        self
    }

    /// Fallback poll interval (default 1 s). With [`WakeMode::Notify`] it only bounds the delay
    /// after a lost notification.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// `LISTEN/NOTIFY` wake-ups (default) or polling only.
    pub fn wake(mut self, mode: WakeMode) -> Self {
        self.wake = mode;
        self
    }

    /// Backoff bounds after a failed batch (default 100 ms … 10 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// How long one record may take to be acknowledged before it counts as failed (default
    /// 10 s). Also bounds how long a claim (and its transaction) stays open while Kafka is down.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Producer `linger.ms` (default 1 ms). The relay enqueues a whole claim at once, so librdkafka
    /// batches it anyway; a longer linger would only add latency to every claim (the next claim
    /// waits for this one's acks).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Test hook: `hook(point)` returning `true` crashes the relay at that point.
    #[doc(hidden)]
    pub fn fail_point(mut self, hook: impl Fn(FailPoint) -> bool + Send + Sync + 'static) -> Self {
        self.fail_hook = Some(Arc::new(hook));
        self
    }

    /// Validates the configuration and creates the producer.
    ///
    /// # Errors
    /// [`RelayError::InvalidConfig`] for a zero interval or timeout or `min > max` backoff;
    /// [`RelayError::Kafka`] if librdkafka rejects the producer configuration.
    pub fn build(self) -> Result<Relay, RelayError> {
        self.validate()?;
        let mut kafka = self.kafka.clone();
        kafka
            // Ordering per partition survives internal retries only with idempotence on; it
            // implies acks=all and at most 5 in-flight requests per connection.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger.as_millis().to_string())
            // Every claim waits for its acks before the next one: Nagle's algorithm would hold
            // the last small produce request of a batch back for a delayed TCP ack.
            .set("socket.nagle.disable", "true")
            .set(
                "message.timeout.ms",
                self.publish_timeout.as_millis().to_string(),
            );
        let publisher = Publisher::new(kafka, self.topics)?;
        Ok(Relay {
            inner: Arc::new(RelayInner {
                pool: self.pool,
                publisher,
                batch_size: self.batch_size,
                workers: self.workers,
                poll_interval: self.poll_interval,
                wake: self.wake,
                backoff: (self.backoff_min, self.backoff_max),
                flush_timeout: self.publish_timeout,
                fail_hook: self.fail_hook,
                metrics: Metrics::default(),
            }),
        })
    }

    fn validate(&self) -> Result<(), RelayError> {
        if self.poll_interval.is_zero() {
            return Err(RelayError::InvalidConfig("poll_interval must be > 0"));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(RelayError::InvalidConfig("backoff needs 0 < min <= max"));
        }
        if self.publish_timeout < Duration::from_millis(1) {
            return Err(RelayError::InvalidConfig("publish_timeout must be >= 1 ms"));
        }
        Ok(())
    }
}
