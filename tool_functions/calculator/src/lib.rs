//! `calculator_function`: the agent's `calculate` tool as a function of its
//! own (`CALCULATOR_URL`), and a safe arithmetic API in its own right.
//!
//! `POST /api/v1/tools/calculate` `{expression}` -> `{expression, result}`;
//! an expression that cannot be evaluated (division by zero, code, too long
//! or too deep) is a 400 that says why.

use std::sync::Arc;

use agent_core::App;
use agent_core::http::Api;
use agent_core::tools::calculator::{self, Calculator};
use agent_core::tools::endpoint;
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

/// The standalone function, with `POST /` and the shared HTTP layer.
pub fn router(app: &App) -> Router {
    app.standalone(api(app), FUNCTION)
}
