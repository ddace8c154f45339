//! `POST /api/v1/multi-agent`: a task planned into subtasks, run by
//! executors in parallel, and answered by a synthesis (`agent_core::multi`).
//!
//! A synchronous run is stored as a task of kind `multi_agent` while it
//! runs, like a synchronous agent run, so it can be looked up and its
//! usage is counted with its outcome; with `async: true` it is queued like
//! any task, and a worker runs it (`agent_core::worker`).

use agent_core::agent::{self, RunError};
use agent_core::auth::Principal;
use agent_core::http::json::require_text;
use agent_core::http::{ApiError, ApiJson, Operation, detached};
use agent_core::multi::{self, MultiAgentResponse, MultiRun, RoutedRoles, Spent};
use agent_core::store::{Finished, TaskKind, TaskRecord, TaskState};
use agent_core::task::{self, Accepted};
use agent_core::worker::MultiInput;
use agent_core::{owned, session};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AgentState, answered, record};

/// `POST /api/v1/multi-agent`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiAgentRequest {
    /// What to do (MAX_MESSAGE_CHARS at most); the planner cuts it into subtasks.
    #[schemars(schema_with = "agent_core::http::json::text_schema")]
    pub task: String,
    /// The session whose memory the subtasks' memory tools use; new when omitted.
    #[serde(default)]
    #[schemars(schema_with = "agent_core::session::optional_id_schema")]
    pub session_id: Option<String>,
    /// The most subtasks the plan may have: 1 to 10, default 5.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub max_subtasks: Option<u32>,
    /// `fast`, `strong`, or a model name from the allow-list, for every call
    /// of the run; without it the planner and synthesis take the strong
    /// tier and the subtasks the fast one (with `MODEL_ROUTING=auto`).
    #[serde(default)]
    pub model: Option<String>,
    /// `false`: the run's model calls skip the response cache (`CACHE`).
    #[serde(default)]
    pub cache: Option<bool>,
    /// Queue the run and answer 202 at once; follow it at `events_url`
    /// (`plan`, `subtask_started`, `step`, `subtask_finished`, `synthesis`,
    /// `done`) or `status_url`.
    #[serde(default, rename = "async")]
    pub run_async: bool,
    /// With `async`: an `https://` URL that receives the finished task,
    /// signed with `X-Signature-256` (needs WEBHOOK_SECRET).
    #[serde(default)]
    pub callback_url: Option<String>,
}

pub(crate) fn operation() -> Operation {
    Operation::post(
        "run_multi_agent",
        "plan a task into subtasks, run them in parallel, and synthesise one answer",
    )
    .tag("agent")
    .body::<MultiAgentRequest>()
    .json::<MultiAgentResponse>(
        200,
        "the finished run: the plan, each subtask's result and steps, the answer",
    )
    .json_with::<Accepted>(202, "with async: true, the run is queued", &["Location"])
    .model_errors()
}

pub async fn run_multi_agent(
    State(state): State<AgentState>,
    principal: Principal,
    ApiJson(body): ApiJson<MultiAgentRequest>,
) -> Result<Response, ApiError> {
    require_text("task", &body.task, state.max_task_chars)?;
    let session_id = session::given_or_new(body.session_id.as_deref())?;
    let max_subtasks = multi::max_subtasks(body.max_subtasks)?;
    let requested = match body.model.as_deref() {
        Some(model) => Some(
            state
                .models
                .route(&body.task, state.tools.names().len(), Some(model))
                .map_err(|refused| ApiError::invalid_argument(refused.to_string()))?,
        ),
        None => None,
    };
    let mut task = TaskRecord::queued(
        uuid::Uuid::new_v4().to_string(),
        principal.as_str(),
        body.task,
        session_id,
        agent::DEFAULT_MAX_STEPS,
    );
    task.kind = TaskKind::MultiAgent;
    task.model = body.model;
    task.cache = body.cache != Some(false);
    if body.run_async {
        task.callback_url = match body.callback_url {
            Some(url) => Some(crate::check_callback(&state, &url)?),
            None => None,
        };
        task.input = serde_json::to_value(MultiInput {
            max_subtasks,
            fanned: None,
        })
        .ok();
        return task::submit(state.tasks.as_ref(), state.queue.as_ref(), task, Vec::new()).await;
    }
    if body.callback_url.is_some() {
        return Err(ApiError::invalid_argument(
            "callback_url is only used by asynchronous runs: add \"async\": true, or omit callback_url",
        ));
    }
    let run = MultiRun {
        task: task.task.clone(),
        session_key: owned::session_key(principal.as_str(), &task.session_id),
        max_subtasks,
        max_steps: agent::DEFAULT_MAX_STEPS,
        concurrency: multi::CONCURRENCY,
        kept_plan: None,
    };
    // Detached, as a synchronous agent run: once its first model call has
    // started, the run ends and is recorded whether or not the client stays.
    detached::run(move |_| async move { run_to_end(&state, &principal, task, run, requested).await })
        .await
        .map(|response| axum::Json(response).into_response())
}

async fn run_to_end(
    state: &AgentState,
    principal: &Principal,
    mut task: TaskRecord,
    run: MultiRun,
    requested: Option<agent_core::llm::routing::Route>,
) -> Result<MultiAgentResponse, ApiError> {
    task.state = TaskState::Running;
    task.attempts = 1;
    state.tasks.create(&task).await?;
    let roles = RoutedRoles {
        models: &state.models,
        requested,
        cache: state.cache.as_ref().filter(|_| task.cache),
        principal: principal.as_str(),
    };
    let spent = Spent::default();
    let outcome = match multi::run(&roles, &state.tools, &run, &spent, None, &|_| {}).await {
        Ok(outcome) => outcome,
        Err(err) => {
            let error = match err {
                RunError::Model(err) => ApiError::from(err),
                // Nothing checks a synchronous run, so nothing stops it.
                RunError::Interrupted(why) => {
                    tracing::error!(%why, "a synchronous multi-agent run was interrupted");
                    ApiError::internal()
                }
            };
            record(state, &task.task_id, Finished::Failed(error.message.clone()), &spent).await;
            return Err(error);
        }
    };
    let response = MultiAgentResponse {
        task_id: task.task_id.clone(),
        session_id: task.session_id.clone(),
        outcome,
    };
    record(state, &task.task_id, answered(&response), &spent).await;
    Ok(response)
}
