//! # Idempotent consumer: at-least-once delivery, exactly-once effect
//!
//! Kafka delivers at least once: a consumer that crashes, times out of its group or loses a
//! partition in a rebalance reads some records again. Exactly-once *delivery* across a Kafka
//! topic and a Postgres database does not exist — the two cannot commit atomically together.
//! What does exist is an exactly-once *effect*: record each message's identity in an `inbox`
//! table **in the same Postgres transaction as the effect**, skip messages whose identity is
//! already there, and commit the Kafka offset only after that transaction. Messages that can
//! never succeed go to a dead-letter queue instead of blocking their partition.
//!
//! Records are read in the [`event_envelope`] format the outbox pattern publishes.
//!
//! ## Guarantees
//! - Every distinct event's effect is committed exactly once per consumer name — under
//!   redelivery, rebalances, and a crash on either side of the database commit.
//! - Offsets are committed only for records whose effect (or skip, or dead letter) is durable;
//!   never past an unprocessed record.
//! - Per aggregate, effects are applied in sequence order; gaps and stale events are detected
//!   and handled by an explicit [`GapPolicy`].
//! - A record that fails permanently, or transiently more than the [`RetryPolicy`] allows, or
//!   does not decode at all, is written to the dead-letter topic with its original key,
//!   value and headers plus the error and its source position — and the partition moves on.
//!
//! ## Not guaranteed
//! - Exactly-once *delivery*, or exactly-once effects outside the transaction (an HTTP call
//!   from a handler happens again on redelivery).
//! - The dead-letter topic is at-least-once: a crash after dead-lettering but before the
//!   commit dead-letters the record again on redelivery. Replay is deduplicated by event id.
//! - Dedupe outlives pruning only for enveloped events (via their sequence): a plain record
//!   redelivered after its inbox key was pruned is applied again. See [`Retention`].
//! - Ordering across partitions.
//!
//! ## Failure modes
//! | failure | what happens |
//! |---|---|
//! | crash before the DB commit | nothing persisted, records redelivered, applied once |
//! | crash after the DB commit, before the offset commit | records redelivered, inbox skips them |
//! | handler error, transient | retried with backoff + full jitter in a savepoint; then DLQ |
//! | handler error, permanent / malformed record | DLQ at once, partition continues |
//! | Postgres or DLQ unavailable | batch retried with capped backoff, nothing committed |
//! | rebalance | revocations arrive between batches; records of lost partitions are abandoned |
//! | rebalance while a batch is in flight | the batch finishes; its offsets cover only applied records |
//! | offset commit rejected | logged; records redelivered to the new owner and deduplicated |
//!
//! # Layout
//! - [`inbox`](Inbox) — `inbox.rs`: claim keys (`INSERT … ON CONFLICT DO NOTHING`);
//!   `inbox_table.rs`: the [`Inbox`] handle, [`Claim`], prune. Keys are stored under the
//!   consumer's number (`inbox_consumer`), not its name: see the migrations.
//! - `batch.rs` — one batch in one transaction: fast path, per-message savepoints, DLQ.
//! - `consumer.rs` — the loop: poll, abandon revoked partitions' records, process, commit
//!   offsets after the DB; crash table.
//! - `builder.rs` — [`ConsumerBuilder`]; `context.rs` — rebalance callbacks.
//! - `sequence.rs` — [`classify`], [`GapPolicy`], the `aggregate_version` table.
//! - `retry.rs` — backoff and the retry-or-dead-letter decision; `retry_policy.rs` —
//!   [`RetryPolicy`], [`Decision`]; `dlq.rs` — [`DeadLetter`], [`dlq_header`];
//!   `replay.rs` — [`replay`].
//! - `event.rs` — [`Event`], [`MessageId`]; `handler.rs` — [`Handler`].
//! - `retention.rs` — [`Retention`]; `lag.rs` — [`consumer_lag`]; `metrics.rs` — [`Metrics`].
//!
//! # Example
//! ```no_run
//! use idempotent_consumer::{Consumer, Event, Handler, HandlerError};
//! use tokio_util::sync::CancellationToken;
//!
//! struct CountOrders;
//!
//! impl Handler for CountOrders {
//!     async fn handle(&self, conn: &mut sqlx::PgConnection, _: &Event) -> Result<(), HandlerError> {
//!         sqlx::query("UPDATE stats SET orders = orders + 1").execute(conn).await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn run(pool: sqlx::PgPool, kafka: rdkafka::ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
//! idempotent_consumer::migrate(&pool).await?;
//! let consumer = Consumer::builder("order-stats", pool, CountOrders)
//!     .kafka(kafka) // bootstrap.servers + group.id
//!     .topics(["orders"])
//!     .dead_letter_topic("orders.dlq")
//!     .build()?;
//! consumer.run(CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```

mod batch;
mod builder;
mod consumer;
mod context;
mod dlq;
mod error;
mod event;
mod fault;
mod handler;
mod inbox_table;
mod lag;
mod metrics;
mod replay;
mod retention;
mod retry_policy;
mod sequence;

#[cfg(not(feature = "exercise"))]
mod inbox;
#[cfg(feature = "exercise")]
#[path = "../exercises/src/inbox.rs"]
mod inbox;

#[cfg(not(feature = "exercise"))]
mod retry;
#[cfg(feature = "exercise")]
#[path = "../exercises/src/retry.rs"]
mod retry;

pub use builder::ConsumerBuilder;
pub use consumer::{Consumer, ConsumerHandle};
pub use dlq::{DeadLetter, dlq_header};
pub use error::{ConfigError, ConsumerError, HandlerError};
pub use event::{DecodeError, Event, MessageId, Position};
#[doc(hidden)]
pub use fault::FaultPoint;
pub use handler::Handler;
pub use inbox_table::{Claim, Inbox};
pub use lag::consumer_lag;
pub use metrics::{Metrics, MetricsSnapshot};
pub use replay::{ReplayReport, ReplaySelection, replay};
pub use retention::Retention;
pub use retry_policy::{Decision, RetryPolicy};
pub use sequence::{GapPolicy, Verdict, classify};

/// Installs the `inbox`, `inbox_consumer` and `aggregate_version` tables and the
/// `inbox_consumer_id` function (idempotent).
///
/// Uses sqlx migrations with `ignore_missing`, so the same database may carry other
/// migrations (the application's, the outbox's) alongside these. Upgrading a database that
/// already has keys rewrites the inbox once (`20261126000100_inbox_consumer_ids.sql`): run it
/// at deploy time, with the consumers stopped.
///
/// # Errors
/// [`ConsumerError::Migrate`] if a migration fails.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), ConsumerError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}
