//! The agent's MCP client: the tools of the servers in `MCP_SERVERS`,
//! offered to the model as `name__tool`.
//!
//! Each server is listed at start-up (all at once, within a bound, so a
//! slow one delays the start by at most that; one that is down is a
//! warning, not a failed start), again every [`REFRESH`], and again
//! after a call finds it unreachable. What the model sees is the last good
//! listing. A call's failure or time-out is an error result the model
//! reads, never a failed run. On Cloud Run, each request carries a Google
//! ID token whose audience is the server's URL, unless the server has a
//! header of its own (`MCP_HEADER_<NAME>`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, ContentBlock, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use serde_json::Value;

use crate::config::{Peer, ToolSettings};
use crate::gcp::MetadataClient;
use crate::llm::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolError, ToolSource};

/// How long a listing is trusted before the next use lists again.
pub const REFRESH: Duration = Duration::from_secs(300);

/// The longest the start waits for the first listings.
const START_WAIT: Duration = Duration::from_secs(5);

/// Separates a server's name from its tool's in the name the model sees.
pub const SEPARATOR: &str = "__";

/// The servers of `MCP_SERVERS`, as a source of tools.
pub struct McpTools {
    servers: Vec<Arc<Server>>,
}

impl McpTools {
    /// Connects to every server and lists its tools, all at once, waiting
    /// at most 5 s (or the tool time-out, if shorter); a server
    /// not listed by then is listed on first use.
    pub async fn start(settings: &ToolSettings, http: reqwest::Client) -> McpTools {
        let id_tokens = settings.id_tokens.then(|| MetadataClient::from_env(http.clone()));
        let servers: Vec<Arc<Server>> = settings
            .mcp_servers
            .iter()
            .map(|server| Arc::new(Server::new(server, http.clone(), id_tokens.clone(), settings.timeout)))
            .collect();
        let listings = futures_util::future::join_all(servers.iter().map(|server| server.clone().refresh()));
        let _ = tokio::time::timeout(START_WAIT.min(settings.timeout), listings).await;
        McpTools { servers }
    }
}

impl ToolSource for McpTools {
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.servers.iter().flat_map(|server| server.current()).collect()
    }
}

/// One server: its connection and its last listing.
struct Server {
    name: String,
    url: String,
    http: Authenticated,
    timeout: Duration,
    connection: tokio::sync::Mutex<Option<RunningService<RoleClient, ()>>>,
    listed: RwLock<Listed>,
    refreshing: AtomicBool,
}

#[derive(Default)]
struct Listed {
    tools: Vec<Arc<dyn Tool>>,
    /// When it was last listed (successfully or not); `None`: list on use.
    at: Option<Instant>,
}

impl Server {
    fn new(settings: &Peer, http: reqwest::Client, id_tokens: Option<MetadataClient>, timeout: Duration) -> Server {
        let header = settings.header.clone();
        Server {
            name: settings.name.clone(),
            url: settings.url.clone(),
            http: Authenticated {
                http,
                // A configured header replaces the ID token.
                id_tokens: id_tokens.filter(|_| header.is_none()),
                audience: crate::tools::remote::audience(&settings.url),
                header,
            },
            timeout,
            connection: tokio::sync::Mutex::new(None),
            listed: RwLock::new(Listed::default()),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The tools as last listed; starts a listing in the background when
    /// that is stale.
    fn current(self: &Arc<Self>) -> Vec<Arc<dyn Tool>> {
        let listed = self.listed.read().unwrap_or_else(|e| e.into_inner());
        let stale = listed.at.is_none_or(|at| at.elapsed() >= REFRESH);
        let tools = listed.tools.clone();
        drop(listed);
        if stale && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.clone().refresh());
        }
        tools
    }

