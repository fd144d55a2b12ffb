//! Processing one polled batch: dead-letter malformed records, then apply the rest in one
//! transaction — optimistically all at once, and message by message (each in a savepoint, with
//! retries) only when something in the batch fails.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::dlq::DeadLetterQueue;
use crate::metrics::BatchTally;
use crate::sequence::{self, AggregateKey, GapPolicy, Verdict};
use crate::{
    Claim, Decision, Event, FaultPoint, Handler, HandlerError, Inbox, Metrics, RetryPolicy,
};

/// Why a batch was not committed. The offsets of an uncommitted batch are never committed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// Postgres failed as a whole (connection lost, commit failed): retry the batch.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The dead-letter topic did not acknowledge: retry the batch (never skip a message that
    /// is not safely dead-lettered).
    #[error("dead-letter publish failed: {0}")]
    DeadLetter(#[from] KafkaError),
    /// Shutdown arrived while a message was waiting for its retry: give the batch up.
    #[error("abandoned at shutdown")]
    Abandoned,
    /// A test fault point was reached.
    #[error("injected fault at {0:?}")]
    Fault(FaultPoint),
}

/// Inside `apply`: a handler's verdict on the message, or a failure of our own statements.
enum ApplyError {
    Handler(HandlerError),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Everything needed to process batches; shared by the consumer loop.
pub(crate) struct Processor<H> {
    pub(crate) pool: PgPool,
    pub(crate) handler: Arc<H>,
    pub(crate) inbox: Inbox,
    pub(crate) dlq: DeadLetterQueue,
    pub(crate) retry: RetryPolicy,
    pub(crate) gap_policy: GapPolicy,
    pub(crate) metrics: Metrics,
    pub(crate) fault: Option<FaultPoint>,
}

impl<H: Handler> Processor<H> {
    /// Processes `records` and commits the transaction. On `Ok`, every record is either applied,
    /// skipped as duplicate/stale, or durably dead-lettered, so its offset may be committed.
    pub(crate) async fn process(
        &self,
        records: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<BatchTally, BatchError> {
        let mut tally = BatchTally::default();
        let mut valid = Vec::with_capacity(records.len());
        for record in records {
            match Event::from_record(record) {
                Ok(event) => valid.push((record, event)),
                Err(e) => {
                    // Malformed bytes never parse differently: no retries.
                    tracing::warn!(offset = record_offset(record), error = %e, "dead-lettering malformed record");
                    self.dlq.send(record, &e.to_string(), 1).await?;
                    tally.dead_lettered += 1;
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        let events: Vec<&Event> = valid.iter().map(|(_, e)| e).collect();
        // A single message goes straight to the careful path: the fast path would only run its
        // first attempt twice.
        let fast = if events.len() > 1 {
            self.apply(&mut tx, &events).await
        } else {
            Err(ApplyError::Handler(HandlerError::transient(
                "single message",
            )))
        };
        match fast {
            Ok(t) => tally.add(t),
            Err(ApplyError::Database(e)) => return Err(e.into()),
            Err(ApplyError::Handler(_)) => {
                tx.rollback().await?;
                tx = self.pool.begin().await?;
                for (record, event) in &valid {
                    tally.add(self.one(&mut tx, record, event, shutdown).await?);
                }
            }
        }
        self.check_fault(FaultPoint::BeforeDbCommit)?; // dropping `tx` rolls back
        tx.commit().await?;
        self.check_fault(FaultPoint::AfterDbCommit)?;
        Ok(tally)
    }

    /// One message in its own savepoint, retried per the policy, dead-lettered when it fails
    /// for good. Rolling back to the savepoint undoes its inbox row, version bump and effect,
    /// and nothing else of the batch.
    async fn one(
        &self,
        conn: &mut PgConnection,
        record: &OwnedMessage,
        event: &Event,
        shutdown: &CancellationToken,
    ) -> Result<BatchTally, BatchError> {
        let mut attempt = 1;
        loop {
            let mut savepoint = conn.begin().await?;
            let error = match self.apply(&mut savepoint, &[event]).await {
                Ok(t) => {
                    savepoint.commit().await?;
                    return Ok(t);
                }
                Err(ApplyError::Handler(e)) => e,
                // Our own statement failed for this message only (the rollback below
                // succeeds): treat it like a transient handler error so it ends in the DLQ
                // rather than stalling the partition. If the connection is gone, the rollback
                // fails and the whole batch is retried instead.
                Err(ApplyError::Database(e)) => HandlerError::transient(e),
            };
            savepoint.rollback().await?;
            match self.retry.decide(attempt, &error, rand::random()) {
                Decision::Retry { after } => {
                    self.metrics.retried();
                    tracing::info!(offset = record_offset(record), attempt, ?after, %error, "retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(BatchError::Abandoned),
                        () = tokio::time::sleep(after) => {}
                    }
                    attempt += 1;
                }
                Decision::DeadLetter => {
                    tracing::warn!(offset = record_offset(record), attempt, %error, "dead-lettering");
                    self.dlq.send(record, &error.to_string(), attempt).await?;
                    return Ok(BatchTally {
                        dead_lettered: 1,
                        ..BatchTally::default()
                    });
                }
            }
        }
    }

    /// Claims inbox keys, checks sequences, runs the handler, stores versions — all through
    /// `conn`, so it commits or rolls back as one.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[&Event],
    ) -> Result<BatchTally, ApplyError> {
        let mut tally = BatchTally::default();
        let keys: Vec<String> = events.iter().map(|e| e.id.to_key()).collect();
        let claims = self.inbox.claim_many(conn, &keys).await?;
        let fresh: Vec<&Event> = events
            .iter()
            .zip(&claims)
            .filter(|(_, c)| **c == Claim::Fresh)
            .map(|(e, _)| *e)
            .collect();
        tally.duplicates = (events.len() - fresh.len()) as u64;

        let aggregates = aggregates_of(&fresh);
        let stored = sequence::load(conn, self.inbox.consumer(), &aggregates).await?;
        let (to_apply, changed) = self.check_sequences(fresh, &stored, &mut tally)?;
        if !to_apply.is_empty() {
            self.handler
                .handle_batch(conn, &to_apply)
                .await
                .map_err(ApplyError::Handler)?;
        }
        sequence::store(conn, self.inbox.consumer(), &changed).await?;
        tally.applied = to_apply.len() as u64;
        Ok(tally)
    }

    /// Walks the fresh events in order against their aggregates' versions; returns the events
    /// to apply and the new versions. Several events of one aggregate in one batch see each
    /// other's bumps through `changed`.
    fn check_sequences<'e>(
        &self,
        fresh: Vec<&'e Event>,
        stored: &HashMap<AggregateKey<'e>, i64>,
        tally: &mut BatchTally,
    ) -> Result<(Vec<&'e Event>, HashMap<AggregateKey<'e>, i64>), ApplyError> {
        let mut changed: HashMap<AggregateKey<'e>, i64> = HashMap::new();
        let mut to_apply = Vec::with_capacity(fresh.len());
        for event in fresh {
            let Some(env) = event.envelope() else {
                to_apply.push(event); // no sequence to check
                continue;
            };
            let key = (env.aggregate_type.as_str(), env.aggregate_id.as_str());
            let last = changed.get(&key).or_else(|| stored.get(&key)).copied();
            match sequence::classify(last, env.sequence) {
                Verdict::InOrder => {}
                Verdict::Stale { .. } => {
                    tally.stale += 1;
                    continue;
                }
                Verdict::Gap { expected } => match self.gap_policy {
                    GapPolicy::Apply => tally.gaps += 1,
                    GapPolicy::Hold => {
                        return Err(ApplyError::Handler(HandlerError::transient(format!(
                            "sequence gap in {}/{}: expected {expected}, got {}",
                            env.aggregate_type, env.aggregate_id, env.sequence
                        ))));
                    }
                },
            }
            changed.insert(key, env.sequence);
            to_apply.push(event);
        }
        Ok((to_apply, changed))
    }

    fn check_fault(&self, point: FaultPoint) -> Result<(), BatchError> {
        if self.fault == Some(point) {
            return Err(BatchError::Fault(point));
        }
        Ok(())
    }
}

/// Distinct aggregates of the enveloped events, for one `SELECT … FOR UPDATE`.
fn aggregates_of<'e>(events: &[&'e Event]) -> Vec<AggregateKey<'e>> {
    let mut seen: Vec<AggregateKey<'e>> = events
        .iter()
        .filter_map(|e| e.envelope())
        .map(|env| (env.aggregate_type.as_str(), env.aggregate_id.as_str()))
        .collect();
    // Sorted: concurrent transactions lock aggregates in the same order and cannot deadlock.
    seen.sort_unstable();
    seen.dedup();
    seen
}

fn record_offset(record: &OwnedMessage) -> i64 {
    rdkafka::Message::offset(record)
}
