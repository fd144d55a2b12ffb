//! Claiming a batch: which rows a relay may publish right now, and closing the claim.
//!
//! # Why `FOR UPDATE SKIP LOCKED`
//! The claim is a row lock held by an open transaction. Another relay's claim skips locked rows
//! instead of queueing behind them, so several relays never wait for each other and never publish
//! the same row concurrently. If a relay dies, Postgres drops its connection, the transaction
//! aborts and the locks vanish: the rows are simply claimable again. No lease column, no timeout
//! to tune, no reaper.
//!
//! # Why claim whole aggregates, through their head row
//! Locking rows alone does not preserve order: relay A locks event 1 of an order, relay B skips it
//! and happily takes event 2. So a relay owns an aggregate only while it holds the aggregate's
//! HEAD row, its lowest unpublished sequence, and publishes only rows of aggregates it owns.
//! Another relay can only ever reach an aggregate through its head, which is locked, so each
//! aggregate has at most one publisher at a time, and it publishes in sequence order.
//!
//! # Two statements: read a window, then lock its heads
//! 1. [`WINDOW`] reads the oldest `limit` publishable rows by id above the loop's
//!    [`ScanFloor`], without locking anything: a plain walk of the primary key, about a
//!    microsecond a row. The floor keeps that walk off the dead index entries of rows already
//!    published (see [`crate::floor`] for why it never skips a row that can still commit).
//! 2. [`LOCK_HEADS`] takes each aggregate's first row of that window and locks it with
//!    `FOR UPDATE SKIP LOCKED`, keeping it only if the row one sequence number before it is
//!    gone (one index probe per *aggregate*, not per row). The claim keeps the window's rows of
//!    the aggregates whose head it locked, and forgets the rest. While Postgres runs it, the
//!    client builds each window row's record headers, so the first send need not wait for them.
//!
//! Why looking up one earlier sequence number is enough: an aggregate's rows in the outbox are
//! always one unbroken run of sequence numbers. Writers allocate them without gaps (the
//! allocation rolls back with the transaction), and rows only ever leave from the front of the
//! run (see below). So an earlier row exists exactly when the previous number does. Asking
//! "does any earlier row exist?" instead walks the index entries of every row of the aggregate
//! ever published and not yet vacuumed. Measured with `EXPLAIN ANALYZE` for 500 aggregates
//! after 1M deletes: 34 ms, and 477 ms for the first probe to meet the dead entries, against
//! 2.1-2.9 ms for the one-number probe (1.3-1.6 ms for either on a fresh table).
//!
//! Why the rows read by the first statement are still exactly right once the second has locked
//! the head:
//! - Writers of one aggregate commit in sequence order (the `outbox_aggregate` row lock is held
//!   until commit) and ids are drawn inside that lock, so per aggregate, id order is sequence
//!   order and a snapshot that sees event n sees every earlier event. The window's first row of
//!   an aggregate is therefore its head as of the first statement, unless an earlier row is
//!   parked or lies in an earlier window; the lock statement's `NOT EXISTS` refuses those.
//! - Rows only ever leave an aggregate from its head (the acked prefix is deleted, the first
//!   rejected row parked, a parked row discarded). If the head is still there, unparked, and
//!   now locked by this claim, no row after it can have been deleted or parked in between, and
//!   nobody else can do so until this claim ends. A head that another relay published (deleted)
//!   or parked between the two statements is not returned by the lock (Postgres re-checks a
//!   row's latest version before locking it), and the aggregate is skipped.
//! - Rows committed after the first statement are simply not in this batch; they come after
//!   the window's rows in sequence order and are published by a later claim.
//!
//! If every aggregate of a full window belongs to other relays, the claim reads the next window
//! (up to [`MAX_WINDOWS`]), so a second relay finds the aggregates the first one does not hold.
//!
//! Cost of the choice: one aggregate's events are published by one relay at a time, so a single
//! very hot aggregate does not get faster with more relays (a second relay helps only with other
//! aggregates). A batch is the oldest rows, whatever aggregates they belong to: first committed,
//! first published, and one aggregate with a long backlog can fill a whole batch.
//!
//! # Reading the next window ahead
//! While a full claim's records await their acks, the relay reads the window after its last row
//! ([`read_ahead`]), and the next claim only locks that window's heads ([`claim_ahead`]). The
//! argument above holds for such a window too, because it never relied on when the window was
//! read: [`LOCK_HEADS`] checks each head against the table as it is when locked, after the
//! previous claim committed. See [`read_ahead`] for what such windows miss and how the relay
//! makes up for it.
//!
//! # Why delete in the claiming transaction
//! The rows are deleted (or parked) in the same transaction that locked them, which commits
//! only after Kafka acknowledged them. A crash anywhere before that commit rolls the delete
//! back: the events are published again by the next claim (a duplicate, never a loss), and again
//! from the head, so the replay is in order.
//!
//! The delete finds the rows by the location (`ctid`, see [`Tid`]) the window read them at, not
//! by primary key: no index descent per row, a third of the cost. [`Claim::complete`] checks
//! that exactly the expected ids went, and rolls back otherwise.
//!
//! # Deleting while the records await their acks
//! The relay does not wait for the acks to start the delete: [`publish_deleting`] deletes every
//! claimed row behind a savepoint while the batch publishes, and [`Claim::complete`] commits
//! that delete as it stands when every row was acknowledged (the usual case), or rolls back to
//! the savepoint and settles row by row when not. Nothing commits before the acks either way,
//! so a crash in between still rolls every delete back.
//!
//! # Pinning the plan
//! The outbox is a queue table: empty most of the time, then a burst, so its statistics are
//! almost always stale. With a few rows' estimate the planner reads the whole backlog (a
//! sequential scan, or a bitmap scan) and sorts it, instead of walking the primary key and
//! stopping after `limit` rows. Measured over a 20k-row backlog: 52 ms with the bitmap scan and
//! a sort spilling to disk, 1.5 ms walking the index. The claim forbids both for its own
//! transaction ([`PIN_PLAN`]); every statement it runs has an index that serves it.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;

