//! Time as an injected dependency: integer microseconds from a monotonic origin.
//!
//! Every algorithm works on `u64` microseconds. Integers (not floats, not `Instant`) keep the Rust
//! core and the Redis Lua scripts bit-identical, and microseconds keep every value far below
//! 2^53 where Lua doubles stop being exact (see [`Quota`](crate::Quota) for the bound).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of "now" in microseconds, monotonic non-decreasing.
///
/// Generic (`C: Clock`) rather than `dyn` so the hot path of an in-process limiter
/// monomorphises and inlines the clock read.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Microseconds since this clock's (arbitrary, fixed) origin.
    fn now_micros(&self) -> u64;

    /// Nanoseconds since the origin. In-process limiters that never talk to Redis use it to
    /// skip the µs conversion on their hot path; the default derives it from µs.
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.now_micros().saturating_mul(1_000)
    }
}

/// The production clock: the CPU's time-stamp counter via `quanta`, calibrated against the OS
/// monotonic clock.
///
/// A TSC read costs a few nanoseconds where `Instant::now()` costs ~20; the in-process GCRA reads
/// the clock on every decision, so this is most of its budget.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    /// The calibrated counter (a cheap `Clone`: calibration is shared).
    clock: quanta::Clock,
    /// Raw counter value at construction: the origin of this clock's microseconds.
    origin: u64,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_micros(&self) -> u64 {
        self.now_nanos() / 1_000
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

/// A clock that moves only when told to: for deterministic tests.
///
/// Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    /// Current time in microseconds, shared by all clones.
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at `micros`.
    #[must_use]
    pub fn starting_at(micros: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(micros)),
        }
    }

    /// Moves time forward by `by` (saturating at `u64::MAX` microseconds).
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(micros))
            });
    }

    /// Sets the time to `micros`.
    pub fn set_micros(&self, micros: u64) {
        self.now.store(micros, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}
