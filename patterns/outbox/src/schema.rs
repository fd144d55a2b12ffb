//! The outbox schema, embedded at compile time from `migrations/` (no database needed to build).

use sqlx::PgPool;

use crate::OutboxError;

/// Applies the outbox migrations (`outbox`, `outbox_aggregate`, the NOTIFY trigger and the demo
/// `orders` table). Idempotent: already-applied migrations are skipped.
///
/// # Errors
/// [`OutboxError::Migration`] if a migration fails or the recorded history diverges.
///
/// # Example
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), outbox::OutboxError> {
/// outbox::migrate(&pool).await?;
/// # Ok(()) }
/// ```
pub async fn migrate(pool: &PgPool) -> Result<(), OutboxError> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}
