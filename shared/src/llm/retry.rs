//! When to try a model call again, and how long to wait first.
//!
//! Model APIs shed load with 429 and 503 far more often than ordinary APIs,
//! and they say how long to wait: Google in a `google.rpc.RetryInfo` entry of
//! the error body, OpenAI and most proxies in `Retry-After`. Waiting what the
//! server asks for gets through where a blind backoff keeps getting refused,
//! and giving up at once when it asks for longer than a request can wait
//! leaves the decision to the client (which gets the hint back).
//!
//! Every error message built here may reach a log line or a response body,
//! so none carries a request URL, and configured secrets are masked in the
//! provider's own messages too.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use super::ModelError;
use crate::config::{LlmSettings, Secret};
use crate::retry::{Backoff, Jitter, error_chain, seconds_to_duration};

/// How a provider retries. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Per attempt: the time to get the whole answer of a plain call, or the
    /// response head (and then each chunk) of a streaming call.
    pub timeout: Duration,
    /// The first backoff; each retry doubles it.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// A server hint longer than this is not waited for: the call fails at
    /// once with `Unavailable { retry_after }`.
    pub max_hint: Duration,
    secrets: Vec<Secret>,
}

impl RetryPolicy {
    pub(crate) fn new(max_retries: u32, timeout: Duration) -> Self {
        RetryPolicy {
            max_retries,
            timeout,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_hint: Duration::from_secs(30),
            secrets: Vec::new(),
        }
    }

    pub(crate) fn from_settings(settings: &LlmSettings) -> Self {
        Self::new(settings.max_retries, settings.timeout)
    }

    /// Masks `secret` in every message this policy produces.
    pub(crate) fn redacting(mut self, secret: &Secret) -> Self {
        if !secret.expose().is_empty() {
            self.secrets.push(secret.clone());
        }
        self
    }

    /// The wait before retry number `retry` (0 for the first retry) when the
    /// server gave no hint: exponential, capped, with "equal jitter" (half
    /// fixed, half random) so that many clients refused together do not come
    /// back together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        Backoff::new(self.base_delay, self.max_delay, Jitter::Equal).delay(retry)
    }

    /// `text` with every configured secret masked.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |acc, secret| acc.replace(secret.expose(), "***"))
    }
}

