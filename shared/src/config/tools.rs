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
    pub mcp_servers: Vec<Peer>,
    /// A2A agents the agent can hand work to (`A2A_AGENTS`), each offered
    /// as the tool `ask_name`.
    pub a2a_agents: Vec<Peer>,
    /// How long a remote agent may take to finish a task it was sent.
    pub a2a_timeout: Duration,
}

/// One entry of `MCP_SERVERS` or `A2A_AGENTS`: a peer the agent calls.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Names its tools: `name__tool` for an MCP server's, `ask_name` for
    /// an agent. Letters, digits and single `_`, so that every model
    /// provider accepts the tool names.
    pub name: String,
    /// An MCP server's Streamable HTTP endpoint (`https://host/mcp`); an
    /// agent's base URL (its card at `/.well-known/agent-card.json`) or its
    /// card's URL.
    pub url: String,
    /// A header sent with every request to it (`MCP_HEADER_<NAME>`,
    /// `A2A_HEADER_<NAME>`, as `Name: value`): a key it asks for. Without
    /// one, calls carry a Google ID token where `TOOL_ID_TOKENS` is on.
    /// The value is marked sensitive, so it is never printed or logged.
    pub header: Option<(http::HeaderName, http::HeaderValue)>,
}

/// `<PREFIX><NAME>`: `Header-Name: value`, for the peer `name`.
fn peer_header(
    env: &Env<'_>,
    prefix: &str,
    name: &str,
) -> Result<Option<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let var = format!("{prefix}{}", name.to_ascii_uppercase());
    let Some(v) = env.get(&var) else {
        return Ok(None);
    };
    let parsed = v.split_once(':').and_then(|(header, value)| {
        let header = http::HeaderName::from_bytes(header.trim().as_bytes()).ok()?;
        let mut value = http::HeaderValue::from_str(value.trim())
            .ok()
            .filter(|v| !v.is_empty())?;
        value.set_sensitive(true);
        Some((header, value))
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

/// `var`: `name=url,name=url`, each with its header from
/// `<header_prefix><NAME>`; `example` shows the spelling in the error.
fn peers(env: &Env<'_>, var: &str, header_prefix: &str, example: &str) -> Result<Vec<Peer>, ConfigError> {
    let Some(v) = env.get(var) else {
        return Ok(Vec::new());
    };
    let invalid = || {
        ConfigError::new(
            var,
            &v,
            format!(
                "comma-separated name=url pairs such as {example}; each name of letters, digits and single \
                 underscores (at most 20), each name once"
            ),
        )
    };
    let mut peers: Vec<Peer> = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').ok_or_else(invalid)?;
        let (name, url) = (name.trim(), url.trim());
        let name_ok = !name.is_empty()
            && name.len() <= 20
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.contains("__")
            && !name.starts_with('_')
            && !name.ends_with('_');
        if !name_ok || peers.iter().any(|s| s.name == name) {
            return Err(invalid());
        }
        validate_url(var, url)?;
        peers.push(Peer {
            name: name.to_string(),
            url: url.to_string(),
            header: peer_header(env, header_prefix, name)?,
        });
    }
    Ok(peers)
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
        mcp_servers: peers(
            env,
            "MCP_SERVERS",
            "MCP_HEADER_",
            "docs=https://docs-mcp-abc-uc.a.run.app/mcp,files=http://127.0.0.1:9000/mcp",
        )?,
        a2a_agents: peers(
            env,
            "A2A_AGENTS",
            "A2A_HEADER_",
            "billing=https://billing-agent-abc-uc.a.run.app,travel=https://travel.example.com/.well-known/agent-card.json",
        )?,
        a2a_timeout: env.seconds_or("A2A_TIMEOUT_SECONDS", Duration::from_secs(120), 1.0..=3600.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, Settings};

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn peers_are_named_urls_with_their_own_headers() {
        let tools = settings(&[
            (
                "MCP_SERVERS",
                "docs=https://docs.example/mcp, files=http://10.0.0.5:8000/mcp",
            ),
            ("MCP_HEADER_DOCS", "Authorization: Bearer k"),
            ("A2A_AGENTS", "billing=https://billing.example"),
            ("A2A_TIMEOUT_SECONDS", "30"),
        ])
        .expect("valid")
        .tools;
        let names: Vec<&str> = tools.mcp_servers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["docs", "files"]);
        let header = tools.mcp_servers[0].header.as_ref().expect("a header");
        assert_eq!(
            (header.0.as_str(), header.1.to_str().ok()),
            ("authorization", Some("Bearer k"))
        );
        assert!(
            !format!("{header:?}").contains("Bearer k"),
            "a header's value is never printed"
        );
        assert!(tools.mcp_servers[1].header.is_none());
        assert_eq!(tools.a2a_agents[0].url, "https://billing.example");
        assert_eq!(tools.a2a_timeout.as_secs(), 30);
    }

    #[test]
    fn bad_peers_name_the_variable_and_hide_secrets() {
        for (var, value) in [
            ("MCP_SERVERS", "docs"),
            ("MCP_SERVERS", "a__b=https://x"),
            ("MCP_SERVERS", "d=https://x,d=https://y"),
            ("MCP_SERVERS", "d=ftp://x"),
            ("A2A_AGENTS", "bad name=https://x"),
            ("A2A_TIMEOUT_SECONDS", "0"),
        ] {
            let err = settings(&[(var, value)]).expect_err(value);
            assert_eq!(err.var, var, "{value}");
        }
        let err = settings(&[("A2A_AGENTS", "b=https://x"), ("A2A_HEADER_B", "no colon secret")]).expect_err("bad");
        assert_eq!(err.var, "A2A_HEADER_B");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
