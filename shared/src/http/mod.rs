//! The HTTP layer every function shares, as tower layers around its routes.
//!
//! [`wrap`] turns a function's API routes into a complete service: `/health`,
//! `/metrics`, authentication (every request's principal), CORS, body
//! limits, request ids, metrics, panics and every error in the envelope.
//! The function adds its own rate limit with `rate_limit::RateLimiter`,
//! since the limit differs per function.
//!
//! - [`error`]: the error envelope and the rewriting of errors raised below
//!   the handlers.
//! - [`json`]: JSON bodies with errors a client can act on.
//! - [`paging`]: the `limit` and `cursor` of listings, and their opaque
//!   cursors.
//! - [`sse`]: server-sent events, as chat streams and task progress use them.
//! - [`usage`]: `GET /api/v1/usage`, what the caller spent per day and
//!   model, which both the chat and the agent function serve; and
//!   [`stats`], `GET /api/v1/stats`, the same records summed for
//!   dashboards (requests, calls, cache hit rate), served with it.
//! - [`detached`]: work a request starts that must end even when its
//!   client goes away (a model call that is paid for).
//! - [`models`]: `GET /api/v1/models`, the tiers and how one is chosen.
//! - [`cache`]: `GET /api/v1/cache/stats`, the response cache for the caller.
//! - `auth` (the principal of every request, see [`crate::auth`]),
//!   `rate_limit`, `cors`, `request_context`, [`metrics`]: one concern each.
//! - `middleware`: how those layers wrap the routes, at no allocation
//!   beyond one boxed future each.
//! - `console`: the browser console at `/`, served by `local` (and by a
//!   function with `CONSOLE=on`).

pub(crate) mod auth;
pub mod cache;
pub(crate) mod console;
pub(crate) mod cors;
pub mod detached;
pub mod error;
pub mod health;
pub mod json;
pub mod metrics;
pub(crate) mod middleware;
pub mod models;
pub mod openapi;
pub mod paging;
pub(crate) mod rate_limit;
pub(crate) mod request_context;
pub mod sse;
pub mod stats;
pub mod usage;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tower_service::Service;

use middleware::{Middleware, MiddlewareLayer, ResponseFuture, respond};

use crate::auth::Authenticator;
use crate::config::HttpSettings;
pub use error::ApiError;
use health::Health;
pub use health::Readiness;
pub use json::ApiJson;
pub use metrics::Metrics;
pub use openapi::{Api, Credentials, Event, Operation, Routes};
pub use rate_limit::RateBudget;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The whole request body must arrive within the body timeout: a client
/// that stops sending, or trickles a byte at a time (slowloris), gets a 408
/// instead of holding a connection and a handler. A deadline per chunk
/// would not stop the trickle.
#[derive(Clone)]
struct BodyTimeout(std::time::Duration);

impl Middleware for BodyTimeout {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        use axum::body::HttpBody;
        use futures_util::StreamExt;

        let (parts, body) = request.into_parts();
        if body.is_end_stream() {
            return Box::pin(respond(inner.call(Request::from_parts(parts, body))));
        }
        let deadline = tokio::time::Instant::now() + self.0;
        let chunks = futures_util::stream::unfold(Some(body.into_data_stream()), move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(chunks))),
                Ok(None) => None,
                Err(_) => Some((Err(axum::BoxError::from(BodyDeadline)), None)),
            }
        });
        Box::pin(respond(
            inner.call(Request::from_parts(parts, axum::body::Body::from_stream(chunks))),
        ))
    }
}

/// The error a body past its deadline ends with; [`json`] answers it 408.
#[derive(Debug)]
pub(crate) struct BodyDeadline;

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive within BODY_TIMEOUT_SECONDS")
    }
}

impl std::error::Error for BodyDeadline {}

/// The document, built on its first request rather than at start-up: a
/// cold start should not pay for schemas that most instances never serve.
struct Document {
    function: &'static str,
    operations: Vec<Operation>,
    credentials: Credentials,
    built: std::sync::OnceLock<String>,
}

