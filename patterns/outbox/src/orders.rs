//! A small `orders` domain showing the writer API: each state change and its event commit
//! together, in one transaction.

use sqlx::PgPool;
use uuid::Uuid;

use crate::{NewEvent, OutboxError, enqueue};

/// Aggregate type of every order event.
pub const ORDER: &str = "order";

/// The life cycle of an order; each transition emits the event of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Emits `OrderPlaced`.
    Placed,
    /// Emits `OrderPaid`.
    Paid,
    /// Emits `OrderShipped`.
    Shipped,
}

impl OrderStatus {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
        }
    }

    /// Event emitted on entering this status.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Placed => "OrderPlaced",
            Self::Paid => "OrderPaid",
            Self::Shipped => "OrderShipped",
        }
    }
}

/// Inserts an order and its `OrderPlaced` event in one transaction; returns the order id.
///
/// `traceparent` is the caller's W3C trace context, carried to consumers in the record headers.
///
/// # Errors
/// [`OutboxError::Database`]; nothing is stored then.
pub async fn place_order(
    pool: &PgPool,
    customer: &str,
    total_cents: i64,
    traceparent: Option<&str>,
) -> Result<Uuid, OutboxError> {
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO orders (id, customer, total_cents, status) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(customer)
        .bind(total_cents)
        .bind(OrderStatus::Placed.as_str())
        .execute(&mut *tx)
        .await?;
    let payload =
        serde_json::json!({ "order_id": id, "customer": customer, "total_cents": total_cents });
    let mut event = NewEvent::new(
        ORDER,
        id.to_string(),
        OrderStatus::Placed.event_type(),
        payload,
    );
    if let Some(tp) = traceparent {
        event = event.with_traceparent(tp);
    }
    enqueue(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(id)
}

/// Moves an order to `status` and emits the matching event, in one transaction.
///
/// # Errors
/// [`OutboxError::Database`] (including `RowNotFound` for an unknown order); nothing is stored.
pub async fn advance_order(
    pool: &PgPool,
    id: Uuid,
    status: OrderStatus,
) -> Result<(), OutboxError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE orders SET status = $2, updated_at = now() WHERE id = $1 RETURNING id")
        .bind(id)
        .bind(status.as_str())
        .fetch_one(&mut *tx)
        .await?;
    let payload = serde_json::json!({ "order_id": id, "status": status.as_str() });
    enqueue(
        &mut tx,
        &NewEvent::new(ORDER, id.to_string(), status.event_type(), payload),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
