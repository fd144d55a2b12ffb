//! Run with: make demo NAME=idempotent-consumer
//!
//! Publishes events (with deliberate duplicates, poison and malformed records), runs two
//! consumer instances in one group — instance A in a child process (this binary re-executed
//! with `instance …`), instance B in this process — SIGKILLs A mid-stream and restarts it as a
//! new process, then prints what reached Postgres: effects applied = distinct events, duplicates
//! skipped, dead letters, final lag. Finally the "bug" behind the poison messages is fixed in
//! both instances and the dead letters are replayed.
//!
//! Instance A's stdout carries its counters (`report …` lines) and its logs (printed with an
//! `[A]` prefix); its stdin takes commands (`fix`) and its EOF means "shut down gracefully".

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use event_envelope::Envelope;
use idempotent_consumer::{
    Consumer, Event, Handler, HandlerError, ReplaySelection, consumer_lag, replay,
};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const ACCOUNTS: i64 = 50;
const PER_ACCOUNT: i64 = 40; // 2 000 distinct events
const DUPLICATES: usize = 300;
const POISON: usize = 3;
/// Time each deposit takes: spreads the stream over a few seconds so the kill lands mid-stream.
const PACE: Duration = Duration::from_millis(5);

/// Books deposits; rejects negative amounts while `strict` (the "bug" fixed before replay).
#[derive(Clone)]
struct Ledger {
    strict: Arc<AtomicBool>,
}

#[derive(serde::Deserialize)]
struct Deposited {
    amount: i64,
}

impl Handler for Ledger {
    async fn handle(&self, conn: &mut PgConnection, event: &Event) -> Result<(), HandlerError> {
        let d: Deposited = event.decode()?;
        if d.amount < 0 && self.strict.load(Ordering::SeqCst) {
            return Err(HandlerError::permanent("negative deposit rejected"));
        }
        tokio::time::sleep(PACE).await;
        let account = event.envelope().map(|e| e.aggregate_id.clone());
        sqlx::query("INSERT INTO ledger (event_key, account, amount) VALUES ($1, $2, $3)")
            .bind(event.id.to_key())
            .bind(account)
            .bind(d.amount)
            .execute(conn)
            .await?;
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    harness::telemetry::init();
    let runtime = tokio::runtime::Runtime::new()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, url, brokers, topic, dlq, group, static_id] if mode == "instance" => {
            let wiring = Wiring {
                brokers,
                topic,
                dlq,
                group,
                static_id: Some(static_id),
            };
            runtime.block_on(instance(url, &wiring))
        }
        _ => runtime.block_on(orchestrate()),
    }
}

/// Consumer settings shared by both instances: manual commits, fast group joins.
///
/// `static_id` makes the instance a static group member (`group.instance.id`): when it dies
/// its partitions wait for it (up to `session.timeout.ms`) instead of being shuffled, and its
/// restarted process — same id — takes them back without a rebalance. 10 s of session: the
/// local broker (tansu) holds a joining member for up to 3 s, and a shorter session sometimes
/// expired a member that was still joining.
fn consumer_config(brokers: &str, group: &str, static_id: Option<&str>) -> ClientConfig {
    let mut config = ClientConfig::new();
    if let Some(id) = static_id {
        config.set("group.instance.id", id);
    }
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("max.poll.interval.ms", "10000")
        .set("fetch.wait.max.ms", "100");
    config
}

/// One record per producer batch: the local broker used in CI (tansu) cannot serve a fetch that
/// starts inside a record batch, and the survivor resumes mid-stream from the killed one's
/// offsets.
fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("batch.num.messages", "1")
        .set("linger.ms", "0");
    config
}

/// Where an instance consumes from and writes to.
struct Wiring<'a> {
    /// Kafka bootstrap servers.
    brokers: &'a str,
    /// Source topic.
    topic: &'a str,
    /// Dead-letter topic.
    dlq: &'a str,
    /// Consumer group shared by both instances.
    group: &'a str,
    /// `group.instance.id` for a static member (instance A), `None` for a dynamic one.
    static_id: Option<&'a str>,
}

fn build(pool: PgPool, w: &Wiring<'_>, ledger: Ledger) -> anyhow::Result<Consumer<Ledger>> {
    Consumer::builder("ledger", pool, ledger)
        .kafka(consumer_config(w.brokers, w.group, w.static_id))
        .producer(producer_config(w.brokers))
        .topics([w.topic.to_owned()])
        .dead_letter_topic(w.dlq.to_owned())
        .batch_size(std::num::NonZeroUsize::new(100).context("non-zero")?)
        .build()
        .context("build consumer")
}

