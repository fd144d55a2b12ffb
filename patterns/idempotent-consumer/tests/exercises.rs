//! The workshop's steps. `make exercise NAME=idempotent-consumer STEP=n` runs `stepN::` against
//! the learner's modules (`--features exercise`); without the feature they run against the
//! reference implementation.

mod support;

mod step1 {
    //! The naive consumer double-applies; the inbox claim is the cure.
    use idempotent_consumer::{Claim, Inbox};
    use sqlx::Connection as _;

    use crate::support::World;

    #[tokio::test]
    async fn a_naive_consumer_applies_a_redelivered_event_twice() -> anyhow::Result<()> {
        let w = World::new(1).await?;
        // The naive consumer: apply the effect, then commit the offset. Crash in between and
        // Kafka delivers the same record again; nothing remembers it was applied.
        for _delivery in 0..2 {
            sqlx::query("INSERT INTO effects (message_key, amount) VALUES ('event:1', 10)")
                .execute(w.pg.pool())
                .await?;
        }
        assert_eq!(w.effects().await, 2, "the deposit was booked twice");
        Ok(())
    }

    #[tokio::test]
    async fn claiming_a_key_twice_reports_a_duplicate() -> anyhow::Result<()> {
        let w = World::new(1).await?;
        let inbox = Inbox::new("ledger");
        let mut conn = w.pg.pool().acquire().await?;
        assert_eq!(inbox.claim(&mut conn, "event:1").await?, Claim::Fresh);
        assert_eq!(inbox.claim(&mut conn, "event:1").await?, Claim::Duplicate);
        assert_eq!(inbox.claim(&mut conn, "event:2").await?, Claim::Fresh);
        Ok(())
    }

    #[tokio::test]
    async fn each_consumer_name_has_its_own_keys() -> anyhow::Result<()> {
        let w = World::new(1).await?;
        let mut conn = w.pg.pool().acquire().await?;
        assert_eq!(
            Inbox::new("ledger").claim(&mut conn, "event:1").await?,
            Claim::Fresh
        );
        assert_eq!(
            Inbox::new("emails").claim(&mut conn, "event:1").await?,
            Claim::Fresh
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_claim_rolled_back_with_its_transaction_leaves_no_trace() -> anyhow::Result<()> {
        let w = World::new(1).await?;
        let inbox = Inbox::new("ledger");
        let mut conn = w.pg.pool().acquire().await?;
        let mut tx = conn.begin().await?;
        assert_eq!(inbox.claim(&mut tx, "event:1").await?, Claim::Fresh);
        tx.rollback().await?; // the effect failed: the key must not survive it
        assert_eq!(inbox.claim(&mut conn, "event:1").await?, Claim::Fresh);
        Ok(())
    }
}

mod step2 {
    //! Dedupe in the same transaction as the effect, for a whole batch, with offsets after.
    use idempotent_consumer::{Claim, FaultPoint, Inbox};

    use crate::support::{TestHandler, WITHIN, World, events};

    #[tokio::test]
    async fn claiming_a_batch_marks_known_and_repeated_keys_as_duplicates() -> anyhow::Result<()> {
        let w = World::new(1).await?;
        let inbox = Inbox::new("ledger");
        let mut conn = w.pg.pool().acquire().await?;
        inbox.claim(&mut conn, "b").await?;
        let keys: Vec<String> = ["a", "b", "c", "a"].map(String::from).to_vec();
        let claims = inbox.claim_many(&mut conn, &keys).await?;
        use Claim::{Duplicate, Fresh};
        assert_eq!(claims, vec![Fresh, Duplicate, Fresh, Duplicate]);
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_redelivered_after_its_db_commit_is_applied_once() -> anyhow::Result<()> {
        let w = World::new(2).await?;
        let evs: Vec<_> = (0..4)
            .flat_map(|a| events(&format!("acc-{a}"), 5))
            .collect();
        w.publish(&evs).await?;
        w.publish(&evs[..5]).await?;
        let group = w.kafka.group_id("g");
        let crashed = w
            .consumer("ledger", &group, TestHandler::default())
            .fault(FaultPoint::AfterDbCommit)
            .build()?
            .spawn();
        crashed.join().await.expect_err("stops at the fault point");

        let c = w
            .consumer("ledger", &group, TestHandler::default())
            .build()?
            .spawn();
        let m = c.metrics();
        harness::eventually(WITHIN, || async {
            let s = m.snapshot();
            (s.applied + s.duplicates == 25).then_some(())
        })
        .await?;
        c.shutdown().await?;
        assert_eq!(w.effects().await, 20);
        assert_eq!(w.max_copies().await, 1);
        Ok(())
    }
}

mod step3 {
    //! Bounded retries with jitter, then the dead-letter queue.
    use std::num::NonZeroU32;
    use std::time::Duration;

    use event_envelope::Envelope;
    use idempotent_consumer::{Decision, HandlerError, RetryPolicy};
    use serde_json::json;

    use crate::support::{TestHandler, WITHIN, World};

    fn policy() -> RetryPolicy {
        RetryPolicy::new(
            NonZeroU32::new(4).expect("non-zero"),
            Duration::from_millis(100),
            Duration::from_millis(300),
        )
        .expect("valid")
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let ceilings: Vec<u128> = (1..=4).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 300, 300]);
        assert_eq!(p.max_total_delay(), Duration::from_millis(600));
    }

    #[test]
    fn transient_errors_retry_with_full_jitter_until_attempts_run_out() {
        let p = policy();
        let e = HandlerError::transient("busy");
        assert_eq!(
            p.decide(2, &e, 0.5),
            Decision::Retry {
                after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            p.decide(2, &e, 0.0),
            Decision::Retry {
                after: Duration::ZERO
            }
        );
        assert_eq!(p.decide(4, &e, 0.5), Decision::DeadLetter);
    }

    #[test]
    fn permanent_errors_are_never_retried() {
        assert_eq!(
            policy().decide(1, &HandlerError::permanent("no"), 0.5),
            Decision::DeadLetter
        );
    }

    #[tokio::test]
    async fn a_poison_message_is_dead_lettered_and_the_next_one_applied() -> anyhow::Result<()> {
        let w = World::new(1).await?;
        let poison = Envelope::new(
            "account",
            "p",
            1,
            "Deposited",
            json!({"amount": 1, "poison": "transient"}),
        );
        let fine = Envelope::new("account", "f", 1, "Deposited", json!({"amount": 2}));
        w.publish(&[poison.clone(), fine]).await?;
        let c = w
            .consumer("ledger", &w.kafka.group_id("g"), TestHandler::default())
            .build()?
            .spawn();
        let m = c.metrics();
        harness::eventually(WITHIN, || async {
            (m.snapshot().applied == 1).then_some(())
        })
        .await?;
        c.shutdown().await?;
        let dead = w.dead_letters(1).await?;
        assert_eq!(dead[0].event_id(), Some(poison.event_id));
        assert_eq!(dead[0].attempts, 3);
        Ok(())
    }
}
