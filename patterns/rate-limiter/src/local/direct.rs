//! A single-key GCRA limiter on one `AtomicU64`: no lock, one CAS per admitted request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::algorithm::gcra;
use crate::{Clock, Decision, MonotonicClock, Quota};

/// A lock-free GCRA limiter for one key (a whole service, one upstream, one tenant).
///
/// The state is one theoretical arrival time in an `AtomicU64`; a decision is a clock read, a
/// load and — only when admitting — a compare-and-swap. Denials write nothing, so a flood of
/// rejected requests does not bounce the cache line between cores. Clones share the state.
///
/// # Example
/// ```
/// use rate_limiter::{GcraLimiter, Quota};
/// # fn main() -> Result<(), rate_limiter::ConfigError> {
/// let limiter = GcraLimiter::new(Quota::per_second(2)?);
/// assert!(limiter.check().is_allowed());
/// assert!(limiter.check().is_allowed());
/// assert!(!limiter.check().is_allowed());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GcraLimiter<C: Clock = MonotonicClock> {
    /// The quota.
    quota: Quota,
    /// `quota.interval_micros()` in ns, cached: the hot path should not recompute it.
    interval_ns: u64,
    /// `quota.tolerance_micros()` in ns, cached.
    tau_ns: u64,
    /// Theoretical arrival time in the clock's ns, shared by clones. Nanoseconds (unlike the
    /// Redis scripts' µs) because this state never leaves the process: the clock's ns need no
    /// conversion, and the µs the [`Decision`] reports are derived only if read.
    tat: Arc<AtomicU64>,
    /// Where "now" comes from; generic so the read inlines.
    clock: C,
}

impl GcraLimiter<MonotonicClock> {
    /// A limiter for `quota` on the TSC-backed monotonic clock.
    #[must_use]
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, MonotonicClock::new())
    }
}

impl<C: Clock> GcraLimiter<C> {
    /// A limiter for `quota` reading time from `clock`.
    #[must_use]
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            quota,
            interval_ns: quota.interval_micros() * 1_000,
            tau_ns: quota.tolerance_micros() * 1_000,
            tat: Arc::new(AtomicU64::new(0)),
            clock,
        }
    }

    /// Decides one request now.
    #[inline]
    pub fn check(&self) -> Decision {
        let now = self.clock.now_nanos();
        // Relaxed is enough: the TAT is the only shared datum and the CAS is atomic on it.
        let mut stored = self.tat.load(Ordering::Relaxed);
        loop {
            let limit = self.quota.limit();
            let (decision, new_tat) =
                gcra::decide_with(limit, self.interval_ns, self.tau_ns, stored, now);
            let decision = decision.nanos_to_micros();
            let Some(new_tat) = new_tat else {
                return decision;
            };
            // Another core admitted in between: recompute from its TAT rather than overwrite
            // it, or two requests would be admitted for one slot.
            match self.tat.compare_exchange_weak(
                stored,
                new_tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return decision,
                Err(current) => stored = current,
            }
        }
    }

    /// The quota enforced.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.quota
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::time::Duration;

    #[test]
    fn clones_share_one_budget() {
        let clock = ManualClock::starting_at(1);
        let a = GcraLimiter::with_clock(Quota::per_second(3).expect("valid"), clock.clone());
        let b = a.clone();
        let admitted = [&a, &b, &a, &b]
            .iter()
            .filter(|l| l.check().is_allowed())
            .count();
        assert_eq!(admitted, 3);
        clock.advance(Duration::from_millis(334));
        assert!(b.check().is_allowed());
    }

    #[test]
    fn concurrent_threads_admit_exactly_the_burst() {
        let clock = ManualClock::starting_at(1);
        let limiter = GcraLimiter::with_clock(Quota::per_second(1_000).expect("valid"), clock);
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1_000).filter(|_| limiter.check().is_allowed()).count()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .sum()
        });
        assert_eq!(admitted, 1_000);
    }
}