/// Instance A, in its own process: consumes until stdin closes (or until it is SIGKILLed).
async fn instance(url: &str, wiring: &Wiring<'_>) -> anyhow::Result<()> {
    let pool = PgPool::connect(url).await?;
    let ledger = Ledger {
        strict: Arc::new(AtomicBool::new(true)),
    };
    let strict = Arc::clone(&ledger.strict);
    let consumer = build(pool, wiring, ledger)?;
    let metrics = consumer.metrics();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    // The parent cannot read this process's counters after a SIGKILL: report them as we go.
    let reporting = metrics.clone();
    tokio::spawn(async move {
        loop {
            print_report(&reporting);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // stdin: a line "fix" deploys the fixed business rule; EOF means shut down gracefully.
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(command)) = commands.next_line().await {
        if command == "fix" {
            strict.store(false, Ordering::SeqCst);
        }
    }
    shutdown.cancel();
    running.await??;
    print_report(&metrics);
    Ok(())
}

fn print_report(metrics: &idempotent_consumer::Metrics) {
    let m = metrics.snapshot();
    println!(
        "report {} {} {} {}",
        m.applied, m.duplicates, m.dead_lettered, m.retries
    );
}

/// Starts instance A: this binary, re-executed in `instance` mode.
fn spawn_instance(url: &str, w: &Wiring<'_>) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the demo binary")?;
    let static_id = w.static_id.context("instance A is a static member")?;
    Command::new(exe)
        .arg("instance")
        .args([url, w.brokers, w.topic, w.dlq, w.group, static_id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning consumer instance A")
}

/// Instance A's counters as last reported on its stdout.
#[derive(Debug, Default, Clone, Copy)]
struct Report {
    applied: u64,
    duplicates: u64,
    dead_lettered: u64,
    retries: u64,
}

/// Keeps the latest `report` line of instance A; forwards its other output (logs).
fn watch_reports(child: &mut Child) -> anyhow::Result<Arc<Mutex<Report>>> {
    let stdout = child.stdout.take().context("instance A's stdout")?;
    let latest = Arc::new(Mutex::new(Report::default()));
    let sink = Arc::clone(&latest);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.starts_with("report ") {
                println!("[A] {line}");
                continue;
            }
            let n: Vec<u64> = line
                .split(' ')
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            if let ([applied, duplicates, dead_lettered, retries], Ok(mut r)) =
                (n.as_slice(), sink.lock())
            {
                *r = Report {
                    applied: *applied,
                    duplicates: *duplicates,
                    dead_lettered: *dead_lettered,
                    retries: *retries,
                };
            }
        }
    });
    Ok(latest)
}

async fn ledger_rows(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(pool)
        .await?)
}

