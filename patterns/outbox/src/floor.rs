//! The scan floor: where a claim's window may start without missing a row.
//!
//! # Why the window should not start at the beginning
//! Every published row is deleted, but its primary-key entry stays in the index until `VACUUM`
//! removes it. A window that starts at the lowest id walks every such dead entry on every
//! claim. Measured with `EXPLAIN ANALYZE`, a 5,000-row window took 8.9-12.7 ms after 1M
//! deletes without a vacuum, against 1.0 ms on a fresh table. Once Postgres has marked the
//! entries dead (the first scan after the deleting transaction ends does), walking them is
//! cheaper but not free: in the benchmark, a whole 5,000-row claim after 1M deletes took
//! 10.3-14.2 ms from the start against 8.2-10.2 ms from the floor (five runs). The cost grows
//! with every row deleted, and a relay at 150k events/s deletes 9M rows between two autovacuum
//! visits (its naptime is a minute).
//!
//! # Why "after the last row published" is wrong
//! Ids are drawn when a row is inserted, not when it commits. A writer can draw id 100, a second
//! writer draw 101 and commit, the relay publish 101, and only then the first writer commit.
//! A window starting after 101 would never see row 100. Rescanning from the start now and then
//! would find it, but late: every writer whose transaction is still open when the relay passes
//! its id would wait for that rescan.
//!
//! # The safe floor
//! The relay moves the floor only past ids that no open transaction can still commit:
//! 1. A `BEFORE INSERT` statement trigger (migration `0003`) makes every transaction that
//!    inserts into the outbox take a transaction id (xid) *before* it draws any row id.
//! 2. A claim reads the id sequence's last value `L`, and then takes its own xid `C`. Every id
//!    up to `L` was drawn before `L` was read, by a transaction whose xid was assigned before
//!    that, so below `C` (xids are handed out in order).
//! 3. A later window reads the snapshot's `xmin`, the oldest xid still running. Once
//!    `xmin > C`, every transaction that drew an id up to `L` has committed or aborted, and
//!    that window's snapshot sees all of their rows.
//! 4. That window also returns its first row `m` (the lowest unpublished, unparked id above the
//!    floor) and the lowest parked id `p` above the floor, from the same snapshot. Every id
//!    `<= min(L, m - 1, p - 1)` is then published, discarded or rolled back, for good: the
//!    floor moves there.
//!
//! A row that another relay has deleted but not committed is still visible, so it is `m` or
//! above; a parked row may be retried, so the floor stays below it. The one thing the argument
//! needs from the sequence is that nobody hands out ids ahead of time: a sequence `CACHE`
//! above 1 lets a session keep drawn ids for a later transaction, so the relay then never moves
//! the floor (it checks the sequence on every candidate). Nor does a relay whose role may not
//! read the sequence. Inserting rows with explicit ids (`OVERRIDING SYSTEM VALUE`) or rewinding
//! the sequence is unsupported, as it already breaks the claim's id order.
//!
//! A long transaction anywhere on the Postgres server (`xmin` is server-wide) holds the floor
//! back: the relay is then as fast as without a floor, never wrong.

/// A learner's claim (`exercise` builds) has no floor: this reads from the start every time, so
/// the relay and the benchmarks run against it unchanged.
#[cfg(feature = "exercise")]
pub async fn claim_from(
    pool: &sqlx::PgPool,
    limit: std::num::NonZeroUsize,
    _floor: &mut ScanFloor,
) -> Result<crate::Claim, sqlx::Error> {
    crate::claim(pool, limit).await
}

/// No window is read ahead for a learner's claim (`exercise` builds).
#[cfg(feature = "exercise")]
pub(crate) enum Ahead {}

/// A learner's claim reads no window ahead (`exercise` builds).
#[cfg(feature = "exercise")]
#[allow(clippy::unused_async)]
pub(crate) async fn read_ahead(
    _pool: &sqlx::PgPool,
    _limit: std::num::NonZeroUsize,
    _after: i64,
) -> Result<Option<Ahead>, sqlx::Error> {
    Ok(None)
}

/// A learner's claim deletes nothing while it publishes (`exercise` builds): the rows are
/// settled once the acks are in.
#[cfg(feature = "exercise")]
pub(crate) async fn publish_deleting<'a, Fut: Future>(
    claim: &'a mut crate::Claim,
    publish: impl FnOnce(&'a [crate::OutboxRow], Vec<rdkafka::message::OwnedHeaders>) -> Fut,
) -> Fut::Output {
    // No headers built ahead: the publisher builds them.
    publish(claim.rows(), Vec::new()).await
}

