//! The scan floor never skips a row that can still be published: rows whose writers commit
//! after later rows were published, parked rows that are retried, and sequences that hand out
//! ids ahead of time.
// The floor belongs to the reference claim; a learner's claim (`exercise`) has none.
#![cfg(not(feature = "exercise"))]

mod common;

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::bail;

use common::n;
use outbox::{Claim, NewEvent, Outcome, ScanFloor, claim_from, enqueue, retry_parked, settle};
use tokio_util::sync::CancellationToken;

/// Publishes (deletes) every row of `claim`.
async fn ack_all(claim: Claim) -> anyhow::Result<()> {
    let plan = common::all_acked(&claim);
    claim.complete(&plan).await?;
    Ok(())
}

/// How long a test waits for its floor to move. Tests run in parallel against one Postgres, and
/// `xmin` is server-wide: another test's open transaction holds every floor back while it runs.
const FLOOR_MOVES_WITHIN: Duration = Duration::from_secs(30);

/// One relay round: `rows` new events of `aggregate`, then a claim from `floor`, all acked.
/// Returns what the claim took.
async fn round(
    env: &common::Env,
    floor: &mut ScanFloor,
    aggregate: &str,
    rows: usize,
) -> anyhow::Result<Vec<(String, i64)>> {
    env.write(aggregate, rows).await?;
    let claim = claim_from(env.pool(), n(100), floor).await?;
    let took = common::taken(&claim)
        .into_iter()
        .map(|(aggregate, sequence)| (aggregate.to_owned(), sequence))
        .collect();
    ack_all(claim).await?;
    Ok(took)
}