    /// Lists the tools again (one listing at a time); on failure keeps the
    /// last good list and says why in the log.
    async fn refresh(self: Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let listing = tokio::time::timeout(self.timeout, self.list()).await;
        let outcome = match listing {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(why)) => Err(why),
            Err(_) => Err(format!("it did not answer within {} s", self.timeout.as_secs_f64())),
        };
        {
            let mut listed = self.listed.write().unwrap_or_else(|e| e.into_inner());
            listed.at = Some(Instant::now());
            match outcome {
                Ok(tools) => {
                    tracing::info!(server = %self.name, url = %self.url, tools = tools.len(), "MCP server listed");
                    listed.tools = tools;
                }
                Err(why) => tracing::warn!(
                    server = %self.name,
                    url = %self.url,
                    "the MCP server's tools could not be listed ({why}); its last listed tools stay offered"
                ),
            }
        }
        self.refreshing.store(false, Ordering::Release);
    }

    async fn list(self: &Arc<Self>) -> Result<Vec<Arc<dyn Tool>>, String> {
        let peer = self.peer().await?;
        let listed = peer.list_all_tools().await;
        let tools = match listed {
            Ok(tools) => tools,
            Err(err) => {
                self.disconnect().await;
                return Err(err.to_string());
            }
        };
        let mut seen = Vec::new();
        let mut offered: Vec<Arc<dyn Tool>> = Vec::new();
        for tool in tools {
            let name = offered_name(&self.name, &tool.name);
            if seen.contains(&name) {
                tracing::warn!(server = %self.name, tool = %tool.name, "two of the MCP server's tools have one name here; the second is not offered");
                continue;
            }
            seen.push(name.clone());
            let mut parameters = Value::Object((*tool.input_schema).clone());
            if let Some(schema) = parameters.as_object_mut() {
                schema.remove("$schema");
            }
            offered.push(Arc::new(McpTool {
                server: self.clone(),
                remote: tool.name.to_string(),
                spec: ToolSpec {
                    name,
                    description: format!(
                        "{} (from the MCP server {})",
                        tool.description.as_deref().unwrap_or("").trim(),
                        self.name
                    ),
                    parameters,
                },
            }));
        }
        Ok(offered)
    }

    /// The open connection, or a new one.
    async fn peer(&self) -> Result<rmcp::Peer<RoleClient>, String> {
        let mut connection = self.connection.lock().await;
        if let Some(running) = connection.as_ref()
            && !running.is_closed()
        {
            return Ok(running.peer().clone());
        }
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.as_str())
            .custom_headers(self.http.header.iter().cloned().collect());
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        // The stateless revision where the server speaks it, else the
        // `initialize` handshake.
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: None,
        };
        let running = ().serve_with_lifecycle(transport, lifecycle).await.map_err(|e| e.to_string())?;
        let peer = running.peer().clone();
        *connection = Some(running);
        Ok(peer)
    }

    async fn disconnect(&self) {
        if let Some(running) = self.connection.lock().await.take() {
            let _ = running.cancel().await;
        }
    }

    /// After a failed call: connect and list again on next use.
    async fn forget(&self) {
        self.disconnect().await;
        self.listed.write().unwrap_or_else(|e| e.into_inner()).at = None;
    }
}

/// `server__tool`, in the characters every model provider takes in a
/// function name (letters, digits, `_`, `-`), at most 64 of them.
fn offered_name(server: &str, tool: &str) -> String {
    let tool: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{server}{SEPARATOR}{tool}").chars().take(64).collect()
}

