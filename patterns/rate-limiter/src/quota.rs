//! The validated quota every algorithm is configured with.

use std::time::Duration;

use crate::error::ConfigError;

/// The largest product (µs × count) any algorithm computes: 2^51.
///
/// Redis Lua numbers are IEEE doubles, exact for integers below 2^53. Scripts add at most two
/// such products to a timestamp (< 2^52 µs since the Unix epoch, i.e. until year 2112), so every
/// intermediate stays below 2^53 and Rust and Lua agree bit for bit.
pub const MAX_PRODUCT_MICROS: u64 = 1 << 51;

/// `limit` requests per `period`, with a `burst` capacity for the bucket algorithms.
///
/// * Bucket algorithms (token bucket, leaky bucket, GCRA) admit one request per
///   [`interval`](Self::interval) = ⌈period / limit⌉ (rounded **up**, so the sustained rate never
///   exceeds the quota) and up to `burst` at once. `burst` defaults to `limit`.
/// * Window algorithms (fixed window, sliding log, sliding counter) admit `limit` per `period`
///   window and ignore `burst`.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use rate_limiter::Quota;
/// # fn main() -> Result<(), rate_limiter::ConfigError> {
/// let quota = Quota::new(100, Duration::from_secs(60))?.with_burst(10)?;
/// assert_eq!(quota.interval(), Duration::from_millis(600));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests admitted per period (≥ 1).
    limit: u64,
    /// The period in microseconds (≥ limit, so the interval is at least 1 µs).
    period_us: u64,
    /// Bucket capacity: how many requests may arrive at once after an idle spell (≥ 1).
    burst: u64,
    /// ⌈period / limit⌉ in microseconds: the steady-state spacing of admitted requests.
    interval_us: u64,
}

impl Quota {
    /// `limit` requests per `period`, burst = `limit`.
    ///
    /// # Errors
    /// [`ConfigError::ZeroLimit`], [`ConfigError::ZeroPeriod`] (also for periods below 1 µs),
    /// [`ConfigError::TooFine`] when `limit` exceeds the period in µs, and
    /// [`ConfigError::TooLarge`] when `limit × period` exceeds [`MAX_PRODUCT_MICROS`].
    pub fn new(limit: u64, period: Duration) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::ZeroLimit);
        }
        let period_us = u64::try_from(period.as_micros()).map_err(|_| ConfigError::TooLarge)?;
        if period_us == 0 {
            return Err(ConfigError::ZeroPeriod);
        }
        if limit > period_us {
            return Err(ConfigError::TooFine { limit, period });
        }
        match limit.checked_mul(period_us) {
            Some(p) if p <= MAX_PRODUCT_MICROS => {}
            _ => return Err(ConfigError::TooLarge),
        }
        Self {
            limit,
            period_us,
            burst: 1,
            interval_us: period_us.div_ceil(limit),
        }
        .with_burst(limit)
    }

    /// `limit` requests per second.
    ///
    /// # Errors
    /// As [`Quota::new`].
    pub fn per_second(limit: u64) -> Result<Self, ConfigError> {
        Self::new(limit, Duration::from_secs(1))
    }

    /// The same rate with a different burst capacity.
    ///
    /// # Errors
    /// [`ConfigError::ZeroBurst`], or [`ConfigError::TooLarge`] when `burst × interval` exceeds
    /// [`MAX_PRODUCT_MICROS`].
    pub fn with_burst(self, burst: u64) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        match burst.checked_mul(self.interval_us) {
            Some(p) if p <= MAX_PRODUCT_MICROS => Ok(Self { burst, ..self }),
            _ => Err(ConfigError::TooLarge),
        }
    }

    /// This quota divided among `instances` (for a local fallback that must not let N instances
    /// together exceed the global quota): limit and burst are divided, rounded down, at least 1.
    ///
    /// # Errors
    /// [`ConfigError::ZeroInstances`], or the errors of [`Quota::new`] for the result.
    pub fn share(&self, instances: u64) -> Result<Self, ConfigError> {
        if instances == 0 {
            return Err(ConfigError::ZeroInstances);
        }
        let limit = (self.limit / instances).max(1);
        let burst = (self.burst / instances).max(1);
        Self::new(limit, self.period())?.with_burst(burst)
    }

    /// Requests per period.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period (window length).
    #[must_use]
    pub fn period(&self) -> Duration {
        Duration::from_micros(self.period_us)
    }

    /// The period in microseconds.
    #[must_use]
    pub fn period_micros(&self) -> u64 {
        self.period_us
    }

    /// Burst capacity of the bucket algorithms.
    #[must_use]
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Steady-state spacing between admitted requests, ⌈period / limit⌉.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }

    /// [`interval`](Self::interval) in microseconds.
    #[must_use]
    pub fn interval_micros(&self) -> u64 {
        self.interval_us
    }

    /// GCRA's delay-variation tolerance τ = burst × interval, in microseconds.
    #[must_use]
    pub fn tolerance_micros(&self) -> u64 {
        self.burst * self.interval_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_quotas_are_rejected_with_typed_errors() {
        let s = Duration::from_secs(1);
        assert_eq!(Quota::new(0, s), Err(ConfigError::ZeroLimit));
        assert_eq!(Quota::new(1, Duration::ZERO), Err(ConfigError::ZeroPeriod));
        assert_eq!(
            Quota::new(1, Duration::from_nanos(999)),
            Err(ConfigError::ZeroPeriod)
        );
        assert!(matches!(
            Quota::new(2_000_000, s),
            Err(ConfigError::TooFine { .. })
        ));
        assert_eq!(
            Quota::new(1_000_000_000, Duration::from_secs(1 << 40)),
            Err(ConfigError::TooLarge)
        );
        assert_eq!(Quota::new(1, Duration::MAX), Err(ConfigError::TooLarge));
        let q = Quota::per_second(10).expect("valid");
        assert_eq!(q.with_burst(0), Err(ConfigError::ZeroBurst));
        assert_eq!(q.with_burst(u64::MAX), Err(ConfigError::TooLarge));
        assert_eq!(q.share(0), Err(ConfigError::ZeroInstances));
    }

    #[test]
    fn interval_rounds_up_so_the_rate_never_exceeds_the_quota() {
        let q = Quota::new(3, Duration::from_micros(10)).expect("valid");
        assert_eq!(q.interval_micros(), 4);
        assert_eq!(q.burst(), 3);
    }

    #[test]
    fn a_share_divides_limit_and_burst() {
        let q = Quota::per_second(100)
            .expect("valid")
            .share(4)
            .expect("valid");
        assert_eq!((q.limit(), q.burst()), (25, 25));
    }
}
