//! The business effect: what a consumer does with each event, inside the inbox's transaction.

use std::future::Future;

use sqlx::PgConnection;

use crate::{Event, HandlerError};

/// Applies events to Postgres.
///
/// The connection is already inside the transaction (and, when the consumer isolates a single
/// message, inside a savepoint) that also records the message in the inbox. Everything the
/// handler writes through it commits or rolls back together with that record — that is the
/// whole trick. A handler therefore must not commit, must not open its own connection for the
/// effect, and must not cause effects outside Postgres (an HTTP call cannot be rolled back
/// when a later message of the batch fails; put such calls behind an outbox instead).
///
/// # Example
/// ```
/// use idempotent_consumer::{Event, Handler, HandlerError};
/// use sqlx::PgConnection;
///
/// #[derive(serde::Deserialize)]
/// struct Deposited { account: String, amount: i64 }
///
/// struct Balances;
///
/// impl Handler for Balances {
///     async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
///         let d: Deposited = event.decode()?; // wrong shape → permanent → dead letter
///         sqlx::query("UPDATE balance SET amount = amount + $2 WHERE account = $1")
///             .bind(d.account)
///             .bind(d.amount)
///             .execute(conn)
///             .await?; // deadlock, lost connection → transient → retried
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Applies one event.
    ///
    /// # Errors
    /// [`HandlerError::Transient`] to have the event retried with backoff,
    /// [`HandlerError::Permanent`] to dead-letter it at once.
    fn handle(
        &self,
        conn: &mut PgConnection,
        event: &Event,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Applies several events, in order, as one unit.
    ///
    /// The consumer first tries a whole polled batch through this method (one transaction, no
    /// savepoints). Override it to turn N statements into one — that is where the throughput
    /// of a batching consumer comes from. It must have the same effect as calling
    /// [`handle`](Handler::handle) for each event in order. If it fails, the consumer rolls the
    /// batch back and replays it one message at a time, each in its own savepoint, to find and
    /// isolate the failing message.
    ///
    /// # Errors
    /// Any error makes the consumer fall back to per-message processing.
    fn handle_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&Event],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            for event in events {
                self.handle(conn, event).await?;
            }
            Ok(())
        }
    }
}