use rdkafka::message::OwnedHeaders;
use sqlx::{PgPool, Postgres, Transaction};

use crate::floor::{Candidate, PIN_PLAN, ScanFloor, WindowView};
use crate::tid::Tid;
use crate::{OutboxError, OutboxRow, Settlement};

/// The id sequence's last drawn value, or no value if the sequence caches ids ahead (`CACHE`
/// above 1), which the scan floor's argument cannot allow, or if the relay's role may not read
/// the sequence (a least-privilege role that only reads and deletes outbox rows): the relay
/// then works as before, from the start of the table, instead of failing every claim.
const LAST_ID: &str = "
SELECT CASE WHEN s.seqcache = 1 AND has_sequence_privilege(s.seqrelid, 'SELECT, USAGE')
            THEN coalesce(pg_sequence_last_value(s.seqrelid), 0) END
FROM pg_sequence s
WHERE s.seqrelid = pg_get_serial_sequence('outbox', 'id')::regclass";

/// This transaction's xid, assigned now if it has none yet (run after [`LAST_ID`]).
const OWN_XID: &str = "SELECT pg_current_xact_id()::text::bigint";

/// The oldest `$1` publishable rows with an id above `$2`, in id order (which, per aggregate, is
/// sequence order). No locks: [`LOCK_HEADS`] decides which of them this claim owns. Each row
/// also carries, from the same snapshot, what the [`ScanFloor`] needs: the snapshot's `xmin`
/// and the lowest parked id above `$2` (both computed once per statement).
const WINDOW: &str = "
SELECT ctid, id, event_id, aggregate_type, aggregate_id, sequence, event_type, payload, headers,
       created_at,
       (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint) AS horizon,
       (SELECT min(p.id) FROM outbox p WHERE p.parked_at IS NOT NULL AND p.id > $2) AS first_parked
FROM outbox
WHERE parked_at IS NULL AND id > $2
ORDER BY id
LIMIT $1";

/// Of the candidate head rows `$1`, locks (skipping rows other claims hold) and returns those
/// that are still unpublished, unparked and the lowest sequence of their aggregate (no row with
/// the sequence number just before it remains: see the module docs).
const LOCK_HEADS: &str = "
SELECT h.id
FROM outbox h
WHERE h.id = ANY($1)
  AND h.parked_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM outbox earlier
      WHERE earlier.aggregate_type = h.aggregate_type
        AND earlier.aggregate_id = h.aggregate_id
        AND earlier.sequence = h.sequence - 1)
