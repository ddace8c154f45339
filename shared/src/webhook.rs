//! Signed callbacks to a client's URL when an async task finishes, with no
//! way to aim them at our own network.
//!
//! The callback URL comes from whoever submitted the task, and the request
//! leaves from inside the service, next to the metadata server (which hands
//! out the service's credentials) and the VPC. So a URL is checked twice:
//! [`validate_url`] when the task is accepted (no DNS, so a bad URL is a 400
//! right away), and [`resolve_public`] just before sending, where every
//! address the name resolves to must be public, and the connection is then
//! pinned to those addresses so a second lookup (DNS rebinding) cannot move
//! it. Redirects are not followed, for the same reason.
//!
//! The body is signed with HMAC-SHA256 in `X-Signature-256: sha256=<hex>`,
//! GitHub's scheme, so receivers can reuse code they already have, and
//! [`verify`] is the reference for them and for our tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use sha2::Sha256;
use url_host::Host;

use crate::config::Secret;
use crate::retry::{self, Backoff, Jitter};

/// Longer URLs are refused: no receiver needs one, and they end up in logs
/// and stored task records.
pub const MAX_URL_LEN: usize = 2048;

/// The signature header, as GitHub names it.
pub const SIGNATURE_HEADER: &str = "x-signature-256";

/// The task the callback is about, so a receiver can route it before
/// parsing the body.
pub const TASK_ID_HEADER: &str = "x-task-id";

pub const USER_AGENT: &str = "serverless-agent-webhook";

/// Names of the Google Cloud metadata server, which resolve only inside
/// Google Cloud and would hand out the service's credentials.
const METADATA_NAMES: [&str; 3] = ["metadata.google.internal", "metadata", "metadata.goog"];

/// Backoff between attempts grows to at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A receiver's `Retry-After` is honoured up to this, so one slow receiver
/// cannot hold a worker for long.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

/// `url::Host`, through reqwest, which re-exports `Url` but not the crate.
mod url_host {
    pub enum Host<'a> {
        Domain(&'a str),
        Ip(std::net::IpAddr),
    }

    pub fn of(url: &reqwest::Url) -> Option<Host<'_>> {
        let host = url.host_str()?;
        // `host_str` gives IPv6 literals in brackets; the parsed URL has
        // already normalised every IP form (`0x7f.1`, `2130706433`, ...).
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(Host::Ip(ip)),
            Err(_) => Some(Host::Domain(host)),
        }
    }
}

/// What an address is, for deciding whether a callback may go there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    Loopback,
    /// Never allowed; the text completes "the host ... is".
    Forbidden(&'static str),
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => Class::Loopback,
        (0, _, _) => Class::Forbidden("an unspecified (\"this network\") address"),
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Class::Forbidden("a private address"),
        (100, 64..=127, _) => Class::Forbidden("a carrier-grade NAT address"),
        (169, 254, _) => Class::Forbidden("a link-local address (the metadata server lives at 169.254.169.254)"),
        (192, 0, 0) => Class::Forbidden("an IETF protocol assignment address"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Class::Forbidden("a documentation address"),
        (192, 88, 99) => Class::Forbidden("a 6to4 relay anycast address"),
        (198, 18..=19, _) => Class::Forbidden("a benchmarking address"),
        (224..=239, _, _) => Class::Forbidden("a multicast address"),
        (255, 255, 255) if ip.is_broadcast() => Class::Forbidden("the broadcast address"),
        (240..=255, _, _) => Class::Forbidden("a reserved address"),
        _ => Class::Public,
    }
}

/// Only global unicast (`2000::/3`) can be public; inside it the special
/// ranges are refused, and the ranges that embed an IPv4 address (NAT64,
/// 6to4) are judged by that address.
fn classify_v6(ip: Ipv6Addr) -> Class {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        match classify_v4(Ipv4Addr::new(a, b, c, d)) {
            Class::Public => Class::Public,
            _ => Class::Forbidden("an IPv6 address that embeds a non-public IPv4 address (NAT64 or 6to4)"),
        }
    };
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_unspecified() {
        Class::Forbidden("the unspecified address")
    } else if s[0] & 0xff00 == 0xff00 {
        Class::Forbidden("a multicast address")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Class::Forbidden("a link-local address")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Class::Forbidden("a unique-local (private) address")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        embedded(s[6], s[7])
    } else if s[0] == 0x2002 {
        embedded(s[1], s[2])
    } else if (s[0] == 0x2001 && s[1] == 0xdb8) || s[0] & 0xfff0 == 0x3ff0 {
        Class::Forbidden("a documentation address")
    } else if s[0] == 0x2001 && s[1] < 0x200 {
        Class::Forbidden("an IETF special-purpose address (Teredo, ORCHID and the like)")
    } else if s[0] & 0xe000 != 0x2000 {
        Class::Forbidden("a reserved or non-global address")
    } else {
        Class::Public
    }
}

