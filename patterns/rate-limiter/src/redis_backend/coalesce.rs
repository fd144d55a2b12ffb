//! Coalescing: the GCRA decisions queued while earlier calls are in flight go out as one
//! script call.
//!
//! Without it, 64 concurrent requests cost Redis 64 script runs, each paying the call overhead
//! and a `TIME`; with it, they cost a few runs of up to `max_batch` decisions each. There is no
//! timer: a lone request leaves at once, and batches only form while Redis is busy — the same
//! trade as a database's group commit.
//!
//! # When a batch leaves
//! A batch is sent when one of the [`MAX_IN_FLIGHT`] slots is free and it holds at least
//! 1 / ([`MAX_IN_FLIGHT`] − 1) of the decisions already on the wire (a third, with four slots),
//! or is full. With nothing on the wire that is any batch, so an idle limiter adds no wait.
//! Under load, without the floor, a reply woke its callers, the first of them to ask again found
//! a free slot and went alone: in the 64-task benchmark, 48 % of the calls carried a single
//! decision, each paying Redis's whole per-call cost. With the floor, calls carry about equal
//! shares (8–63 decisions there). Over six alternating runs of that benchmark the decisions per
//! second stayed the same (333 k against 340 k, within the runs' spread), while Redis spent
//! 12 % and the client 10 % less CPU per decision — what a Redis shared by many instances runs
//! out of first. The price is a bounded wait: under load a request waits until enough requests
//! join it or the calls on the wire return, never longer than those calls take.

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
/// travels back and is handed out; a few suffice, and every request queued meanwhile joins a
/// later batch.
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

/// Collects queued requests into a batch and sends it as one call whenever [`ready`] says so.
async fn run(
    inner: Arc<Inner>,
    conn: ConnectionManager,
    mut requests: mpsc::Receiver<Pending>,
    max_batch: usize,
) {
    let mut in_flight = FuturesUnordered::new();
    // Decisions in the calls on the wire.
    let mut deciding = 0;
    let mut batch = Vec::with_capacity(max_batch);
    let mut open = true;
    while open || !batch.is_empty() || !in_flight.is_empty() {
        let room = max_batch - batch.len();
        tokio::select! {
            // Finished calls first: each frees a slot and shrinks what a batch must match.
            biased;
            Some(decided) = in_flight.next(), if !in_flight.is_empty() => deciding -= decided,
            received = requests.recv_many(&mut batch, room), if open && room > 0 => {
                // 0: every limiter clone is gone; send what is left, then stop.
                open = received > 0;
            }
            // Nothing to wait for: the batch is full or the queue closed, and nothing is on the
            // wire, so `ready` holds below and the batch leaves now.
            else => {}
        }
        if in_flight.len() < MAX_IN_FLIGHT && ready(batch.len(), deciding, max_batch, open) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
            deciding += full.len();
            in_flight.push(send(inner.clone(), conn.clone(), full));
        }
    }
}

/// Whether a batch of `len` requests should take a free slot while `deciding` decisions are on
/// the wire (see the module docs).
fn ready(len: usize, deciding: usize, max_batch: usize, open: bool) -> bool {
    len > 0 && (len >= max_batch || !open || (MAX_IN_FLIGHT - 1) * len >= deciding)
}

/// Sends one batch (as one call per run of equal `now`; in production every request uses the
/// server clock, so that is one call) and hands each caller its reply. Returns the batch's size.
async fn send(inner: Arc<Inner>, mut conn: ConnectionManager, batch: Vec<Pending>) -> usize {
    let size = batch.len();
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
    size
}

/// Gives every request of `run` the same error.
fn answer_all(run: Vec<Pending>, error: &RedisLimitError) {
    for pending in run {
        let _ = pending.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_IN_FLIGHT, ready};

    #[test]
    fn with_nothing_on_the_wire_any_batch_leaves_at_once() {
        assert!(ready(1, 0, 128, true));
        assert!(!ready(0, 0, 128, true), "an empty batch is never sent");
    }

    #[test]
    fn under_load_a_batch_waits_for_its_share_of_the_wire() {
        let deciding = 60;
        let share = deciding / (MAX_IN_FLIGHT - 1);
        assert!(
            !ready(1, deciding, 128, true),
            "one request does not take a slot"
        );
        assert!(!ready(share - 1, deciding, 128, true));
        assert!(ready(share, deciding, 128, true));
    }

    #[test]
    fn a_full_batch_or_a_closed_queue_leaves_regardless() {
        assert!(ready(4, 1_000, 4, true), "full");
        assert!(
            ready(1, 1_000, 128, false),
            "the last requests of a closed queue"
        );
    }
}