/// Sends the request `build` makes until it gets a successful response head,
/// retrying as the policy says. For streaming calls: the body is left to the
/// caller (see [`super::sse::events`] for its per-chunk timeout).
pub(crate) async fn send_with_retry(
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, ModelError> {
    execute(policy, build, |response| async move { Ok(response) }).await
}

/// Sends the request until it gets a successful answer and returns the body
/// as JSON. The per-attempt timeout covers reading the body, and a body cut
/// off mid-way is retried like a refused connection.
pub(crate) async fn send_json_with_retry(
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Value, ModelError> {
    let body = execute(policy, build, |response| response.bytes()).await?;
    serde_json::from_slice(&body).map_err(|err| ModelError::Upstream {
        status: None,
        message: format!(
            "the provider answered with a body that is not JSON ({err}): {}",
            policy.redact(&snippet(&String::from_utf8_lossy(&body)))
        ),
    })
}

/// What one attempt came to.
enum Outcome<T> {
    Done(T),
    Status {
        status: u16,
        message: String,
        hint: Option<Duration>,
    },
    Transport(String),
    TimedOut,
    Fatal(ModelError),
}

async fn execute<T, F, Fut>(
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
    finish: F,
) -> Result<T, ModelError>
where
    F: Fn(reqwest::Response) -> Fut,
    Fut: Future<Output = reqwest::Result<T>>,
{
    let mut retry = 0u32;
    loop {
        let outcome = tokio::time::timeout(policy.timeout, attempt(policy, build(), &finish))
            .await
            .unwrap_or(Outcome::TimedOut);
        let (wait, reason) = match outcome {
            Outcome::Done(value) => return Ok(value),
            Outcome::Fatal(err) => return Err(err),
            Outcome::Status { status, message, hint } if is_retryable(status) => {
                if let Some(hint) = hint.filter(|h| *h > policy.max_hint) {
                    return Err(ModelError::Unavailable {
                        message: format!(
                            "HTTP {status}: {message} (the provider asks to retry in {}s)",
                            hint.as_secs_f64().ceil()
                        ),
                        retry_after: Some(hint),
                    });
                }
                if retry >= policy.max_retries {
                    return Err(ModelError::Unavailable {
                        message: format!("HTTP {status}: {message}"),
                        retry_after: hint,
                    });
                }
                (hint.unwrap_or_else(|| policy.backoff(retry)), format!("HTTP {status}"))
            }
            Outcome::Status { status, message, .. } => {
                return Err(ModelError::Upstream {
                    status: Some(status),
                    message,
                });
            }
            Outcome::Transport(message) => {
                if retry >= policy.max_retries {
                    return Err(ModelError::Unavailable {
                        message: format!("could not reach the model provider: {message}"),
                        retry_after: None,
                    });
                }
                (policy.backoff(retry), message)
            }
            Outcome::TimedOut => {
                if retry >= policy.max_retries {
                    return Err(ModelError::Timeout(policy.timeout));
                }
                (policy.backoff(retry), "timed out".to_string())
            }
        };
        retry += 1;
        tracing::warn!(
            retry,
            max_retries = policy.max_retries,
            wait_ms = wait.as_millis() as u64,
            reason = %reason,
            "model call failed, retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

async fn attempt<T, F, Fut>(policy: &RetryPolicy, request: reqwest::RequestBuilder, finish: &F) -> Outcome<T>
where
    F: Fn(reqwest::Response) -> Fut,
    Fut: Future<Output = reqwest::Result<T>>,
{
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => return transport(policy, err),
    };
    let status = response.status();
    if status.is_success() {
        return match finish(response).await {
            Ok(value) => Outcome::Done(value),
            Err(err) => transport(policy, err),
        };
    }
    let header_hint = retry_after_header(response.headers());
    // An error body that cannot be read still leaves the status to go by.
    let body = response.bytes().await.unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let message = json
        .as_ref()
        .and_then(provider_message)
        .unwrap_or_else(|| fallback_message(status, &body));
    let body_hint = json.as_ref().and_then(retry_info_delay);
    Outcome::Status {
        status: status.as_u16(),
        message: policy.redact(&message),
        hint: header_hint.or(body_hint),
    }
}

fn transport<T>(policy: &RetryPolicy, err: reqwest::Error) -> Outcome<T> {
    if err.is_timeout() {
        return Outcome::TimedOut;
    }
    let is_builder = err.is_builder();
    let message = policy.redact(&error_chain(&err.without_url()));
    if is_builder {
        return Outcome::Fatal(ModelError::Upstream {
            status: None,
            message: format!("the request could not be built: {message}"),
        });
    }
    Outcome::Transport(message)
}

/// 429 (quota, rate limit), 500 (transient failure on the provider's side),
/// 503 (overloaded) and 504 (the provider's own deadline) are worth another try.
pub(crate) fn is_retryable(status: u16) -> bool {
    // 502 too: proxies in front of model servers answer it while a backend
    // restarts, and a retry usually reaches a healthy one.
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// A request body as bytes, encoded once and sent again on each retry.
pub(crate) fn json_body(body: &serde_json::Value) -> Result<bytes::Bytes, ModelError> {
    serde_json::to_vec(body)
        .map(bytes::Bytes::from)
        .map_err(|err| ModelError::Upstream {
            status: None,
            message: format!("the request could not be encoded: {err}"),
        })
}

/// The error for a status and message that will not be retried (any more):
/// the retryable ones mean "try later", the rest "the provider refused".
pub(crate) fn status_error(status: u16, message: String, retry_after: Option<Duration>) -> ModelError {
    if is_retryable(status) {
        ModelError::Unavailable {
            message: format!("HTTP {status}: {message}"),
            retry_after,
        }
    } else {
        ModelError::Upstream {
            status: Some(status),
            message,
        }
    }
}

/// The provider's own explanation in an error body: `error.message` for
/// Google and OpenAI (Google's streaming API wraps it in an array), a bare
/// `error` string for Ollama, `message` for some proxies.
pub(crate) fn provider_message(body: &Value) -> Option<String> {
    let body = match body {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let error = body.get("error");
    error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str))
        .or_else(|| body.get("message").and_then(Value::as_str))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
}

/// When the body is not the provider's JSON (a proxy's HTML page, an empty
/// body): a short piece of it, or the status line.
fn fallback_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""))
            .trim_end()
            .to_string()
    } else {
        snippet(text)
    }
}

