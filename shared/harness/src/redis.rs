//! A Redis connection with a key prefix of its own per test.
//!
//! Redis has no cheap per-test database, and `FLUSHDB`/`FLUSHALL` would wipe other tests' keys
//! (and anything else on a shared server), so isolation comes from prefixes: each
//! [`TestRedis`] gets a unique prefix, and dropping it deletes exactly the keys under it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use testcontainers::ImageExt;
use tokio::sync::OnceCell;

use crate::HarnessError;
use crate::discovery::{
    ENV_CONNECT_TIMEOUT, Endpoint, ServiceSpec, Source, discover, start_reusable, url_host_port,
    url_with_addr,
};

const SPEC: ServiceSpec = ServiceSpec {
    service: "Redis",
    env_var: "PATTERNS_REDIS_URL",
    example: "redis://127.0.0.1:6379",
    image: "redis:7",
    default_addr: "127.0.0.1:6379",
    default_url: "redis://127.0.0.1:6379",
};

static SERVER: OnceCell<Endpoint> = OnceCell::const_new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A Redis client and multiplexed connection whose keys live under a unique prefix.
///
/// Deliberately not `Clone`: dropping it deletes the prefix's keys. Share
/// [`TestRedis::connection`] (a cheap clone) instead.
pub struct TestRedis {
    /// Client for the server; open more connections from it as needed.
    client: redis::Client,
    /// A multiplexed, auto-reconnecting connection; clones share it.
    connection: ConnectionManager,
    /// Server URL.
    url: String,
    /// Prefix unique to this test, without a trailing colon.
    prefix: String,
    /// Where the server listens.
    server: SocketAddr,
    /// How the server was found.
    source: Source,
}

impl std::fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRedis")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Connects to the Redis the harness finds and reserves a fresh key prefix.
///
/// # Errors
/// [`HarnessError::Unavailable`] when no Redis can be found, [`HarnessError::EnvUnreachable`]
/// when `PATTERNS_REDIS_URL` points at nothing, [`HarnessError::Redis`] if connecting fails.
pub async fn redis() -> Result<TestRedis, HarnessError> {
    let server = SERVER
        .get_or_try_init(|| discover(&SPEC, |u| url_host_port(u, 6379), start_container))
        .await?;
    let client = redis::Client::open(server.url.as_str())?;
    let connection = tokio::time::timeout(ENV_CONNECT_TIMEOUT, client.get_connection_manager())
        .await
        .map_err(|_| HarnessError::Timeout {
            what: format!("a Redis connection to {}", server.url),
            after: ENV_CONNECT_TIMEOUT,
        })??;
    Ok(TestRedis {
        client,
        connection,
        url: server.url.clone(),
        prefix: new_prefix(),
        server: server.addr,
        source: server.source,
    })
}

impl TestRedis {
    /// A clone of the shared multiplexed connection.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The client, to open further connections.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the server listens; put a [`crate::FaultProxy`] in front of it.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// How the harness found the server.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The server URL with its address replaced by `addr` (a proxy's).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        url_with_addr(&self.url, addr)
    }

    /// This test's prefix, e.g. `pp-1732-4242-7-9f3a`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` under this test's prefix: `<prefix>:<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // No blocking I/O in `Drop`: a short-lived thread deletes the keys with a synchronous
        // connection. Keys that outlive a crashed run are harmless (tests use TTLs or fresh
        // prefixes) and never collide with a later run's prefix.
        let (client, pattern) = (self.client.clone(), format!("{}:*", self.prefix));
        crate::clean_up_in_background("harness-redis-cleanup", move || {
            if let Err(error) = delete_matching(&client, &pattern) {
                tracing::debug!(%error, %pattern, "could not delete test keys");
            }
        });
    }
}

/// Deletes every key matching `pattern` with SCAN (never KEYS, which blocks the server).
fn delete_matching(client: &redis::Client, pattern: &str) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(&mut conn)?
        .filter_map(Result::ok)
        .collect();
    for chunk in keys.chunks(500) {
        redis::cmd("UNLINK").arg(chunk).exec(&mut conn)?;
    }
    Ok(())
}

fn new_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "pp-{secs}-{}-{n}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

async fn start_container() -> Result<String, HarnessError> {
    let image = testcontainers_modules::redis::Redis::default().with_tag("7");
    let port = start_reusable(image, "production-patterns-redis", 6379).await?;
    Ok(format!("redis://127.0.0.1:{port}"))
}