async fn openapi(State(document): State<Arc<Document>>) -> impl IntoResponse {
    let body = document.built.get_or_init(|| {
        openapi::document(document.function, VERSION, &document.operations, document.credentials).to_string()
    });
    ([(header::CONTENT_TYPE, "application/json")], body.clone())
}

/// What the shared layer serves beside a function's API.
fn service_operations() -> [Operation; 3] {
    [
        Operation::get("health", "readiness: the function's name and version")
            .tag("service")
            .json::<Health>(200, "the function is serving")
            .json::<Health>(503, "starting: its store is not yet shown to answer")
            .open()
            .with_path("/health"),
        Operation::get("openapi", "this document")
            .tag("service")
            .json::<serde_json::Value>(200, "the OpenAPI 3.1 document")
            .open()
            .with_path("/openapi.json"),
        Operation::get("metrics", "Prometheus metrics")
            .tag("service")
            .text(200, "the Prometheus text format")
            .with_path("/metrics"),
    ]
}

/// What a function wrapped by [`wrap`] serves, as its OpenAPI document
/// lists it: method (upper case), path and summary of each operation of
/// `api`, then of the shared layer.
pub fn served(api: &Api) -> Vec<(&'static str, String, String)> {
    let service = service_operations();
    api.operations
        .iter()
        .chain(&service)
        .map(|op| {
            let (method, path, summary) = op.summary_line();
            (method, path.to_string(), summary.to_string())
        })
        .collect()
}

/// Whether `function` serves the browser console: `CONSOLE` when set, else
/// only the local runner, the one a developer opens in a browser.
pub fn serves_console(settings: &HttpSettings, function: &str) -> bool {
    settings.console.unwrap_or(function == LOCAL_RUNNER)
}

/// The function name of the local runner (the `local` crate), which serves
/// the console unless `CONSOLE=off`.
pub const LOCAL_RUNNER: &str = "local";

/// Wraps a function's API routes with everything every function serves and
/// does. `function` names it in `/health`, `/openapi.json` and metrics;
/// `authenticator` decides every request's principal (built once per
/// process, so its key-set cache is shared); `/health` answers 503 until
/// `readiness` is ready.
pub fn wrap(
    api: Api,
    function: &'static str,
    settings: &HttpSettings,
    authenticator: Arc<Authenticator>,
    metrics: Metrics,
    readiness: Readiness,
) -> Router {
    let Api {
        router, mut operations, ..
    } = api;
    operations.extend(service_operations());
    let document = Arc::new(Document {
        function,
        operations,
        credentials: Credentials {
            api_key: authenticator.api_keys(),
            bearer: authenticator.tokens(),
        },
        built: std::sync::OnceLock::new(),
    });
    // `/metrics` sits behind the credentials like the API: its labels name
    // routes and models. `/health` and the document stay open for load
    // balancers, probes and client generators, and carry no principal.
    let protected = router
        .route("/metrics", get(metrics::render).with_state(metrics.clone()))
        .layer(MiddlewareLayer(auth::Authenticate(authenticator)));
    let open = Router::new()
        .route("/health", get(health::health).with_state((function, readiness)))
        .route("/openapi.json", get(openapi).with_state(document));
    // The console's files are open too: they hold no data (see `console`).
    let open = if serves_console(settings, function) {
        open.merge(console::routes())
    } else {
        open
    };
    open.merge(protected)
        // One layer, outermost first, so each route is wrapped once (see
        // `middleware`).
        .layer((
            // Outermost, so the envelope rewriting can name the limit in a 413.
            Extension(error::BodyLimit(settings.max_body_bytes)),
            MiddlewareLayer(request_context::TraceRequests),
            MiddlewareLayer(metrics::Track(Arc::new(metrics::RequestSeries::new(metrics)))),
            MiddlewareLayer(error::EnvelopeErrors),
            MiddlewareLayer(error::CatchPanic),
            MiddlewareLayer(cors::Cors(Arc::new(settings.cors_allowed_origins.clone()))),
            MiddlewareLayer(BodyTimeout(settings.body_timeout)),
            DefaultBodyLimit::max(settings.max_body_bytes),
        ))
}
