//! tower/axum integration: key extraction, 429 responses, shared limiter state.

mod backend;
mod future;
pub mod headers;
mod key;
mod layer;

use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderValue, Request, Response};
use tower::Service;

pub use backend::RateLimit;
pub use future::ResponseFuture;
pub use key::{KeyExtractor, MAX_CLIENT_KEY_LEN};
pub use layer::RateLimitLayer;

/// The service built by [`RateLimitLayer`]: asks the limiter, then either answers 429 or calls
/// the inner service and adds the `RateLimit` headers to its response.
#[derive(Debug, Clone)]
pub struct RateLimitService<S, L> {
    /// The wrapped service.
    inner: S,
    /// The shared limiter.
    limiter: L,
    /// How requests map to keys.
    key: KeyExtractor,
    /// `RateLimit-Policy`, rendered once by the layer.
    policy: HeaderValue,
}

impl<S, L, B> Service<Request<B>> for RateLimitService<S, L>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    L: RateLimit,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = self.key.extract(&req);
        let limiter = self.limiter.clone();
        let policy = self.policy.clone();
        // The clone that was driven to readiness serves this request; the fresh clone stays
        // behind for the next poll_ready (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let decision = limiter.decide(&key).await;
            if !decision.is_allowed() {
                return Ok(headers::too_many_requests(&decision, &policy));
            }
            let mut response = inner.call(req).await?;
            headers::insert(response.headers_mut(), &decision, &policy);
            Ok(response)
        })
    }
}
