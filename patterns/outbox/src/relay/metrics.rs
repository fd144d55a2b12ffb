//! What a relay reports: counters, lag and commit-to-ack latency.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use sqlx::PgPool;
use tokio::sync::Notify;

/// Shared counters of one relay (all clones of a [`Relay`](crate::Relay) report here).
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Rows acknowledged by Kafka AND deleted by a committed claim.
    published: AtomicU64,
    /// Woken whenever `published` grows, for [`Metrics::published_reaches`].
    progress: Notify,
    /// Rows parked after a permanent rejection.
    parked: AtomicU64,
    /// Rows that failed transiently (they stay and are retried).
    failed: AtomicU64,
    /// Claims that ended in a database error (connection lost, commit failed).
    database_errors: AtomicU64,
    /// Claims completed (including empty ones that found nothing).
    batches: AtomicU64,
    /// Producers replaced after librdkafka declared them fatally failed.
    producer_renewals: AtomicU64,
    /// Non-empty claims made from a window read ahead while the claim before was publishing.
    read_ahead_claims: AtomicU64,
    /// Microseconds spent in each phase of non-empty claims, summed: where a batch's time goes.
    phase_us: [AtomicU64; 3],
    /// Unpublished, unparked rows at the last lag probe.
    backlog: AtomicU64,
    /// Parked rows at the last lag probe.
    parked_backlog: AtomicU64,
    /// Age of the oldest unpublished row at the last lag probe, in microseconds (0 = none).
    oldest_age_us: AtomicU64,
    /// Insert-to-ack latency of every acknowledged record, in microseconds. A std mutex is right:
    /// it is held for one `record` call, never across an `.await`.
    latency_us: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            published: AtomicU64::new(0),
            progress: Notify::new(),
            parked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            database_errors: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            producer_renewals: AtomicU64::new(0),
            read_ahead_claims: AtomicU64::new(0),
            phase_us: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            backlog: AtomicU64::new(0),
            parked_backlog: AtomicU64::new(0),
            oldest_age_us: AtomicU64::new(0),
            // 1 µs .. 1 h at 3 significant digits. The bounds are constants, valid by inspection
            // (low >= 1, high >= 2 * low, precision <= 5), so this can never fail at run time.
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid"),
            ),
        }
    }
}

