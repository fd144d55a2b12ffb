//! The answer every limiter gives.

use std::time::Duration;

/// Whether a request is admitted, and what to tell the client.
///
/// All times are integer microseconds relative to the moment of the decision, so the same
/// decision computed in Rust and in a Redis Lua script compares equal with `==`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// `true` when the request is admitted (and counted).
    allowed: bool,
    /// The quota's limit, echoed for the `RateLimit-Policy` header.
    limit: u64,
    /// Requests that would still be admitted right now after this one.
    remaining: u64,
    /// µs until the limiter is back to its full, idle capacity.
    reset_after_us: u64,
    /// µs after which a retry is admitted (0 when allowed). Rounded up: never too early.
    retry_after_us: u64,
}

impl Decision {
    /// An admitted request.
    #[must_use]
    pub fn allowed(limit: u64, remaining: u64, reset_after_us: u64) -> Self {
        Self {
            allowed: true,
            limit,
            remaining,
            reset_after_us,
            retry_after_us: 0,
        }
    }

    /// A denied request; `retry_after_us` is clamped to at least 1 µs so a denial never says
    /// "retry now".
    #[must_use]
    pub fn denied(limit: u64, reset_after_us: u64, retry_after_us: u64) -> Self {
        Self {
            allowed: false,
            limit,
            remaining: 0,
            reset_after_us: reset_after_us.max(retry_after_us.max(1)),
            retry_after_us: retry_after_us.max(1),
        }
    }

    /// This decision, computed in nanoseconds, expressed in microseconds: durations rounded
    /// **up**, so a `retry_after` is never early.
    #[inline]
    #[must_use]
    pub(crate) fn nanos_to_micros(self) -> Self {
        Self {
            reset_after_us: self.reset_after_us.div_ceil(1_000),
            retry_after_us: self.retry_after_us.div_ceil(1_000),
            ..self
        }
    }

    /// `true` when the request is admitted.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The quota's limit.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Requests still admitted right now.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time until the limiter is fully replenished.
    #[must_use]
    pub fn reset_after(&self) -> Duration {
        Duration::from_micros(self.reset_after_us)
    }

    /// [`reset_after`](Self::reset_after) in microseconds.
    #[must_use]
    pub fn reset_after_micros(&self) -> u64 {
        self.reset_after_us
    }

    /// For a denied request, how long to wait before a retry is admitted (assuming no other
    /// traffic on the key). `None` when allowed.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        (!self.allowed).then(|| Duration::from_micros(self.retry_after_us))
    }

    /// [`retry_after`](Self::retry_after) in microseconds (0 when allowed).
    #[must_use]
    pub fn retry_after_micros(&self) -> u64 {
        self.retry_after_us
    }

    /// `Retry-After` in whole seconds, rounded **up** (HTTP has no sub-second form; rounding
    /// down would invite a retry that is denied again). `None` when allowed.
    #[must_use]
    pub fn retry_after_secs_ceil(&self) -> Option<u64> {
        (!self.allowed).then(|| self.retry_after_us.div_ceil(1_000_000))
    }

    /// Reset in whole seconds, rounded up (for the `RateLimit` header's `t`).
    #[must_use]
    pub fn reset_after_secs_ceil(&self) -> u64 {
        self.reset_after_us.div_ceil(1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_seconds_round_up_never_down() {
        let d = Decision::denied(10, 1_000_001, 1_000_001);
        assert_eq!(d.retry_after_secs_ceil(), Some(2));
        assert_eq!(d.reset_after_secs_ceil(), 2);
        let d = Decision::denied(10, 0, 0);
        assert_eq!(d.retry_after_secs_ceil(), Some(1));
        assert_eq!(Decision::allowed(10, 3, 5).retry_after(), None);
    }
}
