//! How the harness finds services, and how it fails when it cannot.

use std::process::Command;
use std::time::{Duration, Instant};

/// Child half of the test below: runs only when re-executed with the variable set.
#[tokio::test]
#[ignore = "run by `a_wrong_env_url_fails_fast_naming_the_variable` in a child process"]
async fn child_probe_with_env() {
    if std::env::var_os("PATTERNS_POSTGRES_URL").is_none() {
        return;
    }
    match harness::postgres().await {
        Ok(_) => println!("PROBE-RESULT: connected"),
        Err(e) => println!("PROBE-RESULT: {e}"),
    }
}

#[test]
fn a_wrong_env_url_fails_fast_naming_the_variable() -> anyhow::Result<()> {
    // A port nothing listens on: bind one, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    // The variable is set for a child process only: changing this process's environment would
    // race with tests running in parallel.
    let started = Instant::now();
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_probe_with_env",
            "--ignored",
            "--nocapture",
        ])
        .env("PATTERNS_POSTGRES_URL", &url)
        .output()?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("PROBE-RESULT"))
        .unwrap_or_default();
    assert!(line.contains("PATTERNS_POSTGRES_URL"), "got: {stdout}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "got: {line}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    Ok(())
}

#[tokio::test]
async fn local_services_are_found_without_configuration() -> anyhow::Result<()> {
    // Whatever the source on this machine, all three services are found and usable.
    let pg = harness::postgres().await?;
    let redis = harness::redis().await?;
    let kafka = harness::kafka().await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(pg.pool()).await?;
    assert_eq!(one, 1);
    let pong: String = redis::cmd("PING")
        .query_async(&mut redis.connection())
        .await?;
    assert_eq!(pong, "PONG");
    assert!(!kafka.brokers().is_empty());
    println!(
        "sources: postgres={:?} redis={:?} kafka={:?}",
        pg.source(),
        redis.source(),
        kafka.source()
    );
    Ok(())
}
