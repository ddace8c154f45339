//! A2A on the agent function: the agent card and the JSON-RPC endpoint,
//! in both revisions of the protocol (`agent_core::a2a` has their wire).
//!
//! A2A tasks are this project's stored tasks: a message becomes an agent
//! task of its sender (its id derived from the sender and the message id,
//! so a message sent twice makes one task), the `contextId` is the task's
//! session, and every read goes through the same ownership check as
//! `GET /api/v1/tasks/{id}`: another principal's task does not exist.
//!
//! - `card`: `GET /.well-known/agent-card.json`.
//! - `methods`: send, stream, get, list, cancel, subscribe.
//! - `follow`: a task's life as A2A stream events.

mod card;
mod follow;
mod methods;

use agent_core::App;
use agent_core::a2a::rpc::{self, Fault};
use agent_core::a2a::{VERSION_HEADER, Version};
use agent_core::auth::Principal;
use agent_core::http::{Api, Event, Operation, Routes};
use agent_core::jsonrpc::RpcAnswer;
use agent_core::task::routes::TaskRoutes;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::AgentState;

pub const PATH: &str = "/a2a";
pub const CARD_PATH: &str = "/.well-known/agent-card.json";

/// What the A2A routes need: the agent's state, the task routes' (for a
/// cancel and its callback), and how to name the service.
#[derive(Clone)]
pub(crate) struct A2a {
    pub(crate) agent: AgentState,
    pub(crate) tasks: TaskRoutes,
    pub(crate) public_url: Option<String>,
    pub(crate) trust_proxy: bool,
    pub(crate) max_body_bytes: usize,
    pub(crate) api_keys: bool,
    pub(crate) tokens: bool,
}

/// The card (behind the tasks rate limit, as a read) and the endpoint
/// (behind the agent's, as a send runs the model).
pub(crate) fn routes(app: &App, agent: AgentState) -> Api {
    let settings = &app.settings;
    let state = A2a {
        agent,
        tasks: TaskRoutes::new(app),
        public_url: settings.http.public_url.clone(),
        trust_proxy: settings.http.trust_proxy,
        max_body_bytes: settings.http.max_body_bytes,
        api_keys: app.authenticator.api_keys(),
        tokens: app.authenticator.tokens(),
    };
    let endpoint = Routes::new()
        .route(PATH, post(endpoint), [operation()])
        .with_state(state.clone());
    let card = Routes::new()
        .route(CARD_PATH, get(card::card), [card::operation()])
        .with_state(state);
    app.rate_limited(
        endpoint,
        "agent",
        settings.rate_limit_agent,
        settings.rate_limit_agent_per_client,
    )
    .merge(app.rate_limited(
        card,
        "tasks",
        settings.rate_limit_tasks,
        settings.rate_limit_tasks_per_client,
    ))
}

/// `POST /a2a`: one JSON-RPC request in the revision its `A2A-Version`
/// header names. Every refusal is the protocol's error object: with a 400
/// when the body is no JSON-RPC request (a 413 when too large), else with
/// a 200, as JSON-RPC over HTTP answers; a stream is `text/event-stream`.
async fn endpoint(State(a2a): State<A2a>, principal: Principal, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let version = match Version::from_header(parts.headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok())) {
        Ok(version) => version,
        Err(asked) => {
            let fault = Fault::new(
                rpc::VERSION_NOT_SUPPORTED,
                format!("A2A-Version {asked:?} is not spoken here: send 1.0, or 0.3 (or no header)"),
            );
            return answer(rpc::error(&Value::Null, &fault));
        }
    };
    let bytes = match axum::body::to_bytes(Body::new(body), a2a.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let fault = Fault::new(
                rpc::INVALID_REQUEST,
                format!(
                    "the request is larger than this function accepts ({} bytes, MAX_BODY_BYTES)",
                    a2a.max_body_bytes
                ),
            );
            return with_status(StatusCode::PAYLOAD_TOO_LARGE, rpc::error(&Value::Null, &fault));
        }
    };
    let request = match rpc::parse(&bytes) {
        Ok(request) => request,
        // Not a JSON-RPC request at all: a client error at HTTP's level too.
        Err((id, fault)) => return with_status(StatusCode::BAD_REQUEST, rpc::error(&id, &fault)),
    };
    methods::dispatch(&a2a, &principal, version, request).await
}

/// A JSON-RPC answer with a 200.
pub(crate) fn answer(body: Value) -> Response {
    axum::Json(body).into_response()
}

fn with_status(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The service's URL: `PUBLIC_URL`, else the request's host, with the
/// scheme its proxy says it was called on (Cloud Run: https).
pub(crate) fn base_url(a2a: &A2a, headers: &HeaderMap) -> String {
    if let Some(url) = &a2a.public_url {
        return url.clone();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.parse::<axum::http::uri::Authority>().is_ok())
        .unwrap_or("localhost");
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|_| a2a.trust_proxy)
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|p| matches!(*p, "http" | "https"));
    format!("{}://{host}", forwarded.unwrap_or("http"))
}

/// The body of `POST /a2a` as the document shows it: a JSON-RPC 2.0
/// request whose method and params are A2A's, in the revision the
/// `A2A-Version` header names (none: 0.3).
#[derive(Serialize, JsonSchema)]
struct A2aRequest {
    jsonrpc: String,
    id: Option<Value>,
    /// 1.0: `SendMessage`, `SendStreamingMessage`, `GetTask`, `ListTasks`,
    /// `CancelTask`, `SubscribeToTask`; 0.3: `message/send`,
    /// `message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe`.
    method: String,
    params: Option<Value>,
}

fn operation() -> Operation {
    Operation::post(
        "a2a",
        "the agent over A2A (JSON-RPC, protocol 1.0 with A2A-Version: 1.0, else 0.3): send a message \
         (a task of the caller's), stream it, get, list, cancel and subscribe to tasks",
    )
    .tag("a2a")
    .body::<A2aRequest>()
    .json::<RpcAnswer>(
        200,
        "the JSON-RPC answer: result (a task, or a page of them), or the protocol's error object (-32001 no such \
         task, -32002 not cancelable, -32009 version not supported, JSON-RPC's own codes)",
    )
    .event_stream(
        200,
        "with SendStreamingMessage, message/stream, SubscribeToTask or tasks/resubscribe: each event's data is \
         a JSON-RPC answer whose result is the task, then its status and artifact updates",
        &[Event::json::<RpcAnswer>("message")],
        false,
    )
    .json::<RpcAnswer>(400, "a body that is not a JSON-RPC request (-32700, -32600)")
    .json::<RpcAnswer>(413, "a body larger than MAX_BODY_BYTES, as a JSON-RPC error")
}
