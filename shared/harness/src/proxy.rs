//! A TCP proxy that injects network faults on command.
//!
//! Put it between a client and a real server, point the client at [`FaultProxy::addr`], and a
//! test can then refuse new connections, reset open ones, add latency, or black-hole traffic, and
//! heal the network again, all without touching the server (which other tests share).
//!
//! ```no_run
//! # async fn demo() -> Result<(), harness::HarnessError> {
//! let redis = harness::redis().await?;
//! let proxy = harness::FaultProxy::start(redis.server_addr()).await?;
//! let client = redis::Client::open(redis.url_via(proxy.addr()))?;
//! // ... use the client, then:
//! proxy.reset_all();   // every open connection gets a TCP reset
//! proxy.refuse_new();  // and new ones are reset on arrival
//! proxy.heal();        // back to normal
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::HarnessError;

/// How long the proxy waits for the upstream server to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The faults in force. Changing them affects open connections from their next chunk of data on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    /// New connections are reset as soon as they are accepted.
    refuse: bool,
    /// No bytes move in either direction; they wait in the socket buffers, as on a partitioned
    /// network where TCP keeps retransmitting, and flow again after [`FaultProxy::heal`].
    blackhole: bool,
    /// Added before each chunk is forwarded, in each direction.
    latency: Duration,
}

/// State shared by the handle and the accept loop.
#[derive(Debug)]
struct Shared {
    /// Where clients connect.
    addr: SocketAddr,
    /// Where the proxy forwards to.
    upstream: SocketAddr,
    /// Current faults; connections watch it to react at once.
    faults: watch::Sender<Faults>,
    /// One token per open connection; cancelling it resets that connection.
    connections: Mutex<HashMap<u64, CancellationToken>>,
    /// Source of connection ids.
    next_id: AtomicU64,
}

/// Handle to a running proxy. Cheap to clone; clones control the same proxy, and the proxy (with
/// every connection through it) stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    /// Cancels the accept loop and every connection when the last handle goes.
    _stop: Arc<DropGuard>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `upstream`, with no faults.
    ///
    /// # Errors
    /// [`HarnessError::Io`] if the listening socket cannot be bound.
    pub async fn start(upstream: SocketAddr) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let (faults, _) = watch::channel(Faults::default());
        let shared = Arc::new(Shared {
            addr: listener.local_addr()?,
            upstream,
            faults,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        Ok(Self {
            shared,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Resets every new connection on arrival (the client sees a reset or a failed handshake).
    /// Open connections are untouched; combine with [`FaultProxy::reset_all`] for a full outage.
    pub fn refuse_new(&self) {
        self.shared.faults.send_modify(|f| f.refuse = true);
    }

    /// Resets every open connection now (TCP RST to both client and server).
    pub fn reset_all(&self) {
        let tokens: Vec<CancellationToken> = self
            .shared
            .connections
            .lock()
            .map(|mut c| c.drain().map(|(_, t)| t).collect())
            .unwrap_or_default();
        for token in tokens {
            token.cancel();
        }
    }

    /// Delays every forwarded chunk by `latency`, in each direction. `Duration::ZERO` removes it.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// Stops all traffic without closing anything: requests hang until a timeout fires or the
    /// network heals. The nastiest failure for a client without timeouts.
    pub fn blackhole(&self) {
        self.shared.faults.send_modify(|f| f.blackhole = true);
    }

    /// Removes every fault. Connections that were reset stay closed; clients must reconnect.
    pub fn heal(&self) {
        self.shared.faults.send_replace(Faults::default());
    }

    /// Number of connections currently open through the proxy.
    pub fn active_connections(&self) -> usize {
        self.shared.connections.lock().map_or(0, |c| c.len())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else { continue };
        if shared.faults.borrow().refuse {
            reset(client);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let token = stop.child_token();
        if let Ok(mut connections) = shared.connections.lock() {
            connections.insert(id, token.clone());
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            serve(client, &shared, &token).await;
            if let Ok(mut connections) = shared.connections.lock() {
                connections.remove(&id);
            }
        });
    }
}

/// Forwards one connection until either side closes or its token is cancelled (then both sides
/// are reset).
async fn serve(client: TcpStream, shared: &Shared, token: &CancellationToken) {
    let connect = TcpStream::connect(shared.upstream);
    let Ok(Ok(upstream)) = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect).await else {
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client, mut upstream) = (client, upstream);
    {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let to_server = pump(client_read, upstream_write, shared.faults.subscribe());
        let to_client = pump(upstream_read, client_write, shared.faults.subscribe());
        tokio::select! {
            () = token.cancelled() => {}
            _ = async { tokio::join!(to_server, to_client) } => return,
        }
    }
    reset(client);
    reset(upstream);
}

/// Copies bytes one way, honouring the faults in force for each chunk.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut faults: watch::Receiver<Faults>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // While black-holed, do not read at all: bytes stay in kernel buffers, back-pressure
        // reaches the sender, and nothing is lost when the network heals.
        if faults.wait_for(|f| !f.blackhole).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let latency = faults.borrow().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if faults.wait_for(|f| !f.blackhole).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Closes a socket with a TCP reset rather than an orderly FIN, the way a crashed peer or a
/// dropped NAT entry looks to the other side.
fn reset(stream: TcpStream) {
    // SO_LINGER with a zero timeout makes close() send RST.
    #[allow(deprecated)] // set_linger is deprecated only because a non-zero linger blocks on close
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
