//! The Redis backend: each algorithm as one atomic Lua script on the server's clock.

mod coalesce;
mod scripts;

use std::fmt::Write as _;
use std::io::Write as _;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisWrite, Script, ServerErrorKind, ToRedisArgs};
use tokio::sync::{mpsc, oneshot};

use self::coalesce::Pending;
use crate::{AlgorithmKind, Decision, Quota, RedisLimitError};

/// A rate limiter whose state lives in Redis, shared by every instance that uses the same
/// `namespace`, algorithm and quota.
///
/// * **Atomic**: each decision is one Lua script (read, decide, write), so concurrent instances
///   never interleave inside a decision. Calls go out as `EVALSHA`; on `NOSCRIPT` (a restarted
///   or failed-over server) the script is loaded and the call retried, transparently.
/// * **One clock**: the script reads Redis `TIME`, so instance clock skew does not matter.
/// * **One slot per decision**: keys are `namespace:{key}:<algorithm>` — the braces are a
///   cluster hash tag, so every key one decision touches hashes to one slot (and `namespace:*`
///   finds them all).
/// * **Bounded memory**: every write sets a TTL at which the state would be idle anyway.
/// * **Exact**: all arithmetic is on integers below 2^53 (see [`Quota`]).
///
/// Clones share one [`ConnectionManager`] (a multiplexed connection): concurrent calls are
/// pipelined on one socket.
///
/// **Coalescing (GCRA).** Concurrent GCRA decisions are packed into one script call: a
/// background task takes every request queued while earlier calls are in flight (up to
/// [`max_batch`](Self::max_batch), default 128) and sends them as one `EVALSHA` with one key per
/// request. The script reads `TIME` once and decides them in order, atomically, so each caller
/// gets exactly the decision it would have had alone; a key that appears twice sees its own
/// earlier write. Under light load a batch holds one request and is sent at once (no timer, no
/// added wait); under load the server does one script call per batch instead of one per
/// request. A request whose caller gave up (a timeout dropped it) before its batch left is not
/// sent, so it consumes no quota. The other algorithms send one call per decision.
///
/// The requests are spread over [`lanes`](Self::lanes) coalescing tasks (default 2) by a hash
/// of their key, so that batches of different lanes overlap on the wire instead of every
/// caller moving in one wave (see the `coalesce` module's docs for the measurements).
///
/// A coalesced call may name keys of several cluster slots. That is fine on one Redis server
/// (and on a Sentinel-managed primary), which is what a [`ConnectionManager`] talks to; against
/// Redis Cluster, use `max_batch(1)` (see the README's production checklist).
///
/// This type reports Redis failures as errors; [`DistributedLimiter`](crate::DistributedLimiter)
/// adds the timeout and the failure policy.
#[derive(Clone)]
pub struct RedisLimiter {
    /// Shared configuration and script.
    inner: Arc<Inner>,
    /// The multiplexed connection (itself a cheap clone).
    conn: ConnectionManager,
    /// Most GCRA decisions per script call; 1 sends each decision on its own.
    max_batch: NonZeroUsize,
    /// How many coalescing tasks share the requests.
    lanes: NonZeroUsize,
    /// The queues of the coalescing tasks, one per lane, started by the first coalesced call
    /// (so constructing a limiter needs no runtime). Shared by clones; when the last clone
    /// drops, each task drains what is in flight and ends.
    coalescer: Arc<OnceLock<Box<[mpsc::Sender<Pending>]>>>,
}

/// What every call needs: shared by the limiter's clones and its coalescing tasks.
struct Inner {
    /// Which algorithm's script runs.
    kind: AlgorithmKind,
    /// The quota passed to the script on every call.
    quota: Quota,
    /// Prefix before the hash tag, separating applications and tests sharing a server.
    namespace: String,
    /// The script (source + SHA1).
    script: Script,
    /// `ARGV[2..]`, computed once from the quota (see [`RedisLimiter::script_args`]).
    args: Vec<u64>,
}

