//! A tool served as a function of its own: the request body is the tool's
//! arguments and the answer its result, so the agent's remote tool and a
//! direct HTTP client speak to it the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use super::{Tool, ToolContext, ToolError};
use crate::http::{ApiError, ApiJson};

async fn call(State(tool): State<Arc<dyn Tool>>, ApiJson(args): ApiJson<Value>) -> Result<Json<Value>, ApiError> {
    if !args.is_object() {
        return Err(ApiError::invalid_argument(
            "the request body must be a JSON object of the tool's arguments",
        ));
    }
    match tool.call(args, &ToolContext::default()).await {
        Ok(result) => Ok(Json(result)),
        Err(ToolError::InvalidArguments(message)) => Err(ApiError::invalid_argument(message)),
        Err(ToolError::Failed(message)) => Err(ApiError::unavailable(message, Duration::from_secs(1))),
    }
}

/// `POST path` (and `POST /` when `root_alias`) serving `tool`.
pub fn routes(path: &str, tool: Arc<dyn Tool>, root_alias: bool) -> Router {
    let mut router = Router::new().route(path, post(call));
    if root_alias {
        router = router.route("/", post(call));
    }
    router.with_state(tool)
}
