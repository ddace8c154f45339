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
    })
}