/// The checks that need no DNS. Returns whether the host is loopback.
fn check_url(url: &Url, allow_loopback: bool) -> Result<bool, String> {
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(format!("callback URL must use https (got {scheme}:)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "callback URL must not contain a user name or password; check the X-Signature-256 header \
             instead, or put a token in the path or query"
                .into(),
        );
    }
    let Some(host) = url_host::of(url) else {
        return Err("callback URL has no host; give one like https://example.com/hook".into());
    };
    let loopback = match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err("callback URL has no host; give one like https://example.com/hook".into());
            }
            if METADATA_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "callback URL host {name} is the metadata server; callbacks go only to public hosts"
                ));
            }
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ip(ip) => match classify(ip) {
            Class::Public => false,
            Class::Loopback => true,
            Class::Forbidden(what) => {
                return Err(format!(
                    "callback URL host {ip} is {what}; callbacks go only to public addresses"
                ));
            }
        },
    };
    if loopback && !allow_loopback {
        return Err(format!(
            "callback URL host {} is a loopback address; callbacks go only to public addresses",
            url.host_str().unwrap_or_default()
        ));
    }
    if scheme == "http" && !loopback {
        return Err(format!(
            "callback URL must use https (got http:); plain http is accepted only for a loopback receiver{}",
            if allow_loopback { "" } else { " in local development" }
        ));
    }
    Ok(loopback)
}

/// Checks a callback URL without DNS, for request validation. The error
/// says what is wrong and how to fix it.
pub fn validate_url(url: &str, allow_loopback: bool) -> Result<Url, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "callback URL is {} characters long; the limit is {MAX_URL_LEN}",
            url.len()
        ));
    }
    let parsed = Url::parse(url).map_err(|err| {
        format!("callback URL is not an absolute URL ({err}); give one like https://example.com/hook")
    })?;
    check_url(&parsed, allow_loopback)?;
    Ok(parsed)
}

/// Why no address could be had: a refusal is final, a failed lookup may
/// pass on the next attempt.
enum ResolveError {
    Refused(String),
    Unresolved(String),
}

impl ResolveError {
    fn into_message(self) -> String {
        match self {
            ResolveError::Refused(msg) | ResolveError::Unresolved(msg) => msg,
        }
    }
}

/// Resolves the URL's host and refuses it when any address it resolves to
/// is not public (one private answer among public ones is enough for a
/// rebinding attack). The addresses returned are the ones to connect to.
pub async fn resolve_public(url: &Url, allow_loopback: bool) -> Result<Vec<SocketAddr>, String> {
    resolve(url, allow_loopback).await.map_err(ResolveError::into_message)
}

async fn resolve(url: &Url, allow_loopback: bool) -> Result<Vec<SocketAddr>, ResolveError> {
    check_url(url, allow_loopback).map_err(ResolveError::Refused)?;
    let Some(port) = url.port_or_known_default() else {
        return Err(ResolveError::Refused("callback URL has no port".into()));
    };
    let name = match url_host::of(url) {
        Some(Host::Ip(ip)) => return Ok(vec![SocketAddr::new(ip, port)]),
        Some(Host::Domain(name)) => name,
        None => return Err(ResolveError::Refused("callback URL has no host".into())),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|err| ResolveError::Unresolved(format!("cannot resolve callback host {name}: {err}")))?
        .collect();
    check_resolved(name, &addrs, allow_loopback, url.scheme() == "http").map_err(ResolveError::Refused)?;
    Ok(addrs)
}

