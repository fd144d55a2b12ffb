//! The fault proxy really breaks, delays and restores live connections to a real server.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

async fn connect(url: &str) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let conn = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await??;
    Ok(conn)
}

async fn ping(conn: &mut MultiplexedConnection) -> anyhow::Result<String> {
    let pong = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("PING").query_async::<String>(conn),
    )
    .await??;
    Ok(pong)
}

#[tokio::test]
async fn reset_cuts_a_live_connection_and_heal_lets_new_ones_through() -> anyhow::Result<()> {
    let redis = harness::redis().await?;
    let proxy = harness::FaultProxy::start(redis.server_addr()).await?;
    let url = redis.url_via(proxy.addr());

    let mut live = connect(&url).await?;
    assert_eq!(ping(&mut live).await?, "PONG");
    assert_eq!(proxy.active_connections(), 1);

    proxy.reset_all();
    assert!(
        ping(&mut live).await.is_err(),
        "a reset connection must fail"
    );

    proxy.refuse_new();
    assert!(
        async { ping(&mut connect(&url).await?).await }
            .await
            .is_err(),
        "new connections must be refused"
    );

    proxy.heal();
    let mut fresh = connect(&url).await?;
    assert_eq!(ping(&mut fresh).await?, "PONG");
    Ok(())
}

#[tokio::test]
async fn blackhole_stalls_traffic_until_healed_without_losing_it() -> anyhow::Result<()> {
    let redis = harness::redis().await?;
    let proxy = harness::FaultProxy::start(redis.server_addr()).await?;
    let mut conn = connect(&redis.url_via(proxy.addr())).await?;
    assert_eq!(ping(&mut conn).await?, "PONG");

    proxy.blackhole();
    let mut stalled = conn.clone();
    let pending =
        tokio::spawn(async move { redis::cmd("PING").query_async::<String>(&mut stalled).await });
    // Give the request ample time to be answered if traffic flowed; it must not be.
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        while !pending.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(early.is_err(), "a black-holed request must not complete");

    proxy.heal();
    let reply = tokio::time::timeout(Duration::from_secs(5), pending).await???;
    assert_eq!(reply, "PONG");
    Ok(())
}

#[tokio::test]
async fn latency_delays_every_round_trip() -> anyhow::Result<()> {
    let redis = harness::redis().await?;
    let proxy = harness::FaultProxy::start(redis.server_addr()).await?;
    let mut conn = connect(&redis.url_via(proxy.addr())).await?;

    proxy.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(ping(&mut conn).await?, "PONG");
    // One chunk each way: at least twice the latency.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );

    proxy.heal();
    let started = Instant::now();
    assert_eq!(ping(&mut conn).await?, "PONG");
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_postgres_session_through_the_proxy_dies_on_reset() -> anyhow::Result<()> {
    use sqlx::Connection;
    let pg = harness::postgres().await?;
    let proxy = harness::FaultProxy::start(pg.server_addr()).await?;
    let mut conn = sqlx::PgConnection::connect(&pg.url_via(proxy.addr())).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    assert_eq!(one, 1);
    proxy.reset_all();
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_private_broker_goes_down_mid_stream_and_comes_back_with_its_data() -> anyhow::Result<()>
{
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = harness::PrivateKafka::start().await?;
    let kafka = broker.kafka();
    let topic = kafka.create_topic("outage", 1).await?;
    let mut config = kafka.producer_config();
    // Short timeouts so the outage shows within the test; no idempotence so that a timed-out
    // message does not put the producer through an epoch bump.
    config
        .set("message.timeout.ms", "2000")
        .set("enable.idempotence", "false")
        .set("reconnect.backoff.max.ms", "200");
    let producer: FutureProducer = config.create()?;
    let send = |payload: &'static str| {
        let record = FutureRecord::to(&topic).key("k").payload(payload);
        producer.send(record, Duration::from_secs(5))
    };
    send("before").await.map_err(|(e, _)| e)?;

    broker.go_down();
    assert!(
        send("during").await.is_err(),
        "the broker must be unreachable"
    );

    broker.come_back();
    // The client reconnects on its own backoff; retry the send until the broker takes it.
    harness::eventually(Duration::from_secs(20), || async {
        send("after").await.ok()
    })
    .await?;

    let consumer: StreamConsumer = kafka.consumer_config(&kafka.group_id("outage")).create()?;
    consumer.subscribe(&[&topic])?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        seen.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    assert_eq!(seen, ["before", "after"]);
    Ok(())
}
