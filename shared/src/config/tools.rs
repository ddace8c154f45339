//! Where the agent's tools run: in process, or as functions of their own
//! (`SEARCH_URL`, `CALCULATOR_URL`) called with a key or an ID token.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Env, Secret, parse_bool, validate_url};

#[derive(Debug, Clone)]
pub struct ToolSettings {
    /// Call the search function here instead of searching in process.
    pub search_url: Option<String>,
    /// Call the calculator function here instead of calculating in process.
    pub calculator_url: Option<String>,
    /// A folder of .md and .txt documents to search; `None`: the built-in
    /// documentation.
    pub search_corpus: Option<PathBuf>,
    /// How long a remote tool call may take.
    pub timeout: Duration,
    /// Sent as `X-API-Key` to remote tool functions that require one.
    pub api_key: Option<Secret>,
    /// Attach a Google ID token to remote tool calls (on by default on
    /// Cloud Run, where the tool functions are private).
    pub id_tokens: bool,
    /// MCP servers whose tools the agent offers the model (`MCP_SERVERS`,
    /// `name=url` pairs), each tool as `name__tool`.
    pub mcp_servers: Vec<McpServer>,
}

/// One entry of `MCP_SERVERS`.
#[derive(Debug, Clone)]
pub struct McpServer {
    /// Prefixes its tools' names: letters, digits and `_`, so that
    /// `name__tool` is a name every model provider accepts.
    pub name: String,
    /// The server's Streamable HTTP endpoint (`https://host/mcp`).
    pub url: String,
    /// A header sent with every request to it (`MCP_HEADER_<NAME>`, as
    /// `Name: value`): a key the server asks for. Without one, calls carry
    /// a Google ID token where `TOOL_ID_TOKENS` is on.
    pub header: Option<(String, Secret)>,
}

const MCP_SERVERS_EXPECTED: &str = "comma-separated name=url pairs such as \
     docs=https://docs-mcp-abc-uc.a.run.app/mcp,files=http://127.0.0.1:9000/mcp; each name \
     of letters, digits and single underscores (at most 20), each name once";

/// `MCP_HEADER_<NAME>`: `Header-Name: value`, for the server `name`.
fn mcp_header(env: &Env<'_>, name: &str) -> Result<Option<(String, Secret)>, ConfigError> {
    let var = format!("MCP_HEADER_{}", name.to_ascii_uppercase());
    let Some(v) = env.get(&var) else {
        return Ok(None);
    };
    let parsed = v.split_once(':').and_then(|(header, value)| {
        let (header, value) = (header.trim(), value.trim());
        let valid = http::HeaderName::from_bytes(header.as_bytes()).is_ok()
            && http::HeaderValue::from_str(value).is_ok()
            && !value.is_empty();
        valid.then(|| (header.to_string(), Secret::new(value.to_string())))
    });
    // The value is a secret: the error names the variable, not what it holds.
    parsed.map(Some).ok_or_else(|| {
        ConfigError::new(
            &var,
            "(hidden)",
            "a header as Name: value, such as Authorization: Bearer KEY",
        )
    })
}

/// `MCP_SERVERS`: `name=url,name=url`.
fn mcp_servers(env: &Env<'_>) -> Result<Vec<McpServer>, ConfigError> {
    let Some(v) = env.get("MCP_SERVERS") else {
        return Ok(Vec::new());
    };
    let invalid = || ConfigError::new("MCP_SERVERS", &v, MCP_SERVERS_EXPECTED);
    let mut servers: Vec<McpServer> = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').ok_or_else(invalid)?;
        let (name, url) = (name.trim(), url.trim());
        let name_ok = !name.is_empty()
            && name.len() <= 20
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.contains("__")
            && !name.starts_with('_')
            && !name.ends_with('_');
        if !name_ok || servers.iter().any(|s| s.name == name) {
            return Err(invalid());
        }
        validate_url("MCP_SERVERS", url)?;
        servers.push(McpServer {
            name: name.to_string(),
            url: url.to_string(),
            header: mcp_header(env, name)?,
        });
    }
    Ok(servers)
}

pub(super) fn tool_settings(env: &Env<'_>) -> Result<ToolSettings, ConfigError> {
    let url = |name: &str| -> Result<Option<String>, ConfigError> {
        match env.get(name) {
            Some(url) => validate_url(name, &url).map(|_| Some(url)),
            None => Ok(None),
        }
    };
    Ok(ToolSettings {
        search_url: url("SEARCH_URL")?,
        calculator_url: url("CALCULATOR_URL")?,
        search_corpus: env.get("SEARCH_CORPUS").map(PathBuf::from),
        timeout: env.seconds_or("TOOL_TIMEOUT_SECONDS", Duration::from_secs(10), 0.1..=300.0)?,
        api_key: env.get("TOOL_API_KEY").map(Secret::new),
        id_tokens: env.parse_or(
            "TOOL_ID_TOKENS",
            env.get("K_SERVICE").is_some(),
            "true or false",
            parse_bool,
        )?,
        mcp_servers: mcp_servers(env)?,
    })
}
