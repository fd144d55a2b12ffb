//! Transactional outbox: Postgres to Kafka with no lost events, ordered per aggregate.
//!
//! # The problem
//! A service that updates its database and then publishes an event makes two writes to two
//! systems. A crash between them loses the event; publishing first can announce a change that
//! later rolls back. No retry loop fixes this, because the two writes are not atomic.
//!
//! # The pattern
//! Write the event as a row of the outbox table in the SAME transaction as the business change
//! ([`enqueue`]). A separate [`Relay`] later claims committed rows, publishes them to Kafka, waits
//! for the acknowledgements and only then deletes them. The event exists exactly when the change
//! does, and it is delivered at least once.
//!
//! # Guarantees
//! - A rolled-back transaction publishes nothing; a committed one is published eventually, across
//!   relay crashes, Kafka outages and lost Postgres connections (rows stay until acknowledged).
//! - Per aggregate, events are published in sequence order, also with several relays running and
//!   across crashes: a relay claims an aggregate through its head row ([`claim`]).
//! - Every record is the shared [`event_envelope::Envelope`]: key = aggregate id, so one
//!   aggregate lives in one partition; `event-id` lets consumers drop duplicates.
//! - Published rows are deleted in the claiming transaction: the table holds only the backlog.
//!
//! # Not guaranteed
//! - Exactly once. A crash after the acks and before the delete commits publishes the batch again.
//!   Duplicates come in order (a replay restarts at the aggregate's head), and consumers dedupe by
//!   `event-id` (the idempotent-consumer pattern).
//! - Order across aggregates, and throughput for one hot aggregate beyond one relay's.
//! - Zombie fencing: a relay whose Postgres session was cut while it was still publishing can
//!   land records after its successor's replay of the same rows. Those are duplicates of earlier
//!   sequences, never new events out of order (both publish the same ascending run), but Kafka
//!   transactions would be needed to suppress them.
//! - Gap-free delivery in one librdkafka corner case: if records of a batch time out
//!   (`publish_timeout`) exactly as the broker returns, later records of the same batch can still
//!   be written. The relay awaits every delivery report before its next claim, which confines the
//!   window to a single batch; [`SequenceAudit`] on the consumer side detects it.
//!
//! # Failure modes
//! | failure | what happens |
//! |---|---|
//! | relay crashes (even between ack and delete) | claim rolls back, rows re-published in order: duplicates |
//! | Kafka down (from the start or mid-stream) | sends time out, claim commits nothing, relay backs off and retries |
//! | producer fenced after the outage (broker refuses its producer id/epoch) | producer replaced by a fresh one, batch re-published from the heads |
//! | Kafka rejects a row for good (too large) | row parked with the reason; its aggregate waits; others flow |
//! | Postgres connection terminated | claim fails, relay backs off, reconnects through the pool |
//! | NOTIFY lost (listener reconnecting) | the fallback poll interval picks the rows up |
//!
//! # Layout
//! - [`schema`](migrate): the embedded migrations (`migrations/`).
//! - `event`: [`NewEvent`], [`EnqueuedEvent`] — what is appended, and its validation.
//! - `writer`: [`enqueue`] — append inside the caller's transaction.
//! - `claim`: [`claim`], [`Claim`] — lock aggregates with `FOR UPDATE SKIP LOCKED`, delete on completion.
//! - `settle`: [`settle`], [`Outcome`] — the per-aggregate acked-prefix rule.
//! - `publish`: [`TopicRoute`] and the idempotent producer wrapper.
//! - `relay`: [`Relay`], [`RelayBuilder`], [`RelayHandle`], [`RelayMetrics`], [`PhaseTimes`], [`WakeMode`], [`lag`].
//! - `parked`: [`list_parked`], [`retry_parked`], [`discard_parked`].
//! - `orders`: [`place_order`], [`advance_order`] — the demo domain.
//! - `audit`: [`SequenceAudit`] — verify a consumed topic: lost, duplicates, order violations.
//!
//! # Example
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool, kafka: rdkafka::ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use outbox::{NewEvent, Relay, TopicRoute, enqueue};
//! use tokio_util::sync::CancellationToken;
//!
//! outbox::migrate(&pool).await?;
//! let relay = Relay::builder(pool.clone(), kafka, TopicRoute::Fixed("orders".into())).build()?;
//! let running = relay.spawn(CancellationToken::new());
//!
//! let mut tx = pool.begin().await?;
//! // ... the business change on `&mut *tx` ...
//! enqueue(&mut tx, &NewEvent::new("order", "o-1", "OrderPlaced", serde_json::json!({}))).await?;
//! tx.commit().await?; // the relay is woken by NOTIFY and publishes within milliseconds
//!
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

#[cfg(not(feature = "exercise"))]
mod claim;
#[cfg(feature = "exercise")]
#[path = "../exercises/src/claim.rs"]
mod claim;
mod event;
// A learner's claim (`exercise`) reads from the start of the table and uses no floor.
#[cfg_attr(feature = "exercise", allow(dead_code))]
mod floor;
#[cfg(not(feature = "exercise"))]
mod writer;
#[cfg(feature = "exercise")]
#[path = "../exercises/src/writer.rs"]
mod writer;

/// What the reference claim does while a batch awaits its acks: read the next window, delete
/// the batch provisionally. A learner's claim (`exercise` builds) does neither, so the relay
/// claims, publishes and settles each batch in turn.
mod overlap {
    #[cfg(not(feature = "exercise"))]
    pub(crate) use crate::claim::{Ahead, claim_ahead, publish_deleting, read_ahead};
    #[cfg(feature = "exercise")]
    pub(crate) use crate::floor::{Ahead, claim_ahead, publish_deleting, read_ahead};
}
mod audit;
mod error;
mod orders;
mod parked;
mod publish;
mod relay;
mod row;
mod schema;
mod settle;
// Only the reference claim deletes by location; a learner's claim (`exercise`) does not use it.
#[cfg(not(feature = "exercise"))]
mod tid;

pub use audit::{AuditReport, Observation, SequenceAudit};
#[cfg(not(feature = "exercise"))]
pub use claim::claim_from;
pub use claim::{Claim, claim};
pub use error::OutboxError;
pub use event::{EnqueuedEvent, NewEvent};
pub use floor::ScanFloor;
#[cfg(feature = "exercise")]
pub use floor::claim_from;
pub use orders::{ORDER, OrderStatus, advance_order, place_order};
pub use parked::{ParkedEvent, discard_parked, list_parked, retry_parked};
pub use publish::TopicRoute;
#[doc(hidden)]
pub use relay::FailPoint;
pub use relay::metrics::{Lag, lag};
pub use relay::wake::WakeMode;
pub use relay::{PhaseTimes, Relay, RelayBuilder, RelayError, RelayHandle, RelayMetrics};
pub use row::OutboxRow;
pub use schema::migrate;
pub use settle::{Outcome, Settlement, settle};
pub use writer::enqueue;
