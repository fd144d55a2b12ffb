//! The relay: claim committed rows, publish them, wait for the acks, delete them.
//!
//! One loop per relay process; run several processes for availability. Each iteration is one
//! claim transaction: [`claim`](crate::claim) locks whole aggregates, the
//! publisher sends their rows and awaits every acknowledgement (meanwhile the claim deletes them
//! provisionally and reads the next window), [`settle`](crate::settle) decides per row, and the
//! claim commits the deletes. Between iterations the relay sleeps until a
//! `NOTIFY`, the poll interval or shutdown, or backs off after a failure.

pub(crate) mod backoff;
mod builder;
pub(crate) mod metrics;
pub(crate) mod wake;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use self::backoff::Backoff;
use self::builder::FailHook;
pub use self::builder::RelayBuilder;
use self::metrics::Metrics;
pub use self::metrics::{PhaseTimes, RelayMetrics};
use self::wake::{WakeMode, Wakers};
use crate::publish::{Publisher, TopicRoute};
use crate::{OutboxError, ScanFloor, settle};

/// How often the relay refreshes its lag gauges (a `count(*)` over the backlog).
const LAG_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why the relay stopped or could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A builder setting is out of range.
    #[error("invalid relay configuration: {0}")]
    InvalidConfig(&'static str),
    /// The producer could not be created or flushed.
    #[error("kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// The relay stopped at a [`FailPoint`] (tests only).
    #[doc(hidden)]
    #[error("relay crashed at fail point {0:?}")]
    Crashed(FailPoint),
    /// The relay task panicked or was aborted.
    #[error("relay task failed: {0}")]
    Task(String),
}

/// Named points where a test can make the relay "die".
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// Kafka has acknowledged the batch, the deletes are not committed yet: the classic
    /// duplicate window.
    AfterPublishBeforeCommit,
}

/// A transactional-outbox relay. Cheap to clone; clones share the producer, pool and metrics.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayInner>,
}

/// Everything a relay loop needs, shared by clones.
struct RelayInner {
    /// Where the outbox lives.
    pool: PgPool,
    /// The Kafka side.
    publisher: Publisher,
    /// Max rows per claim.
    batch_size: NonZeroUsize,
    /// Claim loops running side by side.
    workers: NonZeroUsize,
    /// Fallback poll interval.
    poll_interval: Duration,
    /// NOTIFY or poll-only.
    wake: WakeMode,
    /// `(min, max)` backoff after failures.
    backoff: (Duration, Duration),
    /// How long shutdown waits for librdkafka to drain.
    flush_timeout: Duration,
    /// Test hook.
    fail_hook: Option<FailHook>,
    /// Counters and latency.
    metrics: Metrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("topics", &self.inner.publisher.topics)
            .field("batch_size", &self.inner.batch_size)
            .field("wake", &self.inner.wake)
            .finish_non_exhaustive()
    }
}

/// The window a claim loop read ahead for its next claim, and how many claims in a row came
/// from such windows.
#[derive(Default)]
struct ReadAhead {
    window: Option<crate::overlap::Ahead>,
    chained: usize,
}

impl ReadAhead {
    /// Claims from windows read ahead before the loop claims from its floor again: only a
    /// claim from the floor moves the floor forward.
    const MAX_CHAINED: usize = 4;
}

/// What one claim achieved.
struct Step {
    /// Rows claimed (0: the outbox had nothing claimable).
    claimed: usize,
    /// Some row failed transiently: back off before the next claim.
    transient_failure: bool,
}

impl Relay {
    /// Starts configuring a relay reading `pool` and producing with `kafka` (which must set
    /// `bootstrap.servers`) to the topics chosen by `topics`.
    pub fn builder(pool: PgPool, kafka: ClientConfig, topics: TopicRoute) -> RelayBuilder {
        RelayBuilder::new(pool, kafka, topics)
    }

    /// Current metrics.
    pub fn metrics(&self) -> RelayMetrics {
        self.inner.metrics.snapshot()
    }

    /// Events published (acknowledged and deleted) so far: one atomic load, cheap enough to
    /// poll in a loop, unlike [`metrics`](Self::metrics), which computes latency percentiles
    /// under the histogram's lock.
    pub fn published(&self) -> u64 {
        self.inner.metrics.published()
    }

    /// Returns once at least `target` events have been published (see
    /// [`published`](Self::published)), woken by the claim that gets there rather than by
    /// polling. Wrap it in a timeout: it waits for as long as that takes.
    pub async fn published_reaches(&self, target: u64) {
        self.inner.metrics.published_reaches(target).await;
    }

    /// A copy of the insert-to-ack latency histogram (microseconds).
    pub fn latency_histogram(&self) -> Option<Histogram<u64>> {
        self.inner.metrics.latency_histogram()
    }

