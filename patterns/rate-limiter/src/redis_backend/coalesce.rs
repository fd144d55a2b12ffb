//! Coalescing: the GCRA decisions queued while earlier calls are in flight go out as one
//! script call.
//!
//! Without it, 64 concurrent requests cost Redis 64 script runs, each paying the call overhead
//! and a `TIME`; with it, they cost a few runs of up to `max_batch` decisions each. There is no
//! timer: the task sends whatever is queued as soon as one of its [`MAX_IN_FLIGHT`] slots is
//! free, so a lone request leaves at once and batches only form while Redis is busy — the same
//! trade as a database's group commit.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use crate::RedisLimitError;

/// Default most decisions per script call.
pub(super) const DEFAULT_MAX_BATCH: NonZeroUsize = match NonZeroUsize::new(128) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Script calls on the wire at once. More than one keeps Redis busy while the previous reply
/// travels back and is handed out; a few suffice, and every request queued meanwhile joins the
/// next batch.
const MAX_IN_FLIGHT: usize = 4;

/// The longest one call may hold a slot. Callers normally give up much sooner (the
/// [`DistributedLimiter`](crate::DistributedLimiter) timeout); this bound only keeps a call
/// that never answers (a silently dead connection) from taking a slot for good.
const CALL_BOUND: Duration = Duration::from_secs(1);

/// Requests queued beyond the in-flight batches before callers wait (their own timeout bounds
/// that wait).
const QUEUE: usize = 4_096;

/// One caller's request, waiting for a batch.
pub(super) struct Pending {
    /// The full Redis key, formatted by the caller (off the task's serial path).
    pub(super) key: String,
    /// `None` for the Redis server's clock; `Some(µs)` for a test clock.
    pub(super) now: Option<u64>,
    /// Where the script's reply for this key goes.
    pub(super) reply: oneshot::Sender<Result<i64, RedisLimitError>>,
}

/// Starts the coalescing task on `runtime`; returns its queue. The task ends when every sender
/// is dropped and its in-flight calls have answered.
pub(super) fn spawn(
    runtime: &tokio::runtime::Handle,
    inner: Arc<Inner>,
    conn: ConnectionManager,
    max_batch: NonZeroUsize,
) -> mpsc::Sender<Pending> {
    let (queue, requests) = mpsc::channel(QUEUE);
    runtime.spawn(run(inner, conn, requests, max_batch.get()));
    queue
}

/// Takes up to `max_batch` queued requests whenever a slot is free and sends them as one call.
async fn run(
    inner: Arc<Inner>,
    conn: ConnectionManager,
    mut requests: mpsc::Receiver<Pending>,
    max_batch: usize,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        tokio::select! {
            // Finished calls first: each frees a slot for the requests that queued meanwhile.
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            received = requests.recv_many(&mut batch, max_batch), if in_flight.len() < MAX_IN_FLIGHT => {
                if received == 0 {
                    // Every limiter clone is gone.
                    break;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
                in_flight.push(send(inner.clone(), conn.clone(), full));
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Sends one batch (as one call per run of equal `now`; in production every request uses the
/// server clock, so that is one call) and hands each caller its reply.
async fn send(inner: Arc<Inner>, mut conn: ConnectionManager, batch: Vec<Pending>) {
    // A caller that stopped waiting (its timeout fired) is not decided: it would consume quota
    // for a request that was already answered by the failure policy.
    let mut rest: Vec<Pending> = batch.into_iter().filter(|p| !p.reply.is_closed()).collect();
    while let Some(first) = rest.first() {
        let now = first.now;
        let same_clock = rest.iter().take_while(|p| p.now == now).count();
        let tail = rest.split_off(same_clock);
        let run = std::mem::replace(&mut rest, tail);
        let cmd = inner.batch_command(run.iter().map(|p| p.key.as_str()), now);
        let call = tokio::time::timeout(CALL_BOUND, inner.eval::<Vec<i64>>(&cmd, &mut conn));
        match call.await {
            Err(_) => answer_all(run, &RedisLimitError::Timeout(CALL_BOUND)),
            Ok(Err(error)) => answer_all(run, &RedisLimitError::Redis(error)),
            Ok(Ok(replies)) if replies.len() == run.len() => {
                for (pending, reply) in run.into_iter().zip(replies) {
                    // The caller may have given up since; its decision is then simply unused.
                    let _ = pending.reply.send(Ok(reply));
                }
            }
            Ok(Ok(replies)) => {
                let error = RedisLimitError::BadReply(format!(
                    "{} replies for {} keys",
                    replies.len(),
                    run.len()
                ));
                answer_all(run, &error);
            }
        }
    }
}

/// Gives every request of `run` the same error.
fn answer_all(run: Vec<Pending>, error: &RedisLimitError) {
    for pending in run {
        let _ = pending.reply.send(Err(error.clone()));
    }
}
