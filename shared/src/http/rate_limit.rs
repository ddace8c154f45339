//! Rate limits per client, counted in the store.
//!
//! A client is its `X-Client-ID`, else its principal (an API key's name, an
//! ID token's user: see [`crate::auth`]), else, when the function is open
//! (`anonymous`), its address.
//! Counting in the store rather than in memory is what makes a limit a limit
//! on Cloud Run: with many instances, an in-memory counter would admit the
//! limit once per instance.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::error::ApiError;
use super::metrics::{Counter, Metrics};
use super::middleware::{Middleware, ResponseFuture, respond};
use crate::auth::Principal;
use crate::config::RateLimit;
use crate::store::RateLimitStore;

pub(crate) const CLIENT_HEADER: &str = "x-client-id";
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

pub(crate) struct RateLimiter {
    /// Names the limit ("chat", "agent") so one client's chat and agent
    /// requests are counted apart.
    bucket: &'static str,
    limit: RateLimit,
    store: Arc<dyn RateLimitStore>,
    /// `rate_limited_requests_total` for this limit.
    refused: Counter,
    /// Take the client address from `X-Forwarded-For` (behind Cloud Run's or
    /// another trusted proxy, where the peer is the proxy).
    trust_proxy: bool,
    /// `RateLimit-Limit`, the same on every answer.
    limit_header: HeaderValue,
}

impl RateLimiter {
    /// Refusals are counted in `metrics` as
    /// `rate_limited_requests_total{bucket}`.
    pub(crate) fn new(
        bucket: &'static str,
        limit: RateLimit,
        store: Arc<dyn RateLimitStore>,
        metrics: &Metrics,
        trust_proxy: bool,
    ) -> RateLimiter {
        RateLimiter {
            bucket,
            limit,
            store,
            refused: metrics.register_counter(
                "rate_limited_requests_total",
                "Requests refused by a rate limit, by limit.",
                &[("bucket", bucket)],
            ),
            trust_proxy,
            limit_header: HeaderValue::from(limit.max),
        }
    }

    /// The store key this request is counted under: the bucket, then who is
    /// asking.
    fn key(&self, request: &Request) -> String {
        let mut key = String::with_capacity(self.bucket.len() + 48);
        key.push_str(self.bucket);
        key.push(':');
        write_client_key(&mut key, request, self.trust_proxy);
        key
    }
}

/// Who is asking, for counting, written at the end of `out`.
fn write_client_key(out: &mut String, request: &Request, trust_proxy: bool) {
    use std::fmt::Write as _;

    if let Some(id) = request.headers().get(CLIENT_HEADER).and_then(|v| v.to_str().ok()) {
        let id = id.trim();
        if !id.is_empty() {
            // Bounded, so a client cannot grow the store's keys without limit.
            let end = id.char_indices().nth(128).map_or(id.len(), |(i, _)| i);
            out.push_str("id:");
            out.push_str(&id[..end]);
            return;
        }
    }
    // `key:NAME`, `firebase:UID`, `google:SUB`: never `id:` or `ip:`, so
    // the three kinds of client cannot collide.
    if let Some(principal) = request.extensions().get::<Principal>()
        && !principal.is_anonymous()
    {
        out.push_str(principal.as_str());
        return;
    }
    match client_ip(request, trust_proxy) {
        Some(ip) => {
            let _ = write!(out, "ip:{ip}");
        }
        None => out.push_str("ip:unknown"),
    }
}

/// The client's address: the last `X-Forwarded-For` hop when a trusted proxy
/// added it (the hops before it are the client's to forge), the Lambda
/// request context's source IP, else the TCP peer.
pub(crate) fn client_ip(request: &Request, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy && let Some(ip) = last_forwarded_for(request.headers()) {
        return Some(ip);
    }
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        return Some(addr.ip());
    }
    lambda_source_ip(request)
}

fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
}

fn lambda_source_ip(request: &Request) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    match request.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?.parse().ok(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

fn seconds_until(t: SystemTime, now: SystemTime) -> u64 {
    t.duration_since(now)
        .map(|d| d.as_secs_f64().ceil() as u64)
        .unwrap_or(0)
        .max(1)
}

/// A [`RateLimiter`] in front of routes.
#[derive(Clone)]
pub(crate) struct Limit(pub(crate) Arc<RateLimiter>);

impl Middleware for Limit {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        // The store is asked before the request goes on, so the future takes
        // the ready service and leaves a clone in its place.
        let clone = inner.clone();
        let ready = std::mem::replace(inner, clone);
        Box::pin(limit(self.0.clone(), request, ready))
    }
}

async fn limit<S>(limiter: Arc<RateLimiter>, request: Request, mut next: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let key = limiter.key(&request);
    let now = SystemTime::now();
    let window = match limiter.store.hit(&key, limiter.limit.window, now).await {
        Ok(w) => w,
        // Failing closed: an unprotected function in front of a paid model
        // is worse than a retry.
        Err(err) => return ApiError::from(err).into_response(),
    };
    let reset = seconds_until(window.resets_at, now);
    let remaining = limiter.limit.max.saturating_sub(window.count);
    let mut response = if window.count > limiter.limit.max {
        limiter.refused.inc();
        ApiError::rate_limited(
            format!(
                "this client sent more than {} {} requests in {} s; retry after {reset} s, or send a distinct X-Client-ID per end user",
                limiter.limit.max,
                limiter.bucket,
                limiter.limit.window.as_secs()
            ),
            Duration::from_secs(reset),
        )
        .into_response()
    } else {
        respond(next.call(request)).await
    };
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_LIMIT, limiter.limit_header.clone());
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(reset));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut r = builder.body(axum::body::Body::empty()).expect("request");
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 5000))));
        r
    }

    fn client_key(request: &Request, trust_proxy: bool) -> String {
        let mut key = String::new();
        write_client_key(&mut key, request, trust_proxy);
        key
    }

    #[test]
    fn client_identity_precedence() {
        assert_eq!(client_key(&request(&[("x-client-id", "alice")]), false), "id:alice");
        let long = format!(" {} ", "b".repeat(200));
        assert_eq!(
            client_key(&request(&[("x-client-id", &long)]), false),
            format!("id:{}", "b".repeat(128))
        );
        let mut with_key = request(&[]);
        with_key
            .extensions_mut()
            .insert(Principal::api_key("ops").expect("name"));
        assert_eq!(client_key(&with_key, false), "key:ops");
        let mut with_user = request(&[("x-forwarded-for", "203.0.113.7")]);
        with_user
            .extensions_mut()
            .insert(Principal::firebase("uid-1").expect("uid"));
        assert_eq!(client_key(&with_user, true), "firebase:uid-1");
        let mut anonymous = request(&[]);
        anonymous.extensions_mut().insert(Principal::anonymous());
        assert_eq!(
            client_key(&anonymous, false),
            "ip:10.0.0.9",
            "an open function counts by address"
        );
        assert_eq!(client_key(&request(&[]), false), "ip:10.0.0.9");
        let forwarded = request(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7")]);
        assert_eq!(client_key(&forwarded, true), "ip:203.0.113.7");
        assert_eq!(client_key(&forwarded, false), "ip:10.0.0.9");
    }
}
