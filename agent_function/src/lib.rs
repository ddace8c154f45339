//! `agent_function`: the tool-calling agent.
//!
//! `POST /api/v1/agent` runs a task through the agent loop of `agent-core`
//! with the calculator, search and memory tools and answers with the
//! response and every step; with `async: true` it stores the task as
//! `queued`, publishes it (Pub/Sub, or the local queue) and answers 202 at
//! once. `GET /api/v1/tasks/{id}` returns a task, `GET
//! /api/v1/tasks/{id}/events` streams its progress, `POST
//! /api/v1/tasks/{id}/cancel` cancels it; `POST /mcp` serves the
//! calculator and search tools to MCP clients. The worker side lives in
//! `agent-core` (`worker`), shared by `agent_worker` and the local queue.

use std::sync::Arc;

use agent_core::agent;
use agent_core::auth::Principal;
use agent_core::cache::ResponseCache;
use agent_core::http::json::require_text;
use agent_core::http::{Api, ApiError, ApiJson, Operation, Routes, detached};
use agent_core::llm::Model;
use agent_core::llm::routed::{Models, Routed};
use agent_core::queue::Queue;
use agent_core::store::{Finished, TaskRecord, TaskState, TaskStore};
use agent_core::task;
pub use agent_core::task::{Accepted, AgentResponse, TaskView};
use agent_core::tools::Registry;
use agent_core::{App, session};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod a2a;
mod multi;
mod research;

pub use multi::{MultiAgentRequest, run_multi_agent};
pub use research::{ResearchAccepted, ResearchRequest, ResearchView};

pub const FUNCTION: &str = "agent_function";

/// `POST /api/v1/agent`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    /// What the agent should do (MAX_MESSAGE_CHARS at most).
    #[schemars(schema_with = "agent_core::http::json::text_schema")]
    pub task: String,
    /// The session whose memory the agent reads and writes; new when omitted.
    #[serde(default)]
    #[schemars(schema_with = "agent_core::session::optional_id_schema")]
    pub session_id: Option<String>,
    /// At most this many tool calls (default 10, capped at 20 with a warning).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_steps: Option<u32>,
    /// Queue the task and answer 202 at once instead of running it now.
    #[serde(default, rename = "async")]
    pub run_async: bool,
    /// With `async`: an `https://` URL that receives the finished task,
    /// signed with `X-Signature-256` (needs WEBHOOK_SECRET).
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub system_instruction: Option<String>,
    /// `fast`, `strong`, or a model name from the allow-list (see
    /// `GET /api/v1/models`); routed by the rules when omitted. A queued
    /// task keeps it and runs on it.
    #[serde(default)]
    pub model: Option<String>,
    /// `false`: this run's model calls skip the response cache (`CACHE`).
    /// Tools always run; only model calls are ever cached.
    #[serde(default)]
    pub cache: Option<bool>,
}

#[derive(Clone)]
pub struct AgentState {
    pub model: Arc<dyn Model>,
    /// The tiers: each synchronous run is routed once, by its task text.
    pub models: Arc<Models>,
    /// The response cache; `None` with `CACHE=off`.
    pub cache: Option<Arc<ResponseCache>>,
    pub tools: Registry,
    pub tasks: Arc<dyn TaskStore>,
    pub queue: Arc<dyn Queue>,
    pub max_task_chars: usize,
    /// Callbacks need a secret to sign with; without one they are refused.
    pub callbacks_enabled: bool,
    pub allow_loopback_callbacks: bool,
}

impl AgentState {
    /// Builds the tools and opens the queue (the local queue starts its
    /// dispatcher, so this process also runs the tasks it accepts).
    pub async fn new(app: &App) -> anyhow::Result<AgentState> {
        // Built once: the local queue's worker runs tasks with the same
        // tools (one corpus index, one HTTP client, one ID-token cache).
        let tools = agent_core::tools::registry(&app.settings.tools, &app.stores).await?;
        Ok(AgentState {
            model: app.model.clone(),
            models: app.models.clone(),
            cache: app.cache.clone(),
            queue: agent_core::queue::open(app, &tools).await?,
            tools,
            tasks: app.stores.tasks.clone(),
            max_task_chars: app.settings.http.max_message_chars,
            callbacks_enabled: app.settings.tasks.webhook_secret.is_some(),
            allow_loopback_callbacks: app.settings.tasks.allow_loopback_callbacks,
        })
    }
}

/// The named routes; `local` merges these. Running a task is behind the
/// agent rate limit; reading tasks, which clients poll, and cancelling
/// them, behind their own: a cancel costs a store step, not a model call,
/// and a client that used up its agent limit must still be able to stop
/// what it started.
pub async fn api(app: &App) -> anyhow::Result<Api> {
    Ok(routes(app, AgentState::new(app).await?))
}