FOR UPDATE OF h SKIP LOCKED";

/// Deletes the rows at `$1` and returns the ids it deleted, for [`Claim::complete`] to check.
const DELETE_AT: &str = "
WITH gone AS (DELETE FROM outbox WHERE ctid = ANY($1) RETURNING id)
SELECT coalesce(array_agg(id), '{}') FROM gone";

/// Marks where the provisional delete of [`publish_deleting`] starts.
const SAVEPOINT: &str = "SAVEPOINT provisional_delete";

/// Undoes the provisional delete, keeping the head locks taken before it: since PostgreSQL 9.3
/// a row lock taken before a savepoint outlives the rollback of a change made to the row after
/// it (checked on 15: another session's `FOR UPDATE SKIP LOCKED` still skips the head).
const UNDO_PROVISIONAL: &str = "ROLLBACK TO SAVEPOINT provisional_delete";

/// How many windows one claim reads at most while it finds every aggregate held by others.
const MAX_WINDOWS: usize = 4;

/// Rows locked by one relay, inside the transaction that will delete them.
///
/// Dropping a `Claim` without [`complete`](Claim::complete) rolls the transaction back: every
/// row stays in the outbox and is claimed again (that is also what a crash does).
#[derive(Debug)]
pub struct Claim {
    /// The open transaction holding the head-row locks.
    tx: Transaction<'static, Postgres>,
    /// The claimed rows in id order, which is each aggregate's sequence order.
    rows: Vec<OutboxRow>,
    /// Where each row of `rows` lives (same index), to delete it without an index lookup.
    locations: Vec<Tid>,
    /// Each row's record headers (same index), built while Postgres locked the heads.
    headers: Vec<OwnedHeaders>,
    /// What [`publish_deleting`] did to the rows inside the transaction.
    provisional: Provisional,
}

/// The state of a claim's provisional delete (see [`publish_deleting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provisional {
    /// Not attempted: the transaction holds only the head locks.
    None,
    /// Every claimed row is deleted, exactly those, behind the savepoint.
    Deleted,
    /// The attempt failed or deleted other rows than the claimed ones: roll back to the
    /// savepoint before settling (which fails the claim if the savepoint is not there).
    Undo,
}

/// A window row and its location.
#[derive(sqlx::FromRow)]
struct Located {
    /// The row's `ctid`.
    ctid: Tid,
    /// The row.
    #[sqlx(flatten)]
    row: OutboxRow,
    /// The window snapshot's `xmin` (the same in every row).
    horizon: i64,
    /// The lowest parked id above the window's start (the same in every row).
    first_parked: Option<i64>,
}

/// Claims up to `limit` rows, skipping aggregates another relay holds, reading from the start
/// of the table.
///
/// A loop that claims again and again should use [`claim_from`] with one [`ScanFloor`], so
/// that its windows skip what is already published.
///
/// An empty claim is normal (nothing to do, or every aggregate is held by another relay);
/// release it or let it drop.
///
/// # Errors
/// Any database error; nothing is locked afterwards.
pub async fn claim(pool: &PgPool, limit: NonZeroUsize) -> Result<Claim, sqlx::Error> {
    // No floor to keep: a candidate would cost two statements and an xid, then be dropped.
    claim_above(pool, limit, None).await
}

/// Claims up to `limit` rows above `floor`, skipping aggregates another relay holds, and moves
/// `floor` forward when it can prove that lower ids are gone for good (see [`ScanFloor`]).
///
/// # Errors
/// Any database error; nothing is locked afterwards, and `floor` is still correct.
pub async fn claim_from(
    pool: &PgPool,
    limit: NonZeroUsize,
    floor: &mut ScanFloor,
) -> Result<Claim, sqlx::Error> {
    claim_above(pool, limit, Some(floor)).await
}

