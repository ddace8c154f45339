//! `agent_function`: the tool-calling agent.
//!
//! `POST /api/v1/agent` runs a task through the agent loop of `agent-core`
//! with the calculator, search and memory tools, stores the run as a task,
//! and answers with the response and every step. `GET /api/v1/tasks/{id}`
//! returns a stored run. Asynchronous runs (`async: true`) come with the
//! Pub/Sub queue; until then they are refused with a clear message.

use std::sync::Arc;

use agent_core::agent::{self, Outcome};
use agent_core::http::json::require_text;
use agent_core::http::{ApiError, ApiJson};
use agent_core::llm::Model;
use agent_core::store::{TaskRecord, TaskStatus, TaskStore};
use agent_core::tools::Registry;
use agent_core::{App, session};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const FUNCTION: &str = "agent_function";

/// `POST /api/v1/agent`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    pub task: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub max_steps: Option<u32>,
    #[serde(default, rename = "async")]
    pub run_async: bool,
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub system_instruction: Option<String>,
}

/// A completed run: the answer of `POST /api/v1/agent`, and the `result`
/// of its task.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AgentResponse {
    pub task_id: String,
    pub session_id: String,
    /// `response`, `steps`, `total_steps`, `tokens_used`, `model` and
    /// `finish_reason` (`answered`, or `max_steps` when the limit ended it).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What the request asked that was adjusted (a `max_steps` over the cap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /api/v1/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TaskResponse {
    pub task_id: String,
    pub status: TaskStatus,
    pub task: String,
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<TaskRecord> for TaskResponse {
    fn from(t: TaskRecord) -> TaskResponse {
        TaskResponse {
            task_id: t.task_id,
            status: t.status,
            task: t.task,
            session_id: t.session_id,
            result: t.result,
            error: t.error,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Clone)]
pub struct AgentState {
    pub model: Arc<dyn Model>,
    pub tools: Registry,
    pub tasks: Arc<dyn TaskStore>,
    pub max_task_chars: usize,
}

impl AgentState {
    pub fn new(app: &App) -> anyhow::Result<AgentState> {
        Ok(AgentState {
            model: app.model.clone(),
            tools: agent_core::tools::registry(&app.settings.tools, &app.stores)?,
            tasks: app.stores.tasks.clone(),
            max_task_chars: app.settings.http.max_message_chars,
        })
    }
}

/// The named routes, behind the agent rate limit; `local` merges these.
pub fn routes(app: &App) -> anyhow::Result<Router> {
    Ok(app.rate_limited(
        api(AgentState::new(app)?, false),
        "agent",
        app.settings.rate_limit_agent,
    ))
}

/// The standalone function: the named routes, `POST /`, and the shared
/// HTTP layer.
pub fn router(app: &App) -> anyhow::Result<Router> {
    let api = api(AgentState::new(app)?, true);
    Ok(app.wrap(app.rate_limited(api, "agent", app.settings.rate_limit_agent), FUNCTION))
}

fn api(state: AgentState, root_alias: bool) -> Router {
    let mut routes = Router::new()
        .route("/api/v1/agent", post(run_agent))
        .route("/api/v1/tasks/{id}", get(get_task));
    if root_alias {
        routes = routes.route("/", post(run_agent));
    }
    routes.with_state(state)
}

pub async fn run_agent(
    State(state): State<AgentState>,
    ApiJson(body): ApiJson<AgentRequest>,
) -> Result<axum::Json<AgentResponse>, ApiError> {
    require_text("task", &body.task, state.max_task_chars)?;
    let session_id = session::given_or_new(body.session_id.as_deref())?;
    if body.max_steps == Some(0) {
        return Err(ApiError::invalid_argument(
            "max_steps must be at least 1; omit it for the default of 10",
        ));
    }
    if body.run_async {
        return Err(ApiError::invalid_argument(
            "asynchronous runs (async: true) are not available in this version; omit async to run the task \
             synchronously",
        ));
    }
    if body.callback_url.is_some() {
        return Err(ApiError::invalid_argument(
            "callback_url is only used by asynchronous runs (async: true), which are not available in this \
             version; omit it",
        ));
    }
    let (max_steps, warning) = agent::effective_max_steps(body.max_steps);

    let task_id = uuid::Uuid::new_v4().to_string();
    state
        .tasks
        .create(&TaskRecord {
            task_id: task_id.clone(),
            status: TaskStatus::Running,
            task: body.task.clone(),
            session_id: session_id.clone(),
            max_steps,
            result: None,
            error: None,
            created_at: String::new(),
            updated_at: String::new(),
        })
        .await?;

    let run = agent::Run {
        task: body.task,
        session_id: session_id.clone(),
        max_steps,
        system_instruction: body.system_instruction.filter(|s| !s.trim().is_empty()),
    };
    let outcome = match agent::run(state.model.as_ref(), &state.tools, &run, &|_| {}).await {
        Ok(outcome) => outcome,
        Err(err) => {
            let error = ApiError::from(err);
            record(&state, &task_id, TaskStatus::Failed, None, Some(&error.message)).await;
            return Err(error);
        }
    };
    let response = AgentResponse {
        task_id: task_id.clone(),
        session_id,
        outcome,
        warnings: warning.into_iter().collect(),
    };
    let result = serde_json::to_value(&response).ok();
    record(&state, &task_id, TaskStatus::Completed, result.as_ref(), None).await;
    Ok(axum::Json(response))
}

/// Stores a run's outcome. The client gets its answer even when this
/// fails: the work is done, and a retry would pay for it again.
async fn record(state: &AgentState, task_id: &str, status: TaskStatus, result: Option<&Value>, error: Option<&str>) {
    if let Err(err) = state.tasks.finish(task_id, status, result, error).await {
        tracing::warn!(%err, task_id, "the task's outcome could not be stored");
    }
}

pub async fn get_task(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<axum::Json<TaskResponse>, ApiError> {
    session::validate("the task id", &id)?;
    match state.tasks.get(&id).await? {
        Some(task) => Ok(axum::Json(task.into())),
        None => Err(ApiError::not_found(format!(
            "there is no task {id:?}; task ids are returned by POST /api/v1/agent"
        ))),
    }
}
