//! Run with: cargo run -p idempotent-consumer --example replay -- --brokers HOST:PORT --dlq TOPIC
//!           [--event-id UUID]... | [--partition P --from OFFSET --to OFFSET]
//!
//! Re-publishes selected dead letters to their source topic (original key, value and headers;
//! `dlq-*` context stripped). With no selection, replays every record in the DLQ.

use std::collections::HashSet;

use anyhow::{Context as _, bail};
use idempotent_consumer::{ReplaySelection, replay};
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: replay --brokers HOST:PORT --dlq TOPIC [--event-id UUID]... [--partition P --from A --to B]"
        );
        return Ok(());
    }
    let value = |flag: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let brokers = value("--brokers").context("--brokers is required")?;
    let dlq = value("--dlq").context("--dlq is required")?;
    let ids: HashSet<uuid::Uuid> = args
        .windows(2)
        .filter(|w| w[0] == "--event-id")
        .map(|w| uuid::Uuid::parse_str(&w[1]).context("--event-id must be a UUID"))
        .collect::<Result<_, _>>()?;
    let selection = match (value("--partition"), value("--from"), value("--to")) {
        (Some(p), Some(from), Some(to)) if ids.is_empty() => ReplaySelection::Offsets {
            partition: p.parse()?,
            range: from.parse()?..=to.parse()?,
        },
        (None, None, None) if !ids.is_empty() => ReplaySelection::EventIds(ids),
        (None, None, None) => ReplaySelection::All,
        _ => bail!("use either --event-id or all of --partition/--from/--to"),
    };
    let mut consumer = ClientConfig::new();
    consumer.set("bootstrap.servers", brokers);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    let report = replay(&consumer, &producer, dlq, &selection).await?;
    println!(
        "scanned {} dead letters, replayed {}",
        report.scanned, report.replayed
    );
    Ok(())
}
