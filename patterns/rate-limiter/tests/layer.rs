//! The tower layer: 429 with `Retry-After` and `RateLimit` headers, state shared across clones.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use rate_limiter::{
    AlgorithmKind, DistributedLimiter, FailurePolicy, Gcra, KeyExtractor, KeyedLimiter, Quota,
    RateLimitLayer, RedisLimiter,
};
use tower::ServiceExt;

fn app(limit: u64) -> Router {
    let quota = Quota::new(limit, Duration::from_secs(60)).expect("valid quota");
    let limiter: KeyedLimiter<String, Gcra> = KeyedLimiter::builder(Gcra::new(quota))
        .build()
        .expect("valid config");
    let key = KeyExtractor::Header(http::HeaderName::from_static("x-api-key"));
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(limiter, key))
}

fn request(api_key: &str) -> Request<Body> {
    Request::builder()
        .uri("/")
        .header("x-api-key", api_key)
        .body(Body::empty())
        .expect("valid request")
}

fn header<'a>(r: &'a http::Response<Body>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{name} header present"))
}

#[tokio::test]
async fn denied_requests_get_429_with_retry_after_and_ratelimit_headers() {
    let app = app(2);
    let ok = app.clone().oneshot(request("k")).await.expect("infallible");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "ratelimit-policy"), "\"default\";q=2;w=60");
    assert_eq!(header(&ok, "ratelimit"), "\"default\";r=1;t=30");
    assert!(ok.headers().get("retry-after").is_none());
    let _ = app.clone().oneshot(request("k")).await.expect("infallible");
    let denied = app.oneshot(request("k")).await.expect("infallible");
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // 2 per minute: the next slot opens in 30 s (rounded up to whole seconds).
    assert_eq!(header(&denied, "retry-after"), "30");
    assert_eq!(header(&denied, "ratelimit"), "\"default\";r=0;t=60");
}

#[tokio::test]
async fn clones_of_the_service_share_one_limit() {
    let app = app(3);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        // Every request through a fresh clone, as axum does per connection.
        let r = app
            .clone()
            .oneshot(request("shared"))
            .await
            .expect("infallible");
        statuses.push(r.status());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 3);
}

#[tokio::test]
async fn distinct_api_keys_are_limited_separately() {
    let app = app(1);
    let a = app
        .clone()
        .oneshot(request("alice"))
        .await
        .expect("infallible");
    let b = app
        .clone()
        .oneshot(request("bob"))
        .await
        .expect("infallible");
    let a2 = app.oneshot(request("alice")).await.expect("infallible");
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    assert_eq!(a2.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_redis_backed_layer_limits_across_two_routers() {
    let redis = harness::redis().await.expect("redis available");
    let quota = Quota::new(4, Duration::from_secs(3600)).expect("valid quota");
    let router = |redis: &harness::TestRedis| {
        let limiter = RedisLimiter::new(
            redis.connection(),
            AlgorithmKind::Gcra,
            quota,
            redis.prefix(),
        );
        let limiter = DistributedLimiter::builder(limiter)
            .policy(FailurePolicy::FailClosed)
            .build()
            .expect("valid config");
        Router::new()
            .route("/", get(|| async { "hello" }))
            .layer(RateLimitLayer::new(limiter, KeyExtractor::Global))
    };
    // Two "instances" with separate limiter objects: only Redis is shared.
    let (a, b) = (router(&redis), router(&redis));
    let mut ok = 0;
    for i in 0..10 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = app.oneshot(request("any")).await.expect("infallible");
        ok += usize::from(r.status() == StatusCode::OK);
    }
    assert_eq!(ok, 4);
}

#[tokio::test]
async fn client_ip_keys_come_from_the_connection_not_from_headers() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;

    let quota = Quota::new(1, Duration::from_secs(60)).expect("valid quota");
    let limiter: KeyedLimiter<String, Gcra> = KeyedLimiter::builder(Gcra::new(quota))
        .build()
        .expect("valid config");
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(limiter.clone(), KeyExtractor::ClientIp));
    let from = |ip: &str, spoofed: &str| {
        let addr: SocketAddr = format!("{ip}:40000").parse().expect("valid address");
        let mut req = Request::builder()
            .uri("/")
            .header("x-forwarded-for", spoofed)
            .body(Body::empty())
            .expect("valid request");
        req.extensions_mut().insert(ConnectInfo(addr));
        req
    };
    let first = app
        .clone()
        .oneshot(from("127.0.0.2", "203.0.113.1"))
        .await
        .expect("infallible");
    // A new X-Forwarded-For value does not buy a new budget.
    let spoofed = app
        .clone()
        .oneshot(from("127.0.0.2", "203.0.113.2"))
        .await
        .expect("infallible");
    let other = app
        .oneshot(from("127.0.0.3", "203.0.113.1"))
        .await
        .expect("infallible");
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(limiter.len(), 2);
}

#[tokio::test]
async fn route_keys_use_the_route_template_so_path_parameters_share_a_bucket() {
    let quota = Quota::new(1, Duration::from_secs(60)).expect("valid quota");
    let limiter: KeyedLimiter<String, Gcra> = KeyedLimiter::builder(Gcra::new(quota))
        .build()
        .expect("valid config");
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b/{id}", get(|| async { "b" }))
        .layer(RateLimitLayer::new(limiter, KeyExtractor::RouteAndClientIp));
    let get_path = |path: &str| {
        Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("valid")
    };
    let mut statuses = Vec::new();
    for path in ["/a", "/a", "/b/1", "/b/2"] {
        let r = app
            .clone()
            .oneshot(get_path(path))
            .await
            .expect("infallible");
        statuses.push(r.status().as_u16());
    }
    // /b/1 and /b/2 are one route: a client cannot mint buckets by varying the parameter.
    assert_eq!(statuses, vec![200, 429, 200, 429]);
}