impl Inner {
    /// The `EVALSHA` for one decision on `key`: built straight into one command buffer (no
    /// intermediate per-argument vectors), with the quota arguments precomputed.
    fn command(&self, key: &str, now: Option<u64>) -> Cmd {
        let two_keys = self.kind == AlgorithmKind::SlidingLog;
        // `namespace:{key}:<name>:seq` at most.
        let tag_len = self.namespace.len() + key.len() + 12;
        // Sized up front (≤ 10 arguments: name, SHA, key count, ≤ 2 keys, now, ≤ 4 quota
        // values; ≤ 20 digits each) so building the command allocates twice, not once per
        // growth step.
        let mut cmd = Cmd::with_capacity(10, 48 + 2 * tag_len + 5 * 20);
        cmd.arg("EVALSHA").arg(self.script.get_hash());
        let tag = self.key_arg(key);
        if two_keys {
            cmd.arg(2).arg(tag).arg(KeyArg {
                suffix: ":seq",
                ..tag
            });
        } else {
            cmd.arg(1).arg(tag);
        }
        self.push_argv(&mut cmd, now);
        cmd
    }

    /// The Redis key of `key` for this limiter's algorithm (`namespace:{key}:<algorithm>`),
    /// ready to be written into a command.
    fn key_arg<'a>(&'a self, key: &'a str) -> KeyArg<'a> {
        KeyArg {
            namespace: &self.namespace,
            key,
            kind: self.kind,
            suffix: "",
        }
    }

