//! The error envelope: every error any function answers, whoever raised it.
//!
//! `{"error":{"code":"invalid_argument","message":"what was wrong, and how to fix it"}}`
//!
//! Handlers return [`ApiError`]; errors raised below them (axum's 404 and 405,
//! body limits, panics) are rewritten into the same envelope by
//! `envelope_errors`, so a client never parses an HTML page or a bare string.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde::Serialize;
use tower_service::Service;

use super::middleware::{Middleware, ResponseFuture, respond};

use crate::llm::ModelError;
use crate::store::StoreError;

/// An error answer. Its message is written for the client: what was wrong
/// and how to fix it, never a stack trace or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).retry_after(retry_after)
    }

    pub fn upstream_error(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(retry_after)
    }

    pub fn upstream_timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
    }

    /// The client stopped sending its body (`BODY_TIMEOUT_SECONDS`).
    pub fn request_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time (BODY_TIMEOUT_SECONDS); send it again, without pausing",
        )
    }

    /// A fault of ours. The message stays generic; the detail goes to the log.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the function failed unexpectedly; the error is logged with this request's X-Request-Id. Retry, and report it if it persists",
        )
    }

    pub fn retry_after(mut self, after: Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    /// The envelope as JSON text, for places that write it themselves (SSE).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
            },
        })
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"error"}}"#.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, "{}", self.message);
        }
        let body = Json(Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
            },
        });
        let mut response = (self.status, body).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> ApiError {
        match err {
            ModelError::Unavailable { message, retry_after } => ApiError::unavailable(
                format!("the model provider is temporarily unavailable ({message}); retry later"),
                retry_after.unwrap_or(Duration::from_secs(5)),
            ),
            ModelError::Upstream { status, message } => ApiError::upstream_error(match status {
                Some(s) => format!("the model provider rejected the request with status {s}: {message}"),
                None => format!("the model provider answered with an error: {message}"),
            }),
            ModelError::Timeout(after) => ApiError::upstream_timeout(format!(
                "the model did not answer within {} s; retry, or raise LLM_TIMEOUT_SECONDS",
                after.as_secs_f64()
            )),
            ModelError::Blocked(reason) => {
                ApiError::invalid_argument(format!("the model declined to answer: {reason}; rephrase the message"))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                ApiError::unavailable(
                    "the store is temporarily unavailable; nothing was saved, retry shortly",
                    Duration::from_secs(2),
                )
            }
            StoreError::Internal(detail) => {
                tracing::error!(%detail, "store failure");
                ApiError::internal()
            }
        }
    }
}

/// The body limit in force, put in request extensions by the HTTP stack so
/// the 413 message can name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// Rewrites error responses produced below the handlers (no route, wrong
/// method, body too large, timeouts) into the envelope. Responses that are
/// already JSON are ours and pass untouched.
#[derive(Clone)]
pub(crate) struct EnvelopeErrors;

impl Middleware for EnvelopeErrors {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let limit = request.extensions().get::<BodyLimit>().copied();
        let response = inner.call(request);
        Box::pin(async move {
            let response = respond(response).await;
            let status = response.status();
            if !(status.is_client_error() || status.is_server_error()) {
                return response;
            }
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if is_json {
                return response;
            }
            let error = match status {
                StatusCode::NOT_FOUND => ApiError::not_found(format!(
                    "there is no route {method} {path}; GET /health lists this function's name, and the README lists its routes"
                )),
                // axum adds the `Allow` header outside the route's layers, after
                // this rewrite, so the message points at it rather than repeating it.
                StatusCode::METHOD_NOT_ALLOWED => ApiError::method_not_allowed(format!(
                    "{method} is not allowed on {path}; the Allow header lists the methods it takes"
                )),
                StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(limit),
                StatusCode::REQUEST_TIMEOUT => ApiError::request_timeout(),
                StatusCode::INTERNAL_SERVER_ERROR => ApiError::internal(),
                other => ApiError::new(
                    other,
                    "error",
                    other.canonical_reason().unwrap_or("the request failed").to_lowercase(),
                ),
            };
            error.into_response()
        })
    }
}

pub(crate) fn payload_too_large(limit: Option<BodyLimit>) -> ApiError {
    match limit {
        Some(BodyLimit(n)) => ApiError::payload_too_large(format!(
            "the request body is larger than this function accepts ({n} bytes, MAX_BODY_BYTES); send a smaller body"
        )),
        None => {
            ApiError::payload_too_large("the request body is larger than this function accepts; send a smaller body")
        }
    }
}

/// A panic in a handler (or a layer below) is our bug: answered as a
/// generic 500, and logged.
#[derive(Clone)]
pub(crate) struct CatchPanic;

impl Middleware for CatchPanic {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
            Ok(response) => Box::pin(async move {
                AssertUnwindSafe(respond(response))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(panic_response)
            }),
            Err(panic) => Box::pin(std::future::ready(panic_response(panic))),
        }
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_map_to_the_contract() {
        let e: ApiError = ModelError::Upstream {
            status: Some(400),
            message: "API key not valid".into(),
        }
        .into();
        assert_eq!((e.status.as_u16(), e.code), (502, "upstream_error"));
        assert!(e.message.contains("API key not valid"));
        let e: ApiError = ModelError::Timeout(Duration::from_secs(3)).into();
        assert_eq!((e.status.as_u16(), e.code), (504, "upstream_timeout"));
        let e: ApiError = ModelError::Unavailable {
            message: "busy".into(),
            retry_after: None,
        }
        .into();
        assert_eq!(
            (e.status.as_u16(), e.code, e.retry_after),
            (503, "unavailable", Some(Duration::from_secs(5)))
        );
    }

    #[test]
    fn envelope_json_shape() {
        let e = ApiError::invalid_argument("no \"message\"");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).expect("json");
        assert_eq!(v["error"]["code"], "invalid_argument");
        assert_eq!(v["error"]["message"], "no \"message\"");
    }

    /// Panics as it is called, before it has a future.
    #[derive(Clone)]
    struct PanicsWhenCalled;

    impl Middleware for PanicsWhenCalled {
        fn call<S>(&self, _: Request, _: &mut S) -> ResponseFuture
        where
            S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
            S::Future: Send + 'static,
        {
            panic!("in call")
        }
    }

    async fn status_and_code(mut router: axum::Router, path: &str) -> (u16, serde_json::Value) {
        let request = Request::get(path).body(axum::body::Body::empty()).expect("request");
        let response = match Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let envelope: serde_json::Value = serde_json::from_slice(&body).expect("json");
        (status, envelope["error"]["code"].clone())
    }

    #[tokio::test]
    async fn a_panic_below_is_a_500_envelope() {
        use super::super::middleware::MiddlewareLayer;
        use axum::routing::get;

        async fn panics() -> &'static str {
            panic!("in the handler")
        }
        let in_handler = axum::Router::new()
            .route("/", get(panics))
            .layer(MiddlewareLayer(CatchPanic));
        assert_eq!(status_and_code(in_handler, "/").await, (500, "internal".into()));

        let in_call = axum::Router::new()
            .route("/", get(|| async { "unreachable" }))
            .layer((MiddlewareLayer(CatchPanic), MiddlewareLayer(PanicsWhenCalled)));
        assert_eq!(status_and_code(in_call, "/").await, (500, "internal".into()));
    }
}
