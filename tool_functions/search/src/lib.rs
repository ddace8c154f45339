//! `search_function`: the agent's `search_web` tool as a function of its
//! own, so the corpus and its index live in one service that every agent
//! instance calls (`SEARCH_URL`).
//!
//! `POST /api/v1/tools/search` `{query, max_results?}` ->
//! `{query, results: [{title, snippet, source, score}]}`. `POST /mcp`
//! serves the same tool to MCP clients.

use std::sync::Arc;

use agent_core::App;
use agent_core::http::Api;
use agent_core::tools::{Registry, endpoint, search};
use axum::Router;

pub const FUNCTION: &str = "search_function";
pub const ROUTE: &str = "/api/v1/tools/search";

fn tool(app: &App) -> anyhow::Result<Arc<search::Search>> {
    Ok(Arc::new(search::Search::new(agent_core::tools::search_index(
        &app.settings.tools,
    )?)))
}

/// The named route, behind the tools rate limit; `local` merges it.
pub fn api(app: &App) -> anyhow::Result<Api> {
    Ok(app.rate_limited(
        endpoint::routes::<search::Args, search::Answer>(ROUTE, tool(app)?),
        "tools",
        app.settings.rate_limit_tools,
        app.settings.rate_limit_tools_per_client,
    ))
}

/// The standalone function: the named route, `POST /`, the tool over MCP
/// at `POST /mcp` (in `local`, the agent's `/mcp` serves it), and the
/// shared HTTP layer.
pub fn router(app: &App) -> anyhow::Result<Router> {
    let mcp = app.mcp(Registry::new().with(tool(app)?), FUNCTION);
    Ok(app.standalone(api(app)?.merge(mcp), FUNCTION))
}