/// The standalone function: the named routes, `POST /`, and the shared
/// HTTP layer.
pub async fn router(app: &App) -> anyhow::Result<Router> {
    // What the caller spent: not in `api`, which `local` merges with the
    // chat function's, which serves it already (as it does the models).
    let api = api(app)
        .await?
        .merge(agent_core::http::models::api(app))
        .merge(agent_core::http::cache::api(app))
        .merge(agent_core::http::usage::api(app));
    Ok(app.standalone(api, FUNCTION))
}

fn run_operation() -> Operation {
    Operation::post(
        "run_agent",
        "run the tool-calling agent on a task, or queue it with async: true",
    )
    .tag("agent")
    .body::<AgentRequest>()
    .json::<AgentResponse>(200, "the finished run: the answer and every step")
    .json_with::<Accepted>(202, "with async: true, the task is queued", &["Location"])
    .model_errors()
}

fn routes(app: &App, state: AgentState) -> Api {
    let runs = Routes::new()
        .main_route("/api/v1/agent", post(run_agent), [run_operation()])
        .route(
            "/api/v1/multi-agent",
            post(multi::run_multi_agent),
            [multi::operation()],
        )
        .route(
            "/api/v1/research",
            post(research::start_research),
            [research::submit_operation()],
        );
    let reads = Routes::new().route(
        "/api/v1/research/{id}",
        get(research::get_research),
        [research::view_operation()],
    );
    let settings = &app.settings;
    // Over MCP, the tools that need no run: memory belongs to a run's
    // session, and MCP_SERVERS' tools are other servers' to serve.
    let shared = state.tools.only(&[
        agent_core::tools::calculator::TOOL_NAME.to_string(),
        agent_core::tools::search::TOOL_NAME.to_string(),
    ]);
    let mcp = app.mcp(shared, FUNCTION);
    let a2a = a2a::routes(app, state.clone());
    app.rate_limited(
        runs.with_state(state.clone()),
        "agent",
        settings.rate_limit_agent,
        settings.rate_limit_agent_per_client,
    )
    .merge(app.rate_limited(
        reads.with_state(state),
        "tasks",
        settings.rate_limit_tasks,
        settings.rate_limit_tasks_per_client,
    ))
    .merge(task::routes::api(app))
    .merge(mcp)
    .merge(a2a)
}

pub async fn run_agent(
    State(state): State<AgentState>,
    principal: Principal,
    ApiJson(body): ApiJson<AgentRequest>,
) -> Result<Response, ApiError> {
    require_text("task", &body.task, state.max_task_chars)?;
    let session_id = session::given_or_new(body.session_id.as_deref())?;
    if body.max_steps == Some(0) {
        return Err(ApiError::invalid_argument(
            "max_steps must be at least 1; omit it for the default of 10",
        ));
    }
    // Routed once for the whole run, before anything is stored: a model the
    // client may not pick is a 400 that names those it may.
    let route = state
        .models
        .route(&body.task, state.tools.names().len(), body.model.as_deref())
        .map_err(|refused| ApiError::invalid_argument(refused.to_string()))?;
    let (max_steps, warning) = agent::effective_max_steps(body.max_steps);
    let mut task = TaskRecord::queued(
        uuid::Uuid::new_v4().to_string(),
        principal.as_str(),
        body.task,
        session_id,
        max_steps,
    );
    task.system_instruction = body.system_instruction.filter(|s| !s.trim().is_empty());
    // Kept on the task: a queued run's worker honours it too.
    task.cache = body.cache != Some(false);
    let warnings = warning.into_iter().collect();
    if body.run_async {
        task.callback_url = match body.callback_url {
            Some(url) => Some(check_callback(&state, &url)?),
            None => None,
        };
        // Checked above with the run's route; the worker routes it the same way.
        task.model = body.model;
        return task::submit(state.tasks.as_ref(), state.queue.as_ref(), task, warnings).await;
    }
    if body.callback_url.is_some() {
        return Err(ApiError::invalid_argument(
            "callback_url is only used by asynchronous runs: add \"async\": true, or omit callback_url",
        ));
    }
    let cache = state.cache.as_ref().filter(|_| task.cache);
    let model = state.models.routed(&route).with_cache(cache, principal.as_str());
    Ok(axum::Json(run_now(&state, task, warnings, model).await?).into_response())
}

pub(crate) fn check_callback(state: &AgentState, url: &str) -> Result<String, ApiError> {
    task::check_callback(url, state.allow_loopback_callbacks, state.callbacks_enabled)
}

/// Runs the task in this request. It is stored as `running` (first attempt,
/// no lease: no queue will deliver it) so it can be looked up while it runs.
///
/// The run is detached from the request (`agent_core::http::detached`): a
/// client that disconnects makes hyper drop the request's future, and a run
/// dropped at one of its awaits would leave its task `running` forever (no
/// lease, so no sweep takes it up again). Detached, it runs to its end and
/// records its outcome whether or not anyone is still waiting for the answer.
pub(crate) async fn run_now(
    state: &AgentState,
    task: TaskRecord,
    warnings: Vec<String>,
    model: Routed,
) -> Result<AgentResponse, ApiError> {
    let state = state.clone();
    detached::run(move |_| async move { run_to_end(&state, task, warnings, &model).await }).await
}

