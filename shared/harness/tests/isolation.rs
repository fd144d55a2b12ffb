//! Two tests running at the same time must not see each other's data.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::AsyncCommands;

#[tokio::test]
async fn parallel_tests_cannot_see_each_others_tables() -> anyhow::Result<()> {
    harness::telemetry::init_test();
    let (a, b) = tokio::try_join!(harness::postgres(), harness::postgres())?;
    assert_ne!(a.name(), b.name());
    sqlx::query("CREATE TABLE secrets (v text)")
        .execute(a.pool())
        .await?;
    sqlx::query("INSERT INTO secrets VALUES ('a')")
        .execute(a.pool())
        .await?;

    let visible_in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('secrets')::text")
        .fetch_one(b.pool())
        .await?;
    assert_eq!(visible_in_b, None, "b must not see a's table");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets")
        .fetch_one(a.pool())
        .await?;
    assert_eq!(rows, 1);
    Ok(())
}

#[tokio::test]
async fn a_dropped_database_is_removed_from_the_server() -> anyhow::Result<()> {
    let observer = harness::postgres().await?;
    let db = harness::postgres().await?;
    let name = db.name().to_owned();
    drop(db);
    harness::eventually(Duration::from_secs(10), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(observer.pool())
            .await
            .ok()?;
        (left == 0).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn parallel_tests_cannot_see_each_others_keys() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(harness::redis(), harness::redis())?;
    assert_ne!(a.prefix(), b.prefix());
    let (mut ca, mut cb) = (a.connection(), b.connection());
    let _: () = ca.set(a.key("k"), "from a").await?;
    let _: () = cb.set(b.key("k"), "from b").await?;
    let va: String = ca.get(a.key("k")).await?;
    let vb: String = cb.get(b.key("k")).await?;
    assert_eq!((va.as_str(), vb.as_str()), ("from a", "from b"));

    // Dropping `a` deletes a's keys and only those.
    let a_key = a.key("k");
    drop(a);
    harness::eventually(Duration::from_secs(10), || {
        let mut cb = cb.clone();
        let a_key = a_key.clone();
        async move { (!cb.exists::<_, bool>(&a_key).await.ok()?).then_some(()) }
    })
    .await?;
    let still: String = cb.get(b.key("k")).await?;
    assert_eq!(still, "from b");
    Ok(())
}

#[tokio::test]
async fn parallel_tests_cannot_see_each_others_messages() -> anyhow::Result<()> {
    let kafka = harness::kafka().await?;
    let (topic_a, topic_b) = tokio::try_join!(
        kafka.create_topic("iso-a", 1),
        kafka.create_topic("iso-b", 1)
    )?;
    assert_ne!(topic_a, topic_b);
    assert_ne!(kafka.group_id("g"), kafka.group_id("g"));

    let producer: FutureProducer = kafka.producer_config().create()?;
    for (topic, payload) in [(&topic_a, "for a"), (&topic_b, "for b")] {
        producer
            .send(
                FutureRecord::to(topic).key("k").payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let consumer: StreamConsumer = kafka.consumer_config(&kafka.group_id("iso")).create()?;
    consumer.subscribe(&[&topic_b])?;
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
    assert_eq!(message.topic(), topic_b);
    assert_eq!(message.payload(), Some(&b"for b"[..]));
    Ok(())
}
