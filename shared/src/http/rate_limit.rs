//! Rate limits per principal, counted in the store.
//!
//! A request counts against its principal's budget: an API key's name or an
//! ID token's user (see [`crate::auth`]), or, when the function is open
//! (`anonymous`), its address (`X-Forwarded-For`'s last hop only under
//! `TRUST_PROXY`). `X-Client-ID` can only narrow that budget, never widen
//! it: with a per-client limit (`RATE_LIMIT_*_PER_CLIENT`) each id also has
//! a budget of its own within the principal's, and the principal's limit
//! holds whatever ids (or other headers) it sends. Only an open function
//! behind a gateway that sets the header itself (`TRUST_CLIENT_ID`) counts
//! anonymous requests by `X-Client-ID` instead of by address.
//!
//! Each limit is a sliding log ([`crate::store::rate_log`]): at most the
//! limit in any interval of the window's length, across clock boundaries.
//! Counting in the store rather than in memory is what makes a limit a limit
//! on Cloud Run: with many instances, an in-memory counter would admit the
//! limit once per instance.
//!
//! Keys are injective: `{bucket}:{who}`, where `who` is `key:…`,
//! `firebase:…` or `google:…` (a principal), `ip:…` or `id:…`; a per-client
//! key adds a newline and `id:…`, and no principal or address holds a
//! newline.

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
use crate::store::{Admission, RateLimitStore};

pub(crate) const CLIENT_HEADER: &str = "x-client-id";
/// The longest `X-Client-ID` counted, in characters: longer ids are cut, so
/// a client cannot grow the store's keys without limit.
const MAX_CLIENT_ID_CHARS: usize = 128;
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// How a [`RateLimiter`] tells who is asking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trust {
    /// Take the client address from `X-Forwarded-For` (behind Cloud Run's or
    /// another trusted proxy, where the peer is the proxy).
    pub proxy: bool,
    /// Count anonymous requests by `X-Client-ID` (behind a gateway that sets
    /// it); otherwise an anonymous client's id only narrows its address's
    /// budget.
    pub client_id: bool,
}

pub(crate) struct RateLimiter {
    /// Names the limit ("chat", "agent") so one client's chat and agent
    /// requests are counted apart.
    bucket: &'static str,
    /// The principal's limit (`RATE_LIMIT_*`).
    limit: Option<RateLimit>,
    /// Each `X-Client-ID`'s limit within its principal's
    /// (`RATE_LIMIT_*_PER_CLIENT`).
    per_client: Option<RateLimit>,
    store: Arc<dyn RateLimitStore>,
    /// `rate_limited_requests_total` for this limit.
    refused: Counter,
    trust: Trust,
}

/// One limit a request is counted against.
struct Check {
    key: String,
    limit: RateLimit,
    /// Who is refused, for the error message.
    whose: &'static str,
}

impl RateLimiter {
    /// Refusals are counted in `metrics` as
    /// `rate_limited_requests_total{bucket}`.
    pub(crate) fn new(
        bucket: &'static str,
        limit: Option<RateLimit>,
        per_client: Option<RateLimit>,
        store: Arc<dyn RateLimitStore>,
        metrics: &Metrics,
        trust: Trust,
    ) -> RateLimiter {
        RateLimiter {
            bucket,
            limit,
            per_client,
            store,
            refused: metrics.register_counter(
                "rate_limited_requests_total",
                "Requests refused by a rate limit, by limit.",
                &[("bucket", bucket)],
            ),
            trust,
        }
    }

    /// The limits this request is counted against, the narrowest first: its
    /// client id's within its principal's (when set and sent), then its
    /// principal's.
    fn checks(&self, request: &Request) -> Vec<Check> {
        let mut who = String::with_capacity(48);
        let counted_by_id = write_principal_key(&mut who, request, self.trust);
        let mut checks = Vec::with_capacity(2);
        if let Some(limit) = self.per_client
            && !counted_by_id
            && let Some(id) = client_id(request.headers())
        {
            checks.push(Check {
                key: format!("{}:{who}\nid:{id}", self.bucket),
                limit,
                whose: "this client (X-Client-ID)",
            });
        }
        if let Some(limit) = self.limit {
            checks.push(Check {
                key: format!("{}:{who}", self.bucket),
                limit,
                whose: "this caller",
            });
        }
        checks
    }
}

