//! The agent's tools, built from the settings once at start-up.

use std::sync::{Arc, OnceLock};

use super::{Registry, Tool, calculator, memory, remote, search};
use crate::config::ToolSettings;
use crate::llm::ToolSpec;

/// The search index the settings ask for: `SEARCH_CORPUS`, else the
/// documentation built into the binary. Fails (at start-up) on a corpus
/// that cannot be read, rather than serving empty searches. The built-in
/// index is compile-time data, built once per process however many functions
/// (`local` runs the agent and the search function) ask for it.
pub fn search_index(settings: &ToolSettings) -> anyhow::Result<Arc<search::SearchIndex>> {
    static BUILTIN: OnceLock<Arc<search::SearchIndex>> = OnceLock::new();
    Ok(match &settings.search_corpus {
        Some(dir) => Arc::new(search::SearchIndex::from_dir(dir)?),
        None => BUILTIN.get_or_init(|| Arc::new(search::SearchIndex::builtin())).clone(),
    })
}

/// The agent's tools as the settings ask: calculator and search in process,
/// or the remote functions at `CALCULATOR_URL` and `SEARCH_URL` (which take
/// the same arguments, so only the declaration is needed here); memory in
/// the store; the tools of the MCP servers in `MCP_SERVERS`, listed now
/// (see [`crate::mcp::client`]), and the agents of `A2A_AGENTS`
/// ([`crate::a2a::client`]).
pub async fn registry(settings: &ToolSettings, stores: &crate::store::Stores) -> anyhow::Result<Registry> {
    let needs_http = settings.search_url.is_some()
        || settings.calculator_url.is_some()
        || !settings.mcp_servers.is_empty()
        || !settings.a2a_agents.is_empty();
    let http = if needs_http {
        Some(crate::llm::http_client(settings.timeout)?)
    } else {
        None
    };
    let remote = |spec: ToolSpec, url: &str, http: &reqwest::Client| -> Arc<dyn Tool> {
        let id_tokens = settings
            .id_tokens
            .then(|| crate::gcp::MetadataClient::from_env(http.clone()));
        Arc::new(remote::RemoteTool::new(
            spec,
            url,
            http.clone(),
            id_tokens,
            settings.api_key.clone(),
            settings.timeout,
        ))
    };
    let calculate: Arc<dyn Tool> = match (&settings.calculator_url, &http) {
        (Some(url), Some(http)) => remote(calculator::Calculator::new().spec().clone(), url, http),
        _ => Arc::new(calculator::Calculator::new()),
    };
    let search: Arc<dyn Tool> = match (&settings.search_url, &http) {
        (Some(url), Some(http)) => remote(search::spec(), url, http),
        _ => Arc::new(search::Search::new(search_index(settings)?)),
    };
    let mut tools = Registry::new()
        .with(calculate)
        .with(search)
        .with(Arc::new(memory::StoreMemory::new(stores.memory.clone())))
        .with(Arc::new(memory::RecallMemory::new(stores.memory.clone())));
    if let Some(http) = &http {
        // Both at once: a start waits for the slower, not the sum.
        let servers = async {
            match settings.mcp_servers.is_empty() {
                true => None,
                false => Some(crate::mcp::client::McpTools::start(settings, http.clone()).await),
            }
        };
        let agents = async {
            match settings.a2a_agents.is_empty() {
                true => None,
                false => Some(crate::a2a::client::A2aAgents::start(settings, http.clone()).await),
            }
        };
        let (servers, agents) = tokio::join!(servers, agents);
        if let Some(servers) = servers {
            tools = tools.with_source(Arc::new(servers));
        }
        if let Some(agents) = agents {
            tools = tools.with_source(Arc::new(agents));
        }
    }
    Ok(tools)
}