/// [`claim_from`] with a floor to keep up to date, or [`claim`] from the start without one.
async fn claim_above(
    pool: &PgPool,
    limit: NonZeroUsize,
    mut floor: Option<&mut ScanFloor>,
) -> Result<Claim, sqlx::Error> {
    let mut tx = begin_pinned(pool).await?;
    if let Some(floor) = floor.as_deref_mut()
        && floor.wants_candidate()
    {
        let last_id: Option<i64> = sqlx::query_scalar(LAST_ID)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        if let Some(last_id) = last_id {
            // Strictly after reading `last_id`: see `crate::floor`, step 2.
            let xid: i64 = sqlx::query_scalar(OWN_XID).fetch_one(&mut *tx).await?;
            floor.propose(Candidate { last_id, xid });
        }
    }
    let mut after = floor.as_deref().map_or(0, ScanFloor::get);
    let mut owned = Owned::default();
    for window_index in 0..MAX_WINDOWS {
        let window = read_window(&mut tx, limit, after).await?;
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            break;
        };
        // Only the first window starts at the floor, so only its first row is the lowest
        // unpublished id above it.
        if let Some(floor) = floor.as_deref_mut()
            && window_index == 0
        {
            floor.observe(WindowView {
                horizon: first.horizon,
                first_live: first.row.id,
                first_parked: first.first_parked,
            });
        }
        after = last.row.id;
        let full = window.len() == limit.get();
        owned = own(&mut tx, window).await?;
        if !owned.window.is_empty() || !full {
            break;
        }
    }
    Ok(Claim::owning(tx, owned))
}

/// Opens a claim's transaction on `conn`, with the plan pinned (see [`PIN_PLAN`]).
async fn begin_pinned<'c>(
    conn: impl sqlx::Acquire<'c, Database = Postgres>,
) -> Result<Transaction<'c, Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(PIN_PLAN).execute(&mut *tx).await?;
    Ok(tx)
}

/// Runs [`WINDOW`]: the oldest `limit` publishable rows with an id above `after`.
async fn read_window(
    tx: &mut Transaction<'_, Postgres>,
    limit: NonZeroUsize,
    after: i64,
) -> Result<Vec<Located>, sqlx::Error> {
    sqlx::query_as::<_, Located>(WINDOW)
        .bind(i64::try_from(limit.get()).unwrap_or(i64::MAX))
        .bind(after)
        .fetch_all(&mut **tx)
        .await
}

/// A window read ahead, while the claim before it was still publishing: see [`read_ahead`].
pub(crate) struct Ahead(Vec<Located>);

/// Reads the window after `after`, the last row id of the claim now publishing (`current`
/// below), with no locks, while `current`'s records await their acks: Postgres reads on the
/// core the broker round trip leaves idle, and the next claim ([`claim_ahead`]) only locks its
/// heads.
///
/// Why a window read before `current` commits is still right to lock: [`LOCK_HEADS`] keeps an
/// aggregate only if the window's first row of it is its head *when locked* (the row one
/// sequence number earlier is gone), so the rows `current` publishes must be deleted first, and
/// an aggregate whose earlier row `current` kept (a failed publish) or parked is refused. Each
/// aggregate's rows in the window are one unbroken run, as in any [`WINDOW`]; `current` owns
/// whole runs from their heads, all at lower ids. And the rows behind a locked head cannot
/// have changed since they were read (see the module docs); the delete checks their ids anyway.
///
/// What such windows miss: rows below `current`'s last id that `current` did not own, or that
/// committed late with a lower id. A claim from the floor picks them up; the relay loop makes
/// every few claims one (`ReadAhead` in the relay). The floor is never moved from a window
/// read ahead.
pub(crate) async fn read_ahead(
    pool: &PgPool,
    limit: NonZeroUsize,
    after: i64,
) -> Result<Option<Ahead>, sqlx::Error> {
    // Only with a connection to spare: waiting for one held by a claim could stall the relay.
    let Some(mut conn) = pool.try_acquire() else {
        return Ok(None);
    };
    let mut tx = begin_pinned(&mut conn).await?;
    let window = read_window(&mut tx, limit, after).await?;
    tx.rollback().await?;
    Ok((!window.is_empty()).then_some(Ahead(window)))
}

/// Claims the aggregates of a window read ahead whose heads it can lock (see [`read_ahead`]).
pub(crate) async fn claim_ahead(pool: &PgPool, ahead: Ahead) -> Result<Claim, sqlx::Error> {
    let mut tx = begin_pinned(pool).await?;
    let owned = own(&mut tx, ahead.0).await?;
    Ok(Claim::owning(tx, owned))
}

