//! Waking the relay: `LISTEN outbox` for millisecond latency, a poll interval as the safety net.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Channel the `outbox_notify` trigger signals on every committed insert.
pub(crate) const CHANNEL: &str = "outbox";

/// How the relay learns that there is work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeMode {
    /// `LISTEN/NOTIFY` wakes the relay on every commit; the poll interval is only a fallback
    /// for notifications lost while the listener reconnects.
    Notify,
    /// Poll every interval only (the baseline the benchmark compares against).
    PollOnly,
}

/// One wake-up slot per claim worker of a relay.
///
/// `Notify::notify_one` stores a permit when nobody is waiting, so a commit that lands while a
/// worker is busy publishing is not missed: its next wait returns at once. Every worker gets the
/// permit; the ones that find nothing to claim go back to sleep.
#[derive(Debug, Clone)]
pub(crate) struct Wakers(Arc<[Notify]>);

impl Wakers {
    pub(crate) fn new(workers: usize) -> Self {
        Self((0..workers).map(|_| Notify::new()).collect())
    }

    /// The slot of worker `i`.
    pub(crate) fn slot(&self, i: usize) -> Option<&Notify> {
        self.0.get(i)
    }

    fn notify_one(&self) {
        for slot in self.0.iter() {
            slot.notify_one();
        }
    }
}

/// Listens for commit notifications in a background task and wakes every worker on each.
pub(crate) fn spawn_listener(
    pool: PgPool,
    notify: Wakers,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            match listen_until_error(&pool, &notify, &shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "outbox listener lost its connection; reconnecting");
                    // Anything committed while we were away is picked up by this extra wake-up.
                    notify.notify_one();
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    })
}

async fn listen_until_error(
    pool: &PgPool,
    notify: &Wakers,
    shutdown: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Rows committed before LISTEN took effect produced no notification we could hear.
    notify.notify_one();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            received = listener.try_recv() => {
                // `Some` is a commit. `None` means the connection dropped and sqlx re-established
                // it, so notifications may have been lost in between: wake the relay to look.
                received?;
                notify.notify_one();
            }
        }
    }
}