async fn orchestrate() -> anyhow::Result<()> {
    let pg = harness::postgres().await?;
    idempotent_consumer::migrate(pg.pool()).await?;
    sqlx::query(
        "CREATE TABLE ledger (event_key text NOT NULL, account text, amount bigint NOT NULL)",
    )
    .execute(pg.pool())
    .await?;
    let kafka = harness::kafka().await?;
    let topic = kafka.create_topic("deposits", 4).await?;
    let dlq = kafka.create_topic("deposits-dlq", 1).await?;
    // One record per batch: the local broker used in CI (tansu) cannot serve a fetch that starts
    // inside a record batch, and the survivor resumes mid-stream from the killed one's offsets.
    let producer: FutureProducer = kafka
        .producer_config()
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()?;

    let distinct = publish(&producer, &topic).await?;
    println!(
        "published {distinct} distinct events + {DUPLICATES} duplicate records + {POISON} poison + 2 malformed"
    );

    let group = kafka.group_id("ledger");
    let ledger = Ledger {
        strict: Arc::new(AtomicBool::new(true)),
    };
    let started = Instant::now();
    let wiring_b = Wiring {
        brokers: kafka.brokers(),
        topic: &topic,
        dlq: &dlq,
        group: &group,
        static_id: None,
    };
    let wiring_a = Wiring {
        static_id: Some("ledger-a"),
        ..wiring_b
    };
    // B first, A joins it and takes half the partitions.
    let b = build(pg.pool().clone(), &wiring_b, ledger.clone())?.spawn();
    let mb = b.metrics();
    harness::eventually(Duration::from_secs(60), || async {
        (mb.snapshot().applied > 0).then_some(())
    })
    .await?;
    let mut a = spawn_instance(pg.url(), &wiring_a)?;
    let reports = watch_reports(&mut a)?;
    harness::eventually(Duration::from_secs(60), || async {
        let rows = ledger_rows(pg.pool()).await.ok()?;
        let a_applied = reports.lock().ok()?.applied;
        (rows >= distinct as i64 / 4 && a_applied > 0).then_some(())
    })
    .await?;
    let pid = a.id().map_or_else(|| "?".to_owned(), |p| p.to_string());
    a.kill().await?; // SIGKILL: the open batch rolls back with its connection, no offset commit
    let at_kill = ledger_rows(pg.pool()).await?;
    println!("SIGKILLed instance A (pid {pid}) with {at_kill} of {distinct} effects in Postgres");
    // A's partitions wait for it (static member). A supervisor restarts the crashed instance:
    // a new process under the same group.instance.id takes them back and resumes from A's
    // committed offsets; A's rolled-back batch is simply read again.
    let mut restarted = spawn_instance(pg.url(), &wiring_a)?;
    let reports_restarted = watch_reports(&mut restarted)?;
    println!(
        "restarted instance A as a new process (pid {})",
        restarted
            .id()
            .map_or_else(|| "?".to_owned(), |p| p.to_string())
    );

    let lag_cfg = kafka.consumer_config(&group);
    harness::eventually(Duration::from_secs(60), || async {
        let lag = consumer_lag(&lag_cfg, &topic).await.ok()?;
        (lag == 0).then_some(())
    })
    .await?;
    let rows = ledger_rows(pg.pool()).await?;
    // Wait for the restarted A's report to include its last batch.
    harness::eventually(Duration::from_secs(10), || async {
        let reported = reports.lock().ok()?.applied + reports_restarted.lock().ok()?.applied;
        (reported + mb.snapshot().applied >= u64::try_from(rows).ok()?).then_some(())
    })
    .await?;
    let max_copies: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(c), 0) FROM (SELECT count(*) c FROM ledger GROUP BY event_key) x",
    )
    .fetch_one(pg.pool())
    .await?;
    let sb = mb.snapshot();
    // A's counters died with its process; its last report is at most one interval old. Its
    // applied count is exact: every row was applied by exactly one instance.
    let killed = reports.lock().map(|r| *r).unwrap_or_default();
    let after = reports_restarted.lock().map(|r| *r).unwrap_or_default();
    let sa = Report {
        applied: killed.applied + after.applied,
        duplicates: killed.duplicates + after.duplicates,
        dead_lettered: killed.dead_lettered + after.dead_lettered,
        retries: killed.retries + after.retries,
    };
    let a_applied = u64::try_from(rows)?.saturating_sub(sb.applied);
    println!("after {:.1?}:", started.elapsed());
    println!(
        "  effects applied      = {rows} (distinct events {distinct}, max copies per event {max_copies})"
    );
    println!(
        "  applied by A / B     = {a_applied} / {} (A: killed process + its restart)",
        sb.applied
    );
    println!(
        "  duplicates skipped   = {} ({DUPLICATES} producer duplicates, {} redelivered after the kill; A's share as last reported)",
        sa.duplicates + sb.duplicates,
        (sa.duplicates + sb.duplicates).saturating_sub(DUPLICATES as u64)
    );
    println!(
        "  dead-lettered        = {}",
        sa.dead_lettered + sb.dead_lettered
    );
    println!("  retries              = {}", sa.retries + sb.retries);
    println!(
        "  lag at the end       = {}",
        consumer_lag(&lag_cfg, &topic).await?
    );

    // The negative-deposit rule was a bug: fix it (B runs the fixed code and is now the only
    // instance) and replay the poison messages.
    ledger.strict.store(false, Ordering::SeqCst);
    let mut control = restarted.stdin.take().context("instance A's stdin")?;
    control.write_all(b"fix\n").await?;
    control.flush().await?;
    let report = replay(
        &kafka.consumer_config(&kafka.group_id("replay")),
        &producer,
        &dlq,
        &ReplaySelection::All,
    )
    .await?;
    let rows_after = harness::eventually(Duration::from_secs(40), || async {
        let n = ledger_rows(pg.pool()).await.ok()?;
        (n >= rows + POISON as i64).then_some(n)
    })
    .await?;
    drop(control); // EOF: the restarted A finishes its batch, commits and leaves the group
    restarted.wait().await?;
    b.shutdown().await?;
    println!(
        "replayed {} of {} dead letters; poison now applied, malformed dead-lettered again; effects = {rows_after}",
        report.replayed, report.scanned
    );
    let lost = distinct as i64 - rows;
    println!(
        "lost = {lost}, applied twice = {}",
        i64::from(max_copies > 1)
    );
    anyhow::ensure!(lost == 0 && max_copies == 1, "exactly-once effect violated");
    Ok(())
}

/// Publishes the events, duplicates of some, poison and malformed records; returns the number
/// of distinct valid events.
async fn publish(producer: &FutureProducer, topic: &str) -> anyhow::Result<u64> {
    let mut events = Vec::new();
    for a in 0..ACCOUNTS {
        for s in 1..=PER_ACCOUNT {
            events.push(Envelope::new(
                "account",
                format!("acc-{a}"),
                s,
                "Deposited",
                serde_json::json!({"amount": 1}),
            ));
        }
    }
    let mut seen = HashSet::new();
    let mut pending = Vec::new();
    let duplicates = events
        .iter()
        .step_by(events.len() / DUPLICATES)
        .take(DUPLICATES);
    let poison: Vec<Envelope> = (0..POISON)
        .map(|p| {
            Envelope::new(
                "account",
                format!("poison-{p}"),
                1,
                "Deposited",
                serde_json::json!({"amount": -5}),
            )
        })
        .collect();
    for e in events.iter().chain(duplicates).chain(&poison) {
        let r = e.encode()?;
        let record = FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.payload)
            .headers(r.headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        seen.insert(e.event_id);
    }
    for garbage in [&b"{not json"[..], &b"\xff\xfe"[..]] {
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).key("junk").payload(garbage);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    let distinct = seen.len() - POISON;
    Ok(distinct as u64)
}
