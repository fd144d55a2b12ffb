//! The writer: events commit or roll back with the business change, with gap-free sequences.

mod common;

use outbox::{NewEvent, OrderStatus, OutboxError, advance_order, enqueue, place_order};

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_event_and_no_sequence_gap() -> anyhow::Result<()> {
    let env = common::env().await?;
    let mut tx = env.pool().begin().await?;
    enqueue(
        &mut tx,
        &NewEvent::new("order", "a", "OrderPlaced", serde_json::json!({})),
    )
    .await?;
    tx.rollback().await?;
    assert_eq!(
        env.outbox_rows().await?,
        0,
        "a rollback must leave nothing to publish"
    );

    let mut tx = env.pool().begin().await?;
    let stored = enqueue(
        &mut tx,
        &NewEvent::new("order", "a", "OrderPlaced", serde_json::json!({})),
    )
    .await?;
    tx.commit().await?;
    assert_eq!(
        stored.sequence, 1,
        "the rolled-back event must not consume a sequence"
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_writers_of_one_aggregate_get_gap_free_sequences() -> anyhow::Result<()> {
    let env = common::env().await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = env.pool().clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let mut tx = pool.begin().await?;
                enqueue(
                    &mut tx,
                    &NewEvent::new("order", "hot", "E", serde_json::json!({})),
                )
                .await?;
                enqueue(
                    &mut tx,
                    &NewEvent::new("order", "other", "E", serde_json::json!({})),
                )
                .await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM outbox WHERE aggregate_id = 'hot' ORDER BY sequence",
    )
    .fetch_all(env.pool())
    .await?;
    assert_eq!(sequences, (1..=80).collect::<Vec<i64>>());
    Ok(())
}

#[tokio::test]
async fn an_order_and_its_event_commit_together_or_not_at_all() -> anyhow::Result<()> {
    let env = common::env().await?;
    let id = place_order(
        env.pool(),
        "ada",
        4200,
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    .await?;
    advance_order(env.pool(), id, OrderStatus::Paid).await?;
    let unknown = uuid::Uuid::now_v7();
    let failed = advance_order(env.pool(), unknown, OrderStatus::Paid).await;
    assert!(matches!(
        failed,
        Err(OutboxError::Database(sqlx::Error::RowNotFound))
    ));

    let events: Vec<(String, String, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, sequence, headers FROM outbox ORDER BY id",
    )
    .fetch_all(env.pool())
    .await?;
    assert_eq!(
        events.len(),
        2,
        "the failed transition must not leave an event behind"
    );
    assert_eq!((events[0].1.as_str(), events[0].2), ("OrderPlaced", 1));
    assert_eq!((events[1].1.as_str(), events[1].2), ("OrderPaid", 2));
    assert_eq!(events[0].0, id.to_string());
    assert!(
        events[0].3["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with("00-"))
    );
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(env.pool())
        .await?;
    assert_eq!(status, "paid");
    Ok(())
}

#[tokio::test]
async fn reserved_header_names_and_empty_ids_are_rejected_before_touching_the_database()
-> anyhow::Result<()> {
    let env = common::env().await?;
    let mut tx = env.pool().begin().await?;
    let reserved =
        NewEvent::new("order", "a", "E", serde_json::json!({})).with_header("sequence", "9");
    assert!(matches!(
        enqueue(&mut tx, &reserved).await,
        Err(OutboxError::InvalidEvent(_))
    ));
    let empty = NewEvent::new("order", "", "E", serde_json::json!({}));
    assert!(matches!(
        enqueue(&mut tx, &empty).await,
        Err(OutboxError::InvalidEvent(_))
    ));
    tx.commit().await?;
    assert_eq!(env.outbox_rows().await?, 0);
    Ok(())
}
