//! Which bucket a request is counted in.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath};
use http::{HeaderName, Request};
use sha2::{Digest, Sha256};

/// Longest client-supplied value hashed into a key. Longer values all share one `oversize`
/// bucket: an attacker cannot mint unbounded distinct keys by growing a header, and pays for
/// trying by throttling every other oversize sender.
pub const MAX_CLIENT_KEY_LEN: usize = 256;

/// How a request maps to a rate-limit key.
///
/// Values a client controls (headers, raw paths) are length-bounded and hashed: the key stored
/// in memory or Redis has a fixed size whatever the client sends, and no client string reaches
/// Redis key space verbatim (no hash-tag or log injection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExtractor {
    /// One bucket for everything.
    Global,
    /// The peer IP from axum's `ConnectInfo<SocketAddr>` (serve with
    /// `into_make_service_with_connect_info`). Behind a proxy this is the proxy: put the
    /// limiter where the peer is the client, or derive the key from a header the proxy sets.
    ClientIp,
    /// The value of a header (an API key), hashed; requests without it fall back to the
    /// client IP.
    Header(HeaderName),
    /// The route template (axum `MatchedPath`, or a hash of the raw path) plus the client IP:
    /// a separate bucket per endpoint per client.
    RouteAndClientIp,
}

impl KeyExtractor {
    /// The key for `req`.
    pub fn extract<B>(&self, req: &Request<B>) -> String {
        match self {
            Self::Global => "global".to_owned(),
            Self::ClientIp => client_ip(req),
            Self::Header(name) => match req.headers().get(name) {
                Some(value) => format!("key:{}", hashed(value.as_bytes())),
                None => client_ip(req),
            },
            Self::RouteAndClientIp => {
                let route = match req.extensions().get::<MatchedPath>() {
                    Some(path) => path.as_str().to_owned(),
                    None => hashed(req.uri().path().as_bytes()),
                };
                format!("{} {route}|{}", req.method(), client_ip(req))
            }
        }
    }
}

fn client_ip<B>(req: &Request<B>) -> String {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".to_owned(),
    }
}

/// 128 bits of SHA-256 in hex: fixed size, no collisions in practice, no client bytes verbatim.
fn hashed(value: &[u8]) -> String {
    if value.len() > MAX_CLIENT_KEY_LEN {
        return "oversize".to_owned();
    }
    let digest = Sha256::digest(value);
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(api_key: &str) -> Request<()> {
        Request::builder()
            .header("x-api-key", api_key)
            .body(())
            .expect("valid request")
    }

    #[test]
    fn header_keys_are_hashed_to_a_fixed_size() {
        let k = KeyExtractor::Header(HeaderName::from_static("x-api-key"));
        let key = k.extract(&request("secret-token-{tag}"));
        assert_eq!(key.len(), "key:".len() + 32);
        assert!(!key.contains("secret"));
    }

    #[test]
    fn oversize_header_values_share_one_bucket() {
        let k = KeyExtractor::Header(HeaderName::from_static("x-api-key"));
        let a = k.extract(&request(&"a".repeat(1000)));
        let b = k.extract(&request(&"b".repeat(300)));
        assert_eq!(a, b);
    }

    #[test]
    fn a_missing_header_falls_back_to_the_client_ip() {
        let k = KeyExtractor::Header(HeaderName::from_static("x-api-key"));
        let req = Request::builder().body(()).expect("valid request");
        assert_eq!(k.extract(&req), "ip:unknown");
    }
}
