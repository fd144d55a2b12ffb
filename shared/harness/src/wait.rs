//! Polling with a deadline, the replacement for `sleep` in tests.

use std::future::Future;
use std::time::Duration;

use crate::HarnessError;

/// How often [`eventually`] re-checks its condition.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Re-runs `check` every 20 ms until it returns `Some(value)`, and returns that value.
///
/// Tests wait for conditions this way instead of sleeping: a fast system passes fast, and a slow
/// one gets until `within` before the test fails.
///
/// # Errors
/// [`HarnessError::Timeout`] if `check` is still `None` after `within`.
///
/// # Example
/// ```
/// # async fn demo() -> Result<(), harness::HarnessError> {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// let polls = AtomicU32::new(0);
/// let n = harness::eventually(Duration::from_secs(1), || async {
///     let n = polls.fetch_add(1, Ordering::SeqCst);
///     (n >= 3).then_some(n)
/// })
/// .await?;
/// assert_eq!(n, 3);
/// # Ok(()) }
/// ```
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: "condition".to_owned(),
                after: within,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
