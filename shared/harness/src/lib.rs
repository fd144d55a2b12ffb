//! The infrastructure harness: real Postgres, Redis and Kafka for tests, demos and benchmarks.
//!
//! Tests and demos never hard-code addresses; they ask the harness, which looks for each service
//! in this order and logs (at `info`) which one it used:
//!
//! 1. an explicit address from the environment: `PATTERNS_POSTGRES_URL`, `PATTERNS_REDIS_URL`,
//!    `PATTERNS_KAFKA_BROKERS`. If the variable is set but nothing answers there, the harness
//!    fails within seconds with an error naming the variable and address; it does not silently
//!    fall back to another server;
//! 2. a Docker engine, through testcontainers (`postgres:16`, `redis:7`, `apache/kafka`), one
//!    reusable container per service (set `PATTERNS_NO_DOCKER=1` to skip this step);
//! 3. a server already answering on its default local port (5432, 6379, 9092);
//! 4. otherwise [`HarnessError::Unavailable`], whose message names each way to provide it.
//!
//! Whatever the source, every test is isolated so tests run in parallel against one server:
//!
//! | service  | isolation                                                                  |
//! |----------|-----------------------------------------------------------------------------|
//! | Postgres | [`postgres`] creates a fresh database; dropping the handle drops it, and leftovers of crashed runs are swept on the next run |
//! | Redis    | [`redis`] hands out a unique key prefix ([`TestRedis::key`]); dropping the handle deletes those keys. Never `FLUSHDB` |
//! | Kafka    | [`TestKafka::create_topic`] and [`TestKafka::group_id`] make unique names; consumer settings join groups in seconds |
//!
//! [`FaultProxy`] sits between a client and a real server and breaks the network on command;
//! failure tests of every pattern use it. [`eventually`] replaces sleeps in tests.
//!
//! # Layout
//! - `discovery.rs`: the env → Docker → local search, URL handling.
//! - `postgres.rs`, `redis.rs`, `kafka.rs`: one service each, with its isolation.
//! - `proxy.rs`: the fault-injection TCP proxy.
//! - `private_kafka.rs`: [`PrivateKafka`], a broker of the test's own behind a proxy, for
//!   mid-stream broker outages.
//! - `telemetry.rs`: tracing for binaries ([`telemetry::init`]) and tests ([`telemetry::init_test`]).
//! - `wait.rs`: [`eventually`], polling with a deadline.
//! - `bench.rs`: reading criterion's results and printing candidate/baseline ratios.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), harness::HarnessError> {
//! let pg = harness::postgres().await?;
//! sqlx::query("CREATE TABLE t (id int)").execute(pg.pool()).await?;
//! let redis = harness::redis().await?;
//! let key = redis.key("counter"); // "<unique prefix>:counter"
//! # let _ = key;
//! # Ok(()) }
//! ```

pub mod bench;
mod discovery;
mod error;
mod kafka;
mod postgres;
mod private_kafka;
mod proxy;
mod redis;
pub mod telemetry;
mod wait;

pub use discovery::Source;
pub use error::HarnessError;
pub use kafka::{TestKafka, kafka};
pub use postgres::{TestDatabase, postgres};
pub use private_kafka::PrivateKafka;
pub use proxy::FaultProxy;
pub use redis::{TestRedis, redis};
pub use wait::eventually;

/// Runs best-effort clean-up `work` on a short-lived thread of its own.
///
/// Used by the `Drop` impls: `Drop` must not block, and the test's runtime may already be
/// shutting down when a handle is dropped. If the process exits first, the work is lost, which is
/// why every resource is also named so that a later run can recognise and sweep it.
fn clean_up_in_background(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(error) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        tracing::debug!(%error, thread = name, "could not spawn a clean-up thread");
    }
}
