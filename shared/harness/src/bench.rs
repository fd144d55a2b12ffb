//! Helpers for benchmarks that report a candidate against a baseline from the same run.

use std::path::PathBuf;

/// Prints `label: candidate vs baseline = ratio` in a fixed, greppable format.
///
/// `higher_is_better` says how to read the ratio (throughput: true; latency: false); the line
/// states it so nobody has to guess.
pub fn print_ratio(label: &str, candidate: f64, baseline: f64, higher_is_better: bool) {
    let ratio = if baseline == 0.0 {
        f64::NAN
    } else {
        candidate / baseline
    };
    let reading = if higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    println!(
        "RATIO {label}: candidate {candidate:.2} / baseline {baseline:.2} = {ratio:.3} ({reading})"
    );
}

/// The mean time in nanoseconds criterion measured for `group/bench_id` in this run, read from
/// criterion's `estimates.json` under `$CARGO_TARGET_DIR/criterion` (or `./target/criterion`).
///
/// Returns `None` if the benchmark did not run (filtered out) or the file is unreadable.
pub fn criterion_mean_ns(group: &str, bench_id: &str) -> Option<f64> {
    let path = criterion_home()
        .join(sanitise(group))
        .join(sanitise(bench_id))
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("mean")?.get("point_estimate")?.as_f64()
}

fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("criterion")
}

/// Criterion replaces characters that are not safe in file names; mirror the common cases.
fn sanitise(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '/' | '\\' | '?' | '"' | '<' | '>' | '|' | '*' | ':' => '_',
            c => c,
        })
        .collect()
}
