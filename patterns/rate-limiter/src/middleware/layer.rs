//! The tower `Layer`.

use tower::Layer;

use http::HeaderValue;

use super::{KeyExtractor, RateLimit, RateLimitService, headers};

/// Rate limits every request of the wrapped service: `layer(router)` in axum.
///
/// Holds only a limiter handle and a key extractor; the limiter's state is shared by every
/// service this layer builds and every clone of them (axum clones services per connection, so
/// per-clone state would silently multiply the quota).
///
/// # Example
/// ```
/// use axum::{Router, routing::get};
/// use rate_limiter::{Gcra, KeyExtractor, KeyedLimiter, Quota, RateLimitLayer};
/// # fn main() -> Result<(), rate_limiter::ConfigError> {
/// let limiter: KeyedLimiter<String, _> = KeyedLimiter::builder(Gcra::new(Quota::per_second(10)?)).build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RateLimitLayer::new(limiter, KeyExtractor::ClientIp));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer<L> {
    /// The shared limiter.
    limiter: L,
    /// How requests map to keys.
    key: KeyExtractor,
    /// `RateLimit-Policy`, rendered once.
    policy: HeaderValue,
}

impl<L: RateLimit> RateLimitLayer<L> {
    /// A layer asking `limiter`, keyed by `key`.
    pub fn new(limiter: L, key: KeyExtractor) -> Self {
        let policy = headers::policy_header(&limiter.quota());
        Self {
            limiter,
            key,
            policy,
        }
    }
}

impl<S, L: RateLimit> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimitService<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
        }
    }
}
