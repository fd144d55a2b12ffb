//! Run with: make demo NAME=template
//!
//! Prints the retry schedule of ten attempts for 1,000 simulated clients and shows that full
//! jitter spreads their retries instead of synchronising them.

use std::time::Duration;

use template::Backoff;

fn main() -> Result<(), template::BackoffError> {
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2))?;
    let mut rng = rand::rng();
    println!("attempt  ceiling   earliest..latest retry of 1000 clients");
    for attempt in 0..10 {
        let delays: Vec<Duration> = (0..1000)
            .map(|_| backoff.delay(attempt, &mut rng))
            .collect();
        let (min, max) = (
            delays.iter().min().copied().unwrap_or_default(),
            delays.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "{attempt:>7}  {:>7.0?}   {min:>9.1?}..{max:.1?}",
            backoff.ceiling(attempt)
        );
    }
    println!(
        "ceilings never exceed the cap of {:?}",
        Duration::from_secs(2)
    );
    Ok(())
}