/// Locks the heads of `window`'s aggregates and keeps the rows of the aggregates it owns.
async fn own(
    tx: &mut Transaction<'static, Postgres>,
    window: Vec<Located>,
) -> Result<Owned, sqlx::Error> {
    // The first row of each aggregate in the window: its head, if nothing earlier remains.
    let mut heads: HashMap<(&str, &str), i64> = HashMap::new();
    for located in &window {
        heads
            .entry(located.row.aggregate())
            .or_insert(located.row.id);
    }
    let candidates: Vec<i64> = heads.values().copied().collect();
    // The client has nothing else to do while Postgres locks the heads: build every row's
    // record headers meanwhile (`join!` polls the lock first, which sends the statement), so
    // the batch's first send does not wait for them. Rows of aggregates not won lose theirs.
    let lock = sqlx::query_scalar(LOCK_HEADS)
        .bind(&candidates)
        .fetch_all(&mut **tx);
    let build = async { window.iter().map(|l| l.row.record_headers()).collect() };
    let (owned, headers): (Result<Vec<i64>, _>, Vec<OwnedHeaders>) = tokio::join!(lock, build);
    let owned: HashSet<i64> = owned?.into_iter().collect();
    if owned.len() == candidates.len() {
        return Ok(Owned { window, headers });
    }
    let mine: Vec<bool> = window
        .iter()
        .map(|located| {
            heads
                .get(&located.row.aggregate())
                .is_some_and(|head| owned.contains(head))
        })
        .collect();
    let (window, headers) = window
        .into_iter()
        .zip(headers)
        .zip(mine)
        .filter_map(|(pair, mine)| mine.then_some(pair))
        .unzip();
    Ok(Owned { window, headers })
}

/// The rows of a window whose aggregates a claim owns, each with its record headers.
#[derive(Default)]
struct Owned {
    /// The owned rows, in id order.
    window: Vec<Located>,
    /// Their record headers (same index).
    headers: Vec<OwnedHeaders>,
}

/// Runs `publish` on `claim`'s rows while deleting all of them in the claim's transaction,
/// behind a savepoint, and returns what `publish` returned.
///
/// The delete is provisional: [`Claim::complete`] commits it only if the settlement deletes
/// every claimed row, and otherwise rolls back to the savepoint and settles row by row. So the
/// delete's work overlaps the broker round trip instead of following it, and nothing is
/// committed before the acks. A failed provisional delete costs nothing but the overlap (the
/// claim settles row by row), unless it broke the transaction, which then fails as any
/// database error does: rolled back, every row published again later.
pub(crate) async fn publish_deleting<'a, Fut: Future>(
    claim: &'a mut Claim,
    publish: impl FnOnce(&'a [OutboxRow], Vec<OwnedHeaders>) -> Fut,
) -> Fut::Output {
    let Claim {
        tx,
        rows,
        locations,
        headers,
        provisional,
    } = claim;
    let rows: &'a [OutboxRow] = rows;
    let headers = std::mem::take(headers);
    let delete = async {
        *provisional = match delete_provisionally(tx, rows, locations).await {
            Ok(true) => Provisional::Deleted,
            Ok(false) => Provisional::Undo,
            Err(error) => {
                tracing::debug!(%error, "provisional delete failed; settling row by row");
                Provisional::Undo
            }
        };
    };
    let (published, ()) = tokio::join!(publish(rows, headers), delete);
    published
}

/// Sets the savepoint and deletes the rows at `locations`; whether exactly `rows` went.
async fn delete_provisionally(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[OutboxRow],
    locations: &[Tid],
) -> Result<bool, sqlx::Error> {
    sqlx::query(SAVEPOINT).execute(&mut **tx).await?;
    let deleted = delete_at(tx, locations).await?;
    // `rows` is in id order.
    Ok(deleted.iter().eq(rows.iter().map(|row| &row.id)))
}

/// Runs [`DELETE_AT`] on `locations` and returns the ids it deleted, in ascending order.
async fn delete_at(
    tx: &mut Transaction<'static, Postgres>,
    locations: &[Tid],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut deleted: Vec<i64> = sqlx::query_scalar(DELETE_AT)
        .bind(locations)
        .fetch_one(&mut **tx)
        .await?;
    deleted.sort_unstable();
    Ok(deleted)
}

