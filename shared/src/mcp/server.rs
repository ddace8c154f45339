//! `POST /mcp`: a function's tools over MCP's Streamable HTTP transport.
//!
//! Stateless by design: no session id, nothing kept between requests, so a
//! request can land on any instance (Cloud Run scales out, Lambda keeps no
//! affinity). The SDK answers both the stateless protocol revision
//! (`2026-07-28`, each request carrying its version) and older clients that
//! still open with `initialize` (answered, then forgotten). Answers are
//! plain JSON, never a stream: a tool call here has nothing to say before
//! its result.
//!
//! The tools are the very [`Tool`](crate::tools::Tool)s the model is
//! offered, so `tools/list` shows what the model sees and `tools/call` runs
//! what the model runs. A tool's own failure (bad arguments, a search that
//! could not run) is a result with `isError: true`, which an agent can
//! read and correct; a fault of the protocol (no such tool, malformed
//! JSON-RPC) is a JSON-RPC error. The route sits behind the same
//! credentials, principals and rate limits as the function's JSON routes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_service::Service;

use crate::http::{Api, Operation, Routes};
use crate::jsonrpc::{self, RpcAnswer, RpcError};
use crate::tools::{Registry, ToolContext};

/// The route every function serves its tools at.
pub const PATH: &str = "/mcp";

/// What `/mcp` is told about the function serving it.
pub struct Served<'a> {
    /// Named in `serverInfo` (the function's name).
    pub function: &'static str,
    /// The largest request body, in bytes (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// The `Host` values answered; `None`: any (see
    /// [`HttpSettings::mcp_allowed_hosts`](crate::config::HttpSettings)).
    pub allowed_hosts: Option<&'a [String]>,
}

/// `POST /mcp` serving `tools`, documented. GET and DELETE (a stream or a
/// session of the stateful transport) are answered 405: there are none.
pub fn api(tools: Registry, served: Served<'_>) -> Api {
    let handler = Tools {
        function: served.function,
        listed: Arc::new(tools.specs().into_iter().map(listed).collect()),
        tools,
    };
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_sse_retry(None)
        .with_max_request_body_bytes(served.max_body_bytes);
    config = match served.allowed_hosts {
        Some(hosts) => config.with_allowed_hosts(hosts.iter().cloned()),
        None => config.disable_allowed_hosts(),
    };
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Routes::new()
        .route(PATH, post(mcp), [operation()])
        .with_state(McpState {
            service,
            max_body_bytes: served.max_body_bytes,
        })
}

/// The SDK's service and the body limit it is given.
#[derive(Clone)]
struct McpState {
    service: StreamableHttpService<Tools, NeverSessionManager>,
    max_body_bytes: usize,
}

/// Hands the request to the SDK, then puts every refusal the SDK answers
/// in plain text (wrong media types, a bad `Host`, a body too large) into
/// a JSON-RPC error object, which is what an MCP client reads, keeping the
/// HTTP status. A body that is not JSON at all is refused here, as
/// JSON-RPC's parse error (the SDK reports it as an invalid request).
async fn mcp(State(mcp): State<McpState>, request: Request) -> Response {
    let McpState {
        mut service,
        max_body_bytes,
    } = mcp;
    let (mut parts, body) = request.into_parts();
    accept_json(&mut parts.headers);
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                jsonrpc::INVALID_REQUEST,
                format!("the message is larger than this function accepts ({max_body_bytes} bytes, MAX_BODY_BYTES)"),
            );
        }
    };
    let json_body = is_json(&parts.headers);
    if json_body {
        let message = match serde_json::from_slice::<Value>(&bytes) {
            Ok(message) => message,
            Err(_) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    jsonrpc::PARSE_ERROR,
                    "the body is not JSON: send one JSON-RPC 2.0 message".to_string(),
                );
            }
        };
        if let Err(why) = params_fit(&message) {
            // Answered with the request's id, so the client can match it.
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            return rpc_error(StatusCode::OK, id, jsonrpc::INVALID_PARAMS, why);
        }
    }
    let Ok(response) = service.call(Request::from_parts(parts, Body::from(bytes))).await;
    let mut status = response.status();
    if json_body && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // The SDK's answer to JSON that is no JSON-RPC message it takes:
        // the media type was right, the message was not.
        status = StatusCode::BAD_REQUEST;
    }
    if is_json(response.headers()) || is_event_stream(response.headers()) {
        let mut response = response.into_response();
        *response.status_mut() = status;
        return response;
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return response.into_response();
    }
    let message = match axum::body::to_bytes(Body::new(response.into_body()), 4096).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status.canonical_reason().unwrap_or("the request failed").to_string(),
    };
    rpc_error(status, Value::Null, jsonrpc::INVALID_REQUEST, message)
}

