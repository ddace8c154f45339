//! Signed callbacks to a client's URL when an async task finishes, with no
//! way to aim them at our own network.
//!
//! The callback URL comes from whoever submitted the task, so it goes
//! through the outbound-URL guard ([`crate::outbound_url`]) twice: when the
//! task is accepted, and just before sending, when the connection is pinned
//! to the addresses checked (no DNS rebinding) and redirects are not
//! followed.
//!
//! The body is signed with HMAC-SHA256 in `X-Signature-256: sha256=<hex>`,
//! GitHub's scheme, so receivers can reuse code they already have, and
//! [`verify`] is the reference for them and for our tests.
//!
//! This module sends; a task's callback is leased, recorded and retried
//! across processes by [`crate::callback`], one POST per attempt.

use std::net::SocketAddr;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use sha2::Sha256;

use crate::config::Secret;
use crate::outbound_url::{self, OutboundUrlError};
use crate::retry::{self, Backoff, Jitter};

/// The signature header, as GitHub names it.
pub const SIGNATURE_HEADER: &str = "x-signature-256";

/// The task the callback is about, so a receiver can route it before
/// parsing the body.
pub const TASK_ID_HEADER: &str = "x-task-id";

/// Which attempt at this task's callback this POST is, from 1. Every
/// attempt of one task's callback carries the same `X-Task-Id`, body and
/// signature, so a receiver dedupes on `X-Task-Id`.
pub const ATTEMPT_HEADER: &str = "x-callback-attempt";

pub const USER_AGENT: &str = "serverless-agent-webhook";

/// Backoff between attempts grows to at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A receiver's `Retry-After` is honoured up to this, so one slow receiver
/// cannot hold a worker for long.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

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
    Refused(OutboundUrlError),
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
    /// Returns the attempt (from 1) that the receiver accepted. Nothing is
    /// recorded: a task's callback goes through [`crate::callback`], which
    /// leases and records each attempt in the store.
    pub async fn deliver(&self, url: &str, body: &serde_json::Value, task_id: &str) -> Result<u32, WebhookError> {
        let payload = payload(body)?;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.attempt(url, &payload, task_id, attempt).await {
                Ok(()) => return Ok(attempt),
                Err(AttemptError::Permanent(err)) => return Err(err),
                Err(AttemptError::Transient { reason, retry_after }) => {
                    last = reason;
                    if attempt < self.attempts {
                        tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                    }
                }
            }
        }
        Err(WebhookError::GaveUp {
            attempts: self.attempts,
            last,
        })
    }

    /// How many attempts a callback gets, the first included
    /// (`WEBHOOK_ATTEMPTS`).
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long one attempt may take at most: resolving the host and the
    /// POST, each bounded by the timeout.
    pub(crate) fn attempt_bound(&self) -> Duration {
        self.timeout * 2
    }

    /// The wait after `failures` failed attempts, with jitter, never
    /// shorter than the receiver's (capped) `Retry-After`.
    pub(crate) fn backoff(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        backoff(self.first_backoff, failures, retry_after, retry::unit_random())
    }

    /// One signed POST of `payload` to `url`: attempt `attempt` (from 1),
    /// sent as `X-Callback-Attempt`. The URL is checked again, resolved to
    /// public addresses only and the connection pinned to them.
    pub(crate) async fn attempt(
        &self,
        url: &str,
        payload: &bytes::Bytes,
        task_id: &str,
        attempt: u32,
    ) -> Result<(), AttemptError> {
        let url = outbound_url::validate_url(url, self.allow_loopback)
            .map_err(|err| AttemptError::Permanent(WebhookError::Refused(err)))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let headers = self
            .headers(payload, task_id, attempt)
            .map_err(AttemptError::Permanent)?;
        // Bounded, so that an attempt ends within its lease
        // ([`attempt_bound`](Self::attempt_bound)).
        let resolved =
            tokio::time::timeout(self.timeout, outbound_url::resolve_public(&url, self.allow_loopback)).await;
        let Ok(resolved) = resolved else {
            let reason = format!("the host was not resolved within {:?}", self.timeout);
            tracing::warn!(host = %host, attempt, error = %reason, "callback delivery failed");
            return Err(AttemptError::Transient {
                reason,
                retry_after: None,
            });
        };
        let addrs = match resolved {
            Ok(addrs) => addrs,
            Err(err) if err.is_transient() => {
                let reason = err.to_string();
                tracing::warn!(host = %host, attempt, error = %reason, "callback delivery failed");
                return Err(AttemptError::Transient {
                    reason,
                    retry_after: None,
                });
            }
            Err(err) => return Err(AttemptError::Permanent(WebhookError::Refused(err))),
        };
        let client = self.pinned_client(&url, &addrs).map_err(AttemptError::Permanent)?;
        let sent = client
            .post(url.clone())
            .headers(headers)
            .body(payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                tracing::warn!(host = %host, status = status.as_u16(), attempt, "callback delivery failed");
                if !retryable(status) {
                    return Err(AttemptError::Permanent(WebhookError::Rejected { status, attempt }));
                }
                Err(AttemptError::Transient {
                    reason: format!("the receiver answered {status}"),
                    retry_after: parse_retry_after(response.headers()),
                })
            }
            Err(err) => {
                let builder = err.is_builder();
                let reason = describe(err, self.timeout);
                tracing::warn!(host = %host, attempt, error = %reason, "callback delivery failed");
                if builder {
                    return Err(AttemptError::Permanent(WebhookError::Setup(reason)));
                }
                Err(AttemptError::Transient {
                    reason,
                    retry_after: None,
                })
            }
        }
    }

    fn headers(&self, payload: &[u8], task_id: &str, attempt: u32) -> Result<HeaderMap, WebhookError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(&sign(self.secret.expose().as_bytes(), payload))
                .map_err(|err| WebhookError::Setup(format!("the signature is not a header value: {err}")))?,
        );
        headers.insert(
            TASK_ID_HEADER,
            HeaderValue::from_str(task_id)
                .map_err(|_| WebhookError::Setup("the task id is not a valid header value".into()))?,
        );
        headers.insert(ATTEMPT_HEADER, HeaderValue::from(attempt));
        Ok(headers)
    }

    /// A client that connects only to `addrs` (for a name; an IP literal
    /// needs no lookup), through no proxy, and follows no redirect.
    fn pinned_client(&self, url: &Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, WebhookError> {
        outbound_url::pinned_client(url, addrs)
            .timeout(self.timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| WebhookError::Setup(format!("cannot build the HTTP client: {err}")))
    }
}

/// The bytes a callback sends for `body`, signed as they are.
pub(crate) fn payload(body: &serde_json::Value) -> Result<bytes::Bytes, WebhookError> {
    serde_json::to_vec(body)
        .map(bytes::Bytes::from)
        .map_err(|err| WebhookError::Setup(format!("cannot serialise the body: {err}")))
}

/// Why one attempt failed.
pub(crate) enum AttemptError {
    /// Retrying cannot help.
    Permanent(WebhookError),
    /// A later attempt may pass, not before `retry_after` if the receiver
    /// said so.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
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