/// `X-Client-ID`, trimmed and cut to [`MAX_CLIENT_ID_CHARS`]; `None` when
/// absent or empty. Header values hold no newline, so neither does the id.
fn client_id(headers: &HeaderMap) -> Option<&str> {
    let id = headers.get(CLIENT_HEADER)?.to_str().ok()?.trim();
    let end = id.char_indices().nth(MAX_CLIENT_ID_CHARS).map_or(id.len(), |(i, _)| i);
    Some(&id[..end]).filter(|id| !id.is_empty())
}

/// Whose budget the request spends, written at the end of `out`: its
/// principal, else (anonymous) its `X-Client-ID` when trusted, else its
/// address. True when that is the client id.
fn write_principal_key(out: &mut String, request: &Request, trust: Trust) -> bool {
    use std::fmt::Write as _;

    // `key:NAME`, `firebase:UID`, `google:SUB`: never `id:` or `ip:`, so
    // the kinds of caller cannot collide.
    if let Some(principal) = request.extensions().get::<Principal>()
        && !principal.is_anonymous()
    {
        out.push_str(principal.as_str());
        return false;
    }
    if trust.client_id
        && let Some(id) = client_id(request.headers())
    {
        out.push_str("id:");
        out.push_str(id);
        return true;
    }
    match client_ip(request, trust.proxy) {
        Some(ip) => {
            let _ = write!(out, "ip:{ip}");
        }
        None => out.push_str("ip:unknown"),
    }
    false
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

async fn limit<S>(limiter: Arc<RateLimiter>, mut request: Request, mut next: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let now = SystemTime::now();
    let checks = Arc::new(limiter.checks(&request));
    let tightest = match limiter.admit(&checks, now).await {
        Ok(tightest) => tightest,
        Err(refused) => {
            let mut response = refused.error.into_response();
            if let Some((admission, limit)) = refused.headers {
                set_headers(response.headers_mut(), &admission, limit, now);
            }
            return response;
        }
    };
    // A handler that does the work of several requests (a batch) counts
    // each one more with this.
    request.extensions_mut().insert(RateBudget { limiter, checks });
    let mut response = respond(next.call(request)).await;
    if let Some((admission, limit)) = tightest {
        set_headers(response.headers_mut(), &admission, limit, now);
    }
    response
}

impl RateLimiter {
    /// Counts one request against `checks`, the narrower limit first (a
    /// request it refuses spends none of the principal's budget): the
    /// admission with the fewest places left, for the headers, or why not.
    async fn admit(&self, checks: &[Check], now: SystemTime) -> Result<Option<(Admission, RateLimit)>, Refused> {
        let mut tightest: Option<(Admission, RateLimit)> = None;
        for check in checks {
            let admission = match self.store.admit(&check.key, check.limit, now).await {
                Ok(a) => a,
                // Failing closed: an unprotected function in front of a paid
                // model is worse than a retry.
                Err(err) => {
                    return Err(Refused {
                        error: ApiError::from(err),
                        headers: None,
                    });
                }
            };
            if !admission.admitted {
                self.refused.inc();
                let reset = seconds_until(admission.resets_at, now);
                return Err(Refused {
                    error: self.refusal(check, reset),
                    headers: Some((admission, check.limit)),
                });
            }
            if tightest.is_none_or(|(t, _)| admission.remaining < t.remaining) {
                tightest = Some((admission, check.limit));
            }
        }
        Ok(tightest)
    }

    fn refusal(&self, check: &Check, reset: u64) -> ApiError {
        ApiError::rate_limited(
            format!(
                "{} sent {} {} requests in the last {} s, its limit; retry after {reset} s",
                check.whose,
                check.limit.max,
                self.bucket,
                check.limit.window.as_secs()
            ),
            Duration::from_secs(reset),
        )
    }
}

/// A request not admitted: the 429 (with the refusing limit, for the
/// `RateLimit-*` headers) or the store's 503.
struct Refused {
    error: ApiError,
    headers: Option<(Admission, RateLimit)>,
}

/// The rate limits a request was admitted under, as a request extension,
/// for a handler that does the work of several requests (a chat batch):
/// each one beyond the first is counted with [`RateBudget::spend_one`],
/// against the same limits and keys. Absent when the routes have no limit.
#[derive(Clone)]
pub struct RateBudget {
    limiter: Arc<RateLimiter>,
    checks: Arc<Vec<Check>>,
}

impl RateBudget {
    /// Counts one more request: `Ok` when admitted, else the error the
    /// request would have had (429 with its `Retry-After`, or the store's
    /// 503).
    pub async fn spend_one(&self) -> Result<(), ApiError> {
        match self.limiter.admit(&self.checks, SystemTime::now()).await {
            Ok(_) => Ok(()),
            Err(refused) => Err(refused.error),
        }
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the oldest
/// counted request leaves the window and frees a place).
fn set_headers(headers: &mut HeaderMap, admission: &Admission, limit: RateLimit, now: SystemTime) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit.max));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(admission.remaining));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(seconds_until(admission.resets_at, now)),
    );
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

    fn limiter(per_client: bool, trust: Trust) -> RateLimiter {
        let limit = RateLimit {
            max: 10,
            window: Duration::from_secs(60),
        };
        RateLimiter {
            bucket: "chat",
            limit: Some(limit),
            per_client: per_client.then_some(RateLimit { max: 2, ..limit }),
            store: Arc::new(NoStore),
            refused: Metrics::new("test").register_counter("x", "x", &[]),
            trust,
        }
    }

    struct NoStore;

    #[async_trait::async_trait]
    impl RateLimitStore for NoStore {
        async fn admit(&self, _: &str, _: RateLimit, _: SystemTime) -> Result<Admission, crate::store::StoreError> {
            Err(crate::store::StoreError::Internal("not asked in these tests".into()))
        }
    }

    fn keys(limiter: &RateLimiter, request: &Request) -> Vec<String> {
        limiter.checks(request).into_iter().map(|c| c.key).collect()
    }

    const PLAIN: Trust = Trust {
        proxy: false,
        client_id: false,
    };

    #[test]
    fn the_principal_is_counted_whatever_client_id_it_sends() {
        let l = limiter(false, PLAIN);
        let mut with_key = request(&[("x-client-id", "alice"), ("x-forwarded-for", "1.2.3.4")]);
        with_key
            .extensions_mut()
            .insert(Principal::api_key("ops").expect("name"));
        assert_eq!(keys(&l, &with_key), ["chat:key:ops"]);
        let mut with_user = request(&[("x-forwarded-for", "203.0.113.7")]);
        with_user
            .extensions_mut()
            .insert(Principal::firebase("uid-1").expect("uid"));
        assert_eq!(
            keys(&limiter(false, Trust { proxy: true, ..PLAIN }), &with_user),
            ["chat:firebase:uid-1"]
        );
    }

    #[test]
    fn anonymous_callers_are_counted_by_address_unless_a_gateway_sets_the_id() {
        let l = limiter(false, PLAIN);
        let mut anonymous = request(&[("x-client-id", "alice")]);
        anonymous.extensions_mut().insert(Principal::anonymous());
        assert_eq!(
            keys(&l, &anonymous),
            ["chat:ip:10.0.0.9"],
            "an open function counts by address"
        );
        assert_eq!(keys(&l, &request(&[])), ["chat:ip:10.0.0.9"]);
        let forwarded = request(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7")]);
        assert_eq!(
            keys(&limiter(false, Trust { proxy: true, ..PLAIN }), &forwarded),
            ["chat:ip:203.0.113.7"]
        );
        assert_eq!(keys(&l, &forwarded), ["chat:ip:10.0.0.9"]);
        let gateway = limiter(
            true,
            Trust {
                client_id: true,
                ..PLAIN
            },
        );
        assert_eq!(
            keys(&gateway, &anonymous),
            ["chat:id:alice"],
            "behind a trusted gateway the id is the caller, with no narrower limit"
        );
        assert_eq!(keys(&gateway, &request(&[])), ["chat:ip:10.0.0.9"]);
        let long = format!(" {} ", "b".repeat(200));
        assert_eq!(
            keys(&gateway, &request(&[("x-client-id", &long)])),
            [format!("chat:id:{}", "b".repeat(128))]
        );
    }

    #[test]
    fn a_client_id_narrows_the_principals_budget_first() {
        let l = limiter(true, PLAIN);
        let mut with_key = request(&[("x-client-id", "alice")]);
        with_key
            .extensions_mut()
            .insert(Principal::api_key("ops").expect("name"));
        let checks = l.checks(&with_key);
        let keys: Vec<_> = checks.iter().map(|c| (c.key.as_str(), c.limit.max)).collect();
        assert_eq!(keys, [("chat:key:ops\nid:alice", 2), ("chat:key:ops", 10)]);
        let mut without = request(&[]);
        without
            .extensions_mut()
            .insert(Principal::api_key("ops").expect("name"));
        assert_eq!(
            self::keys(&l, &without),
            ["chat:key:ops"],
            "no id, only the principal's"
        );
        assert_eq!(
            self::keys(&l, &request(&[("x-client-id", "bob")])),
            ["chat:ip:10.0.0.9\nid:bob", "chat:ip:10.0.0.9"],
            "an anonymous id narrows its address's budget"
        );
    }
}