async fn run_to_end(
    state: &AgentState,
    mut task: TaskRecord,
    warnings: Vec<String>,
    model: &Routed,
) -> Result<AgentResponse, ApiError> {
    task.state = TaskState::Running;
    task.attempts = 1;
    state.tasks.create(&task).await?;
    // What the calls spent, for a failed outcome to count too.
    let spent = task::Spent::default();
    let tally = task::Tally::new(model, &spent);
    let response = match task::run(&tally, &state.tools, &task, warnings, &|_| {}).await {
        Ok(response) => response,
        Err(err) => {
            let error = ApiError::from(err);
            record(state, &task.task_id, Finished::Failed(error.message.clone()), &spent).await;
            return Err(error);
        }
    };
    record(state, &task.task_id, answered(&response), &spent).await;
    Ok(response)
}

/// A synchronous run's answer as its task's outcome.
pub(crate) fn answered(answer: &impl Serialize) -> Finished {
    Finished::Completed(serde_json::to_value(answer).unwrap_or_default())
}

/// Stores a synchronous run's outcome, with what it spent, each model's calls under that model (counted
/// in the same write, `TaskStore::finish_charged`). The client gets its
/// answer even when this fails: the work is done, and a retry would pay
/// for it again.
pub(crate) async fn record(state: &AgentState, task_id: &str, outcome: Finished, spent: &task::Spent) {
    let charge = spent.charge();
    if let Err(err) = state.tasks.finish_charged(task_id, 1, &outcome, charge.as_ref()).await {
        tracing::warn!(%err, task_id, "the task's outcome could not be stored");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_core::store::TaskStatus;
    use agent_core::testing::{GatedModel, TestApp};

    use super::*;

    /// A synchronous run of task `id` on a model that holds its answer,
    /// started and waiting for that answer; the app must outlive the run.
    async fn synchronous_run_at_the_model(
        id: &str,
    ) -> (
        GatedModel,
        TestApp,
        AgentState,
        tokio::task::JoinHandle<Result<AgentResponse, ApiError>>,
    ) {
        let mut model = GatedModel::start().await;
        let app = TestApp::start(
            FUNCTION,
            &[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &model.base_url)],
        )
        .await;
        let state = AgentState::new(&app).await.expect("the agent state builds");
        let task = TaskRecord::queued(id, "anonymous", "say something", format!("s-{id}"), 10);
        let request = tokio::spawn({
            let state = state.clone();
            let model = state.models.by_rules(&task.task, 0);
            async move { run_now(&state, task, Vec::new(), model).await }
        });
        model.called().await;
        (model, app, state, request)
    }

    /// Found by the soak (scripts/soak.sh): wrk closing its connections at
    /// the end of a run left the synchronous runs it was waiting for
    /// `running` forever. A client that goes away makes hyper drop the
    /// handler's future; the run must still end and be recorded.
    #[tokio::test]
    async fn a_synchronous_run_ends_and_is_recorded_when_its_client_goes_away() {
        let (model, _app, state, request) = synchronous_run_at_the_model("client-went-away").await;
        // What hyper does when the client disconnects: the request's future
        // is dropped wherever it was waiting.
        request.abort();
        assert!(request.await.is_err_and(|e| e.is_cancelled()));
        model.release();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let task = loop {
            let task = state
                .tasks
                .get("client-went-away")
                .await
                .expect("the store answers")
                .expect("the task was stored");
            if task.state != TaskState::Running || tokio::time::Instant::now() > deadline {
                break task;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let Some(Finished::Completed(result)) = task.state.finished() else {
            panic!("a completed run keeps its answer: {task:?}");
        };
        assert_eq!(result["response"], GatedModel::ANSWER, "{result}");
    }

    /// A synchronous run ends with its request: a cancel is a 409 that
    /// says so, and the run goes on to its answer, recorded.
    #[tokio::test]
    async fn a_synchronous_run_is_not_cancelled() {
        let (model, app, state, request) = synchronous_run_at_the_model("sync-cancel").await;

        let routes = task::routes::TaskRoutes::new(&app);
        let err = task::routes::cancel(&routes, "sync-cancel")
            .await
            .expect_err("a conflict");
        assert_eq!((err.status.as_u16(), err.code), (409, "conflict"));
        assert!(err.message.contains("synchronous run"), "{}", err.message);
        model.release();
        let answer = request.await.expect("joins").expect("the run answers");
        assert_eq!(answer.outcome.response, GatedModel::ANSWER);
        let stored = state.tasks.get("sync-cancel").await.expect("get").expect("stored");
        assert_eq!(stored.status(), TaskStatus::Completed, "{stored:?}");
    }
}