    /// Runs the relay until `shutdown` is cancelled, then finishes the batch in hand, flushes
    /// the producer and returns.
    ///
    /// Database and Kafka failures never end the loop: the relay logs them, backs off and tries
    /// again, because the rows are safe in Postgres meanwhile.
    ///
    /// # Errors
    /// [`RelayError::Kafka`] if the final flush fails.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let inner = &self.inner;
        let wakers = Wakers::new(inner.workers.get());
        let listener_stop = shutdown.child_token();
        let listener = (inner.wake == WakeMode::Notify).then(|| {
            wake::spawn_listener(inner.pool.clone(), wakers.clone(), listener_stop.clone())
        });
        let result = self.run_workers(&wakers, &shutdown).await;
        listener_stop.cancel();
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        result?;
        inner.publisher.flush(inner.flush_timeout).await?;
        tracing::info!("outbox relay stopped");
        Ok(())
    }

    /// Runs `workers` claim loops side by side. They share the producer and never publish the
    /// same aggregate (each claim owns its aggregates), so order holds; more workers overlap one
    /// batch's database round trips with another's broker round trips.
    async fn run_workers(
        &self,
        wakers: &Wakers,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let stop = shutdown.child_token();
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..self.inner.workers.get() {
            let (relay, wakers, stop) = (self.clone(), wakers.clone(), stop.clone());
            workers.spawn(async move { relay.run_loop(worker, &wakers, &stop).await });
        }
        let mut result = Ok(());
        while let Some(joined) = workers.join_next().await {
            let outcome = joined
                .map_err(|e| RelayError::Task(e.to_string()))
                .and_then(|r| r);
            if let Err(error) = outcome {
                // One worker crashed (fail point) or panicked: stop the others too.
                stop.cancel();
                if result.is_ok() {
                    result = Err(error);
                }
            }
        }
        result
    }

    async fn run_loop(
        &self,
        worker: usize,
        wakers: &Wakers,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let inner = &self.inner;
        let Some(wake) = wakers.slot(worker) else {
            return Ok(());
        };
        let mut backoff = Backoff::new(inner.backoff.0, inner.backoff.1);
        let mut floor = ScanFloor::default();
        let mut ahead = ReadAhead::default();
        let mut last_probe: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            // One worker probes the lag; a count(*) per worker would be wasted work.
            if worker == 0 && last_probe.is_none_or(|t| t.elapsed() >= LAG_PROBE_EVERY) {
                self.probe_lag(floor.get()).await;
                last_probe = Some(Instant::now());
            }
            let pause = match self.step(&mut floor, &mut ahead).await {
                Ok(step) if step.transient_failure => Some(backoff.next_delay()),
                Ok(step) => {
                    backoff.reset();
                    if step.claimed >= inner.batch_size.get() {
                        continue; // a full batch: there is probably more right now
                    }
                    None
                }
                Err(StepError::Crashed(point)) => return Err(RelayError::Crashed(point)),
                Err(StepError::Database(error)) => {
                    tracing::warn!(%error, "outbox claim failed; backing off");
                    inner.metrics.add_database_error();
                    Some(backoff.next_delay())
                }
            };
            let timeout = pause.unwrap_or(inner.poll_interval);
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(timeout) => {}
                // After a failure only the backoff timer may end the pause; otherwise a stream
                // of commits would turn the backoff into a hot retry loop.
                () = wake.notified(), if pause.is_none() => {}
            }
        }
        Ok(())
    }

    /// One claim → publish → settle → commit cycle.
    async fn step(&self, floor: &mut ScanFloor, ahead: &mut ReadAhead) -> Result<Step, StepError> {
        let inner = &self.inner;
        let started = Instant::now();
        let mut from_ahead = None;
        if let Some(window) = ahead.window.take() {
            let claim = crate::overlap::claim_ahead(&inner.pool, window).await?;
            if claim.rows().is_empty() {
                claim.release().await?;
            } else {
                from_ahead = Some(claim);
            }
        }
        // A window read ahead that yields nothing falls back to the floor, like having none.
        let mut claim = match from_ahead {
            Some(claim) => {
                ahead.chained += 1;
                inner.metrics.add_read_ahead_claim();
                claim
            }
            None => {
                ahead.chained = 0;
                crate::claim_from(&inner.pool, inner.batch_size, floor).await?
            }
        };
        let claimed = claim.rows().len();
        if claimed == 0 {
            claim.release().await?;
            inner.metrics.add_batch();
            return Ok(Step {
                claimed,
                transient_failure: false,
            });
        }
        let claimed_at = Instant::now();
        // A full batch means more is waiting: read the next window while this one's records
        // await their acks. Every few claims the loop reads from the floor again instead, so
        // the floor keeps moving (see `ReadAhead`).
        let read_next = claim.rows().last().filter(|_| {
            claimed >= inner.batch_size.get() && ahead.chained < ReadAhead::MAX_CHAINED
        });
        let read_next = read_next
            .map(|last| crate::overlap::read_ahead(&inner.pool, inner.batch_size, last.id));
        // Meanwhile the claim deletes its rows provisionally, on its own connection.
        let (outcomes, next) =
            crate::overlap::publish_deleting(&mut claim, |rows, headers| async {
                let publish = inner.publisher.publish(rows, headers, &inner.metrics);
                match read_next {
                    Some(read) => {
                        let (outcomes, next) = tokio::join!(publish, read);
                        // A failed read ahead only loses the overlap: the next claim reads
                        // normally.
                        (outcomes, next.ok().flatten())
                    }
                    None => (publish.await, None),
                }
            })
            .await;
        let published_at = Instant::now();
        let plan = settle(claim.rows(), &outcomes);
        if let Some(hook) = &inner.fail_hook {
            let point = FailPoint::AfterPublishBeforeCommit;
            if hook(point) {
                // Dropping the claim rolls it back, exactly what a dead process leaves behind.
                drop(claim);
                return Err(StepError::Crashed(point));
            }
        }
        for (id, reason) in &plan.park {
            tracing::error!(id, %reason, "outbox row rejected permanently; parked");
        }
        claim.complete(&plan).await?;
        inner.metrics.add_phase_times(
            claimed_at - started,
            published_at - claimed_at,
            published_at.elapsed(),
        );
        if !plan.transient_failure {
            ahead.window = next;
        }
        inner.metrics.add_batch();
        inner.metrics.add_published(plan.delete.len());
        inner.metrics.add_parked(plan.park.len());
        inner
            .metrics
            .add_failed(outcomes.iter().filter(|o| is_failure(o)).count());
        if plan.transient_failure {
            let reason = outcomes.iter().find_map(|o| match o {
                crate::Outcome::Failed(reason) => Some(reason.as_str()),
                _ => None,
            });
            tracing::warn!(
                kept = plan.kept,
                reason = reason.unwrap_or("?"),
                "kafka refused part of the batch; will retry"
            );
        }
        Ok(Step {
            claimed,
            transient_failure: plan.transient_failure,
        })
    }

    /// Refreshes the lag gauges, counting above `floor` (the probing worker's scan floor).
    async fn probe_lag(&self, floor: i64) {
        match metrics::lag_above(&self.inner.pool, floor).await {
            Ok(lag) => self.inner.metrics.set_lag(&lag),
            Err(error) => tracing::debug!(%error, "lag probe failed"),
        }
    }

    /// Spawns [`run`](Relay::run) on the current runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime (like `tokio::spawn`).
    pub fn spawn(&self, shutdown: CancellationToken) -> RelayHandle {
        let relay = self.clone();
        let token = shutdown.clone();
        RelayHandle {
            relay: self.clone(),
            shutdown,
            task: tokio::spawn(async move { relay.run(token).await }),
        }
    }
}