/// One tool of an MCP server.
struct McpTool {
    server: Arc<Server>,
    /// Its name on the server.
    remote: String,
    spec: ToolSpec,
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let server = &self.server;
        let arguments = match crate::tools::arguments::<Value>(args)? {
            Value::Object(map) => map,
            _ => {
                return Err(ToolError::InvalidArguments(
                    "the arguments must be a JSON object".into(),
                ));
            }
        };
        let call = async {
            let peer = server.peer().await?;
            let mut params = CallToolRequestParams::new(self.remote.clone()).with_arguments(arguments);
            // The SDK sends from its own task, where this span is not current:
            // the trace rides in the request, and the transport's client
            // below copies it to the HTTP header.
            if let Some(traceparent) = crate::telemetry::traceparent() {
                let mut meta = rmcp::model::MetaObject::default();
                meta.insert("traceparent".to_string(), Value::String(traceparent));
                params.meta = Some(meta.into());
            }
            peer.call_tool(params).await.map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(server.timeout, call).await {
            Ok(Ok(result)) => result,
            Ok(Err(why)) => {
                server.forget().await;
                return Err(ToolError::Failed(format!(
                    "the MCP server {} at {} could not run {}: {why}",
                    server.name, server.url, self.remote
                )));
            }
            Err(_) => {
                return Err(ToolError::Failed(format!(
                    "the MCP server {} did not answer within {} s",
                    server.name,
                    server.timeout.as_secs_f64()
                )));
            }
        };
        let text = text_of(&result.content);
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(if text.is_empty() {
                format!("{} failed and did not say why", self.remote)
            } else {
                text
            }));
        }
        Ok(match result.structured_content {
            Some(value) => value,
            None => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    }
}

/// The text of a result's content blocks; other kinds are named.
fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(_) => "[an image]".to_string(),
            ContentBlock::Audio(_) => "[audio]".to_string(),
            _ => "[a resource]".to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The HTTP client of one server's transport: reqwest's, with a Google ID
/// token (fresh from the metadata server's cache) on every request where
/// the server has no header of its own.
#[derive(Clone)]
struct Authenticated {
    http: reqwest::Client,
    id_tokens: Option<MetadataClient>,
    audience: String,
    header: Option<(HeaderName, HeaderValue)>,
}

type HttpError = StreamableHttpError<reqwest::Error>;

impl Authenticated {
    /// The bearer token to send: the transport's, else an ID token.
    async fn bearer(&self, given: Option<String>) -> Result<Option<String>, HttpError> {
        match (&self.id_tokens, given) {
            (_, Some(given)) => Ok(Some(given)),
            (None, None) => Ok(None),
            (Some(tokens), None) => tokens.id_token(&self.audience).await.map(Some).map_err(|e| {
                StreamableHttpError::Io(std::io::Error::other(format!("no ID token for the server: {e}")))
            }),
        }
    }
}

/// `headers` with the `traceparent` a request carries in `params._meta`,
/// so the server's HTTP layer continues the caller's trace.
fn traced(
    message: &ClientJsonRpcMessage,
    mut headers: HashMap<HeaderName, HeaderValue>,
) -> HashMap<HeaderName, HeaderValue> {
    if !crate::telemetry::enabled() {
        return headers;
    }
    let traceparent = serde_json::to_value(message).ok().and_then(|m| {
        m.pointer("/params/_meta/traceparent")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
    });
    if let Some(value) = traceparent {
        headers.insert(HeaderName::from_static("traceparent"), value);
    }
    headers
}

impl StreamableHttpClient for Authenticated {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let bearer = self.bearer(auth_header).await?;
        let custom_headers = traced(&message, custom_headers);
        self.http
            .post_message(uri, message, session_id, bearer, custom_headers)
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let bearer = self.bearer(auth_header).await?;
        let custom_headers = traced(&message, custom_headers);
        self.http
            .post_message_with_response_limits(uri, message, session_id, bearer, custom_headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        let bearer = self.bearer(auth_header).await?;
        self.http.delete_session(uri, session_id, bearer, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, SseError>>, HttpError> {
        let bearer = self.bearer(auth_header).await?;
        self.http
            .get_stream(uri, session_id, last_event_id, bearer, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, SseError>>, HttpError> {
        let bearer = self.bearer(auth_header).await?;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                bearer,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_names_are_what_providers_accept() {
        assert_eq!(offered_name("docs", "search"), "docs__search");
        assert_eq!(offered_name("docs", "files/read.v2"), "docs__files_read_v2");
        assert_eq!(offered_name("d", &"x".repeat(100)).len(), 64);
    }
}