    /// The Redis key for `key` (`namespace:{key}:<algorithm>`), for one-key scripts.
    fn redis_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.namespace.len() + key.len() + 24);
        // Writing into a `String` cannot fail.
        let _ = write!(full, "{}", self.key_arg(key));
        full
    }

    /// The GCRA `EVALSHA` deciding one request per Redis key of `keys`, in order, at `now`.
    /// The coalescing task passes keys its callers formatted ([`redis_key`](Self::redis_key)),
    /// so it only copies bytes; a single decision passes its [`KeyArg`], written in place.
    fn batch_command(
        &self,
        keys: impl ExactSizeIterator<Item = impl ToRedisArgs>,
        now: Option<u64>,
    ) -> Cmd {
        let bytes: usize = 48 + keys.len() * (self.namespace.len() + 24);
        let mut cmd = Cmd::with_capacity(5 + keys.len(), bytes);
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(keys.len());
        for key in keys {
            cmd.arg(key);
        }
        self.push_argv(&mut cmd, now);
        cmd
    }

    /// Appends `ARGV`: the clock (`""` = Redis `TIME`, else the test clock's µs), then the
    /// precomputed quota arguments.
    fn push_argv(&self, cmd: &mut Cmd, now: Option<u64>) {
        match now {
            Some(now) => cmd.arg(now),
            None => cmd.arg(""),
        };
        for arg in &self.args {
            cmd.arg(*arg);
        }
    }

    /// Runs `cmd`; on `NOSCRIPT` (the server restarted, failed over or had its script cache
    /// flushed) loads the script and retries once. Loading is idempotent, so concurrent
    /// callers that all hit `NOSCRIPT` at once are harmless.
    async fn eval<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<T> {
        match cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!(kind = ?self.kind, "rate limiter script not cached by Redis, loading it");
                self.script.load_async(conn).await?;
                cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("kind", &self.inner.kind)
            .field("quota", &self.inner.quota)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// A limiter running `kind` with `quota` on keys under `namespace`.
    #[must_use]
    pub fn new(
        conn: ConnectionManager,
        kind: AlgorithmKind,
        quota: Quota,
        namespace: impl Into<String>,
    ) -> Self {
        let inner = Inner {
            kind,
            quota,
            namespace: namespace.into(),
            script: scripts::script(kind),
            args: Self::script_args(kind, &quota),
        };
        Self {
            inner: Arc::new(inner),
            conn,
            max_batch: coalesce::DEFAULT_MAX_BATCH,
            lanes: coalesce::DEFAULT_LANES,
            coalescer: Arc::default(),
        }
    }

    /// At most `max_batch` GCRA decisions per script call (default 128); `1` turns coalescing
    /// off, so every decision is its own `EVALSHA` (as for the other algorithms). A larger batch
    /// costs Redis a longer single script run, during which it serves nobody else: at ≈ 1.5 µs a
    /// decision, 128 keep it near 0.2 ms.
    ///
    /// Returns a limiter with its own coalescing queue; clones made before keep theirs.
    #[must_use]
    pub fn max_batch(self, max_batch: NonZeroUsize) -> Self {
        Self {
            max_batch,
            coalescer: Arc::default(),
            ..self
        }
    }

    /// Spreads coalesced GCRA decisions over `lanes` coalescing tasks (default 2), each with
    /// its own batches and its own calls in flight; a key always goes to the same lane.
    ///
    /// With one lane, every waiting caller joins the next batch, so under load the callers move
    /// in one wave: Redis idles while the client turns the wave around, and the client idles
    /// while Redis decides it. Two lanes overlap one lane's round trip with the other's. More
    /// lanes mean more, smaller calls: more of Redis's per-call cost for each decision.
    ///
    /// Returns a limiter with its own coalescing tasks; clones made before keep theirs.
    #[must_use]
    pub fn lanes(self, lanes: NonZeroUsize) -> Self {
        Self {
            lanes,
            coalescer: Arc::default(),
            ..self
        }
    }

    /// Decides one request for `key` on the Redis server's clock.
    ///
    /// # Errors
    /// [`RedisLimitError::Redis`] when Redis or the connection fails, and
    /// [`RedisLimitError::BadReply`] when the script returns something unexpected. No timeout
    /// is applied here.
    pub async fn check(&self, key: &str) -> Result<Decision, RedisLimitError> {
        self.invoke(key, None).await
    }

    /// Decides one request for `key` as if the server clock read `now_us` µs.
    ///
    /// For tests that replay the same timestamps through the Rust core and the script; keys
    /// written this way keep a 10-minute TTL because virtual time says nothing about expiry.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub async fn check_at(&self, key: &str, now_us: u64) -> Result<Decision, RedisLimitError> {
        self.invoke(key, Some(now_us)).await
    }

    async fn invoke(&self, key: &str, now: Option<u64>) -> Result<Decision, RedisLimitError> {
        let inner = &*self.inner;
        if inner.kind == AlgorithmKind::Gcra {
            let reply = if self.max_batch.get() == 1 {
                // One decision: the key goes straight into the command, no `String` for it.
                let cmd = inner.batch_command(std::iter::once(inner.key_arg(key)), now);
                match inner.eval::<Vec<i64>>(&cmd, &mut self.conn.clone()).await?[..] {
                    [reply] => reply,
                    ref other => return Err(RedisLimitError::BadReply(format!("{other:?}"))),
                }
            } else {
                self.coalesced(key, now).await?
            };
            parse_gcra(&inner.quota, reply)
        } else {
            let cmd = inner.command(key, now);
            let mut conn = self.conn.clone();
            let reply: Vec<i64> = inner.eval(&cmd, &mut conn).await?;
            parse(inner.quota.limit(), &reply)
        }
    }

    /// Queues one GCRA decision for its lane's coalescing task and waits for its reply.
    async fn coalesced(&self, key: &str, now: Option<u64>) -> Result<i64, RedisLimitError> {
        let queues = match self.coalescer.get() {
            Some(queues) => queues,
            None => {
                // The task needs a Tokio runtime; polled from any other executor this is an
                // error, not a panic.
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| RedisLimitError::Stopped)?;
                self.coalescer.get_or_init(|| {
                    (0..self.lanes.get())
                        .map(|_| {
                            coalesce::spawn(
                                &runtime,
                                self.inner.clone(),
                                self.conn.clone(),
                                self.max_batch,
                            )
                        })
                        .collect()
                })
            }
        };
        let queue = queues
            .get(coalesce::lane(key, queues.len()))
            .ok_or(RedisLimitError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            key: self.inner.redis_key(key),
            now,
            reply,
        };
        // Either fails only if the task is gone: its Tokio runtime was shut down.
        queue
            .send(pending)
            .await
            .map_err(|_| RedisLimitError::Stopped)?;
        answer.await.map_err(|_| RedisLimitError::Stopped)?
    }

    /// The arguments after `now` (`ARGV[2..]`) that `kind`'s script receives for `quota`, as
    /// sent on every call (for review, and for reproducing a call with `redis-cli`).
    #[must_use]
    pub fn script_args(kind: AlgorithmKind, quota: &Quota) -> Vec<u64> {
        match kind {
            AlgorithmKind::Gcra => vec![quota.interval_micros(), quota.tolerance_micros()],
            _ => vec![
                quota.limit(),
                quota.period_micros(),
                quota.burst(),
                quota.interval_micros(),
            ],
        }
    }

    /// The algorithm this limiter runs.
    #[must_use]
    pub fn kind(&self) -> AlgorithmKind {
        self.inner.kind
    }

    /// The quota enforced.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.inner.quota
    }

    /// The Lua source of the script this limiter runs (for review and for `SCRIPT LOAD`).
    #[must_use]
    pub fn script_source(&self) -> &'static str {
        scripts::source(self.inner.kind)
    }
}