fn is_failure(outcome: &crate::Outcome) -> bool {
    matches!(outcome, crate::Outcome::Failed(_))
}

/// Why one step failed.
enum StepError {
    /// Postgres failed, or the claim did not match the outbox; the claim rolled back.
    Database(OutboxError),
    /// A fail point fired.
    Crashed(FailPoint),
}

impl From<sqlx::Error> for StepError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<OutboxError> for StepError {
    fn from(error: OutboxError) -> Self {
        Self::Database(error)
    }
}

/// A relay running in a background task.
#[derive(Debug)]
pub struct RelayHandle {
    /// The running relay (for metrics).
    relay: Relay,
    /// Stops it.
    shutdown: CancellationToken,
    /// The task running [`Relay::run`].
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl RelayHandle {
    /// Current metrics of the running relay.
    pub fn metrics(&self) -> RelayMetrics {
        self.relay.metrics()
    }

    /// Events published so far; see [`Relay::published`].
    pub fn published(&self) -> u64 {
        self.relay.published()
    }

    /// Returns once at least `target` events have been published; see
    /// [`Relay::published_reaches`].
    pub async fn published_reaches(&self, target: u64) {
        self.relay.published_reaches(target).await;
    }

    /// The relay being run.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Whether the relay task has ended (stopped, or crashed at a fail point).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the relay to stop, then waits for it to finish its batch and flush the producer.
    ///
    /// # Errors
    /// What [`Relay::run`] returned, or [`RelayError::Task`] if the task panicked.
    pub async fn shutdown(self) -> Result<(), RelayError> {
        self.shutdown.cancel();
        self.task
            .await
            .map_err(|e| RelayError::Task(e.to_string()))?
    }
}
