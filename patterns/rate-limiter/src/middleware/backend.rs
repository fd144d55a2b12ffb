//! What the layer needs from a limiter.

use std::future::Future;

use crate::algorithm::Algorithm;
use crate::{Clock, Decision, DistributedLimiter, KeyedLimiter, Quota};

/// A limiter the [`RateLimitLayer`](crate::RateLimitLayer) can ask: cheap to clone (clones share
/// state), async so a Redis-backed limiter fits.
pub trait RateLimit: Clone + Send + Sync + 'static {
    /// Decides one request for `key`.
    fn decide(&self, key: &str) -> impl Future<Output = Decision> + Send;

    /// The quota advertised in `RateLimit-Policy`.
    fn quota(&self) -> Quota;
}

impl RateLimit for DistributedLimiter {
    fn decide(&self, key: &str) -> impl Future<Output = Decision> + Send {
        self.check(key)
    }

    fn quota(&self) -> Quota {
        *DistributedLimiter::quota(self)
    }
}

impl<A: Algorithm, C: Clock> RateLimit for KeyedLimiter<String, A, C> {
    fn decide(&self, key: &str) -> impl Future<Output = Decision> + Send {
        std::future::ready(self.check(key))
    }

    fn quota(&self) -> Quota {
        *self.algorithm().quota()
    }
}
