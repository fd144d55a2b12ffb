//! Tracing set-up for binaries and tests.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber for a binary or demo.
///
/// The filter comes from `RUST_LOG` (default `info`); `LOG_FORMAT=json` switches from the
/// human-readable format to one JSON object per line, for log shippers. Calling it twice is
/// harmless: the second call does nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only if a subscriber is already set, which is fine to ignore.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs tracing for tests, once per test binary.
///
/// Silent unless `TEST_LOG` is set, so a passing suite prints nothing; `TEST_LOG=1 cargo test`
/// shows every log line (filtered by `RUST_LOG`, default `debug`) captured per test.
pub fn init_test() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            return;
        }
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