/// `plain_http`: the URL was accepted as http because its name is
/// loopback, so every address must be loopback too.
fn check_resolved(name: &str, addrs: &[SocketAddr], allow_loopback: bool, plain_http: bool) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("callback host {name} resolves to no address"));
    }
    for addr in addrs {
        let ip = addr.ip();
        match classify(ip) {
            Class::Public if plain_http => {
                return Err(format!(
                    "callback host {name} resolves to {ip}, which is not loopback; use https"
                ));
            }
            Class::Public => {}
            Class::Loopback if allow_loopback => {}
            Class::Loopback => {
                return Err(format!(
                    "callback host {name} resolves to {ip}, a loopback address; callbacks go only to public addresses"
                ));
            }
            Class::Forbidden(what) => {
                return Err(format!(
                    "callback host {name} resolves to {ip}, {what}; callbacks go only to public addresses"
                ));
            }
        }
    }
    Ok(())
}

fn mac(secret: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC hashes or pads a key of any length; the error cannot occur.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The `X-Signature-256` value for `body`: `sha256=<lowercase hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header_value` is the signature of `body`, compared in constant
/// time so a receiver using this leaks nothing about the expected value.
pub fn verify(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    let Some(tag) = header_value.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(tag) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Why a callback was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not one callbacks may go to; retrying cannot help.
    #[error("callback not sent: {0}")]
    Refused(String),
    /// The receiver answered with a status that says retrying will not help.
    #[error("the callback receiver answered {status} on attempt {attempt}{}", rejected_hint(*.status))]
    Rejected { status: StatusCode, attempt: u32 },
    #[error("gave up on the callback after {attempts} attempt(s); the last one failed: {last}")]
    GaveUp { attempts: u32, last: String },
    /// The request could not even be built (a task id that is not a header
    /// value, a broken TLS setup).
    #[error("cannot send the callback: {0}")]
    Setup(String),
}

fn rejected_hint(status: StatusCode) -> &'static str {
    if status.is_redirection() {
        "; redirects are not followed, so give the final URL"
    } else {
        "; this status is not retried"
    }
}

/// Sends callbacks. Cheap to share: it holds settings only, and each
/// delivery builds a client pinned to the addresses it checked.
#[derive(Debug, Clone)]
pub struct Webhooks {
    secret: Secret,
    allow_loopback: bool,
    timeout: Duration,
    attempts: u32,
    first_backoff: Duration,
}

impl Webhooks {
    /// `timeout` bounds each attempt; `attempts` counts the first one (at
    /// least 1); `first_backoff` is the wait before the second attempt,
    /// doubled for each one after. `allow_loopback` is for local
    /// development and tests only.
    pub fn new(
        secret: Secret,
        allow_loopback: bool,
        timeout: Duration,
        attempts: u32,
        first_backoff: Duration,
    ) -> Self {
        Webhooks {
            secret,
            allow_loopback,
            timeout,
            attempts: attempts.max(1),
            first_backoff,
        }
    }

    /// POSTs `body` to `url`, signed, retrying what may pass on a retry.
    /// Returns the attempt (from 1) that the receiver accepted.
    pub async fn deliver(&self, url: &str, body: &serde_json::Value, task_id: &str) -> Result<u32, WebhookError> {
        let url = validate_url(url, self.allow_loopback).map_err(WebhookError::Refused)?;
        let host = url.host_str().unwrap_or_default().to_string();
        let payload = bytes::Bytes::from(
            serde_json::to_vec(body).map_err(|err| WebhookError::Setup(format!("cannot serialise the body: {err}")))?,
        );
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(&sign(self.secret.expose().as_bytes(), &payload))
                .map_err(|err| WebhookError::Setup(format!("the signature is not a header value: {err}")))?,
        );
        headers.insert(
            TASK_ID_HEADER,
            HeaderValue::from_str(task_id)
                .map_err(|_| WebhookError::Setup("the task id is not a valid header value".into()))?,
        );

