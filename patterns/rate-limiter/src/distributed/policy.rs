//! What to decide when Redis cannot.

use crate::{ConfigError, Quota};

/// The decision taken for a request when Redis is slow (past the timeout) or down.
///
/// There is no universally right answer, which is why it is the caller's choice:
/// * [`FailOpen`](Self::FailOpen) keeps the service available and stops protecting it — right
///   when the limiter guards fairness, not capacity.
/// * [`FailClosed`](Self::FailClosed) keeps the protection and sheds all traffic — right when the
///   protected resource (a paid upstream API, a fragile database) must never see more.
/// * [`LocalFallback`](Self::LocalFallback) enforces a share of the quota per instance in
///   process: with `N` instances each given `1/N`, the total stays near the global quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Admit every request while Redis is unavailable.
    FailOpen,
    /// Deny every request while Redis is unavailable.
    FailClosed,
    /// Limit in process with this (per-instance) quota while Redis is unavailable.
    LocalFallback(Quota),
}

impl FailurePolicy {
    /// [`LocalFallback`](Self::LocalFallback) with `global / instances`.
    ///
    /// # Errors
    /// [`ConfigError::ZeroInstances`], or a quota error if the share is not representable.
    pub fn local_share(global: &Quota, instances: u64) -> Result<Self, ConfigError> {
        Ok(Self::LocalFallback(global.share(instances)?))
    }

    /// A short name for logs and metrics.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::FailOpen => "fail-open",
            Self::FailClosed => "fail-closed",
            Self::LocalFallback(_) => "local-fallback",
        }
    }
}
