//! The response future.

use std::pin::Pin;

use axum::body::Body;
use http::Response;

/// The future returned by [`RateLimitService`](super::RateLimitService).
///
/// Boxed: it awaits an async limiter and then the inner service, and naming that state machine
/// would need a pin-projection dependency for a saving (one allocation per request) that the
/// Redis round trip or the handler dwarfs; the layer-overhead benchmark measures it.
pub type ResponseFuture<E> =
    Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send + 'static>>;
