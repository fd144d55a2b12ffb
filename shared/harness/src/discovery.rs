//! Finding a service: environment variable → Docker (testcontainers) → local default port.
//!
//! Each service is looked up once per test process and the answer cached, so a suite of hundreds
//! of tests pays the probe (or the container start) once. Only the address is cached, never a
//! connection: every `#[tokio::test]` runs its own runtime, and a connection made on one runtime
//! dies with it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{Image, ImageExt, ReuseDirective};
use tokio::net::{TcpStream, lookup_host};

use crate::HarnessError;

/// How long an explicitly configured address gets to accept a TCP connection. Short, so a wrong
/// `PATTERNS_*` variable fails a test run in seconds instead of hanging it.
pub(crate) const ENV_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a default local port gets to answer before the harness moves on.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a service came from; logged so a test run says which infrastructure it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An explicit URL from the named environment variable.
    Env(&'static str),
    /// A container started (or reused) through testcontainers.
    Container,
    /// A server already answering on its default local port.
    Local,
}

/// A service that was found: the URL clients connect with and the socket address behind it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Connection URL (or broker list for Kafka).
    pub(crate) url: String,
    /// Resolved address of the server, for a fault proxy to forward to.
    pub(crate) addr: SocketAddr,
    /// Where it came from.
    pub(crate) source: Source,
}

/// Static facts about one kind of service, used for probing and for the error message.
#[derive(Debug)]
pub(crate) struct ServiceSpec {
    pub(crate) service: &'static str,
    pub(crate) env_var: &'static str,
    pub(crate) example: &'static str,
    pub(crate) image: &'static str,
    pub(crate) default_addr: &'static str,
    pub(crate) default_url: &'static str,
}

/// Runs the three-step search for one service. `start_container` is only called when a Docker
/// engine answers.
pub(crate) async fn discover<F, Fut>(
    spec: &ServiceSpec,
    host_port_of: fn(&str) -> Result<String, HarnessError>,
    start_container: F,
) -> Result<Endpoint, HarnessError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, HarnessError>>,
{
    let mut tried = Vec::new();

    if let Ok(value) = std::env::var(spec.env_var) {
        let host_port = host_port_of(&value)?;
        let addr = connect(&host_port, ENV_CONNECT_TIMEOUT)
            .await
            .map_err(|reason| HarnessError::EnvUnreachable {
                env_var: spec.env_var,
                value: value.clone(),
                addr: host_port.clone(),
                reason,
            })?;
        return Ok(found(spec, value, addr, Source::Env(spec.env_var)));
    }
    tried.push(format!("{} is not set", spec.env_var));

    match docker_engine().await {
        Some(engine) => {
            let url = start_container().await?;
            let host_port = host_port_of(&url)?;
            let addr = connect(&host_port, ENV_CONNECT_TIMEOUT)
                .await
                .map_err(|reason| {
                    HarnessError::Docker(format!("{} container: {reason}", spec.service))
                })?;
            tracing::debug!(%engine, "docker engine answered");
            return Ok(found(spec, url, addr, Source::Container));
        }
        None => {
            tried.push("no Docker engine answers (DOCKER_HOST, /var/run/docker.sock)".to_owned())
        }
    }

    match connect(spec.default_addr, LOCAL_CONNECT_TIMEOUT).await {
        Ok(addr) => Ok(found(
            spec,
            spec.default_url.to_owned(),
            addr,
            Source::Local,
        )),
        Err(reason) => {
            tried.push(format!("{}: {reason}", spec.default_addr));
            Err(HarnessError::Unavailable {
                service: spec.service,
                tried: tried.join("; "),
                env_var: spec.env_var,
                example: spec.example,
                image: spec.image,
                default_addr: spec.default_addr,
            })
        }
    }
}

fn found(spec: &ServiceSpec, url: String, addr: SocketAddr, source: Source) -> Endpoint {
    tracing::info!(service = spec.service, ?source, %addr, "harness found service");
    Endpoint { url, addr, source }
}