        let mut client: Option<reqwest::Client> = None;
        let mut retry_after = None;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                let delay = backoff(
                    self.first_backoff,
                    attempt - 1,
                    retry_after.take(),
                    retry::unit_random(),
                );
                tokio::time::sleep(delay).await;
            }
            let client = match &client {
                Some(client) => client,
                None => match resolve(&url, self.allow_loopback).await {
                    Ok(addrs) => client.insert(self.pinned_client(&url, &addrs)?),
                    Err(ResolveError::Refused(msg)) => return Err(WebhookError::Refused(msg)),
                    Err(ResolveError::Unresolved(msg)) => {
                        tracing::warn!(host = %host, attempt, error = %msg, "callback delivery failed");
                        last = msg;
                        continue;
                    }
                },
            };
            let sent = client
                .post(url.clone())
                .headers(headers.clone())
                .body(payload.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Ok(attempt),
                Ok(response) => {
                    let status = response.status();
                    tracing::warn!(host = %host, status = status.as_u16(), attempt, "callback delivery failed");
                    if !retryable(status) {
                        return Err(WebhookError::Rejected { status, attempt });
                    }
                    retry_after = parse_retry_after(response.headers());
                    last = format!("the receiver answered {status}");
                }
                Err(err) => {
                    let builder = err.is_builder();
                    let reason = describe(err, self.timeout);
                    tracing::warn!(host = %host, attempt, error = %reason, "callback delivery failed");
                    if builder {
                        return Err(WebhookError::Setup(reason));
                    }
                    last = reason;
                }
            }
        }
        Err(WebhookError::GaveUp {
            attempts: self.attempts,
            last,
        })
    }

    /// A client that connects only to `addrs` (for a name; an IP literal
    /// needs no lookup), through no proxy, and follows no redirect.
    fn pinned_client(&self, url: &Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, WebhookError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .user_agent(USER_AGENT);
        if let Some(Host::Domain(name)) = url_host::of(url) {
            builder = builder.resolve_to_addrs(name, addrs);
        }
        builder
            .build()
            .map_err(|err| WebhookError::Setup(format!("cannot build the HTTP client: {err}")))
    }
}

/// 408, 429 and 5xx may pass later; any other status will not.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The receiver's `Retry-After`, in seconds or as an HTTP date, at most
/// [`RETRY_AFTER_CAP`].
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry::retry_after(headers, RETRY_AFTER_CAP)
}

/// The wait after `failures` failed attempts: `first * 2^(failures-1)`, at
/// most [`MAX_BACKOFF`], scaled by `unit` (in [0, 1)) into its upper half so
/// workers retrying together spread out; never shorter than a (capped)
/// `Retry-After`.
fn backoff(first: Duration, failures: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
    let jittered = Backoff::new(first, MAX_BACKOFF, Jitter::Equal).delay_at(failures.saturating_sub(1), unit);
    match retry_after {
        Some(wait) => jittered.max(wait.min(RETRY_AFTER_CAP)),
        None => jittered,
    }
}

