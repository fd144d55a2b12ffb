//! A Kafka-compatible broker of the test's own, behind a [`FaultProxy`], so a test can take
//! "Kafka" down in the middle of a stream and bring it back.
//!
//! A proxy in front of a shared broker cannot do that: Kafka clients bootstrap through the
//! address they are given, then connect to the address the broker *advertises* in its metadata,
//! bypassing a bootstrap-only proxy. So this module starts a private broker process
//! ([tansu](https://crates.io/crates/tansu), in memory) that listens on one port and advertises
//! the proxy's address: every client connection, bootstrap or not, then flows through the proxy,
//! and [`FaultProxy::reset_all`] plus [`FaultProxy::refuse_new`] is a real broker outage from the
//! client's point of view, while the broker keeps everything it already acknowledged.
//!
//! Needs the `tansu` binary: `PATTERNS_TANSU_BIN`, else `tansu` on `PATH`, else
//! `~/.cargo/bin/tansu` (`.ci/run` installs it; by hand:
//! `cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::discovery::connect;
use crate::{FaultProxy, HarnessError, Source, TestKafka};

/// How long the private broker gets to start listening.
const START_WITHIN: Duration = Duration::from_secs(20);

/// A private broker process and the fault proxy every client reaches it through.
///
/// Dropping it kills the broker.
#[derive(Debug)]
pub struct PrivateKafka {
    /// The broker process; killed on drop.
    _child: Child,
    /// The only way clients reach the broker.
    proxy: FaultProxy,
    /// Topic, group and client-config helpers, pointed at the proxy.
    kafka: TestKafka,
}

impl PrivateKafka {
    /// Starts a private in-memory broker advertised through a new [`FaultProxy`].
    ///
    /// # Errors
    /// [`HarnessError::Unavailable`] if no `tansu` binary is found, [`HarnessError::Io`] if it
    /// cannot be started, [`HarnessError::Timeout`] if it does not listen in time.
    pub async fn start() -> Result<Self, HarnessError> {
        let binary = tansu_binary()?;
        // Reserve a free port for the broker, then release it for the broker to bind. The window
        // in between is tiny, and a collision shows up as a start timeout, not a wrong result.
        let broker_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let broker_addr: std::net::SocketAddr = ([127, 0, 0, 1], broker_port).into();
        let proxy = FaultProxy::start(broker_addr).await?;
        let child = Command::new(&binary)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{broker_addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{}", proxy.addr()))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        crate::eventually(START_WITHIN, || async {
            connect(&broker_addr.to_string(), Duration::from_millis(200))
                .await
                .ok()
        })
        .await
        .map_err(|_| HarnessError::Timeout {
            what: format!(
                "private broker {} to listen on {broker_addr}",
                binary.display()
            ),
            after: START_WITHIN,
        })?;
        let kafka = TestKafka::at(proxy.addr().to_string(), proxy.addr(), Source::Local);
        Ok(Self {
            _child: child,
            proxy,
            kafka,
        })
    }

    /// The fault proxy in front of the broker: `reset_all()` + `refuse_new()` is an outage,
    /// `heal()` ends it.
    pub fn proxy(&self) -> &FaultProxy {
        &self.proxy
    }

    /// Topic, group and client-config helpers for this broker (bootstrap = the proxy).
    pub fn kafka(&self) -> &TestKafka {
        &self.kafka
    }

    /// Cuts every client off the broker: open connections are reset and new ones refused.
    pub fn go_down(&self) {
        self.proxy.refuse_new();
        self.proxy.reset_all();
    }

    /// Lets clients reach the broker again.
    pub fn come_back(&self) {
        self.proxy.heal();
    }
}

fn tansu_binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("PATTERNS_TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join("tansu"));
    on_path
        .into_iter()
        .chain(in_cargo_home)
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::Unavailable {
            service: "private Kafka broker (tansu)",
            tried: "PATTERNS_TANSU_BIN, PATH, ~/.cargo/bin".to_owned(),
            env_var: "PATTERNS_TANSU_BIN",
            example: "/usr/local/bin/tansu",
            image: "none: a broker process of the test's own is needed",
            default_addr: "PATH (`cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore`)",
        })
}