/// The Redis key `namespace:{key}:<algorithm><suffix>`: the one place its layout is written,
/// whether straight into a command buffer (no intermediate `String` per call) or into the
/// `String` a coalesced request carries.
#[derive(Clone, Copy)]
struct KeyArg<'a> {
    /// [`Inner::namespace`].
    namespace: &'a str,
    /// The caller's key: the cluster hash tag.
    key: &'a str,
    /// Selects the algorithm suffix.
    kind: AlgorithmKind,
    /// Distinguishes a script's second key (`":seq"`), else empty.
    suffix: &'a str,
}

impl std::fmt::Display for KeyArg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{{{}}}:{}{}",
            self.namespace,
            self.key,
            self.kind.name(),
            self.suffix
        )
    }
}

impl ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut w = out.writer_for_next_arg();
        // Writing into the command's in-memory buffer cannot fail.
        let _ = write!(w, "{self}");
    }
}

/// GCRA's one-integer reply (`new_tat - now` when admitted, `now - tat` when denied) →
/// [`Decision`], with exactly the arithmetic of [`gcra::decide_with`](crate::algorithm::gcra::decide_with).
fn parse_gcra(quota: &Quota, reply: i64) -> Result<Decision, RedisLimitError> {
    let bad = || RedisLimitError::BadReply(reply.to_string());
    let (interval, tau) = (quota.interval_micros(), quota.tolerance_micros());
    let reset = reply.unsigned_abs();
    if reply > 0 {
        // Admitted: `reset` = new_tat - now ≤ τ.
        let remaining = tau.checked_sub(reset).ok_or_else(bad)? / interval;
        Ok(Decision::allowed(quota.limit(), remaining, reset))
    } else if reply < 0 {
        // Denied: `reset` = tat - now; allowed again at tat + interval - τ.
        let retry = (reset + interval).checked_sub(tau).ok_or_else(bad)?;
        Ok(Decision::denied(quota.limit(), reset, retry))
    } else {
        Err(bad())
    }
}

/// `{allowed, remaining, reset_after_us, retry_after_us}` → [`Decision`], through the same
/// constructors the Rust core uses, so both normalise identically.
fn parse(limit: u64, reply: &[i64]) -> Result<Decision, RedisLimitError> {
    let bad = || RedisLimitError::BadReply(format!("{reply:?}"));
    let [allowed, remaining, reset, retry] = reply else {
        return Err(bad());
    };
    let u = |v: &i64| u64::try_from(*v).map_err(|_| bad());
    Ok(match allowed {
        1 => Decision::allowed(limit, u(remaining)?, u(reset)?),
        0 => Decision::denied(limit, u(reset)?, u(retry)?),
        _ => return Err(bad()),
    })
}