/// At most 300 characters of `text`, on a character boundary.
fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// Google's hint: the `retryDelay` of the `google.rpc.RetryInfo` entry in
/// `error.details`.
pub(crate) fn retry_info_delay(body: &Value) -> Option<Duration> {
    let body = match body {
        Value::Array(items) => items.first()?,
        other => other,
    };
    body.get("error")?
        .get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")
                .and_then(Value::as_str)
                .and_then(parse_google_duration)
        })
}

/// A protobuf JSON duration: `"2s"`, `"1.500s"`.
pub(crate) fn parse_google_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    seconds_to_duration(seconds)
}

/// `Retry-After` (seconds or an HTTP date), or OpenAI's `retry-after-ms`.
/// Not capped here: a hint longer than the policy's `max_hint` is not waited
/// for but handed back to the client as it came.
fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return seconds_to_duration(ms / 1000.0);
    }
    crate::retry::retry_after(headers, Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy::new(5, Duration::from_secs(1));
        for retry in 0..40 {
            let d = p.backoff(retry);
            let full = p
                .base_delay
                .saturating_mul(2u32.saturating_pow(retry.min(30)))
                .min(p.max_delay);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        assert!(p.backoff(0) <= Duration::from_millis(500));
        assert!(p.backoff(10) >= Duration::from_secs(10));
        let samples: std::collections::HashSet<Duration> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(samples.len() > 1, "jitter varies");
    }

    #[test]
    fn google_retry_info_is_read() {
        let body = json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"}
        ]}});
        assert_eq!(retry_info_delay(&body), Some(Duration::from_millis(1500)));
        assert_eq!(provider_message(&body).as_deref(), Some("Quota exceeded"));
        assert_eq!(retry_info_delay(&json!([body])), Some(Duration::from_millis(1500)));
        assert_eq!(parse_google_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_google_duration("2"), None);
        assert_eq!(parse_google_duration("-1s"), None);
        assert_eq!(retry_info_delay(&json!({"error": {"message": "x"}})), None);
    }

    #[test]
    fn provider_messages_in_several_shapes() {
        let openai = json!({"error": {"message": "Invalid model", "type": "invalid_request_error", "code": null}});
        assert_eq!(provider_message(&openai).as_deref(), Some("Invalid model"));
        assert_eq!(
            provider_message(&json!({"error": "model not found"})).as_deref(),
            Some("model not found")
        );
        assert_eq!(provider_message(&json!({"message": "bad"})).as_deref(), Some("bad"));
        assert_eq!(provider_message(&json!({"error": {"message": " "}})), None);
        assert_eq!(
            fallback_message(reqwest::StatusCode::BAD_GATEWAY, b""),
            "HTTP 502 Bad Gateway"
        );
        assert_eq!(
            fallback_message(reqwest::StatusCode::BAD_GATEWAY, b" <html> "),
            "<html>"
        );
    }

    /// The provider's hint is read with the shared parser, uncapped: the
    /// policy's `max_hint` decides.
    fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
        crate::retry::parse_retry_after(value, now, Duration::MAX)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("86400", now), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn retry_after_ms_comes_before_retry_after() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_header(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(120)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_millis(250)));
        headers.insert("retry-after-ms", HeaderValue::from_static("-1"));
        assert_eq!(retry_after_header(&headers), None);
    }

    #[test]
    fn secrets_are_masked() {
        let p = RetryPolicy::new(0, Duration::from_secs(1)).redacting(&Secret::new("sk-123"));
        assert_eq!(p.redact("bad key sk-123!"), "bad key ***!");
        assert!(!format!("{p:?}").contains("sk-123"));
    }

    #[test]
    fn status_errors_map_to_model_errors() {
        assert!(matches!(
            status_error(503, "x".into(), None),
            ModelError::Unavailable { .. }
        ));
        assert_eq!(
            status_error(400, "bad".into(), None),
            ModelError::Upstream {
                status: Some(400),
                message: "bad".into()
            }
        );
    }
}