impl Metrics {
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    pub(crate) fn add_published(&self, n: usize) {
        self.published.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    /// Returns once `published` is at least `target`.
    pub(crate) async fn published_reaches(&self, target: u64) {
        loop {
            // Registered before the check, so an increment between the check and the await
            // still wakes this waiter.
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.published() >= target {
                return;
            }
            progress.await;
        }
    }
    pub(crate) fn add_parked(&self, n: usize) {
        self.parked.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_database_error(&self) {
        self.database_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_producer_renewal(&self) {
        self.producer_renewals.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_read_ahead_claim(&self) {
        self.read_ahead_claims.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds the time one non-empty batch spent claiming, publishing and completing.
    pub(crate) fn add_phase_times(&self, claim: Duration, publish: Duration, complete: Duration) {
        for (slot, spent) in self.phase_us.iter().zip([claim, publish, complete]) {
            slot.fetch_add(
                u64::try_from(spent.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
    pub(crate) fn add_batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_latency(&self, latency: chrono::TimeDelta) {
        let us = u64::try_from(latency.num_microseconds().unwrap_or(0).max(1)).unwrap_or(1);
        if let Ok(mut h) = self.latency_us.lock() {
            h.saturating_record(us);
        }
    }

    pub(crate) fn set_lag(&self, lag: &Lag) {
        self.backlog.store(lag.backlog, Ordering::Relaxed);
        self.parked_backlog.store(lag.parked, Ordering::Relaxed);
        let us = lag
            .oldest_unpublished_age
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.oldest_age_us.store(us, Ordering::Relaxed);
    }

    pub(crate) fn latency_histogram(&self) -> Option<Histogram<u64>> {
        self.latency_us.lock().ok().map(|h| h.clone())
    }

    pub(crate) fn snapshot(&self) -> RelayMetrics {
        let (p50, p99, samples) = self.latency_us.lock().map_or((None, None, 0), |h| {
            if h.is_empty() {
                (None, None, 0)
            } else {
                let at = |q: f64| Some(Duration::from_micros(h.value_at_quantile(q)));
                (at(0.50), at(0.99), h.len())
            }
        });
        let age = self.oldest_age_us.load(Ordering::Relaxed);
        RelayMetrics {
            published: self.published.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            database_errors: self.database_errors.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            producer_renewals: self.producer_renewals.load(Ordering::Relaxed),
            read_ahead_claims: self.read_ahead_claims.load(Ordering::Relaxed),
            phase_times: PhaseTimes {
                claim: Duration::from_micros(self.phase_us[0].load(Ordering::Relaxed)),
                publish: Duration::from_micros(self.phase_us[1].load(Ordering::Relaxed)),
                complete: Duration::from_micros(self.phase_us[2].load(Ordering::Relaxed)),
            },
            backlog: self.backlog.load(Ordering::Relaxed),
            parked_backlog: self.parked_backlog.load(Ordering::Relaxed),
            oldest_unpublished_age: (age > 0).then(|| Duration::from_micros(age)),
            latency_samples: samples,
            latency_p50: p50,
            latency_p99: p99,
        }
    }
}

/// A point-in-time copy of a relay's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMetrics {
    /// Rows acknowledged by Kafka and deleted by a committed claim (each counted once).
    pub published: u64,
    /// Rows this relay parked after a permanent rejection.
    pub parked: u64,
    /// Row sends that failed transiently and were left for a retry.
    pub failed: u64,
    /// Claims that failed on the database side (e.g. the connection was terminated).
    pub database_errors: u64,
    /// Claims completed, including empty ones.
    pub batches: u64,
    /// Kafka producers replaced because librdkafka declared them fatally failed (e.g. fenced
    /// after records timed out during a broker outage).
    pub producer_renewals: u64,
    /// Non-empty claims made from a window read while the claim before it was still
    /// publishing (a full batch means more is waiting, so the relay reads the next window
    /// during the broker round trip).
    pub read_ahead_claims: u64,
    /// Cumulative time non-empty batches spent in each phase.
    pub phase_times: PhaseTimes,
    /// Unpublished, unparked rows in the outbox at the last lag probe.
    pub backlog: u64,
    /// Parked rows waiting for an operator at the last lag probe.
    pub parked_backlog: u64,
    /// Age of the oldest unpublished row at the last lag probe (`None` when the backlog is empty).
    pub oldest_unpublished_age: Option<Duration>,
    /// How many acknowledgements the latency figures cover.
    pub latency_samples: u64,
    /// Median insert-to-ack latency.
    pub latency_p50: Option<Duration>,
    /// 99th percentile insert-to-ack latency.
    pub latency_p99: Option<Duration>,
}

/// Cumulative wall-clock time of the relay's phases, over every non-empty batch: divide by
/// [`RelayMetrics::published`] for a per-event cost, compare them to see what bounds throughput.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Claim: read the window (includes decoding the rows) and lock its heads, building the
    /// rows' record headers during the lock; for a window read ahead, only the lock and the
    /// headers.
    pub claim: Duration,
    /// Produce and wait for every acknowledgement, and for what the relay does meanwhile:
    /// reading the next window ahead, deleting the batch provisionally.
    pub publish: Duration,
    /// The commit, after undoing the provisional delete and deleting and parking row by row
    /// when not every row was acknowledged.
    pub complete: Duration,
}

/// The outbox's lag as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    /// Unpublished, unparked rows.
    pub backlog: u64,
    /// Parked rows.
    pub parked: u64,
    /// Age of the oldest unpublished, unparked row (server clock on both ends).
    pub oldest_unpublished_age: Option<Duration>,
}

/// The lag of the rows with an id above `$1`.
const LAG: &str = "
SELECT count(*) FILTER (WHERE parked_at IS NULL),
       count(*) FILTER (WHERE parked_at IS NOT NULL),
       EXTRACT(EPOCH FROM clock_timestamp()
           - min(created_at) FILTER (WHERE parked_at IS NULL))::float8
FROM outbox
WHERE id > $1";

/// Measures the outbox lag. Reads the whole table, rows deleted but not yet vacuumed included;
/// the relay itself counts only above its scan floor (once per second).
///
/// # Errors
/// Any database error.
pub async fn lag(pool: &PgPool) -> Result<Lag, sqlx::Error> {
    lag_of(pool, i64::MIN).await
}

/// [`lag`] above a scan floor: every row up to `floor` is gone for good (see
/// [`ScanFloor`](crate::ScanFloor)), so walking the primary key from there counts the same rows
/// without reading the pages of rows already published. A sequential scan reads those too:
/// 100-200 ms per probe after 1M deletes, even vacuumed, as `VACUUM` does not give the pages back.
pub(crate) async fn lag_above(pool: &PgPool, floor: i64) -> Result<Lag, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(crate::floor::PIN_PLAN)
        .execute(&mut *tx)
        .await?;
    let lag = lag_of(&mut *tx, floor).await?;
    tx.commit().await?;
    Ok(lag)
}

/// Runs [`LAG`] for the rows above `floor`.
async fn lag_of(db: impl sqlx::PgExecutor<'_>, floor: i64) -> Result<Lag, sqlx::Error> {
    let (backlog, parked, age_s): (i64, i64, Option<f64>) =
        sqlx::query_as(LAG).bind(floor).fetch_one(db).await?;
    Ok(Lag {
        backlog: u64::try_from(backlog).unwrap_or(0),
        parked: u64::try_from(parked).unwrap_or(0),
        oldest_unpublished_age: age_s.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok()),
    })
}