/// Never called: there is no [`Ahead`] in `exercise` builds.
#[cfg(feature = "exercise")]
#[allow(clippy::unused_async)]
pub(crate) async fn claim_ahead(
    _pool: &sqlx::PgPool,
    ahead: Ahead,
) -> Result<crate::Claim, sqlx::Error> {
    match ahead {}
}

/// Index walks only, for the rest of the transaction: the outbox's statistics are almost always
/// stale (a queue table: empty, then a burst), and with a few rows' estimate the planner reads
/// the whole table, dead rows included, where walking the primary key from the floor reads only
/// what is asked for. See "Pinning the plan" in `src/claim.rs`.
pub(crate) const PIN_PLAN: &str = "
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)";

/// Where one claim loop's windows start. Each relay worker keeps its own.
///
/// Start with [`ScanFloor::default`] (the beginning of the table) and pass the same value to
/// every [`claim_from`](crate::claim_from) of one loop; the claim moves it forward as it proves
/// that lower ids are gone for good (see the module docs). A fresh floor is always correct,
/// only slower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanFloor {
    /// Every id up to this one is published, discarded or rolled back.
    floor: i64,
    /// The candidate waiting for its writers to finish.
    pending: Option<Candidate>,
}

/// Every id up to `last_id` was drawn by a transaction whose xid is below `xid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The id sequence's last value when the candidate was taken.
    pub(crate) last_id: i64,
    /// An xid assigned after `last_id` was read.
    pub(crate) xid: i64,
}

/// What one window saw, all from the window statement's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowView {
    /// The snapshot's `xmin`: every xid below it has finished.
    pub(crate) horizon: i64,
    /// The window's first row: the lowest unpublished, unparked id above the floor.
    pub(crate) first_live: i64,
    /// The lowest parked id above the floor, if any.
    pub(crate) first_parked: Option<i64>,
}

impl ScanFloor {
    /// Every row with an id up to this one is gone for good: windows start above it.
    pub fn get(&self) -> i64 {
        self.floor
    }

    /// Whether the claim should take a new candidate (none is waiting).
    pub(crate) fn wants_candidate(&self) -> bool {
        self.pending.is_none()
    }

    /// Records a candidate to settle later.
    pub(crate) fn propose(&mut self, candidate: Candidate) {
        self.pending = Some(candidate);
    }

    /// Moves the floor if the waiting candidate's writers have all finished by `view`'s snapshot.
    pub(crate) fn observe(&mut self, view: WindowView) {
        let Some(candidate) = self.pending else {
            return;
        };
        if view.horizon <= candidate.xid {
            return; // a writer that may hold an id up to `last_id` is still running
        }
        let mut settled = candidate.last_id.min(view.first_live.saturating_sub(1));
        if let Some(parked) = view.first_parked {
            settled = settled.min(parked.saturating_sub(1));
        }
        self.floor = self.floor.max(settled);
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposed(last_id: i64, xid: i64) -> ScanFloor {
        let mut floor = ScanFloor::default();
        floor.propose(Candidate { last_id, xid });
        floor
    }

    fn view(horizon: i64, first_live: i64, first_parked: Option<i64>) -> WindowView {
        WindowView {
            horizon,
            first_live,
            first_parked,
        }
    }

    #[test]
    fn the_floor_waits_while_a_writer_older_than_the_candidate_runs() {
        let mut floor = proposed(100, 50);
        floor.observe(view(50, 101, None));
        assert_eq!(floor.get(), 0);
        assert!(!floor.wants_candidate(), "the candidate keeps waiting");
        floor.observe(view(51, 101, None));
        assert_eq!(floor.get(), 100);
        assert!(floor.wants_candidate());
    }

    #[test]
    fn the_floor_stops_below_the_first_unpublished_row() {
        let mut floor = proposed(100, 50);
        floor.observe(view(60, 40, None));
        assert_eq!(floor.get(), 39);
    }

    #[test]
    fn the_floor_stops_below_a_parked_row() {
        let mut floor = proposed(100, 50);
        floor.observe(view(60, 90, Some(7)));
        assert_eq!(floor.get(), 6);
    }

    #[test]
    fn the_floor_never_moves_back() {
        let mut floor = proposed(100, 50);
        floor.observe(view(60, 101, None));
        floor.propose(Candidate {
            last_id: 120,
            xid: 70,
        });
        // A window can only start above the floor, so `first_live` below it cannot happen; even
        // so, the floor does not move back.
        floor.observe(view(80, 30, None));
        assert_eq!(floor.get(), 100);
    }

    #[test]
    fn without_a_candidate_nothing_moves() {
        let mut floor = ScanFloor::default();
        floor.observe(view(i64::MAX, i64::MAX, None));
        assert_eq!(floor.get(), 0);
    }
}
