//! HTTP rendering of a decision: 429, `Retry-After`, and the IETF `RateLimit` headers.
//!
//! Header syntax follows draft-ietf-httpapi-ratelimit-headers (structured fields):
//! `RateLimit-Policy: "default";q=100;w=60` and `RateLimit: "default";r=42;t=7`.

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header::RETRY_AFTER};

use crate::{Decision, Quota};

/// `RateLimit` (remaining `r` and seconds to reset `t` of the named policy).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (quota `q` per window `w` seconds).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit-Policy` value for `quota` (constant per layer: built once, cloned per response).
pub fn policy_header(quota: &Quota) -> HeaderValue {
    let window = quota.period_micros().div_ceil(1_000_000);
    let policy = format!("\"default\";q={};w={window}", quota.limit());
    // Quotes and ASCII digits only: always a valid header value.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// Adds `RateLimit-Policy`, `RateLimit` and (when denied) `Retry-After` to `headers`.
pub fn insert(headers: &mut HeaderMap, decision: &Decision, policy: &HeaderValue) {
    let state = format!(
        "\"default\";r={};t={}",
        decision.remaining(),
        decision.reset_after_secs_ceil()
    );
    headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
    if let Ok(v) = HeaderValue::from_str(&state) {
        headers.insert(RATELIMIT.clone(), v);
    }
    if let Some(secs) = decision.retry_after_secs_ceil() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// The 429 response for a denied decision.
pub fn too_many_requests(decision: &Decision, policy: &HeaderValue) -> Response<Body> {
    let mut response = Response::new(Body::from("rate limit exceeded\n"));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    insert(response.headers_mut(), decision, policy);
    response
}