/// Whether a request's `params` are what its method takes. The SDK reads
/// a known method with unknown params as a method of its own and answers
/// "no such method"; the client deserves "invalid params" and why.
fn params_fit(message: &Value) -> Result<(), String> {
    use rmcp::model::{CallToolRequestParams, InitializeRequestParams, PaginatedRequestParams};
    fn fits<T: serde::de::DeserializeOwned>(
        method: &str,
        params: Option<&Value>,
        required: bool,
    ) -> Result<(), String> {
        match params {
            None | Some(Value::Null) if !required => Ok(()),
            None | Some(Value::Null) => Err(format!("{method} needs params")),
            // Read in place: the SDK reads the message again for real.
            Some(params) => T::deserialize(params)
                .map(|_| ())
                .map_err(|e| format!("the params of {method} do not fit it: {e}")),
        }
    }
    let params = message.get("params");
    match message.get("method").and_then(Value::as_str) {
        Some(method @ "tools/call") => fits::<CallToolRequestParams>(method, params, true),
        Some(method @ "tools/list") => fits::<PaginatedRequestParams>(method, params, false),
        Some(method @ "initialize") => fits::<InitializeRequestParams>(method, params, true),
        _ => Ok(()),
    }
}

fn content_type(headers: &http::HeaderMap) -> &str {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn is_json(headers: &http::HeaderMap) -> bool {
    content_type(headers)
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    content_type(headers)
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/event-stream")
}

/// The MCP transport asks clients to accept both JSON and event streams;
/// one that accepts only JSON (or says nothing) is served all the same,
/// since every answer here is JSON.
fn accept_json(headers: &mut http::HeaderMap) {
    let accepted: Vec<String> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    let names = |kind: &str| accepted.iter().any(|v| v.contains(kind));
    let takes_json = accepted.is_empty() || names("application/json") || names("*/*") || names("application/*");
    if takes_json && !(names("application/json") && names("text/event-stream")) {
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    }
}

fn rpc_error(status: StatusCode, id: Value, code: i32, message: String) -> Response {
    (
        status,
        axum::Json(jsonrpc::error(&id, &jsonrpc::Fault::new(code, message))),
    )
        .into_response()
}

/// A function's tools, as the SDK serves them.
#[derive(Clone)]
struct Tools {
    function: &'static str,
    tools: Registry,
    listed: Arc<Vec<rmcp::model::Tool>>,
}

/// A tool's declaration in MCP's terms: the model's declaration, whose
/// parameters are already a JSON Schema object.
fn listed(spec: crate::llm::ToolSpec) -> rmcp::model::Tool {
    let schema = match spec.parameters {
        Value::Object(map) => map,
        _ => serde_json::Map::from_iter([("type".to_string(), Value::from("object"))]),
    };
    rmcp::model::Tool::new(spec.name, spec.description, Arc::new(schema))
}

impl rmcp::ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.function, env!("CARGO_PKG_VERSION")))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.listed.iter().find(|tool| tool.name == name).cloned()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.listed.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tools.get(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "there is no tool {:?}; tools/list names this server's tools ({})",
                    request.name,
                    self.tools.names().join(", ")
                ),
                None,
            ));
        };
        let arguments = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let result = match tool.call(arguments, &ToolContext::default()).await {
            Ok(value) => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
                // Structured content must be an object; the tools' answers are.
                result.structured_content = value.is_object().then_some(value);
                result
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        };
        Ok(CallToolResponse::Complete(result))
    }
}

/// A JSON-RPC 2.0 request, as the OpenAPI document describes the body of
/// `POST /mcp` (the methods are MCP's: `initialize`, `server/discover`,
/// `tools/list`, `tools/call`, `ping`, and notifications without `id`).
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct RpcRequest {
    pub jsonrpc: String,
    #[serde(default)]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default)]
    pub params: Option<Value>,
}

fn operation() -> Operation {
    Operation::post(
        "mcp",
        "the function's tools over MCP (Streamable HTTP, stateless): initialize or server/discover, \
         tools/list, tools/call; a tool's failure is a result with isError, a protocol fault a JSON-RPC error",
    )
    .tag("mcp")
    .body::<RpcRequest>()
    .json::<RpcAnswer>(200, "the JSON-RPC answer (result, or a JSON-RPC error)")
    .empty(202, "a notification, accepted")
    .json::<RpcError>(400, "not a JSON-RPC message MCP takes, or a header that contradicts it")
    .json::<RpcError>(403, "a Host this function does not answer (MCP_ALLOWED_HOSTS)")
    .json::<RpcError>(404, "an unknown method")
    .json::<RpcError>(406, "an Accept header that takes neither JSON nor event streams")
    .json::<RpcError>(413, "a body larger than MAX_BODY_BYTES")
    .json::<RpcError>(415, "a body that is not application/json")
}
