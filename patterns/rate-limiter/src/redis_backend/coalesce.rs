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
//!
//! # Lanes: two coalescing tasks, not one
//! With one task, every caller whose reply came back joins the next batch, so under load the
//! callers move in one wave. Timestamps taken around each call (the script returning Redis's
//! `TIME` at its start and end, the client's clock at send and reply; 64-task benchmark, one
//! task) showed the cycle: a call of 53–57 decisions ran 65–75 µs in the script, but 40–65 µs
//! passed between the client sending it and the script starting, and 40–75 µs (usually about
//! 45) between the script ending and the client holding the reply (system calls and the
//! wake-ups of idle threads on both sides). Its callers then took another 30–50 µs to ask
//! again, and Redis sat idle for all of it: 30–140 µs of every 200–230 µs cycle. Neither side
//! was busy (the machine 42–46 % idle, Redis at 0.6–0.7 of a core, the client at 0.5), and no
//! setting of the slots or the floor changed the rate (2 to 16 slots, floor on or off:
//! 3.1–3.7 µs a decision).
//!
//! So the requests are split by a hash of their key over [`DEFAULT_LANES`] independent tasks
//! (see [`RedisLimiter::lanes`](super::RedisLimiter::lanes)), each with its own batches, slots
//! and floor. The lanes' waves drift apart, so Redis decides one lane's batch while the client
//! turns the other's around. On the machine of that trace, in three alternating rounds, one
//! lane measured 3.52–3.76 µs a decision, two lanes 3.08–3.19 µs (+14 %) and four lanes
//! 3.00–3.16 µs; Redis went from 0.57–0.71 of a core to 0.75–0.81 with two lanes and
//! 0.87–0.90 with four; over sixteen later runs of the benchmark, two lanes against one gave
//! 347 k against 303 k decisions a second (medians), 0.92 of the no-op `EVALSHA` baseline
//! against 0.78. Redis is then the busiest part, and more lanes only cut each call
//! smaller (7 decisions a call with four lanes, 15 with two, 25 with one), which costs it more
//! per decision, so the default is two. A key keeps its lane, so repeated requests for one hot
//! key still share batches.

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

/// Default number of coalescing tasks (see [`RedisLimiter::lanes`](super::RedisLimiter::lanes)).
pub(super) const DEFAULT_LANES: NonZeroUsize = match NonZeroUsize::new(2) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Script calls on the wire at once, per lane. More than one keeps Redis busy while the
/// previous reply travels back and is handed out; a few suffice, and every request queued
/// meanwhile joins a later batch.
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

/// The lane, out of `lanes`, that serves `key`: FNV-1a over its bytes, so one key always
/// lands in the same lane and distinct keys spread evenly. (`lanes` is never 0; 0 maps to lane
/// 0, which the caller's lookup then refuses.)
pub(super) fn lane(key: &str, lanes: usize) -> usize {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = key
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    let lanes = u64::try_from(lanes).unwrap_or(u64::MAX);
    hash.checked_rem(lanes)
        .and_then(|lane| usize::try_from(lane).ok())
        .unwrap_or(0)
}

/// Starts one lane's coalescing task on `runtime`; returns its queue. The task ends when every
/// sender is dropped and its in-flight calls have answered.
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
    use super::{MAX_IN_FLIGHT, lane, ready};

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
    fn a_key_always_takes_the_same_lane_and_keys_spread_over_all_lanes() {
        let keys: Vec<String> = (0..64).map(|t| format!("bench-{t}")).collect();
        for lanes in 1..=4 {
            let mut used = vec![0; lanes];
            for key in &keys {
                let first = lane(key, lanes);
                assert_eq!(first, lane(key, lanes), "a key keeps its lane");
                used[first] += 1;
            }
            assert!(used.iter().all(|&n| n > 0), "{lanes} lanes: {used:?}");
        }
        assert_eq!(lane("any", 0), 0, "no lanes is not a panic");
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