/// Resolves `host:port` and opens (then closes) a TCP connection within `timeout`.
pub(crate) async fn connect(host_port: &str, timeout: Duration) -> Result<SocketAddr, String> {
    let attempt = async {
        let addrs: Vec<SocketAddr> = lookup_host(host_port)
            .await
            .map_err(|e| format!("cannot resolve: {e}"))?
            .collect();
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(_) => return Ok(addr),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// Returns a description of the Docker engine if one answers, `None` otherwise.
///
/// `PATTERNS_NO_DOCKER=1` skips Docker even when it runs, for people who keep local services.
async fn docker_engine() -> Option<String> {
    if std::env::var_os("PATTERNS_NO_DOCKER").is_some() {
        return None;
    }
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if let Some(path) = host.strip_prefix("unix://") {
            return unix_socket_answers(path).await.then_some(host);
        }
        if let Some(tcp) = host.strip_prefix("tcp://") {
            return connect(tcp, LOCAL_CONNECT_TIMEOUT).await.ok().map(|_| host);
        }
        return None;
    }
    let default = "/var/run/docker.sock";
    unix_socket_answers(default)
        .await
        .then(|| format!("unix://{default}"))
}

#[cfg(unix)]
async fn unix_socket_answers(path: &str) -> bool {
    let attempt = tokio::net::UnixStream::connect(path);
    matches!(
        tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, attempt).await,
        Ok(Ok(_))
    )
}

#[cfg(not(unix))]
async fn unix_socket_answers(_path: &str) -> bool {
    false
}

/// Starts (or reuses) the named container and returns the host port mapped to `port`.
///
/// Containers are reused across runs (`ReuseDirective::Always`): one long-lived container per
/// service, with isolation coming from per-test databases, prefixes and topics, so repeated
/// `cargo test` runs neither wait for a boot nor leave containers behind. `make down` or
/// `docker rm -f production-patterns-<service>` removes them.
pub(crate) async fn start_reusable<I: Image>(
    request: impl ImageExt<I>,
    name: &str,
    port: impl Into<ContainerPort>,
) -> Result<u16, HarnessError> {
    let docker = |e: testcontainers::TestcontainersError| HarnessError::Docker(e.to_string());
    let container = request
        .with_container_name(name)
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(docker)?;
    container.get_host_port_ipv4(port).await.map_err(docker)
}

/// `host:port` of a URL such as `postgres://user:pw@host:5432/db?x=y`.
pub(crate) fn url_host_port(url: &str, default_port: u16) -> Result<String, HarnessError> {
    let (_, rest) = url.split_once("://").ok_or_else(|| HarnessError::Invalid {
        what: "URL",
        reason: format!("`{url}` has no scheme (expected scheme://host:port/...)"),
    })?;
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.is_empty() {
        return Err(HarnessError::Invalid {
            what: "URL",
            reason: format!("`{url}` has no host"),
        });
    }
    // An IPv6 literal is bracketed; a colon after the closing bracket (or any colon otherwise)
    // means the port is given.
    let has_port = match host_port.rfind(']') {
        Some(end) => host_port[end..].contains(':'),
        None => host_port.contains(':'),
    };
    Ok(if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    })
}

/// The same URL with its `host:port` replaced by `addr` (to route a client through a proxy).
pub(crate) fn url_with_addr(url: &str, addr: SocketAddr) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}{tail}", userinfo.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_taken_from_any_url_shape() {
        let hp = |u| url_host_port(u, 5432).expect("parses");
        assert_eq!(
            hp("postgres://u:p@db.example:6000/x?sslmode=disable"),
            "db.example:6000"
        );
        assert_eq!(hp("postgres://127.0.0.1/x"), "127.0.0.1:5432");
        assert_eq!(hp("redis://[::1]:7000/0"), "[::1]:7000");
        assert_eq!(hp("redis://[::1]/0"), "[::1]:5432");
        assert!(url_host_port("127.0.0.1:5432", 1).is_err());
    }

    #[test]
    fn a_url_can_be_rerouted_through_another_address() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(
            url_with_addr("postgres://postgres@127.0.0.1:5432/db?x=1", addr),
            "postgres://postgres@127.0.0.1:40000/db?x=1"
        );
        assert_eq!(
            url_with_addr("redis://127.0.0.1:6379", addr),
            "redis://127.0.0.1:40000"
        );
    }
}