impl Claim {
    /// The claim of the `owned` rows, locked by `tx`.
    fn owning(tx: Transaction<'static, Postgres>, owned: Owned) -> Self {
        let (locations, rows) = owned.window.into_iter().map(|l| (l.ctid, l.row)).unzip();
        Self {
            tx,
            rows,
            locations,
            headers: owned.headers,
            provisional: Provisional::None,
        }
    }

    /// Whether `settlement` deletes every claimed row and parks none.
    fn deletes_every_row(&self, settlement: &Settlement) -> bool {
        if !settlement.park.is_empty() || settlement.delete.len() != self.rows.len() {
            return false;
        }
        let mut ids = settlement.delete.clone();
        ids.sort_unstable();
        ids.iter().eq(self.rows.iter().map(|row| &row.id))
    }

    /// The claimed rows, each aggregate's in ascending sequence order.
    pub fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    /// Deletes the published rows, parks the rejected ones and commits, releasing the claim.
    ///
    /// The rows are deleted by location (`ctid`), checked against their ids: if any row is not
    /// where the claim read it, nothing is deleted and the claim rolls back. If the relay
    /// already deleted every row provisionally, while the records awaited their acks, that
    /// delete is committed when `settlement` deletes them all, and undone first otherwise.
    ///
    /// # Errors
    /// - [`OutboxError::ClaimMismatch`] if `settlement` names a row this claim does not hold,
    ///   or a row was not at its location (only a change made around the relay, such as a
    ///   manual `DELETE`, can do that);
    /// - [`OutboxError::Database`] for any database error.
    ///
    /// Either way the transaction is rolled back, so the rows are published again later:
    /// duplicates, never loss.
    pub async fn complete(mut self, settlement: &Settlement) -> Result<(), OutboxError> {
        match self.provisional {
            Provisional::None => {}
            Provisional::Deleted if self.deletes_every_row(settlement) => {
                return Ok(self.tx.commit().await?);
            }
            Provisional::Deleted | Provisional::Undo => {
                sqlx::query(UNDO_PROVISIONAL).execute(&mut *self.tx).await?;
            }
        }
        if !settlement.delete.is_empty() {
            self.delete(&settlement.delete).await?;
        }
        if !settlement.park.is_empty() {
            let (ids, reasons): (Vec<i64>, Vec<String>) = settlement.park.iter().cloned().unzip();
            sqlx::query(
                "UPDATE outbox SET parked_at = clock_timestamp(), park_reason = p.reason
                 FROM unnest($1::bigint[], $2::text[]) AS p(id, reason)
                 WHERE outbox.id = p.id",
            )
            .bind(&ids)
            .bind(&reasons)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(self.tx.commit().await?)
    }

    /// Deletes the claimed rows with these ids by location, and checks that exactly they went.
    ///
    /// Why a location read before the head lock still holds these rows: the rows of an owned
    /// aggregate were untouched between the window and the lock (see the module docs: only
    /// the aggregate's owner deletes or parks, always from the head), and nobody else may touch
    /// them until this claim ends. The check catches what the relay cannot see coming: a manual
    /// `DELETE` followed by `VACUUM` and an insert reusing the slot would otherwise make the
    /// relay delete an unpublished row.
    async fn delete(&mut self, ids: &[i64]) -> Result<(), OutboxError> {
        let mut expected = ids.to_vec();
        expected.sort_unstable();
        // `rows` is in id order, so each id is found by bisection.
        let locations = expected
            .iter()
            .map(|id| {
                self.rows
                    .binary_search_by_key(id, |row| row.id)
                    .ok()
                    .and_then(|i| self.locations.get(i).copied())
                    .ok_or_else(|| {
                        OutboxError::ClaimMismatch(format!("row {id} is not part of this claim"))
                    })
            })
            .collect::<Result<Vec<Tid>, _>>()?;
        let deleted = delete_at(&mut self.tx, &locations).await?;
        if deleted != expected {
            return Err(OutboxError::ClaimMismatch(format!(
                "{} rows were not at their claimed location",
                expected.len().abs_diff(deleted.len()).max(1)
            )));
        }
        Ok(())
    }

    /// Gives the rows back unpublished (rolls the claim back).
    ///
    /// # Errors
    /// Any database error; the locks are released when the connection closes anyway.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}