/// Runs rounds of five events of `aggregate` until `floor` reaches `target`, failing after
/// [`FLOOR_MOVES_WITHIN`]. (Not `harness::eventually`: each attempt needs the floor mutably and
/// must fail the test on a database error rather than retry it.)
async fn rounds_until_the_floor_reaches(
    env: &common::Env,
    floor: &mut ScanFloor,
    aggregate: &str,
    target: i64,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + FLOOR_MOVES_WITHIN;
    while floor.get() < target {
        if tokio::time::Instant::now() > deadline {
            bail!("the floor never reached {target} (still {})", floor.get());
        }
        round(env, floor, aggregate, 5).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Like [`round`], with five events of five aggregates of their own, claimed through
/// `relay_pool`. Returns how many were claimed.
async fn spread_round(
    env: &common::Env,
    relay_pool: &sqlx::PgPool,
    floor: &mut ScanFloor,
    round: usize,
) -> anyhow::Result<usize> {
    for i in 0..5 {
        env.write(&format!("r{round}-{i}"), 1).await?;
    }
    let claim = claim_from(relay_pool, n(100), floor).await?;
    let claimed = claim.rows().len();
    ack_all(claim).await?;
    Ok(claimed)
}

/// Waits until every transaction that started before this call has finished (the server-wide
/// `xmin` passed an xid taken now).
async fn every_older_transaction_finished(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let marker: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(pool)
        .await?;
    harness::eventually(FLOOR_MOVES_WITHIN, || async {
        let horizon: Option<i64> =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(pool)
                .await
                .ok();
        horizon.is_some_and(|h| h > marker).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_row_committed_after_later_rows_were_published_is_still_claimed() -> anyhow::Result<()> {
    let env = common::env().await?;
    // The late writer draws the lowest id, then keeps its transaction open.
    let mut late = env.pool().begin().await?;
    let late_row = enqueue(
        &mut late,
        &NewEvent::new("order", "late", "E", serde_json::json!({})),
    )
    .await?;
    let mut floor = ScanFloor::default();
    for _ in 0..3 {
        round(&env, &mut floor, "busy", 5).await?;
        assert!(
            floor.get() < late_row.id,
            "the floor passed id {} while its writer was still open",
            late_row.id
        );
    }
    late.commit().await?;
    let took = round(&env, &mut floor, "busy", 5).await?;
    assert_eq!(
        took.first(),
        Some(&("late".to_owned(), 1)),
        "the late row is the oldest unpublished row"
    );
    // Once nothing older can commit, the floor moves past everything published.
    rounds_until_the_floor_reaches(&env, &mut floor, "busy", late_row.id + 1).await?;
    assert_eq!(env.outbox_rows().await?, 0);
    Ok(())
}

#[tokio::test]
async fn the_floor_stays_below_a_parked_row_until_it_is_retried() -> anyhow::Result<()> {
    let env = common::env().await?;
    env.write("before", 3).await?;
    env.write("parked", 1).await?;
    let mut floor = ScanFloor::default();
    let claim = claim_from(env.pool(), n(100), &mut floor).await?;
    let outcomes: Vec<Outcome> = claim
        .rows()
        .iter()
        .map(|r| {
            if r.aggregate_id == "parked" {
                Outcome::Rejected("too large".into())
            } else {
                Outcome::Acked
            }
        })
        .collect();
    let parked_id = claim
        .rows()
        .iter()
        .find(|r| r.aggregate_id == "parked")
        .map(|r| r.id)
        .ok_or_else(|| anyhow::anyhow!("the parked row was not claimed"))?;
    let plan = settle(claim.rows(), &outcomes);
    claim.complete(&plan).await?;
    // The floor moves up to the parked row, and no further.
    rounds_until_the_floor_reaches(&env, &mut floor, "after", parked_id - 1).await?;
    for _ in 0..3 {
        round(&env, &mut floor, "after", 5).await?;
    }
    assert_eq!(
        floor.get(),
        parked_id - 1,
        "the floor passed the parked row"
    );
    retry_parked(env.pool(), parked_id).await?;
    let took = round(&env, &mut floor, "after", 1).await?;
    assert!(
        took.contains(&("parked".to_owned(), 1)),
        "the retried row is claimed again, got {took:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_sequence_that_caches_ids_keeps_the_floor_at_the_start() -> anyhow::Result<()> {
    let env = common::env().await?;
    // With CACHE 10 a session draws ten ids at once and may use the rest in a later
    // transaction, whose xid is newer than any candidate: no floor can be proven. (Each event
    // gets an aggregate of its own: across sessions a cache also breaks the id order of one
    // aggregate's events, which the claim relies on.)
    sqlx::query(
        "DO $$ BEGIN
             EXECUTE format('ALTER SEQUENCE %s CACHE 10', pg_get_serial_sequence('outbox', 'id'));
         END $$",
    )
    .execute(env.pool())
    .await?;
    let mut floor = ScanFloor::default();
    let mut claimed = 0;
    for r in 0..3 {
        claimed += spread_round(&env, env.pool(), &mut floor, r).await?;
        // A candidate taken in the round above (if any) would settle in the next one.
        every_older_transaction_finished(env.pool()).await?;
    }
    claimed += spread_round(&env, env.pool(), &mut floor, 3).await?;
    assert_eq!(claimed, 20, "every row is still claimed");
    assert_eq!(floor.get(), 0, "the floor moved on a caching sequence");
    Ok(())
}

#[tokio::test]
async fn writers_that_commit_long_after_drawing_their_ids_lose_nothing() -> anyhow::Result<()> {
    let env = common::env().await?;
    // Small batches: the relay claims many times while the writers' transactions are open.
    let relay = env
        .relay()
        .batch_size(n(5))
        .build()?
        .spawn(CancellationToken::new());
    // Start the writers only once the relay is publishing (its producer connected), so that it
    // claims while their transactions are open.
    env.write("warm-up", 1).await?;
    harness::eventually(Duration::from_secs(30), || async {
        (relay.published() >= 1).then_some(())
    })
    .await?;
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let pool = env.pool().clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let mut tx = pool.begin().await?;
                enqueue(
                    &mut tx,
                    &NewEvent::new("order", format!("w{w}"), "E", serde_json::json!({"i": i})),
                )
                .await?;
                // The row's id is drawn; other writers commit and are published meanwhile.
                tokio::time::sleep(Duration::from_millis((w * 7 + i * 3) % 30)).await;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let seen = env.read(201, Duration::from_secs(60)).await?;
    env.drained(Duration::from_secs(10)).await?;
    relay.shutdown().await?;
    let report = seen.audit.report();
    assert_eq!(report.unique, 201, "nothing lost");
    assert_eq!(report.violations, 0);
    Ok(())
}

#[tokio::test]
async fn a_role_that_may_not_read_the_id_sequence_claims_from_the_start() -> anyhow::Result<()> {
    let env = common::env().await?;
    // A least-privilege relay role: it reads, parks and deletes outbox rows, nothing else.
    // Roles are server-wide, so the name comes from this test's own database.
    sqlx::query(
        "DO $$ BEGIN
             EXECUTE format('CREATE ROLE %I LOGIN', left(current_database(), 40) || '_relay');
             EXECUTE format('GRANT SELECT, UPDATE, DELETE ON outbox TO %I',
                            left(current_database(), 40) || '_relay');
         END $$",
    )
    .execute(env.pool())
    .await?;
    let role: String = sqlx::query_scalar("SELECT left(current_database(), 40) || '_relay'")
        .fetch_one(env.pool())
        .await?;
    let options = sqlx::postgres::PgConnectOptions::from_str(env.pg.url())?.username(&role);
    let relay_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?;
    let mut floor = ScanFloor::default();
    // The rounds' outcome is checked after the role is dropped, so a failure does not leave a
    // role behind on the shared server.
    let rounds = async {
        let mut claimed = 0;
        for r in 0..3 {
            claimed += spread_round(&env, &relay_pool, &mut floor, r).await?;
            every_older_transaction_finished(env.pool()).await?;
        }
        anyhow::Ok(claimed)
    }
    .await;
    relay_pool.close().await;
    sqlx::query(
        "DO $$ BEGIN
             EXECUTE format('DROP OWNED BY %I', left(current_database(), 40) || '_relay');
             EXECUTE format('DROP ROLE %I', left(current_database(), 40) || '_relay');
         END $$",
    )
    .execute(env.pool())
    .await?;
    let claimed = rounds?;
    assert_eq!(
        claimed, 15,
        "every row is claimed and deleted by the restricted role"
    );
    assert_eq!(env.outbox_rows().await?, 0);
    assert_eq!(floor.get(), 0, "no floor without reading the sequence");
    Ok(())
}