/// A transport error without its URL (which may carry a token in its
/// query), with its causes.
fn describe(err: reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    retry::error_chain(&err.without_url())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::HeaderMap as AxumHeaders;
    use axum::response::{IntoResponse, Response};
    use reqwest::header::RETRY_AFTER;
    use serde_json::json;

    use super::*;
    use crate::testing::{TestServer, free_port};

    const SECRET: &str = "s3cret";

    fn webhooks(attempts: u32) -> Webhooks {
        Webhooks::new(
            Secret::new(SECRET),
            true,
            Duration::from_secs(10),
            attempts,
            Duration::from_millis(1),
        )
    }

    /// What a receiver saw: every request's headers and exact body bytes.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(AxumHeaders, bytes::Bytes)>>>);

    impl Seen {
        fn push(&self, headers: AxumHeaders, body: bytes::Bytes) -> usize {
            let mut seen = self.0.lock().expect("lock");
            seen.push((headers, body));
            seen.len()
        }

        fn all(&self) -> Vec<(AxumHeaders, bytes::Bytes)> {
            self.0.lock().expect("lock").clone()
        }
    }

    /// A receiver on loopback answering the n-th POST (from 1) with
    /// `reply(n)`.
    async fn receiver(reply: fn(usize) -> Response) -> (TestServer, Seen) {
        let seen = Seen::default();
        let handler = move |State(seen): State<Seen>, headers: AxumHeaders, body: bytes::Bytes| async move {
            reply(seen.push(headers, body))
        };
        let router = Router::new()
            .route("/hook", axum::routing::post(handler))
            .with_state(seen.clone());
        (TestServer::start(router).await, seen)
    }

    fn status(code: u16) -> Response {
        StatusCode::from_u16(code).expect("valid status").into_response()
    }

    #[tokio::test]
    async fn a_signed_post_arrives_and_verifies() {
        let (server, seen) = receiver(|_| status(204)).await;
        let body = json!({"task_id": "t-1", "status": "succeeded", "output": "héllo"});
        let attempt = webhooks(3)
            .deliver(&format!("{}/hook", server.url), &body, "t-1")
            .await
            .expect("delivered");
        assert_eq!(attempt, 1);

        let seen = seen.all();
        assert_eq!(seen.len(), 1);
        let (headers, bytes) = &seen[0];
        assert_eq!(serde_json::from_slice::<serde_json::Value>(bytes).expect("json"), body);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["user-agent"], USER_AGENT);
        assert_eq!(headers["x-task-id"], "t-1");
        let signature = headers["x-signature-256"].to_str().expect("ascii");
        assert!(signature.starts_with("sha256="), "{signature}");
        assert!(verify(SECRET.as_bytes(), bytes, signature));

        let mut tampered = bytes.to_vec();
        tampered[0] ^= 1;
        assert!(!verify(SECRET.as_bytes(), &tampered, signature));
        assert!(!verify(b"another secret", bytes, signature));
        server.stop().await;
    }

    #[test]
    fn sign_matches_a_known_vector_and_verify_is_strict() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(verify(
            b"Jefe",
            b"what do ya want for nothing?",
            &sig.to_uppercase().replace("SHA256=", "sha256=")
        ));
        for bad in [
            "",
            "sha256=",
            "sha1=5bdc",
            &sig[7..],
            &sig[..sig.len() - 2],
            "sha256=zz",
        ] {
            assert!(!verify(b"Jefe", b"what do ya want for nothing?", bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn retries_503_until_200() {
        let (server, seen) = receiver(|n| if n <= 2 { status(503) } else { status(200) }).await;
        let got = webhooks(5)
            .deliver(&format!("{}/hook", server.url), &json!({"ok": true}), "t")
            .await
            .expect("delivered on the third attempt");
        assert_eq!(got, 3);
        assert_eq!(seen.all().len(), 3);
        server.stop().await;
    }

    #[tokio::test]
    async fn retries_408_and_429_honouring_retry_after() {
        let (server, seen) = receiver(|n| match n {
            1 => status(408),
            2 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response(),
            _ => status(202),
        })
        .await;
        let got = webhooks(3)
            .deliver(&format!("{}/hook", server.url), &json!({}), "t")
            .await
            .expect("delivered");
        assert_eq!((got, seen.all().len()), (3, 3));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let (server, seen) = receiver(|_| status(400)).await;
        let err = webhooks(5)
            .deliver(&format!("{}/hook", server.url), &json!({}), "t")
            .await
            .expect_err("permanent");
        assert!(
            matches!(
                err,
                WebhookError::Rejected {
                    status: StatusCode::BAD_REQUEST,
                    attempt: 1
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("400"), "{err}");
        assert_eq!(seen.all().len(), 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn gives_up_on_a_closed_port() {
        let port = free_port();
        let err = webhooks(3)
            .deliver(&format!("http://127.0.0.1:{port}/hook"), &json!({}), "t")
            .await
            .expect_err("nothing listens");
        match &err {
            WebhookError::GaveUp { attempts, last } => {
                assert_eq!(*attempts, 3);
                // The URL is left out: its query may carry a token.
                assert!(!last.is_empty() && !last.contains("/hook"), "{last}");
            }
            other => panic!("expected GaveUp, got {other}"),
        }
        assert!(err.to_string().contains("3 attempt"), "{err}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (elsewhere, elsewhere_seen) = receiver(|_| status(200)).await;
        let counter = Arc::new(AtomicUsize::new(0));
        let target = format!("{}/hook", elsewhere.url);
        let router = Router::new().route(
            "/hook",
            axum::routing::post({
                let counter = counter.clone();
                move || async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::FOUND, [("location", target)]).into_response()
                }
            }),
        );
        let redirecting = TestServer::start(router).await;
        let err = webhooks(3)
            .deliver(&format!("{}/hook", redirecting.url), &json!({}), "t")
            .await
            .expect_err("a redirect is not a delivery");
        assert!(
            matches!(
                err,
                WebhookError::Rejected {
                    status: StatusCode::FOUND,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("redirects are not followed"), "{err}");
        assert_eq!(counter.load(Ordering::SeqCst), 1);
        assert!(elsewhere_seen.all().is_empty());
        redirecting.stop().await;
        elsewhere.stop().await;
    }

    #[tokio::test]
    async fn a_refused_url_is_not_attempted() {
        let err = webhooks(3)
            .deliver("http://169.254.169.254/computeMetadata/v1/", &json!({}), "t")
            .await
            .expect_err("refused");
        assert!(matches!(err, WebhookError::Refused(_)), "{err}");
        let strict = Webhooks::new(
            Secret::new(SECRET),
            false,
            Duration::from_secs(1),
            3,
            Duration::from_millis(1),
        );
        let err = strict
            .deliver("https://localhost/hook", &json!({}), "t")
            .await
            .expect_err("refused");
        assert!(matches!(err, WebhookError::Refused(_)), "{err}");
    }

    #[test]
    fn validate_url_rules() {
        // (url, allow_loopback, accepted, a word the refusal must contain)
        let cases: &[(&str, bool, bool, &str)] = &[
            ("https://example.com/hook?x=1", false, true, ""),
            ("https://example.com:8443/a/b#frag", false, true, ""),
            ("https://93.184.215.14/hook", false, true, ""),
            ("https://[2606:4700::6810:84e5]/hook", false, true, ""),
            ("http://127.0.0.1:8080/hook", true, true, ""),
            ("http://localhost:9/x", true, true, ""),
            ("http://LOCALHOST./x", true, true, ""),
            ("http://[::1]:8080/hook", true, true, ""),
            ("https://127.0.0.1/hook", true, true, ""),
            // Scheme and shape.
            ("http://example.com/", false, false, "https"),
            ("http://example.com/", true, false, "https"),
            ("ftp://x", false, false, "https"),
            ("file:///etc/passwd", false, false, "https"),
            ("not a url", false, false, "absolute"),
            ("/relative/path", false, false, "absolute"),
            ("https://", false, false, "absolute"),
            ("https://user:pw@example.com/", false, false, "password"),
            ("https://user@example.com/", false, false, "user name"),
            // Loopback.
            ("http://127.0.0.1:8080/hook", false, false, "loopback"),
            ("https://127.0.0.1/", false, false, "loopback"),
            ("https://127.1.2.3/", false, false, "loopback"),
            ("https://localhost/", false, false, "loopback"),
            ("https://api.localhost/", false, false, "loopback"),
            ("https://[::1]/", false, false, "loopback"),
            ("https://[::ffff:127.0.0.1]/", false, false, "loopback"),
            ("https://2130706433/", false, false, "loopback"),
            ("https://0x7f.1/", false, false, "loopback"),
            // The metadata server, by address and by name.
            ("http://169.254.169.254/", true, false, "link-local"),
            ("http://169.254.169.254/", false, false, "link-local"),
            ("https://169.254.169.254/latest", false, false, "link-local"),
            ("https://[::ffff:169.254.169.254]/", false, false, "link-local"),
            ("https://[::ffff:a9fe:a9fe]/", true, false, "link-local"),
            ("https://[64:ff9b::a9fe:a9fe]/", false, false, "non-public"),
            ("https://[2002:a9fe:a9fe::1]/", false, false, "non-public"),
            ("https://[::a9fe:a9fe]/", false, false, "non-global"),
            ("https://metadata.google.internal/", false, false, "metadata"),
            ("https://metadata.google.internal./", false, false, "metadata"),
            (
                "https://METADATA.Google.Internal/computeMetadata/v1/",
                true,
                false,
                "metadata",
            ),
            ("http://metadata/", true, false, "metadata"),
            ("https://metadata.goog/", false, false, "metadata"),
            ("https://[fe80::1]/", false, false, "link-local"),
            // Private, shared and special IPv4.
            ("https://10.0.0.1/", false, false, "private"),
            ("https://172.16.0.1/", false, false, "private"),
            ("https://172.31.255.255/", false, false, "private"),
            ("https://192.168.1.1/", true, false, "private"),
            ("https://[::ffff:10.0.0.1]/", false, false, "private"),
            ("https://100.64.0.1/", false, false, "carrier-grade"),
            ("https://100.127.255.254/", false, false, "carrier-grade"),
            ("https://0.0.0.0/", true, false, "unspecified"),
            ("https://0.1.2.3/", false, false, "unspecified"),
            ("https://255.255.255.255/", false, false, "broadcast"),
            ("https://224.0.0.1/", false, false, "multicast"),
            ("https://240.0.0.1/", false, false, "reserved"),
            ("https://192.0.2.1/", false, false, "documentation"),
            ("https://198.51.100.7/", false, false, "documentation"),
            ("https://203.0.113.9/", false, false, "documentation"),
            ("https://198.18.0.1/", false, false, "benchmarking"),
            // Special IPv6.
            ("https://[::]/", true, false, "unspecified"),
            ("https://[fc00::1]/", false, false, "unique-local"),
            ("https://[fd12:3456::1]/", false, false, "unique-local"),
            ("https://[ff02::1]/", false, false, "multicast"),
            ("https://[2001:db8::1]/", false, false, "documentation"),
            ("https://[3fff::1]/", false, false, "documentation"),
            ("https://[2001::1]/", false, false, "special-purpose"),
        ];
        for (url, allow_loopback, accepted, word) in cases {
            match validate_url(url, *allow_loopback) {
                Ok(parsed) => assert!(accepted, "{url} (loopback {allow_loopback}) was accepted as {parsed}"),
                Err(msg) => {
                    assert!(!accepted, "{url} (loopback {allow_loopback}) was refused: {msg}");
                    assert!(msg.contains(word), "{url}: {msg:?} does not mention {word:?}");
                }
            }
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate_url(&long, false).expect_err("too long").contains("2048"));
    }

    #[tokio::test]
    async fn resolve_public_refuses_loopback_names() {
        let url = Url::parse("https://localhost:8443/hook").expect("url");
        let err = resolve_public(&url, false).await.expect_err("loopback");
        assert!(err.contains("loopback"), "{err}");

        let url = Url::parse("http://localhost:8080/hook").expect("url");
        let addrs = resolve_public(&url, true).await.expect("allowed in development");
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addrs:?}"
        );

        let url = Url::parse("https://10.1.2.3/").expect("url");
        assert!(
            resolve_public(&url, true)
                .await
                .expect_err("private")
                .contains("private")
        );
    }

    #[test]
    fn any_forbidden_answer_refuses_the_name() {
        let public: SocketAddr = "93.184.215.14:443".parse().expect("addr");
        let metadata: SocketAddr = "169.254.169.254:443".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:192.168.0.1]:443".parse().expect("addr");
        let loopback: SocketAddr = "127.0.0.1:443".parse().expect("addr");
        assert!(check_resolved("example.com", &[public], false, false).is_ok());
        for (addrs, allow_loopback, plain_http, word) in [
            (vec![public, metadata], false, false, "link-local"),
            (vec![mapped, public], true, false, "private"),
            (vec![public, loopback], false, false, "loopback"),
            (vec![loopback, public], true, true, "not loopback"),
            (vec![], true, false, "no address"),
        ] {
            let err = check_resolved("rebind.example", &addrs, allow_loopback, plain_http).expect_err("refused");
            assert!(err.contains(word) && err.contains("rebind.example"), "{err}");
        }
        assert!(check_resolved("localhost", &[loopback], true, true).is_ok());
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let first = Duration::from_millis(100);
        assert_eq!(backoff(first, 1, None, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(first, 1, None, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(first, 3, None, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(first, 40, None, 1.0), MAX_BACKOFF);
        assert_eq!(
            backoff(first, 1, Some(Duration::from_secs(5)), 0.5),
            Duration::from_secs(5)
        );
        assert_eq!(backoff(first, 1, Some(Duration::from_secs(3600)), 0.5), RETRY_AFTER_CAP);

        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(parse_retry_after(&headers), Some(RETRY_AFTER_CAP));
        // HTTP dates are honoured too (this one is in the past: retry now).
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"));
        assert_eq!(parse_retry_after(&headers), Some(RETRY_AFTER_CAP));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(parse_retry_after(&headers), None);
    }
}
