//! `POST /api/v1/research` and `GET /api/v1/research/{id}`: the research
//! flow (`agent_core::research`), always queued: a research takes many
//! model calls and searches, longer than a request should be held.
//!
//! A research is a task of kind `research`: its events, cancel and
//! callback are a task's (`/api/v1/tasks/{id}/...`); this route shows it
//! as a research, with its topic and depth and, once done, its report.

use agent_core::auth::Principal;
use agent_core::http::{ApiError, ApiJson, Operation};
use agent_core::research::{self, Depth, ResearchInput, ResearchResult};
use agent_core::store::{TaskKind, TaskRecord, TaskStatus};
use agent_core::{session, task};
use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AgentState;

/// `POST /api/v1/research`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResearchRequest {
    /// What to research: 5 to 1000 characters.
    #[schemars(length(min = 5, max = 1000))]
    pub topic: String,
    /// `quick` (one search a subtopic), `standard` (the default, up to two)
    /// or `deep` (up to three, and one revision after the critique).
    #[serde(default)]
    pub depth: Depth,
    /// The most subtopics: 1 to 10, default 5.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub max_subtopics: Option<u32>,
    /// An `https://` URL that receives the finished task, signed with
    /// `X-Signature-256` (needs WEBHOOK_SECRET).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// `fast`, `strong`, or a model name from the allow-list, for every
    /// call; without it the planner, analyst, writer and critic take the
    /// strong tier and the researchers the fast one (`MODEL_ROUTING=auto`).
    #[serde(default)]
    pub model: Option<String>,
    /// `false`: the research's model calls skip the response cache (`CACHE`).
    #[serde(default)]
    pub cache: Option<bool>,
}

/// The 202 answer: where to read the research and follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResearchAccepted {
    pub research_id: String,
    pub status: TaskStatus,
    /// `GET` it for the research (also the `Location` header).
    pub status_url: String,
    /// Its progress as server-sent events: `subtopics`, per subtopic
    /// `subtopic_started`, its `step`s and `subtopic_finished`, a `stage`
    /// per stage of the writing (`analysis`, `draft`, `critique`,
    /// `revision`), then `done` with the task.
    pub events_url: String,
}

/// `GET /api/v1/research/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResearchView {
    pub research_id: String,
    pub status: TaskStatus,
    pub topic: String,
    pub depth: Depth,
    pub max_subtopics: usize,
    /// How many times a worker has started it.
    pub attempts: u32,
    /// Once completed: the report, its sections and sources, the
    /// subtopics with their findings, the critique, and the usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResearchResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub events_url: String,
}

pub(crate) fn submit_operation() -> Operation {
    Operation::post(
        "start_research",
        "research a topic: subtopics, researchers, analyst, writer and critic",
    )
    .tag("research")
    .body::<ResearchRequest>()
    .json_with::<ResearchAccepted>(202, "the research is queued", &["Location"])
    .error(
        400,
        "the topic, depth, max_subtopics, model or callback_url is not valid (the message says which)",
    )
    .error(503, "the research could not be queued; retry after Retry-After")
}

pub(crate) fn view_operation() -> Operation {
    Operation::get("get_research", "a research: its status, and its report once done")
        .tag("research")
        .path_schema(session::id_schema)
        .json::<ResearchView>(200, "the research")
        .error(400, "the research id is not valid")
        .error(404, "there is no such research")
        .error(503, "the store is unavailable for now; retry after Retry-After")
}

pub async fn start_research(
    State(state): State<AgentState>,
    principal: Principal,
    ApiJson(body): ApiJson<ResearchRequest>,
) -> Result<Response, ApiError> {
    let max_subtopics = research::check(&body.topic, body.max_subtopics)?;
    if let Some(model) = body.model.as_deref() {
        state
            .models
            .route(&body.topic, 1, Some(model))
            .map_err(|refused| ApiError::invalid_argument(refused.to_string()))?;
    }
    let mut record = TaskRecord::queued(
        uuid::Uuid::new_v4().to_string(),
        principal.as_str(),
        body.topic.trim(),
        // No session: the researchers only search.
        String::new(),
        body.depth.max_steps(),
    );
    record.kind = TaskKind::Research;
    record.model = body.model;
    record.cache = body.cache != Some(false);
    record.input = serde_json::to_value(ResearchInput {
        depth: body.depth,
        max_subtopics,
        fanned: None,
    })
    .ok();
    record.callback_url = match body.callback_url {
        Some(url) => Some(crate::check_callback(&state, &url)?),
        None => None,
    };
    task::enqueue(state.tasks.as_ref(), state.queue.as_ref(), &record).await?;
    let accepted = ResearchAccepted {
        status_url: format!("/api/v1/research/{}", record.task_id),
        events_url: format!("/api/v1/tasks/{}/events", record.task_id),
        research_id: record.task_id,
        status: TaskStatus::Queued,
    };
    Ok(task::accepted_response(&accepted, &accepted.status_url))
}

pub async fn get_research(
    State(state): State<AgentState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<ResearchView>, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "there is no research {id:?}; research ids are returned by POST /api/v1/research"
        ))
    };
    let found = task::routes::find(state.tasks.as_ref(), &principal, &id)
        .await
        .map_err(|err| match err.code {
            "not_found" => not_found(),
            _ => err,
        })?;
    if found.kind != TaskKind::Research {
        return Err(not_found());
    }
    let input = found
        .input
        .clone()
        .and_then(|i| serde_json::from_value::<ResearchInput>(i).ok());
    let view = agent_core::task::TaskView::from(found);
    Ok(axum::Json(ResearchView {
        events_url: format!("/api/v1/tasks/{}/events", view.task_id),
        research_id: view.task_id,
        status: view.status,
        topic: view.task,
        depth: input.as_ref().map(|i| i.depth).unwrap_or_default(),
        max_subtopics: input.map_or(research::DEFAULT_MAX_SUBTOPICS, |i| i.max_subtopics),
        attempts: view.attempts,
        result: view.result.and_then(|r| serde_json::from_value(r).ok()),
        error: view.error,
        created_at: view.created_at,
        updated_at: view.updated_at,
        started_at: view.started_at,
        finished_at: view.finished_at,
    }))
}
