//! A tool served as a function of its own: the request body is the tool's
//! arguments and the answer its result, so the agent's remote tool and a
//! direct HTTP client speak to it the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use schemars::JsonSchema;
use serde_json::Value;

use super::{Tool, ToolContext, ToolError};
use crate::http::{Api, ApiError, ApiJson, Operation, Routes};

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

/// `POST path` serving `tool` as the main route (also `POST /` when the
/// function stands alone), documented with `Args`, the arguments the tool
/// deserializes, and `Answer`, what it returns.
pub fn routes<Args: JsonSchema, Answer: JsonSchema>(path: &str, tool: Arc<dyn Tool>) -> Api {
    let operation = Operation::post(&tool.spec().name, tool.spec().description.clone())
        .tag("tools")
        .body::<Args>()
        .json::<Answer>(200, "the tool's result")
        .error(503, "the tool could not run for now; retry after Retry-After");
    Routes::new().main_route(path, post(call), [operation]).with_state(tool)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use crate::tools::{Tool, calculator, search};

    fn names(schema: &Value, key: &str) -> BTreeSet<String> {
        match &schema[key] {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => BTreeSet::new(),
        }
    }

    /// The model is told the tool's parameters in a hand-written schema (the
    /// providers take a subset of JSON Schema); the HTTP document derives
    /// them from the arguments type. Both must name the same fields.
    #[test]
    fn the_model_and_the_http_document_see_the_same_arguments() {
        let cases = [
            (
                calculator::Calculator::new().spec().parameters.clone(),
                schemars::schema_for!(calculator::Args).to_value(),
            ),
            (
                search::spec().parameters,
                schemars::schema_for!(search::Args).to_value(),
            ),
        ];
        for (for_model, derived) in cases {
            assert_eq!(names(&for_model, "properties"), names(&derived, "properties"));
            assert_eq!(names(&for_model, "required"), names(&derived, "required"));
        }
    }
}
