//! `calculator_function`: the agent's `calculate` tool as a function of its
//! own (`CALCULATOR_URL`), and a safe arithmetic API in its own right.
//!
//! `POST /api/v1/tools/calculate` `{expression}` -> `{expression, result}`;
//! an expression that cannot be evaluated (division by zero, code, too long
//! or too deep) is a 400 that says why. `POST /mcp` serves the same tool
//! to MCP clients.

use std::sync::Arc;

use agent_core::App;
use agent_core::http::Api;
use agent_core::tools::calculator::{self, Calculator};
use agent_core::tools::{Registry, endpoint};
use axum::Router;

pub const FUNCTION: &str = "calculator_function";
pub const ROUTE: &str = "/api/v1/tools/calculate";

/// The named route, behind the tools rate limit; `local` merges it.
pub fn api(app: &App) -> Api {
    let tool = Arc::new(Calculator::new());
    app.rate_limited(
        endpoint::routes::<calculator::Args, calculator::Answer>(ROUTE, tool),
        "tools",
        app.settings.rate_limit_tools,
        app.settings.rate_limit_tools_per_client,
    )
}

/// The standalone function: the named route, `POST /`, the tool over MCP
/// at `POST /mcp` (in `local`, the agent's `/mcp` serves it), and the
/// shared HTTP layer.
pub fn router(app: &App) -> Router {
    let mcp = app.mcp(Registry::new().with(Arc::new(Calculator::new())), FUNCTION);
    app.standalone(api(app).merge(mcp), FUNCTION)
}
